"""The kit's language (`settings set language fr`, issue 12.7) marks no form for recomputing.

m0068 made every kit_meta key but the backup's audit head mark all forms ('**'), to catch a kit
setting that changes what a form means. The language only changes the words `scan` and
`quarantine list` print; no summary depends on it. Every other key still marks all forms."""
from __future__ import annotations

from .m0068_setting_marks import NOT_SETTINGS as BEFORE

NOT_SETTINGS = (*BEFORE, "language")


def apply(db) -> None:
    conn = db.conn
    keys = ", ".join(f"'{k}'" for k in NOT_SETTINGS)
    for name, event in (("summary_setting", "INSERT"), ("summary_setting_changed", "UPDATE")):
        conn.execute(f"DROP TRIGGER IF EXISTS {name}")
        conn.execute(
            f"CREATE TRIGGER {name} AFTER {event} ON kit_meta WHEN NEW.key NOT IN ({keys}) BEGIN"
            " INSERT INTO summary_dirty (form_id) SELECT '**'"
            " WHERE NOT EXISTS (SELECT 1 FROM summary_dirty WHERE form_id = '**'); END")
