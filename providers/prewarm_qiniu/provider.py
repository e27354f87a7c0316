"""The Qiniu provider: prefetch, refresh and their list calls under /v2/tune/."""

from __future__ import annotations

import contextlib
import hashlib
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

from prewarm_cli.errors import (
    BatchTooLarge,
    InvalidRequest,
    NotFoundError,
    ProviderError,
    QuotaExhausted,
    RetryableError,
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
)
from prewarm_qiniu import client as api
from prewarm_qiniu.client import Reply
from prewarm_qiniu.clock import (
    format_utc,
    next_reset,
    query_window,
    request_id_time,
    window_start,
)
from prewarm_qiniu.quota_store import QuotaStore
from prewarm_qiniu.tasks import latest_per_url, task_status

__all__ = ["QiniuProvider"]

PREFETCH = "/v2/tune/prefetch"
PREFETCH_LIST = "/v2/tune/prefetch/list"
REFRESH = "/v2/tune/refresh"
REFRESH_LIST = "/v2/tune/refresh/list"

MAX_BATCH = 60  # URLs per prefetch request, and per refresh request
URLS_PER_SECOND = 240  # URLs + dirs per second, prefetch and refresh together
PAGE_SIZE = 100  # the documented default; no larger maximum is documented
MAX_PAGES = 1000  # a guard against a server that never says it is done


@dataclass(frozen=True)
class BatchKind:
    """Prefetch or refresh: the same request and answers, on their own paths and quotas."""

    name: str
    path: str
    list_path: str
    submit: bool  # sent twice it would count twice: an unanswered one is looked up first
    quota_keys: tuple[str, str]  # the answer's fields: daily quota, what is left today
    detail_keys: tuple[str, str]  # the same two in status details


PREFETCH_KIND = BatchKind(
    "prefetch",
    PREFETCH,
    PREFETCH_LIST,
    submit=True,
    quota_keys=("quotaDay", "surplusDay"),
    detail_keys=("quota_day", "surplus_day"),
)
# A refresh is safe to repeat (one still in flight gets 400037): retried, not looked up.
REFRESH_KIND = BatchKind(
    "refresh",
    REFRESH,
    REFRESH_LIST,
    submit=False,
    quota_keys=("urlQuotaDay", "urlSurplusDay"),
    detail_keys=("url_quota_day", "url_surplus_day"),
)
_INVALID_REASONS = {
    api.INVALID_URL: "invalid url (Qiniu 400031): not a URL Qiniu can prefetch",
    api.INVALID_HOST: (
        "invalid host (Qiniu 400032): the domain is not a CDN domain of this Qiniu account"
    ),
}


