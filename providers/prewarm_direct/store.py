"""The provider's record of every warm request, in its state directory.

A worker hands its answers over every ``COMMIT_EVERY`` seconds and at the end of a batch,
many at a time, and a writer thread commits whatever has arrived in one transaction every
``COMMIT_EVERY`` seconds, so that the workers do not pay a transaction, or a hand-over, per
request. Before it hands a batch back to the engine, a worker flushes: it commits what is
still queued itself and waits for what the writer is committing. A kill loses at most the
answers of the last moments, and ``--resume`` asks only what the record does not hold
(``answered``).
``status`` and ``report`` read it and send nothing. A run (one provider instance at work) is
one vendor task; the job's id ties the runs of one job together.

The answers of the URLs a batch warmed whole (every request answered OK), which the journal
records accepted and nothing sends again, go in one row per batch (``warmed``) when the
worker flushes, those the writer has not taken yet: on a fast edge, where a batch takes less
than a tick, nearly all of them. A row per answer, at its place by URL, cost each answer a
page written once a job's URLs came in random order (27 µs per answer at 100,000 answers,
against 6 in order), which is felt only at such rates. Only a resume after a kill between
that flush and the journal's answer looks them up by URL (``warmed_since``, in the job's rows
since the batch was sent); every other answer keeps its row by URL.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence, Set
from contextlib import suppress
from pathlib import Path
from typing import Any, NamedTuple

from prewarm_cli.errors import JournalError
from prewarm_cli.plugin import private_file
from prewarm_direct.warm import OK, REJECTED, Answer

# One answer as a worker hands it over: URL, target label, target IP, variant, the answer.
Answered = tuple[str, str, str | None, str, Answer]

# One table, keyed by job first: what `--resume` asks (a job's answers for some URLs) is a
# range of the key, and a row costs one B-tree (a second index made each answer 70 % dearer).
# `runs` names each run's job, for `status` and `report`, which know the runs.
_REQUESTS = """
CREATE TABLE {name} (
    job_id TEXT NOT NULL,  -- '' for a run outside a journal job
    url TEXT NOT NULL,
    target TEXT NOT NULL,
    variant TEXT NOT NULL,
    run_id TEXT NOT NULL,
    alias TEXT NOT NULL,
    outcome TEXT NOT NULL,
    status_code INTEGER,
    cache TEXT,
    bytes INTEGER NOT NULL DEFAULT 0,
    reason TEXT,
    pop TEXT,
    ip TEXT,
    at TEXT NOT NULL,
    PRIMARY KEY (job_id, url, target, variant, run_id)
) WITHOUT ROWID
"""
_RUNS = "CREATE TABLE IF NOT EXISTS runs (run_id TEXT PRIMARY KEY, job_id TEXT NOT NULL)"
# The User-Agent each run sent: its probes send it again (the cache key may hold it).
_RUN_AGENTS = (
    "CREATE TABLE IF NOT EXISTS run_agents"
    " (run_id TEXT PRIMARY KEY, job_id TEXT NOT NULL, user_agent TEXT NOT NULL)"
)
# The answers of a batch's URLs warmed whole: a JSON list of Records, one row per flush.
_WARMED = (
    "CREATE TABLE IF NOT EXISTS warmed (run_id TEXT NOT NULL, job_id TEXT NOT NULL,"
    " alias TEXT NOT NULL, at TEXT NOT NULL, answers TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS warmed_by_run ON warmed (run_id)",
    "CREATE INDEX IF NOT EXISTS warmed_by_job ON warmed (job_id, alias, at)",
)
# Seconds between hand-overs of a worker's answers, and between the writer's commits: a kill
# loses at most the answers of the last two.
COMMIT_EVERY = 0.05
_COLUMNS = "run_id, url, target, variant, outcome, status_code, cache, bytes, reason, pop, ip, at"
_INSERT = (
    f"INSERT OR REPLACE INTO requests ({_COLUMNS}, alias, job_id) VALUES ({', '.join('?' * 14)})"
)


class Record(NamedTuple):
    """One answer as the record keeps it (a row of SELECT {_COLUMNS})."""

    run_id: str
    url: str
    target: str
    variant: str
    outcome: str
    status_code: int | None
    cache: str | None
    bytes: int
    reason: str | None
    pop: str | None
    ip: str | None
    at: str


_this_second: tuple[int, str] = (0, "")  # a second since the epoch, and its text


def utcnow() -> str:
    """2026-12-05T19:00:00.000000Z; called for every answer, so the text up to the second is
    made once a second (three times cheaper than datetime's isoformat)."""
    global _this_second
    second, micro = divmod(time.time_ns() // 1000, 1_000_000)
    known = _this_second
    if known[0] != second:
        known = _this_second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{known[1]}.{micro:06d}Z"


class Store:
    """SQLite, private to the user; reads share the writer's connection under a lock."""

    def __init__(self, path: Path) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            private_file(path)  # made so too if an earlier prewarm, or a copy, left it open
            self._db = sqlite3.connect(
                str(path), timeout=30.0, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # survives a killed process
            self._db.execute("PRAGMA temp_store=MEMORY")  # not a file per IN (...) list
            _migrate(self._db)
        except (OSError, sqlite3.Error) as exc:
            with suppress(AttributeError, sqlite3.Error):
                self._db.close()
            raise JournalError(
                f"cannot open the direct warming record {path}: {exc}",
                hint="move the file aside, or check the state directory's permissions",
            ) from exc
        self.path = path
        self._lock = threading.Lock()  # the connection
        self._cond = threading.Condition()  # the queue below
        self._queue: list[tuple[object, ...]] = []
        self._n_queued = 0  # rows ever queued
        self._n_written = 0  # rows ever committed (or given up on: see _error)
        # A record that cannot be written stops the run, as the journal would: answers would
        # be lost, and asked again at --resume.
        self._error: JournalError | None = None
        self._closing = False
        self._writer: threading.Thread | None = None
        self._runs: set[tuple[object, object]] = set()  # (run, job) pairs written to `runs`

    # --- writing ---

    def save(
        self, job_id: str | None, run_id: str, alias: str, answers: Iterable[Answered]
    ) -> None:
        """Queues answers given just now for the writer, all with the same time: a worker
        hands its answers over every ``COMMIT_EVERY`` seconds and at the end of each batch,
        rather than one at a time."""
        at = utcnow()
        job = job_id or ""
        # A Record's fields, then alias and job: as _row makes them.
        rows = [
            (
                run_id,
                url,
                target,
                variant,
                a.outcome,
                a.status_code,
                a.cache,
                a.bytes,
                a.reason,
                a.pop,
                ip,
                at,
                alias,
                job,
            )
            for url, target, ip, variant, a in answers
        ]
        if rows:
            self._enqueue(rows)

    def copy(self, job_id: str | None, run_id: str, alias: str, records: Iterable[Record]) -> None:
        """Records of an earlier run of the job carried into this one (answered before)."""
        self._enqueue([_row(r._replace(run_id=run_id), job_id, alias) for r in records])

    def _enqueue(self, rows: Sequence[tuple[object, ...]]) -> None:
        with self._cond:
            if self._error is not None:
                raise self._error
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._write_loop, name="direct-record", daemon=True
                )
                self._writer.start()
            self._queue.extend(rows)
            self._n_queued += len(rows)

    def flush(self, warmed_urls: Set[str] = frozenset()) -> None:
        """Waits until every answer queued so far is committed.

        What the writer has not taken yet is committed by the caller, who would only wait for
        the writer to wake up and do it. ``warmed_urls``: URLs whose every request answered OK
        (the batch warmed them whole); those of their answers still queued go in one
        ``warmed`` row.
        """
        with self._cond:
            wanted = self._n_queued
            behind = wanted > self._n_written and self._error is None
        if behind:
            self._commit_queued(warmed_urls)
        with self._cond:
            self._cond.wait_for(lambda: self._n_written >= wanted or self._error is not None)
            if self._error is not None:
                raise self._error

    def _write_loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._closing, COMMIT_EVERY)
                closing = self._closing
            if not self._commit_queued() or closing:
                return

    def _commit_queued(self, warmed_urls: Set[str] = frozenset()) -> bool:
        """Commits every row queued so far in one transaction; False (the error kept) if that
        failed. Rows are committed in the order they were queued: the connection is taken
        before the queue, so whoever commits takes the oldest rows, and ``_n_written`` always
        counts the first rows queued (a newer answer is never replaced by an older one).
        The OK answers of ``warmed_urls`` make one ``warmed`` row per run."""
        with self._lock:
            with self._cond:
                rows, self._queue = self._queue, []
                if self._error is not None:
                    return False
            if not rows:
                return True
            n_rows = len(rows)
            runs = {(row[_RUN], row[_JOB]) for row in rows}.difference(self._runs)
            rows, warmed = _take_warmed(rows, warmed_urls)
            try:
                self._db.execute("BEGIN")
                self._db.executemany("INSERT OR IGNORE INTO runs VALUES (?, ?)", runs)
                self._db.executemany(_INSERT, rows)
                if warmed:
                    at = utcnow()
                    self._db.executemany(
                        "INSERT INTO warmed (run_id, job_id, alias, at, answers)"
                        " VALUES (?, ?, ?, ?, ?)",
                        [(*key, at, _dumps(answers)) for key, answers in warmed.items()],
                    )
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                with suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                with self._cond:
                    self._error = JournalError(
                        f"cannot write the direct warming record {self.path}: {exc}",
                        hint="free space in the state directory, then"
                        " `prewarm submit --resume JOB` asks only what was not recorded",
                    )
                    self._cond.notify_all()
                return False
            self._runs.update(runs)
            with self._cond:
                self._n_written += n_rows
                self._cond.notify_all()
            return True

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            writer = self._writer
        if writer is not None:
            writer.join()
        with self._lock:
            self._db.close()

    def name_run(self, run_id: str, job_id: str | None, user_agent: str) -> None:
        """Names a run with its job, and the User-Agent it sends, before it records any
        answer (``runs``, ``run_agents``)."""
        key = (run_id, job_id or "")
        if key in self._runs:
            return
        with self._lock:
            try:
                self._db.execute("BEGIN")
                self._db.execute("INSERT OR IGNORE INTO runs VALUES (?, ?)", key)
                self._db.execute(
                    "INSERT OR IGNORE INTO run_agents VALUES (?, ?, ?)", (*key, user_agent)
                )
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                with suppress(sqlite3.Error):  # SQLite may have rolled back already
                    self._db.execute("ROLLBACK")
                raise JournalError(
                    f"cannot write the direct warming record {self.path}: {exc}",
                    hint="free space in the state directory, then try again",
                ) from exc
            self._runs.add(key)

    def forget(self, job_ids: Sequence[str]) -> None:
        """Deletes every answer of these jobs, and their runs (the journal dropped them)."""
        if not job_ids:
            return
        jobs = _json(job_ids)
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    for table in ("requests", "warmed", "runs", "run_agents"):
                        self._db.execute(
                            f"DELETE FROM {table} WHERE job_id IN (SELECT value FROM json_each(?))",
                            (jobs,),
                        )
                    self._db.execute("COMMIT")
                except BaseException:
                    with suppress(sqlite3.Error):
                        self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise JournalError(
                    f"cannot delete from the direct warming record {self.path}: {exc}",
                    hint="nothing was pruned; try again once no direct warming runs",
                ) from exc
            self._runs.clear()

    # --- reading ---

    def has_job(self, job_id: str, alias: str) -> bool:
        """Whether the record holds any answer of this job."""
        with self._lock:
            row = self._db.execute(
                "SELECT EXISTS (SELECT 1 FROM requests WHERE job_id = ?1 AND alias = ?2)"
                " OR EXISTS (SELECT 1 FROM warmed WHERE job_id = ?1 AND alias = ?2)",
                (job_id, alias),
            ).fetchone()
        return bool(row[0])

    def knows_runs(self, run_ids: Sequence[str]) -> bool:
        """Whether any of these runs is named here: one that recorded no answer is still this
        machine's (stopped before its first), where a run of another machine is not."""
        with self._lock:
            runs = self._name_runs(run_ids)
            (n,) = self._db.execute(
                "SELECT COUNT(*) FROM runs WHERE run_id IN (SELECT value FROM json_each(?))",
                (runs,),
            ).fetchone()
        return bool(n)

    def silent_runs(self, run_ids: Sequence[str]) -> set[str]:
        """Which of these runs the record names but holds no answer of: stopped before their
        first (asked of a few runs: a run's rows are found within its job's)."""
        silent = set()
        with self._lock:
            for run_id in run_ids:
                (found,) = self._db.execute(
                    "SELECT EXISTS (SELECT 1 FROM warmed WHERE run_id = ?1)"
                    " OR EXISTS (SELECT 1 FROM requests WHERE run_id = ?1 AND job_id ="
                    " (SELECT job_id FROM runs WHERE run_id = ?1))"
                    " OR NOT EXISTS (SELECT 1 FROM runs WHERE run_id = ?1)",
                    (run_id,),
                ).fetchone()
                if not found:
                    silent.add(run_id)
        return silent

    def answered(self, job_id: str, alias: str, urls: Sequence[str]) -> list[Record]:
        """The final answers (ok, rejected) this job already has for these URLs, any run.

        Not those of URLs a batch warmed whole (``warmed``): the journal has them accepted,
        and never sends them again; where a kill came before it could, ``warmed_since``
        finds them."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM requests WHERE job_id = ? AND alias = ?"
                " AND outcome IN (?, ?) AND url IN (SELECT value FROM json_each(?))"
                " ORDER BY at",
                (job_id, alias, OK, REJECTED, _json(urls)),
            ).fetchall()
        return [Record(*row) for row in rows]

    def _name_runs(self, run_ids: Sequence[str]) -> str:
        """These runs as a JSON list, each named in ``runs`` with its job (under the lock)."""
        runs = _json(run_ids)
        named = self._db.execute(
            "SELECT COUNT(*) FROM runs WHERE run_id IN (SELECT value FROM json_each(?))",
            (runs,),
        ).fetchone()[0]
        if named < len(set(run_ids)):
            # A run `runs` does not name (an earlier prewarm wrote it into this table), or
            # none at all: looked for in every row, and named for next time.
            self._db.execute(
                "INSERT OR IGNORE INTO runs SELECT DISTINCT run_id, job_id FROM requests"
                " WHERE run_id IN (SELECT value FROM json_each(?))",
                (runs,),
            )
        return runs

    def of_runs(self, run_ids: Sequence[str]) -> list[Record]:
        """The latest answer per (URL, target, variant) over these runs, as
        ``latest_of_runs`` chooses it."""
        with self._lock:
            runs = self._name_runs(run_ids)
            order = self._run_order(runs)
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM requests WHERE {_OF_RUNS} ORDER BY at", (runs, runs)
            ).fetchall()
            warmed = self._db.execute(
                "SELECT answers FROM warmed WHERE run_id IN (SELECT value FROM json_each(?))"
                " ORDER BY at",
                (runs,),
            ).fetchall()
        records = [Record(*row) for row in rows]
        for (answers,) in warmed:
            records += [Record(*answer) for answer in _loads(answers)]
        # The two tables' answers in the order they came; of two of the same moment (one
        # carried into a later run), the one of the run that sent it last, to be kept.
        records.sort(key=lambda r: (r.at, -order.get(r.run_id, 0)))
        latest: dict[tuple[str, str, str], Record] = {}
        for record in records:
            key = (record.url, record.target, record.variant)
            previous = latest.get(key)
            # An answer is never replaced by a later failure of the same request.
            if previous is None or previous.outcome != OK or record.outcome == OK:
                latest[key] = record
        return list(latest.values())

    def latest_of_runs(self, run_ids: Sequence[str]) -> Iterator[Latest]:
        """What ``of_runs`` gives, as SQLite reads it: the latest answer per (URL, target,
        variant) over these runs, a URL's answers side by side, never all in memory.

        The answers of both tables are grouped by SQLite, whose sort goes to a temporary file
        past a few megabytes here (not to memory: a million answers would be held). An OK is
        never replaced by a later failure; of two answers of the same moment (an earlier run's
        carried into a later one), the one of the run that began first (``run_order``), which
        sent it. Read through a connection of its own: an iterator left unfinished (Ctrl-C
        while its rows are counted) holds nothing the store's close waits for."""
        with self._lock:
            runs = self._name_runs(run_ids)
        yield from map(Latest._make, self._read_apart(_LATEST_OF_RUNS, (runs, runs, runs)))

    def warmed_targets(self, run_ids: Sequence[str]) -> Iterator[Warmed]:
        """Each (URL, target, variant) these runs warmed (answered OK in one of them), with
        the IP of its latest OK answer; one target's requests with one IP and variant side by
        side, in the order they were answered. Read as SQLite sorts them (to a temporary file
        past a few megabytes), never all in memory, through a connection of its own (see
        ``latest_of_runs``)."""
        with self._lock:
            runs = self._name_runs(run_ids)
        yield from map(Warmed._make, self._read_apart(_WARMED_OF_RUNS, (runs, runs, runs)))

    def _read_apart(self, sql: str, params: Sequence[str]) -> Iterator[tuple[Any, ...]]:
        """The rows of a query that SQLite sorts, read through a connection of its own whose
        sort goes to a temporary file past a few megabytes (this one's stay in memory)."""
        db = sqlite3.connect(str(self.path), timeout=30.0)
        try:
            db.execute("PRAGMA temp_store=FILE")
            yield from db.execute(sql, params)
        finally:
            db.close()

    def run_order(self, run_ids: Sequence[str]) -> dict[str, int]:
        """These runs in the order they began here (the record names a run as it begins)."""
        with self._lock:
            return self._run_order(self._name_runs(run_ids))

    def _run_order(self, runs: str) -> dict[str, int]:
        rows = self._db.execute(
            "SELECT run_id, rowid FROM runs WHERE run_id IN (SELECT value FROM json_each(?))",
            (runs,),
        )
        return {str(run_id): int(rowid) for run_id, rowid in rows}

    def failures_of_runs(self, run_ids: Sequence[str]) -> list[Record] | None:
        """What `of_runs` gives that is not OK, without reading the OK answers: for each
        (URL, target, variant) none of these runs answered OK, its latest answer. A million
        warm answers are not read into memory, only the few that were not. None when the
        record holds no answer of these runs."""
        with self._lock:
            runs = self._name_runs(run_ids)
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM requests WHERE {_OF_RUNS} AND outcome != ? ORDER BY at",
                (runs, runs, OK),
            ).fetchall()
            if not rows:
                found = self._db.execute(
                    f"SELECT EXISTS (SELECT 1 FROM requests WHERE {_OF_RUNS})"
                    " OR EXISTS (SELECT 1 FROM warmed WHERE run_id IN"
                    " (SELECT value FROM json_each(?)))",
                    (runs, runs, runs),
                ).fetchone()[0]
                return [] if found else None
            urls = _json(sorted({row[1] for row in rows}))
            ok = set(
                self._db.execute(
                    f"SELECT url, target, variant FROM requests WHERE {_OF_RUNS}"
                    " AND outcome = ? AND url IN (SELECT value FROM json_each(?))",
                    (runs, runs, OK, urls),
                )
            )
            # The warmed rows hold OK answers only; SQLite reads them, we keep the few asked.
            ok.update(
                self._db.execute(
                    f"SELECT json_extract(a.value, '$[{_URL}]') AS url,"
                    f" json_extract(a.value, '$[{_TARGET}]'),"
                    f" json_extract(a.value, '$[{_VARIANT}]')"
                    " FROM warmed, json_each(warmed.answers) AS a"
                    " WHERE warmed.run_id IN (SELECT value FROM json_each(?))"
                    " AND url IN (SELECT value FROM json_each(?))",
                    (runs, urls),
                )
            )
        latest: dict[tuple[str, str, str], Record] = {}
        for row in rows:
            record = Record(*row)
            key = (record.url, record.target, record.variant)
            if key not in ok:
                latest[key] = record
        return list(latest.values())

    def warmed_since(
        self, job_id: str, alias: str, urls: Sequence[str], since: str
    ) -> dict[str, str]:
        """Which of these URLs a batch of this job warmed whole through ``alias`` since
        ``since`` (the record's time format): {url: run_id}. For a resume's lookup of a batch
        cut short. Only the job's own: another job's PoPs, variants or headers may differ."""
        # SQLite reads the rows' answers and keeps only the URLs asked: a resume long after
        # the batch reads much, and holds little.
        with self._lock:
            rows = self._db.execute(
                f"SELECT json_extract(answer.value, '$[{_URL}]') AS url, warmed.run_id"
                " FROM warmed, json_each(warmed.answers) AS answer"
                " WHERE warmed.job_id = ? AND warmed.alias = ? AND warmed.at >= ?"
                " AND url IN (SELECT value FROM json_each(?)) ORDER BY warmed.at",
                (job_id, alias, since, _json(urls)),
            ).fetchall()
        return dict(rows)


