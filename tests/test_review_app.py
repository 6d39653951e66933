"""Review station through Flask's test client: sessions, CSRF, roles, the queue, decisions, images."""
from __future__ import annotations

import json
import re
import time

import pytest
from click.testing import CliRunner

from fallbackkit.cli import cli
from fallbackkit.review import create_app
from fallbackkit.review.app import PUBLIC_ENDPOINTS
from fallbackkit.review import users as u
from fallbackkit.review.queue import kit_file, next_reading
from fallbackkit.store.audit import verify_audit
from fallbackkit.store.decisions import current_review

from review_helpers import PASSWORD, add_people, audit_rows, build_scenario
from kit_helpers import census_kit


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("review")
    kit = census_kit(tmp)
    sc = build_scenario(kit, tmp)
    add_people(kit)
    yield sc
    kit.close()


@pytest.fixture(scope="module")
def app(scenario):
    return create_app(scenario.kit.path)


def login(client, name: str, password: str = PASSWORD):
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    return client.post("/login", data={"name": name, "password": password, "csrf_token": token})


def csrf_of(client) -> str:
    html = client.get("/queue").get_data(as_text=True)
    return re.search(r'<meta name="csrf-token" content="([^"]+)"', html).group(1)


def _url(rule) -> str:
    return re.sub(r"<(?:int:)?[^>]+>", "1", rule.rule)


def test_every_route_refuses_a_request_without_a_session(app):
    client = app.test_client()
    checked = 0
    for rule in app.url_map.iter_rules():
        if rule.endpoint in PUBLIC_ENDPOINTS:
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            resp = client.open(_url(rule), method=method, data={"csrf_token": "x"})
            assert resp.status_code in (302, 401), (rule.rule, method, resp.status_code)
            if resp.status_code == 302:
                assert resp.headers["Location"].startswith("/login")
            checked += 1
    assert checked >= 20


def test_login_sets_strict_httponly_cookie_and_security_headers(app):
    client = app.test_client()
    resp = login(client, "clara")
    assert resp.status_code == 302
    cookie = resp.headers["Set-Cookie"]
    assert "fk_session=" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    page = client.get("/")
    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert "unsafe-inline" not in page.headers["Content-Security-Policy"]
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["Cache-Control"] == "no-store"
    assert "<script>" not in page.get_data(as_text=True)  # no inline script


def test_wrong_password_is_refused_and_repeated_failures_lock_the_name(app, scenario):
    client = app.test_client()
    assert login(client, "clara", "wrong password").status_code == 401
    assert client.get("/").status_code == 302
    # a fresh name so other tests keep working
    u.add_user(scenario.kit.db, "lockme", "clerk", PASSWORD, "tester")
    for _ in range(u.LOCK_FAILURES):
        assert login(client, "lockme", "nope nope").status_code == 401
    resp = login(client, "lockme", PASSWORD)  # right password, but locked for the window
    assert resp.status_code == 401 and "15" in resp.get_data(as_text=True)
    assert u.authenticate(scenario.kit.db, "lockme", PASSWORD, now=time.time() + u.LOCK_WINDOW_SECONDS + 1)


def test_login_form_needs_its_csrf_token(app):
    client = app.test_client()
    resp = client.post("/login", data={"name": "clara", "password": PASSWORD})
    assert resp.status_code == 403
    assert client.get("/").status_code == 302


def test_password_is_stored_as_salted_scrypt(scenario):
    rows = scenario.kit.db.conn.execute("SELECT name, pw_hash, salt, kdf FROM users").fetchall()
    hashes = {r[1] for r in rows}
    assert len(hashes) == len(rows)  # same password, different salts
    for name, digest, salt, kdf in rows:
        assert PASSWORD not in digest and kdf.startswith("scrypt:")
        assert digest == u.hash_password(PASSWORD, bytes.fromhex(salt))


