"""The provider's record of every warm request, in its state directory.

Each answer is committed as soon as it arrives, so that after a kill ``--resume`` can tell
what was answered (``find_submitted``) and send only the rest; ``status`` and ``report``
read it and send nothing. A run (one provider instance at work) is one vendor task.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from prewarm_cli.errors import ProviderError
from prewarm_direct.warm import OK, Answer

_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    run_id TEXT NOT NULL,
    alias TEXT NOT NULL,
    url TEXT NOT NULL,
    target TEXT NOT NULL,
    variant TEXT NOT NULL,
    outcome TEXT NOT NULL,
    status_code INTEGER,
    cache TEXT,
    bytes INTEGER NOT NULL DEFAULT 0,
    reason TEXT,
    pop TEXT,
    ip TEXT,
    at TEXT NOT NULL,
    PRIMARY KEY (run_id, url, target, variant)
);
CREATE INDEX IF NOT EXISTS requests_by_url ON requests (alias, url, at);
"""


@dataclass(frozen=True)
class Record:
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


def utcnow() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Store:
    """SQLite, one connection shared by the provider's threads; private to the user."""

    def __init__(self, path: Path) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not path.exists():
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
            self._db = sqlite3.connect(
                str(path), timeout=30.0, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # survives a killed process
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise ProviderError(
                f"cannot open the direct warming record {path}: {exc}",
                hint="move the file aside, or check the state directory's permissions",
            ) from exc
        self.path = path
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def save(
        self,
        run_id: str,
        alias: str,
        url: str,
        target: str,
        ip: str | None,
        variant: str,
        answer: Answer,
    ) -> None:
        self._write(
            [
                (
                    run_id,
                    alias,
                    url,
                    target,
                    variant,
                    answer.outcome,
                    answer.status_code,
                    answer.cache,
                    answer.bytes,
                    answer.reason,
                    answer.pop,
                    ip,
                    utcnow(),
                )
            ]
        )

    def copy(self, run_id: str, alias: str, records: Iterable[Record]) -> None:
        """Records of an earlier run carried into this one (answered before a kill)."""
        self._write(
            [
                (
                    run_id,
                    alias,
                    r.url,
                    r.target,
                    r.variant,
                    r.outcome,
                    r.status_code,
                    r.cache,
                    r.bytes,
                    r.reason,
                    r.pop,
                    r.ip,
                    r.at,
                )
                for r in records
            ]
        )

    def _write(self, rows: list[tuple[object, ...]]) -> None:
        with self._lock:
            try:
                self._db.executemany(
                    "INSERT OR REPLACE INTO requests (run_id, alias, url, target, variant,"
                    " outcome, status_code, cache, bytes, reason, pop, ip, at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
            except sqlite3.Error as exc:
                raise ProviderError(f"cannot write {self.path}: {exc}") from exc

    def since(self, alias: str, urls: Sequence[str], since: str) -> list[Record]:
        """Every answer about these URLs recorded since ``since`` (oldest first)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT run_id, url, target, variant, outcome, status_code, cache, bytes,"
                " reason, pop, ip, at FROM requests WHERE alias = ? AND at >= ?"
                " AND url IN (SELECT value FROM json_each(?)) ORDER BY at",
                (alias, since, _json(urls)),
            ).fetchall()
        return [Record(*row) for row in rows]

    def of_runs(self, run_ids: Sequence[str]) -> list[Record]:
        """The latest answer per (URL, target, variant) over these runs."""
        with self._lock:
            rows = self._db.execute(
                "SELECT run_id, url, target, variant, outcome, status_code, cache, bytes,"
                " reason, pop, ip, at FROM requests"
                " WHERE run_id IN (SELECT value FROM json_each(?)) ORDER BY at",
                (_json(run_ids),),
            ).fetchall()
        latest: dict[tuple[str, str, str], Record] = {}
        for row in rows:
            record = Record(*row)
            key = (record.url, record.target, record.variant)
            previous = latest.get(key)
            # An answer is never replaced by a later failure of the same request.
            if previous is None or previous.outcome != OK or record.outcome == OK:
                latest[key] = record
        return list(latest.values())


def _json(items: Sequence[str]) -> str:
    import json

    return json.dumps(list(items))
