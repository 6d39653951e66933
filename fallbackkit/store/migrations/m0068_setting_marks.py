"""A backup no longer marks every form for recomputing (issue 16).

m0065 marked all forms ('**') on any write to kit_meta, to catch a kit setting change. But
`backup` writes kit_meta too (the audit head the backup carries, `backup_audit_head`), which is
no setting: at 100,000 captures an hourly backup made the station's next decision recompute
every form (~2.5 min under the write lock). Every other key still marks all forms (fail closed:
a key added later is taken for a setting until said otherwise)."""

NOT_SETTINGS = ("backup_audit_head",)


def apply(db) -> None:
    conn = db.conn
    keys = ", ".join(f"'{k}'" for k in NOT_SETTINGS)
    for name, event in (("summary_setting", "INSERT"), ("summary_setting_changed", "UPDATE")):
        conn.execute(f"DROP TRIGGER IF EXISTS {name}")
        conn.execute(
            f"CREATE TRIGGER {name} AFTER {event} ON kit_meta WHEN NEW.key NOT IN ({keys}) BEGIN"
            " INSERT INTO summary_dirty (form_id) SELECT '**'"
            " WHERE NOT EXISTS (SELECT 1 FROM summary_dirty WHERE form_id = '**'); END")
