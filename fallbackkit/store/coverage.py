"""Does every recorded decision have its audit row? (`check`, issue 9)

The audit chain shows when its own rows are changed; this shows when the tables it describes are
changed behind its back: a review's value, decision or author edited in `reviews`, a link added to
`identity_links`, a role raised in `users`, a patient's row changed in `patients`. Each such row is
compared, as a multiset, with what its audit rows recorded (rows a merge brought from another
station count too: they arrive wrapped in `merge.audit`). Nothing here is keyed by row ids, which
differ between stations.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from typing import Any, Iterator

PATIENT_COLUMNS = ("mrn", "encounter", "last_name", "first_name", "birth_date", "sex", "ward", "bed", "allergies")
MEDICATION_COLUMNS = ("mrn", "line", "medication", "dose", "route", "frequency", "scheduled_times", "prn",
                      "drug_code", "drug_code_system", "order_id", "start_date", "stop_date")


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def _load(text: Any) -> Any:
    if text is None or not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return None


def census_digest(conn, snapshot_id: int) -> str:
    """SHA-256 of a snapshot's patient and medication rows (recorded in its census.import audit row)."""
    h = hashlib.sha256()
    for table, columns, order in (("patients", PATIENT_COLUMNS, "mrn"),
                                  ("medications", MEDICATION_COLUMNS, "mrn, line")):
        h.update(table.encode())
        for row in conn.execute(f"SELECT {', '.join(columns)} FROM {table} WHERE snapshot_id = ? ORDER BY {order}",
                                [snapshot_id]):
            h.update(_canon(list(row)).encode("utf-8"))
    return h.hexdigest()


def _audit_rows(conn) -> Iterator[tuple[str, str | None, Any, Any, str]]:
    """(action, object, before, after, actor) of every audit row, merged ones unwrapped."""
    for action, obj, before, after, actor in conn.execute(
            "SELECT action, object, before, after, actor FROM audit ORDER BY id"):
        if action == "merge.audit":
            original = _load(after) or {}
            yield (original.get("action") or "", original.get("object"), _load(original.get("before")),
                   _load(original.get("after")), original.get("actor") or actor)
        else:
            yield action, obj, _load(before), _load(after), actor


def _compare(label: str, in_store: Counter, audited: Counter) -> list[str]:
    problems = []
    missing, gone = in_store - audited, audited - in_store
    if missing:
        first = next(iter(missing))
        problems.append(f"{sum(missing.values())} {label} without a matching audit row (changed or added directly "
                        f"in the store), e.g. {first[1:]}")
    if gone:
        first = next(iter(gone))
        problems.append(f"{sum(gone.values())} audited {label} missing from the store (deleted or changed "
                        f"directly), e.g. {first[1:]}")
    return problems


def audit_coverage(conn) -> list[str]:
    """Problems found: each names the kind of row and one example. Empty when everything is covered."""
    if hasattr(conn, "conn"):
        conn = conn.conn
    reviews_audited: Counter = Counter()
    links_audited: Counter = Counter()
    roles: dict[str, str] = {}
    snapshots: dict[int, dict] = {}
    for action, obj, before, after, actor in _audit_rows(conn):
        before = before if isinstance(before, dict) else {}
        after = after if isinstance(after, dict) else {}
        if action == "review.undo":
            reviews_audited[("undo", before.get("decision"), _canon(before.get("value")), before.get("by"), actor)] += 1
        elif action.startswith("review."):
            reviews_audited[("review", after.get("sheet_id"), after.get("field"), action[7:],
                             _canon(after.get("value")), actor)] += 1
        elif action in ("identity.link", "identity.unlink") and obj and obj.startswith("downtime_mrn:"):
            real = after.get("real_mrn") if action == "identity.link" else before.get("real_mrn")
            links_audited[(action[9:], obj.split(":", 1)[1], real, actor)] += 1
        elif action.startswith("user.") and obj and obj.startswith("user:") and "role" in after:
            roles[obj.split(":", 1)[1]] = after["role"]
        elif action == "census.import" and obj and obj.startswith("snapshot:"):
            try:
                snapshots[int(obj.split(":", 1)[1])] = after
            except ValueError:
                pass

    reviews_in_store: Counter = Counter()
    for decision, value, actor, sheet_id, field, u_decision, u_value, u_actor in conn.execute(
            "SELECT v.decision, v.value, v.actor, r.sheet_id, r.field, u.decision, u.value, u.actor"
            " FROM reviews v LEFT JOIN readings r ON r.reading_id = v.reading_id"
            " LEFT JOIN reviews u ON u.review_id = v.undoes"):
        if decision == "undo":
            reviews_in_store[("undo", u_decision, _canon(_load(u_value)), u_actor, actor)] += 1
        else:
            reviews_in_store[("review", sheet_id, field, decision, _canon(_load(value)), actor)] += 1
    problems = _compare("reviews", reviews_in_store, reviews_audited)

    links_in_store: Counter = Counter()
    for dt, real, actor, revokes in conn.execute("SELECT downtime_mrn, real_mrn, actor, revokes FROM identity_links"):
        links_in_store[("unlink" if revokes else "link", dt, real, actor)] += 1
    problems += _compare("identity links", links_in_store, links_audited)

    for name, role in conn.execute("SELECT name, role FROM users ORDER BY name"):
        if roles.get(name) != role:
            recorded = f"the audit log says {roles[name]}" if name in roles else "no audit row added this user"
            problems.append(f"user {name} has role {role} but {recorded} (changed directly in the store)")

    for sid, count in conn.execute("SELECT s.id, (SELECT count(*) FROM patients p WHERE p.snapshot_id = s.id)"
                                   " FROM census_snapshots s ORDER BY s.id"):
        recorded = snapshots.get(sid)
        if recorded is None:
            problems.append(f"census snapshot {sid} has no census.import audit row (added directly in the store)")
        elif recorded.get("census_sha256") and recorded["census_sha256"] != census_digest(conn, sid):
            problems.append(f"census snapshot {sid}: patients or medications differ from what was imported "
                            f"(changed directly in the store)")
        elif recorded.get("patients") is not None and recorded["patients"] != count:
            problems.append(f"census snapshot {sid}: {count} patients, {recorded['patients']} were imported")
    return problems
