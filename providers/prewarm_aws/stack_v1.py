"""The client of a first-generation (2023) prewarm stack: ``api_version = 1``.

Such a stack has two APIs (``endpoint`` for POST /prewarm, ``status_endpoint`` for
GET /status) behind one API key, invalidates every URL before warming it, scales its
instances on its queue's depth (no scale, no cancel), and lets jobs run side by side.
The routes and what their answers mean are in :mod:`prewarm_aws.api_v1`.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from prewarm_aws.api_v1 import (
    FAILED_AT_POPS,
    PROTOCOLS,
    V1Api,
    derive_status,
    protocol_of,
    request_body,
)
from prewarm_aws.shared import StackContext, key_hint
from prewarm_aws.transport import NoSuchRoute, check_endpoint
from prewarm_cli.errors import ConfigError, NotFoundError, ProviderError, UnknownOutcome
from prewarm_cli.plugin import (
    BatchResult,
    Capability,
    Failure,
    Limits,
    Report,
    State,
    SubmitOptions,
    TaskStatus,
)

__all__ = ["LIMITS", "StackV1"]

LIMITS = Limits(
    # The invalidator Lambda (15 minutes) invalidates the URLs one a second before
    # enqueueing any; ~800 would outlast it and leave the job unfinished for ever. The
    # URL list also travels in one DynamoDB item (400 KB) and one asynchronous Lambda
    # invocation (256 KB).
    max_batch=500,
    max_batch_bytes=200_000,
    # Its usage plan sets no throttle and no quota: 10 a second is a courtesy, and no daily
    # budget is kept (status polls of a long wait would spend one that is not there).
    requests_per_second=10.0,
    concurrency=1,  # one invalidator at a time: CloudFront limits invalidations in flight
    poll_interval=30.0,
)
# GET /status with an id no job has: the cheapest proof of the status API and the key.
CHECK_ID = "prewarm-config-check"
ALWAYS_INVALIDATES = (
    "a first-generation stack invalidates every URL before warming it, with or"
    " without --invalidate (one CloudFront invalidation per URL, a second apart)"
)
_ROUTE_HINT = (
    "check that endpoint (POST /prewarm) and status_endpoint (GET /status) are the base URLs,"
    " with their stage (e.g. /prod), of the stack's two APIs; a 2024 stack (one API with"
    " /prewarm, /summary, /instances) needs api_version = 2 (`prewarm config check --online`"
    " tells which)"
)
_CRASH_HINT = (
    "the first-generation scheduler crashes before it stores the job on a key it reads but"
    " does not find (prewarm sends both target_type and region_type), an unknown region or"
    " country key, or a url_list too large for one DynamoDB item; some builds of early March"
    " 2023 also crash whenever the body has cf_domain. Nothing was created: `prewarm submit"
    " --resume JOB` sends the URLs again; the scheduler's CloudWatch logs say which"
)
_UNKNOWN_HINT = (
    "a first-generation stack that answers 500 has written the job but not started its"
    " invalidation, so that job never finishes; check the scheduler's CloudWatch logs, then"
    " resend with `prewarm submit --resume JOB --force`"
)


class StackV1:
    """A first-generation stack: POST /prewarm and GET /status on two APIs; jobs side by side."""

    capabilities = frozenset({Capability.SUBMIT, Capability.STATUS, Capability.REPORT})
    limits = LIMITS
    # Jobs share the queue but do not disturb each other: no timeout rule, no force stop,
    # no "last job scales the group to 0".
    one_job_at_a_time = False
    # Its agents send Accept-Encoding: gzip, deflate, br and nothing of the user's: -H is
    # said to be ignored at submit and in the plan (unhonoured_options).
    sends_headers = False
    # Why scale and cancel are missing, for the error that says so.
    unsupported_note: str | None = (
        "a first-generation stack has no such route (its instances scale on its queue's"
        " depth, and a job cannot be stopped)"
    )

    def __init__(self, ctx: StackContext) -> None:
        self.ctx = ctx
        s = ctx.settings
        section = ctx.section
        if not s.get("status_endpoint"):
            raise ConfigError(
                f"{section}.status_endpoint: required with api_version = 1 (a first-generation"
                " stack answers GET /status on a second API)",
                hint='add status_endpoint = "https://<status-api-id>.execute-api.<region>'
                ".amazonaws.com/prod\" (the PrewarmStatusApi's URL), or set api_version = 2"
                " for a 2024 stack",
            )
        self.status_endpoint = check_endpoint(
            ctx.alias, str(s["status_endpoint"]), name="status_endpoint"
        )
        if self.status_endpoint == ctx.endpoint:
            raise ConfigError(
                f"{section}.status_endpoint is the same URL as endpoint, but a first-generation"
                " stack has two APIs (PrewarmApi for POST /prewarm, PrewarmStatusApi for"
                " GET /status), each with its own URL",
                hint=f"set status_endpoint to the status API's URL; a single API with /prewarm,"
                f" /summary and /instances is a 2024 stack: set {section}.api_version = 2 and"
                " remove status_endpoint",
            )
        hint = key_hint(
            ctx.alias, "the stack's output 'Prewarm API key' is the key's ARN, ending in its id"
        )
        self._submit_transport, self._status_transport = (
            ctx.transport(
                url,
                key_hint=hint,
                route_hint=_ROUTE_HINT,
                unknown_hint=_UNKNOWN_HINT,
                crash_hint=_CRASH_HINT,
            )
            for url in (ctx.endpoint, self.status_endpoint)
        )
        self._api = V1Api(self._submit_transport, self._status_transport)

    # --- submit ---

    def submit(self, urls: Sequence[str], options: SubmitOptions) -> BatchResult:
        rejected: dict[str, str] = {}
        resend: list[str] = []
        protocol = ""
        same_protocol: list[str] = []
        for url in urls:
            scheme = protocol_of(url)
            if scheme not in PROTOCOLS:
                rejected[url] = "the first-generation API warms http:// and https:// URLs only"
            elif not protocol or scheme == protocol:
                protocol = scheme
                same_protocol.append(url)
            else:
                resend.append(url)
        if resend:
            self.ctx.warn_once(
                "protocols",
                "http:// and https:// URLs go in separate jobs: a first-generation request"
                " takes one protocol for all its URLs",
            )
        job = self.ctx.distributions.job_urls(same_protocol)
        rejected.update(job.unmatched)
        resend.extend(job.others)
        if not job.chosen:
            return BatchResult(task_id=None, accepted=(), rejected=rejected, resend=tuple(resend))
        self._warn_about(job.chosen, options)
        body = request_body(job.chosen, self.ctx.target, job.cf_domain, protocol)
        try:
            answer = self._api.create_job(body)
        except UnknownOutcome as exc:
            # The engine records the URLs as unknown without showing why: say it here.
            self.ctx.warn(f"{exc}; {exc.hint}" if exc.hint else str(exc))
            raise
        except ProviderError as exc:
            if type(exc) is ProviderError and exc.hint:
                # A crash (502): the engine shows the message, not the explanation.
                self.ctx.warn(f"{exc.message}: {exc.hint}")
            raise
        data = answer.data
        if answer.status == 400:
            # The scheduler's own checks concern the request, not a URL (prewarm never sends
            # what they refuse): shown as is; the URLs can be resent with --resume.
            message = str(data.get("message") or data or "the request was refused").strip()
            raise ProviderError(
                f"POST /prewarm refused the request (HTTP 400): {message}",
                hint="prewarm validates these fields itself, so the stack's code differs from"
                " the 2023 release; see its scheduler Lambda. `prewarm submit --resume JOB`"
                " sends the URLs again",
                provider=self.ctx.alias,
                request_id=answer.request_id,
            )
        request_id = str(data.get("requestID") or "")
        if not request_id:
            raise ProviderError(
                f"POST /prewarm answered without a requestID: {dict(data)}",
                provider=self.ctx.alias,
                request_id=answer.request_id,
            )
        return BatchResult(
            task_id=request_id,
            accepted=tuple(job.chosen),
            rejected=rejected,
            resend=tuple(resend),
            request_id=answer.request_id,
            details={
                "cf_domain": job.cf_domain,
                "target": self.ctx.target.describe(),
                "protocol": protocol,
            },
        )

    def plan_notes(self, options: SubmitOptions) -> list[str]:
        return [ALWAYS_INVALIDATES]

    def _warn_about(self, urls: Sequence[str], options: SubmitOptions) -> None:
        warn_once = self.ctx.warn_once
        self.ctx.warn_about_target(
            "a code that no longer resolves makes every URL fail there (a PoP of the same"
            " three-letter site that warmed it still counts it warmed)"
        )
        warn_once("invalidate", ALWAYS_INVALIDATES)
        if any(urlsplit(u).query for u in urls):
            warn_once(
                "query",
                "the stack invalidates a URL with a query string under a wrong path (it drops"
                " the '?'): those objects may not be invalidated",
            )

    # --- status and report ---

    def fetch_status(self, task_ids: Sequence[str]) -> list[TaskStatus]:
        return [derive_status(self._api.status(task_id)) for task_id in task_ids]

    def report(self, task_ids: Sequence[str]) -> Report:
        """The failed URLs from GET /status (which PoPs failed is not exposed)."""
        failures: list[Failure] = []
        running: list[str] = []
        for status in self.fetch_status(task_ids):
            failures.extend(
                Failure(u.url, u.reason or FAILED_AT_POPS)
                for u in status.urls
                if u.state in (State.FAILED, State.TIMED_OUT)
            )
            if not status.state.finished:
                running.append(status.task_id)
        if running:
            jobs = "job" if len(running) == 1 else "jobs"
            self.ctx.warn(f"{jobs} {', '.join(running)} still in progress: more URLs may fail")
        return Report(failures=tuple(failures), details={"running": running})

    # --- the stack ---

    def busy(self) -> str | None:
        return None  # jobs may run side by side

    def check(self) -> list[str]:
        notes = [
            "api_version 1: a first-generation stack (POST /prewarm at endpoint, GET /status"
            " at status_endpoint)",
            *self.ctx.setup_notes(),
        ]
        ignored = [
            k
            for k, default in (("instance_count", 1), ("timeout_minutes", 60))
            if self.ctx.settings.get(k) not in (None, default)
        ]
        if ignored:
            notes.append(
                f"{', '.join(ignored)}: not used by a first-generation stack (its instances"
                " scale on its queue's depth, and it sets no timeout)"
            )
        try:
            self._api.status(CHECK_ID)
        except NoSuchRoute as exc:
            raise ConfigError(
                f"{exc.message}: not a first-generation status API. If the stack is the 2024"
                f" one (a single API with /prewarm, /summary, /instances), set"
                f" {self.ctx.section}.api_version = 2 and remove status_endpoint;"
                " otherwise set status_endpoint to the URL, with its stage, of the stack's"
                " second API (PrewarmStatusApi)",
                provider=self.ctx.alias,
                request_id=exc.request_id,
            ) from None
        except NotFoundError:
            pass  # the answer a first-generation status API gives an unknown id
        notes.append(
            "status API reachable, key accepted (endpoint is not contacted: its only route"
            " creates a job)"
        )
        return notes

    def prepare(self) -> None:
        self._submit_transport.client()
        self._status_transport.client()

    def close(self) -> None:
        self._submit_transport.close()
        self._status_transport.close()