def test_sessions_expire_when_idle_or_too_old_and_on_logout(scenario):
    db = scenario.kit.db
    user = u.User("clara", "clerk", "en")
    t0 = 1_000_000.0
    token, _ = u.start_session(db, user, now=t0)
    assert u.load_session(db, token, now=t0 + 60) is not None
    assert u.load_session(db, token, now=t0 + 60 + u.SESSION_IDLE_SECONDS + 1) is None
    assert u.load_session(db, token, now=t0 + 120) is None  # ended for good
    token, _ = u.start_session(db, user, now=t0)
    now = t0
    while now < t0 + u.SESSION_MAX_SECONDS - 600:  # stays active all day ...
        now += 600
        assert u.load_session(db, token, now=now) is not None
    assert u.load_session(db, token, now=t0 + u.SESSION_MAX_SECONDS + 1) is None  # ... but not longer


def test_logout_ends_the_session(app):
    client = app.test_client()
    login(client, "clara")
    token = csrf_of(client)
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/queue").status_code == 302


def test_posts_without_the_csrf_token_are_refused(app, scenario):
    client = app.test_client()
    login(client, "sam")
    rid = next_reading(scenario.kit.db)
    posts = [("/api/readings/%d/decision" % rid, {"json": {"decision": "illegible", "seen_review_id": None}}),
             ("/reviews/1/undo", {"data": {}}), ("/logout", {"data": {}}), ("/lang", {"data": {"lang": "nl"}}),
             ("/conflicts/resolve", {"data": {"sheet_id": scenario.lab_sheet, "field": "priority", "value": '"stat"'}}),
             ("/worklist/mark", {"data": {"item_id": "x", "status": "entered"}}),
             ("/quarantine/1/assign", {"data": {"sheet_id": scenario.quarantine_sheet}}),
             ("/identities/link", {"data": {"downtime_mrn": "DTM1", "real_mrn": "1"}})]
    for path, kw in posts:
        assert client.post(path, **kw).status_code == 403, path
        kw2 = dict(kw)
        kw2["headers"] = {"X-CSRF-Token": "forged"}
        assert client.post(path, **kw2).status_code == 403, path
    assert current_review(scenario.kit.db, rid) is None  # nothing was decided
    assert client.get("/queue").status_code == 200  # still logged in: logout was refused too


def _decide(client, token, rid, decision, value=None, seen=None):
    return client.post(f"/api/readings/{rid}/decision", headers={"X-CSRF-Token": token},
                       json={"decision": decision, "value": value, "seen_review_id": seen})


def test_decision_is_validated_recorded_with_the_user_and_undone_only_by_a_supervisor(app, scenario):
    db = scenario.kit.db
    clerk = app.test_client()
    login(clerk, "clara")
    token = csrf_of(clerk)
    nxt = clerk.get("/api/next").get_json()
    reading = nxt["reading"]
    assert reading["status"] == "review" and reading["reason"]
    rid = reading["reading_id"]
    assert reading["field"] == "fasting" and reading["options"] == [True, False]
    assert reading["field_label"] == "Fasting"  # as printed on the form, in the clerk's language
    assert _decide(clerk, token, rid, "correct", "maybe").status_code == 400  # not an option
    resp = _decide(clerk, token, rid, "correct", True)
    assert resp.status_code == 200
    review_id = resp.get_json()["review_id"]
    assert current_review(db, rid)["actor"] == "clara" and current_review(db, rid)["value"] is True
    last = audit_rows(scenario.kit, "review.")[-1]
    assert last["actor"] == "clara" and last["after"]["value"] is True and last["object"] == f"reading:{rid}"
    # the queue moved on; a second clerk still holding the old item is told, not silently overwritten
    assert clerk.get("/api/next").get_json()["reading"]["reading_id"] != rid
    assert _decide(clerk, token, rid, "correct", False, seen=None).status_code == 409
    # a clerk cannot undo a decision of an earlier session (their own decisions of this session: see
    # test_review_station15), nor a supervisor's list
    time.sleep(1.1)
    later = app.test_client()
    login(later, "clara")
    assert later.post(f"/reviews/{review_id}/undo", data={"csrf_token": csrf_of(later)}).status_code == 302
    assert 'class="flash error"' in later.get("/decisions").get_data(as_text=True)
    assert current_review(db, rid)["review_id"] == review_id
    # a supervisor can: a new row, and the reading is back in the queue
    sup = app.test_client()
    login(sup, "sam")
    resp = sup.post(f"/reviews/{review_id}/undo", data={"csrf_token": csrf_of(sup)})
    assert resp.status_code == 302
    assert current_review(db, rid) is None
    undo = db.conn.execute("SELECT actor, undoes FROM reviews WHERE decision = 'undo'").fetchall()
    assert ("sam", review_id) in undo
    assert db.conn.execute("SELECT COUNT(*) FROM reviews WHERE review_id = ?", [review_id]).fetchone()[0] == 1
    assert audit_rows(scenario.kit, "review.undo")[-1]["actor"] == "sam"
    assert next_reading(db) == rid
    assert verify_audit(db)[1] is None


