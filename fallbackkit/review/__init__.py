"""Review station: a local web app where records clerks confirm, transcribe and tick off re-entry.

`create_app(kit_path)` builds the Flask app; `serve(kit_path, host, port)` runs it with waitress.
Accounts live in the kit's store (`users.add_user`), passwords hashed with scrypt.
"""
from __future__ import annotations

from pathlib import Path

from .app import create_app
from .queue import next_reading, reading_detail
from .users import ROLES, add_user, authenticate, list_users


def serve(kit_path: Path | str, host: str = "127.0.0.1", port: int = 8765, threads: int = 4) -> None:
    """Serve the station with waitress until interrupted."""
    import waitress
    waitress.serve(create_app(kit_path), host=host, port=port, threads=threads, ident="fallbackkit")


__all__ = ["create_app", "serve", "add_user", "list_users", "authenticate", "next_reading", "reading_detail",
           "ROLES"]
