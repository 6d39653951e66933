"""The station served to other PCs speaks TLS only: real HTTPS requests against the served app.

The kit makes its own certificate with the openssl command (kept, so its fingerprint stays the
same), or uses IT's; plain HTTP never reaches the network address; waitress behind the TLS front
sees each client's real address (logins name the PC)."""
from __future__ import annotations

import http.client
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from fallbackkit.errors import BadInput
from fallbackkit.review import create_app, make_server
from fallbackkit.review import tls as review_tls
from fallbackkit.store.kit import init_kit

from review_helpers import PASSWORD, add_people, stop_waitress

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")


@pytest.fixture()
def kit(tmp_path):
    kit = init_kit(tmp_path / "kit", actor="tester")
    add_people(kit)
    yield kit
    kit.close()


def _client_context(cert: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(cert))  # trusts exactly the station's certificate
    return ctx


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    def __init__(self, server):
        self.server = server
        self.thread = threading.Thread(target=server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        stop_waitress(self.server, self.thread)
        self.server.close()


def test_the_kit_makes_one_certificate_and_keeps_it(kit):
    first = review_tls.self_signed(kit.path, "0.0.0.0")
    assert first.self_signed and first.cert.exists()
    assert oct(first.key.stat().st_mode & 0o777) == "0o600"
    assert oct(first.cert.parent.stat().st_mode & 0o777) == "0o700"
    out = subprocess.run(["openssl", "x509", "-in", str(first.cert), "-noout", "-fingerprint", "-sha256"],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip().split("=", 1)[1] == first.fingerprint
    again = review_tls.self_signed(kit.path, "0.0.0.0")
    assert again.fingerprint == first.fingerprint  # clerks check it once
    text = subprocess.run(["openssl", "x509", "-in", str(first.cert), "-noout", "-text"],
                          capture_output=True, text=True, check=True).stdout
    assert "IP Address:127.0.0.1" in text and "DNS:localhost" in text


def test_https_request_to_the_served_station_with_the_clients_real_address(kit):
    cert = review_tls.self_signed(kit.path, "127.0.0.1")
    server = make_server(kit.path, "127.0.0.1", 0, app=create_app(kit.path, secure_cookies=True), tls=cert)
    port = server.effective_port
    with Served(server):
        ctx = _client_context(cert.cert)  # verifies the chain and that 127.0.0.1 is in the certificate
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10,
                                           source_address=("127.0.0.5", 0))
        conn.request("GET", "/login")
        resp = conn.getresponse()
        body = resp.read().decode()
        assert resp.status == 200 and "<form" in body
        login_cookie = resp.getheader("Set-Cookie")
        assert "Secure" in login_cookie and "HttpOnly" in login_cookie
        token = re.search(r'name="csrf_token" value="([^"]+)"', body).group(1)
        # the same connection (keep-alive through the front), then a login
        from urllib.parse import urlencode
        conn.request("POST", "/login", body=urlencode({"name": "clara", "password": PASSWORD, "csrf_token": token}),
                     headers={"Content-Type": "application/x-www-form-urlencoded",
                              "Cookie": login_cookie.split(";", 1)[0]})
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 302 and "fk_session=" in resp.getheader("Set-Cookie")
        conn.close()
        remote = kit.db.conn.execute("SELECT remote FROM login_attempts ORDER BY rowid DESC LIMIT 1").fetchone()[0]
        assert remote == "127.0.0.5"  # waitress saw the PC, not the TLS front
        # plain HTTP on the TLS port gets no page
        plain = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        with pytest.raises((http.client.HTTPException, ConnectionError, OSError)):
            plain.request("GET", "/login")
            plain.getresponse().read()
        plain.close()
        # a client that does not trust the certificate is refused by its own check
        strict = http.client.HTTPSConnection("127.0.0.1", port, context=ssl.create_default_context(), timeout=5)
        with pytest.raises(ssl.SSLCertVerificationError):
            strict.request("GET", "/login")
        strict.close()
        # a client that opens a connection and says nothing holds up only itself
        idle = socket.create_connection(("127.0.0.1", port))
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
        conn.request("GET", "/login")
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200
        conn.close()
        idle.close()


def test_it_certificate_is_checked_at_start(kit, tmp_path):
    mine = review_tls.self_signed(kit.path, "127.0.0.1")
    other = review_tls.self_signed(tmp_path / "other", "127.0.0.1") if (tmp_path / "other").mkdir() is None else None
    with pytest.raises(BadInput, match="cannot be used"):
        review_tls.provided(mine.cert, other.key)  # a key that is not the certificate's
    with pytest.raises(BadInput, match="does not exist"):
        review_tls.provided(tmp_path / "none.crt", mine.key)
    good = review_tls.provided(mine.cert, mine.key)
    assert good.fingerprint == mine.fingerprint and not good.self_signed


def test_review_allow_network_serves_https_only_and_prints_the_fingerprint(kit):
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "fallbackkit", "--kit", str(kit.path), "review", "--host",
                             "0.0.0.0", "--port", str(port), "--allow-network"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")), daemon=True)
    reader.start()
    cert = kit.path / "tls" / "station.crt"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None and not any("review station on" in x for x in lines):
            time.sleep(0.05)
        assert any(f"https://0.0.0.0:{port}/" in x for x in lines), (lines, proc.poll())
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=_client_context(cert), timeout=10)
        conn.request("GET", "/login")
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200
        conn.close()
        plain = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        with pytest.raises((http.client.HTTPException, ConnectionError, OSError)):
            plain.request("GET", "/login")
            plain.getresponse().read()
        plain.close()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(timeout=5)
        proc.stderr.close()
    printed = [x for x in lines if "SHA-256 fingerprint" in x]
    assert printed and printed[0].strip().endswith(review_tls.fingerprint(cert)), lines
    assert any("warning: listening on 0.0.0.0" in x for x in lines)
    assert not any("Traceback" in x for x in lines), lines
    assert proc.returncode in (0, 130), lines  # Ctrl+C stops it cleanly


def test_cert_without_key_is_refused(kit):
    from click.testing import CliRunner
    from fallbackkit.cli import cli
    cert = review_tls.self_signed(kit.path, "127.0.0.1").cert
    res = CliRunner().invoke(cli, ["--kit", str(kit.path), "review", "--cert", str(cert)])
    assert res.exit_code != 0 and "--cert and --key go together" in res.output


def test_it_certificate_from_the_kit_settings_is_used(kit, tmp_path, monkeypatch):
    from click.testing import CliRunner
    import fallbackkit.review as review
    from fallbackkit.cli import cli
    from fallbackkit.store.settings import set_setting
    it = review_tls.self_signed(tmp_path, "127.0.0.1")  # stands for the certificate IT gives
    with pytest.raises(BadInput, match="absolute path"):
        set_setting(kit, "tls_cert", "station.crt", "tester")
    set_setting(kit, "tls_cert", str(it.cert), "tester")
    set_setting(kit, "tls_key", str(it.key), "tester")
    calls: list = []
    monkeypatch.setattr(review, "make_server", lambda kit_dir, host, port, tls=None: calls.append(tls))
    monkeypatch.setattr(review, "run_server", lambda server: None)
    res = CliRunner().invoke(cli, ["--kit", str(kit.path), "review", "--host", "0.0.0.0", "--allow-network"])
    assert res.exit_code == 0, res.output
    assert calls[0].cert == it.cert and not calls[0].self_signed
    assert f"from {it.cert}" in res.output and it.fingerprint in res.output
    assert not (kit.path / "tls").exists()  # the kit made none of its own
