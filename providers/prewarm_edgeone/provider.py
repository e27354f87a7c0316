"""Tencent EdgeOne provider (teo 2022-09-01, official SDK).

Prefetch (``CreatePrefetchTask``), task states (``DescribePrefetchTasks``), quotas and the
per-request batch size (``DescribeContentQuota``) and purge (``CreatePurgeTask`` /
``DescribePurgeTasks``). The SDK is imported when the first call is made, never at import.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from prewarm_cli.errors import (
    BatchTooLarge,
    ConfigError,
    NotFoundError,
    PrewarmError,
    ProviderError,
    QuotaExhausted,
    UnknownOutcome,
)
from prewarm_cli.plugin import (
    BatchResult,
    Capability,
    ConfigField,
    Limits,
    Provider,
    Quota,
    SubmitOptions,
    TaskStatus,
    config_errors,
    url_to_ascii,
)
from prewarm_edgeone.client import (
    CHINA_ENDPOINT,
    INTL_ENDPOINT,
    VENDOR_REQUESTS_PER_SECOND,
    ApiError,
    Endpoint,
    TeoApi,
    parse_endpoint,
)
from prewarm_edgeone.error_codes import is_auth, is_cam_denial, is_zone, translate
from prewarm_edgeone.options import SUBMIT_OPTIONS
from prewarm_edgeone.quota import PREFETCH_TYPE, PURGE_TYPE, QuotaCache, QuotaRead, entries
from prewarm_edgeone.tasks import created_at, iso, job_status, probes

__all__ = ["EdgeOneProvider"]

TOKEN_ENV = "TENCENTCLOUD_SESSION_TOKEN"
# When DescribeContentQuota cannot be read: small enough for any plan we know of; a
# LimitExceeded.BatchQuota answer shrinks it further.
FALLBACK_BATCH = 100
PAGE_SIZE = 1000  # the API's maximum Limit for Describe*Tasks
MAX_LISTED = 200_000  # a task listing stops here rather than paging forever
# Prefetch takes 5 to 30 minutes at EdgeOne: polling faster only spends the rate budget.
POLL_INTERVAL = 15.0
# Quota reads younger than this are reused by concurrent workers that hit BatchQuota.
QUOTA_REUSE_SECONDS = 2.0
# The lookup window ends a little after our clock's now, in case the vendor's runs ahead.
LOOKUP_CLOCK_MARGIN = timedelta(seconds=60)
# Per kind of request: the create and describe actions, and the quota type.
ACTIONS = {
    "prefetch": ("CreatePrefetchTask", "DescribePrefetchTasks", PREFETCH_TYPE),
    "purge": ("CreatePurgeTask", "DescribePurgeTasks", PURGE_TYPE),
}


class EdgeOneProvider(Provider):
    name = "edgeone"
    description = "Tencent EdgeOne prefetch and purge (teo 2022-09-01, official SDK)"
    capabilities = frozenset(
        {
            Capability.SUBMIT,
            Capability.STATUS,
            Capability.REPORT,
            Capability.QUOTA,
            Capability.INVALIDATE,
            Capability.LOOKUP,
        }
    )
    default_limits = Limits(
        max_batch=FALLBACK_BATCH,
        batch_from_vendor=True,
        requests_per_second=VENDOR_REQUESTS_PER_SECOND,
        concurrency=4,
        poll_interval=POLL_INTERVAL,
    )
    # TENCENTCLOUD_SESSION_TOKEN is read by _api(), not declared here: `config init` writes
    # an env: reference for every declared secret, which would make the token mandatory.
    credential_env = {
        "secret_id": "TENCENTCLOUD_SECRET_ID",
        "secret_key": "TENCENTCLOUD_SECRET_KEY",
    }
    config_schema = (
        # The key pair's id half, kept as Qiniu's AccessKey is: never printed, env: by default.
        ConfigField("secret_id", str, "API SecretId (AKID...)", required=True, secret=True),
        ConfigField("secret_key", str, "API SecretKey", required=True, secret=True),
        ConfigField(
            "token",
            str,
            f"session token of temporary (STS) credentials (default: env {TOKEN_ENV})",
            secret=True,
        ),
        ConfigField("zone_id", str, "site (zone) id, e.g. zone-2o0example", required=True),
        ConfigField(
            "endpoint",
            str,
            f"API URL: {CHINA_ENDPOINT} (China) or {INTL_ENDPOINT} (international)",
            default=CHINA_ENDPOINT,
        ),
        ConfigField(
            "lookup_settle",
            float,
            "seconds EdgeOne may take to list a new task: a lookup after an unknown outcome"
            " that misses URLs asks again once this long has passed since the send",
            default=2.0,
        ),
    )
    submit_options = SUBMIT_OPTIONS

    @classmethod
    def config_problems(cls, alias: str, settings: Mapping[str, Any]) -> list[ConfigError]:
        return config_errors(lambda: _zone_id(alias, settings), lambda: _endpoint(alias, settings))

    def __init__(self, alias: str, settings: Mapping[str, Any]) -> None:
        super().__init__(alias, settings)
        self.zone_id = _zone_id(alias, settings)
        self.endpoint: Endpoint = _endpoint(alias, settings)
        self._api_obj: TeoApi | None = None
        self._lock = threading.Lock()
        self._quota = QuotaCache(self._describe_quota)
        # URLs as sent (percent-encoded) -> as the user gave them, for this run's answers.
        self._ours: dict[str, str] = {}
        self._unlisted_since: dict[tuple[str, str], float] = {}  # (kind, job id) -> clock
        self.clock: Callable[[], float] = time.monotonic

    # --- declared facts ---

    def limits(self) -> Limits:
        """Batch sizes from DescribeContentQuota, read once per run."""
        # New tasks take a moment to be listed: the engine's lookup after an unknown
        # outcome asks again once this long has passed since the send.
        settle = float(self.settings.get("lookup_settle") or 0.0)
        read = self._run_quota()
        prefetch = read.prefetch.get(PREFETCH_TYPE) if read else None
        if read is None or prefetch is None or not prefetch.batch or prefetch.batch < 1:
            return replace(self.default_limits, lookup_settle=settle)
        purge = read.purge.get(PURGE_TYPE)
        purge_batch = purge.batch if purge and purge.batch and purge.batch > 0 else None
        return Limits(
            max_batch=prefetch.batch,
            vendor_reported=True,
            invalidate_batch=purge_batch,
            requests_per_second=VENDOR_REQUESTS_PER_SECOND,
            concurrency=self.default_limits.concurrency,
            poll_interval=POLL_INTERVAL,
            lookup_settle=settle,
        )

    # --- the work ---

    def prepare(self) -> None:
        self._api().prepare()

    def submit_batch(self, urls: Sequence[str], options: SubmitOptions) -> BatchResult:
        fields: dict[str, Any] = {}
        mode = options.extra.get("mode")
        if mode:
            fields["Mode"] = str(mode)
        if options.extra.get("media_segments"):
            fields["PrefetchMediaSegments"] = "on"
        if options.headers:
            fields["Headers"] = [self._header(name, value) for name, value in options.headers]
        return self._create_task("prefetch", urls, fields)

    def invalidate_batch(self, urls: Sequence[str], options: SubmitOptions) -> BatchResult:
        """Purges the URLs (purge_url), within what is left of the daily purge quota.

        URLs beyond what is left are handed back unsent (``resend``); once none is left,
        QuotaExhausted: the engine defers the URLs not purged (a URL not purged is not
        prefetched either: a late purge would evict the warm copy) for a --resume tomorrow.
        A refusal naming some URLs (a host outside the site) is the engine's to handle.
        """
        read = self._run_quota()
        entry = read.purge.get(PURGE_TYPE) if read else None
        left = entry.available if entry else None
        if left is not None and left <= 0:
            raise QuotaExhausted(
                "the daily purge quota is used up",
                hint="resume tomorrow: prewarm submit --resume JOB",
                provider=self.alias,
            )
        resend: tuple[str, ...] = ()
        if left is not None and len(urls) > left:
            urls, resend = urls[:left], tuple(urls[left:])
        try:
            result = self._create_task("purge", urls, {"Type": PURGE_TYPE})
        except QuotaExhausted:
            self._quota.purges_exhausted()
            raise
        self._quota.spend_purges(len(result.accepted))
        return replace(result, resend=(*result.resend, *resend))

    def fetch_status(self, task_ids: Sequence[str]) -> list[TaskStatus]:
        return [self._job_status("prefetch", t) for t in task_ids]

    def fetch_invalidation_status(self, task_ids: Sequence[str]) -> list[TaskStatus]:
        return [self._job_status("purge", t) for t in task_ids]

    def find_submitted(self, urls: Sequence[str], since: datetime) -> dict[str, str]:
        """Which URLs EdgeOne holds a prefetch task for, created since ``since``.

        The ``target`` filter takes one URL, so a few URLs of the batch are looked up; the
        jobs they belong to are then listed whole (one request made one job). Where none of
        them is in a job (refused in FailedList, or never sent), every task of the time
        window is listed and compared: the others may have been taken.
        """
        sent = self._sent_forms(urls)
        if not sent:
            return {}
        since = since.astimezone(UTC) if since.tzinfo else since.replace(tzinfo=UTC)
        found: dict[str, str] = {}
        listed: set[str] = set()
        for probe in probes(list(sent)):
            if sent[probe] in found:
                continue
            end = datetime.now(UTC) + LOOKUP_CLOCK_MARGIN
            tasks = self._list_tasks("prefetch", "target", probe, window=(since, end))
            # Newest first: a URL also warmed by an earlier run maps to this run's job.
            recent = sorted(
                ((created_at(t) or since, t) for t in tasks),
                key=lambda pair: pair[0],
                reverse=True,
            )
            for created, task in recent:
                if created < since:
                    continue
                job = str(task.JobId or "")
                if not job or job in listed:
                    continue
                listed.add(job)
                for item in self._list_tasks("prefetch", "job-id", job):
                    ours = sent.get(str(item.Target))
                    if ours is not None:
                        found.setdefault(ours, job)
            if len(found) == len(sent):
                break
        if not listed and len(sent) > len(probes(list(sent))):
            # No probe is in a job: each may have been refused (FailedList) while the others
            # were taken, so the window's tasks are listed whole and their targets compared.
            end = datetime.now(UTC) + LOOKUP_CLOCK_MARGIN
            tasks = self._list_tasks("prefetch", None, None, window=(since, end))
            if len(tasks) >= MAX_LISTED:
                raise ProviderError(
                    f"EdgeOne lists over {MAX_LISTED:,} prefetch tasks since"
                    f" {iso(since)}: cannot tell which of the batch it took",
                    provider=self.alias,
                )
            for task in tasks:
                ours = sent.get(str(task.Target))
                job = str(task.JobId or "")
                if ours is not None and job and (created_at(task) or since) >= since:
                    found.setdefault(ours, job)
        return found

    def quota(self) -> Quota:
        try:
            read = self._quota.for_display()
        except ApiError as err:
            raise self._error(err) from None
        prefetch = read.prefetch.get(PREFETCH_TYPE)
        details: dict[str, Any] = {
            "zone_id": self.zone_id,
            "purge": {t: q.to_dict() for t, q in sorted(read.purge.items())},
            "resets": "daily; the time of day is not documented by Tencent",
            "request_id": read.request_id,
        }
        others = {t: q.to_dict() for t, q in sorted(read.prefetch.items()) if t != PREFETCH_TYPE}
        if others:
            details["prefetch_other"] = others
        purge = read.purge.get(PURGE_TYPE)
        return Quota(
            daily=prefetch.daily if prefetch else None,
            remaining=prefetch.available if prefetch else None,
            resets_at=None,
            batch=prefetch.batch if prefetch else None,
            source="api",
            details=details,
            invalidate_remaining=purge.available if purge else None,
        )

    def check(self) -> list[str]:
        q = self.quota()
        return [
            f"zone {self.zone_id}: {q.remaining} of {q.daily} prefetch URLs left today,"
            f" {q.batch} per request"
        ]

    def close(self) -> None:
        if self._api_obj is not None:
            self._api_obj.close()

    # --- helpers ---

    def _api(self) -> TeoApi:
        with self._lock:
            if self._api_obj is None:
                s = self.settings
                token = s.get("token") or os.environ.get(TOKEN_ENV) or None
                self._api_obj = TeoApi(
                    secret_id=str(s.get("secret_id") or ""),
                    secret_key=str(s.get("secret_key") or ""),
                    token=str(token) if token else None,
                    endpoint=self.endpoint,
                    timeout=float(s.get("timeout") or 30.0),
                    ca_bundle=str(s["ca_bundle"]) if s.get("ca_bundle") else None,
                    pace=self.pace,
                )
            return self._api_obj

    def _models(self) -> Any:
        api = self._api()
        api.prepare()
        return api.models

    def _error(
        self, err: ApiError, *, submit: bool = False, targets: Mapping[str, str] | None = None
    ) -> PrewarmError:
        return translate(
            err, alias=self.alias, zone_id=self.zone_id, submit=submit, targets=targets
        )

    def _create_task(
        self, kind: str, urls: Sequence[str], fields: Mapping[str, Any]
    ) -> BatchResult:
        """CreatePrefetchTask or CreatePurgeTask for these URLs, with the request's own fields."""
        action, _, quota_type = ACTIONS[kind]
        models = self._models()
        sent = self._sent_forms(urls)
        req = getattr(models, f"{action}Request")()
        req.ZoneId = self.zone_id
        req.Targets = list(sent)
        for name, value in fields.items():
            setattr(req, name, value)
        try:
            raw = self._api().call(action, req)
        except ApiError as err:
            if err.code == "LimitExceeded.BatchQuota":
                raise self._batch_too_large(err, len(urls), quota_type) from None
            # A prefetch sent twice is warmed twice (and counted twice): an unanswered one
            # is looked up first. Purging twice only spends quota: an unanswered purge is
            # sent once more, never again within a retry policy (each try may spend quota).
            raise self._error(err, submit=True, targets=sent) from None
        resp = getattr(models, f"{action}Response")()
        resp._deserialize(raw)
        return self._batch_result(action, urls, sent, resp)

    def _sent_forms(self, urls: Sequence[str]) -> dict[str, str]:
        """{URL as sent: URL as given}: non-ASCII URLs go out percent-encoded (RFC 3986).

        EdgeOne's EncodeUrl flag would do this server-side, but it is deprecated (the SDK
        warns, the API definition disables it), so the URLs are encoded here instead.
        """
        sent: dict[str, str] = {}
        for url in urls:
            sent.setdefault(url_to_ascii(url), url)
        with self._lock:
            for wire, ours in sent.items():
                if wire != ours:
                    self._ours[wire] = ours
        return sent

    def _header(self, name: str, value: str) -> Any:
        header = self._models().Header()
        header.Name = name
        header.Value = value
        return header

    def _batch_result(
        self, action: str, urls: Sequence[str], sent: Mapping[str, str], resp: Any
    ) -> BatchResult:
        job_id = str(resp.JobId) if resp.JobId else None
        rejected: dict[str, str] = {}
        for failure in resp.FailedList or []:
            reason = str(failure.Reason or "refused by EdgeOne")
            for target in failure.Targets or []:
                ours = sent.get(str(target))
                if ours is not None:
                    rejected[ours] = reason
        refused_all = bool(rejected) and all(sent[w] in rejected for w in sent)
        if job_id is None and not refused_all:
            # EdgeOne may have made the job all the same: looked up before anything is sent
            # again (a failed batch would be sent again by --resume unlooked); what it
            # refused by name stays refused.
            raise UnknownOutcome(
                f"EdgeOne {action}: the answer names no job (no JobId)",
                rejected={u: rejected[u] for u in urls if u in rejected},
                provider=self.alias,
                request_id=resp.RequestId,
            )
        if refused_all:
            job_id = None
        return BatchResult.from_response(
            job_id,
            urls,
            rejected={u: rejected[u] for u in urls if u in rejected},
            request_id=resp.RequestId,
            details={"zone_id": self.zone_id},
        )

    def _batch_too_large(self, err: ApiError, sent: int, quota_type: str) -> BatchTooLarge:
        """The vendor's current Batch, re-read; half the batch when it cannot be read."""
        limit: int | None = None
        try:
            read: QuotaRead | None = self._quota.get(QUOTA_REUSE_SECONDS)
        except ApiError:
            read = None
        if read is not None:
            entry = (read.purge if quota_type == PURGE_TYPE else read.prefetch).get(quota_type)
            if entry and entry.batch and 0 < entry.batch < sent:
                limit = entry.batch
        error = translate(err, alias=self.alias, zone_id=self.zone_id)
        return BatchTooLarge(
            str(error.message),
            limit=limit if limit is not None else max(1, sent // 2),
            provider=self.alias,
            request_id=err.request_id,
        )

    def _describe_quota(self) -> QuotaRead:
        models = self._models()
        req = models.DescribeContentQuotaRequest()
        req.ZoneId = self.zone_id
        raw = self._api().call("DescribeContentQuota", req)
        resp = models.DescribeContentQuotaResponse()
        resp._deserialize(raw)
        return QuotaRead(
            prefetch=entries(resp.PrefetchQuota),
            purge=entries(resp.PurgeQuota),
            request_id=resp.RequestId,
        )

    def _run_quota(self) -> QuotaRead | None:
        """This run's quota read; None when it cannot be had and work can go on without it.

        A CAM policy without DescribeContentQuota or a transient fault leaves a conservative
        batch size and no purge budget (the vendor refuses what is over); a wrong zone or
        key stops the run.
        """
        try:
            return self._quota.get()
        except ApiError as err:
            if is_zone(err.code) or (is_auth(err.code) and not is_cam_denial(err.code)):
                raise self._error(err) from None
            return None

    def _list_tasks(
        self,
        kind: str,
        filter_name: str | None,
        value: str | None,
        *,
        window: tuple[datetime, datetime] | None = None,
    ) -> list[Any]:
        """Every task matching one filter (None: every task of the window), page by page
        until TotalCount is reached, or MAX_LISTED."""
        _, action, _ = ACTIONS[kind]
        models = self._models()
        request_cls = getattr(models, f"{action}Request")
        response_cls = getattr(models, f"{action}Response")
        tasks: list[Any] = []
        while len(tasks) < MAX_LISTED:
            req = request_cls()
            req.ZoneId = self.zone_id
            if filter_name is not None:
                flt = models.AdvancedFilter()
                flt.Name = filter_name
                flt.Values = [value]
                req.Filters = [flt]
            req.Offset = len(tasks)
            req.Limit = PAGE_SIZE
            if window is not None:
                # At most 7 days apart (InvalidParameter.ParameterError beyond).
                req.StartTime = iso(window[0])
                req.EndTime = iso(min(window[1], window[0] + timedelta(days=7)))
            try:
                raw = self._api().call(action, req)
            except ApiError as err:
                raise self._error(err) from None
            resp = response_cls()
            resp._deserialize(raw)
            page = list(resp.Tasks or [])
            tasks.extend(page)
            if not page or len(tasks) >= int(resp.TotalCount or 0):
                break
        return tasks

    def _job_status(self, kind: str, job_id: str) -> TaskStatus:
        tasks = self._list_tasks(kind, "job-id", job_id)
        if not tasks:
            self._check_listed(kind, job_id)
        with self._lock:
            ours = dict(self._ours)
        return job_status(job_id, tasks, ours, self.zone_id)

    def _check_listed(self, kind: str, job_id: str) -> None:
        """A job EdgeOne still lists no task of, UNLISTED_GRACE seconds after this process
        first asked, is not found: a new job is listed within seconds, and a job id that
        carries no time would otherwise be pending for ever (a --wait never ending)."""
        now = self.clock()
        with self._lock:
            first = self._unlisted_since.setdefault((kind, job_id), now)
        if now - first > UNLISTED_GRACE:
            raise NotFoundError(
                f"EdgeOne has listed no {kind} task of job {job_id} in zone {self.zone_id}"
                f" for {UNLISTED_GRACE / 60:g} minutes: a job of another zone or account,"
                " one older than EdgeOne keeps, or never made",
                hint="check the job id and the provider's zone_id",
                provider=self.alias,
            )


# How long a job id may go unlisted, from this process's first question, before it is taken
# for one EdgeOne does not hold.
UNLISTED_GRACE = 600.0


def _zone_id(alias: str, settings: Mapping[str, Any]) -> str:
    zone_id = str(settings.get("zone_id") or "").strip()
    if not zone_id or zone_id == "*" or any(c.isspace() for c in zone_id):
        raise ConfigError(
            f"providers.{alias}.zone_id: {zone_id!r} is not a site id",
            hint="give the site's zone id (zone-...); '*' cannot be used, as quotas"
            " and task listings are per site",
        )
    if not zone_id.startswith("zone-"):  # a domain, most often: the site's name, not its id
        raise ConfigError(
            f"providers.{alias}.zone_id: {zone_id!r} is not a site id (zone-...)",
            hint="the EdgeOne console lists each site's id (zone-...) on its overview page",
        )
    return zone_id


def _endpoint(alias: str, settings: Mapping[str, Any]) -> Endpoint:
    value = str(settings.get("endpoint") or CHINA_ENDPOINT)
    return parse_endpoint(value, f"providers.{alias}.endpoint")