def test_queue_is_the_latest_capture_and_filters_by_ward_form_reason(scenario):
    db = scenario.kit.db
    latest = db.conn.execute("SELECT MAX(capture_id) FROM captures WHERE sheet_id = ?", [scenario.lab_sheet]).fetchone()[0]
    rid = next_reading(db)
    cap = db.conn.execute("SELECT capture_id FROM readings WHERE reading_id = ?", [rid]).fetchone()[0]
    assert cap == latest  # the earlier capture's readings do not wait twice
    assert next_reading(db, ward="ICU") is None
    assert next_reading(db, ward="3B", template="lab-request") == rid
    assert next_reading(db, template="vitals") is None
    text = next_reading(db, reason="to_transcribe")
    assert next_reading(db, reason="to transcribe") == text  # a link saved before the codes still works
    assert db.conn.execute("SELECT field FROM readings WHERE reading_id = ?", [text]).fetchone()[0] == "diagnosis"
    # skipping past the last item wraps round to the first
    assert next_reading(db, after=text) in (rid, text)


def test_screens_render_in_the_users_language(app, scenario):
    client = app.test_client()
    login(client, "sam")  # sam reads French
    for path in ("/", "/queue", "/review", "/conflicts", "/quarantine", "/identities", "/worklist", "/decisions"):
        resp = client.get(path)
        assert resp.status_code == 200, path
    home = client.get("/").get_data(as_text=True)
    assert "Tableau de bord" in home
    row = re.search(r'<tr data-ward="3B"><th>3B</th><td>(\d+)</td><td>(\d+)</td>', home)
    printed = scenario.kit.db.conn.execute("SELECT COUNT(*) FROM sheets s JOIN forms f USING (form_id)"
                                           " WHERE f.ward = '3B'").fetchone()[0]
    assert row and int(row.group(1)) == printed and int(row.group(2)) >= 1
    client.post("/lang", data={"lang": "nl", "csrf_token": csrf_of(client)})
    assert "Overzicht" in client.get("/").get_data(as_text=True)
    client.post("/lang", data={"lang": "fr", "csrf_token": csrf_of(client)})
    cap = scenario.kit.db.conn.execute("SELECT MAX(capture_id) FROM captures WHERE status = 'read'").fetchone()[0]
    page = client.get(f"/page/{cap}").get_data(as_text=True)
    assert page.count("<polygon") >= 10  # every field of the page drawn over it


def test_images_are_served_from_the_kit_only(app, scenario, tmp_path):
    client = app.test_client()
    login(client, "clara")
    rid = next_reading(scenario.kit.db)
    img = client.get(f"/img/crop/{rid}")
    assert img.status_code == 200 and img.data[:4] == b"\x89PNG"
    img.close()
    conn = scenario.kit.db.conn
    with conn:
        cap = conn.execute("SELECT capture_id FROM readings WHERE reading_id = ?", [rid]).fetchone()[0]
        bad = conn.execute("INSERT INTO readings (capture_id, sheet_id, field, type, raw, value, confidence, status,"
                           " crop_path) VALUES (?, ?, 'evil', 'text', '{}', NULL, 0, 'accepted', '../secret.key')",
                           [cap, scenario.lab_sheet]).lastrowid
    assert client.get(f"/img/crop/{bad}").status_code == 404
    with pytest.raises(Exception):
        kit_file(scenario.kit.path, "/etc/passwd")
    with pytest.raises(Exception):
        kit_file(scenario.kit.path, "pages/../../secret.key")
    with conn:
        conn.execute("DELETE FROM readings WHERE reading_id = ?", [bad])


