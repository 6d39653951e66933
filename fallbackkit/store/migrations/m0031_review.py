"""Review station: people who may log in, their server-side sessions, login attempts, queue indexes."""

SCHEMA = """
-- Passwords are stored as scrypt(password, salt) with the cost parameters used, never in clear.
CREATE TABLE users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL CHECK (role IN ('clerk', 'supervisor')),
    pw_hash TEXT NOT NULL,
    salt TEXT NOT NULL,
    kdf TEXT NOT NULL,              -- e.g. scrypt:n=16384,r=8,p=1
    lang TEXT NOT NULL DEFAULT 'en' CHECK (lang IN ('en', 'fr', 'nl')),
    active INTEGER NOT NULL DEFAULT 1,
    created_at TEXT NOT NULL,
    created_by TEXT
);

-- The cookie holds a random token; only its SHA-256 is stored, so a copy of the store opens no session.
CREATE TABLE review_sessions (
    token_hash TEXT PRIMARY KEY,
    user_name TEXT NOT NULL REFERENCES users(name),
    csrf TEXT NOT NULL,
    created_at REAL NOT NULL,       -- unix time: absolute expiry counts from here
    last_seen REAL NOT NULL,        -- idle expiry counts from here
    ended_at REAL,
    end_reason TEXT
);
CREATE INDEX review_sessions_user ON review_sessions (user_name);

CREATE TABLE login_attempts (
    id INTEGER PRIMARY KEY,
    user_name TEXT NOT NULL,
    at REAL NOT NULL,
    ok INTEGER NOT NULL,
    remote TEXT
);
CREATE INDEX login_attempts_user ON login_attempts (user_name, at);

-- The queue asks for "the next reading in review with no decision that counts": these make it one
-- index walk (LIMIT 1) instead of loading the whole queue.
CREATE INDEX readings_queue ON readings (status, reading_id);
CREATE INDEX IF NOT EXISTS reviews_undoes ON reviews (undoes);
CREATE INDEX reviews_reading_decision ON reviews (reading_id, decision, review_id)
"""
