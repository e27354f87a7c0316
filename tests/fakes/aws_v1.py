"""A fake of the first-generation (2023) self-hosted CloudFront prewarm API: two APIs.

Two real HTTP servers on 127.0.0.1 play the stack's two API Gateway REST APIs and their
Lambdas, as read from the solution's code (``prewarm-ext.ts``, ``scheduler.py``,
``cache_invalidator.py``, ``agent.py``, ``status_fetcher.py``) and its fact sheet:

- ``PrewarmApi``: ``POST /prewarm`` (the scheduler); ``PrewarmStatusApi``: ``GET /status``
  (the status fetcher), whose request validator wants ``requestID`` in the query string;
- one API key and one usage plan for both: ``x-api-key`` checked on both (403
  ``Forbidden``), an unknown route or method is 403 ``Missing Authentication Token``, one
  token bucket across both APIs (429 ``Too Many Requests``, each counted as a violation) and
  an optional daily quota (429 ``Limit Exceeded``; the deployed plan sets none);
- the scheduler in two variants: ``field="target_type"`` (the code from 9 March 2023) or
  ``"region_type"`` (before): each reads only its own key and crashes (502) without it;
- the scheduler's own 400 ``{"message": ...}`` checks, and 502 when it crashes (a body that is
  not JSON, an unknown region or country key);
- a 500 with a plain-text body (under ``Content-Type: application/json``) when the invalidator
  cannot be started (``fail_next("500")``: the job row is written and stays IN_PROGRESS for
  ever) and when the status fetcher raises (``fail_next("500", route="GET /status")``);
- jobs: every URL invalidated first (recorded in ``invalidations``, with the stack's
  dropped ``?``), then one result per distinct URL over ``download_seconds``; the status is
  IN_PROGRESS, then COMPLETED, or FAILED as soon as one URL failed; never TIMEOUT;
- an unknown id: HTTP 200 ``{"message": "No result is found, please check the requestId"}``;
- ``successUrl`` only with ``show_success_urls`` (the stack's ShowSuccessUrls parameter).

Outcomes are decided by the URLs: ``dlfail`` fails at every PoP, ``popfail`` at the first
PoP only (still warmed when another PoP of the same three-letter site warmed it), ``404``
fails under protocol http only (under https the agent's curl writes to /dev/null and counts
anything). Without ``cf_domain`` a URL whose host no distribution has as an alias stops the
invalidator: that URL and the ones after it are never enqueued, and the job never finishes.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from fakes.aws import _COUNTRIES, _REGIONS, FakeDistribution
from fakes.base import JsonHandler, QuietServer, Reply
from fakes.gateway import ApiGateway, missing_token

__all__ = ["FAULT_KINDS", "FakeV1Job", "FakeV1Stack"]

FAULT_KINDS = frozenset({"400", "429", "limit", "500", "502", "504", "drop"})
NOT_FOUND = "No result is found, please check the requestId"
INVALIDATOR_FAILED = (
    "Fail to invoke invalidation Lambda, check the CloudWatch logs of prewarm scheduler"
)
STATUS_EXCEPTION = (
    "An error occurred (ProvisionedThroughputExceededException) when calling the Query"
    " operation (reached max retries: 9): The level of configured provisioned throughput"
    " for the table was exceeded."
)
_ROUTES = {"prewarm": ("POST", "prewarm"), "status": ("GET", "status")}


@dataclass
class FakeV1Job:
    """The scheduler's metadata row, and what the invalidator and the agents make of it."""

    req_id: str
    body: dict[str, Any]
    url_list: list[str]  # as sent (the status counts these)
    pops: list[str]
    protocol: str
    cf_domain: str | None
    created: float
    enqueued: list[str]  # distinct URLs the invalidator sent to the queue, in its order


@dataclass
class _Fault:
    kind: str
    method: str
    route: str
    remaining: int
    message: str | None


class _Crash(Exception):
    """An unhandled exception in a proxy Lambda: API Gateway answers 502."""


