"""Review station under load: six clerks working the same queue at once through the JSON API.

Builds a kit (census, ward pack 3B printed, N synthetic readings waiting), starts the station as
`fallbackkit --quiet review` would run it (a subprocess, waitress on 127.0.0.1 only, its console
captured), and lets six clerks work the queue for a bounded time: each asks for the next item
(GET /api/next?after=<last>), decides it (POST .../decision with the review it saw) and moves on.
Each item handed out is claimed for the clerk it went to (review/queue.py claim_next), so the
clerks are handed different items and 409s should be 0; were two to land on one, one decision must
win and the other gets 409 and moves on.

Prints: decisions saved, 409s, double decisions (readings with two decisions that count: must be
0), p50/p95 of one decision (the POST) and of one keystroke (POST + next GET; target p95 <= 200 ms),
and the lines the station printed on its console while people worked (must be 0 with --quiet).
Traffic goes to 127.0.0.1 only and stops at the time limit or when the queue is empty.

    .venv/bin/python bench/bench_review_load.py [--quick] [--seconds 45] [--clerks 6] [--items N]

Default 15 s (what `make bench` runs); --quick 5 s; the issue's figure is --seconds 45.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(Path(__file__).parent)]

from bench_review import Client  # noqa: E402
from fallbackkit.generate import import_census, print_ward  # noqa: E402
from fallbackkit.generate.sample import write_census  # noqa: E402
from fallbackkit.review.users import add_user  # noqa: E402
from fallbackkit.store import init_kit  # noqa: E402
from review_helpers import PASSWORD, seed_queue  # noqa: E402

P95_TARGET_MS = 200.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise SystemExit(f"the station exited early (code {proc.returncode})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("the station did not start listening")


def pct(ms: list[float], p: float) -> float:
    ms = sorted(ms)
    return ms[min(len(ms) - 1, int(round(p * (len(ms) - 1))))] if ms else float("nan")


class Clerk(threading.Thread):
    def __init__(self, port: int, name: str, start_after: int, deadline: float):
        super().__init__(daemon=True)
        self.port, self.name, self.after, self.deadline = port, name, start_after, deadline
        self.saved = self.conflicts = self.errors = 0
        self.decision_ms: list[float] = []
        self.keystroke_ms: list[float] = []

    def run(self) -> None:
        c = Client(self.port)
        c.login(self.name)
        headers = {"Content-Type": "application/json", "X-CSRF-Token": c.csrf}
        status, data = c.request("GET", f"/api/next?after={self.after}")
        while time.monotonic() < self.deadline and status == 200:
            got = json.loads(data)
            if got["done"]:
                break
            reading = got["reading"]
            rid = reading["reading_id"]
            seen = reading["review"]["review_id"] if reading.get("review") else None
            t0 = time.perf_counter()
            status, _ = c.request("POST", f"/api/readings/{rid}/decision",
                                  json.dumps({"decision": "correct", "value": True, "seen_review_id": seen}).encode(),
                                  headers)
            t1 = time.perf_counter()
            if status == 200:
                self.saved += 1
            elif status == 409:
                self.conflicts += 1
            else:
                self.errors += 1
            self.after = rid
            status, data = c.request("GET", f"/api/next?after={rid}")
            t2 = time.perf_counter()
            self.decision_ms.append((t1 - t0) * 1000)
            self.keystroke_ms.append((t2 - t0) * 1000)
        if status != 200:
            self.errors += 1
        c.conn.close()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="5 s")
    ap.add_argument("--seconds", type=float, help="how long the clerks work (default 15; the issue's figure: 45)")
    ap.add_argument("--clerks", type=int, default=6)
    ap.add_argument("--items", type=int, default=8000, help="readings waiting at the start")
    args = ap.parse_args()
    seconds = min(args.seconds or (5 if args.quick else 15), 300)  # bounded whatever is asked
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        kit = init_kit(tmp / "kit", actor="bench")
        patients, meds = write_census(tmp / "census")
        import_census(kit, patients, meds, actor="bench")
        print_ward(kit, "3B", tmp / "ward.pdf", actor="bench")
        names = [f"clerk{i}" for i in range(args.clerks)]
        for name in names:
            add_user(kit.db, name, "clerk", PASSWORD, "bench")
        ids = seed_queue(kit, args.items)
        kit.close()
        port = free_port()
        console = open(tmp / "console.txt", "w+")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        station = subprocess.Popen([sys.executable, "-m", "fallbackkit", "--kit", str(tmp / "kit"), "--quiet",
                                    "review", "--host", "127.0.0.1", "--port", str(port)],
                                   stdout=console, stderr=subprocess.STDOUT, env=env)
        try:
            wait_for(port, station)
            deadline = time.monotonic() + seconds
            # clerks start in pairs on the same stretch of the queue, as people sharing one ward do
            clerks = [Clerk(port, name, ids[(i // 2) * len(ids) // max(1, args.clerks)] - 1, deadline)
                      for i, name in enumerate(names)]
            t0 = time.perf_counter()
            for c in clerks:
                c.start()
            for c in clerks:
                c.join(seconds + 120)
            elapsed = time.perf_counter() - t0
        finally:
            station.send_signal(signal.SIGINT)
            try:
                station.wait(20)
            except subprocess.TimeoutExpired:
                station.kill()
                station.wait()
        console.seek(0)
        lines = [line.rstrip("\n") for line in console if line.strip()]
        console.close()
        import sqlite3
        db = sqlite3.connect(tmp / "kit" / "store.sqlite")
        doubles = db.execute(
            "SELECT COUNT(*) FROM (SELECT reading_id FROM reviews r WHERE decision != 'undo' AND NOT EXISTS"
            " (SELECT 1 FROM reviews u WHERE u.undoes = r.review_id) GROUP BY reading_id HAVING COUNT(*) > 1)"
        ).fetchone()[0]
        stored = db.execute("SELECT COUNT(*) FROM reviews").fetchone()[0]
        db.close()
    saved = sum(c.saved for c in clerks)
    decision = [m for c in clerks for m in c.decision_ms]
    keystroke = [m for c in clerks for m in c.keystroke_ms]
    print(f"{args.clerks} clerks for {elapsed:.1f} s on {args.items} waiting readings (127.0.0.1)")
    print(f"decisions saved {saved} ({saved / elapsed:.1f}/s), told 'already decided' (409) "
          f"{sum(c.conflicts for c in clerks)}, other errors {sum(c.errors for c in clerks)}")
    print(f"double decisions {doubles} (must be 0); review rows stored {stored} (= saved: {stored == saved})")
    print(f"{'POST decision':<32} p50 {statistics.median(decision):7.1f} ms   p95 {pct(decision, .95):7.1f} ms")
    print(f"{'POST decision + GET next':<32} p50 {statistics.median(keystroke):7.1f} ms   "
          f"p95 {pct(keystroke, .95):7.1f} ms   (target p95 <= {P95_TARGET_MS:.0f} ms: "
          f"{'met' if pct(keystroke, .95) <= P95_TARGET_MS else 'NOT met'})")
    noisy = [line for line in lines if not line.startswith("interrupted")]
    print(f"console lines printed by `fallbackkit --quiet review` while people worked: {len(noisy)} (must be 0)")
    for line in noisy[:5]:
        print("   ", line)
    return 0 if doubles == 0 and not noisy and stored == saved else 1


if __name__ == "__main__":
    sys.exit(main())
