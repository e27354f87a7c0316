"""A fake Tencent EdgeOne API (teo 2022-09-01): a real HTTP server on 127.0.0.1.

It verifies TC3-HMAC-SHA256 signatures with its own code (written from Tencent's
"Signature v3" page, not the SDK's), including the X-TC-* headers and the session token;
implements CreatePrefetchTask, DescribePrefetchTasks, DescribeContentQuota,
CreatePurgeTask and DescribePurgeTasks with the shapes of the SDK's models; enforces
``Batch``, the daily quotas and 20 requests/s per action (refusing and counting each
violation); moves tasks from ``processing`` to their final state over ``task_seconds``;
and injects faults (error codes, non-200 replies, dropped connections, slow replies).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from fakes.base import JsonHandler, LoopbackServer, QuietServer, Reply

__all__ = [
    "ACTIONS",
    "FAIL_MESSAGE",
    "REJECT_REASON",
    "FakeEdgeOne",
    "FakeTask",
    "canonical_request",
    "tc3_signature",
]

API_VERSION = "2022-09-01"
SERVICE = "teo"
ACTIONS = frozenset(
    {
        "CreatePrefetchTask",
        "DescribePrefetchTasks",
        "DescribeContentQuota",
        "CreatePurgeTask",
        "DescribePurgeTasks",
    }
)
REJECT_REASON = "the URL is blocked by the site's security policy"
FAIL_MESSAGE = "origin returned 404"
PURGE_TYPES = ("purge_url", "purge_prefix", "purge_host", "purge_all", "purge_cache_tag")
_AUTH_RE = re.compile(
    r"TC3-HMAC-SHA256 Credential=(?P<id>[^/]+)/(?P<date>\d{4}-\d{2}-\d{2})/(?P<service>[^/]+)"
    r"/tc3_request, SignedHeaders=(?P<signed>[a-z0-9;-]+), Signature=(?P<sig>[0-9a-f]{64})"
)
_MAX_SKEW = 300  # seconds between X-TC-Timestamp and the server's clock


# --------------------------------------------------------------------------- signing


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def canonical_request(
    method: str, path: str, query: str, headers: dict[str, str], signed: list[str], body: bytes
) -> str:
    """Tencent's CanonicalRequest: signed headers lower-cased and trimmed, key:value lines."""
    canonical_headers = "".join(
        f"{name}:{headers.get(name, '').strip().lower()}\n" for name in signed
    )
    return "\n".join(
        [
            method,
            path,
            query,
            canonical_headers,
            ";".join(signed),
            hashlib.sha256(body).hexdigest(),
        ]
    )


