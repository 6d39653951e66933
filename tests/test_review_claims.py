"""Several clerks at once: the queue hands each clerk different readings (claims that expire).

Real concurrent HTTP requests against waitress on 127.0.0.1 (ServerThread), real SQLite. The
station's clock is the test's own (app.config["CLOCK"]), so expiry is tested without waiting.
"""
from __future__ import annotations

import json

import pytest

from fallbackkit.generate import print_ward
from fallbackkit.review import create_app
from fallbackkit.review import users as u
from fallbackkit.review.queue import CLAIM_SECONDS, queue_counts

from kit_helpers import census_kit
from review_helpers import PASSWORD, ServerThread, seed_queue
from test_review_race import Clerk, _all_at_once

CLERKS = 6


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def station(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("claims")
    kit = census_kit(tmp, {"3B": 2})
    print_ward(kit, "3B", tmp / "ward.pdf", actor="tester")
    for i in range(CLERKS):
        u.add_user(kit.db, f"clerk{i}", "clerk", PASSWORD, "tester")
    readings = seed_queue(kit, 40)
    app = create_app(kit.path)
    clock = Clock()
    app.config["CLOCK"] = clock
    with ServerThread(app) as server:
        yield kit, server, readings, clock
    kit.close()


@pytest.fixture
def clerks(station):
    kit, server, _, _ = station
    with kit.db.conn:
        kit.db.conn.execute("DELETE FROM review_claims")  # each test starts with nobody holding anything
    people = [Clerk(server.port, f"clerk{i}") for i in range(CLERKS)]
    yield people
    for c in people:
        c.conn.close()


def next_id(clerk: Clerk, after: int = 0, keep: int | None = None) -> int | None:
    status, data = clerk.request("GET", f"/api/next?after={after}" + (f"&keep={keep}" if keep else ""))
    assert status == 200, data
    got = json.loads(data)
    return None if got["done"] else got["reading"]["reading_id"]


def claims(kit) -> dict[int, str]:
    return dict(kit.db.conn.execute("SELECT reading_id, actor FROM review_claims"))


def test_six_clerks_asking_at_the_same_instant_get_six_different_readings(station, clerks):
    kit = station[0]
    for _ in range(3):  # and again, each clerk moving on from the reading they were handed
        got = _all_at_once(CLERKS, lambda i: next_id(clerks[i]) if not getattr(clerks[i], "last", None)
                           else next_id(clerks[i], clerks[i].last))
        assert None not in got and len(set(got)) == CLERKS, got
        held = claims(kit)
        assert {rid: held[rid] for rid in got} == {rid: f"clerk{i}" for i, rid in enumerate(got)}
        assert len(held) == CLERKS  # moving on ended each clerk's previous claim
        for c, rid in zip(clerks, got):
            c.last = rid


def test_a_claim_expires_and_a_renewed_one_does_not(station, clerks):
    kit, _, _, clock = station
    a, b, c = clerks[:3]
    x = next_id(a)
    assert next_id(b) != x
    clock.now += CLAIM_SECONDS - 60
    status, data = a.request("POST", "/api/claims", json.dumps({"reading_ids": [x]}).encode(),
                             {"Content-Type": "application/json", "X-CSRF-Token": a.csrf})
    assert status == 200 and json.loads(data)["held"] == [x]
    clock.now += 120  # past the first claim's end, within the renewed one
    assert next_id(c) != x
    clock.now += CLAIM_SECONDS  # the clerk left: nothing renews it, nothing stays stuck
    assert next_id(clerks[3]) == x


def test_a_decision_or_a_skip_frees_the_claim(station, clerks):
    kit = station[0]
    a, b = clerks[:2]
    x = next_id(a)
    assert a.decide(x) == 200
    assert x not in claims(kit)
    y = next_id(a, x)
    z = next_id(a, y)  # skip: the clerk moves on from y without deciding it
    assert z != y and y not in claims(kit) and claims(kit)[z] == "clerk0"
    assert next_id(b) == y  # the skipped reading goes to the next clerk who asks


def test_a_clerks_own_claimed_reading_comes_back_to_them(station, clerks):
    kit, server, _, _ = station
    a, b = clerks[:2]
    x = next_id(a)
    again = Clerk(server.port, "clerk0")  # a reload, or the same clerk on a new tab
    assert next_id(again) == x
    again.conn.close()
    assert next_id(b) != x


def test_a_prefetch_keeps_the_reading_on_screen_claimed(station, clerks):
    kit = station[0]
    a, b = clerks[:2]
    x = next_id(a)
    y = next_id(a, x, keep=x)  # the reading screen prefetches while x is on screen
    assert claims(kit)[x] == claims(kit)[y] == "clerk0"
    assert next_id(b) not in (x, y)


def test_skipping_the_last_unclaimed_reading_hands_it_back(station, clerks):
    kit, _, _, clock = station
    a, b = clerks[:2]
    x = next_id(a)
    with kit.db.conn:  # everything else waiting is on someone else's screen
        kit.db.conn.execute("INSERT INTO review_claims (reading_id, actor, claimed_at, expires_at)"
                            " SELECT reading_id, 'clerk5', ?, ? FROM readings WHERE status = 'review'"
                            " AND reading_id != ?", [clock.now, clock.now + CLAIM_SECONDS, x])
    assert next_id(a, x) == x  # the screen keeps it and says it is the last one (static/app.js)
    assert next_id(b) is None  # nothing free for another clerk: done, though others hold items
    status, data = b.request("GET", "/api/next")
    waiting = sum(queue_counts(kit.db).values())  # every waiting reading is on someone else's screen
    assert json.loads(data) == {"done": True, "claimed": waiting}  # the end screen says they are elsewhere
    assert b.decide(x) == 200  # a claim decides who is handed what, it never locks deciding (409 does)
    assert x not in claims(kit)