def test_image_routes_serve_only_the_kits_pages_and_crops(app, scenario):
    """A stored path naming any other file of the kit (the secret, the store), or a symlink out of
    pages/, gives 404: only page images and field crops are images."""
    client = app.test_client()
    login(client, "clara")
    conn = scenario.kit.db.conn
    kit = scenario.kit.path
    cap, page = conn.execute("SELECT capture_id, image_path FROM captures WHERE image_path IS NOT NULL"
                             " ORDER BY capture_id DESC LIMIT 1").fetchone()

    def status(path: str) -> int:
        resp = client.get(path)
        resp.close()
        return resp.status_code
    assert status(f"/img/page/{cap}") == 200
    link = kit / "pages" / "link-to-secret.png"
    link.symlink_to(kit / "secret.key")
    try:
        for stored in ("secret.key", "store.sqlite", "kit.json", "pages/../secret.key", str(kit / "secret.key"),
                       "pages/link-to-secret.png", "form_templates", "pages"):
            with conn:
                conn.execute("UPDATE captures SET image_path = ? WHERE capture_id = ?", [stored, cap])
                bad = conn.execute(
                    "INSERT INTO readings (capture_id, sheet_id, field, type, raw, value, confidence, status,"
                    " crop_path) VALUES (?, ?, 'evil', 'text', '{}', NULL, 0, 'accepted', ?)",
                    [cap, scenario.lab_sheet, stored]).lastrowid
            try:
                assert status(f"/img/page/{cap}") == 404, stored
                assert status(f"/img/crop/{bad}") == 404, stored
            finally:
                with conn:
                    conn.execute("DELETE FROM readings WHERE reading_id = ?", [bad])
    finally:
        link.unlink()
        with conn:
            conn.execute("UPDATE captures SET image_path = ? WHERE capture_id = ?", [page, cap])
    assert status(f"/img/page/{cap}") == 200


def test_users_commands(scenario):
    runner = CliRunner()
    base = ["--kit", str(scenario.kit.path), "--user", "admin"]
    res = runner.invoke(cli, [*base, "users", "add", "nora", "--role", "clerk", "--lang", "nl"],
                        input="long enough pw\n")
    assert res.exit_code == 0, res.output
    assert u.authenticate(scenario.kit.db, "nora", "long enough pw").lang == "nl"
    res = runner.invoke(cli, [*base, "users", "add", "nora", "--role", "clerk"], input="long enough pw\n")
    assert res.exit_code == 6 and "already exists" in res.output
    res = runner.invoke(cli, [*base, "users", "add", "shorty", "--role", "clerk"], input="short\n")
    assert res.exit_code == 4 and "too short" in res.output
    res = runner.invoke(cli, [*base, "users", "list", "--json"])
    listed = {r["name"]: r for r in json.loads(res.output)}
    assert listed["nora"]["role"] == "clerk" and listed["sam"]["role"] == "supervisor"
    assert "pw_hash" not in listed["nora"]
    assert audit_rows(scenario.kit, "user.add")[-1]["actor"] == "admin"


def test_next_item_is_one_index_walk_not_a_scan_of_the_queue(scenario):
    from fallbackkit.review.queue import next_sql
    conn = scenario.kit.db.conn
    for kw in ({}, {"ward": "3B"}, {"template": "lab-request", "reason": "to transcribe"}):
        sql, params = next_sql(**kw)
        plan = " | ".join(r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + sql, [0, *params]))
        # walks (status, reading_id) in order, or with a reason (reason, reading_id) of those in review ...
        assert "readings_queue" in plan or ("reason" in kw and "readings_review_reason" in plan), plan
        assert "USE TEMP B-TREE FOR ORDER BY" not in plan, plan  # ... so LIMIT 1 stops at the first
        assert "reviews_reading_decision" in plan or "reviews_reading" in plan, plan
        assert "reviews_undoes" in plan, plan