def _row(record: Record, job_id: str | None, alias: str) -> tuple[object, ...]:
    """A record as the writer inserts it: its columns in _COLUMNS order, then alias, job."""
    return (*record, alias, job_id or "")


# Places in such a row.
_RUN, _URL, _TARGET, _VARIANT, _OUTCOME, _ALIAS, _JOB = 0, 1, 2, 3, 4, 12, 13
_CACHE, _BYTES, _IP, _AT = 6, 7, 10, 11
# The rows of some runs: their jobs' rows (the key's range), then the runs' own.
_OF_RUNS = (
    "job_id IN (SELECT job_id FROM runs WHERE run_id IN (SELECT value FROM json_each(?)))"
    " AND run_id IN (SELECT value FROM json_each(?))"
)


_JSON_ANSWER = ", ".join(
    f"json_extract(a.value, '$[{i}]')"
    for i in (_RUN, _URL, _TARGET, _VARIANT, _OUTCOME, _CACHE, _BYTES, _AT)
)
# The latest answer per request over some runs (as of_runs chooses it), a URL's side by side:
# both tables' answers grouped by request, the one kept the greatest by (OK, time), and of
# two at the same time (an answer carried into a later run) the one of the run named first
# in `runs` (the record names a run as it begins), which sent it.
_LATEST_OF_RUNS = f"""
WITH answers (run_id, url, target, variant, outcome, cache, bytes, at) AS (
    SELECT run_id, url, target, variant, outcome, cache, bytes, at FROM requests
    WHERE {_OF_RUNS}
    UNION ALL
    SELECT {_JSON_ANSWER}
    FROM warmed, json_each(warmed.answers) AS a
    WHERE warmed.run_id IN (SELECT value FROM json_each(?))
)
SELECT answers.run_id, url, target, outcome, cache, bytes,
    max((outcome = '{OK}') || at || printf('%019d', 999999999999999999 - runs.rowid)) AS latest
FROM answers JOIN runs ON runs.run_id = answers.run_id
GROUP BY url, target, variant ORDER BY url
"""


