"""The jobs this machine stopped with force_stop, kept in the state directory.

The stack says STOPPED both when prewarm cancels a job and when the job's timeout rule
fires; the fact sheet's rule tells them apart by who sent the force_stop: a job stopped
here is `cancelled`, any other `timed_out`.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterable
from pathlib import Path

from prewarm_cli.plugin import write_private

__all__ = ["FILE_NAME", "remember", "stopped_here"]

FILE_NAME = "aws-stopped.json"
MAX_KEPT = 1000  # the newest; a stack runs one job at a time

_lock = threading.Lock()  # one writer at a time within the process


def stopped_here(state_dir: Path) -> set[str]:
    """The request ids of the jobs a `prewarm cancel` on this machine stopped."""
    return set(_read_list(state_dir / FILE_NAME))


def remember(state_dir: Path, task_ids: Iterable[str]) -> None:
    """Adds these request ids (a failure to write is not the cancel's: it is left out)."""
    with _lock:
        path = state_dir / FILE_NAME
        added = list(task_ids)
        again = set(added)
        kept = [*(t for t in _read_list(path) if t not in again), *added][-MAX_KEPT:]
        with contextlib.suppress(OSError):
            write_private(path, json.dumps(kept).encode())


def _read_list(path: Path) -> list[str]:
    """The list in the file; none when there is no file yet, or a damaged one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [str(t) for t in data] if isinstance(data, list) else []
