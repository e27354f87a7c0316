"""The local job store: every job, its vendor tasks and the outcome of every target.

SQLite in WAL mode; every change is one transaction, so a process killed at any
point leaves a consistent journal. A batch is recorded as *sending* before its
request goes out and its result after, which is how ``--resume`` knows what may
have reached the vendor (DESIGN.md §8). The part of a split batch is a batch of its
own, and every change to a batch's targets is limited to that batch's rows, so what
happens to one part never changes another.

The journal is the user's record: its files are private (they can hold ``-H`` values)
and any failure to read or write it is a :class:`JournalError` naming the file.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import (
    Callable,
    Collection,
    Generator,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
    Set,
)
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from json.encoder import encode_basestring_ascii
from pathlib import Path
from typing import Any

from prewarm_cli import journal_db, paths
from prewarm_cli.errors import JournalError, NotFoundError
from prewarm_cli.plugin import BatchResult

# Target outcomes. The first four are final; the rest can still change.
ACCEPTED = "accepted"
REJECTED = "rejected"
FAILED = "failed"
DEFERRED = "deferred"
UNKNOWN = "unknown"
SENDING = "sending"
UNSENT = "unsent"
OUTCOMES = (ACCEPTED, REJECTED, FAILED, DEFERRED, UNKNOWN, SENDING, UNSENT)


def utcnow() -> str:
    return timestamp(datetime.now(UTC))


def timestamp(moment: datetime) -> str:
    """A moment in the journal's format, which sorts as text: 2026-12-05T19:00:00.000000Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # base32 without I, L, O, U


