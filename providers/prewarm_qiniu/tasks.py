"""Qiniu's list items (prefetch/list, refresh/list: one per URL and request) as states."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from prewarm_cli.plugin import State, TaskStatus, UrlStatus
from prewarm_qiniu.clock import parse_vendor_time

__all__ = ["latest_per_url", "task_status"]

ITEM_STATES = {
    "processing": State.RUNNING,
    "success": State.SUCCEEDED,
    "failure": State.FAILED,
}


def task_status(
    task_id: str, items: Iterable[dict[str, Any]], details: dict[str, Any]
) -> TaskStatus:
    """One task's state from its list items (one item per URL)."""
    by_url: dict[str, dict[str, Any]] = {}
    for item in items:
        url = item.get("url")
        if isinstance(url, str):
            by_url[url] = item
    urls: list[UrlStatus] = []
    raws: set[str] = set()
    for url, item in by_url.items():
        raw = str(item.get("state") or "")
        raws.add(raw)
        state = ITEM_STATES.get(raw, State.RUNNING)  # an unknown state is not finished
        reason = None
        if state is State.FAILED:
            detail = item.get("stateDetail")
            reason = str(detail) if detail else "failure"
        urls.append(UrlStatus(url, state, reason))
    counts = Counter(u.state for u in urls)
    done = counts[State.SUCCEEDED] + counts[State.FAILED]
    if not urls:
        state = State.PENDING  # accepted, but not listed yet
    elif done < len(urls):
        state = State.RUNNING
    elif counts[State.FAILED] == 0:
        state = State.SUCCEEDED
    elif counts[State.SUCCEEDED] == 0:
        state = State.FAILED
    else:
        state = State.PARTIAL
    return TaskStatus(
        task_id=task_id,
        state=state,
        raw_state=",".join(sorted(raws)) if raws else None,
        total=len(urls),
        succeeded=counts[State.SUCCEEDED],
        failed=counts[State.FAILED],
        in_progress=len(urls) - done,
        urls=tuple(urls),
        details=details,
    )


def latest_per_url(
    items: Iterable[Mapping[str, Any]],
    urls: Sequence[str],
    keep: Callable[[Mapping[str, Any], datetime | None], bool],
) -> dict[str, str]:
    """{url: requestId} of the newest kept item for each of ``urls``."""
    wanted = set(urls)
    oldest = datetime.min.replace(tzinfo=UTC)
    found: dict[str, tuple[datetime, str]] = {}
    for item in items:
        url, request_id = item.get("url"), item.get("requestId")
        if not isinstance(url, str) or url not in wanted:
            continue
        if not isinstance(request_id, str) or not request_id:
            continue
        created = parse_vendor_time(item.get("createAt"))
        if not keep(item, created):
            continue
        moment = created or oldest
        if url not in found or moment >= found[url][0]:
            found[url] = (moment, request_id)
    return {u: v[1] for u, v in found.items()}