_JSON_WARMED = ", ".join(
    f"json_extract(a.value, '$[{i}]')" for i in (_URL, _TARGET, _VARIANT, _IP, _AT)
)
# The requests some runs warmed, each once with the IP of its latest OK answer (a `warmed` row
# holds OK answers only) and the User-Agent of the run that sent it (NULL: a record of before
# run_agents), grouped by where and how they were sent: --verify's probe targets.
_WARMED_OF_RUNS = f"""
WITH answers (url, target, variant, ip, at, run_id) AS (
    SELECT url, target, variant, ip, at, run_id FROM requests
    WHERE {_OF_RUNS} AND outcome = '{OK}'
    UNION ALL
    SELECT {_JSON_WARMED}, warmed.run_id
    FROM warmed, json_each(warmed.answers) AS a
    WHERE warmed.run_id IN (SELECT value FROM json_each(?))
), latest AS (
    SELECT url, target, variant, ip, max(at) AS at, run_id FROM answers
    GROUP BY url, target, variant
)
SELECT url, target, variant, ip, at, run_agents.user_agent
FROM latest LEFT JOIN run_agents USING (run_id)
ORDER BY target, ip, variant, run_agents.user_agent, at
"""


class Warmed(NamedTuple):
    """A request some runs warmed, as ``warmed_targets`` reads it."""

    url: str
    target: str
    variant: str
    ip: str | None
    at: str
    user_agent: str | None  # the run's that sent it; None: a record of an earlier prewarm


