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

Large-store mode (issue 16): the 100,000-capture store of bench_reconcile (~3 M readings, built
once and cached under /tmp/fk-bench-100k), served by `fallbackkit review`'s server in its own
process, six scripted clerks logged in over HTTP deciding for 60 s. Each clerk asks for the next
item and decides it; after every tenth decision it opens the dashboard and then, in turn, the queue,
conflicts, a worklist page, identities and decisions screens. Prints p50/p95/max per view.
Targets: p95 <= 200 ms for every view, none above 1 s. By default the clerks do not think (each
asks for the next item the moment its decision is saved: ~30-40 decisions a second in all, a load
no records room makes); --pace S adds S seconds per item (+-50 %) per clerk: --pace 2 is a fast
clerk confirming marks (bench_clerk: one key per mark; a person looks at the crop first), six of
them ~3 decisions a second. --store DIR uses a prepared copy of the cached store (migrated,
summaries computed); --profile DIR writes the server's profile per route.

    .venv/bin/python bench/bench_review.py --large [--quick] [--seconds 60] [--clerks 6] [--pace S]
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
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

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


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _percentile(ms: list[float], q: float) -> float:
    ms = sorted(ms)
    return ms[min(len(ms) - 1, int(round(q * (len(ms) - 1))))]


def profiled_serve(kit_path: str, port: int, out_dir: str) -> None:
    """The station's server with every request profiled (cProfile, per thread) and timed (wall and
    this thread's CPU): on SIGTERM, writes per route the summed profile (<route>.prof, .txt) and
    the times (times.json) to out_dir. Used by --large --profile DIR, to find where time goes."""
    import cProfile
    import io
    import pstats
    import signal
    import threading
    from fallbackkit.review import make_server, run_server

    profiles: dict[str, pstats.Stats] = {}
    times: dict[str, list[tuple[float, float]]] = {}
    lock = threading.Lock()
    app = create_app(kit_path)
    inner = app.wsgi_app

    def wsgi(environ, start_response):
        route = environ["REQUEST_METHOD"] + " " + re.sub(r"/\d+", "/N", environ.get("PATH_INFO", ""))
        prof = cProfile.Profile()
        t, c = time.perf_counter(), time.thread_time()
        prof.enable()
        try:
            return list(inner(environ, start_response))
        finally:
            prof.disable()
            wall, cpu = time.perf_counter() - t, time.thread_time() - c
            with lock:
                times.setdefault(route, []).append((wall * 1000, cpu * 1000))
                if route in profiles:
                    profiles[route].add(prof)
                else:
                    profiles[route] = pstats.Stats(prof)

    app.wsgi_app = wsgi

    def stop(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    run_server(make_server(kit_path, port=port, app=app))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with lock:
        (out / "times.json").write_text(json.dumps(times))
        for route, stats in profiles.items():
            name = re.sub(r"[^A-Za-z0-9]+", "_", route).strip("_") or "root"
            stats.dump_stats(out / f"{name}.prof")
            text = io.StringIO()
            pstats.Stats(str(out / f"{name}.prof"), stream=text).sort_stats("cumulative").print_stats(40)
            (out / f"{name}.txt").write_text(text.getvalue())


def large(args) -> None:
    """Six clerks deciding on a 100,000-capture store (see the module docstring)."""
    import os
    import subprocess
    import threading
    from bench_reconcile import cached_store, working_copy
    from fallbackkit.review.users import add_user
    from fallbackkit.store import open_kit

    captures = args.captures or (10_000 if args.quick else 100_000)
    if args.store:  # a copy of the cache prepared once (migrated, summaries computed): runs start at once
        cache = Path(args.store)
        counts = json.loads((cache / "built.json").read_text())["counts"] if (cache / "built.json").is_file() else {}
    else:
        cache, counts = cached_store(captures)
    print(f"store: {counts} (cached in {cache}); load average {os.getloadavg()[0]:.2f} (2 cores, shared)")
    with tempfile.TemporaryDirectory() as tmp:
        kit_path = working_copy(cache, Path(tmp), "kit")
        t0 = time.perf_counter()
        kit = open_kit(kit_path)  # migrations of this version, if the cached store lacks them
        names = [f"clerk{i}" for i in range(1, args.clerks + 1)]
        for name in names:
            add_user(kit.db, name, "clerk", PASSWORD, "bench")
        add_user(kit.db, "sam", "supervisor", PASSWORD, "bench")
        print(f"working copy, migrations and accounts: {time.perf_counter() - t0:.1f} s")
        try:  # the kept summaries, computed once (as the station does at start on an older store)
            from fallbackkit.reconcile.summary import refresh
        except ImportError:
            refresh = None
        if refresh is not None:
            t0 = time.perf_counter()
            n = refresh(kit)
            print(f"summaries of {n:,} forms computed once in {time.perf_counter() - t0:.1f} s")
        kit.close()
        port = _free_port()
        command = ("import sys; from fallbackkit.review import serve; serve(sys.argv[1], port=int(sys.argv[2]))"
                   if not args.profile else
                   "import sys; sys.path.insert(0, sys.argv[4]); from bench_review import profiled_serve;"
                   " profiled_serve(sys.argv[1], int(sys.argv[2]), sys.argv[3])")
        server = subprocess.Popen([sys.executable, "-c", command, str(kit_path), str(port), str(args.profile or ""),
                                   str(ROOT / "bench")], env={**os.environ, "PYTHONPATH": str(ROOT)})
        try:
            for _ in range(3000):
                try:
                    http.client.HTTPConnection("127.0.0.1", port, timeout=1).request("GET", "/login")
                    break
                except OSError:
                    time.sleep(0.1)
            times: dict[str, list[float]] = {}
            lock = threading.Lock()
            views = ["queue", "conflicts", "worklist page", "identities", "decisions"]
            paths = {"queue": "/queue", "conflicts": "/conflicts", "identities": "/identities",
                     "decisions": "/decisions"}
            errors: list[str] = []

            def timed_request(c: Client, what: str, method: str, path: str, body=None, headers=None):
                t = time.perf_counter()
                status, data = c.request(method, path, body, headers)
                ms = (time.perf_counter() - t) * 1000
                with lock:
                    times.setdefault(what, []).append(ms)
                    if status >= 500 or (status >= 400 and what != "decision"):
                        errors.append(f"{what} {path}: HTTP {status}")
                return status, data

            def clerk(name: str, k: int, deadline: float) -> None:
                rnd = random.Random(k)
                c = Client(port)
                c.conn.timeout = 900
                c.login(name)
                decided, after = 0, 0
                while time.perf_counter() < deadline:
                    _, data = timed_request(c, "next item", "GET", f"/api/next?after={after}" if after else "/api/next")
                    answer = json.loads(data)
                    if answer.get("done"):
                        break
                    reading = answer["reading"]
                    rid = reading["reading_id"]
                    seen = reading["review"]["review_id"] if reading.get("review") else None
                    status, _ = timed_request(c, "decision", "POST", f"/api/readings/{rid}/decision",
                                              json.dumps({"decision": "illegible", "seen_review_id": seen}).encode(),
                                              {"Content-Type": "application/json", "X-CSRF-Token": c.csrf})
                    after = rid
                    decided += 1
                    if args.pace:  # a person looks at the crop before the key: pace s per item, +-50 %
                        time.sleep(rnd.uniform(0.5, 1.5) * args.pace)
                    if decided % 10 == 0 and time.perf_counter() < deadline:
                        timed_request(c, "dashboard", "GET", "/")
                        view = views[(decided // 10 + k) % len(views)]
                        path = paths.get(view) or f"/worklist?page={rnd.randint(1, 50)}"
                        timed_request(c, view, "GET", path)
                c.conn.close()

            start = time.perf_counter()
            deadline = start + args.seconds
            threads = [threading.Thread(target=clerk, args=(n, k, deadline)) for k, n in enumerate(names)]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            wall = time.perf_counter() - start
            mode = f"a decision every {args.pace:g} s (+-50 %) per clerk" if args.pace else "no thinking time"
            print(f"{args.clerks} clerks, {mode}, for {args.seconds} s (finished in {wall:.0f} s);"
                  f" {len(times.get('decision', []))} decisions; load average {os.getloadavg()[0]:.2f}")
            worst = 0.0
            for what in ["next item", "decision", "dashboard", *views]:
                ms = times.get(what, [])
                if not ms:
                    print(f"{what:<16} no requests")
                    continue
                p95 = _percentile(ms, 0.95)
                worst = max(worst, max(ms))
                print(f"{what:<16} p50 {statistics.median(ms):8.1f} ms   p95 {p95:8.1f} ms   max {max(ms):8.1f} ms"
                      f"   (n={len(ms)}){'' if p95 <= 200 else '   p95 over 200 ms'}")
            print(f"slowest request {worst:.0f} ms (target: none above 1,000 ms)")
            for e in errors[:10]:
                print("error:", e)
        finally:
            server.terminate()
            server.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="2,000 items, 50 requests (with --large: 10,000 captures)")
    ap.add_argument("--items", type=int)
    ap.add_argument("--requests", type=int)
    ap.add_argument("--large", action="store_true", help="six clerks on a 100,000-capture store")
    ap.add_argument("--captures", type=int, help="with --large: the store's size")
    ap.add_argument("--store", help="with --large: a folder holding kit/ (a prepared copy of the cached store),"
                                    " copied for the run and never changed")
    ap.add_argument("--pace", type=float, default=0.0, metavar="S",
                    help="with --large: each clerk thinks S seconds per item (+-50 %%); 0: none (the default)")
    ap.add_argument("--profile", metavar="DIR", help="with --large: profile the server per route into DIR")
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--clerks", type=int, default=6)
    args = ap.parse_args()
    if args.large:
        large(args)
        return
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