def test_an_item_cannot_be_marked_entered_while_readings_wait(app, scenario):
    client = app.test_client()
    login(client, "clara")
    token = csrf_of(client)
    from fallbackkit.reconcile import worklist
    waiting = next(i for i in worklist(scenario.kit) if not i.resolved)
    resp = client.post("/worklist/mark", data={"item_id": waiting.item_id, "status": "entered", "csrf_token": token})
    assert resp.status_code == 302
    assert 'class="flash error"' in client.get("/worklist").get_data(as_text=True)
    conn = scenario.kit.db.conn
    assert conn.execute("SELECT COUNT(*) FROM worklist_marks WHERE item_id = ?", [waiting.item_id]).fetchone()[0] == 0
    client.post("/worklist/mark", data={"item_id": waiting.item_id, "status": "not-needed", "csrf_token": token})
    assert conn.execute("SELECT status, actor FROM worklist_marks WHERE item_id = ?",
                        [waiting.item_id]).fetchall() == [("not-needed", "clara")]
    assert audit_rows(scenario.kit, "worklist.")[-1]["actor"] == "clara"


def test_a_downtime_mrn_is_linked_with_one_action(app, scenario, tmp_path):
    from fallbackkit.generate import print_blank
    print_blank(scenario.kit, "registration", 1, tmp_path / "blank.pdf", actor="tester")
    dt = scenario.kit.db.conn.execute("SELECT value FROM downtime_ids WHERE kind = 'mrn'").fetchone()[0]
    client = app.test_client()
    login(client, "clara")
    html = client.get("/identities").get_data(as_text=True)
    assert f'data-mrn="{dt}"' in html
    token = csrf_of(client)
    client.post("/identities/link", data={"downtime_mrn": dt, "real_mrn": "100345", "csrf_token": token})
    links = scenario.kit.db.conn.execute("SELECT real_mrn, actor FROM identity_links WHERE downtime_mrn = ?",
                                         [dt]).fetchall()
    assert links == [("100345", "clara")]
    assert audit_rows(scenario.kit, "identity.link")[-1]["actor"] == "clara"
    # linking the same downtime MRN to another patient would split a record: refused, shown, nothing stored
    client.post("/identities/link", data={"downtime_mrn": dt, "real_mrn": "999999", "csrf_token": token})
    assert 'class="flash error"' in client.get("/identities").get_data(as_text=True)
    assert scenario.kit.db.conn.execute("SELECT COUNT(*) FROM identity_links WHERE downtime_mrn = ?",
                                        [dt]).fetchone()[0] == 1


def _fake_server(monkeypatch) -> list:
    import fallbackkit.review as review
    calls: list = []
    monkeypatch.setattr(review, "make_server",
                        lambda kit_dir, host, port, tls=None: calls.append((str(kit_dir), host, port, tls)))
    monkeypatch.setattr(review, "run_server", lambda server: None)
    return calls


def test_review_command_serves_on_localhost_by_default(scenario, monkeypatch):
    calls = _fake_server(monkeypatch)
    runner = CliRunner()
    res = runner.invoke(cli, ["--kit", str(scenario.kit.path), "review"])
    assert res.exit_code == 0, res.output
    assert calls == [(str(scenario.kit.path), "127.0.0.1", 8765, None)]  # plain HTTP on this PC only
    assert "http://127.0.0.1:8765/" in res.output


def test_review_on_the_network_needs_allow_network_and_always_warns(scenario, monkeypatch):
    calls = _fake_server(monkeypatch)
    runner = CliRunner()
    base = ["--kit", str(scenario.kit.path)]
    res = runner.invoke(cli, [*base, "review", "--host", "0.0.0.0", "--port", "9000"])
    assert res.exit_code == 4 and "--allow-network" in res.output and calls == []
    res = runner.invoke(cli, [*base, "--quiet", "review", "--host", "0.0.0.0", "--port", "9000", "--allow-network"])
    assert res.exit_code == 0, res.output
    assert calls[-1][1:3] == ("0.0.0.0", 9000) and "other machines" in res.output  # shown even with --quiet
    # other PCs get HTTPS only: the kit's own certificate, its fingerprint shown even with --quiet
    assert calls[-1][3] is not None and calls[-1][3].fingerprint in res.output
    for host in ("127.0.0.2", "localhost", "::1"):  # loopback: no flag needed
        assert runner.invoke(cli, [*base, "review", "--host", host]).exit_code == 0, host
    res = runner.invoke(cli, [*base, "review", "--host", "::1"])
    assert "http://[::1]:8765/" in res.output and "warning" not in res.output


