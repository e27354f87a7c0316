"""The last daily-quota figures Qiniu reported, kept in a small JSON file in the state dir.

Qiniu has no quota call: ``quotaDay``/``surplusDay`` come only with prefetch answers
(``urlQuotaDay``/``urlSurplusDay`` with refresh answers). They are remembered per
credential so that ``prewarm quota`` and ``status`` can show them later.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

__all__ = ["QuotaStore"]

FILE_NAME = "qiniu-quota.json"

_lock = threading.Lock()  # one writer at a time within the process


class QuotaStore:
    """Reads and updates one credential's remembered quota figures."""

    def __init__(self, path: Path, key: str) -> None:
        self.path = path
        self.key = key

    @classmethod
    def in_state_dir(cls, state_dir: Path, key: str) -> QuotaStore:
        """The store in the state directory the engine handed the provider."""
        return cls(state_dir / FILE_NAME, key)

    def load(self) -> dict[str, Any]:
        """This credential's entry: ``{prefetch: {...}, refresh: {...}}`` (empty when none)."""
        entry = self._read_all().get(self.key)
        return entry if isinstance(entry, dict) else {}

    def record(self, kind: str, daily: int, remaining: int, observed: datetime) -> None:
        """Remembers ``kind`` ("prefetch" or "refresh") figures seen at ``observed``.

        Concurrent batches finish out of order: a figure older than the one stored is
        dropped, so the file always holds the latest answer.
        """
        with _lock:
            data = self._read_all()
            entry = data.get(self.key)
            if not isinstance(entry, dict):
                entry = {}
            old = entry.get(kind)
            if isinstance(old, dict) and str(old.get("observed_at", "")) > observed.isoformat():
                return
            entry[kind] = {
                "daily": daily,
                "remaining": remaining,
                "observed_at": observed.isoformat(),
            }
            data[self.key] = entry
            self._write_all(data)

    def _read_all(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}  # none yet, or damaged: the next answer rewrites it
        return data if isinstance(data, dict) else {}

    def _write_all(self, data: dict[str, Any]) -> None:
        # write-then-rename: a concurrent reader sees the old file or the new, never half
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".qiniu-quota-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh, indent=1, sort_keys=True)
            os.replace(tmp, self.path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
