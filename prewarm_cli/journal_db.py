"""The journal's SQLite file: its schema and migrations, privacy, and errors that name it.

Kept apart from journal.py (what is stored) so that each reads on its own.
"""

from __future__ import annotations

import sqlite3
import time
from contextlib import suppress

from prewarm_cli.errors import ExitCode, JournalError

# 2: targets.transient (whether a failure may be resent by --resume)
# (The targets' index changed without a version: each prewarm reads the other's journal.)
SCHEMA_VERSION = 2


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    state TEXT NOT NULL,
    providers TEXT NOT NULL,          -- JSON list of aliases
    options TEXT NOT NULL,            -- JSON: headers, extra, invalidate
    urls INTEGER NOT NULL DEFAULT 0,  -- distinct input URLs
    skipped TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE IF NOT EXISTS targets (
    job_id TEXT NOT NULL,
    provider TEXT NOT NULL,
    url TEXT NOT NULL,
    seq INTEGER NOT NULL,
    outcome TEXT NOT NULL DEFAULT 'unsent',
    batch_id INTEGER,
    task_id TEXT,
    reason TEXT,
    transient INTEGER NOT NULL DEFAULT 1,  -- a failure --resume sends again
    PRIMARY KEY (job_id, provider, url)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS batches (
    id INTEGER PRIMARY KEY,
    job_id TEXT NOT NULL,
    provider TEXT NOT NULL,
    kind TEXT NOT NULL DEFAULT 'prefetch',
    state TEXT NOT NULL,              -- sending | done | unknown (a part of a split: its own row)
    task_id TEXT,
    request_id TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    error TEXT
);
CREATE INDEX IF NOT EXISTS batches_by_job ON batches (job_id, provider, state);
CREATE TABLE IF NOT EXISTS tasks (
    job_id TEXT NOT NULL,
    provider TEXT NOT NULL,
    task_id TEXT NOT NULL,
    kind TEXT NOT NULL DEFAULT 'prefetch',
    urls INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    state TEXT,
    raw_state TEXT,
    PRIMARY KEY (job_id, provider, task_id)
);
"""


def error(path: str, exc: sqlite3.Error) -> JournalError:
    """One line naming the file and what to do, for any SQLite failure."""
    text = str(exc)
    lowered = text.lower()
    if "not a database" in lowered or "malformed" in lowered:
        return JournalError(
            f"the journal {path} is damaged ({text})",
            hint=f"move it aside (mv {path} {path}.bad) to start a new one;"
            " the jobs in it can no longer be resumed",
        )
    if "readonly" in lowered or "read-only" in lowered or "unable to open" in lowered:
        return JournalError(
            f"cannot write the journal {path} ({text})",
            hint="make its directory writable, or set PREWARM_STATE_DIR to one that is",
            exit_code=ExitCode.CONFIG,
        )
    if "disk" in lowered and "full" in lowered:
        return JournalError(
            f"cannot write the journal {path}: the disk is full",
            hint="free some space, then `prewarm submit --resume JOB` continues the job",
        )
    return JournalError(
        f"the journal {path} failed: {text}",
        hint="if this persists, move the file aside to start a new journal",
    )


def use_wal(db: sqlite3.Connection, timeout: float = 30.0) -> None:
    """Switches the file to WAL, waiting while another process holds it.

    Two runs opening a new journal at once race for the switch, and SQLite answers the loser
    "database is locked" at once, without its busy timeout: that is contention, not failure.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def check_version(db: sqlite3.Connection, path: str) -> None:
    """Refuses a journal written by a newer prewarm, before touching its schema."""
    has_meta = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
    ).fetchone()
    if not has_meta:
        return
    row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if row is not None and int(row[0]) > SCHEMA_VERSION:
        raise JournalError(
            f"the journal {path} has schema {row[0]}, newer than this prewarm"
            f" understands ({SCHEMA_VERSION})",
            hint="upgrade prewarm (pip install -U prewarm-cli), or set PREWARM_STATE_DIR"
            " to another directory",
            exit_code=ExitCode.CONFIG,
        )


# The one index of the targets besides their key. A target's batch comes after its outcome:
# a batch's open targets (sending, unknown) are found by (job, provider, outcome, batch), and
# the unsent ones, whose batch is always NULL, in input order. One index, not one per
# purpose: every claimed or answered URL moves in each index it is in.
_TARGETS_INDEX = (
    "CREATE INDEX targets_by_state ON targets (job_id, provider, outcome, batch_id, seq)"
)
_FORMER_INDEXES = ("targets_by_outcome", "targets_by_batch")


def _index_targets(db: sqlite3.Connection) -> None:
    """Creates the targets' index where it is missing (a new journal, or one written by a
    prewarm that kept an index per purpose, whose indexes it replaces)."""
    exists = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'targets_by_state'"
    ).fetchone()
    if not exists:
        # Unsent targets are found by a NULL batch; a journal from before might hold others.
        db.execute(
            "UPDATE targets SET batch_id = NULL WHERE outcome = 'unsent' AND batch_id IS NOT NULL"
        )
        db.execute(_TARGETS_INDEX)
    for name in _FORMER_INDEXES:  # also when an older prewarm made them again
        db.execute(f"DROP INDEX IF EXISTS {name}")


def migrate(db: sqlite3.Connection) -> None:
    """Creates the tables, or brings an older journal's up to this version (one transaction)."""
    db.executescript(_SCHEMA)  # idempotent: CREATE ... IF NOT EXISTS
    db.execute("BEGIN IMMEDIATE")
    try:
        row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is not None and int(row[0]) < 2:
            columns = {r[1] for r in db.execute("PRAGMA table_info(targets)")}
            if "transient" not in columns:
                db.execute("ALTER TABLE targets ADD COLUMN transient INTEGER NOT NULL DEFAULT 1")
        _index_targets(db)
        db.execute(
            "INSERT INTO meta (key, value) VALUES ('schema_version', ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (str(SCHEMA_VERSION),),
        )
    except BaseException:
        with suppress(sqlite3.Error):  # SQLite may have rolled back already (a full disk)
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
