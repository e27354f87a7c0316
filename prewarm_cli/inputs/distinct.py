"""The distinct URLs of a read, in input order, kept on disk rather than in memory."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any

_CHUNK = 4096  # URLs per insert statement
_FETCH = 1024  # rows per read


class DistinctUrls:
    """URLs in the order each first came, every one once, in a private temporary SQLite file.

    A repeat is dropped by the unique index, so that a million URLs cost disk, not memory;
    SQLite keeps a few MiB of pages in memory and the rest in a file of the temporary directory
    that only this process can read and that is gone when it is closed (or the process ends).
    Iterate it as often as needed, ``len()`` is the number of distinct URLs.
    """

    def __init__(self, urls: Iterable[str] = ()) -> None:
        # "" is SQLite's private temporary database: created 0600, removed when closed.
        self._db = sqlite3.connect("")
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("CREATE TABLE urls (url TEXT NOT NULL UNIQUE)")
        self._n_urls = 0
        self.add(urls)

    def add(self, urls: Iterable[str]) -> None:
        """Adds those not already here, in order."""
        it = iter(urls)
        while chunk := list(islice(it, _CHUNK)):
            with self._db:
                cursor = self._db.executemany(
                    "INSERT OR IGNORE INTO urls (url) VALUES (?)", ((url,) for url in chunk)
                )
            self._n_urls += cursor.rowcount

    def __len__(self) -> int:
        return self._n_urls

    def __iter__(self) -> Iterator[str]:
        cursor = self._db.execute("SELECT url FROM urls ORDER BY rowid")
        while rows := cursor.fetchmany(_FETCH):
            for (url,) in rows:
                yield url

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> DistinctUrls:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