class Latest(NamedTuple):
    """One request's latest answer, as ``latest_of_runs`` reads it (its last column unused)."""

    run_id: str
    url: str
    target: str
    outcome: str
    cache: str | None
    bytes: int
    latest: str


def _take_warmed(
    rows: list[tuple[object, ...]], warmed_urls: Set[str]
) -> tuple[list[tuple[object, ...]], dict[tuple[object, ...], list[tuple[object, ...]]]]:
    """The rows to keep by URL, and per (run, job, alias) the Records of the OK answers of
    ``warmed_urls``, for their ``warmed`` row."""
    if not warmed_urls:
        return rows, {}
    by_url = []
    warmed: dict[tuple[object, ...], list[tuple[object, ...]]] = {}
    for row in rows:
        if row[_OUTCOME] == OK and row[_URL] in warmed_urls:
            key = (row[_RUN], row[_JOB], row[_ALIAS])
            warmed.setdefault(key, []).append(row[:_ALIAS])
        else:
            by_url.append(row)
    return by_url, warmed


def _migrate(db: sqlite3.Connection) -> None:
    """Creates the tables, or moves a record keyed by run (with an index by job, and before
    that without a job) into today's table, in one transaction."""
    db.execute(_RUNS)
    db.execute(_RUN_AGENTS)
    for statement in _WARMED:
        db.execute(statement)
    # An earlier prewarm indexed its table by job, and makes that index again on this table
    # when it opens the file: each answer would pay for it.
    db.execute("DROP INDEX IF EXISTS requests_by_job")
    if _keyed_by_job(db):
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        columns = {row[1] for row in db.execute("PRAGMA table_info(requests)")}
        if not columns:
            db.execute(_REQUESTS.format(name="requests"))
        elif not _keyed_by_job(db):  # another process may have moved it meanwhile
            job = "COALESCE(job_id, '')" if "job_id" in columns else "''"
            db.execute(_REQUESTS.format(name="requests_keyed_by_job"))
            db.execute(
                f"INSERT OR REPLACE INTO requests_keyed_by_job ({_COLUMNS}, alias, job_id)"
                f" SELECT {_COLUMNS}, alias, {job} FROM requests ORDER BY at"
            )
            db.execute(f"INSERT OR IGNORE INTO runs SELECT DISTINCT run_id, {job} FROM requests")
            db.execute("DROP TABLE requests")
            db.execute("ALTER TABLE requests_keyed_by_job RENAME TO requests")
    except BaseException:
        with suppress(sqlite3.Error):  # SQLite may have rolled back already (a full disk)
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _keyed_by_job(db: sqlite3.Connection) -> bool:
    """Whether the requests table exists with today's key (the job first)."""
    key = {row[1]: row[5] for row in db.execute("PRAGMA table_info(requests)")}
    return key.get("job_id") == 1


def _json(items: Sequence[str]) -> str:
    return _dumps(list(items))


def _dumps(value: object) -> str:
    import json

    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _loads(text: str) -> list[list[Any]]:
    import json

    loaded: list[list[Any]] = json.loads(text)
    return loaded
