"""The version of what a kept summary holds, so that a merge may copy another station's (issue 16).

A merge used to recompute every merged form's summary (~45 s CPU at 100,000 captures). For a form
this station holds nothing of, the other station's kept summary is the answer, provided it was
made by the same summary code: kit_meta 'summary_version' names it (reconcile/summary.py
SUMMARY_VERSION). The key is no setting (it marks no form). Summaries kept before this version are
not known to be of it: every form is marked for recomputing (once, at the first refresh)."""
from __future__ import annotations

from .m0071_language_setting import NOT_SETTINGS as BEFORE

NOT_SETTINGS = (*BEFORE, "summary_version")
SUMMARY_VERSION = "1"  # reconcile/summary.py SUMMARY_VERSION at this migration


def apply(db) -> None:
    conn = db.conn
    keys = ", ".join(f"'{k}'" for k in NOT_SETTINGS)
    for name, event in (("summary_setting", "INSERT"), ("summary_setting_changed", "UPDATE")):
        conn.execute(f"DROP TRIGGER IF EXISTS {name}")
        conn.execute(
            f"CREATE TRIGGER {name} AFTER {event} ON kit_meta WHEN NEW.key NOT IN ({keys}) BEGIN"
            " INSERT INTO summary_dirty (form_id) SELECT '**'"
            " WHERE NOT EXISTS (SELECT 1 FROM summary_dirty WHERE form_id = '**'); END")
    conn.execute("INSERT INTO kit_meta (key, value) VALUES ('summary_version', ?) ON CONFLICT (key) DO UPDATE"
                 " SET value = excluded.value", [SUMMARY_VERSION])
    conn.execute("INSERT INTO summary_dirty (form_id) SELECT '**'"
                 " WHERE NOT EXISTS (SELECT 1 FROM summary_dirty WHERE form_id = '**')")
