"""TLS for a station that other PCs reach: IT's certificate, or one the kit makes itself.

waitress speaks plain HTTP only. So when the station is served to other PCs, a small front in
this module listens on the network address, does the TLS handshake in a thread of its own (a slow
or broken client holds up only itself, never the server loop), and hands each decrypted
connection to waitress as one of its channels, over a socket pair, with the client's real address
(so logins and the audit log name the PC, not 127.0.0.1). waitress itself then listens only on a
private Unix socket: no plain HTTP reaches the network. Everything HTTP (parsing, limits, threads,
timeouts) stays waitress's.

A self-signed certificate is made with the ``openssl`` command (installed with Debian's base
system; Python's standard library cannot make certificates and the ``cryptography`` package is not
a dependency), kept in the kit folder (``tls/``, key mode 0600) and reused, so its SHA-256
fingerprint, printed at start, stays the same from one start to the next and clerks can check it
once in their browser.
"""
from __future__ import annotations

import hashlib
import logging
import os
import selectors
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import BadInput, Conflict, MissingDependency

log = logging.getLogger("fallbackkit.review.tls")

CERT_DAYS = 825            # the longest validity browsers accept for a certificate
RENEW_SECONDS = 30 * 86400  # a self-made certificate is made again when it has less than this left
HANDSHAKE_SECONDS = 10     # a client that has not finished its TLS handshake by then is dropped
IDLE_SECONDS = 120         # a connection with no byte either way for this long is closed
CONNECTIONS = 100          # as many open connections as waitress itself accepts


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path
    fingerprint: str   # SHA-256 of the DER certificate, AB:CD:... as browsers show it
    self_signed: bool


def fingerprint(cert_path: Path) -> str:
    """The SHA-256 fingerprint of the first certificate in a PEM file, as browsers show it."""
    pem = Path(cert_path).read_text(encoding="ascii", errors="replace")
    start = pem.find("-----BEGIN CERTIFICATE-----")
    end = pem.find("-----END CERTIFICATE-----", start)
    if start < 0 or end < 0:
        raise BadInput(f"{cert_path} holds no PEM certificate", hint="give the certificate in PEM form (.crt/.pem)")
    der = ssl.PEM_cert_to_DER_cert(pem[start:end + len("-----END CERTIFICATE-----")])
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def _openssl() -> str:
    found = shutil.which("openssl")
    if not found:
        raise MissingDependency("the openssl command is not installed (needed to make the station's own certificate)",
                      hint="sudo apt-get install openssl, or give IT's certificate with --cert FILE --key FILE")
    return found


def _names(host: str) -> list[str]:
    """subjectAltName entries: this PC's name, localhost, 127.0.0.1, and host when it is an address."""
    import ipaddress
    names = [f"DNS:{socket.gethostname()}", "DNS:localhost", "IP:127.0.0.1"]
    host = host.strip("[]")
    try:
        ip = ipaddress.ip_address(host)
        if not ip.is_unspecified and f"IP:{ip}" not in names:
            names.append(f"IP:{ip}")
    except ValueError:
        if host and f"DNS:{host}" not in names:
            names.append(f"DNS:{host}")
    return names


def _expires_soon(openssl: str, cert: Path) -> bool:
    done = subprocess.run([openssl, "x509", "-in", str(cert), "-noout", "-checkend", str(RENEW_SECONDS)],
                          capture_output=True, text=True)
    return done.returncode != 0


def self_signed(kit_path: Path, host: str) -> Certificate:
    """The kit's own certificate (made on first use, again when it is about to expire or the host is new)."""
    folder = Path(kit_path) / "tls"
    cert, key = folder / "station.crt", folder / "station.key"
    names_file = folder / "names.txt"
    names = _names(host)
    openssl = _openssl()
    known = names_file.read_text().split() if names_file.exists() else []
    if cert.exists() and key.exists() and set(names) <= set(known) and not _expires_soon(openssl, cert):
        return Certificate(cert, key, fingerprint(cert), True)
    folder.mkdir(mode=0o700, exist_ok=True)
    os.chmod(folder, 0o700)
    tmp_key, tmp_cert = folder / "station.key.tmp", folder / "station.crt.tmp"
    old_umask = os.umask(0o077)  # the key is never readable by others, not even for a moment
    try:
        done = subprocess.run(
            [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", str(tmp_key), "-out", str(tmp_cert), "-days", str(CERT_DAYS), "-sha256",
             "-subj", f"/CN={socket.gethostname()}/O=fallbackkit review station",
             "-addext", "subjectAltName=" + ",".join(names),
             "-addext", "extendedKeyUsage=serverAuth"], capture_output=True, text=True)
    finally:
        os.umask(old_umask)
    if done.returncode != 0:
        for p in (tmp_key, tmp_cert):
            p.unlink(missing_ok=True)
        raise Conflict("openssl could not make the station's certificate: "
                       + (done.stderr.strip().splitlines() or ["no message"])[-1],
                       hint="give IT's certificate with --cert FILE --key FILE")
    os.chmod(tmp_key, 0o600)
    os.replace(tmp_key, key)
    os.replace(tmp_cert, cert)
    names_file.write_text("\n".join(names) + "\n")
    log.info("made a self-signed certificate for %s", ", ".join(names))
    return Certificate(cert, key, fingerprint(cert), True)


def provided(cert: Path | str, key: Path | str) -> Certificate:
    """IT's certificate and key, checked now (a wrong pair is said at start, not at the first clerk)."""
    cert, key = Path(cert).expanduser(), Path(key).expanduser()
    for what, path in (("certificate", cert), ("key", key)):
        if not path.is_file():
            raise BadInput(f"the {what} file {path} does not exist", hint="give the PEM files IT provided")
    context(Certificate(cert, key, "", False))
    return Certificate(cert, key, fingerprint(cert), False)