def test_review_port_out_of_range_is_a_usage_error_and_a_port_in_use_is_one_line(scenario):
    import socket
    runner = CliRunner()
    base = ["--kit", str(scenario.kit.path)]
    for port in ("0", "65536", "-1", "99999999999999999999"):
        res = runner.invoke(cli, [*base, "review", "--port", port])
        assert res.exit_code == 2 and "1<=x<=65535" in res.output.replace(" ", ""), (port, res.output)
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        res = runner.invoke(cli, [*base, "review", "--port", str(taken.getsockname()[1])])
    finally:
        taken.close()
    assert res.exit_code == 6 and "already in use" in res.output
    assert res.output.strip().count("\n") == 0 and "Traceback" not in res.output and res.exception is not None


def test_login_only_redirects_to_pages_of_the_station(app):
    for target, expected in (("/worklist", "/worklist"), ("//evil.example/x", "/"), ("/\\evil.example", "/"),
                             ("https://evil.example/", "/")):
        client = app.test_client()
        page = client.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)).group(1)
        resp = client.post("/login", data={"name": "clara", "password": PASSWORD, "csrf_token": token,
                                           "next": target})
        assert resp.status_code == 302 and resp.headers["Location"] == expected, target


def test_a_conflict_on_a_mark_field_is_settled_with_its_options_only(app, scenario):
    from fallbackkit.reconcile import form_readings, reconcile
    client = app.test_client()
    login(client, "clara")
    token = csrf_of(client)
    html = client.get("/conflicts").get_data(as_text=True)
    assert 'data-field="priority"' in html and 'name="typed"' not in html  # options, not free text
    resp = client.post("/conflicts/resolve", data={"sheet_id": scenario.lab_sheet, "field": "priority",
                                                   "typed": "very urgent", "csrf_token": token})
    assert resp.status_code == 400
    resp = client.post("/conflicts/resolve", data={"sheet_id": scenario.lab_sheet, "field": "priority",
                                                   "value": '"stat"', "csrf_token": token})
    assert resp.status_code == 302
    assert form_readings(scenario.kit, scenario.lab_sheet)["priority"]["value"] == "stat"
    assert not any(c["field"] == "priority" and not c["resolved"]
                   for f in reconcile(scenario.kit)["forms"] for c in f["conflicts"])
    assert audit_rows(scenario.kit, "review.")[-1]["actor"] == "clara"


def _ward_counts(client) -> dict[str, list[str]]:
    html = client.get("/").get_data(as_text=True)
    rows = re.findall(r'<tr data-ward="([^"]+)">(.*?)</tr>', html, re.S)
    return {ward: re.findall(r"<td[^>]*>(?:<a[^>]*>)?(\d+)", cells) for ward, cells in rows}


def test_dashboard_counts_follow_the_store(app, scenario):
    """The dashboard's reconcile is cached, but every decision shows at once."""
    from fallbackkit.reconcile import reconcile
    clerk = app.test_client()
    login(clerk, "clara")
    before = _ward_counts(clerk)
    report = reconcile(scenario.kit)
    printed = sum(int(c[0]) for c in before.values())
    assert printed == report["totals"]["sheets_printed"]
    assert sum(int(c[3]) for c in before.values()) == report["totals"]["readings_to_review"]
    assert _ward_counts(clerk) == before  # served again from the cache: same figures
    detail = clerk.get("/api/next").get_json()["reading"]  # the clerk's own claim, if they hold one
    rid = detail["reading_id"]
    ward = scenario.kit.db.conn.execute(
        "SELECT f.ward FROM readings r JOIN sheets s ON s.sheet_id = r.sheet_id JOIN forms f ON f.form_id = s.form_id"
        " WHERE r.reading_id = ?", [rid]).fetchone()[0] or "—"
    value = detail["options"][0] if detail.get("options") else "as written"
    assert _decide(clerk, csrf_of(clerk), rid, "correct" if detail.get("options") else "transcribe",
                   value).status_code == 200
    after = _ward_counts(clerk)
    assert int(after[ward][3]) == int(before[ward][3]) - 1


def test_worklist_shows_the_labels_printed_on_the_form(app, scenario):
    """Values to re-enter are named as on the paper, in the user's language (sam reads French)."""
    sup = app.test_client()
    login(sup, "sam")
    html = sup.get("/worklist?status=all").get_data(as_text=True)
    assert '<dt>Priorité</dt>' in html and 'title="priority"' not in html  # labels, no internal keys
    assert '<dt>Signature du médecin</dt>' in html


