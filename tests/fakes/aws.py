"""A fake of the self-hosted CloudFront prewarm API (v2), behaving like its deployed code.

A real HTTP server on 127.0.0.1 that plays API Gateway and the five Lambdas of the
aws-cloudfront-extensions prewarm stack, as read from their source and run for real
(docs/providers/aws.md):

- x-api-key on every route (403 ``Forbidden``); an unknown route or stage is 403
  ``Missing Authentication Token``;
- the usage plan: a token bucket of 10 requests/s with a burst of 10 (429 ``Too Many
  Requests``, each one counted as a violation) and a daily quota (429 ``Limit Exceeded``);
- 502 when a Lambda crashes (a missing body field, an unknown region key, bad JSON);
- HTTP 200 with ``"status": "failure"`` for the Lambdas' own errors;
- jobs walking CREATED, CHECK_POP, INSERT_TASK, IN-PROGRESS, FINISHED in fractions of a
  second, STOPPED by force_stop (acted on by the key's presence) or by ``expire()`` (the
  timeout rule); one shared Auto Scaling group; a 60 s cooldown between queue purges;
- a presigned-style link to the failure CSV (written after the job ends, expiring);
- CloudFront's ListDistributions (REST-XML, paged), whose AWS Signature V4 is checked with
  our own code, so that boto3 can be pointed here with AWS_ENDPOINT_URL_CLOUDFRONT.

Outcomes are decided by the URLs: ``headfail`` fails the server's HEAD check, ``dlfail``
fails the download at every PoP, ``popfail`` at the first PoP only; a PoP in ``dead_pops``
does not resolve, which wedges the job as the real stack does (its fact sheet, §9b #2): first
in the list, it stays CHECK_POP; later, IN-PROGRESS with total_count 0 while download_count
grows. PoPs listed twice (overlapping region keys) keep the job IN-PROGRESS.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

from fakes.base import JsonHandler, LoopbackServer, QuietServer, Reply
from fakes.gateway import ApiGateway, missing_token

__all__ = ["FAULT_KINDS", "FakeDistribution", "FakeJob", "FakePrewarmApi"]

FAULT_KINDS = frozenset({"429", "limit", "502", "504", "500", "drop"})
URL_SIZE = 1000  # bytes of every object, as the HEAD check would sum them
DOWNLOAD_ERROR = "curl: (28) Connection timed out after 6001 milliseconds"

# The solution's tables, written out again here (independently of the provider's copy).
_REGIONS: dict[str, list[str]] = {
    "apac": [
        "BOM51-C1",
        "BOM52-C1",
        "ICN51-C1",
        "ICN54-C2",
        "NRT51-P2",
        "NRT57-P3",
        "SIN2-P1",
        "SIN52-C2",
    ],
    "au": ["SYD1-C1", "SYD62-P1"],
    "ca": ["YUL62-C2", "YUL62-C1"],
    "eu": [
        "ARN56-P1",
        "ARN54-C1",
        "CDG50-P1",
        "CDG52-P2",
        "DUB2-C1",
        "DUB56-P1",
        "FRA56-P4",
        "FRA60-P1",
        "LHR61-P3",
        "LHR50-P2",
    ],
    "jp": ["NRT51-P2", "NRT57-P3"],
    "sa": ["GRU1-C2", "GRU3-P1"],
    "us": ["IAD89-P1", "IAD89-P2", "SFO5-P2", "SFO5-P1", "DFW56-P1", "DFW56-P2"],
    "cn": ["PVG52-E1", "SZX51-E1", "BJS9-E1", "ZHY50-E1"],
}
_REGIONS["all"] = sorted({p for v in _REGIONS.values() for p in v})
_COUNTRIES: dict[str, list[str]] = {
    "india": ["BOM78-P1", "BOM78-P4"],
    "japan": ["NRT57-P2", "NRT57-P3"],
    "australia": ["SYD1-C1", "SYD62-P2"],
    "new_zealand": ["SYD1-C1", "SYD62-P2"],
    "south_korea": ["ICN57-P1", "ICN57-P2"],
}
for _c in ("malaysia", "china", "indonesia", "philippines", "singapore", "thailand", "vietnam"):
    _COUNTRIES[_c] = ["SIN2-P1", "SIN2-P2"]
_COUNTRIES["all"] = sorted({p for v in _COUNTRIES.values() for p in v})

_URL_RE = re.compile(r"^(?:http|https|ftp)://[^\s/$.?#].[^\s]*$")
_ROUTES = {("POST", "prewarm"), ("GET", "prewarm"), ("GET", "summary")}
_ROUTES |= {("POST", "instances"), ("GET", "instances")}
_CF_PATH = "/2020-05-31/distribution"
_EPSILON = 1e-9


def _stamp(moment: datetime) -> str:
    """str(datetime) as the Lambdas write it: no microseconds part when they are 0."""
    return str(moment.replace(tzinfo=None))


@dataclass
class FakeDistribution:
    id: str
    domain: str
    aliases: list[str]


@dataclass
class FakeJob:
    """One request row of the stack's DynamoDB table, and what its pipeline does."""

    req_id: str
    body: dict[str, Any]
    urls: list[str]  # the server's form, de-duplicated (order lost, as with set())
    head_failed: list[str]
    pops: list[str]  # as looked up, duplicates kept
    dead_pops: list[str]
    created: float
    created_at: datetime
    timeout_at: datetime
    stopped_at: float | None = None
    finished_at: float | None = None

    @property
    def good_urls(self) -> list[str]:
        return [u for u in self.urls if u not in self.head_failed]

    @property
    def good_pops(self) -> list[str]:
        return [p for p in self.pops if p not in self.dead_pops]  # duplicates counted

    def failed_tasks(self) -> list[tuple[str, str]]:
        """(PoP, URL) downloads that fail, in the unique PoPs tasks really go to."""
        pops = list(dict.fromkeys(self.good_pops))
        rows = []
        for url in self.good_urls:
            for i, pop in enumerate(pops):
                if "dlfail" in url or ("popfail" in url and i == 0):
                    rows.append((pop, url))
        return rows


