"""The client for first-generation (2023) prewarm stacks: ``api_version = 1``.

Such a stack has two APIs (``endpoint`` for POST /prewarm, ``status_endpoint`` for
GET /status) behind one API key, invalidates every URL before warming it, scales its
instances on its queue's depth (no scale, no cancel), and lets jobs run side by side.
:class:`prewarm_aws.AwsProvider` hands an ``api_version = 1`` alias to this subclass.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from prewarm_aws import AwsProvider, key_hint
from prewarm_aws.transport import NoSuchRoute, Transport, check_endpoint
from prewarm_aws.v1 import (
    FAILED_AT_POPS,
    PROTOCOLS,
    V1Api,
    derive_status,
    protocol_of,
    request_body,
)
from prewarm_cli.errors import (
    ConfigError,
    NotFoundError,
    ProviderError,
    UnknownOutcome,
    UnsupportedError,
)
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

__all__ = ["FirstGenerationProvider"]

# GET /status with an id no job has: the cheapest proof of the status API and the key.
CHECK_ID = "prewarm-config-check"
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


class FirstGenerationProvider(AwsProvider):
    """Self-hosted CloudFront prewarm API, first generation (POST /prewarm + GET /status)."""

    capabilities = frozenset({Capability.SUBMIT, Capability.STATUS, Capability.REPORT})
    default_limits = Limits(
        # The invalidator Lambda (15 minutes) invalidates the URLs one a second before
        # enqueueing any; ~800 would outlast it and leave the job unfinished for ever. The
        # URL list also travels in one DynamoDB item (400 KB) and one asynchronous Lambda
        # invocation (256 KB).
        max_batch=500,
        max_batch_bytes=200_000,
        requests_per_second=10.0,  # as the current generation's usage plan
        requests_per_day=1000,
        concurrency=1,  # one invalidator at a time: CloudFront limits invalidations in flight
        poll_interval=30.0,
    )
    # Jobs share the queue but do not disturb each other: no timeout rule, no force stop,
    # no "last job scales the group to 0".
    one_job_at_a_time = False
    invalidates_in_submit = True  # always: the scheduler invalidates every URL first

    def _configure(self) -> None:
        s = self.settings
        alias = self.alias
        section = f"providers.{alias}"
        if not s.get("status_endpoint"):
            raise ConfigError(
                f"{section}.status_endpoint: required with api_version = 1 (a first-generation"
                " stack answers GET /status on a second API)",
                hint='add status_endpoint = "https://<status-api-id>.execute-api.<region>'
                ".amazonaws.com/prod\" (the PrewarmStatusApi's URL), or set api_version = 2"
                " for a 2024 stack",
            )
        self.status_endpoint = check_endpoint(
            alias, str(s["status_endpoint"]), name="status_endpoint"
        )
        if self.status_endpoint == self.endpoint:
            raise ConfigError(
                f"{section}.status_endpoint is the same URL as endpoint, but a first-generation"
                " stack has two APIs (PrewarmApi for POST /prewarm, PrewarmStatusApi for"
                " GET /status), each with its own URL",
                hint=f"set status_endpoint to the status API's URL; a single API with /prewarm,"
                f" /summary and /instances is a 2024 stack: set {section}.api_version = 2 and"
                " remove status_endpoint",
            )
        key = str(s.get("api_key") or "")
        hint = key_hint(
            alias, "the stack's output 'Prewarm API key' is the key's ARN, ending in its id"
        )
        transports = [
            Transport(
                alias,
                url,
                key,
                timeout=float(s.get("timeout") or 30.0),
                ca_bundle=s.get("ca_bundle"),
                key_hint=hint,
                route_hint=_ROUTE_HINT,
                unknown_hint=_UNKNOWN_HINT,
                crash_hint=_CRASH_HINT,
            )
            for url in (self.endpoint, self.status_endpoint)
        ]
        for transport in transports:
            transport.before_request = self.pace
        self._submit_transport, self._status_transport = transports
        self._v1 = V1Api(self._submit_transport, self._status_transport)

    # --- declared facts ---

    def require(self, capability: Capability) -> None:
        if capability in (Capability.SCALE, Capability.CANCEL):
            raise UnsupportedError(
                f"{self.alias} ({self.name}, api_version = 1) does not support {capability}:"
                " a first-generation stack has no such route (its instances scale on its"
                " queue's depth, and a job cannot be stopped)",
                provider=self.alias,
            )
        super().require(capability)

    # --- submit ---

    def _submit(self, urls: Sequence[str], options: SubmitOptions) -> BatchResult:
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
            self._warn_once(
                "protocols",
                "http:// and https:// URLs go in separate jobs: a first-generation request"
                " takes one protocol for all its URLs",
            )
        cf_domain, chosen, others, unmatched = self._pick_distribution(same_protocol)
        rejected.update(unmatched)
        resend.extend(others)
        if not chosen:
            return BatchResult(task_id=None, accepted=(), rejected=rejected, resend=tuple(resend))
        self._warn_v1(chosen, options)
        try:
            answer = self._v1.create_job(request_body(chosen, self.target, cf_domain, protocol))
        except UnknownOutcome as exc:
            # The engine records the URLs as unknown without showing why: say it here.
            self.warn(f"{exc}; {exc.hint}" if exc.hint else str(exc))
            raise
        except ProviderError as exc:
            if type(exc) is ProviderError and exc.hint:
                # A crash (502): the engine shows the message, not the explanation.
                self.warn(f"{exc.message}: {exc.hint}")
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
                provider=self.alias,
                request_id=answer.request_id,
            )
        request_id = str(data.get("requestID") or "")
        if not request_id:
            raise ProviderError(
                f"POST /prewarm answered without a requestID: {dict(data)}",
                provider=self.alias,
                request_id=answer.request_id,
            )
        return BatchResult(
            task_id=request_id,
            accepted=tuple(chosen),
            rejected=rejected,
            resend=tuple(resend),
            request_id=answer.request_id,
            details={
                "cf_domain": cf_domain,
                "target": self.target.describe(),
                "protocol": protocol,
            },
        )

    def plan_notes(self, options: SubmitOptions) -> list[str]:
        return [
            "a first-generation stack invalidates every URL before warming it, with or"
            " without --invalidate (one CloudFront invalidation per URL, a second apart)"
        ]

    def _warn_v1(self, urls: Sequence[str], options: SubmitOptions) -> None:
        self._warn_about_target(
            "a code that no longer resolves makes every URL fail there (a PoP of the same"
            " three-letter site that warmed it still counts it warmed)"
        )
        self._warn_once(
            "invalidate",
            "a first-generation stack invalidates every URL before warming it, with or"
            " without --invalidate (one CloudFront invalidation per URL, a second apart)",
        )
        if any(urlsplit(u).query for u in urls):
            self._warn_once(
                "query",
                "the stack invalidates a URL with a query string under a wrong path (it drops"
                " the '?'): those objects may not be invalidated",
            )
        if options.headers:
            self._warn_once(
                "headers",
                "a first-generation stack sends no request headers of yours: -H is ignored"
                " (its agents send Accept-Encoding: gzip, deflate, br)",
            )

    # --- status and report ---

    def fetch_status(self, task_ids: Sequence[str]) -> list[TaskStatus]:
        return [derive_status(self._v1.status(task_id)) for task_id in task_ids]

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
            self.warn(f"job(s) {', '.join(running)} still in progress: more URLs may fail")
        return Report(failures=tuple(failures), details={"running": running})

    # --- the stack ---

    def busy(self) -> str | None:
        return None  # jobs may run side by side

    def scale(self, count: int | None) -> dict[str, Any]:
        self.require(Capability.SCALE)
        return {}

    def cancel(self, task_ids: Sequence[str]) -> dict[str, Any]:
        self.require(Capability.CANCEL)
        return {}

    def check(self) -> list[str]:
        notes = [
            "api_version 1: a first-generation stack (POST /prewarm at endpoint, GET /status"
            " at status_endpoint)",
            f"target: {self.target.describe()}",
        ]
        if self.target.note:
            notes.append(self.target.note)
        if self.target.unknown_pops:
            notes.append(f"PoP codes in none of the tables: {', '.join(self.target.unknown_pops)}")
        notes.append(
            f"cf_domain: {self.cf_domain}"
            if self.cf_domain
            else "cf_domain: found from each URL's host through CloudFront ListDistributions"
            " (needs AWS credentials)"
        )
        ignored = [
            k
            for k, default in (("instance_count", 1), ("timeout_minutes", 60))
            if self.settings.get(k) not in (None, default)
        ]
        if ignored:
            notes.append(
                f"{', '.join(ignored)}: not used by a first-generation stack (its instances"
                " scale on its queue's depth, and it sets no timeout)"
            )
        try:
            self._v1.status(CHECK_ID)
        except NoSuchRoute as exc:
            raise ConfigError(
                f"{exc.message}: not a first-generation status API. If the stack is the 2024"
                f" one (a single API with /prewarm, /summary, /instances), set"
                f" providers.{self.alias}.api_version = 2 and remove status_endpoint;"
                " otherwise set status_endpoint to the URL, with its stage, of the stack's"
                " second API (PrewarmStatusApi)",
                provider=self.alias,
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
