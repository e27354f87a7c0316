"""The journal's SQLite file: its schema and migrations, privacy, and errors that name it.

Kept apart from journal.py (what is stored) so that each reads on its own.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from contextlib import suppress

from prewarm_cli.errors import ExitCode, JournalError

# 2: targets.transient (whether a failure may be resent by --resume)
# 3: targets kept in the order they came, their key (job, provider, URL) a unique index
SCHEMA_VERSION = 3


# A target's row is where it came in: a batch's targets, claimed in input order, lie side by
# side, and claiming or answering them rewrites a few pages instead of one per URL (keyed by
# URL, as up to schema 2, the rows of a batch were scattered across the table).
_TARGETS = """
CREATE TABLE IF NOT EXISTS {name} (
    job_id TEXT NOT NULL,
    provider TEXT NOT NULL,
    url TEXT NOT NULL,
    seq INTEGER NOT NULL,
    outcome TEXT NOT NULL DEFAULT 'unsent',
    batch_id INTEGER,
    task_id TEXT,
    reason TEXT,
    transient INTEGER NOT NULL DEFAULT 1  -- a failure --resume sends again
)"""
_TARGET_COLUMNS = "job_id, provider, url, seq, outcome, batch_id, task_id, reason, transient"

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
    skipped TEXT NOT NULL DEFAULT '[]',  -- JSON list: the first MAX_KEPT_SKIPPED
    n_skipped INTEGER                 -- all skipped (NULL: as many as the list holds)
);
{targets};
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
""".format(targets=_TARGETS.format(name="targets"))


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
            hint="free some space, then run the command again (a job it was sending:"
            " `prewarm submit --resume JOB`)",
        )
    if "disk i/o" in lowered:  # SQLite's word for a write the system refused (often space)
        return JournalError(
            f"the journal {path} failed: {text}",
            hint="check the disk under it (free space, errors), then run the command again;"
            " the journal is kept",
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


# The targets' indexes: their key, and their state. In the second a target's batch comes
# after its outcome: a batch's open targets (sending, unknown) are found by (job, provider,
# outcome, batch), and the unsent ones, whose batch is always NULL, in input order. One
# index for both purposes: every claimed or answered URL moves in each index it is in.
# The third holds the accepted targets only, by task id alone (a short key: each accepted URL
# costs it 0.3 µs, where one led by job and provider cost 1 µs): `status` reads a few tasks'
# URLs at a time. An index, not a schema change: a journal gets it when opened (an older
# prewarm keeps it up to date, as SQLite does every index).
_TARGETS_INDEXES = (
    "CREATE UNIQUE INDEX IF NOT EXISTS targets_by_url ON targets (job_id, provider, url)",
    "CREATE INDEX IF NOT EXISTS targets_by_state"
    " ON targets (job_id, provider, outcome, batch_id, seq)",
    "CREATE INDEX IF NOT EXISTS accepted_by_task ON targets (task_id) WHERE outcome = 'accepted'",
)


def _keyed_by_url(db: sqlite3.Connection) -> bool:
    """Whether the targets are a table keyed by URL (schema 2 and before)."""
    row = db.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'targets'")
    return "WITHOUT ROWID" in row.fetchone()[0].upper()


# Targets from which moving a journal's targets is worth a word: about 4 s.
_MOVE_NOTED = 1_000_000


def _put_targets_in_order(db: sqlite3.Connection, note: Callable[[str], None] | None) -> None:
    """Moves the targets of an earlier journal into a table in input order (per job and
    provider), with today's indexes; those of before go with their table. An unsent target
    names no batch, which a journal from before may not have kept. A long move is announced
    (``note``): the journal is locked meanwhile."""
    if note is not None:
        (n_targets,) = db.execute("SELECT COUNT(*) FROM targets").fetchone()
        if n_targets >= _MOVE_NOTED:
            note(
                f"the journal moves its {n_targets:,} targets to this version's layout, once"
                f" (about {n_targets // 250_000} s)"
            )
    db.execute(_TARGETS.format(name="targets_in_order"))
    db.execute(
        f"INSERT INTO targets_in_order ({_TARGET_COLUMNS})"
        " SELECT job_id, provider, url, seq, outcome,"
        " CASE WHEN outcome = 'unsent' THEN NULL ELSE batch_id END,"
        " task_id, reason, transient FROM targets ORDER BY job_id, provider, seq, url"
    )
    db.execute("DROP TABLE targets")
    db.execute("ALTER TABLE targets_in_order RENAME TO targets")


def migrate(db: sqlite3.Connection, note: Callable[[str], None] | None = None) -> None:
    """Creates the tables, or brings an older journal's up to this version (one transaction);
    ``note`` tells the user of a long move."""
    db.executescript(_SCHEMA)  # idempotent: CREATE ... IF NOT EXISTS
    db.execute("BEGIN IMMEDIATE")
    try:
        row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is not None and int(row[0]) < 2:
            columns = {r[1] for r in db.execute("PRAGMA table_info(targets)")}
            if "transient" not in columns:
                db.execute("ALTER TABLE targets ADD COLUMN transient INTEGER NOT NULL DEFAULT 1")
        if "n_skipped" not in {r[1] for r in db.execute("PRAGMA table_info(jobs)")}:
            db.execute("ALTER TABLE jobs ADD COLUMN n_skipped INTEGER")
        if _keyed_by_url(db):
            _put_targets_in_order(db, note)
        for index in _TARGETS_INDEXES:
            db.execute(index)
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
