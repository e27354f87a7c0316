"""The 2024 ("v2") prewarm API: its five routes, its answers, and what they mean.

Every quirk below is what the deployed Lambdas do (see docs/providers/aws.md): HTTP 200
with ``"status": "failure"`` for errors, a hyphenated ``IN-PROGRESS``, counts of (PoP, URL)
tasks rather than URLs, a byte-based percentage, ``[""]`` for "no failed URLs", and a
report CSV whose URL column is not quoted. :mod:`prewarm_aws.stack_v2` drives it;
:mod:`prewarm_aws.api_v1` is the first generation's counterpart.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from prewarm_aws.transport import Answer, Transport
from prewarm_cli.errors import NotFoundError, ProviderError, UsageError
from prewarm_cli.plugin import State, TaskStatus, UrlStatus

__all__ = [
    "FINISHED_STATES",
    "RUNNING_STATES",
    "STATES",
    "Progress",
    "ReportRow",
    "Summary",
    "V2Api",
    "derive_status",
    "parse_report_csv",
    "parse_time",
    "server_rewrite",
    "server_would_refuse",
]

# Raw status → normalized state. FINISHED/COMPLETED and STOPPED need more than the status.
STATES: dict[str, State] = {
    "CREATED": State.PENDING,
    "CHECK_POP": State.PENDING,
    "INSERT_TASK": State.PENDING,
    "IN-PROGRESS": State.RUNNING,
    "IN_PROGRESS": State.RUNNING,  # the docs' spelling; the code writes the hyphen
    "FINISHED": State.SUCCEEDED,
    "COMPLETED": State.SUCCEEDED,
    "STOPPED": State.CANCELLED,  # or timed out: see derive_status
    "TIMEOUT": State.TIMED_OUT,
    "FAILED": State.FAILED,
}
RUNNING_STATES = frozenset({"IN-PROGRESS", "IN_PROGRESS"})
FINISHED_STATES = frozenset({"FINISHED", "COMPLETED"})

# The server's URL check (api_post_prewarm), applied after its rewriting.
_SERVER_URL = re.compile(r"^(?:http|https|ftp)://[^\s/$.?#]\S+$")
_INVALID_ID = ("reqeust id is invalid", "request id is invalid")  # sic: both spellings occur


def server_rewrite(url: str) -> str:
    """What the server turns a URL into before checking and storing it."""
    return url.strip().replace(" ", "%20").replace("(", "%28").replace(")", "%29")


def server_would_refuse(url: str) -> bool:
    return _SERVER_URL.match(server_rewrite(url)) is None


def parse_time(text: Any) -> str | None:
    """The API's naive-UTC ``str(datetime)`` (with or without microseconds) as ISO 8601 UTC."""
    if not isinstance(text, str) or not text.strip():
        return None
    for fmt in ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S"):
        try:
            moment = datetime.strptime(text.strip(), fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return text


def add_minutes(iso: str | None, minutes: int | None) -> str | None:
    if not iso or not minutes or not iso.endswith("Z"):
        return None
    try:
        moment = datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%fZ")
    except ValueError:
        return None
    return (moment + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


@dataclass(frozen=True)
class Progress:
    """GET /prewarm: counts are (PoP, URL) tasks, sizes are bytes."""

    request_id: str
    status: str
    total_count: int
    download_count: int
    total_size: int
    download_size: int
    percentage_complete: int
    available_task_count: int
    in_progress_task_count: int
    created_at: str | None
    last_update_time: str | None

    @classmethod
    def from_answer(cls, req_id: str, data: Mapping[str, Any]) -> Progress:
        return cls(
            request_id=str(data.get("request_id") or req_id),
            status=str(data.get("status") or ""),
            total_count=_int(data.get("total_count")),
            download_count=_int(data.get("download_count")),
            total_size=_int(data.get("total_size")),
            download_size=_int(data.get("download_size")),
            percentage_complete=_int(data.get("percentage_complete")),
            available_task_count=_int(data.get("available_task_count")),
            in_progress_task_count=_int(data.get("in_progress_task_count")),
            created_at=parse_time(data.get("created_at")),
            last_update_time=parse_time(data.get("last_update_time")),
        )


@dataclass(frozen=True)
class ReportRow:
    """One failed (PoP, URL) task of the report CSV; the curl command column is dropped."""

    pop: str
    url: str
    error: str


@dataclass(frozen=True)
class Summary:
    """GET /summary, with the report CSV's rows when they could be fetched."""

    request_id: str
    status: str
    failure_pops: tuple[str, ...]
    failure_urls: tuple[str, ...]  # failed the server's HEAD check
    report_url: str | None
    rows: tuple[ReportRow, ...] = ()
    report_note: str | None = None  # why rows is empty although it should not be
    details: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_answer(cls, req_id: str, data: Mapping[str, Any]) -> Summary:
        pops = data.get("failure_pops") or []
        urls = data.get("failure_urls") or []
        report = data.get("failure_pop_urls_report")
        return cls(
            request_id=str(data.get("request_id") or req_id),
            status=str(data.get("status") or ""),
            failure_pops=tuple(str(p) for p in pops if str(p).strip()),
            # "No failed URL" comes back as [""]: the file's content split on newlines.
            failure_urls=tuple(str(u).strip() for u in urls if str(u).strip()),
            report_url=str(report) if report else None,
        )


def parse_report_csv(text: str) -> list[ReportRow]:
    """Rows of failed_pop_urls.csv: PoP, URL, error, curl command; no header, URL unquoted.

    A URL may hold commas, so it is everything between the first field and the last two.
    The command column may hold the user's headers (secrets): it is never kept.
    """
    rows: list[ReportRow] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = line.split(",")
        if len(fields) >= 4:
            pop, url, error = fields[0], ",".join(fields[1:-2]), fields[-2]
        elif len(fields) == 3:
            pop, url, error = fields
        else:
            continue
        rows.append(ReportRow(_unquote(pop), _unquote(url), _unquote(error)))
    return rows


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1].replace('""', '"')
    return text


class V2Api:
    """The five v2 routes; errors the Lambdas report in a 200 body become typed errors."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.alias = transport.alias

    def create_job(self, body: Mapping[str, Any]) -> Answer:
        """POST /prewarm: a 200 (job created) or a 400 (Invalid URLs) answer."""
        return self.transport.call("POST", "prewarm", body=body, submit=True)

    def progress(self, req_id: str) -> Progress:
        answer = self.transport.call("GET", "prewarm", params={"req_id": req_id})
        self._check(answer, "GET /prewarm", req_id)
        return Progress.from_answer(req_id, answer.data)

    def summary(self, req_id: str) -> Summary:
        answer = self.transport.call("GET", "summary", params={"req_id": req_id})
        self._check(answer, "GET /summary", req_id)
        return Summary.from_answer(req_id, answer.data)

    def desired_capacity(self) -> int:
        answer = self.transport.call("GET", "instances")
        self._check(answer, "GET /instances", None)
        return _int(answer.data.get("desiredcapacity"))

    def set_capacity(self, count: int, *, stop: str | None = None) -> str:
        """POST /instances; with ``stop`` (a req_id) the job is force-stopped first.

        The server acts on force_stop's presence, not its value: it is sent only to stop.
        """
        body: dict[str, Any] = {"DesiredCapacity": count}
        if stop is not None:
            body["req_id"] = stop
            body["force_stop"] = True
        answer = self.transport.call("POST", "instances", body=body)
        self._check(answer, "POST /instances", stop)
        return str(answer.data.get("message") or "")

    def _check(self, answer: Answer, what: str, req_id: str | None) -> None:
        """Raises for a ``"status": "failure"`` body (still HTTP 200)."""
        data = answer.data
        if str(data.get("status", "")).lower() != "failure":
            return
        message = str(data.get("message") or "the API reported a failure").strip()
        kw: dict[str, Any] = {"provider": self.alias, "request_id": answer.request_id}
        lowered = message.lower()
        if req_id and any(s in lowered for s in _INVALID_ID):
            raise NotFoundError(
                f"{what}: the prewarm API at {self.transport.endpoint} has no job {req_id}"
                f" ({message})",
                **kw,
            )
        if lowered.startswith("job status is"):
            state = message[len("job status is") :].split(",", 1)[0].strip()
            raise UsageError(
                f"job {req_id} is {state}: the prewarm API gives a report only once a job is"
                " FINISHED or STOPPED",
                hint=f"wait for it: prewarm status {self.alias}:{req_id} --wait",
                **kw,
            )
        if "purge failed" in lowered:
            raise ProviderError(
                f"{what}: {message}: SQS allows one queue purge per 60 s, so the job was not"
                " stopped and its instances keep running",
                hint=f"try again in a minute, or stop the instances: prewarm scale -p"
                f" {self.alias} 0 --yes",
                **kw,
            )
        raise ProviderError(f"{what}: {message}", **kw)


# --------------------------------------------------------------------------- states


def derive_status(
    progress: Progress,
    summary: Summary | None,
    *,
    url_count: int | None,
    target_pops: int | None,
    timeout_minutes: int | None,
    url_map: Mapping[str, str] | None = None,
    stopped_here: bool = True,
) -> TaskStatus:
    """A TaskStatus in URLs from the API's task counts, summary and report rows.

    A STOPPED job was cancelled when this machine sent its force_stop (``stopped_here``),
    else its timeout rule stopped it: timed out.

    The API never says how many URLs a job holds: ``url_count`` is that number when known
    (this process sent the job), else it is worked out from ``total_count`` = PoPs * URLs
    with the configured PoP count, and left 0 (the journal's count then prevails) when that
    does not divide.
    """
    raw = progress.status
    key = raw.upper()
    state = STATES.get(key, State.PENDING)
    if key == "STOPPED" and not stopped_here:
        state = State.TIMED_OUT
    details = _details(progress, timeout_minutes)
    if key in FINISHED_STATES and summary is not None:
        return _finished(progress, summary, url_count, target_pops, details, url_map or {})
    n = url_count
    if n is None and target_pops and progress.total_count:
        # Assumes every PoP resolved: only the summary (once finished) says which did not.
        n, rest = divmod(progress.total_count, target_pops)
        if rest or not n:
            n = None
    if n is not None:
        details["url_count"] = "exact" if url_count is not None else "estimated"
    total = n or 0
    if key in RUNNING_STATES and progress.total_count == 0 and progress.download_count > 0:
        # A PoP whose lookup failed mid-list leaves the job counting without a total: it
        # never finishes on its own.
        details["stuck"] = (
            "results arrive but total_count stays 0: the job will not finish by itself;"
            " cancel it, or wait for its timeout"
        )
    if state is State.RUNNING:
        return TaskStatus(
            progress.request_id, state, raw, total, in_progress=total, details=details
        )
    if state is State.PENDING:
        return TaskStatus(progress.request_id, state, raw, total, pending=total, details=details)
    if key == "STOPPED":
        # Stopped before its summary: which URLs were warmed by then is not said, so none
        # counts as warmed (every target is in one count, as elsewhere).
        details["stopped_by"] = (
            "prewarm cancel (force_stop)"
            if stopped_here
            else "the stack's timeout rule (or a force_stop sent from elsewhere)"
        )
        return TaskStatus(progress.request_id, state, raw, total, failed=total, details=details)
    if state in (State.FAILED, State.TIMED_OUT):
        return TaskStatus(progress.request_id, state, raw, total, failed=total, details=details)
    # FINISHED without a summary: counted as succeeded (the caller could not fetch one).
    return TaskStatus(progress.request_id, state, raw, total, succeeded=total, details=details)


def _details(progress: Progress, timeout_minutes: int | None) -> dict[str, Any]:
    percentage = progress.percentage_complete
    details: dict[str, Any] = {
        # Bytes downloaded of the bytes to download: not a share of URLs.
        "percentage_complete_bytes": min(100, max(0, percentage)),
        "download_size": progress.download_size,
        "total_size": progress.total_size,
        "tasks_done": progress.download_count,  # (PoP, URL) results, failures included
        "tasks_total": progress.total_count,
        "queue_available": progress.available_task_count,  # the stack's queue, all jobs
        "queue_in_flight": progress.in_progress_task_count,
        "created_at": progress.created_at,
        "last_update_time": progress.last_update_time,
    }
    timeout_at = add_minutes(progress.created_at, timeout_minutes)
    if timeout_at:
        # The rule fires at the start of that minute (up to 59 s early), from the config's
        # timeout_minutes: approximate.
        details["timeout_at"] = timeout_at
    if percentage > 100:
        details["percentage_complete_raw"] = percentage  # downloads counted twice on retries
    return details


def _finished(
    progress: Progress,
    summary: Summary,
    url_count: int | None,
    target_pops: int | None,
    details: dict[str, Any],
    url_map: Mapping[str, str],
) -> TaskStatus:
    raw = progress.status
    head_failed = [url_map.get(u, u) for u in summary.failure_urls]
    failed: dict[str, UrlStatus] = {}
    for url in head_failed:
        failed[url] = UrlStatus(url, State.FAILED, "failed the API's HEAD check through the CDN")
    for row in summary.rows:
        url = url_map.get(row.url, row.url)
        if url not in failed:
            failed[url] = UrlStatus(url, State.FAILED, row.error or "download failed", row.pop)
    pops_failed = len(summary.failure_pops)
    n = url_count
    if n is None and target_pops:
        good_pops = target_pops - pops_failed
        if progress.total_count == 0 and good_pops > 0:
            n = len(head_failed)  # no URL passed the HEAD check
        elif good_pops > 0 and progress.total_count % good_pops == 0:
            n = progress.total_count // good_pops + len(head_failed)
    details.update(
        failure_pops=list(summary.failure_pops),
        head_check_failed=len(head_failed),
        url_count=None if n is None else ("exact" if url_count is not None else "estimated"),
    )
    if summary.report_note:
        details["report"] = summary.report_note
    nothing_warmed = progress.total_count == 0
    urls = tuple(failed.values())
    if n is None:
        # Without the number of URLs no count can be right: leave them to the journal.
        state = State.FAILED if nothing_warmed else State.PARTIAL if failed or pops_failed else None
        return TaskStatus(
            progress.request_id,
            state or State.SUCCEEDED,
            raw,
            0,
            urls=urls,
            details=details,
        )
    n_failed = n if nothing_warmed else min(n, len(failed))
    succeeded = n - n_failed
    if succeeded == 0:
        state = State.FAILED
    elif n_failed or pops_failed:
        state = State.PARTIAL
    else:
        state = State.SUCCEEDED
    return TaskStatus(
        progress.request_id,
        state,
        raw,
        n,
        succeeded=succeeded,
        failed=n_failed,
        urls=urls,
        details=details,
    )
