"""The client of a 2024 prewarm stack (``api_version = 2``, the default).

Such a stack has one API (POST/GET /prewarm, GET /summary, GET/POST /instances) and one
queue and Auto Scaling group for all jobs: it runs one job at a time (a second one would
stop or scale the first), so what needs a second request waits for the first job's end.
The routes and what their answers mean are in :mod:`prewarm_aws.api_v2`.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from prewarm_aws.api_v2 import (
    FINISHED_STATES,
    RUNNING_STATES,
    ReportRow,
    Summary,
    V2Api,
    derive_status,
    parse_report_csv,
    parse_time,
    server_rewrite,
    server_would_refuse,
)
from prewarm_aws.distributions import JobUrls
from prewarm_aws.shared import StackContext, key_hint
from prewarm_aws.transport import NoSuchRoute
from prewarm_cli.errors import (
    ConfigError,
    InvalidRequest,
    NotYetCancellable,
    ProviderError,
    StackBusy,
    UnknownOutcome,
    UsageError,
)
from prewarm_cli.plugin import (
    BatchResult,
    Capability,
    Failure,
    Limits,
    Report,
    SubmitOptions,
    TaskStatus,
    tls_context,
)

__all__ = ["LIMITS", "StackV2"]

LIMITS = Limits(
    # One request is one job; the server HEADs every URL in one 10-minute Lambda, so a
    # request stays far below the 6 MB Lambda payload limit and that Lambda's reach.
    max_batch=10_000,
    max_batch_bytes=1_000_000,
    requests_per_second=10.0,  # the usage plan: 10 req/s, burst 10
    requests_per_day=1000,  # the usage plan's daily quota, polling included
    concurrency=1,  # one job per stack: never two requests creating jobs at once
    poll_interval=30.0,  # 1000 requests a day do not allow faster polling for long
)
MAX_CAPACITY = 300  # set_asg_capacity refuses more
MIN_TIMEOUT_MINUTES = 2  # the timeout rule fires at minute granularity, up to 59 s early
# The report CSV is written after the status flips to FINISHED: a 404 right then is normal.
REPORT_RETRY_DELAYS = (0.5, 1.0, 2.0)
HEAD_FAILED = "failed the prewarm API's HEAD check through the distribution: not warmed anywhere"
POP_FAILED = "PoP did not resolve (<distribution>.<PoP>.cloudfront.net): nothing warmed there"
STOPPED_MIDWAY = (
    "the job was stopped before it finished (prewarm cancel, or its timeout): not known to be"
    " warmed"
)


class StackV2:
    """A 2024 stack: one API, one job at a time, scale and cancel."""

    capabilities = frozenset(
        {
            Capability.SUBMIT,
            Capability.STATUS,
            Capability.REPORT,
            Capability.SCALE,
            Capability.CANCEL,
        }
    )
    limits = LIMITS
    one_job_at_a_time = True
    sends_headers = True
    unsupported_note: str | None = None

    def __init__(self, ctx: StackContext) -> None:
        self.ctx = ctx
        section = ctx.section
        if ctx.settings.get("status_endpoint"):
            raise ConfigError(
                f"{section}.status_endpoint is set, but api_version = 2: the 2024 stack has one"
                " API (POST/GET /prewarm, /summary, /instances) at endpoint",
                hint=f"remove status_endpoint, or set {section}.api_version = 1 for a"
                " first-generation (2023) stack",
            )
        self.instance_count = ctx.int_setting("instance_count", 1)
        if not 1 <= self.instance_count <= MAX_CAPACITY:
            why = (
                "with 0 instances nothing would download"
                if self.instance_count < 1
                else f"the stack scales to {MAX_CAPACITY} at most"
            )
            raise ConfigError(
                f"{section}.instance_count: {self.instance_count} is outside 1-{MAX_CAPACITY}"
                f" ({why})"
            )
        self.timeout_minutes = ctx.int_setting("timeout_minutes", 60)
        if self.timeout_minutes < MIN_TIMEOUT_MINUTES:
            raise ConfigError(
                f"{section}.timeout_minutes: {self.timeout_minutes} is too short; at least"
                f" {MIN_TIMEOUT_MINUTES} (the stack's timeout rule fires up to a minute early)"
            )
        self._transport = ctx.transport(
            ctx.endpoint,
            key_hint=key_hint(ctx.alias, "the stack's output prewarm_api_key_output is the key id"),
        )
        self._api = V2Api(self._transport)
        self._job_sent: str | None = None  # the req_id of the job this process created
        self._busy_checked = False
        self._url_counts: dict[str, int] = {}
        self._url_maps: dict[str, dict[str, str]] = {}  # req_id: server form → as sent

    # --- submit ---

    def split(self, urls: Sequence[str]) -> tuple[JobUrls, dict[str, str]]:
        """What one job of these URLs takes (one distribution's), and what it refuses."""
        rejected = {
            u: "the prewarm API refuses this URL (its own URL pattern)"
            for u in urls
            if server_would_refuse(u)
        }
        job = self.ctx.distributions.job_urls([u for u in urls if u not in rejected])
        rejected.update(job.unmatched)
        return job, rejected

    def submit(self, urls: Sequence[str], options: SubmitOptions) -> BatchResult:
        if not options.force:
            self._refuse_a_second_job()
        job, rejected = self.split(urls)
        if not job.chosen:
            return BatchResult(task_id=None, accepted=(), rejected=rejected)
        self._warn_about(job.chosen, options)
        body: dict[str, Any] = {
            "url_list": list(job.chosen),
            "cf_domain": job.cf_domain,
            "timeout": self.timeout_minutes,
            **self.ctx.target.body(),
            "instance_count": self.instance_count,
            "header": [f"{name}: {value}" for name, value in options.headers],
            "need_invalidate": bool(options.invalidate),
        }
        try:
            answer = self._api.create_job(body)
        except UnknownOutcome:
            self._job_sent = "(unknown: no answer)"  # it may run: no second job now
            raise
        data = answer.data
        if answer.status == 400:
            raise self._invalid_urls(data, job.chosen, answer.request_id)
        req_id = str(data.get("request_id") or "")
        if str(data.get("status", "")).lower() != "success" or not req_id:
            raise ProviderError(
                f"POST /prewarm answered without a job: {data.get('error_message') or data}",
                provider=self.ctx.alias,
                request_id=answer.request_id,
            )
        self._job_sent = req_id
        self._url_counts[req_id] = len(job.chosen)
        self._url_maps[req_id] = {
            server_rewrite(u): u for u in job.chosen if server_rewrite(u) != u
        }
        details = {
            "cf_domain": job.cf_domain,
            "target": self.ctx.target.describe(),
            "timeout_at": parse_time(data.get("timeout_at")),
            "instance_count": self.instance_count,
        }
        return BatchResult(
            task_id=req_id,
            accepted=tuple(job.chosen),
            rejected=rejected,
            resend=tuple(job.others),
            request_id=req_id,
            details=details,
        )

    def _refuse_a_second_job(self) -> None:
        """StackBusy (the rest is deferred) while a job of this run, or another, may run."""
        if self._job_sent is not None:
            raise StackBusy(
                f"the stack runs one job at a time and job {self._job_sent} has just"
                " started: the URLs that need another request (too many for one, or"
                " another distribution) wait for it",
                hint="once it has finished (`prewarm status --wait`), send them with"
                " `prewarm submit --resume JOB`",
                provider=self.ctx.alias,
            )
        if not self._busy_checked:  # a --resume: the engine checks only new jobs
            busy = self.busy()
            if busy:
                raise StackBusy(
                    f"the stack runs one job at a time and is busy: {busy}",
                    hint="send the rest when it is idle: `prewarm submit --resume JOB`"
                    " (or --force)",
                    provider=self.ctx.alias,
                )

    def _invalid_urls(
        self, data: Mapping[str, Any], sent: Sequence[str], request_id: str | None
    ) -> InvalidRequest:
        """A 400 names the URLs in the server's rewritten form: map them back to ours."""
        message = str(data.get("error_message") or "the request was refused")
        back: dict[str, str] = {}
        for url in sent:
            back.setdefault(server_rewrite(url), url)
        named: dict[str, str] = {}
        for item in data.get("error_urls") or []:
            original = back.get(str(item)) or back.get(server_rewrite(str(item)))
            if original is not None:
                named[original] = f"refused by the prewarm API ({message})"
        return InvalidRequest(
            f"POST /prewarm: HTTP 400 {message}",
            urls=named or None,
            provider=self.ctx.alias,
            request_id=request_id,
        )

    def _warn_about(self, urls: Sequence[str], options: SubmitOptions) -> None:
        warn_once = self.ctx.warn_once
        self.ctx.warn_about_target(
            "a code that no longer resolves can keep the job from ever finishing"
            " (then: prewarm cancel JOB)"
        )
        if options.invalidate:
            warn_once(
                "invalidate",
                "the prewarm API invalidates the URLs itself, in the same request"
                " (need_invalidate: once per URL and PoP, not awaited before warming)",
            )
            if any(urlsplit(u).query for u in urls):
                warn_once(
                    "query",
                    "the API invalidates a URL with a query string under a wrong path (it drops"
                    " the '?'): those objects may not be invalidated",
                )
        if any(u.lower().startswith("http://") for u in urls):
            warn_once(
                "http",
                "http:// URLs are not pinned to the target PoPs by the stack's agents (only"
                " https:// is): they may warm the agents' nearest PoP instead",
            )

    def plan_notes(self, options: SubmitOptions) -> list[str]:
        return []

    # --- status and report ---

    def fetch_status(
        self, task_ids: Sequence[str], stopped_here: Collection[str] = ()
    ) -> list[TaskStatus]:
        """``stopped_here``: the jobs a cancel on this machine stopped (the others that
        stopped, their timeout rule did)."""
        statuses = []
        for task_id in task_ids:
            progress = self._api.progress(task_id)
            summary = None
            if progress.status.upper() == "FINISHED":
                summary = self._summary(task_id)
            statuses.append(
                derive_status(
                    progress,
                    summary,
                    url_count=self._url_counts.get(task_id),
                    target_pops=len(self.ctx.target.pops),
                    timeout_minutes=self.timeout_minutes,
                    url_map=self._url_maps.get(task_id),
                    stopped_here=task_id in stopped_here,
                )
            )
        return statuses

    def report(self, task_ids: Sequence[str]) -> Report:
        failures: list[Failure] = []
        links: dict[str, str] = {}
        notes: dict[str, str] = {}
        stopped: dict[str, str] = {}
        for task_id in task_ids:
            summary = self._summary(task_id)
            if summary.status.upper() == "STOPPED":  # status counts each URL failed
                stopped[task_id] = STOPPED_MIDWAY
            back = self._url_maps.get(task_id, {})
            for url in summary.failure_urls:
                failures.append(Failure(back.get(url, url), HEAD_FAILED))
            for pop in summary.failure_pops:
                failures.append(Failure("*", POP_FAILED, pop))
            for row in summary.rows:
                failures.append(Failure(back.get(row.url, row.url), row.error or "failed", row.pop))
            if summary.report_url:
                links[task_id] = summary.report_url
            if summary.report_note:
                notes[task_id] = summary.report_note
                self.ctx.warn_once(f"report-{task_id}", f"job {task_id}: {summary.report_note}")
        # The link lives 10 minutes: `report --download` saves it right after this call.
        report_url = links[task_ids[-1]] if task_ids and task_ids[-1] in links else None
        if report_url is None and links:
            report_url = next(reversed(links.values()))
        return Report(
            failures=tuple(failures),
            report_url=report_url,
            details={"report_urls": links, "notes": notes},
            stopped_tasks=stopped,
        )

    def _summary(self, task_id: str) -> Summary:
        """GET /summary and the report CSV behind its presigned link (fetched at once)."""
        summary = self._api.summary(task_id)
        rows, note = self._report_rows(summary.report_url)
        return Summary(
            request_id=summary.request_id,
            status=summary.status,
            failure_pops=summary.failure_pops,
            failure_urls=summary.failure_urls,
            report_url=summary.report_url,
            rows=tuple(rows),
            report_note=note,
        )

    def _report_rows(self, url: str | None) -> tuple[list[ReportRow], str | None]:
        if not url:
            return [], "the API gave no report link"
        import httpx

        settings = self.ctx.settings
        verify = tls_context(settings.get("ca_bundle"))
        timeout = float(settings.get("timeout") or 30.0)
        delays = iter(REPORT_RETRY_DELAYS)
        # A plain client: the presigned S3 link must not receive the API key.
        with httpx.Client(timeout=timeout, verify=verify, follow_redirects=True) as client:
            while True:
                try:
                    response = client.get(url)
                except httpx.HTTPError as exc:
                    return [], f"the report CSV could not be fetched: {type(exc).__name__}"
                if response.status_code == 200:
                    return parse_report_csv(response.text), None
                delay = next(delays, None)
                if response.status_code != 404 or delay is None:
                    break
                time.sleep(delay)  # written asynchronously after the job's end
        if response.status_code == 404:
            return [], "the report CSV is not written yet; try `prewarm report` again shortly"
        if response.status_code == 403:
            return [], "the report link was refused (it expires 10 minutes after it is made)"
        return [], f"the report CSV could not be fetched: HTTP {response.status_code}"

    # --- the stack ---

    def busy(self) -> str | None:
        """A job is probably running when the stack's Auto Scaling group has instances."""
        capacity = self._api.desired_capacity()
        self._busy_checked = True
        if capacity > 0:
            return (
                f"its Auto Scaling group runs {_instances(capacity)}, so a job is probably in"
                f" progress (if none is, stop them: prewarm scale -p {self.ctx.alias} 0 --yes)"
            )
        return None

    def scale(self, count: int | None) -> dict[str, Any]:
        alias = self.ctx.alias
        if count is None:
            capacity = self._api.desired_capacity()
            result: dict[str, Any] = {"desired_capacity": capacity}
            if capacity > 0:
                result["note"] = (
                    f"{_instances(capacity, 'EC2 ')} running, costing money until the job ends"
                    f" or you stop them: prewarm scale -p {alias} 0 --yes"
                )
            return result
        if not 0 <= count <= MAX_CAPACITY:
            raise UsageError(
                f"the stack takes 0 to {MAX_CAPACITY} instances, not {count}", provider=alias
            )
        message = self._api.set_capacity(count)
        result = {"desired_capacity": count, "message": message}
        if count > 0:
            result["note"] = (
                f"{_instances(count, 'EC2 ')} running now, costing money until a job ends"
                f" (which scales the stack to 0) or you stop them: prewarm scale -p {alias} 0 --yes"
            )
        return result

    def cancel(self, task_ids: Sequence[str]) -> dict[str, Any]:
        stopped: list[dict[str, Any]] = []
        refused: dict[str, str] = {}
        for task_id in task_ids:
            progress = self._api.progress(task_id)
            raw = progress.status.upper()
            if raw not in RUNNING_STATES:
                refused[task_id] = progress.status
                continue
            message = self._api.set_capacity(0, stop=task_id)
            stopped.append({"task_id": task_id, "raw_state": "STOPPED", "message": message})
        if not stopped:
            # A job still being set up (CREATED, CHECK_POP, INSERT_TASK) can be stopped later.
            not_yet = any(not _has_ended(raw) for raw in refused.values())
            raise (NotYetCancellable if not_yet else UsageError)(
                "; ".join(_why_not_cancelled(t, raw) for t, raw in refused.items()),
                hint=f"to stop the stack's instances anyway: prewarm scale -p {self.ctx.alias}"
                " 0 --yes",
                provider=self.ctx.alias,
            )
        result: dict[str, Any] = {"tasks": stopped, "desired_capacity": 0}
        if refused:
            result["not_cancelled"] = [
                {"task_id": t, "raw_state": raw, "reason": _why_not_cancelled(t, raw)}
                for t, raw in refused.items()
            ]
        result["note"] = (
            "the stack's whole queue was purged and its instances stopped; the job's report"
            " lists what was warmed and what was not: prewarm report"
        )
        return result

    def check(self) -> list[str]:
        notes = self.ctx.setup_notes()
        try:
            capacity = self._api.desired_capacity()
        except NoSuchRoute as exc:
            # A first-generation stack has no GET /instances (its scheduler API has only
            # POST /prewarm): the same answer as a wrong stage, so both are named.
            section = self.ctx.section
            raise ConfigError(
                f"{exc.message}: not a 2024 prewarm API. If it is a first-generation (2023)"
                f" stack, set {section}.api_version = 1 and {section}.status_endpoint (the URL"
                " of its second API, for GET /status); otherwise check the stage at the end of"
                " endpoint (e.g. /prod)",
                provider=self.ctx.alias,
                request_id=exc.request_id,
            ) from None
        notes.append(f"API reachable, key accepted; the stack runs {_instances(capacity)}")
        return notes

    def prepare(self) -> None:
        self._transport.client()

    def close(self) -> None:
        self._transport.close()


def _has_ended(raw: str) -> bool:
    key = raw.upper()
    return key in FINISHED_STATES or key in ("STOPPED", "TIMEOUT", "FAILED")


def _why_not_cancelled(task_id: str, raw: str) -> str:
    if _has_ended(raw):
        return f"job {task_id} has already ended ({raw}): there is nothing to cancel"
    return (
        f"job {task_id} is {raw or 'in an unknown state'}: the prewarm API can stop a job only"
        " while it is IN-PROGRESS (its tasks queued); try again once it is"
    )


def _instances(n: int, kind: str = "") -> str:
    """`1 instance`, `2 EC2 instances`."""
    return f"{n} {kind}instance{'' if n == 1 else 's'}"
