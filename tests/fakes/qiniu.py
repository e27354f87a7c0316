"""A fake Qiniu fusion CDN API (/v2/tune/*): a real HTTP server on 127.0.0.1.

It follows the fact sheet (shared/api/qiniu.md) and the vendor doc: QBox signatures checked
with its own HMAC code, the JSON envelope on every answer (HTTP status = the code's first
three digits, or 200 with ``errors_as_200``) and an ``X-Reqid`` header, at most 60 URLs per
prefetch or refresh, 240 URLs per second shared by both (violations counted, and refused
with 403024), a daily prefetch and refresh quota (400033/400034, the batch refused whole),
400031/400032 with ``invalidUrls``, 400037 for a URL in flight, and the list calls with
0-based pages and the 7-day window. Tasks go from ``processing`` to ``success`` or
``failure`` (URLs containing "fail") after ``task_seconds``. Faults can be injected.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

from fakes.base import JsonHandler, LoopbackServer, QuietServer, Reply

__all__ = ["FAIL_DETAIL", "FAULT_KINDS", "PREFETCH", "REFRESH", "FakeQiniu", "qbox_sign"]

PREFETCH = "/v2/tune/prefetch"
PREFETCH_LIST = "/v2/tune/prefetch/list"
REFRESH = "/v2/tune/refresh"
REFRESH_LIST = "/v2/tune/refresh/list"

FAULT_KINDS = frozenset(
    {"403024", "403022", "500000", "500000_accepted", "drop_before", "drop_after", "gateway_502"}
)
FAIL_DETAIL = "origin responded 404"
BEIJING = timezone(timedelta(hours=8))
QUERY_DAYS = 7
UID = 1380000001
_EPSILON = 1e-9
_HEX24 = re.compile(r"[0-9a-f]{24}")

_ERRORS = {
    200: "success",
    400000: "invalid input",
    400031: "invalid url",
    400032: "invalid host",
    400033: "prefetch url limit error",
    400034: "refresh url limit error",
    400036: "invalid request id",
    400037: "url has existed",
    400039: "commit too much",
    400080: "invalid start time",
    400081: "invalid end time",
    400082: "invalid time range",
    403022: "server QPS Rate limited",
    403024: "single user QPS Rate limited",
    500000: "internal error",
}


def qbox_sign(secret_key: str, path_and_query: str, body: bytes = b"", ctype: str = "") -> str:
    """The QBox signature, written from the spec (not the SDK): HMAC-SHA1, URL-safe base64."""
    data = path_and_query.encode() + b"\n"
    if body and ctype == "application/x-www-form-urlencoded":
        data += body
    digest = hmac.new(secret_key.encode(), data, hashlib.sha1).digest()
    return base64.urlsafe_b64encode(digest).decode()


@dataclass
class FakeTask:
    """One prefetch or refresh request the fake accepted."""

    request_id: str
    kind: str  # "prefetch" | "refresh"
    urls: list[str]
    task_ids: dict[str, str]
    wall: float  # creation, wall-clock seconds (createAt, the request id's time)
    created: float  # creation on the fake's clock (progress)
    product: str | None
    seconds: float

    def state_of(self, url: str, now: float) -> str:
        if now - self.created + _EPSILON < self.seconds:
            return "processing"
        return "failure" if "fail" in url else "success"


@dataclass
class _Fault:
    kind: str
    path: str
    remaining: int  # -1: forever
    retry_after: float | None


class FakeQiniu(LoopbackServer):
    thread_name = "fake-qiniu"

    """The fake Qiniu API; a context manager (or start() / stop())."""

    def __init__(
        self,
        *,
        access_key: str = "fake-access-key",
        secret_key: str = "fake-secret-key-0123456789",
        max_batch: int = 60,
        urls_per_second: int = 240,
        enforce_rate: bool = True,
        quota_day: int = 10_000,
        refresh_quota_day: int = 500,
        task_seconds: float = 0.3,
        max_page_size: int = 100,
        hosts: set[str] | None = None,
        dcdn_hosts: set[str] | None = None,
        name_invalid: bool = True,
        errors_as_200: bool = False,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        rate_slack: float = 0.05,
    ) -> None:
        self.access_key = access_key
        self.secret_key = secret_key
        self.max_batch = max_batch
        self.urls_per_second = urls_per_second
        self.enforce_rate = enforce_rate
        self.quota_day = quota_day
        self.refresh_quota_day = refresh_quota_day
        self.task_seconds = task_seconds
        self.max_page_size = max_page_size
        self.hosts = hosts  # the account's CDN domains; None: any
        self.dcdn_hosts = dcdn_hosts or set()  # domains on DCDN: need product "dcdn"
        self.name_invalid = name_invalid  # list refused URLs in invalidUrls
        self.errors_as_200 = errors_as_200  # error codes in HTTP 200 answers
        self.clock = clock
        self.wall = wall
        # Two requests are in one window when less than (1 s - slack) apart: the slack
        # absorbs scheduling jitter between the client's limiter and this server.
        self.rate_slack = rate_slack
        self.used = 0
        self.refresh_used = 0

        self._lock = threading.RLock()
        self._requests: list[dict[str, Any]] = []
        self._tasks: list[FakeTask] = []
        self._violations: list[dict[str, Any]] = []
        self._batch_violations: list[dict[str, Any]] = []
        self._window_violations: list[dict[str, Any]] = []
        self._auth_failures = 0
        self._faults: list[_Fault] = []
        self._arrivals: deque[tuple[float, int]] = deque()
        self._seq = secrets.randbits(24)

    # --- lifecycle (LoopbackServer: start, stop, port, url) ---

    def make_server(self) -> _Server:
        return _Server(self)

    # --- scenario helpers ---

    def fail_next(
        self, kind: str, count: int = 1, *, path: str = PREFETCH, retry_after: float | None = None
    ) -> None:
        """Queues a fault for the next ``count`` requests to ``path`` (-1: every one)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; one of {sorted(FAULT_KINDS)}")
        with self._lock:
            self._faults.append(_Fault(kind, path, count, retry_after))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def exhaust_quota(self, leave: int = 0) -> None:
        """Spends today's prefetch quota, leaving ``leave`` URLs."""
        with self._lock:
            self.used = max(0, self.quota_day - leave)

    def new_day(self) -> None:
        """The daily quotas reset."""
        with self._lock:
            self.used = 0
            self.refresh_used = 0

    def add_task(
        self,
        urls: list[str],
        *,
        kind: str = "prefetch",
        age: float = 0.0,
        seconds: float | None = None,
        product: str | None = None,
    ) -> str:
        """A task made by someone else (or long ago): ``age`` seconds old; its request id."""
        with self._lock:
            task = self._new_task(kind, urls, product, self.wall() - age, self.clock() - age)
            if seconds is not None:
                task.seconds = seconds
            return task.request_id

    def finish(self, request_id: str) -> None:
        """Ends a task now (its URLs succeed, or fail if they contain "fail")."""
        with self._lock:
            for task in self._tasks:
                if task.request_id == request_id:
                    task.seconds = 0.0

    def when(self, predicate: Callable[[dict[str, Any]], bool], action: Callable[[], None]) -> None:
        """Runs ``action`` (in a thread) once a request matching ``predicate`` was answered."""

        def watch() -> None:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if any(r["status"] is not None and predicate(r) for r in self.requests):
                    action()
                    return
                time.sleep(0.005)

        threading.Thread(target=watch, daemon=True).start()

    # --- introspection ---

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Every request: {t, path, urls, status, code, body}; status None when dropped."""
        with self._lock:
            return [dict(r) for r in self._requests]

    def calls(self, path: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"] == path]

    @property
    def tasks(self) -> list[FakeTask]:
        with self._lock:
            return list(self._tasks)

    def accepted(self, kind: str = "prefetch") -> list[list[str]]:
        """The URLs of each accepted request of ``kind``, in order."""
        return [list(t.urls) for t in self.tasks if t.kind == kind]

    def accepted_counts(self, kind: str = "prefetch") -> Counter[str]:
        """How often each URL was accepted (twice is a bug, unless meant)."""
        return Counter(u for t in self.tasks if t.kind == kind for u in t.urls)

    @property
    def violations(self) -> list[dict[str, Any]]:
        """Rate violations: {t, count, limit} (URLs + dirs in one second, both calls)."""
        with self._lock:
            return list(self._violations)

    @property
    def batch_violations(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._batch_violations)

    @property
    def window_violations(self) -> list[dict[str, Any]]:
        """List queries outside the 7-day window or without a time range."""
        with self._lock:
            return list(self._window_violations)

    @property
    def auth_failures(self) -> int:
        with self._lock:
            return self._auth_failures

    def surplus(self) -> int:
        with self._lock:
            return max(0, self.quota_day - self.used)

    # --- request handling ---

    def _handle(self, target: str, headers: dict[str, str], raw: bytes) -> Reply:
        path = urlsplit(target).path
        with self._lock:
            now = self.clock()
            try:
                body = json.loads(raw) if raw else {}
            except ValueError:
                body = None
            urls = body.get("urls") if isinstance(body, dict) else None
            n_urls = len(urls) if isinstance(urls, list) else 0
            entry: dict[str, Any] = {
                "t": now,
                "path": path,
                "urls": n_urls,
                "status": None,
                "code": None,
                "body": body,
            }
            self._requests.append(entry)
            reply = self._process(target, path, headers, raw, body, n_urls, now)
            self._seq += 1
            reply.headers.setdefault("X-Reqid", f"fake{self._seq:012x}")
            if not reply.drop:
                if isinstance(reply.body, dict) and self.errors_as_200:
                    reply.status = 200
                entry["status"] = reply.status
                entry["code"] = reply.body.get("code") if isinstance(reply.body, dict) else None
            return reply

    def _process(
        self,
        target: str,
        path: str,
        headers: dict[str, str],
        raw: bytes,
        body: Any,
        n_urls: int,
        now: float,
    ) -> Reply:
        if not self._signed(target, headers, raw):
            self._auth_failures += 1
            return Reply(
                401,
                {
                    "error": "bad token",
                    "reqid": "fake-auth",
                    "details": ["APIS/401"],
                    "code": 401,
                },
            )
        fault = self._take_fault(path)
        if fault is not None and fault.kind in ("403024", "403022", "500000"):
            reply = self._error(int(fault.kind))
            if fault.retry_after is not None:
                reply.headers["Retry-After"] = f"{fault.retry_after:g}"
            return reply
        if fault is not None and fault.kind == "drop_before":
            return Reply(drop=True)
        if fault is not None and fault.kind == "gateway_502":
            return Reply(502, b"<html><body>502 Bad Gateway</body></html>", "text/html")
        if path in (PREFETCH, REFRESH) and not self._rate_ok(now, n_urls):
            return self._error(403024)
        if not isinstance(body, dict):
            return self._error(400000)
        if path == PREFETCH:
            reply = self._submit("prefetch", body, now)
        elif path == REFRESH:
            reply = self._submit("refresh", body, now)
        elif path == PREFETCH_LIST:
            reply = self._list("prefetch", body, now)
        elif path == REFRESH_LIST:
            reply = self._list("refresh", body, now)
        else:
            return Reply(404, {"code": 404, "error": "no such entry"})
        if fault is not None and fault.kind == "500000_accepted":
            return self._error(500000)
        if fault is not None and fault.kind == "drop_after":
            return Reply(drop=True)
        return reply

    def _signed(self, target: str, headers: dict[str, str], raw: bytes) -> bool:
        value = headers.get("authorization", "")
        scheme, _, token = value.partition(" ")
        access_key, _, sign = token.rpartition(":")
        if scheme != "QBox" or access_key != self.access_key:
            return False
        expected = qbox_sign(self.secret_key, target, raw, headers.get("content-type", ""))
        return hmac.compare_digest(sign, expected)

    def _take_fault(self, path: str) -> _Fault | None:
        for fault in self._faults:
            if fault.path != path:
                continue
            if fault.remaining > 0:
                fault.remaining -= 1
                if fault.remaining == 0:
                    self._faults.remove(fault)
            return fault
        return None

    def _rate_ok(self, now: float, units: int) -> bool:
        """240 URLs + dirs per second over prefetch and refresh: counts and refuses excess."""
        horizon = now - (1.0 - self.rate_slack)
        while self._arrivals and self._arrivals[0][0] <= horizon:
            self._arrivals.popleft()
        in_window = sum(n for _, n in self._arrivals) + units
        if in_window > self.urls_per_second:
            self._violations.append({"t": now, "count": in_window, "limit": self.urls_per_second})
            if self.enforce_rate:
                return False
        self._arrivals.append((now, units))
        return True

    def _error(self, code: int, **extra: Any) -> Reply:
        body = {"code": code, "error": _ERRORS.get(code, "error"), **extra}
        return Reply(int(str(code)[:3]), body)

    # --- prefetch and refresh ---

    def _submit(self, kind: str, body: dict[str, Any], now: float) -> Reply:
        raw = body.get("urls")
        if not isinstance(raw, list) or not raw or not all(isinstance(u, str) for u in raw):
            return self._error(400000)
        urls: list[str] = list(raw)
        product = body.get("product")
        if product not in (None, "dcdn"):
            return self._error(400000)
        daily, left = self._quota(kind)
        quota = (
            {"quotaDay": daily, "surplusDay": left}
            if kind == "prefetch"
            else {"urlQuotaDay": daily, "urlSurplusDay": left}
        )
        base = {"requestId": "", "taskIds": None, "invalidUrls": None, **quota}
        if len(urls) > self.max_batch:
            self._batch_violations.append({"kind": kind, "urls": len(urls)})
            return self._error(400039, **base)
        bad_urls = [u for u in urls if not _valid_url(u)]
        if bad_urls:
            return self._error(400031, **{**base, "invalidUrls": self._named(bad_urls)})
        bad_hosts = [u for u in urls if not self._host_ok(u, product)]
        if bad_hosts:
            return self._error(400032, **{**base, "invalidUrls": self._named(bad_hosts)})
        busy = {
            u
            for t in self._tasks
            if t.kind == kind
            for u in t.urls
            if t.state_of(u, now) == "processing"
        }
        if busy & set(urls):
            return self._error(400037, **base)
        if len(urls) > left:
            return self._error(400033 if kind == "prefetch" else 400034, **base)
        task = self._new_task(kind, urls, product, self.wall(), now)
        if kind == "prefetch":
            self.used += len(urls)
        else:
            self.refresh_used += len(urls)
        daily, left = self._quota(kind)
        answer = {
            "code": 200,
            "error": "success",
            "requestId": task.request_id,
            "taskIds": dict(task.task_ids),
            "invalidUrls": None,
        }
        if kind == "prefetch":
            answer.update(quotaDay=daily, surplusDay=left)
        else:
            answer.update(
                invalidDirs=None,
                urlQuotaDay=daily,
                urlSurplusDay=left,
                dirQuotaDay=10,
                dirSurplusDay=10,
            )
        return Reply(200, answer)

    def _quota(self, kind: str) -> tuple[int, int]:
        if kind == "prefetch":
            return self.quota_day, max(0, self.quota_day - self.used)
        return self.refresh_quota_day, max(0, self.refresh_quota_day - self.refresh_used)

    def _named(self, urls: list[str]) -> list[str] | None:
        return urls if self.name_invalid else None

    def _host_ok(self, url: str, product: str | None) -> bool:
        host = urlsplit(url).hostname or ""
        if self.hosts is not None and host not in self.hosts and host not in self.dcdn_hosts:
            return False
        # a DCDN domain is unknown to the CDN product and the other way round
        return (host in self.dcdn_hosts) == (product == "dcdn")

    def _new_task(
        self, kind: str, urls: list[str], product: str | None, wall: float, created: float
    ) -> FakeTask:
        request_id = self._object_id(wall)
        task = FakeTask(
            request_id=request_id,
            kind=kind,
            urls=list(urls),
            task_ids={u: self._object_id(wall) for u in urls},
            wall=wall,
            created=created,
            product=product,
            seconds=self.task_seconds,
        )
        self._tasks.append(task)
        return task

    def _object_id(self, wall: float) -> str:
        """A MongoDB-style ObjectId, as Qiniu's ids are: creation time in the first 4 bytes."""
        self._seq += 1
        return f"{int(wall):08x}{secrets.randbits(40):010x}{self._seq % 0x1000000:06x}"

    # --- list calls ---

    def _list(self, kind: str, body: dict[str, Any], now: float) -> Reply:
        request_id = body.get("requestId")
        urls = body.get("urls")
        state = body.get("state")
        start, end = body.get("startTime"), body.get("endTime")
        if not any((request_id, urls, state, start, end)):
            return self._error(400000)
        if request_id and (not isinstance(request_id, str) or not _HEX24.fullmatch(request_id)):
            return self._error(400036)
        today = datetime.fromtimestamp(self.wall(), BEIJING).date()
        first_allowed = today - timedelta(days=QUERY_DAYS - 1)
        if start is None or end is None:
            # the documented default: the last 3 days
            self._window_violations.append({"kind": "no range", "body": dict(body)})
            first, last = today - timedelta(days=2), today
        else:
            first_d, last_d = _day(start), _day(end)
            if first_d is None:
                return self._error(400080)
            if last_d is None:
                return self._error(400081)
            if first_d > last_d or first_d < first_allowed or last_d > today + timedelta(days=1):
                self._window_violations.append({"kind": "range", "body": dict(body)})
                return self._error(400082)
            first, last = first_d, last_d
        page_no = body.get("pageNo", 0)
        page_size = body.get("pageSize", 100)
        if not isinstance(page_no, int) or page_no < 0:
            return self._error(400000)
        if not isinstance(page_size, int) or page_size < 1:
            return self._error(400000)
        size = min(page_size, self.max_page_size)
        wanted = set(urls) if isinstance(urls, list) else None
        items = []
        for task in sorted(self._tasks, key=lambda t: -t.wall):  # newest first
            made = datetime.fromtimestamp(task.wall, BEIJING)
            if task.kind != kind or task.product != body.get("product"):
                continue
            if not first <= made.date() <= last:
                continue
            if request_id and task.request_id != request_id:
                continue
            for url in task.urls:
                if wanted is not None and url not in wanted:
                    continue
                item_state = task.state_of(url, now)
                if state and item_state != state:
                    continue
                items.append(self._item(task, url, item_state, made))
        page = items[page_no * size : (page_no + 1) * size]
        return Reply(
            200,
            {
                "code": 200,
                "error": "success",
                "total": len(items),
                "pageNo": page_no,
                "pageSize": size,
                "currentSize": len(page),
                "items": page,
            },
        )

    def _item(self, task: FakeTask, url: str, state: str, made: datetime) -> dict[str, Any]:
        finished = made + timedelta(seconds=task.seconds)
        return {
            "uid": UID,
            "requestId": task.request_id,
            "taskId": task.task_ids[url],
            "url": url,
            "state": state,
            "stateDetail": FAIL_DETAIL if state == "failure" else "",
            "createAt": _stamp(made),
            "beginAt": _stamp(made),
            "endAt": _stamp(finished) if state != "processing" else "",
        }


def _valid_url(url: str) -> bool:
    parts = urlsplit(url)
    # Qiniu takes full http(s) URLs without wildcards; "invalid-url" stands for whatever
    # else its checks refuse that a client cannot know in advance.
    return (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and "*" not in url
        and "invalid-url" not in url
    )


def _day(text: Any) -> date | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%d").date()
    except ValueError:
        return None


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


class _Server(QuietServer):
    def __init__(self, fake: FakeQiniu) -> None:
        self.fake = fake
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(JsonHandler):
    server: _Server

    def answer(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> Reply:
        if method != "POST":
            return Reply(405, b"", "text/plain")
        return self.server.fake._handle(path, headers, raw)
