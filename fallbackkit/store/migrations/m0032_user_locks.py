"""Review station: a supervisor can unlock a locked name; attempts made while locked do not extend the lock."""

SCHEMA = """
-- Failed logins before this time no longer count towards a lock (set by `users unlock`).
ALTER TABLE users ADD COLUMN unlocked_at REAL;
-- 1 when the name was already locked at the attempt: recorded, but it does not make the lock longer.
ALTER TABLE login_attempts ADD COLUMN while_locked INTEGER NOT NULL DEFAULT 0
"""