@dataclass
class _Fault:
    kind: str
    method: str
    route: str
    remaining: int


def config_toml(values: dict[str, Any]) -> str:
    """A config whose default provider is alias "cf" with these keys (None drops a key)."""
    body = "\n".join(f"{k} = {json.dumps(v)}" for k, v in values.items() if v is not None)
    return (
        f'[defaults]\nprovider = "cf"\nretries = 3\nretry_timeout = 10\n\n[providers.cf]\n{body}\n'
    )


class FakePrewarmApi(ApiGateway, LoopbackServer):
    thread_name = "fake-aws-prewarm"

    """The fake stack; use as a context manager or call start() / stop()."""

    def __init__(
        self,
        *,
        api_key: str = "aws-test-key-0123456789",
        stage: str = "prod",
        rps: float = 10.0,
        burst: int = 10,
        daily_quota: int = 1000,
        step_seconds: float = 0.1,
        download_seconds: float = 0.2,
        report_delay: float = 0.0,
        report_ttl: float = 600.0,
        purge_cooldown: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        aws_access_key_id: str = "AKIAFAKEPREWARMTEST",
        aws_secret_access_key: str = "fake/secret/for/prewarm+tests",
        distributions: list[FakeDistribution] | None = None,
        cf_page_size: int = 2,
    ) -> None:
        self.init_usage_plan(api_key, rps, burst, daily_quota)
        self.stage = stage
        self.step_seconds = step_seconds
        self.download_seconds = download_seconds
        self.report_delay = report_delay
        # Downloads of each job's CSV answered 404 before it appears (written after FINISHED).
        self.report_misses = 0
        self._csv_misses: dict[str, int] = {}
        self.report_ttl = report_ttl
        self.purge_cooldown = purge_cooldown
        self.clock = clock
        self.aws_access_key_id = aws_access_key_id
        self.aws_secret_access_key = aws_secret_access_key
        self.distributions = list(distributions or [])
        self.cf_page_size = cf_page_size
        self.dead_pops: set[str] = set()
        self.capacity = 0

        self._lock = threading.RLock()
        self._jobs: dict[str, FakeJob] = {}
        self._requests: list[dict[str, Any]] = []
        self._faults: list[_Fault] = []
        self._prewarm_holds: list[tuple[threading.Event, threading.Event, threading.Event]] = []
        self._links: dict[str, tuple[str, float]] = {}  # signature -> (req_id, issued)
        self._last_purge: float | None = None
        self.cf_requests: list[dict[str, Any]] = []
        self.csv_requests: list[int] = []  # status codes of the report downloads

    # --- lifecycle (LoopbackServer: start, stop, port, url = the root boto3 points at) ---

    def make_server(self) -> _Server:
        return _Server(self)

    @property
    def endpoint(self) -> str:
        """The API's base URL with the stage, as the stack's output gives it."""
        return f"{self.url}/{self.stage}"

    def point_cli_at(self, env: dict[str, str], scratch: Path) -> None:
        """Sets ``env`` for a prewarm run against this fake: its API key, and boto3 talking
        to its CloudFront (``boto3_env``)."""
        env.update({"PREWARM_AWS_API_KEY": self.api_key, **self.boto3_env(scratch)})
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_PROFILE"):
            env.pop(name, None)

    def boto3_env(self, scratch: Path) -> dict[str, str]:
        """boto3 talking to this fake's CloudFront with fake credentials and no real AWS
        config (``scratch``: a directory where the config files it looks for do not exist)."""
        return {
            "AWS_ACCESS_KEY_ID": self.aws_access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.aws_secret_access_key,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL_CLOUDFRONT": self.url,
            "AWS_CONFIG_FILE": str(scratch / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(scratch / "no-aws-credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    # --- fault injection and test hooks ---

    def fail_next(self, kind: str, count: int = 1, *, route: str = "POST /prewarm") -> None:
        """The next ``count`` requests to ``route`` ("METHOD name") get a fault (-1: all).

        "504" and "drop" run the Lambda first (the job exists) and then lose the answer.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; one of {sorted(FAULT_KINDS)}")
        method, _, name = route.partition(" ")
        with self._lock:
            self._faults.append(_Fault(kind, method, name.strip("/"), count))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def hold_next_prewarm(self) -> tuple[threading.Event, threading.Event, threading.Event]:
        """Holds the next POST /prewarm open until ``release`` is set, then answers it.

        Returns (holding, release, answered): tests synchronise a kill on ``holding``.
        """
        events = (threading.Event(), threading.Event(), threading.Event())
        with self._lock:
            self._prewarm_holds.append(events)
        return events

    def _take_prewarm_hold(
        self, method: str, path: str
    ) -> tuple[threading.Event, threading.Event, threading.Event] | None:
        if method != "POST" or not urlsplit(path).path.rstrip("/").endswith("/prewarm"):
            return None
        with self._lock:
            return self._prewarm_holds.pop(0) if self._prewarm_holds else None

    def expire(self, req_id: str) -> None:
        """The timeout rule fires: like a force stop, and only while IN-PROGRESS."""
        with self._lock:
            job = self._jobs[req_id]
            if self._status(job, self.clock()) == "IN-PROGRESS":
                job.stopped_at = self.clock()
                self.capacity = 0

    def job_status(self, req_id: str) -> str:
        with self._lock:
            return self._status(self._jobs[req_id], self.clock())

    @property
    def jobs(self) -> dict[str, FakeJob]:
        with self._lock:
            return dict(self._jobs)

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Every API request: {t, method, route, status, body}."""
        with self._lock:
            return [dict(r) for r in self._requests]

    def requests_to(self, method: str, route: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["method"] == method and r["route"] == route]

    @property
    def violations(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(v) for v in self._violations]

    # --- the stack's pipeline, as a function of time ---

    def _status(self, job: FakeJob, now: float) -> str:
        if job.stopped_at is not None:
            return "STOPPED"
        age = now - job.created + _EPSILON
        step = self.step_seconds
        if age < step:
            return "CREATED"
        if not job.good_urls:  # get_url_size: nothing passed the HEAD check
            return self._finish(job, job.created + step)
        if age < 2 * step:
            return "CHECK_POP"
        if job.pops and job.pops[0] in job.dead_pops:
            return "CHECK_POP"  # get_pop_ip failed on the first PoP: stuck there
        if age < 3 * step:
            return "INSERT_TASK"
        if job.dead_pops:
            return "IN-PROGRESS"  # success_pop_count never written: it never finishes
        if self._tasks_done(job, now) < self._tasks_total(job):
            return "IN-PROGRESS"
        return self._finish(job, job.created + 3 * step + self.download_seconds)

    def _finish(self, job: FakeJob, at: float) -> str:
        if job.finished_at is None:
            job.finished_at = at
            self.capacity = 0  # the last result scales the shared group to 0
        return "FINISHED"

    def _tasks_total(self, job: FakeJob) -> int:
        return len(job.good_pops) * len(job.good_urls)  # duplicates counted (the bug)

    def _tasks_done(self, job: FakeJob, now: float) -> int:
        unique = len(set(job.good_pops)) * len(job.good_urls)  # what agents really run
        start = job.created + 3 * self.step_seconds
        end = job.stopped_at if job.stopped_at is not None else now
        if end <= start:
            return 0
        share = min(1.0, (end - start + _EPSILON) / self.download_seconds)
        return min(unique, int(unique * share))

    def _progress(self, job: FakeJob, now: float) -> dict[str, Any]:
        status = self._status(job, now)
        started = status in ("IN-PROGRESS", "FINISHED", "STOPPED")
        # A dead PoP leaves success_pop_count unwritten: total_count stays 0.
        total = self._tasks_total(job) if started and not job.dead_pops else 0
        done = self._tasks_done(job, now) if started else 0
        unique = len(set(job.good_pops)) * len(job.good_urls)
        downloaded = min(done, unique - len(job.failed_tasks()))  # failures bring no bytes
        total_size = URL_SIZE * len(job.good_urls) * len(job.good_pops)
        download_size = URL_SIZE * downloaded
        pct = int(download_size * 100 // total_size) if total_size else 0
        return {
            "request_id": job.req_id,
            "download_size": download_size,
            "total_size": total_size,
            "percentage_complete": pct,
            "available_task_count": max(0, unique - done) if status == "IN-PROGRESS" else 0,
            "in_progress_task_count": 0,
            "download_count": done,
            "total_count": total,
            "created_at": _stamp(job.created_at),
            "last_update_time": _stamp(job.created_at),
            "timestamp": _stamp(datetime.now(UTC)),
            "status": status,
        }

    # --- request handling (server threads) ---

    def _handle(
        self,
        method: str,
        raw_path: str,
        headers: dict[str, str],
        raw_body: bytes,
    ) -> Reply:
        parts = urlsplit(raw_path)
        if parts.path == _CF_PATH or parts.path.startswith("/s3/"):
            with self._lock:
                if parts.path == _CF_PATH:
                    return self._cloudfront(method, parts.path, parts.query, headers, raw_body)
                return self._report_csv(parts.path, parts.query)
        with self._lock:
            now = self.clock()
            segments = [s for s in parts.path.split("/") if s]
            route = segments[1] if len(segments) == 2 and segments[0] == self.stage else ""
            entry: dict[str, Any] = {
                "t": now,
                "method": method,
                "route": route or parts.path,
                "status": None,
                "body": None,
            }
            self._requests.append(entry)
            reply = self._gateway(method, route, parts.query, headers, raw_body, now, entry)
            entry["status"] = None if reply.drop else reply.status
            reply.headers.setdefault("x-amzn-RequestId", str(uuid.uuid4()))
            return reply

    def _gateway(
        self,
        method: str,
        route: str,
        query: str,
        headers: dict[str, str],
        raw_body: bytes,
        now: float,
        entry: dict[str, Any],
    ) -> Reply:
        """API Gateway: route, API key, usage plan; then the Lambda (proxy integration)."""
        if (method, route) not in _ROUTES:
            return missing_token()
        refusal, fault = self.admit(headers, now, lambda: self._take_fault(method, route))
        if refusal is not None:
            return refusal
        if fault is not None and fault.kind in ("502", "500"):
            return Reply(int(fault.kind), {"message": "Internal server error"})
        try:
            body: Any = json.loads(raw_body) if raw_body else None
        except ValueError:
            body = _NOT_JSON
        entry["body"] = body
        params = dict(parse_qsl(query))
        reply = self._lambda(method, route, params, body, now)
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

    def _lambda(
        self, method: str, route: str, params: dict[str, str], body: Any, now: float
    ) -> Reply:
        try:
            if (method, route) == ("POST", "prewarm"):
                return self._post_prewarm(body, now)
            if (method, route) == ("GET", "prewarm"):
                return self._get_prewarm(params, now)
            if (method, route) == ("GET", "summary"):
                return self._get_summary(params, now)
            if (method, route) == ("POST", "instances"):
                return self._post_instances(body, now)
            return _ok({"message": "query success", "desiredcapacity": self.capacity})
        except (KeyError, TypeError, AttributeError, ValueError):
            # An unhandled exception in a proxy Lambda: API Gateway's 502.
            return Reply(502, {"message": "Internal server error"})

    def _post_prewarm(self, body: Any, now: float) -> Reply:
        if body is _NOT_JSON or body is None:
            raise ValueError("json.loads")
        url_list = body["url_list"]
        cf_domain = body["cf_domain"]
        minutes = body["timeout"]
        instance_count = body["instance_count"]
        header = body["header"]
        if not isinstance(url_list, list) or not isinstance(header, list):
            raise TypeError("not a list")
        urls = sorted({_rewrite(str(u)) for u in url_list})  # a set: order lost
        stamp = datetime.now(UTC)
        bad = [u for u in urls if not _URL_RE.match(u)]
        if bad:
            return Reply(
                400,
                {
                    "status": "Failed",
                    "error_message": "Invalid URLs",
                    "error_urls": bad,
                    "request_id": str(uuid.uuid4()),
                    "timestamp": _stamp(stamp),
                    "timeout_at": _stamp(stamp),
                },
            )
        target_type = body.get("target_type", "pop")
        if target_type == "region":
            pops = _expand(body.get("regions", []), _REGIONS)
        elif target_type == "country":
            pops = _expand(body.get("countries", []), _COUNTRIES)
        else:
            pops = [str(p) for p in body.get("pops", [])]
        if not isinstance(instance_count, int) or not 0 <= instance_count <= 300:
            raise ValueError("AutoScaling: ValidationError")
        timeout_at = stamp + timedelta(minutes=float(minutes))
        req_id = str(uuid.uuid4())
        self.capacity = instance_count
        self._jobs[req_id] = FakeJob(
            req_id=req_id,
            body=dict(body),
            urls=urls,
            head_failed=[u for u in urls if "headfail" in u],
            pops=pops,
            dead_pops=[p for p in pops if p in self.dead_pops],
            created=now,
            created_at=stamp,
            timeout_at=timeout_at,
        )
        _ = cf_domain
        return _ok(
            {
                "status": "Success",
                "error_message": "",
                "error_urls": [],
                "request_id": req_id,
                "timestamp": _stamp(stamp),
                "timeout_at": _stamp(timeout_at),
            }
        )

    def _get_prewarm(self, params: dict[str, str], now: float) -> Reply:
        req_id = params.get("req_id", "")
        if not req_id:
            return _failure("req_id is empty!")
        job = self._jobs.get(req_id)
        if job is None:
            return _failure("The reqeust id is invalid.")
        return _ok(self._progress(job, now))

    def _get_summary(self, params: dict[str, str], now: float) -> Reply:
        req_id = params.get("req_id", "")
        if not req_id:
            return _failure("req_id is empty!")
        job = self._jobs.get(req_id)
        if job is None:
            return _failure("Request Id is invalid.")
        status = self._status(job, now)
        if status not in ("FINISHED", "STOPPED"):
            return _failure(
                f"Job status is {status},we can the get the summary when the job is"
                ' "FINISHED" or "STOPPED.'
            )
        signature = hmac.new(
            self.aws_secret_access_key.encode(), f"{req_id}:{now}".encode(), hashlib.sha256
        ).hexdigest()
        self._links[signature] = (req_id, now)
        link = (
            f"{self.url}/s3/prewarm-bucket-123456789012-us-east-1-prod/{req_id}/"
            "failed_pop_urls.csv?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=600"
            f"&X-Amz-Signature={signature}"
        )
        return _ok(
            {
                "request_id": req_id,
                "failure_pops": sorted(set(job.dead_pops)),
                "failure_urls": job.head_failed or [""],
                "failure_pop_urls_report": link,
                "timestamp": _stamp(datetime.now(UTC)),
                "created_at": _stamp(job.created_at),
                "last_update_time": _stamp(job.created_at),
                "status": status,
            }
        )

    def _post_instances(self, body: Any, now: float) -> Reply:
        if not isinstance(body, dict):
            return _failure("Expecting value: line 1 column 1 (char 0)")
        if "DesiredCapacity" not in body:
            return _failure("DesiredCapacity is missing")
        try:
            count = int(body["DesiredCapacity"])
        except (TypeError, ValueError) as exc:
            return _failure(str(exc))
        if count < 0:
            return _failure("DesiredCapacity is less than 0")
        if count > 300:
            return _failure("DesiredCapacity is greater than 300")
        if "force_stop" in body:  # the key's presence, whatever its value
            req_id = body.get("req_id")
            if not req_id:
                return _failure("If you want to clean the SQS,you must input the requst_id")
            job = self._jobs.get(str(req_id))
            if job is None:
                return _failure("Request Id is invalid.")
            if self._status(job, now) != "IN-PROGRESS":
                return _failure("The data is currently being inserted into SQS or Job is FINISHED.")
            if self._last_purge is not None and now - self._last_purge < self.purge_cooldown:
                return _failure(
                    "SQS https://sqs.us-east-1.amazonaws.com/123456789012/"
                    "prewarm_task_queue_prod purge failed"
                )
            self._last_purge = now
            job.stopped_at = now
        self.capacity = count
        return _ok(
            {"message": f"Auto Scaling Group prewarm_asg_prod updated to Desired Capacity: {count}"}
        )

    # --- the report CSV behind the presigned link ---

    def _report_csv(self, path: str, query: str) -> Reply:
        params = dict(parse_qsl(query))
        link = self._links.get(params.get("X-Amz-Signature", ""))
        now = self.clock()
        if link is None or not path.endswith(f"/{link[0]}/failed_pop_urls.csv"):
            return self._csv_reply(403, _s3_error("SignatureDoesNotMatch", "bad signature"))
        req_id, issued = link
        if now - issued > self.report_ttl:
            return self._csv_reply(403, _s3_error("AccessDenied", "Request has expired"))
        job = self._jobs[req_id]
        self._status(job, now)
        end = job.stopped_at if job.stopped_at is not None else job.finished_at
        missed = self._csv_misses.get(req_id, 0)
        if end is not None and now >= end + self.report_delay and missed < self.report_misses:
            self._csv_misses[req_id] = missed + 1
            end = None
        if end is None or now < end + self.report_delay:
            return self._csv_reply(404, _s3_error("NoSuchKey", "The specified key does not exist."))
        headers = " ".join(f"-H '{h}'" for h in job.body.get("header", []))
        lines = [
            f"{pop},{url},{DOWNLOAD_ERROR},curl -s {headers} --resolve"
            f" {job.body.get('cf_domain')}:443:10.0.0.1 {url}"
            for pop, url in job.failed_tasks()
        ]
        return self._csv_reply(200, "".join(line + "\n" for line in lines), "text/csv")

    def _csv_reply(self, status: int, text: str, content_type: str = "application/xml") -> Reply:
        self.csv_requests.append(status)
        return Reply(status, text, content_type)

    # --- CloudFront ListDistributions (REST-XML, SigV4) ---

    def _cloudfront(
        self, method: str, path: str, query: str, headers: dict[str, str], body: bytes
    ) -> Reply:
        params = dict(parse_qsl(query, keep_blank_values=True))
        entry = {"method": method, "params": params, "status": 200}
        self.cf_requests.append(entry)
        problem = self._sigv4_problem(method, path, query, headers, body)
        if problem is not None:
            entry["status"] = 403
            return Reply(403, _cf_error(*problem), "text/xml")
        if method != "GET":
            entry["status"] = 405
            return Reply(405, _cf_error("MethodNotAllowed", method), "text/xml")
        start = int(params.get("Marker") or 0)
        asked = int(params.get("MaxItems") or 100)
        size = min(asked, self.cf_page_size)  # fewer than asked, as a server may return
        page = self.distributions[start : start + size]
        nxt = start + len(page)
        truncated = nxt < len(self.distributions)
        items = "".join(
            "<DistributionSummary>"
            f"<Id>{escape(d.id)}</Id>"
            f"<ARN>arn:aws:cloudfront::123456789012:distribution/{escape(d.id)}</ARN>"
            "<Status>Deployed</Status>"
            "<LastModifiedTime>2024-04-16T03:10:21.405Z</LastModifiedTime>"
            f"<DomainName>{escape(d.domain)}</DomainName>"
            f"<Aliases><Quantity>{len(d.aliases)}</Quantity>"
            + (
                "<Items>" + "".join(f"<CNAME>{escape(a)}</CNAME>" for a in d.aliases) + "</Items>"
                if d.aliases
                else ""
            )
            + "</Aliases><Enabled>true</Enabled></DistributionSummary>"
            for d in page
        )
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<DistributionList xmlns="http://cloudfront.amazonaws.com/doc/2020-05-31/">'
            f"<Marker>{start if start else ''}</Marker>"
            + (f"<NextMarker>{nxt}</NextMarker>" if truncated else "")
            + f"<MaxItems>{asked}</MaxItems>"
            f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>"
            f"<Quantity>{len(page)}</Quantity>"
            + (f"<Items>{items}</Items>" if page else "")
            + "</DistributionList>"
        )
        return Reply(200, xml, "text/xml")

    def _sigv4_problem(
        self, method: str, path: str, query: str, headers: dict[str, str], body: bytes
    ) -> tuple[str, str] | None:
        """Checks AWS Signature Version 4 (our own implementation); (code, message) if bad."""
        auth = headers.get("authorization", "")
        match = re.match(
            r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request,\s*"
            r"SignedHeaders=([^,]+),\s*Signature=([0-9a-f]{64})$",
            auth,
        )
        if match is None:
            return ("MissingAuthenticationToken", "Request is missing Authentication Token")
        key_id, day, region, service, signed, signature = match.groups()
        if key_id != self.aws_access_key_id:
            return ("InvalidClientTokenId", "The security token included is invalid.")
        if service != "cloudfront":
            return ("SignatureDoesNotMatch", f"wrong service {service!r} in the scope")
        amz_date = headers.get("x-amz-date", "")
        if not amz_date.startswith(day):
            return ("SignatureDoesNotMatch", "x-amz-date does not match the scope's date")
        names = signed.split(";")
        canonical_headers = "".join(f"{n}:{' '.join(headers.get(n, '').split())}\n" for n in names)
        pairs = sorted(
            (quote(k, safe="-_.~"), quote(v, safe="-_.~"))
            for k, v in parse_qsl(query, keep_blank_values=True)
        )
        canonical = "\n".join(
            [
                method,
                quote(path, safe="/-_.~"),
                "&".join(f"{k}={v}" for k, v in pairs),
                canonical_headers,
                signed,
                headers.get("x-amz-content-sha256") or hashlib.sha256(body).hexdigest(),
            ]
        )
        scope = f"{day}/{region}/{service}/aws4_request"
        to_sign = "\n".join(
            ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
        )
        key = ("AWS4" + self.aws_secret_access_key).encode()
        for part in (day, region, service, "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature):
            return ("SignatureDoesNotMatch", "The request signature we calculated does not match")
        return None


_NOT_JSON = object()


def _rewrite(url: str) -> str:
    return url.strip().replace(" ", "%20").replace("(", "%28").replace(")", "%29")


def _expand(keys: Any, table: dict[str, list[str]]) -> list[str]:
    if not keys:
        keys = ["all"]
    pops: list[str] = []
    for key in keys:  # a bare string is iterated char by char: KeyError
        pops.extend(table[key.lower()])
    return pops


def _ok(body: dict[str, Any]) -> Reply:
    return Reply(200, {"status": "success", "timestamp": _stamp(datetime.now(UTC)), **body})


def _failure(message: str) -> Reply:
    return Reply(
        200, {"status": "failure", "timestamp": _stamp(datetime.now(UTC)), "message": message}
    )


def _s3_error(code: str, message: str) -> str:
    return (
        "<?xml version='1.0' encoding='UTF-8'?>"
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    )


def _cf_error(code: str, message: str) -> str:
    return (
        '<?xml version="1.0"?><ErrorResponse xmlns="http://cloudfront.amazonaws.com/doc/'
        f'2020-05-31/"><Error><Type>Sender</Type><Code>{code}</Code>'
        f"<Message>{escape(message)}</Message></Error><RequestId>{uuid.uuid4()}</RequestId>"
        "</ErrorResponse>"
    )


class _Server(QuietServer):
    def __init__(self, api: FakePrewarmApi) -> None:
        self.api = api
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(JsonHandler):
    server: _Server

    def answer(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> Reply:
        hold = self.server.api._take_prewarm_hold(method, path)
        if hold is not None:
            holding, release, _ = hold
            holding.set()
            release.wait(60)
        reply = self.server.api._handle(method, path, headers, raw)
        if hold is not None:
            hold[2].set()
        return reply