class QiniuProvider(Provider):
    """Qiniu fusion CDN (融合 CDN, and DCDN with ``product = "dcdn"``)."""

    name = "qiniu"
    description = "Qiniu fusion CDN: /v2/tune/prefetch, refresh and their list calls"
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
    sends_headers = False  # the prefetch API takes URLs only
    default_limits = Limits(
        max_batch=MAX_BATCH,
        invalidate_batch=MAX_BATCH,
        urls_per_second=URLS_PER_SECOND,
        concurrency=2,  # 240 URLs/s is 4 full requests/s: two in flight keep up
        poll_interval=10.0,  # prefetches take 5-10 minutes; each poll costs a list call per task
    )
    credential_env = {"access_key": "QINIU_ACCESS_KEY", "secret_key": "QINIU_SECRET_KEY"}
    config_schema = (
        ConfigField("access_key", str, "Qiniu AccessKey", required=True, secret=True),
        ConfigField("secret_key", str, "Qiniu SecretKey", required=True, secret=True),
        ConfigField(
            "product",
            str,
            'CDN product of the domains: "cdn", or "dcdn" for dynamic CDN (全站加速)',
            default="cdn",
            choices=("cdn", "dcdn"),
        ),
        ConfigField("endpoint", str, "API base URL", default=api.DEFAULT_ENDPOINT),
    )

    def __init__(self, alias: str, settings: Mapping[str, Any]) -> None:
        super().__init__(alias, settings)
        self.endpoint = api.check_endpoint(alias, self.settings.get("endpoint"))
        self.product = str(self.settings.get("product") or "cdn")
        self._client = api.QiniuClient(
            alias,
            self.endpoint,
            str(self.settings.get("access_key") or ""),
            str(self.settings.get("secret_key") or ""),
            timeout=float(self.settings.get("timeout") or 30.0),
            ca_bundle=self.settings.get("ca_bundle") or None,
            pace=self.pace,
        )
        self._store: QuotaStore | None = None
        # The clock is an attribute so that tests can move time without sleeping.
        self.now: Callable[[], datetime] = lambda: datetime.now(UTC)

    def __repr__(self) -> str:
        return f"QiniuProvider({self.alias!r}, {self.endpoint!r})"

    def rate_key(self) -> str:
        """One budget per Qiniu account: the 240 URLs/s are shared by all its requests."""
        parts = [
            self.name,
            self.endpoint,
            str(self.settings.get("access_key") or ""),
            str(self.settings.get("secret_key") or ""),
        ]
        return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]

    # --- submit ---

    def submit_batch(self, urls: Sequence[str], options: SubmitOptions) -> BatchResult:
        # Qiniu's prefetch takes no request headers: -H is not sent; the engine warns
        # (sends_headers = False, see docs/providers/qiniu.md).
        return self._post_batch(PREFETCH_KIND, urls)

    def invalidate_batch(self, urls: Sequence[str], options: SubmitOptions) -> BatchResult:
        """Refreshes (purges) the URLs: one ``/v2/tune/refresh`` request."""
        return self._post_batch(REFRESH_KIND, urls)

    def _post_batch(self, kind: BatchKind, urls: Sequence[str]) -> BatchResult:
        """One prefetch or refresh request, and what its answer means for the engine."""
        reply = self._client.post(
            kind.path, self._body({"urls": list(urls)}), submit=kind.submit, n_urls=len(urls)
        )
        quota = self._remember(reply, kind)
        if reply.ok:
            return self._accepted(reply, urls, quota, kind)
        if reply.code in _INVALID_REASONS:
            raise self._invalid(reply, urls, kind.name)
        if reply.code == api.URL_EXISTS:
            return self._already_in_flight(reply, urls, quota, kind)
        if reply.code == api.PREFETCH_QUOTA and kind is PREFETCH_KIND:
            self._prefetch_quota_refusal(reply, urls, quota)
        if reply.code in api.QUOTA_CODES and kind is REFRESH_KIND:
            self._refresh_quota_refusal(reply, urls, quota)
        if reply.code == api.TOO_MANY:
            raise BatchTooLarge(
                f"Qiniu refused {len(urls)} URLs in one {kind.name}: {reply.error} (code 400039)",
                # above the documented 60, shrink to it; at or below it, let the engine halve
                limit=MAX_BATCH if len(urls) > MAX_BATCH else None,
                provider=self.alias,
                request_id=reply.request_id,
            )
        self._client.fail(reply, f"Qiniu {kind.name}", submit=kind.submit)

    def _accepted(
        self, reply: Reply, urls: Sequence[str], quota: Quota | None, kind: BatchKind
    ) -> BatchResult:
        request_id = reply.data.get("requestId")
        rejected = self._named_invalid(reply, urls, "Qiniu listed it in invalidUrls")
        if not isinstance(request_id, str) or not request_id:
            if len(rejected) == len(urls):
                return BatchResult(None, accepted=(), rejected=rejected, quota=quota)
            if not kind.submit:
                # a refresh that cannot be followed is not known done: no prefetch after it
                rejected = dict.fromkeys(urls, "Qiniu gave no requestId to follow") | rejected
                return BatchResult(None, accepted=(), rejected=rejected, quota=quota)
            # success without an id to follow: cannot be tracked, so find out what was taken
            raise UnknownOutcome(
                "Qiniu answered success without a requestId",
                provider=self.alias,
                request_id=reply.request_id,
            )
        return BatchResult.from_response(
            request_id,
            urls,
            rejected=rejected,
            quota=quota,
            request_id=reply.request_id,
            details=_quota_details(quota, kind),
        )

    def _invalid(self, reply: Reply, urls: Sequence[str], what: str) -> InvalidRequest:
        """400031/400032: the named URLs are refused; unnamed, the engine splits the batch."""
        reason = _INVALID_REASONS[reply.code]
        if reply.code == api.INVALID_HOST and self.product == "cdn":
            reason += ' (for a dynamic CDN domain, set product = "dcdn")'
        named = self._named_invalid(reply, urls, reason)
        return InvalidRequest(
            f"Qiniu refused the {what}: {reason}",
            urls=named or None,
            provider=self.alias,
            request_id=reply.request_id,
        )

    def _prefetch_quota_refusal(
        self, reply: Reply, urls: Sequence[str], quota: Quota | None
    ) -> NoReturn:
        """400033: the whole batch is refused when it is larger than what is left today."""
        left = quota.remaining if quota else None
        daily = quota.daily if quota else None
        kw: dict[str, Any] = {"provider": self.alias, "request_id": reply.request_id}
        if left is not None and 0 < left < len(urls):
            raise BatchTooLarge(
                f"Qiniu's daily prefetch quota has {left} URL{'' if left == 1 else 's'} left;"
                " sending that many",
                limit=left,
                **kw,
            )
        if left is not None and left >= len(urls):
            # another client spent the quota between our reads; the figures will settle
            raise RetryableError(
                f"Qiniu refused {len(urls)} URLs for the daily quota but reports {left} left",
                **kw,
            )
        resets = next_reset(self.now())
        raise QuotaExhausted(
            "Qiniu's daily prefetch quota is used up (400033 prefetch url limit error"
            + (f"; {daily} URLs a day" if daily is not None else "")
            + ")",
            resets_at=format_utc(resets),
            hint="the rest is deferred: prewarm submit --resume JOB after "
            + format_utc(resets)
            + " (00:00 Beijing time)",
            **kw,
        )

    def _already_in_flight(
        self, reply: Reply, urls: Sequence[str], quota: Quota | None, kind: BatchKind
    ) -> BatchResult:
        """400037: some URLs are in flight already; they count as accepted under their tasks."""
        found = self._in_flight(kind.list_path, urls)
        if not found:
            raise RetryableError(
                f"Qiniu says URLs of this batch are already in a {kind.name} (400037),"
                f" but {kind.name}/list shows none in progress yet",
                provider=self.alias,
                request_id=reply.request_id,
            )
        task_id, _ = Counter(found.values()).most_common(1)[0]
        accepted = tuple(u for u in urls if u in found)
        return BatchResult(
            task_id=task_id,
            accepted=accepted,
            resend=tuple(u for u in urls if u not in found),
            task_ids={u: found[u] for u in accepted if found[u] != task_id},
            quota=quota,
            request_id=reply.request_id,
            details={"already_in_flight": len(accepted), **_quota_details(quota, kind)},
        )

    # --- lookup ---

    def find_submitted(self, urls: Sequence[str], since: datetime) -> dict[str, str]:
        """URLs with a prefetch made since ``since``, or still in progress: {url: requestId}."""
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)

        def counts(item: Mapping[str, Any], created: datetime | None) -> bool:
            # one still in progress holds the URL whenever it was made (a resend gets 400037)
            return item.get("state") == "processing" or (created is not None and created >= since)

        items: list[dict[str, Any]] = []
        for chunk in _chunks(list(dict.fromkeys(urls)), MAX_BATCH):
            items.extend(self._list_all(PREFETCH_LIST, {"urls": chunk}, since))
        found = latest_per_url(items, urls, counts)
        return {u: found[u] for u in urls if u in found}

    def _in_flight(self, path: str, urls: Sequence[str]) -> dict[str, str]:
        """{url: requestId} of the URLs with a task still ``processing``."""
        items: list[dict[str, Any]] = []
        for chunk in _chunks(list(dict.fromkeys(urls)), MAX_BATCH):
            query = {"urls": chunk, "state": "processing"}
            items.extend(self._list_all(path, query, None))
        return latest_per_url(items, urls, lambda item, _: item.get("state") == "processing")

    # --- status ---

    def fetch_status(self, task_ids: Sequence[str]) -> list[TaskStatus]:
        statuses: list[TaskStatus] = []
        expired: list[tuple[str, datetime]] = []
        details = self._status_details(PREFETCH_KIND)
        unlisted: list[tuple[str, datetime]] = []
        for task_id in task_ids:
            items = self._task_items(PREFETCH_KIND, task_id)
            made = request_id_time(task_id)
            if not items and made is not None and made < window_start(self.now()):
                expired.append((task_id, made))
                continue
            if not items and made is not None and self.now() - made > UNLISTED_GRACE:
                unlisted.append((task_id, made))  # pending for ever, were it shown
                continue
            statuses.append(task_status(task_id, items, {**_made(made), **details}))
        if unlisted:
            raise NotFoundError(
                "Qiniu lists no prefetch of "
                + ", ".join(f"request id {t} (made {format_utc(m)})" for t, m in unlisted)
                + " ten minutes on: made with other keys, or never made",
                hint="check the id, and that the provider's keys are those of the account"
                " that made it",
                provider=self.alias,
            )
        if expired:
            raise NotFoundError(
                "Qiniu keeps prefetch records for 7 days (today and the 6 days before, Beijing"
                " time); "
                + ", ".join(f"task {t} was made {format_utc(m)}" for t, m in expired)
                + " and can no longer be queried",
                hint="check the URLs' cache state with `prewarm verify URL...` instead",
                provider=self.alias,
            )
        return statuses

    def fetch_invalidation_status(self, task_ids: Sequence[str]) -> list[TaskStatus]:
        details = self._status_details(REFRESH_KIND)
        return [
            task_status(task_id, self._task_items(REFRESH_KIND, task_id), details)
            for task_id in task_ids
        ]

    def _task_items(self, kind: BatchKind, request_id: str) -> list[dict[str, Any]]:
        """Every list item of one request, all pages, searched since the id's own day."""
        query = {"requestId": request_id}
        try:
            return self._list_all(kind.list_path, query, request_id_time(request_id))
        except NotFoundError as exc:
            exc.message = f"Qiniu does not know the request id {request_id!r} ({exc.message})"
            raise

    def _list_all(
        self, path: str, query: Mapping[str, Any], since: datetime | None
    ) -> list[dict[str, Any]]:
        """Pages through a list call (``pageNo`` from 0) until ``total`` items are read."""
        start, end = query_window(self.now(), since)
        items: list[dict[str, Any]] = []
        for page in range(MAX_PAGES):
            body = self._body(
                {**query, "pageNo": page, "pageSize": PAGE_SIZE, "startTime": start, "endTime": end}
            )
            reply = self._client.post(path, body, submit=False)
            if not reply.ok:
                self._client.fail(reply, f"Qiniu {path.rsplit('/', 2)[-2]} list", submit=False)
            raw = reply.data.get("items")
            page_items = [i for i in raw if isinstance(i, dict)] if isinstance(raw, list) else []
            items.extend(page_items)
            total = _int(reply.data.get("total"))
            if not page_items:
                break  # an empty page ends it, whatever total says
            if total is not None and len(items) >= total:
                break
            if total is None and len(page_items) < PAGE_SIZE:
                break
        else:
            raise ProviderError(
                f"Qiniu {path} returned more than {MAX_PAGES} pages", provider=self.alias
            )
        return items

    def _refresh_quota_refusal(
        self, reply: Reply, urls: Sequence[str], quota: Quota | None
    ) -> NoReturn:
        """400034: the whole refresh is refused when it is larger than what is left today:
        a smaller one is sent when some is left (the URLs not refreshed are then deferred)."""
        daily, left = _int(reply.data.get("urlQuotaDay")), _int(reply.data.get("urlSurplusDay"))
        if quota is not None:
            daily, left = quota.daily, quota.remaining
        if left is not None and 0 < left < len(urls):
            raise BatchTooLarge(
                f"Qiniu's daily refresh quota has {left} URL{'' if left == 1 else 's'} left;"
                " refreshing that many",
                limit=left,
                provider=self.alias,
                request_id=reply.request_id,
            )
        resets = next_reset(self.now())
        figures = f"; {daily} URLs a day, {left} left" if daily is not None else ""
        raise QuotaExhausted(
            f"Qiniu's daily refresh quota does not allow this purge ({reply.error}{figures})",
            resets_at=format_utc(resets),
            hint="the URLs were not prefetched: prewarm submit --resume JOB after "
            + format_utc(resets)
            + " (00:00 Beijing time), or submit them without --invalidate",
            provider=self.alias,
            request_id=reply.request_id,
        )

    # --- quota ---

    def quota(self) -> Quota:
        """The daily prefetch quota as the last prefetch answer gave it (no API call exists)."""
        entry = self._quota_store().load()
        prefetch = entry.get("prefetch")
        details: dict[str, Any] = {}
        refresh = entry.get("refresh")
        now = self.now()
        refreshes_left = None  # as the last refresh answer of today gave it
        if isinstance(refresh, dict):
            details["refresh_daily"] = refresh.get("daily")
            details["refresh_remaining"] = refresh.get("remaining")
            details["refresh_seen_at"] = _seen(refresh)
            refresh_seen = _seen_time(refresh)
            if refresh_seen is not None and now < next_reset(refresh_seen):
                refreshes_left = _int(refresh.get("remaining"))
        if not isinstance(prefetch, dict):
            details["note"] = (
                "Qiniu has no quota call; its prefetch answers report the quota, and none"
                " has been seen yet with this account"
            )
            return Quota(
                None,
                None,
                resets_at=format_utc(next_reset(now)),
                batch=MAX_BATCH,
                source="last_response",
                details=details,
                invalidate_remaining=refreshes_left,
            )
        seen = _seen_time(prefetch)
        daily, remaining = _int(prefetch.get("daily")), _int(prefetch.get("remaining"))
        details["seen_at"] = format_utc(seen) if seen else None
        if seen is None or now >= next_reset(seen):
            details["note"] = (
                "the quota has been reset since the last prefetch answer; the next one tells"
            )
            remaining = None
        return Quota(
            daily,
            remaining,
            resets_at=format_utc(next_reset(now)),
            batch=MAX_BATCH,
            source="last_response",
            details=details,
            invalidate_remaining=refreshes_left,
        )

    # --- housekeeping ---

    def prepare(self) -> None:
        self._client.open()

    def check(self) -> list[str]:
        """One cheap list call proves the keys; the remembered quota is shown as well."""
        start, end = query_window(self.now(), self.now())
        body = self._body(
            {"state": "processing", "pageNo": 0, "pageSize": 1, "startTime": start, "endTime": end}
        )
        reply = self._client.post(PREFETCH_LIST, body, submit=False)
        if not reply.ok:
            self._client.fail(reply, "Qiniu prefetch list", submit=False)
        total = _int(reply.data.get("total")) or 0
        notes = [f"{self.endpoint}: keys accepted; {total} URL(s) being prefetched now"]
        q = self.quota()
        if q.daily is not None:
            left = "unknown" if q.remaining is None else str(q.remaining)
            notes.append(f"prefetch quota (last seen): {left} of {q.daily} URLs left today")
        return notes

    def close(self) -> None:
        self._client.close()

    # --- helpers ---

    def _body(self, body: dict[str, Any]) -> dict[str, Any]:
        if self.product == "dcdn":
            body["product"] = "dcdn"  # DCDN's calls require it; CDN's do not know it
        return body

    def _quota_store(self) -> QuotaStore:
        if self._store is None:
            self._store = QuotaStore.in_state_dir(self.state_dir, self.rate_key())
        return self._store

    def _remember(self, reply: Reply, kind: BatchKind) -> Quota | None:
        """Records the quota figures of a success or a quota refusal."""
        if not (reply.ok or reply.code in api.QUOTA_CODES):
            return None  # the doc: the figures are valid only then (else empty or zero)
        daily_key, left_key = kind.quota_keys
        daily, left = _int(reply.data.get(daily_key)), _int(reply.data.get(left_key))
        if daily is None or left is None:
            return None
        now = self.now()
        # remembering is a convenience: never fail a request over it (e.g. a read-only dir)
        with contextlib.suppress(Exception):
            self._quota_store().record(kind.name, daily, left, now)
        return Quota(
            daily,
            left,
            resets_at=format_utc(next_reset(now)),
            batch=MAX_BATCH,
            source="last_response",
        )

    def _named_invalid(self, reply: Reply, urls: Sequence[str], reason: str) -> dict[str, str]:
        raw = reply.data.get("invalidUrls")
        if not isinstance(raw, list):
            return {}
        batch = set(urls)
        return {u: reason for u in raw if isinstance(u, str) and u in batch}

    def _status_details(self, kind: BatchKind) -> dict[str, Any]:
        """The quota figures last remembered for this kind of request."""
        try:
            entry = self._quota_store().load().get(kind.name)
        except Exception:
            return {}
        if not isinstance(entry, dict):
            return {}
        daily_key, left_key = kind.detail_keys
        return {daily_key: entry.get("daily"), left_key: entry.get("remaining")}


def _quota_details(quota: Quota | None, kind: BatchKind) -> dict[str, Any]:
    if quota is None:
        return {}
    daily_key, left_key = kind.detail_keys
    return {daily_key: quota.daily, left_key: quota.remaining}


# How long a request id Qiniu made may go unlisted before it is taken for one it never made
# for these keys: its records are listed at once; a stuck status would wait for ever.
UNLISTED_GRACE = timedelta(minutes=10)


def _made(made: datetime | None) -> dict[str, Any]:
    return {"created_at": format_utc(made)} if made else {}


def _seen_time(entry: Mapping[str, Any]) -> datetime | None:
    try:
        seen = datetime.fromisoformat(str(entry.get("observed_at")))
    except ValueError:
        return None
    return seen if seen.tzinfo else seen.replace(tzinfo=UTC)


def _seen(entry: Mapping[str, Any]) -> str | None:
    seen = _seen_time(entry)
    return format_utc(seen) if seen else None


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
