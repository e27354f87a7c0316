"""The first-generation (2023, ``api_version = 1``) prewarm API: two APIs, their answers, states.

A first-generation stack has two API Gateway REST APIs behind one API key: ``POST /prewarm``
(the scheduler Lambda) and ``GET /status?requestID=`` (the status fetcher). What their code
really does (docs/providers/aws.md): the scheduler reads ``target_type`` (``region_type``
before the March 2023 rename) unconditionally and crashes (502) without it, so both are sent;
``region`` is ``"all"`` or a list of PoP codes / region keys / country keys; every URL is
invalidated before it is warmed; the status counts URLs, says FAILED as soon as one URL failed,
never says TIMEOUT, answers an unknown id with HTTP 200 and a message, and an exception with
HTTP 500 and a plain-text body.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from prewarm_aws.tables import Target
from prewarm_aws.transport import Answer, Transport
from prewarm_cli.errors import NotFoundError, ProviderError
from prewarm_cli.plugin import State, TaskStatus, UrlStatus

__all__ = [
    "FAILED_AT_POPS",
    "PROTOCOLS",
    "JobStatus",
    "V1Api",
    "derive_status",
    "protocol_of",
    "region_field",
    "request_body",
]

PROTOCOLS = ("http", "https")
# Failed PoPs and the agents' errors stay in the stack's DynamoDB table: no API shows them.
FAILED_AT_POPS = "failed at one or more PoPs"
TIMED_OUT = "not warmed before the stack's 300-minute limit (TIMEOUT)"
_NOT_FOUND = "no result is found"


def protocol_of(url: str) -> str:
    """The ``protocol`` field for a URL: its scheme (the API takes one per request)."""
    return urlsplit(url).scheme.lower()


def region_field(target: Target) -> str | list[str]:
    """``region``: the string ``"all"`` (the form the code checks for) or the list sent."""
    if target.keys == ("all",) and target.target_type != "pop":
        return "all"
    return list(target.keys)


def request_body(
    urls: Sequence[str], target: Target, cf_domain: str, protocol: str
) -> dict[str, Any]:
    """POST /prewarm's body; ``target_type`` twice, as both generations of the code read it."""
    return {
        "url_list": list(urls),
        # The scheduler reads target_type since 9 March 2023 and region_type before; each
        # crashes without its own key and ignores the other.
        "target_type": target.target_type,
        "region_type": target.target_type,
        "region": region_field(target),
        "cf_domain": cf_domain,
        "protocol": protocol,
    }


def _int(value: Any) -> int:
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return 0


def _urls(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(dict.fromkeys(str(u) for u in value if str(u).strip()))


@dataclass(frozen=True)
class JobStatus:
    """GET /status: counts are URLs; ``success_urls`` is None when the stack hides them."""

    request_id: str
    status: str
    total: int
    completed: int  # failed URLs included
    in_progress: int
    failed_urls: tuple[str, ...]
    in_progress_urls: tuple[str, ...]
    success_urls: tuple[str, ...] | None

    @classmethod
    def from_answer(cls, request_id: str, data: Mapping[str, Any]) -> JobStatus:
        return cls(
            request_id=request_id,
            status=str(data.get("status") or ""),
            total=_int(data.get("total")),
            completed=_int(data.get("completed")),
            in_progress=_int(data.get("inProgress")),
            failed_urls=_urls(data.get("failedUrl")),
            in_progress_urls=_urls(data.get("inProgressUrl")),
            # Only a stack deployed with ShowSuccessUrls = true lists them.
            success_urls=_urls(data["successUrl"]) if "successUrl" in data else None,
        )


class V1Api:
    """The two first-generation APIs; one key, one usage plan, two base URLs."""

    def __init__(self, submit: Transport, status: Transport) -> None:
        self.submit = submit
        self.status_api = status
        self.alias = submit.alias

    def create_job(self, body: Mapping[str, Any]) -> Answer:
        """POST /prewarm: a 200 (``requestID``) or a 400 (``message``) answer."""
        return self.submit.call("POST", "prewarm", body=body, submit=True)

    def status(self, request_id: str) -> JobStatus:
        """GET /status?requestID= (the route's validator refuses a body-only id)."""
        answer = self.status_api.call("GET", "status", params={"requestID": request_id})
        data = answer.data
        if "status" not in data:
            message = str(data.get("message") or "").strip()
            kw: dict[str, Any] = {"provider": self.alias, "request_id": answer.request_id}
            if _NOT_FOUND in message.lower():
                raise NotFoundError(
                    f"GET /status: the first-generation status API at"
                    f" {self.status_api.endpoint} has no job {request_id} ({message})",
                    hint="check the task id, and that status_endpoint belongs to the stack"
                    " whose endpoint created it",
                    **kw,
                )
            raise ProviderError(
                f"GET /status answered without a status: {message or dict(data)}", **kw
            )
        return JobStatus.from_answer(request_id, data)


def derive_status(job: JobStatus) -> TaskStatus:
    """A TaskStatus from GET /status.

    FAILED means "finished, and at least one URL failed" (the code's rule), so it is
    ``partial`` when some URL was warmed and ``failed`` when none was. A URL counts as warmed
    when every PoP that failed it shares its three-letter site with one that warmed it.
    """
    raw = job.status
    key = raw.upper()
    failed = job.failed_urls
    if job.success_urls is not None:
        succeeded = len(job.success_urls)
    else:
        # Without ShowSuccessUrls: the URLs done that did not fail.
        succeeded = max(0, job.completed - len(failed))
    in_progress = job.in_progress
    urls: list[UrlStatus] = [UrlStatus(u, State.FAILED, FAILED_AT_POPS) for u in failed]
    urls.extend(UrlStatus(u, State.SUCCEEDED) for u in job.success_urls or ())
    details: dict[str, Any] = {
        "completed": job.completed,  # the API's count: failed URLs included
        "success_urls": "listed" if job.success_urls is not None else "derived",
    }
    n_failed = len(failed)
    if key == "IN_PROGRESS":
        state = State.RUNNING
        urls.extend(UrlStatus(u, State.RUNNING) for u in job.in_progress_urls)
    elif key == "COMPLETED":
        state = State.PARTIAL if n_failed else State.SUCCEEDED
    elif key == "FAILED":
        state = State.PARTIAL if succeeded else State.FAILED
    elif key == "TIMEOUT":
        # (The deployed code reads its start time from a missing attribute and never says
        # so; a stack that does gave up on the URLs still in progress.)
        state = State.TIMED_OUT
        urls.extend(UrlStatus(u, State.TIMED_OUT, TIMED_OUT) for u in job.in_progress_urls)
        n_failed += in_progress
        in_progress = 0
    else:
        state = State.PENDING
        details["unknown_status"] = raw
    return TaskStatus(
        task_id=job.request_id,
        state=state,
        raw_state=raw,
        total=job.total,
        succeeded=succeeded,
        failed=n_failed,
        in_progress=in_progress if state is State.RUNNING else 0,
        pending=in_progress if state is State.PENDING else 0,
        urls=tuple(urls),
        details=details,
    )
