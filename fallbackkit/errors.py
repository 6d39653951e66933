"""One root exception for the whole kit.

Every error a user can cause carries an exit code and a message that says what to do. The CLI
turns them into one line on stderr (a traceback only with --verbose).
"""
from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FAILURES = 1  # a batch finished but some inputs failed (scan summary)
    USAGE = 2
    NO_KIT = 3
    BAD_INPUT = 4
    NOT_FOUND = 5
    CONFLICT = 6
    INTEGRITY = 7
    MISSING_DEPENDENCY = 8
    STORAGE = 9  # the kit cannot be written: disk full, read-only disk or directory
    INTERNAL = 70


class FallbackkitError(Exception):
    """Root of every error the kit raises on purpose."""

    exit_code: ExitCode = ExitCode.INTERNAL

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} — {self.hint}" if self.hint else self.message


class KitNotFound(FallbackkitError):
    exit_code = ExitCode.NO_KIT


class KitExists(FallbackkitError):
    exit_code = ExitCode.CONFLICT


class BadInput(FallbackkitError):
    """A file or argument the user gave is not usable."""

    exit_code = ExitCode.BAD_INPUT


class TemplateError(BadInput):
    """A template file is invalid; the message names the file, the field and the problem."""


class CensusError(BadInput):
    """A census CSV is invalid; carries every bad line."""

    def __init__(self, message: str, problems: list[str], *, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.problems = problems

    def __str__(self) -> str:
        if len(self.problems) == 1:  # one line: the problem itself says what to change
            head = self.message.split(":")[0]
            return f"{head}: {self.problems[0]}" + (f" — {self.hint}" if self.hint else "")
        return "\n".join([super().__str__(), *("  " + p for p in self.problems)])


class NotFound(FallbackkitError):
    exit_code = ExitCode.NOT_FOUND


class Conflict(FallbackkitError):
    exit_code = ExitCode.CONFLICT


class IntegrityFailure(FallbackkitError):
    exit_code = ExitCode.INTEGRITY


class MissingDependency(FallbackkitError):
    exit_code = ExitCode.MISSING_DEPENDENCY


class PayloadError(FallbackkitError):
    """A QR payload is malformed, foreign or forged."""

    exit_code = ExitCode.BAD_INPUT


class StorageFailure(FallbackkitError):
    """The disk would not take a write (a disk I/O error); what was committed before is kept."""

    exit_code = ExitCode.STORAGE


class KitReadOnly(StorageFailure):
    """The kit is on a read-only disk or directory: read commands work, this one needs to write."""


class DiskFull(StorageFailure):
    """The disk holding the kit (or an output) filled up; what was committed before is kept."""


class NotPermitted(BadInput):
    """The action needs a supervisor (in the review station, or `--user` naming a supervisor account)."""