def context(certificate: Certificate) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(certificate.cert), str(certificate.key))
    except (ssl.SSLError, OSError) as exc:
        raise BadInput(f"the certificate {certificate.cert} and key {certificate.key} cannot be used: "
                       f"{getattr(exc, 'reason', None) or exc}",
                       hint="the key must be the certificate's own, both PEM, the key without a passphrase") from None
    return ctx


class TLSServer:
    """waitress behind the TLS front: run() serves until interrupted, like a waitress server.

    Exposes what callers of a waitress server use (run, task_dispatcher, trigger, _map,
    effective_port), so that `run_server` and the tests treat both alike."""

    def __init__(self, waitress_server: Any, listener: socket.socket, ctx: ssl.SSLContext, private_dir: str):
        self.inner = waitress_server
        self.listener = listener
        self.ctx = ctx
        self.private_dir = private_dir
        self.effective_port = listener.getsockname()[1]
        self.slots = threading.BoundedSemaphore(CONNECTIONS)
        self.closed = threading.Event()
        self._accepting = threading.Thread(target=self._accept_loop, name="tls-accept", daemon=True)

    # what run_server and ServerThread use
    task_dispatcher = property(lambda self: self.inner.task_dispatcher)
    trigger = property(lambda self: self.inner.trigger)
    _map = property(lambda self: self.inner._map)

    def run(self) -> None:
        self._accepting.start()
        try:
            self.inner.run()
        finally:
            self.close()

    def close(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        try:
            self.listener.close()
        except OSError:
            pass
        shutil.rmtree(self.private_dir, ignore_errors=True)

    def _accept_loop(self) -> None:
        while not self.closed.is_set():
            try:
                raw, addr = self.listener.accept()
            except OSError:
                if self.closed.is_set():
                    return
                continue
            if not self.slots.acquire(blocking=False):  # as many as waitress takes; the rest wait for none
                raw.close()
                continue
            threading.Thread(target=self._connection, args=(raw, addr), name="tls-conn", daemon=True).start()

    def _connection(self, raw: socket.socket, addr: Any) -> None:
        inner = None
        try:
            raw.settimeout(HANDSHAKE_SECONDS)
            try:
                tls = self.ctx.wrap_socket(raw, server_side=True)
            except (ssl.SSLError, OSError) as exc:  # plain HTTP, a scanner, a client that distrusts us
                log.debug("TLS handshake with %s failed: %s", addr[0], exc)
                raw.close()
                return
            tls.settimeout(IDLE_SECONDS)
            ours, inner = socket.socketpair()
            server = self.inner
            # the channel is made in waitress's own loop thread, with the client's real address
            server.trigger.pull_trigger(lambda: server.channel_class(server, inner, (addr[0], addr[1]), server.adj,
                                                                     map=server._map))
            _pump(tls, ours)
        finally:
            self.slots.release()


def _pump(tls: ssl.SSLSocket, plain: socket.socket) -> None:
    """Copy bytes both ways until either side closes or nothing moves for IDLE_SECONDS."""
    sel = selectors.DefaultSelector()
    sel.register(tls, selectors.EVENT_READ)
    sel.register(plain, selectors.EVENT_READ)
    plain.settimeout(IDLE_SECONDS)
    try:
        while True:
            ready = [key.fileobj for key, _ in sel.select(IDLE_SECONDS)] if not tls.pending() else [tls]
            if not ready:
                return
            for sock in ready:
                if sock is tls:
                    try:
                        data = tls.recv(65536)
                    except ssl.SSLWantReadError:
                        continue
                    if not data:
                        plain.shutdown(socket.SHUT_WR)
                        return
                    plain.sendall(data)
                else:
                    data = plain.recv(65536)
                    if not data:  # waitress closed it (done, or idle): say goodbye properly
                        try:
                            tls.unwrap()
                        except (ssl.SSLError, OSError):
                            pass
                        return
                    tls.sendall(data)
    except (ssl.SSLError, OSError) as exc:
        log.debug("TLS connection ended: %s", exc)
    finally:
        sel.close()
        for s in (tls, plain):
            try:
                s.close()
            except OSError:
                pass


def make_tls_server(app: Any, host: str, port: int, certificate: Certificate, threads: int, max_body: int,
                    backlog: int = 128) -> TLSServer:
    """A station served over TLS on host:port; waitress behind it on a private Unix socket."""
    from waitress.server import create_server
    from waitress.task import ThreadedTaskDispatcher
    ctx = context(certificate)
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        listener = socket.create_server((host, port), family=family, backlog=backlog, reuse_port=False)
    except OSError as exc:
        import errno
        if exc.errno == errno.EADDRINUSE:
            raise Conflict(f"port {port} on {host} is already in use (is a review station already running?)",
                           hint="stop the other one, or choose another port with --port") from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise Conflict(f"{host} is not an address of this PC", hint="use --host 127.0.0.1") from None
        raise Conflict(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                       hint="choose another --host or --port") from None
    private = tempfile.mkdtemp(prefix="fk-station-")
    os.chmod(private, 0o700)
    sockets: dict = {}
    dispatcher = ThreadedTaskDispatcher()
    dispatcher.set_thread_count(threads)
    try:
        inner = create_server(app, map=sockets, _dispatcher=dispatcher, unix_socket=os.path.join(private, "s"),
                              unix_socket_perms="600", threads=threads, ident="fallbackkit",
                              max_request_body_size=max_body, connection_limit=CONNECTIONS, channel_timeout=60,
                              url_scheme="https")
    except BaseException:
        listener.close()
        dispatcher.shutdown(timeout=5)
        shutil.rmtree(private, ignore_errors=True)
        raise
    return TLSServer(inner, listener, ctx, private)