def tc3_signature(secret_key: str, timestamp: int, service: str, canonical: str) -> str:
    """The hex signature of a canonical request (StringToSign and the derived signing key)."""
    date = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")
    scope = f"{date}/{service}/tc3_request"
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    string_to_sign = f"TC3-HMAC-SHA256\n{timestamp}\n{scope}\n{digest}"
    k_date = _hmac(("TC3" + secret_key).encode("utf-8"), date)
    k_service = _hmac(k_date, service)
    k_signing = _hmac(k_service, "tc3_request")
    return hmac.new(k_signing, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


# --------------------------------------------------------------------------- state


@dataclass
class FakeTask:
    """One target of a prefetch or purge job."""

    job_id: str
    target: str
    kind: str  # prefetch_url, or the purge type
    created: float

    def to_json(self, status: str, fail: tuple[str, str] | None, now: float) -> dict[str, Any]:
        data: dict[str, Any] = {
            "JobId": self.job_id,
            "Target": self.target,
            "Type": self.kind,
            "Status": status,
            "CreateTime": _iso(self.created),
            "UpdateTime": _iso(now if status == "processing" else self.created),
        }
        if self.kind.startswith("purge"):
            data["Method"] = "delete"
        if fail is not None:
            data["FailType"], data["FailMessage"] = fail
        return data


@dataclass
class _Fault:
    action: str
    kind: str  # an error code, "drop", "slow", "http_502" or "no_job_id"
    remaining: int
    after: bool  # the action takes effect first, then the fault
    content_type: str


@dataclass
class _Reply(Reply):
    code: str | None = None  # the error code, for the request log


class ApiFault(Exception):
    """An error envelope to answer with."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class FakeEdgeOne(LoopbackServer):
    thread_name = "fake-edgeone"

    """The fake API; use as a context manager or call start() / stop()."""

    def __init__(
        self,
        *,
        secret_id: str = "AKIDfakeedgeone0001",
        secret_key: str = "fake-secret-key-0001",
        token: str | None = None,
        zone_id: str = "zone-2o0fake",
        batch: int = 50,
        daily: int = 10_000,
        purge_batch: int = 50,
        purge_daily: int = 10_000,
        edge_daily: int = 1000,
        rps: int = 20,
        task_seconds: float = 0.3,
        slow_seconds: float = 2.0,
        domains: tuple[str, ...] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.secret_id = secret_id
        self.secret_key = secret_key
        self.token = token  # when set, the key is temporary: X-TC-Token must match
        self.zone_id = zone_id
        self.batch = batch
        self.daily = daily
        self.purge_batch = purge_batch
        self.purge_daily = purge_daily
        self.edge_daily = edge_daily
        self.rps = rps
        self.task_seconds = task_seconds
        self.slow_seconds = slow_seconds
        self.domains = domains  # hosts of the site; None: any host
        self.clock = clock
        self.zone_error_code = "InvalidParameter.ZoneNotFound"
        self.daily_used = 0
        self.edge_used = 0
        self.purge_used = 0
        # Batch values DescribeContentQuota reports instead of `batch` for its next reads
        # (a plan changed between our read and our submit).
        self.reported_batches: deque[int] = deque()

        self._lock = threading.RLock()
        self._log: list[dict[str, Any]] = []
        self._bodies: list[dict[str, Any]] = []
        self._created: list[dict[str, Any]] = []  # accepted Create requests
        self._violations: list[dict[str, Any]] = []
        self._tasks: list[FakeTask] = []
        self._faults: list[_Fault] = []
        self._arrivals: dict[str, deque[float]] = {}

    # --- lifecycle (LoopbackServer: start, stop, port, url) ---

    def make_server(self) -> _Server:
        return _Server(self)

    # --- test controls ---

    def fail_next(
        self,
        action: str,
        kind: str,
        count: int = 1,
        *,
        after: bool = False,
        content_type: str = "application/json",
    ) -> None:
        """Answer the next ``count`` calls of ``action`` (-1: all) with a fault.

        ``kind`` is an error code (e.g. "InternalError", "RequestLimitExceeded"), "drop"
        (close the connection without an answer), "slow" (answer after slow_seconds) or
        "http_502". With ``after`` the action takes effect first (a task is created, then
        the error or the dropped connection hides it); "no_job_id" is always after: the
        action's success without its JobId.
        """
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}")
        if count == 0 or count < -1:
            raise ValueError("count must be positive, or -1 for every call")
        with self._lock:
            self._faults.append(_Fault(action, kind, count, after, content_type))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def new_day(self) -> None:
        """The daily quotas reset."""
        with self._lock:
            self.daily_used = self.edge_used = self.purge_used = 0

    # --- introspection ---

    @property
    def log(self) -> list[dict[str, Any]]:
        """Every request: {t, action, code (None when it succeeded), filters, dropped}."""
        with self._lock:
            return [dict(r) for r in self._log]

    def calls(self, action: str) -> list[dict[str, Any]]:
        return [r for r in self.log if r["action"] == action]

    @property
    def bodies(self) -> list[dict[str, Any]]:
        """The JSON bodies of the accepted CreatePrefetchTask requests."""
        with self._lock:
            return [dict(b) for b in self._bodies]

    @property
    def submits(self) -> list[list[str]]:
        """The targets of each accepted CreatePrefetchTask, in order."""
        with self._lock:
            return [list(c["targets"]) for c in self._created if c["kind"] == "prefetch_url"]

    @property
    def purges(self) -> list[list[str]]:
        with self._lock:
            return [list(c["targets"]) for c in self._created if c["kind"] != "prefetch_url"]

    @property
    def violations(self) -> list[dict[str, Any]]:
        """Rate-limit and protocol violations: {kind, action, ...}."""
        with self._lock:
            return [dict(v) for v in self._violations]

    def accepted_counts(self) -> Counter[str]:
        """How many times each target was accepted for prefetch (twice is a bug)."""
        return Counter(t for batch in self.submits for t in batch)

    def prefetch_available(self) -> int:
        with self._lock:
            return max(0, self.daily - self.daily_used)

    # --- request handling ---

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> _Reply:
        with self._lock:
            now = self.clock()
            action = headers.get("x-tc-action", "")
            entry: dict[str, Any] = {"t": now, "action": action, "code": None, "dropped": False}
            self._log.append(entry)
            request_id = str(uuid.uuid4())
            try:
                params = self._authenticate(method, path, headers, body, now)
                self._check_rate(action, now)
                reply = self._dispatch(action, params, now, entry)
            except ApiFault as fault:
                reply = _Reply(
                    code=fault.code, body={"Error": {"Code": fault.code, "Message": fault.message}}
                )
            entry["code"] = reply.code
            entry["dropped"] = reply.drop
            if isinstance(reply.body, dict):
                reply.body = {"Response": {**reply.body, "RequestId": request_id}}
                entry["request_id"] = request_id
            return reply

    def _authenticate(
        self, method: str, path: str, headers: dict[str, str], body: bytes, now: float
    ) -> dict[str, Any]:
        if method != "POST" or path != "/":
            raise ApiFault("UnsupportedProtocol", "only POST / is served")
        action = headers.get("x-tc-action", "")
        if action not in ACTIONS:
            raise ApiFault("InvalidAction", f"the action {action!r} does not exist")
        if headers.get("x-tc-version") != API_VERSION:
            raise ApiFault("NoSuchVersion", f"version {headers.get('x-tc-version')!r} is unknown")
        if headers.get("content-type") != "application/json":
            raise ApiFault("InvalidParameter", "Content-Type must be application/json")
        if headers.get("x-tc-language", "zh-CN") not in ("zh-CN", "en-US"):
            raise ApiFault("InvalidParameterValue", "X-TC-Language must be zh-CN or en-US")
        match = _AUTH_RE.fullmatch(headers.get("authorization", ""))
        if match is None:
            raise ApiFault(
                "AuthFailure.InvalidAuthorization", "the Authorization header is malformed"
            )
        try:
            timestamp = int(headers.get("x-tc-timestamp", ""))
        except ValueError:
            raise ApiFault("MissingParameter", "X-TC-Timestamp is missing") from None
        if match["id"] != self.secret_id:
            raise ApiFault("AuthFailure.SecretIdNotFound", "the SecretId is not found")
        if abs(now - timestamp) > _MAX_SKEW:
            raise ApiFault("AuthFailure.SignatureExpire", "the signature expired: check the clock")
        date = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")
        signed = match["signed"].split(";")
        if (
            match["date"] != date
            or match["service"] != SERVICE
            or not {"content-type", "host"} <= set(signed)
        ):
            raise ApiFault("AuthFailure.SignatureFailure", "the credential scope is wrong")
        canonical = canonical_request(method, path, "", headers, signed, body)
        expected = tc3_signature(self.secret_key, timestamp, SERVICE, canonical)
        if not hmac.compare_digest(expected, match["sig"]):
            raise ApiFault("AuthFailure.SignatureFailure", "the signature does not match")
        token = headers.get("x-tc-token")
        if self.token is not None and token != self.token:
            raise ApiFault("AuthFailure.TokenFailure", "the token is invalid or expired")
        if self.token is None and token:
            raise ApiFault("AuthFailure.TokenFailure", "a token was sent with a permanent key")
        try:
            params = json.loads(body)
        except ValueError:
            raise ApiFault("InvalidParameter", "the body is not JSON") from None
        if not isinstance(params, dict):
            raise ApiFault("InvalidParameter", "the body is not a JSON object")
        return params

    def _check_rate(self, action: str, now: float) -> None:
        arrivals = self._arrivals.setdefault(action, deque())
        arrivals.append(now)
        # 0.05 s of slack for scheduling jitter between the client's limiter and us.
        while arrivals and arrivals[0] <= now - 0.95:
            arrivals.popleft()
        if len(arrivals) > self.rps:
            self._violations.append(
                {"kind": "rate", "action": action, "t": now, "count": len(arrivals)}
            )
            raise ApiFault(
                "RequestLimitExceeded", f"more than {self.rps} {action} requests per second"
            )

    def _take_fault(self, action: str) -> _Fault | None:
        for fault in self._faults:
            if fault.action == action:
                if fault.remaining > 0:
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                return fault
        return None

    def _dispatch(
        self, action: str, params: dict[str, Any], now: float, entry: dict[str, Any]
    ) -> _Reply:
        entry["params"] = {k: v for k, v in params.items() if k not in ("Targets", "Filters")}
        entry["filters"] = {
            f.get("Name"): f.get("Values")
            for f in params.get("Filters") or []
            if isinstance(f, dict)
        }
        fault = self._take_fault(action)
        if fault is not None and not fault.after and fault.kind not in ("slow", "no_job_id"):
            return self._fault_reply(fault)
        handler: Callable[[dict[str, Any], float], dict[str, Any]] = getattr(self, f"_{action}")
        reply = _Reply(body=handler(params, now))
        if fault is None:
            return reply
        if fault.kind == "slow":
            reply.delay = self.slow_seconds
            return reply
        if fault.kind == "no_job_id":  # a success that does not say which job it made
            assert isinstance(reply.body, dict)
            reply.body.pop("JobId", None)
            return reply
        return self._fault_reply(fault)

    def _fault_reply(self, fault: _Fault) -> _Reply:
        if fault.kind == "drop":
            return _Reply(drop=True, code="drop")
        if fault.kind == "slow":
            raise AssertionError("slow faults apply after the action")  # pragma: no cover
        if fault.kind == "http_502":
            return _Reply(
                status=502,
                body=b"<html>502 Bad Gateway</html>",
                content_type="text/html",
                code="http_502",
            )
        return _Reply(
            code=fault.kind,
            content_type=fault.content_type,
            body={"Error": {"Code": fault.kind, "Message": f"injected {fault.kind}"}},
        )

    # --- the actions ---

    def _zone(self, params: dict[str, Any]) -> None:
        zone = params.get("ZoneId")
        if not isinstance(zone, str) or not zone:
            raise ApiFault("MissingParameter", "ZoneId is required")
        if zone != self.zone_id:
            raise ApiFault(self.zone_error_code, f"the zone {zone} does not exist")

    def _DescribeContentQuota(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        self._zone(params)
        batch = self.reported_batches.popleft() if self.reported_batches else self.batch
        purge = [
            {
                "Type": t,
                "Batch": self.purge_batch,
                "Daily": self.purge_daily,
                "DailyAvailable": max(0, self.purge_daily - self.purge_used)
                if t == "purge_url"
                else self.purge_daily,
            }
            for t in PURGE_TYPES
        ]
        prefetch = [
            {
                "Type": "prefetch_url",
                "Batch": batch,
                "Daily": self.daily,
                "DailyAvailable": max(0, self.daily - self.daily_used),
            }
        ]
        return {"PurgeQuota": purge, "PrefetchQuota": prefetch}

    def _targets(self, params: dict[str, Any], limit: int) -> list[str]:
        targets = params.get("Targets")
        if (
            not isinstance(targets, list)
            or not targets
            or not all(isinstance(t, str) for t in targets)
        ):
            raise ApiFault("MissingParameter", "Targets must be a non-empty list of URLs")
        if len(targets) > limit:
            raise ApiFault("LimitExceeded.BatchQuota", f"at most {limit} targets per request")
        if "EncodeUrl" in params:
            self._violations.append({"kind": "deprecated", "parameter": "EncodeUrl"})
        for target in targets:
            if not target.isascii():
                raise ApiFault(
                    "InvalidParameter.Target",
                    f"Target {target} is invalid: non-ASCII characters must be percent-encoded",
                )
            if not re.match(r"https?://[^/\s]+", target):
                raise ApiFault("InvalidParameter.Target", f"Target {target} is not a URL")
        if self.domains is not None:
            for target in targets:
                host = target.split("/")[2].split(":")[0].lower()
                if host not in self.domains:
                    raise ApiFault(
                        "InvalidParameter.DomainNotFound",
                        f"the domain {host} does not exist or does not belong to this account",
                    )
        return targets

    def _new_job(self, kind: str, targets: list[str], now: float) -> str:
        job_id = secrets.token_hex(6)
        for target in targets:
            self._tasks.append(FakeTask(job_id, target, kind, now))
        self._created.append({"job_id": job_id, "kind": kind, "targets": list(targets)})
        return job_id

    def _CreatePrefetchTask(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        self._zone(params)
        targets = self._targets(params, self.batch)
        mode = params.get("Mode", "default")
        if mode not in ("default", "edge"):
            raise ApiFault("InvalidParameterValue", f"Mode {mode!r} must be default or edge")
        segments = params.get("PrefetchMediaSegments", "off")
        if segments not in ("on", "off"):
            raise ApiFault("InvalidParameterValue", "PrefetchMediaSegments must be on or off")
        headers = params.get("Headers")
        if headers is not None and not (
            isinstance(headers, list)
            and all(isinstance(h, dict) and set(h) == {"Name", "Value"} for h in headers)
        ):
            raise ApiFault("InvalidParameter", "Headers must be a list of {Name, Value}")
        refused = [t for t in targets if "reject" in t]
        accept = [t for t in targets if t not in refused]
        if mode == "edge":
            if len(accept) > self.edge_daily - self.edge_used:
                raise ApiFault(
                    "LimitExceeded.DailyQuota", "the daily edge prefetch quota is used up"
                )
            self.edge_used += len(accept)
        else:
            if len(accept) > self.daily - self.daily_used:
                raise ApiFault("LimitExceeded.DailyQuota", "the daily prefetch quota is used up")
            self.daily_used += len(accept)
        job_id = self._new_job("prefetch_url", accept, now) if accept else ""
        self._bodies.append(params)
        failed = [{"Reason": REJECT_REASON, "Targets": refused}] if refused else []
        return {"JobId": job_id, "FailedList": failed}

    def _CreatePurgeTask(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        self._zone(params)
        kind = params.get("Type")
        if kind not in PURGE_TYPES:
            raise ApiFault("InvalidParameterValue", f"Type {kind!r} is not a purge type")
        targets = self._targets(params, self.purge_batch)
        if len(targets) > self.purge_daily - self.purge_used:
            raise ApiFault("LimitExceeded.DailyQuota", "the daily purge quota is used up")
        self.purge_used += len(targets)
        return {"JobId": self._new_job(str(kind), targets, now), "FailedList": []}

    def _DescribePrefetchTasks(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        return self._describe(params, now, prefetch=True)

    def _DescribePurgeTasks(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        return self._describe(params, now, prefetch=False)

    def _describe(self, params: dict[str, Any], now: float, *, prefetch: bool) -> dict[str, Any]:
        self._zone(params)
        filters: dict[str, list[str]] = {}
        allowed = {"job-id", "target", "domains", "statuses"} | (set() if prefetch else {"type"})
        for flt in params.get("Filters") or []:
            name, values = flt.get("Name"), flt.get("Values")
            if (
                name not in allowed
                or not isinstance(values, list)
                or not values
                or len(values) > 20
            ):
                raise ApiFault("InvalidParameter.ParameterError", f"bad filter {flt!r}")
            if name in ("job-id", "target", "type") and len(values) != 1:
                raise ApiFault("InvalidParameter.ParameterError", f"{name} takes one value")
            if flt.get("Fuzzy") and (prefetch or name != "target"):
                raise ApiFault("InvalidParameter.ParameterError", f"{name} is not fuzzy")
            filters[name] = [str(v) for v in values]
        start, end = params.get("StartTime"), params.get("EndTime")
        if "job-id" not in filters and not (start and end):
            raise ApiFault(
                "InvalidParameter.ParameterError", "give StartTime and EndTime, or a job-id"
            )
        window: tuple[float, float] | None = None
        if start or end:
            try:
                begin, finish = _parse_time(start), _parse_time(end)
            except (TypeError, ValueError):
                raise ApiFault(
                    "InvalidParameter.ParameterError",
                    "StartTime/EndTime must be ISO 8601 with an offset",
                ) from None
            if finish < begin or finish - begin > timedelta(days=7):
                raise ApiFault(
                    "InvalidParameter.ParameterError",
                    "Invalid EndTime: the interval cannot exceed 7 days",
                )
            window = (begin.timestamp(), finish.timestamp())
        limit = params.get("Limit", 20)
        offset = params.get("Offset", 0)
        if (
            not isinstance(limit, int)
            or not 1 <= limit <= 1000
            or not isinstance(offset, int)
            or offset < 0
        ):
            raise ApiFault("InvalidParameter.ParameterError", "Limit must be 1..1000, Offset >= 0")
        matched = []
        for task in self._tasks:
            if (task.kind == "prefetch_url") != prefetch:
                continue
            if window is not None and not window[0] <= int(task.created) <= window[1]:
                continue
            if "job-id" in filters and task.job_id != filters["job-id"][0]:
                continue
            if "target" in filters and task.target != filters["target"][0]:
                continue
            if "type" in filters and task.kind != filters["type"][0]:
                continue
            if "domains" in filters and task.target.split("/")[2] not in filters["domains"]:
                continue
            status, fail = self._status(task, now)
            if "statuses" in filters and status not in filters["statuses"]:
                continue
            matched.append(task.to_json(status, fail, now))
        matched.sort(key=lambda t: t["CreateTime"], reverse=True)
        return {"TotalCount": len(matched), "Tasks": matched[offset : offset + limit]}

    def _status(self, task: FakeTask, now: float) -> tuple[str, tuple[str, str] | None]:
        if now - task.created + 1e-9 < self.task_seconds:
            return "processing", None
        target = task.target
        if task.kind != "prefetch_url":
            if "purgefail" in target:
                return "failed", ("taskFailed", "purge failed on some nodes")
            return "success", None
        if "fail" in target:
            return "failed", ("originPullFailed", FAIL_MESSAGE)
        if "timeout" in target:
            return "timeout", None
        if "status-invalid" in target:
            return "invalid", None
        if "cancel" in target:
            return "canceled", None
        return "success", None


def _iso(t: float) -> str:
    return datetime.fromtimestamp(int(t), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(text: Any) -> datetime:
    if not isinstance(text, str):
        raise TypeError("not a string")
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError("no offset")
    return moment


class _Server(QuietServer):
    def __init__(self, api: FakeEdgeOne) -> None:
        self.api = api
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(JsonHandler):
    server: _Server

    def answer(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> Reply:
        return self.server.api.handle(method, path, headers, raw)
