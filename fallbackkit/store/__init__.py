"""The kit's SQLite store: schema (as migrations), the kit directory, the audit log."""
from .kit import Kit, init_kit, open_kit
from .audit import append_audit, verify_audit

__all__ = ["Kit", "init_kit", "open_kit", "append_audit", "verify_audit"]
