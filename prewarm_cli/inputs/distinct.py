"""The distinct URLs of a read, in input order: in memory while they are few, on disk after."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any

from prewarm_cli.errors import PrewarmError

IN_MEMORY = 20_000  # URLs kept in a dict (a few MiB); more go to a temporary file
_CHUNK = 4096  # URLs per insert statement
_FETCH = 1024  # rows per read


class DistinctUrls:
    """URLs in the order each first came, every one once.

    The first ``IN_MEMORY`` are kept in a dict; past that, all of them move to a temporary
    SQLite file whose unique index drops the repeats, so that a million URLs cost disk, not
    memory (SQLite keeps 2 MiB of its pages in memory). SQLite makes that file 0600 in its
    temporary directory (``SQLITE_TMPDIR``, ``TMPDIR``, else /var/tmp) and unlinks it at
    once: nobody else can open it, and it is gone when closed or when the process ends.
    Iterate it as often as needed; ``len()`` is the number of distinct URLs.
    """

    def __init__(self, urls: Iterable[str] = ()) -> None:
        self._memory: dict[str, None] | None = {}
        self._db: sqlite3.Connection | None = None
        self._n_urls = 0
        self.add(urls)

    def add(self, urls: Iterable[str]) -> None:
        """Adds those not already here, in order."""
        it = iter(urls)
        while chunk := list(islice(it, _CHUNK)):
            if self._memory is not None:
                self._memory.update(dict.fromkeys(chunk))
                self._n_urls = len(self._memory)
                if self._n_urls > IN_MEMORY:
                    self._spill()
            else:
                self._insert(chunk)

    def _spill(self) -> None:
        """Moves the URLs held in memory to the temporary file, which takes the rest."""
        assert self._memory is not None
        try:
            # "" is SQLite's private temporary database.
            self._db = sqlite3.connect("")
            self._db.execute("PRAGMA journal_mode=OFF")
            self._db.execute("PRAGMA synchronous=OFF")
            self._db.execute("PRAGMA cache_size=-2048")  # KiB of pages in memory, the rest on disk
            self._db.execute("CREATE TABLE urls (url TEXT NOT NULL UNIQUE)")
        except sqlite3.OperationalError as exc:
            raise _no_room(exc) from exc
        held, self._memory, self._n_urls = self._memory, None, 0
        self._insert(held)

    def _insert(self, urls: Iterable[str]) -> None:
        assert self._db is not None
        try:
            with self._db:
                cursor = self._db.executemany(
                    "INSERT OR IGNORE INTO urls (url) VALUES (?)", ((url,) for url in urls)
                )
        except sqlite3.OperationalError as exc:
            raise _no_room(exc) from exc
        self._n_urls += cursor.rowcount

    def __len__(self) -> int:
        return self._n_urls

    def __iter__(self) -> Iterator[str]:
        if self._memory is not None:
            yield from self._memory
            return
        assert self._db is not None
        try:
            cursor = self._db.execute("SELECT url FROM urls ORDER BY rowid")
            while rows := cursor.fetchmany(_FETCH):
                for (url,) in rows:
                    yield url
        except sqlite3.OperationalError as exc:
            raise _no_room(exc) from exc

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        self._memory, self._n_urls = {}, 0

    def __enter__(self) -> DistinctUrls:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _no_room(exc: sqlite3.Error) -> PrewarmError:
    where = _temporary_directory()
    return PrewarmError(
        f"cannot keep the URLs in a temporary file in {where}: {exc}",
        hint="free some space there, or set TMPDIR (SQLite's SQLITE_TMPDIR) to a directory"
        " with room: a million URLs take about 130 MB",
    )


def _temporary_directory() -> str:
    """Where SQLite makes its temporary files: the first of its candidates that is a
    directory this process can write to (its own order, in os_unix.c)."""
    candidates = [os.environ.get("SQLITE_TMPDIR"), os.environ.get("TMPDIR")]
    for path in [*candidates, "/var/tmp", "/usr/tmp", "/tmp"]:
        if path and os.path.isdir(path) and os.access(path, os.W_OK | os.X_OK):
            return path
    return "."
