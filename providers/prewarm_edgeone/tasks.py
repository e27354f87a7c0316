"""EdgeOne's task records (Describe{Prefetch,Purge}Tasks, one per target) as prewarm's states."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from prewarm_cli.plugin import State, TaskStatus, UrlStatus

__all__ = ["created_at", "iso", "job_status", "probes"]

STATES: Mapping[str, State] = {
    "processing": State.RUNNING,
    "success": State.SUCCEEDED,
    "failed": State.FAILED,
    "invalid": State.FAILED,  # the origin answered with a non-2xx status
    "timeout": State.TIMED_OUT,
    "canceled": State.CANCELLED,
    "cancelled": State.CANCELLED,
}
FAILED_STATES = frozenset({State.FAILED, State.TIMED_OUT, State.CANCELLED})


def job_status(
    job_id: str, tasks: Sequence[Any], ours: Mapping[str, str], zone_id: str
) -> TaskStatus:
    """One job's status from its task records; ``ours`` maps targets as sent to our URLs."""
    urls: list[UrlStatus] = []
    raws: dict[str, int] = {}
    for task in tasks:
        raw = str(task.Status or "")
        raws[raw] = raws.get(raw, 0) + 1
        state = STATES.get(raw, State.PENDING)
        reason = None
        if state in FAILED_STATES:
            reason = _reason(raw, task.FailType, task.FailMessage)
        target = str(task.Target or "")
        urls.append(UrlStatus(ours.get(target, target), state, reason))
    counts = dict.fromkeys(State, 0)
    for u in urls:
        counts[u.state] += 1
    return TaskStatus(
        task_id=job_id,
        state=_combine([u.state for u in urls]),
        raw_state=",".join(sorted(raws)) if raws else None,
        total=len(urls),
        succeeded=counts[State.SUCCEEDED],
        failed=sum(counts[s] for s in FAILED_STATES),
        in_progress=counts[State.RUNNING],
        pending=counts[State.PENDING],
        urls=tuple(urls),
        details={"zone_id": zone_id},
    )


def _combine(states: Sequence[State]) -> State:
    """One job's state from its URLs' states."""
    found = set(states)
    if not found or found == {State.PENDING}:
        return State.PENDING
    if found & {State.PENDING, State.RUNNING}:
        return State.RUNNING
    if found == {State.SUCCEEDED}:
        return State.SUCCEEDED
    if State.SUCCEEDED in found:
        return State.PARTIAL
    return found.pop() if len(found) == 1 else State.FAILED


def _reason(raw: str, fail_type: Any, fail_message: Any) -> str:
    parts = [str(p) for p in (fail_type, fail_message) if p]
    if parts:
        return ": ".join(parts)
    if raw == "invalid":
        return "invalid: the origin answered with a non-2xx status"
    return raw or "failed"


def probes(targets: list[str]) -> list[str]:
    """A few of a batch's URLs to look up: first, middle and last."""
    picks = [targets[0], targets[len(targets) // 2], targets[-1]]
    return list(dict.fromkeys(picks))


def created_at(task: Any) -> datetime | None:
    text = str(task.CreateTime or "")
    try:
        created = datetime.fromisoformat(text)
    except ValueError:
        return None
    return created if created.tzinfo else created.replace(tzinfo=UTC)


def iso(moment: datetime) -> str:
    """ISO 8601 with an explicit offset, as the Describe actions want."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")