class FakeV1Stack(ApiGateway):
    """The fake first-generation stack; use as a context manager or call start() / stop()."""

    def __init__(
        self,
        *,
        api_key: str = "aws-v1-test-key-0123456789",
        stage: str = "prod",
        field: str = "target_type",
        show_success_urls: bool = False,
        rps: float = 10.0,
        burst: int = 10,
        daily_quota: int | None = None,
        step_seconds: float = 0.1,
        download_seconds: float = 0.3,
        distributions: list[FakeDistribution] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if field not in ("target_type", "region_type"):
            raise ValueError("field is target_type or region_type")
        self.init_usage_plan(api_key, rps, burst, daily_quota)
        self.stage = stage
        self.field = field
        self.show_success_urls = show_success_urls
        self.step_seconds = step_seconds
        self.download_seconds = download_seconds
        self.distributions = list(distributions or [])
        self.clock = clock
        self.dead_pops: set[str] = set()
        self.invalidations: list[tuple[str, str]] = []  # (distribution id, path)

        self._lock = threading.RLock()
        self._jobs: dict[str, FakeV1Job] = {}
        self._requests: list[dict[str, Any]] = []
        self._faults: list[_Fault] = []
        self._servers: dict[str, _Server] = {}
        self._threads: list[threading.Thread] = []

    # --- lifecycle ---

    def start(self) -> FakeV1Stack:
        if not self._servers:
            for api in _ROUTES:
                server = _Server(self, api)
                thread = threading.Thread(
                    target=server.serve_forever,
                    kwargs={"poll_interval": 0.01},
                    name=f"fake-aws-v1-{api}",
                    daemon=True,
                )
                thread.start()
                self._servers[api] = server
                self._threads.append(thread)
        return self

    def stop(self) -> None:
        for server in self._servers.values():
            server.shutdown()
            server.server_close()
        self._servers.clear()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()

    def __enter__(self) -> FakeV1Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _base(self, api: str) -> str:
        server = self._servers.get(api)
        if server is None:
            raise RuntimeError("FakeV1Stack is not started")
        return f"http://127.0.0.1:{server.server_address[1]}/{self.stage}"

    @property
    def endpoint(self) -> str:
        """The PrewarmApi's base URL with the stage (POST /prewarm)."""
        return self._base("prewarm")

    @property
    def status_endpoint(self) -> str:
        """The PrewarmStatusApi's base URL with the stage (GET /status)."""
        return self._base("status")

    # --- fault injection and test hooks ---

    def fail_next(
        self,
        kind: str,
        count: int = 1,
        *,
        route: str = "POST /prewarm",
        message: str | None = None,
    ) -> None:
        """The next ``count`` requests to ``route`` ("METHOD name") get a fault (-1: all).

        "500" on POST /prewarm writes the job first (the invalidator then fails to start);
        "504" and "drop" run the Lambda and lose its answer; "400" answers ``message``.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; one of {sorted(FAULT_KINDS)}")
        method, _, name = route.partition(" ")
        with self._lock:
            self._faults.append(_Fault(kind, method, name.strip("/"), count, message))

    def job_status(self, req_id: str) -> str:
        with self._lock:
            return str(self._status(self._jobs[req_id], self.clock())["status"])

    @property
    def jobs(self) -> dict[str, FakeV1Job]:
        with self._lock:
            return dict(self._jobs)

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Every request to either API: {t, api, method, route, status, body, params}."""
        with self._lock:
            return [dict(r) for r in self._requests]

    def requests_to(self, method: str, route: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["method"] == method and r["route"] == route]

    @property
    def violations(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(v) for v in self._violations]

    # --- request handling (server threads) ---

    def _handle(
        self, api: str, method: str, raw_path: str, headers: dict[str, str], raw_body: bytes
    ) -> Reply:
        parts = urlsplit(raw_path)
        with self._lock:
            now = self.clock()
            segments = [s for s in parts.path.split("/") if s]
            route = segments[1] if len(segments) == 2 and segments[0] == self.stage else ""
            entry: dict[str, Any] = {
                "t": now,
                "api": api,
                "method": method,
                "route": route or parts.path,
                "status": None,
                "body": None,
                "params": dict(parse_qsl(parts.query, keep_blank_values=True)),
            }
            self._requests.append(entry)
            reply = self._gateway(api, method, route, entry["params"], headers, raw_body, now)
            entry["status"] = None if reply.drop else reply.status
            try:
                entry["body"] = json.loads(raw_body) if raw_body else None
            except ValueError:
                entry["body"] = raw_body.decode(errors="replace")
            reply.headers.setdefault("x-amzn-RequestId", str(uuid.uuid4()))
            return reply

    def _gateway(
        self,
        api: str,
        method: str,
        route: str,
        params: dict[str, str],
        headers: dict[str, str],
        raw_body: bytes,
        now: float,
    ) -> Reply:
        """API Gateway: route, API key, usage plan, validator; then the proxy Lambda."""
        if (method, route) != _ROUTES[api]:
            return missing_token()
        refusal, fault = self.admit(headers, now, lambda: self._take_fault(method, route), api=api)
        if refusal is not None:
            return refusal
        if api == "status" and not params.get("requestID"):
            # The route's request validator; a requestID in a JSON body does not count.
            return Reply(400, {"message": "Missing required request parameters: [requestID]"})
        if fault is not None and fault.kind == "502":
            return Reply(502, {"message": "Internal server error"})
        if fault is not None and fault.kind == "400":
            return Reply(400, {"message": fault.message or "Invalid region"})
        try:
            if api == "prewarm":
                reply = self._scheduler(raw_body, now, fault)
            else:
                reply = self._status_fetcher(params["requestID"], now, fault)
        except _Crash:
            return Reply(502, {"message": "Internal server error"})
        if fault is not None and fault.kind == "504":
            return Reply(504, {"message": "Endpoint request timed out"})
        if fault is not None and fault.kind == "drop":
            return Reply(drop=True)
        return reply

    def _take_fault(self, method: str, route: str) -> _Fault | None:
        for fault in self._faults:
            if fault.method == method and fault.route == route:
                if fault.remaining > 0:
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                return fault
        return None

    # --- the scheduler (POST /prewarm) ---

    def _scheduler(self, raw_body: bytes, now: float, fault: _Fault | None) -> Reply:
        try:
            body = json.loads(raw_body)
        except ValueError:
            raise _Crash("json.loads") from None
        if not isinstance(body, dict):
            raise _Crash("not an object")
        if "url_list" not in body or "region" not in body:
            return _error("Please specify url_list and region in the request body")
        url_list = body["url_list"]
        if not isinstance(url_list, list):
            raise _Crash("url_list")
        if len(url_list) == 0:
            return _error("Please specify at least 1 url in url_list")
        cf_domain = body.get("cf_domain")
        protocol = body.get("protocol", "http")
        if protocol not in ("http", "https"):
            return _error("Invalid protocol, please specify http or https")
        region = body["region"]
        if self.field not in body:
            raise _Crash(f"KeyError: {self.field!r}")  # read unconditionally
        kind = body[self.field]
        pops: list[str]
        if isinstance(region, str):
            if region != "all":
                return _error("Invalid region, please specify a valid region or PoP list or all")
            if kind in ("region", "pop"):
                pops = list(_REGIONS["all"])
            elif kind == "country":
                pops = list(_COUNTRIES["all"])
            else:
                pops = list(region)  # left a string: the agent iterates "a", "l", "l"
        elif len(region) == 0:
            return _error(
                "Please specify at least 1 PoP node in region or use all to prewarm in all PoP"
                " nodes"
            )
        elif kind in ("region", "country"):
            table = _REGIONS if kind == "region" else _COUNTRIES
            pops = []
            for key in region:
                if not isinstance(key, str) or key.lower() not in table:
                    raise _Crash(f"KeyError: {key!r}")
                pops.extend(table[key.lower()])
        else:
            pops = [str(p) for p in region]
        req_id = str(uuid.uuid4())
        job = FakeV1Job(
            req_id=req_id,
            body=dict(body),
            url_list=[str(u) for u in url_list],
            pops=pops,
            protocol=protocol,
            cf_domain=cf_domain,
            created=now,
            enqueued=[],
        )
        self._jobs[req_id] = job  # write_in_ddb: before the invalidator is started
        if fault is not None and fault.kind == "500":
            return Reply(500, INVALIDATOR_FAILED)
        self._invalidator(job)
        return Reply(200, {"requestID": req_id})

    def _invalidator(self, job: FakeV1Job) -> None:
        """Invalidates each distinct URL, then enqueues it; stops at a host it cannot place."""
        urls = sorted(set(job.url_list))
        if job.cf_domain is not None:
            # find_dist_id: the first page of ListDistributions only.
            found = [d for d in self.distributions[:100] if d.domain == job.cf_domain]
            for url in urls:
                if found:
                    self.invalidations.append((found[0].id, _invalidation_path(url)))
                job.enqueued.append(url)
            return
        for url in urls:
            netloc = urlsplit(url).netloc
            if netloc.endswith("cloudfront.net"):
                dist = [d for d in self.distributions if d.domain == netloc]
            else:
                dist = [d for d in self.distributions if netloc in d.aliases]
            if not dist:
                return  # "No cloudfront domain name is found for <url>": the Lambda dies
            self.invalidations.append((dist[0].id, _invalidation_path(url)))
            job.enqueued.append(url)

    # --- the agents and the status fetcher (GET /status) ---

    def _url_result(self, job: FakeV1Job, url: str) -> str:
        """The agent's verdict for one URL over the job's PoPs: SUCCESS or FAIL."""
        ok: list[str] = []
        failed: list[str] = []
        for i, pop in enumerate(job.pops):
            fails = (
                "dlfail" in url
                or ("popfail" in url and i == 0)
                or ("404" in url and job.protocol == "http")
                or pop in self.dead_pops
                or len(pop) < 4
            )
            (failed if fails else ok).append(pop)
        if not failed:
            return "SUCCESS"
        warmed_sites = {p[:3] for p in ok}
        return "SUCCESS" if all(p[:3] in warmed_sites for p in failed) else "FAIL"

    def _status(self, job: FakeV1Job, now: float) -> dict[str, Any]:
        start = job.created + self.step_seconds
        n = len(job.enqueued)
        rows: dict[str, str] = {}
        for i, url in enumerate(job.enqueued):
            if now >= start + (i + 1) * self.download_seconds / n:
                rows[url] = self._url_result(job, url)
        success = sorted(u for u, r in rows.items() if r == "SUCCESS")
        failed = sorted(u for u, r in rows.items() if r == "FAIL")
        total = len(job.url_list)
        in_progress = total - len(success) - len(failed)
        status = "IN_PROGRESS"
        if in_progress == 0:
            status = "COMPLETED" if not failed else "FAILED"
        in_progress_urls = list(job.url_list)
        for url in success + failed:
            in_progress_urls.remove(url)  # the first occurrence only, as list.remove does
        data: dict[str, Any] = {
            "status": status,
            "total": total,
            "completed": len(success) + len(failed),
            "inProgress": in_progress,
            "failedUrl": failed,
            "inProgressUrl": in_progress_urls,
        }
        if self.show_success_urls:
            data["successUrl"] = success
        return data

    def _status_fetcher(self, req_id: str, now: float, fault: _Fault | None) -> Reply:
        if fault is not None and fault.kind == "500":
            return Reply(500, STATUS_EXCEPTION)  # str(error), under the JSON content type
        job = self._jobs.get(req_id)
        if job is None:
            return Reply(200, {"message": NOT_FOUND})
        return Reply(200, self._status(job, now))


def _invalidation_path(url: str) -> str:
    """What the invalidator asks CloudFront to invalidate: path + query, without the '?'."""
    parts = urlsplit(url)
    return parts.path + parts.query + parts.fragment


def _error(message: str) -> Reply:
    return Reply(400, {"message": message})


class _Server(QuietServer):
    def __init__(self, stack: FakeV1Stack, api: str) -> None:
        self.stack = stack
        self.api = api
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(JsonHandler):
    server: _Server

    def answer(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> Reply:
        return self.server.stack._handle(self.server.api, method, path, headers, raw)
