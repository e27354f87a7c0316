"""The zone's quotas as DescribeContentQuota told them: one cache for every use.

``Batch`` sizes the requests (read once per run), ``DailyAvailable`` of ``purge_url`` bounds
the purges (counted down as this run purges), ``quota`` shows a fresh figure, and a
``LimitExceeded.BatchQuota`` refusal re-reads the batch size unless a read is seconds old.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from prewarm_edgeone.client import ApiError

__all__ = ["PREFETCH_TYPE", "PURGE_TYPE", "QuotaCache", "QuotaEntry", "QuotaRead", "entries"]

PREFETCH_TYPE = "prefetch_url"
PURGE_TYPE = "purge_url"


@dataclass(frozen=True)
class QuotaEntry:
    """One type's figures: targets per request, per day, and left today."""

    batch: int | None
    daily: int | None
    available: int | None

    def to_dict(self) -> dict[str, int | None]:
        return {"batch": self.batch, "daily": self.daily, "remaining": self.available}


@dataclass(frozen=True)
class QuotaRead:
    """One DescribeContentQuota answer, by quota type (``prefetch_url``, ``purge_url``...)."""

    prefetch: Mapping[str, QuotaEntry]
    purge: Mapping[str, QuotaEntry]
    request_id: str | None
    at: float = field(default_factory=time.monotonic)


def entries(items: Any) -> dict[str, QuotaEntry]:
    """``PrefetchQuota`` or ``PurgeQuota`` (a list of SDK ``Quota`` models, or None) by type."""
    out: dict[str, QuotaEntry] = {}
    for item in items or []:
        out[str(item.Type)] = QuotaEntry(
            batch=_opt_int(item.Batch),
            daily=_opt_int(item.Daily),
            available=_opt_int(item.DailyAvailable),
        )
    return out


class QuotaCache:
    """The last quota read, kept up to date with this run's purges.

    A read that failed is not asked again by the uses that take a read of any age (the
    batch size, the purge budget): the run goes on without it, as it did the first time.
    """

    def __init__(self, describe: Callable[[], QuotaRead]) -> None:
        self._describe = describe
        self._lock = threading.Lock()
        self._read: QuotaRead | None = None
        self._failure: ApiError | None = None
        self._shown = True  # whether quota() has shown _read

    def get(self, max_age: float = math.inf) -> QuotaRead:
        """A read at most ``max_age`` seconds old (any read of this run by default)."""
        with self._lock:
            if self._read is not None and time.monotonic() - self._read.at < max_age:
                return self._read
            if self._failure is not None and max_age == math.inf:
                raise self._failure
        try:
            read = self._describe()
        except ApiError as err:
            with self._lock:
                self._failure = err
            raise
        with self._lock:
            self._read, self._failure, self._shown = read, None, False
        return read

    def for_display(self) -> QuotaRead:
        """For ``quota``: the read this run made, once (it is fresh), then a new one each time."""
        with self._lock:
            if self._read is not None and not self._shown:
                self._shown = True
                return self._read
        read = self._describe()
        with self._lock:
            self._read, self._failure, self._shown = read, None, True
        return read

    def spend_purges(self, n_urls: int) -> None:
        """Counts purged URLs off the purge budget of the cached read (when it has one)."""
        with self._lock:
            entry = self._read.purge.get(PURGE_TYPE) if self._read else None
            if entry is not None and entry.available is not None:
                self._set_purges_left(max(0, entry.available - n_urls))

    def purges_exhausted(self) -> None:
        """The vendor refused a purge for the daily quota: none is left today."""
        with self._lock:
            self._set_purges_left(0)

    def _set_purges_left(self, n_urls: int) -> None:
        read = self._read or QuotaRead(prefetch={}, purge={}, request_id=None)
        entry = read.purge.get(PURGE_TYPE) or QuotaEntry(None, None, None)
        purge = {**read.purge, PURGE_TYPE: replace(entry, available=n_urls)}
        self._read = replace(read, purge=purge)


def _opt_int(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None
