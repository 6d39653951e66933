"""Review station: a local web app where records clerks confirm, transcribe and tick off re-entry.

`create_app(kit_path)` builds the Flask app; `serve(kit_path, host, port)` runs it with waitress.
Accounts live in the kit's store (`users.add_user`), passwords hashed with scrypt.
"""
from __future__ import annotations

import errno
import ipaddress
import logging
from pathlib import Path
from typing import Any

from ..errors import Conflict
from .app import MAX_BODY, create_app
from .queue import next_reading, reading_detail
from .users import ROLES, add_user, authenticate, list_users

# Requests wait in waitress's queue while every thread is busy: normal when several clerks save
# at once (SQLite takes one write at a time), not something to print on the station's console.
THREADS = 8


def is_loopback(host: str) -> bool:
    """True when only this PC can reach host (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def station_url(host: str, port: int, tls: bool = False) -> str:
    """The address to open in a browser: an IPv6 literal goes in brackets (http://[::1]:8765/)."""
    host = host.strip("[]")
    scheme = "https" if tls else "http"
    return f"{scheme}://[{host}]:{port}/" if ":" in host else f"{scheme}://{host}:{port}/"


def quiet_waitress(verbose: bool = False) -> None:
    """waitress logs through logging: its queue-depth notes become debug-only; the rest stays ours."""
    logging.getLogger("waitress.queue").setLevel(logging.DEBUG if verbose else logging.ERROR)


def make_server(kit_path: Path | str, host: str = "127.0.0.1", port: int = 8765, threads: int = THREADS,
                app: Any = None, tls: Any = None) -> Any:
    """A waitress server for the station, bound to host:port (not yet serving).

    The request body limit is the app's own (MAX_BODY), so waitress refuses a larger body from the
    Content-Length header on, before reading it, and before anyone has logged in. With tls (a
    review.tls.Certificate) the station is served over HTTPS only (review/tls.py), and its
    cookies are sent only over HTTPS."""
    from waitress.server import create_server
    from waitress.task import ThreadedTaskDispatcher
    quiet_waitress(logging.getLogger("fallbackkit").isEnabledFor(logging.DEBUG))
    if app is None:
        app = create_app(kit_path, secure_cookies=tls is not None)
        for name in app.jinja_env.list_templates():  # compiled now, not in the first clerk's request
            app.jinja_env.get_template(name)
    if tls is not None:
        from .tls import make_tls_server
        return make_tls_server(app, host, port, tls, threads, MAX_BODY)
    sockets: dict = {}
    dispatcher = ThreadedTaskDispatcher()
    dispatcher.set_thread_count(threads)
    try:
        return create_server(app, map=sockets, _dispatcher=dispatcher, host=host.strip("[]"), port=port,
                             threads=threads, ident="fallbackkit", max_request_body_size=MAX_BODY,
                             connection_limit=100, channel_timeout=60)
    except OSError as exc:
        dispatcher.shutdown(timeout=5)  # what waitress opened before the bind failed
        for opened in list(sockets.values()):
            opened.close()
        if exc.errno == errno.EADDRINUSE:
            raise Conflict(f"port {port} on {host} is already in use (is a review station already running?)",
                           hint="stop the other one, or choose another port with --port") from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise Conflict(f"{host} is not an address of this PC", hint="use --host 127.0.0.1") from None
        raise Conflict(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                       hint="choose another --host or --port") from None


def serve(kit_path: Path | str, host: str = "127.0.0.1", port: int = 8765, threads: int = THREADS) -> None:
    """Serve the station with waitress until interrupted."""
    run_server(make_server(kit_path, host, port, threads))


def run_server(server: Any) -> None:
    """Serve until Ctrl+C, then close the listening socket."""
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        from waitress import wasyncore
        server.task_dispatcher.shutdown(timeout=5)
        wasyncore.close_all(server._map)  # the listening socket and every open connection
        if hasattr(server, "close"):  # the TLS front's listener
            server.close()


__all__ = ["create_app", "serve", "make_server", "run_server", "station_url", "is_loopback", "add_user", "list_users",
           "authenticate", "next_reading", "reading_detail", "ROLES"]
