"""Several clerks at once against the real station (waitress on 127.0.0.1, real HTTP, real threads).

Two people deciding the same reading at the same instant: exactly one wins (200), every other gets
409 and nothing of theirs is stored. A burst of requests larger than the server's thread pool is
served without waitress printing "Task queue depth" notes on the console.
"""
from __future__ import annotations

import http.client
import json
import logging
import re
import threading
from urllib.parse import quote

import pytest

from fallbackkit.generate import print_ward
from fallbackkit.review import create_app
from fallbackkit.review import users as u

from kit_helpers import census_kit
from review_helpers import PASSWORD, ServerThread, seed_queue

CLERKS = 6


class Clerk:
    """One browser: its own keep-alive connection, cookies and CSRF token."""

    def __init__(self, port: int, name: str):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.cookies: dict[str, str] = {}
        _, html = self.request("GET", "/login")
        token = re.search(rb'name="csrf_token" value="([^"]+)"', html).group(1).decode()
        body = f"name={name}&password={quote(PASSWORD)}&csrf_token={token}".encode()
        status, _ = self.request("POST", "/login", body, {"Content-Type": "application/x-www-form-urlencoded"})
        assert status == 302
        _, html = self.request("GET", "/queue")
        self.csrf = re.search(rb'<meta name="csrf-token" content="([^"]+)"', html).group(1).decode()

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        h = dict(headers or {})
        if self.cookies:
            h["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        self.conn.request(method, path, body=body, headers=h)
        resp = self.conn.getresponse()
        data = resp.read()
        for name, value in resp.getheaders():
            if name.lower() == "set-cookie":
                k, v = value.split(";", 1)[0].split("=", 1)
                self.cookies[k] = v
        return resp.status, data

    def decide(self, reading_id: int, seen=None) -> int:
        status, _ = self.request("POST", f"/api/readings/{reading_id}/decision",
                                 json.dumps({"decision": "correct", "value": True, "seen_review_id": seen}).encode(),
                                 {"Content-Type": "application/json", "X-CSRF-Token": self.csrf})
        return status


@pytest.fixture(scope="module")
def station(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("race")
    kit = census_kit(tmp, {"3B": 2})
    print_ward(kit, "3B", tmp / "ward.pdf", actor="tester")
    for i in range(CLERKS):
        u.add_user(kit.db, f"clerk{i}", "clerk", PASSWORD, "tester")
    readings = seed_queue(kit, 25)
    with ServerThread(create_app(kit.path)) as server:
        yield kit, server, readings
    kit.close()


def _all_at_once(n: int, work) -> list:
    """Run work(i) in n threads released by one barrier; the results in thread order."""
    barrier = threading.Barrier(n)
    out: list = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        out[i] = work(i)
    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    return out


def test_of_clerks_deciding_one_reading_at_the_same_instant_exactly_one_wins(station):
    kit, server, readings = station
    clerks = [Clerk(server.port, f"clerk{i}") for i in range(CLERKS)]
    for rid in readings:
        statuses = _all_at_once(CLERKS, lambda i: clerks[i].decide(rid))
        assert sorted(statuses) == [200] + [409] * (CLERKS - 1), (rid, statuses)
    rows = kit.db.conn.execute("SELECT reading_id, COUNT(*) FROM reviews WHERE reading_id IN (%s) GROUP BY reading_id"
                               % ",".join("?" * len(readings)), readings).fetchall()
    assert sorted(rows) == [(rid, 1) for rid in sorted(readings)]  # one decision per reading, nothing doubled
    audited = kit.db.conn.execute("SELECT COUNT(*) FROM audit WHERE action = 'review.correct'").fetchone()[0]
    assert audited == len(readings)
    for c in clerks:
        c.conn.close()


def test_a_burst_larger_than_the_thread_pool_prints_no_queue_warnings(station, caplog):
    kit, server, _ = station
    clerks = [Clerk(server.port, f"clerk{i % CLERKS}") for i in range(24)]
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        statuses = _all_at_once(len(clerks), lambda i: clerks[i].request("GET", "/api/next")[0])
    assert statuses == [200] * len(clerks)
    assert not [r for r in caplog.records if r.name.startswith("waitress")], caplog.text
    for c in clerks:
        c.conn.close()
