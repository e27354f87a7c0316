"""A generic, configurable fake CDN vendor: a real HTTP server on 127.0.0.1.

It speaks a small JSON API (prefetch, task status, lookup, quota, cancel, purge), enforces
auth, batch size and a daily URL quota, records rate violations instead of refusing, and
can inject faults (throttling, 5xx, dropped connections, slow replies, invalid input) so
that the engine's retry / unknown-outcome / split logic can be tested end to end. The
server keeps its state in the test process, so a CLI subprocess may be killed mid-run.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from fakes.base import JsonHandler, LoopbackServer, QuietServer, Reply

__all__ = ["FAULT_KINDS", "FakeCdn", "FakeTask"]

FAULT_KINDS = frozenset(
    {"429", "503", "500", "drop_before", "drop_after", "slow", "invalid", "invalid_unnamed"}
)
_PRE_FAULTS = frozenset({"429", "503", "drop_before", "invalid", "invalid_unnamed"})

PREFETCH = "/v1/prefetch"
FAIL_REASON = "origin returned 404"
REJECT_REASON = "blocked by vendor policy"
FAIL_POP = "FAKE-POP-1"
_EPSILON = 1e-9  # so that a clock advanced by exactly task_seconds reaches it despite rounding


@dataclass
class FakeTask:
    """One prefetch task the fake vendor accepted."""

    task_id: str
    urls: list[str]
    created: float
    headers: dict[str, str] = field(default_factory=dict)
    mode: str | None = None
    cancelled_at: float | None = None


@dataclass
class _Purge:
    task_id: str
    urls: list[str]
    created: float


@dataclass
class _Fault:
    kind: str
    path: str
    remaining: int  # -1: forever
    retry_after: float | None
    urls_with: str | None = None  # only requests holding a URL that contains this

    def matches(self, path: str, urls: list[str]) -> bool:
        if self.urls_with is not None and not any(self.urls_with in u for u in urls):
            return False
        return path == self.path or (self.path.endswith("/") and path.startswith(self.path))


@dataclass
class _Hold:
    urls_with: str
    max_urls: int | None
    path: str = PREFETCH
    discard: bool = False  # once released, drop the request unprocessed
    holding: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)
    answered: threading.Event = field(default_factory=threading.Event)

    def matches(self, urls: list[str]) -> bool:
        if self.max_urls is not None and len(urls) > self.max_urls:
            return False
        return any(self.urls_with in u for u in urls)


class FakeCdn(LoopbackServer):
    thread_name = "fake-cdn"

    """A fake CDN vendor API; use as a context manager or call start() / stop()."""

    def __init__(
        self,
        *,
        api_key: str = "test-key",
        max_batch: int = 50,
        rps: float | None = None,
        ups: float | None = None,
        daily_quota: int | None = None,
        task_seconds: float = 0.3,
        latency: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        slow_seconds: float = 2.0,
        rate_window: float = 1.0,
        rate_slack: float = 0.05,
    ) -> None:
        self.api_key = api_key
        self.max_batch = max_batch
        self.rps = rps
        self.ups = ups
        self.daily_quota = daily_quota
        self.task_seconds = task_seconds
        self.latency = latency
        self.clock = clock
        self.slow_seconds = slow_seconds
        # Two submits are in the same window when less than (rate_window - rate_slack)
        # apart: the slack absorbs scheduling jitter between the client's limiter and us.
        self.rate_window = rate_window
        self.rate_slack = rate_slack
        self.daily_used = 0

        self._lock = threading.RLock()
        self._requests: list[dict[str, Any]] = []
        self._submits: list[list[str]] = []
        self._submit_bodies: list[dict[str, Any]] = []
        self._violations: list[dict[str, Any]] = []
        self._tasks: dict[str, FakeTask] = {}
        self._purges: dict[str, _Purge] = {}
        self._faults: list[_Fault] = []
        self._holds: list[_Hold] = []
        self._all_holds: list[_Hold] = []
        # A task shows in lookups only this many seconds after it was accepted (vendors'
        # lists lag behind their submit APIs).
        self.lookup_lag = 0.0
        self._arrivals: deque[tuple[float, int]] = deque()  # (time, urls) of prefetch requests
        self._task_seq = 0
        self._purge_seq = 0
        self._request_seq = 0

    # --- lifecycle (LoopbackServer: start, stop, port, url) ---

    def make_server(self) -> _Server:
        return _Server(self)

    # --- fault injection ---

    def fail_next(
        self,
        kind: str,
        count: int = 1,
        *,
        path: str = PREFETCH,
        retry_after: float | None = None,
        urls_with: str | None = None,
    ) -> None:
        """Queue a fault for the next ``count`` requests to ``path`` (-1: every one).

        ``path`` matches exactly, or as a prefix when it ends with "/" ("/v1/tasks/").
        With ``urls_with``, only requests holding a URL that contains it match. An
        "invalid_unnamed" fault applies only to batches holding a URL containing "poison";
        other batches pass it by without using it up. Faults are matched in the order queued.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; one of {sorted(FAULT_KINDS)}")
        if count == 0 or count < -1:
            raise ValueError("count must be positive, or -1 for every request")
        with self._lock:
            self._faults.append(_Fault(kind, path, count, retry_after, urls_with))

    def hold_next(
        self,
        urls_with: str,
        *,
        max_urls: int | None = None,
        path: str = PREFETCH,
        discard: bool = False,
    ) -> _Hold:
        """Holds the next POST to ``path`` holding a URL with ``urls_with`` until released.

        The held request is answered normally once released (the vendor takes it, even if
        the client is gone by then), or with ``discard`` dropped unprocessed (it never
        reached the vendor). ``hold.holding`` is set while the request is held,
        ``hold.answered`` once it was processed: tests synchronise on these, not on time.
        """
        hold = _Hold(urls_with, max_urls, path, discard)
        with self._lock:
            self._holds.append(hold)
        return hold

    def release_holds(self) -> None:
        with self._lock:
            holds = list(self._all_holds)
        for hold in holds:
            hold.released.set()

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    @property
    def pending_faults(self) -> list[tuple[str, str, int]]:
        """(kind, path, remaining) of the faults not used up yet."""
        with self._lock:
            return [(f.kind, f.path, f.remaining) for f in self._faults]

    # --- introspection (snapshots, safe while the server runs) ---

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Every request: {t, method, path, urls (count), status (None when dropped)}."""
        with self._lock:
            return [dict(r) for r in self._requests]

    @property
    def submits(self) -> list[list[str]]:
        """The URLs accepted by each accepted prefetch request, in order."""
        with self._lock:
            return [list(s) for s in self._submits]

    @property
    def submit_bodies(self) -> list[dict[str, Any]]:
        """The JSON bodies of the accepted prefetch requests (headers, mode, ...)."""
        with self._lock:
            return [dict(b) for b in self._submit_bodies]

    @property
    def violations(self) -> list[dict[str, Any]]:
        """Rate violations: {t, kind ("rps"|"ups"), count, limit}."""
        with self._lock:
            return [dict(v) for v in self._violations]

    @property
    def tasks(self) -> dict[str, FakeTask]:
        with self._lock:
            return dict(self._tasks)

    def accepted_counts(self) -> Counter[str]:
        """How many times each URL was accepted (a URL accepted twice is a bug)."""
        with self._lock:
            return Counter(u for batch in self._submits for u in batch)

    def accepted_urls(self) -> set[str]:
        return set(self.accepted_counts())

    def task_state(self, task_id: str) -> str:
        with self._lock:
            return self._task_state(self._tasks[task_id], self.clock())

    def quota_remaining(self) -> int | None:
        with self._lock:
            if self.daily_quota is None:
                return None
            return max(0, self.daily_quota - self.daily_used)

    # --- request handling (called from the server threads) ---

    def _handle(
        self, method: str, path: str, headers: dict[str, str], body: Any, body_ok: bool
    ) -> Reply:
        with self._lock:
            now = self.clock()
            urls = body.get("urls") if isinstance(body, dict) else None
            url_list = [u for u in urls if isinstance(u, str)] if isinstance(urls, list) else []
            entry: dict[str, Any] = {
                "t": now,
                "method": method,
                "path": path,
                "urls": len(url_list),
                "status": None,
            }
            self._requests.append(entry)
            self._request_seq += 1
            request_id = f"r-{self._request_seq}"
            is_submit = method == "POST" and path == PREFETCH
            if is_submit:
                self._check_rates(now, len(url_list))

            reply = self._process(method, path, headers, body, body_ok, url_list, now)
            if is_submit:
                reply.delay += self.latency
            reply.headers.setdefault("X-Request-Id", request_id)
            entry["status"] = None if reply.drop else reply.status
            return reply

    def _process(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: Any,
        body_ok: bool,
        urls: list[str],
        now: float,
    ) -> Reply:
        if headers.get("x-api-key") != self.api_key:
            return Reply(401, {"error": "auth", "message": "invalid api key"})
        fault = self._take_fault(path, urls)
        if fault is not None and fault.kind in _PRE_FAULTS:
            return self._pre_fault(fault, urls)
        if not body_ok:
            return Reply(400, {"error": "invalid", "message": "body is not JSON"})
        reply = self._route(method, path, body, urls, now)
        if fault is None:
            return reply
        if fault.kind == "500":
            return Reply(500, {"error": "internal", "message": "internal server error"})
        if fault.kind == "drop_after":
            return Reply(drop=True)
        if fault.kind == "slow":
            reply.delay += self.slow_seconds
        return reply

    def _take_hold(self, method: str, path: str, urls: list[str]) -> _Hold | None:
        if method != "POST":
            return None
        with self._lock:
            for hold in self._holds:
                if hold.path == path and hold.matches(urls):
                    self._holds.remove(hold)
                    self._all_holds.append(hold)
                    return hold
        return None

    def _take_fault(self, path: str, urls: list[str]) -> _Fault | None:
        for fault in self._faults:
            if not fault.matches(path, urls):
                continue
            if fault.kind == "invalid_unnamed" and not any("poison" in u for u in urls):
                continue
            if fault.remaining > 0:
                fault.remaining -= 1
                if fault.remaining == 0:
                    self._faults.remove(fault)
            return fault
        return None

    @staticmethod
    def _pre_fault(fault: _Fault, urls: list[str]) -> Reply:
        if fault.kind == "429":
            reply = Reply(429, {"error": "throttled", "message": "too many requests"})
            if fault.retry_after is not None:
                reply.headers["Retry-After"] = f"{fault.retry_after:g}"
            return reply
        if fault.kind == "503":
            reply = Reply(503, {"error": "unavailable", "message": "service unavailable"})
            if fault.retry_after is not None:
                reply.headers["Retry-After"] = f"{fault.retry_after:g}"
            return reply
        if fault.kind == "drop_before":
            return Reply(drop=True)
        if fault.kind == "invalid":
            named = {urls[0]: "malformed url"} if urls else {}
            return Reply(400, {"error": "invalid", "urls": named})
        return Reply(400, {"error": "invalid"})  # invalid_unnamed

    def _check_rates(self, now: float, n_urls: int) -> None:
        self._arrivals.append((now, n_urls))
        horizon = now - (self.rate_window - self.rate_slack)
        while self._arrivals and self._arrivals[0][0] <= horizon - self.rate_window:
            self._arrivals.popleft()  # far older than any window we look at
        in_window = [(t, n) for t, n in self._arrivals if t > horizon]
        requests = len(in_window)
        url_count = sum(n for _, n in in_window)
        if self.rps is not None and requests > self.rps:
            self._violations.append({"t": now, "kind": "rps", "count": requests, "limit": self.rps})
        if self.ups is not None and url_count > self.ups:
            self._violations.append(
                {"t": now, "kind": "ups", "count": url_count, "limit": self.ups}
            )

    def _route(self, method: str, path: str, body: Any, urls: list[str], now: float) -> Reply:
        parts = [p for p in path.split("/") if p]
        if method == "POST" and path == PREFETCH:
            return self._prefetch(body, urls, now)
        if method == "GET" and len(parts) == 3 and parts[:2] == ["v1", "tasks"]:
            task = self._tasks.get(parts[2])
            if task is None:
                return Reply(404, {"error": "not_found"})
            return Reply(200, self._task_json(task, now))
        if method == "POST" and len(parts) == 4 and parts[:2] == ["v1", "tasks"]:
            if parts[3] != "cancel":
                return Reply(404, {"error": "not_found"})
            return self._cancel(parts[2], now)
        if method == "POST" and path == "/v1/lookup":
            wanted = set(urls)
            found: dict[str, str] = {}
            for task in self._tasks.values():  # in creation order: the latest task wins
                if now - task.created < self.lookup_lag:
                    continue  # not listed yet
                for u in task.urls:
                    if u in wanted:
                        found[u] = task.task_id
            return Reply(200, {"found": found})
        if method == "GET" and path == "/v1/quota":
            return Reply(200, {"daily": self.daily_quota, "remaining": self.quota_remaining()})
        if method == "POST" and path == "/v1/purge":
            if not urls:
                return Reply(400, {"error": "invalid", "message": "urls must be a list"})
            self._purge_seq += 1
            new = _Purge(f"p-{self._purge_seq}", list(urls), now)
            self._purges[new.task_id] = new
            return Reply(200, {"task_id": new.task_id})
        if method == "GET" and len(parts) == 3 and parts[:2] == ["v1", "purges"]:
            purge = self._purges.get(parts[2])
            if purge is None:
                return Reply(404, {"error": "not_found"})
            done = now - purge.created + _EPSILON >= self.task_seconds
            return Reply(
                200,
                {
                    "task_id": purge.task_id,
                    "state": "DONE" if done else "RUNNING",
                    "urls": purge.urls,
                    # a URL containing "purgefail" cannot be purged
                    "failed": [u for u in purge.urls if done and "purgefail" in u],
                },
            )
        return Reply(404, {"error": "not_found"})

    def _prefetch(self, body: Any, urls: list[str], now: float) -> Reply:
        raw = body.get("urls") if isinstance(body, dict) else None
        if not isinstance(raw, list) or not raw or len(urls) != len(raw):
            return Reply(400, {"error": "invalid", "message": "urls must be a list of strings"})
        if len(urls) > self.max_batch:
            return Reply(400, {"error": "batch_too_large", "limit": self.max_batch})
        rejected = [{"url": u, "reason": REJECT_REASON} for u in urls if "reject" in u]
        accept = [u for u in urls if "reject" not in u]
        remaining = self.quota_remaining()
        if remaining is not None and len(accept) > remaining:
            return Reply(403, {"error": "quota_exhausted", "message": "daily quota exhausted"})
        task_id: str | None = None
        if accept:
            self._task_seq += 1
            task_id = f"t-{self._task_seq}"
            headers = body.get("headers") if isinstance(body.get("headers"), dict) else {}
            mode = body.get("mode") if isinstance(body.get("mode"), str) else None
            self._tasks[task_id] = FakeTask(task_id, accept, now, dict(headers), mode)
            self.daily_used += len(accept)
            self._submits.append(accept)
            self._submit_bodies.append(dict(body))
        return Reply(
            200, {"task_id": task_id, "rejected": rejected, "remaining": self.quota_remaining()}
        )

    def _cancel(self, task_id: str, now: float) -> Reply:
        task = self._tasks.get(task_id)
        if task is None:
            return Reply(404, {"error": "not_found"})
        if self._task_state(task, now) == "DONE":
            return Reply(409, {"error": "conflict", "message": "task already finished"})
        if task.cancelled_at is None:
            task.cancelled_at = now
        return Reply(200, {"task_id": task_id, "state": "CANCELLED"})

    def _task_state(self, task: FakeTask, now: float) -> str:
        if task.cancelled_at is not None:
            return "CANCELLED"
        age = now - task.created + _EPSILON
        if age >= self.task_seconds:
            return "DONE"
        if age >= self.task_seconds / 3:
            return "RUNNING"
        return "QUEUED"

    def _task_json(self, task: FakeTask, now: float) -> dict[str, Any]:
        state = self._task_state(task, now)
        results = []
        for u in task.urls:
            reason: str | None = None
            pop: str | None = None
            if state == "QUEUED":
                url_state = "queued"
            elif state == "RUNNING":
                url_state = "running"
            elif state == "CANCELLED":
                url_state, reason = "failed", "cancelled"
            elif "fail" in u:
                url_state, reason, pop = "failed", FAIL_REASON, FAIL_POP
            else:
                url_state = "ok"
            results.append({"url": u, "state": url_state, "reason": reason, "pop": pop})
        return {"task_id": task.task_id, "state": state, "urls": results}


class _Server(QuietServer):
    def __init__(self, cdn: FakeCdn) -> None:
        self.cdn = cdn
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(JsonHandler):
    server: _Server

    def answer(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> Reply:
        body: Any = None
        body_ok = True
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body_ok = False
        path = urlsplit(path).path
        urls = body.get("urls") if isinstance(body, dict) else None
        hold = self.server.cdn._take_hold(
            method, path, [u for u in urls if isinstance(u, str)] if isinstance(urls, list) else []
        )
        if hold is not None:
            hold.holding.set()
            hold.released.wait(60)
            if hold.discard:
                hold.answered.set()
                return Reply(drop=True)
        reply = self.server.cdn._handle(method, path, headers, body, body_ok)
        if hold is not None:
            hold.answered.set()
        return reply