def test_hostile_ids_and_bodies_give_400_or_404_never_500(app, scenario):
    client = app.test_client()
    login(client, "clara")
    token = csrf_of(client)
    rid = next_reading(scenario.kit.db)
    huge = "9" * 30
    for path in (f"/api/readings/{huge}", f"/readings/{huge}", f"/img/crop/{huge}", f"/img/page/{huge}",
                 f"/page/{2 ** 63}"):
        assert client.get(path).status_code == 404, path
    assert client.post(f"/api/readings/{huge}/decision", headers={"X-CSRF-Token": token},
                       json={"decision": "illegible"}).status_code == 404
    for path in (f"/api/next?after={huge}", "/api/next?after=-1", "/review?start=x1"):
        assert client.get(path).status_code == 400, path
    for body in ([1, 2], "confirm", 7, None):  # JSON, but not an object
        resp = client.post(f"/api/readings/{rid}/decision", headers={"X-CSRF-Token": token}, json=body)
        assert resp.status_code == 400 and "JSON object" in resp.get_json()["error"], body
    for extra in ({"note": 12}, {"note": ["a"]}, {"note": "n" * 501}, {"seen_review_id": 2 ** 70},
                  {"seen_review_id": "1"}):
        resp = client.post(
            f"/api/readings/{rid}/decision", headers={"X-CSRF-Token": token},
            json={"decision": "illegible", "seen_review_id": None, **extra})
        assert resp.status_code == 400, extra
    assert client.post(f"/api/readings/{rid}/decision", headers={"X-CSRF-Token": token},
                       data=b"\xff\xfe not json", content_type="application/json").status_code == 400
    # every free-text form input has a limit
    for path, data in (("/identities/link", {"downtime_mrn": "DTM1", "real_mrn": "1", "reason": "r" * 501}),
                       ("/worklist/mark", {"item_id": "x", "status": "entered", "note": "n" * 501}),
                       ("/conflicts/resolve", {"sheet_id": scenario.lab_sheet, "field": "diagnosis",
                                               "typed": "t" * 501}),
                       ("/conflicts/resolve", {"sheet_id": scenario.lab_sheet, "field": "priority",
                                               "value": '"stat"', "capture_id": huge})):
        assert client.post(path, data={**data, "csrf_token": token}).status_code == 400, path
    assert current_review(scenario.kit.db, rid) is None  # nothing of it was stored


def test_a_huge_anonymous_body_is_refused_before_it_is_read(scenario):
    """waitress's body limit is the app's: 300 MB announced, a few bytes sent, 413 at once."""
    import http.client
    from fallbackkit.review.app import MAX_BODY
    from review_helpers import ServerThread
    with ServerThread(create_app(scenario.kit.path)) as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.putrequest("POST", "/login")
        conn.putheader("Content-Type", "application/x-www-form-urlencoded")
        conn.putheader("Content-Length", str(300 * 1024 * 1024))
        conn.endheaders()
        conn.send(b"name=x&" * 100)
        t0 = time.perf_counter()
        resp = conn.getresponse()
        assert resp.status == 413 and time.perf_counter() - t0 < 5
        conn.close()
        assert server.server.adj.max_request_body_size == MAX_BODY