def new_job_id() -> str:
    """A ULID (github.com/ulid/spec): 48 bits of Unix time in milliseconds, then 80 random
    bits, as 26 characters of Crockford's base32; ids sort as they were made. Made here:
    python-ulid costs a command 30 ms of start-up, most of it importing importlib.metadata
    for its own version string."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


@dataclass(frozen=True)
class Job:
    id: str
    created_at: str
    updated_at: str
    state: str
    providers: tuple[str, ...]
    options: Mapping[str, Any]
    urls: int
    skipped: tuple[Mapping[str, Any], ...] = ()  # the first MAX_KEPT_SKIPPED of them
    n_skipped: int = 0  # all of them


@dataclass(frozen=True)
class Task:
    provider: str
    task_id: str
    urls: int
    created_at: str
    kind: str = "prefetch"
    state: str | None = None
    raw_state: str | None = None


@dataclass(frozen=True)
class Batch:
    id: int
    provider: str
    urls: tuple[str, ...]
    created_at: str


@dataclass
class Counts:
    """Targets per outcome for one provider alias (or a whole job)."""

    by_outcome: dict[str, int] = field(default_factory=dict)

    def __getitem__(self, outcome: str) -> int:
        return self.by_outcome.get(outcome, 0)

    @property
    def total(self) -> int:
        return sum(self.by_outcome.values())

    def add(self, other: Counts) -> None:
        for k, v in other.by_outcome.items():
            self.by_outcome[k] = self.by_outcome.get(k, 0) + v


class Journal:
    """The SQLite job store; safe to share between threads of one process."""

    def __init__(self, path: Path | str, note: Callable[[str], None] | None = None) -> None:
        """``note``: where to tell the user of a long migration (the journal is locked)."""
        self.path = str(path)
        self._lock = threading.RLock()
        if self.path != ":memory:":
            paths.create_private(Path(self.path))
        try:
            self._db = sqlite3.connect(
                self.path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        self._db.row_factory = sqlite3.Row
        try:
            # before any statement that could change the schema
            journal_db.check_version(self._db, self.path)
            if self.path != ":memory:":
                journal_db.use_wal(self._db)
                # WAL + NORMAL survives a killed process; only power loss can drop the last commits.
                self._db.execute("PRAGMA synchronous=NORMAL")
            # The small temporary tables of IN (...) lists in memory, not a file made and
            # removed for each (in /var/tmp).
            self._db.execute("PRAGMA temp_store=MEMORY")
            with self._lock:
                journal_db.migrate(self._db, note)
            self._json = _has_json(self._db)
        except sqlite3.Error as exc:
            self._db.close()
            raise self._error(exc) from exc
        except JournalError:
            self._db.close()
            raise

    @classmethod
    def in_state_dir(cls, state_dir: Path, note: Callable[[str], None] | None = None) -> Journal:
        try:  # the state dir holds the journal: private, whoever created it
            if state_dir.stat().st_mode & 0o077:
                state_dir.chmod(0o700)
        except OSError:
            pass  # not ours to change; the files themselves are still 0600
        return cls(state_dir / "journal.sqlite3", note)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- plumbing ---

    def _error(self, exc: sqlite3.Error) -> JournalError:
        return journal_db.error(self.path, exc)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._db.in_transaction:
                # Left open by a Ctrl-C that came between a BEGIN and its end (or during the
                # ROLLBACK below): what it wrote was never committed.
                with suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise self._error(exc) from exc
            try:
                yield self._db
            except BaseException as exc:
                # The transaction may be gone already (closed, or rolled back by SQLite).
                with suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise self._error(exc) from exc
                raise
            else:
                try:
                    self._db.execute("COMMIT")
                except sqlite3.Error as exc:
                    with suppress(sqlite3.Error):
                        self._db.execute("ROLLBACK")
                    raise self._error(exc) from exc

    def _query(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise self._error(exc) from exc

    # --- jobs ---

    def create_job(
        self, providers: Sequence[str], options: Mapping[str, Any], job_id: str | None = None
    ) -> str:
        job_id = job_id or new_job_id()
        now = utcnow()
        with self.transaction() as db:
            db.execute(
                "INSERT INTO jobs (id, created_at, updated_at, state, providers, options)"
                " VALUES (?, ?, ?, 'created', ?, ?)",
                (job_id, now, now, json.dumps(list(providers)), json.dumps(dict(options))),
            )
        return job_id

    def add_targets(
        self, job_id: str, items: Iterable[tuple[int, str, Sequence[str]]], chunk: int = 20000
    ) -> None:
        """Record (seq, url, aliases) items; a repeated URL keeps its first position."""
        # Per alias, each URL with its first seq; ``chunk`` rows at most per transaction.
        pending: dict[str, dict[str, int]] = {}
        rows = 0
        for seq, url, aliases in items:
            for alias in aliases:
                urls = pending.get(alias)
                if urls is None:
                    urls = pending[alias] = {}
                if url not in urls:
                    urls[url] = seq
                    rows += 1
            if rows >= chunk:
                self._insert_targets(job_id, pending)
                pending = {}
                rows = 0
        if rows:
            self._insert_targets(job_id, pending)

    def _insert_targets(self, job_id: str, pending: Mapping[str, Mapping[str, int]]) -> None:
        """One transaction; rows already there (a repeated URL) keep their position."""
        insert = "INSERT OR IGNORE INTO targets (job_id, provider, url, seq)"
        with self.transaction() as db:
            for alias, urls in pending.items():
                # In input order, the table's order (journal_db): a batch's rows side by side.
                rows = urls.items()
                # One statement for all the URLs, as a JSON object {url: seq}: binding a row
                # at a time costs more than the insert itself. SQLite's JSON text ends at a
                # NUL character, so text with one (never a valid URL) goes row by row.
                text = json.dumps(dict(rows), ensure_ascii=False) if self._json else ""
                if text and "\\u0000" not in text:
                    db.execute(
                        insert + " SELECT ?, ?, key, value FROM json_each(?)", (job_id, alias, text)
                    )
                else:
                    db.executemany(
                        insert + " VALUES (?, ?, ?, ?)",
                        [(job_id, alias, url, seq) for url, seq in rows],
                    )

    def finish_intake(
        self,
        job_id: str,
        skipped: Sequence[Mapping[str, Any]],
        vendor_of: Callable[[str], str] = str,
        settings_of: Callable[[str], Mapping[str, Any]] = lambda alias: {},
        *,
        n_skipped: int | None = None,
    ) -> None:
        """Counts the distinct URLs once input is complete, and names the job's providers (those
        its targets went to) with the vendor each sends to (``vendor_of``) and the settings
        `--resume` holds it to (``settings_of``, where a provider has any), in one
        transaction: a job is either still reading its input or ready with all of them, even
        if the process is killed right after. The providers' code runs before it: a slow
        one holds no other process's writes (the job, still being made, is this run's).
        ``skipped``: the first of the skipped inputs, ``n_skipped`` of them in all (None: as
        many as ``skipped`` holds)."""
        per_provider = [
            (row[0], row[1])
            for row in self._query(
                "SELECT provider, COUNT(*) FROM targets WHERE job_id = ? GROUP BY provider"
                " ORDER BY provider",
                (job_id,),
            )
        ]
        if len(per_provider) > 1:
            (row,) = self._query(
                "SELECT COUNT(DISTINCT url) FROM targets WHERE job_id = ?", (job_id,)
            )
            urls = row[0]
        else:  # one provider: its URLs are distinct already (the unique index by URL)
            urls = per_provider[0][1] if per_provider else 0
        providers = [alias for alias, _ in per_provider]
        vendors = {a: vendor_of(a) for a in providers}
        settings = {a: found for a in providers if (found := settings_of(a))}
        with self.transaction() as db:
            (options,) = db.execute("SELECT options FROM jobs WHERE id = ?", (job_id,)).fetchone()
            options = {**json.loads(options), "vendors": vendors}
            if settings:
                options["settings"] = settings
            db.execute(
                "UPDATE jobs SET urls = ?, skipped = ?, n_skipped = ?, state = 'ready',"
                " updated_at = ?, providers = ?, options = ? WHERE id = ?",
                (
                    urls,
                    json.dumps(list(skipped)),
                    len(skipped) if n_skipped is None else n_skipped,
                    utcnow(),
                    json.dumps(providers),
                    json.dumps(options),
                    job_id,
                ),
            )

    def delete_job(self, job_id: str) -> None:
        with self.transaction() as db:
            for table in ("targets", "batches", "tasks"):
                db.execute(f"DELETE FROM {table} WHERE job_id = ?", (job_id,))
            db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))

    def prunable(self, before: str) -> list[str]:
        """The jobs last changed before ``before`` (the journal's time format) with nothing
        left to resume: no target unsent, sending, deferred, of unknown outcome or failed for
        a reason that may pass; or whose input was never read to its end (`created`: it cannot
        be resumed). The caller leaves out those a live process holds."""
        rows = self._query(
            "SELECT id FROM jobs WHERE updated_at < ? AND (state = 'created' OR ("
            " state NOT IN ('ready', 'submitting', 'interrupted', 'incomplete')"
            " AND NOT EXISTS (SELECT 1 FROM targets WHERE targets.job_id = jobs.id"
            "  AND (outcome IN ('unsent', 'sending', 'deferred', 'unknown')"
            "   OR (outcome = 'failed' AND transient = 1)))))",
            (before,),
        )
        return [row["id"] for row in rows]

    def set_state(self, job_id: str, state: str, *, unchanged_since: str | None = None) -> None:
        """The job's state; with ``unchanged_since`` (a time job_state_at gave), only if the
        job's row has not changed since (a run that took it up meanwhile wrote to it)."""
        sql = "UPDATE jobs SET state = ?, updated_at = ? WHERE id = ?"
        params: tuple[str, ...] = (state, utcnow(), job_id)
        if unchanged_since is not None:
            sql, params = sql + " AND updated_at = ?", (*params, unchanged_since)
        with self.transaction() as db:
            db.execute(sql, params)

    def job(self, job_id: str) -> Job:
        rows = self._query("SELECT * FROM jobs WHERE id = ?", (job_id,))
        if not rows:
            rows = self._query("SELECT * FROM jobs WHERE id LIKE ? LIMIT 2", (job_id + "%",))
            if len(rows) != 1:
                raise NotFoundError(
                    f"no job {job_id!r} in the local journal",
                    hint="`prewarm jobs` lists recent jobs; use ALIAS:TASK_ID for a vendor task",
                )
        return _job(rows[0])

    def latest_job(self) -> Job:
        # The id first: sorting whole rows would sort every job's list of skipped inputs.
        rows = self._query("SELECT id FROM jobs ORDER BY created_at DESC, id DESC LIMIT 1")
        if not rows:
            raise NotFoundError("no jobs in the local journal yet", hint="run `prewarm submit`")
        return self.job(rows[0]["id"])

    def jobs(self, limit: int = 20, state: str | None = None) -> list[Job]:
        """Recent jobs, newest first, without their lists of skipped inputs (``skipped`` is
        empty: a job's may be a million lines; ``job()`` reads it)."""
        sql = f"SELECT {_LISTED} FROM jobs"
        params: list[Any] = []
        if state:
            sql += " WHERE state = ?"
            params.append(state)
        sql += " ORDER BY created_at DESC, id DESC LIMIT ?"
        params.append(limit)
        return [_job(r) for r in self._query(sql, params)]

    # --- targets and batches ---

    def counts(self, job_id: str) -> dict[str, Counts]:
        result: dict[str, Counts] = {}
        rows = self._query(
            "SELECT provider, outcome, COUNT(*) AS n FROM targets WHERE job_id = ?"
            " GROUP BY provider, outcome",
            (job_id,),
        )
        for row in rows:
            result.setdefault(row["provider"], Counts()).by_outcome[row["outcome"]] = row["n"]
        return result

    def n_failed_to_resend(self, job_id: str) -> int:
        """The job's failed targets that --resume sends again (failed for a reason that may
        pass; not a vendor's verdict)."""
        rows = self._query(
            "SELECT COUNT(*) FROM targets"
            " WHERE job_id = ? AND outcome = 'failed' AND transient = 1",
            (job_id,),
        )
        return int(rows[0][0])

    def targets(
        self, job_id: str, outcomes: Sequence[str], provider: str | None = None
    ) -> list[sqlite3.Row]:
        return list(self.iter_targets(job_id, outcomes, provider))

    def iter_targets(
        self,
        job_id: str,
        outcomes: Sequence[str],
        provider: str | None = None,
        chunk: int = 10_000,
        *,
        in_input_order: bool = True,
    ) -> Generator[sqlite3.Row, None, None]:
        """The job's targets with these outcomes (of one provider, or all), handed over
        ``chunk`` rows at a time, in input order unless ``in_input_order`` is False. For that
        order SQLite sorts the rows it finds first, in memory (temp_store): a caller that
        needs no order saves that; for a provider's unsent targets, which may be a million,
        `iter_unsent` reads them in the index's own order."""
        marks = ",".join("?" * len(outcomes))
        mine, params = ("", ()) if provider is None else (" AND provider = ?", (provider,))
        order = " ORDER BY seq, provider" if in_input_order else ""
        sql = (
            f"SELECT provider, url, outcome, task_id, reason FROM targets"
            f" WHERE job_id = ? AND outcome IN ({marks}){mine}{order}"
        )
        return self._iter_rows(sql, (job_id, *outcomes, *params), chunk)

    def iter_accepted(self, job_id: str) -> Generator[sqlite3.Row, None, None]:
        """The job's accepted targets (provider, url, task_id) in input order, a URL's
        providers side by side. Sorted through a connection of its own, whose sort goes to a
        temporary file past a few megabytes (this one's sorts stay in memory): a million are
        never all held."""
        sql = (
            "SELECT provider, url, task_id FROM targets WHERE job_id = ? AND outcome = ?"
            " ORDER BY seq, provider"
        )
        if self.path == ":memory:":  # no other connection sees it
            yield from self._iter_rows(sql, (job_id, ACCEPTED), 10_000)
            return
        try:
            db = sqlite3.connect(self.path, timeout=30.0)
            try:
                db.row_factory = sqlite3.Row
                db.execute("PRAGMA temp_store=FILE")
                yield from db.execute(sql, (job_id, ACCEPTED))
            finally:
                db.close()
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    def accepted_task(self, job_id: str, provider: str, url: str) -> str | None:
        """The task this provider accepted the URL into, within the job ("" for none named);
        None when it did not accept it. One row, read through the targets' key."""
        rows = self._query(
            "SELECT task_id FROM targets WHERE job_id = ? AND provider = ? AND url = ?"
            " AND outcome = ?",
            (job_id, provider, url, ACCEPTED),
        )
        return str(rows[0]["task_id"] or "") if rows else None

    def accepted_urls(
        self, job_id: str, provider: str, task_ids: Collection[str]
    ) -> dict[str, set[str]]:
        """The URLs of the job accepted into each of these tasks, read through the index of
        accepted targets by task: a few tasks' URLs cost their own rows, however large the
        job."""
        found: dict[str, set[str]] = {}
        wanted = sorted(task_ids)
        for i in range(0, len(wanted), 500):  # within SQLite's limit of bound values
            chunk = wanted[i : i + 500]
            rows = self._query(  # SQLite would rather take the job's accepted targets whole
                "SELECT task_id, url FROM targets INDEXED BY accepted_by_task"
                " WHERE job_id = ? AND provider = ? AND outcome = 'accepted'"
                f" AND task_id IN ({','.join('?' * len(chunk))})",
                (job_id, provider, *chunk),
            )
            for row in rows:
                found.setdefault(row["task_id"], set()).add(row["url"])
        return found

    def accepted_counts(
        self, job_id: str, provider: str, task_ids: Collection[str]
    ) -> dict[str, int]:
        """How many URLs of the job were accepted into each of these tasks (as accepted_urls
        reads them, without holding them)."""
        found: dict[str, int] = {}
        wanted = sorted(task_ids)
        for i in range(0, len(wanted), 500):  # within SQLite's limit of bound values
            chunk = wanted[i : i + 500]
            rows = self._query(
                "SELECT task_id, COUNT(*) AS n FROM targets INDEXED BY accepted_by_task"
                " WHERE job_id = ? AND provider = ? AND outcome = 'accepted'"
                f" AND task_id IN ({','.join('?' * len(chunk))}) GROUP BY task_id",
                (job_id, provider, *chunk),
            )
            found.update((row["task_id"], row["n"]) for row in rows)
        return found

    def iter_unsent(
        self, job_id: str, provider: str, chunk: int = 10_000
    ) -> Generator[sqlite3.Row, None, None]:
        """The provider's unsent targets in input order, as the claims take them: read in
        the order of the index, so that a million of them are never all in memory."""
        sql = (
            "SELECT provider, url, outcome, task_id, reason FROM targets WHERE job_id = ?"
            " AND provider = ? AND outcome = 'unsent' AND batch_id IS NULL ORDER BY seq, rowid"
        )
        return self._iter_rows(sql, (job_id, provider), chunk)

    def _iter_rows(
        self, sql: str, params: Sequence[Any], chunk: int
    ) -> Generator[sqlite3.Row, None, None]:
        with self._lock:
            try:
                cursor = self._db.execute(sql, params)
            except sqlite3.Error as exc:
                raise self._error(exc) from exc
        try:
            while True:
                with self._lock:
                    try:
                        rows = cursor.fetchmany(chunk)
                    except sqlite3.Error as exc:
                        raise self._error(exc) from exc
                if not rows:
                    return
                yield from rows
        finally:
            with self._lock, suppress(sqlite3.ProgrammingError):
                cursor.close()  # the journal may be closed already (an error unwinding)

    def claim_batch(
        self,
        job_id: str,
        provider: str,
        size: int,
        max_bytes: int | None = None,
        task_id: str | None = None,
    ) -> Batch | None:
        """Marks the next unsent targets *sending* in a new batch, before any request; with
        ``task_id`` (the task the provider's run sends them in, known before: direct warming),
        the job names that task too, so that `status` asks about it whatever the batch's end."""
        # In input order; the row after seq makes the order total, as the index reads it anyway.
        unsent = (
            "FROM targets WHERE job_id = ? AND provider = ? AND outcome = 'unsent'"
            " AND batch_id IS NULL ORDER BY seq, rowid LIMIT ?"
        )
        with self.transaction() as db:
            cur = db.cursor()
            cur.row_factory = None
            urls = [url for (url,) in cur.execute("SELECT url " + unsent, (job_id, provider, size))]
            if max_bytes is not None:
                urls = fit_bytes(urls, max_bytes)
            if not urls:
                return None
            now = utcnow()
            cur = db.execute(
                "INSERT INTO batches (job_id, provider, state, created_at, updated_at)"
                " VALUES (?, ?, 'sending', ?, ?)",
                (job_id, provider, now, now),
            )
            batch_id = int(cur.lastrowid or 0)
            if task_id:
                self._add_tasks(db, job_id, provider, {task_id: 0}, now)
            # The same query in the same transaction: exactly the first len(urls) of them.
            db.execute(
                "UPDATE targets SET outcome = 'sending', batch_id = ?"
                f" WHERE rowid IN (SELECT rowid {unsent})",
                (batch_id, job_id, provider, len(urls)),
            )
        return Batch(batch_id, provider, tuple(urls), now)

    def record_result(self, job_id: str, batch: Batch, result: BatchResult) -> None:
        """Stores the vendor's answer for a batch: one transaction, all or nothing.

        Only this batch's rows change. A URL the provider left out of every list cannot be
        known to be sent or not: it becomes unknown, and so does the batch, for --resume.
        """
        now = utcnow()
        per_task: dict[str, int] = {}
        if not result.task_ids:  # then task_of(url) is task_id for every URL
            if result.task_id and (result.accepted or result.task_keeps_all):
                per_task[result.task_id] = len(result.accepted)
        else:
            for url in result.accepted:
                task_id = result.task_of(url)
                if task_id:
                    per_task[task_id] = per_task.get(task_id, 0) + 1
        with self.transaction() as db:
            owner = db.execute(
                "SELECT job_id, provider FROM batches WHERE id = ?", (batch.id,)
            ).fetchone()
            if owner is None or tuple(owner) != (job_id, batch.provider):
                whose = f"{owner[0]}'s for {owner[1]}" if owner else "no batch of the journal"
                raise ValueError(f"batch {batch.id} is {whose}, not {job_id}'s")
            whole = self._record_whole_batch(db, job_id, batch, result)
            if not whole:
                self._record_by_url(db, job_id, batch, result)
            self._close_batch(
                db,
                job_id,
                batch,
                now,
                task_id=result.task_id,
                request_id=result.request_id,
                open_targets=0 if whole else None,
            )
            self._add_tasks(db, job_id, batch.provider, per_task, now)

    # By (job, provider, URL), the unique index: the batch's index alone would scan the batch
    # for every URL.
    _MINE = (
        " WHERE job_id = ? AND provider = ? AND url = ? AND batch_id = ?"
        " AND outcome IN ('sending', 'unknown')"
    )
    # A batch's targets still undecided, and those sent and not answered: (job, provider,
    # batch) through the targets' index (journal_db), which has no entry for a batch alone.
    _OPEN = (
        " WHERE job_id = ? AND provider = ? AND outcome IN ('sending', 'unknown') AND batch_id = ?"
    )
    _SENDING = " WHERE job_id = ? AND provider = ? AND outcome = 'sending' AND batch_id = ?"

    def _record_by_url(
        self, db: sqlite3.Connection, job_id: str, batch: Batch, result: BatchResult
    ) -> None:
        """Each listed URL of the batch by itself; the first list naming a URL decides."""
        mine = self._MINE
        key = (job_id, batch.provider)
        db.executemany(
            "UPDATE targets SET outcome = 'accepted', task_id = ?, reason = NULL" + mine,
            [(result.task_of(u), *key, u, batch.id) for u in result.accepted],
        )
        self._record_not_accepted(db, job_id, batch, result, frozenset())
        db.execute("UPDATE targets SET outcome = 'unknown'" + self._SENDING, (*key, batch.id))

    def _record_not_accepted(
        self,
        db: sqlite3.Connection,
        job_id: str,
        batch: Batch,
        result: BatchResult,
        accepted: Set[str],
    ) -> None:
        """The rejected, resend and failed lists, in that order, leaving out ``accepted``."""
        mine = self._MINE
        key = (job_id, batch.provider)
        db.executemany(
            "UPDATE targets SET outcome = 'rejected', reason = ?" + mine,
            [(r, *key, u, batch.id) for u, r in result.rejected.items() if u not in accepted],
        )
        db.executemany(
            "UPDATE targets SET outcome = 'unsent', batch_id = NULL" + mine,
            [(*key, u, batch.id) for u in result.resend if u not in accepted],
        )
        db.executemany(
            "UPDATE targets SET outcome = 'failed', reason = ?, transient = 1" + mine,
            [(r, *key, u, batch.id) for u, r in result.failed.items() if u not in accepted],
        )

    def _record_whole_batch(
        self, db: sqlite3.Connection, job_id: str, batch: Batch, result: BatchResult
    ) -> bool:
        """The common answer in one statement, when it provably ends as ``_record_by_url``.

        That is when every undecided target of the batch is named in some list, and the
        accepted URLs share one task id. Then the other lists go first, by URL and
        without the accepted URLs (the accepted list decides those), and what is left
        undecided in the batch is exactly the accepted URLs of the batch: one UPDATE by batch
        takes them all, and nothing is left unknown. False, with nothing changed, when that
        does not hold.
        """
        task_id = result.task_id
        if result.task_ids:
            task_ids = {result.task_of(u) for u in result.accepted}
            if len(task_ids) > 1:
                return False
            if task_ids:
                (task_id,) = task_ids
        accepted = set(result.accepted)
        cur = db.cursor()
        cur.row_factory = None
        key = (job_id, batch.provider, batch.id)
        in_batch = {url for (url,) in cur.execute("SELECT url FROM targets" + self._OPEN, key)}
        if in_batch.difference(accepted, result.rejected, result.resend, result.failed):
            return False
        self._record_not_accepted(db, job_id, batch, result, accepted)
        db.execute(
            "UPDATE targets SET outcome = 'accepted', task_id = ?, reason = NULL" + self._OPEN,
            (task_id, *key),
        )
        return True

    def record_found(self, job_id: str, batch: Batch, found: Mapping[str, str]) -> None:
        """A lookup's answer for an unknown batch: found URLs accepted, the rest to send again."""
        now = utcnow()
        by_task: dict[str, int] = {}
        with self.transaction() as db:
            for url, task_id in found.items():
                cur = db.execute(
                    "UPDATE targets SET outcome = 'accepted', task_id = ?, reason = NULL"
                    " WHERE job_id = ? AND provider = ? AND url = ? AND batch_id = ?"
                    " AND outcome IN ('sending', 'unknown')",
                    (task_id, job_id, batch.provider, url, batch.id),
                )
                if cur.rowcount:
                    by_task[task_id] = by_task.get(task_id, 0) + 1
            db.execute(
                "UPDATE targets SET outcome = 'unsent', reason = NULL, batch_id = NULL"
                + self._OPEN,
                (job_id, batch.provider, batch.id),
            )
            self._close_batch(db, job_id, batch, now)
            self._add_tasks(db, job_id, batch.provider, by_task, now)

    def release_batch(
        self,
        job_id: str,
        batch: Batch,
        outcome: str,
        reason: str | None = None,
        *,
        transient: bool = True,
    ) -> None:
        """Ends a batch that got no vendor result: its undecided targets take ``outcome``."""
        with self.transaction() as db:
            db.execute(
                "UPDATE targets SET outcome = ?, reason = ?, transient = ?,"
                " batch_id = CASE WHEN ? = 'unsent' THEN NULL ELSE batch_id END" + self._OPEN,
                (outcome, reason, int(transient), outcome, job_id, batch.provider, batch.id),
            )
            db.execute(
                "UPDATE batches SET state = ?, error = ?, updated_at = ? WHERE id = ?",
                (UNKNOWN if outcome == UNKNOWN else "done", reason, utcnow(), batch.id),
            )

    def mark_unknown(self, batch: Batch, reason: str) -> None:
        """The batch's request got no clear answer: recorded before anyone looks it up."""
        with self.transaction() as db:
            db.execute(
                "UPDATE targets SET outcome = 'unknown', reason = ?"
                " WHERE job_id = (SELECT job_id FROM batches WHERE id = ?)"
                " AND provider = ? AND outcome = 'sending' AND batch_id = ?",
                (reason, batch.id, batch.provider, batch.id),
            )
            db.execute(
                "UPDATE batches SET state = 'unknown', error = ?, updated_at = ? WHERE id = ?",
                (reason, utcnow(), batch.id),
            )

    def split_batch(self, job_id: str, batch: Batch, part: Sequence[str]) -> tuple[Batch, Batch]:
        """Moves ``part`` of a batch not yet answered into a batch of its own, still *sending*.

        Returns (the new part, what stays in ``batch``): each is answered, looked up or
        released on its own from now on.
        """
        now = utcnow()
        wanted = set(part)
        with self.transaction() as db:
            cur = db.execute(
                "INSERT INTO batches (job_id, provider, state, created_at, updated_at)"
                " VALUES (?, ?, 'sending', ?, ?)",
                (job_id, batch.provider, now, now),
            )
            new_id = int(cur.lastrowid or 0)
            db.executemany(
                "UPDATE targets SET batch_id = ?"
                " WHERE job_id = ? AND provider = ? AND url = ? AND batch_id = ?",
                [(new_id, job_id, batch.provider, u, batch.id) for u in part],
            )
        return (
            Batch(new_id, batch.provider, tuple(part), now),
            Batch(
                batch.id,
                batch.provider,
                tuple(u for u in batch.urls if u not in wanted),
                batch.created_at,
            ),
        )

    def set_outcome(
        self,
        job_id: str,
        provider: str,
        urls: Iterable[str],
        outcome: str,
        reason: str | None,
        *,
        transient: bool = True,
    ) -> None:
        with self.transaction() as db:
            db.executemany(
                "UPDATE targets SET outcome = ?, reason = ?, transient = ?,"
                " batch_id = CASE WHEN ? = 'unsent' THEN NULL ELSE batch_id END"  # see _OPEN
                " WHERE job_id = ? AND provider = ? AND url = ?",
                [(outcome, reason, int(transient), outcome, job_id, provider, u) for u in urls],
            )

    def defer_unsent(self, job_id: str, provider: str, reason: str) -> int:
        with self.transaction() as db:
            cur = db.execute(
                "UPDATE targets SET outcome = 'deferred', reason = ?"
                " WHERE job_id = ? AND provider = ? AND outcome = 'unsent'",
                (reason, job_id, provider),
            )
            return cur.rowcount

    def defer_beyond(self, job_id: str, provider: str, keep: int, reason: str) -> int:
        """Defers the unsent targets after the first ``keep`` (in input order)."""
        with self.transaction() as db:
            cur = db.execute(
                "UPDATE targets SET outcome = 'deferred', reason = ?"
                " WHERE rowid IN (SELECT rowid FROM targets WHERE job_id = ? AND provider = ?"
                "  AND outcome = 'unsent' AND batch_id IS NULL ORDER BY seq, rowid"
                "  LIMIT -1 OFFSET ?)",
                (reason, job_id, provider, max(0, keep)),
            )
            return cur.rowcount

    def unknown_batches(self, job_id: str, provider: str) -> list[Batch]:
        """Batches (whole or parts of a split) that may have reached the vendor unanswered."""
        batches = self._query(
            "SELECT id, created_at FROM batches WHERE job_id = ? AND provider = ?"
            " AND state IN ('unknown', 'sending') ORDER BY id",
            (job_id, provider),
        )
        result = []
        for b in batches:
            urls = self._query(
                "SELECT url FROM targets" + self._OPEN + " ORDER BY seq",
                (job_id, provider, b["id"]),
            )
            result.append(Batch(b["id"], provider, tuple(r[0] for r in urls), b["created_at"]))
        return result

    def prepare_resume(self, job_id: str) -> None:
        """What a resumed run may send again: deferred, unsent, and transient failures.

        Batches still *sending* belonged to a run that died mid-request: they
        become unknown, to be looked up before anything is resent.
        """
        with self.transaction() as db:
            db.execute(
                "UPDATE batches SET state = 'unknown', updated_at = ?"
                " WHERE job_id = ? AND state = 'sending'",
                (utcnow(), job_id),
            )
            db.execute(
                "UPDATE targets SET outcome = 'unknown' WHERE job_id = ? AND outcome = 'sending'",
                (job_id,),
            )
            db.execute(
                "UPDATE targets SET outcome = 'unsent', reason = NULL, batch_id = NULL"
                " WHERE job_id = ?"
                " AND (outcome = 'deferred' OR (outcome = 'failed' AND transient = 1))",
                (job_id,),
            )

    def _close_batch(
        self,
        db: sqlite3.Connection,
        job_id: str,
        batch: Batch,
        now: str,
        *,
        task_id: str | None = None,
        request_id: str | None = None,
        open_targets: int | None = None,
    ) -> None:
        """Done, unless some of its targets are still undecided (then unknown, for --resume).

        ``open_targets``: how many are, when the caller knows; counted otherwise.
        """
        if open_targets is None:
            (open_targets,) = db.execute(
                "SELECT COUNT(*) FROM targets" + self._OPEN, (job_id, batch.provider, batch.id)
            ).fetchone()
        db.execute(
            "UPDATE batches SET state = ?, task_id = COALESCE(?, task_id),"
            " request_id = COALESCE(?, request_id), updated_at = ? WHERE id = ?",
            ("unknown" if open_targets else "done", task_id, request_id, now, batch.id),
        )

    @staticmethod
    def _add_tasks(
        db: sqlite3.Connection, job_id: str, provider: str, per_task: Mapping[str, int], now: str
    ) -> None:
        for task_id, n in per_task.items():
            db.execute(
                "INSERT INTO tasks (job_id, provider, task_id, urls, created_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (job_id, provider, task_id)"
                " DO UPDATE SET urls = urls + excluded.urls",
                (job_id, provider, task_id, n, now),
            )

    # --- tasks ---

    def job_state(self, job_id: str) -> str | None:
        """A job's state, or None when this journal has no such job."""
        return self.job_state_at(job_id)[0]

    def job_state_at(self, job_id: str) -> tuple[str | None, str | None]:
        """A job's state and when its row last changed (None, None: no such job)."""
        rows = self._query("SELECT state, updated_at FROM jobs WHERE id = ?", (job_id,))
        return (str(rows[0]["state"]), str(rows[0]["updated_at"])) if rows else (None, None)

    def tasks_of_other_jobs(
        self, job_id: str, provider: str, task_ids: Collection[str]
    ) -> set[str]:
        """Which of these task ids, found at ``provider``'s vendor, a job other than
        ``job_id`` recorded at the same vendor (its type and endpoint, as the jobs remember
        them; the alias where a job does not): a vendor's ids are unique at that vendor only,
        and another vendor's task of the same id holds none of these URLs."""
        ours = self._vendors(job_id).get(provider)
        found: set[str] = set()
        wanted = sorted(task_ids)
        for i in range(0, len(wanted), 500):  # a lookup finds a few tasks: bound each query
            chunk = wanted[i : i + 500]
            rows = self._query(
                "SELECT tasks.task_id, tasks.provider, jobs.options FROM tasks"
                " JOIN jobs ON jobs.id = tasks.job_id WHERE tasks.job_id != ?"
                f" AND tasks.task_id IN ({','.join('?' * len(chunk))})",
                (job_id, *chunk),
            )
            for row in rows:
                theirs = json.loads(row["options"]).get("vendors", {}).get(row["provider"])
                same = theirs == ours if ours and theirs else row["provider"] == provider
                if same:
                    found.add(row["task_id"])
        return found

    def _vendors(self, job_id: str) -> Mapping[str, str]:
        """The vendor each of the job's providers sends to (finish_intake), where it says."""
        rows = self._query("SELECT options FROM jobs WHERE id = ?", (job_id,))
        return dict(json.loads(rows[0]["options"]).get("vendors", {})) if rows else {}

    def tasks(self, job_id: str, kind: str = "prefetch") -> list[Task]:
        rows = self._query(
            "SELECT * FROM tasks WHERE job_id = ? AND kind = ? ORDER BY created_at, task_id",
            (job_id, kind),
        )
        return [
            Task(
                provider=r["provider"],
                task_id=r["task_id"],
                urls=r["urls"],
                created_at=r["created_at"],
                kind=r["kind"],
                state=r["state"],
                raw_state=r["raw_state"],
            )
            for r in rows
        ]

    def add_task(self, job_id: str, provider: str, task_id: str, urls: int, kind: str) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO tasks (job_id, provider, task_id, kind, urls, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (job_id, provider, task_id)"
                " DO UPDATE SET urls = urls + excluded.urls",
                (job_id, provider, task_id, kind, urls, utcnow()),
            )

    def save_task_states(
        self, job_id: str, provider: str, states: Iterable[tuple[str, str, str | None]]
    ) -> None:
        with self.transaction() as db:
            db.executemany(
                "UPDATE tasks SET state = ?, raw_state = ?"
                " WHERE job_id = ? AND provider = ? AND task_id = ?",
                [(s, raw, job_id, provider, t) for t, s, raw in states],
            )

    def busy_jobs(self, provider_key: str, exclude: str | None = None) -> list[Job]:
        """Jobs whose state says they may still run at the vendor, for one-job-at-a-time stacks."""
        rows = self._query(
            "SELECT * FROM jobs WHERE state IN ('submitted', 'pending', 'running', 'incomplete')"
            " AND id != ? ORDER BY created_at DESC",
            (exclude or "",),
        )
        return [j for j in map(_job, rows) if provider_key in j.providers]


def _has_json(db: sqlite3.Connection) -> bool:
    """Whether this SQLite has json_each (built in since 3.38, an option before)."""
    try:
        db.execute("SELECT value FROM json_each('[1]')").fetchall()
    except sqlite3.Error:
        return False
    return True


def fit_bytes(urls: list[str], max_bytes: int) -> list[str]:
    """The longest prefix of ``urls`` whose JSON encoding fits ``max_bytes`` (at least one URL)."""
    total = 2  # a JSON list's brackets
    for i, url in enumerate(urls):
        total += json_bytes(url)
        if total > max_bytes and i > 0:
            return urls[:i]
    return urls


def json_bytes(url: str) -> int:
    """What ``url`` adds to a JSON list of URLs: json.dumps(url), which is ASCII (as many
    bytes as characters), and its separator."""
    return len(encode_basestring_ascii(url)) + 1


# The columns `jobs` lists: every one but the skipped inputs, which it shows none of.
_LISTED = "id, created_at, updated_at, state, providers, options, urls, '[]' AS skipped, n_skipped"


def _job(row: sqlite3.Row) -> Job:
    skipped = tuple(json.loads(row["skipped"]))
    return Job(
        id=row["id"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        state=row["state"],
        providers=tuple(json.loads(row["providers"])),
        options=json.loads(row["options"]),
        urls=row["urls"],
        skipped=skipped,
        # Not counted apart by the journal of an earlier prewarm: all were kept.
        n_skipped=len(skipped) if row["n_skipped"] is None else row["n_skipped"],
    )
