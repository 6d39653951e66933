"""Review station: how long the server takes to serve the next queue item with many items waiting.

Builds a kit (census, ward pack 3B printed), inserts N synthetic readings waiting for review
(tests/review_helpers.seed_queue), serves the app with waitress on 127.0.0.1 and times real HTTP
requests over one keep-alive connection, logged in as a clerk:
  - GET /api/next                  the next item (what the review screen asks for)
  - GET /api/next?after=<random>   the next item after a skip
  - POST decision + GET next       one clerk keystroke: save, then the next item
  - GET /api/progress              "item n of N" and time left, fetched after each item is shown
  - the same GET with half of the queue already decided (the index walk must skip them)
Target: median and p95 of GET /api/next under 50 ms with 10,000 items waiting.

    .venv/bin/python bench/bench_review.py [--quick] [--items N] [--requests N]
"""
from __future__ import annotations

import argparse
import http.client
import json
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from fallbackkit.generate import import_census, print_ward  # noqa: E402
from fallbackkit.generate.sample import write_census  # noqa: E402
from fallbackkit.review import create_app  # noqa: E402
from fallbackkit.review.queue import next_reading  # noqa: E402
from fallbackkit.store import init_kit  # noqa: E402
from review_helpers import PASSWORD, ServerThread, add_people, seed_queue  # noqa: E402


class Client:
    def __init__(self, port: int):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.cookies: dict[str, str] = {}
        self.csrf = ""

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

    def login(self, name: str) -> None:
        _, html = self.request("GET", "/login")
        token = re.search(rb'name="csrf_token" value="([^"]+)"', html).group(1).decode()
        body = f"name={name}&password={PASSWORD.replace(' ', '+')}&csrf_token={token}".encode()
        status, _ = self.request("POST", "/login", body, {"Content-Type": "application/x-www-form-urlencoded"})
        assert status == 302, status
        _, html = self.request("GET", "/queue")
        self.csrf = re.search(rb'<meta name="csrf-token" content="([^"]+)"', html).group(1).decode()


def timed(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def summary(name: str, ms: list[float]) -> str:
    ms = sorted(ms)
    p95 = ms[min(len(ms) - 1, int(round(0.95 * (len(ms) - 1))))]
    return f"{name:<44} median {statistics.median(ms):7.2f} ms   p95 {p95:7.2f} ms   (n={len(ms)})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="2,000 items, 50 requests")
    ap.add_argument("--items", type=int)
    ap.add_argument("--requests", type=int)
    args = ap.parse_args()
    items = args.items or (2_000 if args.quick else 10_000)
    n = args.requests or (50 if args.quick else 200)
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        kit = init_kit(tmp / "kit", actor="bench")
        patients, meds = write_census(tmp / "census")
        import_census(kit, patients, meds, actor="bench")
        print_ward(kit, "3B", tmp / "ward.pdf", actor="bench")
        add_people(kit)
        t0 = time.perf_counter()
        ids = seed_queue(kit, items)
        print(f"{items} readings waiting for review (seeded in {time.perf_counter() - t0:.1f} s)")
        t0 = time.perf_counter()
        for _ in range(100):
            next_reading(kit.db)
        print(f"{'next_reading() SQL alone':<44} mean {(time.perf_counter() - t0) * 10:7.3f} ms")
        results = []
        with ServerThread(create_app(kit.path)) as server:
            c = Client(server.port)
            c.login("clara")
            for _ in range(5):  # warm up
                c.request("GET", "/api/next")
            results.append(summary("GET /api/next", timed(lambda: c.request("GET", "/api/next"), n)))
            results.append(summary("GET /api/next?after=<random>", timed(
                lambda: c.request("GET", f"/api/next?after={rng.choice(ids)}"), n)))

            def decide_and_next():
                _, data = c.request("GET", "/api/next")
                rid = json.loads(data)["reading"]["reading_id"]
                status, _ = c.request("POST", f"/api/readings/{rid}/decision",
                                      json.dumps({"decision": "correct", "value": True, "seen_review_id": None}).encode(),
                                      {"Content-Type": "application/json", "X-CSRF-Token": c.csrf})
                assert status == 200, status
            results.append(summary("GET next + POST decision (one keystroke)", timed(decide_and_next, n)))
            # "item n of N, time left": asked after each item is shown, beside (not before) the next item
            results.append(summary("GET /api/progress (n of N, pace)", timed(lambda: c.request("GET", "/api/progress"), n)))
            # half of the queue decided: the walk has to step over the decided readings
            seed_half = ids[:items // 2]
            with kit.db.conn:
                kit.db.conn.executemany("INSERT INTO reviews (reading_id, decision, value, actor, at)"
                                        " VALUES (?, 'confirm', 'false', 'seed', '2026-11-28')",
                                        [(i,) for i in seed_half])
            results.append(summary(f"GET /api/next, {items // 2} already decided",
                                   timed(lambda: c.request("GET", "/api/next"), n)))
            results.append(summary(f"next_reading() SQL, {items // 2} already decided",
                                   timed(lambda: next_reading(kit.db), n)))
            c.conn.close()
        for line in results:
            print(line)
        kit.close()


if __name__ == "__main__":
    main()