def test_a_lock_does_not_grow_while_locked_and_a_supervisor_can_lift_it(app, scenario):
    db = scenario.kit.db
    u.add_user(db, "guessed", "clerk", PASSWORD, "tester")
    t0 = time.time() - 3 * u.LOCK_WINDOW_SECONDS
    for k in range(u.LOCK_FAILURES):
        assert u.authenticate(db, "guessed", "wrong guess", now=t0 + k) is None
    for k in range(20):  # someone keeps guessing while the name is locked
        assert u.authenticate(db, "guessed", "still guessing", now=t0 + 600 + k) is None
    assert u.authenticate(db, "guessed", PASSWORD, now=t0 + 700) is None  # still locked
    # the lock ends one window after the failures that set it, not after the last guess
    assert u.authenticate(db, "guessed", PASSWORD, now=t0 + u.LOCK_WINDOW_SECONDS + 10) is not None
    # locked again now; a supervisor lifts it at once from the command line
    client = app.test_client()
    for _ in range(u.LOCK_FAILURES):
        login(client, "guessed", "wrong again")
    assert login(client, "guessed").status_code == 401
    runner = CliRunner()
    base = ["--kit", str(scenario.kit.path), "--user", "sam"]
    res = runner.invoke(cli, [*base, "users", "list", "--json"])
    assert {r["name"]: r["locked"] for r in json.loads(res.output)}["guessed"] is True
    res = runner.invoke(cli, [*base, "users", "unlock", "guessed"])
    assert res.exit_code == 0 and "unlocked" in res.output, res.output
    assert login(client, "guessed").status_code == 302
    assert audit_rows(scenario.kit, "user.unlock")[-1]["actor"] == "sam"
    assert runner.invoke(cli, [*base, "users", "unlock", "nobody"]).exit_code == 5


def test_a_disabled_user_cannot_log_in_and_their_sessions_end(app, scenario):
    db = scenario.kit.db
    u.add_user(db, "leaver", "clerk", PASSWORD, "tester")
    client = app.test_client()
    assert login(client, "leaver").status_code == 302
    assert client.get("/queue").status_code == 200
    runner = CliRunner()
    base = ["--kit", str(scenario.kit.path), "--user", "sam"]
    res = runner.invoke(cli, [*base, "users", "disable", "leaver"])
    assert res.exit_code == 0 and "1 open session ended" in res.output, res.output
    assert client.get("/queue").status_code == 302  # logged out at once
    assert db.conn.execute("SELECT end_reason FROM review_sessions WHERE user_name = 'leaver'").fetchall() == \
        [("disabled",)]
    assert login(app.test_client(), "leaver").status_code == 401
    assert audit_rows(scenario.kit, "user.disable")[-1]["actor"] == "sam"
    assert runner.invoke(cli, [*base, "users", "enable", "leaver"]).exit_code == 0
    assert login(app.test_client(), "leaver").status_code == 302


def test_passwd_sets_a_new_password_and_ends_the_users_sessions(app, scenario):
    db = scenario.kit.db
    u.add_user(db, "forgetful", "clerk", PASSWORD, "tester")
    client = app.test_client()
    login(client, "forgetful")
    runner = CliRunner()
    base = ["--kit", str(scenario.kit.path), "--user", "sam"]
    assert runner.invoke(cli, [*base, "users", "passwd", "forgetful"], input="short\n").exit_code == 4
    res = runner.invoke(cli, [*base, "users", "passwd", "forgetful"], input="a brand new one\n")
    assert res.exit_code == 0, res.output
    assert client.get("/queue").status_code == 302
    assert u.authenticate(db, "forgetful", PASSWORD) is None
    assert u.authenticate(db, "forgetful", "a brand new one") is not None
    assert "brand" not in json.dumps(audit_rows(scenario.kit, "user.passwd"))


def test_a_supervisor_lifts_a_lock_in_the_station_a_clerk_cannot(app, scenario):
    u.add_user(scenario.kit.db, "fumbler", "clerk", PASSWORD, "tester")
    for _ in range(u.LOCK_FAILURES):
        login(app.test_client(), "fumbler", "wrong guess")
    clerk = app.test_client()
    login(clerk, "clara")
    assert clerk.get("/people").status_code == 403
    assert clerk.post("/people/fumbler/unlock", data={"csrf_token": csrf_of(clerk)}).status_code == 403
    assert u.is_locked(scenario.kit.db, "fumbler")
    sup = app.test_client()
    login(sup, "sam")
    html = sup.get("/people").get_data(as_text=True)
    assert re.search(r'data-user="fumbler">.*?badge warn.*?/people/fumbler/unlock', html, re.S)
    assert sup.post("/people/fumbler/unlock", data={"csrf_token": csrf_of(sup)}).status_code == 302
    assert not u.is_locked(scenario.kit.db, "fumbler")
    assert login(app.test_client(), "fumbler").status_code == 302
    assert audit_rows(scenario.kit, "user.unlock")[-1]["actor"] == "sam"
    assert sup.post("/people/nobody/unlock", data={"csrf_token": csrf_of(sup)}).status_code == 404
