"""What the commands print, typed: the JSON contract of docs/json-output.md.

The engine returns these; renderers read their fields; ``to_dict()`` gives the documented
JSON (key names and order included). Counts are ``n_*`` here and keep their JSON names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from prewarm_cli.errors import Outcome


class JobState(StrEnum):
    """A local job's state, as `jobs` lists it and `jobs --state` filters it.

    A job is created, reads its input (ready), is sent (submitting), and then is submitted,
    incomplete (some targets deferred or unknown: --resume later), failed (nothing accepted)
    or interrupted. Once `status` has asked the vendors, it holds their combined state:
    pending, running, succeeded, partial, failed, cancelled or timed_out.
    """

    CREATED = "created"
    READY = "ready"
    SUBMITTING = "submitting"
    SUBMITTED = "submitted"
    INCOMPLETE = "incomplete"
    INTERRUPTED = "interrupted"
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"


# --------------------------------------------------------------------------- submit


@dataclass(frozen=True)
class TargetFailure:
    """A target the vendor rejected, or that failed after retries."""

    url: str
    provider: str
    reason: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"url": self.url, "provider": self.provider, "reason": self.reason}


@dataclass(frozen=True)
class TaskRow:
    """A vendor task that took some of a job's URLs."""

    provider: str
    task_id: str
    n_urls: int

    def to_dict(self) -> dict[str, Any]:
        return {"provider": self.provider, "task_id": self.task_id, "urls": self.n_urls}


@dataclass(frozen=True)
class ProviderCounts:
    """One provider's targets by outcome."""

    total: int
    accepted: int
    rejected: int
    failed: int
    deferred: int
    unknown: int
    details: Mapping[str, Any] = field(default_factory=dict)  # what the provider adds (direct)

    def to_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "total": self.total,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "failed": self.failed,
            "deferred": self.deferred,
            "unknown": self.unknown,
        }
        if self.details:
            found["details"] = dict(self.details)
        return found


@dataclass(frozen=True)
class SubmitSummary:
    """What `submit` prints: every target in exactly one outcome (DESIGN.md §5)."""

    job_id: str
    state: JobState  # submitted, incomplete or failed
    n_urls: int  # distinct input URLs
    total: int  # targets
    accepted: int
    rejected: tuple[TargetFailure, ...]
    failed: tuple[TargetFailure, ...]
    deferred: int
    unknown: int
    skipped: tuple[Mapping[str, Any], ...]  # the first MAX_KEPT_SKIPPED
    n_skipped: int  # all of them
    tasks: tuple[TaskRow, ...]
    providers: Mapping[str, ProviderCounts]
    created_at: str

    def outcomes(self) -> set[Outcome]:
        """What this summary means for the exit code."""
        found: set[Outcome] = set()
        if self.deferred:
            found.add(Outcome.TARGETS_DEFERRED)
        if self.total and not (self.accepted or self.deferred or self.unknown):
            found.add(Outcome.NOTHING_ACCEPTED)
        if self.rejected or self.failed:
            found.add(Outcome.TARGETS_FAILED)
        if self.unknown:
            found.add(Outcome.TARGETS_UNKNOWN)
        return found

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "state": str(self.state),
            "urls": self.n_urls,
            "total": self.total,
            "accepted": self.accepted,
            "rejected": [r.to_dict() for r in self.rejected],
            "failed": [r.to_dict() for r in self.failed],
            "deferred": self.deferred,
            "unknown": self.unknown,
            "skipped": [dict(s) for s in self.skipped],
            "skipped_total": self.n_skipped,
            "tasks": [t.to_dict() for t in self.tasks],
            "providers": {alias: c.to_dict() for alias, c in self.providers.items()},
            "created_at": self.created_at,
        }


# --------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class ProviderPlan:
    """What `submit --dry-run` would send to one provider."""

    provider: str
    type: str
    n_urls: int
    batch_size: int
    batches: int
    requests: int
    invalidate: bool
    estimated_seconds: float
    quota: Mapping[str, Any] | None
    would_defer: int
    notes: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "type": self.type,
            "urls": self.n_urls,
            "batch_size": self.batch_size,
            "batches": self.batches,
            "requests": self.requests,
            "invalidate": self.invalidate,
            "estimated_seconds": self.estimated_seconds,
            "quota": dict(self.quota) if self.quota is not None else None,
            "would_defer": self.would_defer,
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class Plan:
    """What `submit --dry-run` prints; nothing was sent."""

    n_urls: int
    total: int
    skipped: tuple[Mapping[str, Any], ...]  # the first MAX_KEPT_SKIPPED
    n_skipped: int  # all of them
    providers: Mapping[str, ProviderPlan]

    def to_dict(self) -> dict[str, Any]:
        return {
            "dry_run": True,
            "urls": self.n_urls,
            "total": self.total,
            "skipped": [dict(s) for s in self.skipped],
            "skipped_total": self.n_skipped,
            "providers": {alias: p.to_dict() for alias, p in self.providers.items()},
        }


# --------------------------------------------------------------------------- status


@dataclass(frozen=True)
class ProviderStatus:
    """One provider's part of a job: counts of targets, never of vendor tasks or bytes."""

    provider: str
    state: str  # a plugin.State value, or JobState.INCOMPLETE
    raw_state: str | None
    total: int
    succeeded: int
    failed: int
    in_progress: int
    pending: int
    not_sent: int
    tasks: tuple[Mapping[str, Any], ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)
    deferred: int = 0  # of not_sent, deferred by a quota or limit (not in the JSON)

    def to_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "state": self.state,
            "raw_state": self.raw_state,
            "total": self.total,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "in_progress": self.in_progress,
            "pending": self.pending,
            "not_sent": self.not_sent,
            "tasks": [dict(t) for t in self.tasks],
            "details": dict(self.details),
        }


@dataclass(frozen=True)
class JobStatus:
    """What `status` prints: the providers' states combined, and their counts summed.

    ``incomplete``: targets are left unsent and no process is sending them (only
    `submit --resume` will); exit 5 when some are deferred, else 4 (DESIGN.md §6).
    """

    job_id: str | None  # None for vendor tasks named as ALIAS:TASK_ID
    state: str  # a plugin.State value, or JobState.INCOMPLETE
    raw_state: str | None  # None when the providers differ
    total: int
    succeeded: int
    failed: int
    in_progress: int
    pending: int
    not_sent: int
    providers: Mapping[str, ProviderStatus]
    deferred: int = 0  # of not_sent, deferred by a quota or limit (not in the JSON)

    def outcomes(self) -> set[Outcome]:
        if self.state != JobState.INCOMPLETE:
            return {Outcome(self.state)}
        found = {Outcome.TARGETS_DEFERRED} if self.deferred else set()
        # A vendor that ended its part badly counts too (failed: 1 before 4).
        found |= {
            Outcome(p.state)
            for p in self.providers.values()
            if p.state in (JobState.FAILED, JobState.CANCELLED, JobState.TIMED_OUT)
        }
        if self.not_sent > self.deferred:
            found.add(Outcome.TARGETS_UNKNOWN)  # unsent, or sent with no known answer
        if self.failed:
            found.add(Outcome.TARGETS_FAILED)
        return found

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "state": self.state,
            "raw_state": self.raw_state,
            "total": self.total,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "in_progress": self.in_progress,
            "pending": self.pending,
            "not_sent": self.not_sent,
            "providers": {alias: p.to_dict() for alias, p in self.providers.items()},
        }


# --------------------------------------------------------------------------- report


@dataclass(frozen=True)
class ReportFailure:
    """A URL that did not get warm: refused at submit, or failed at the vendor."""

    url: str
    provider: str
    pop: str | None
    reason: str | None
    stage: str  # "submit" or "vendor"

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "provider": self.provider,
            "pop": self.pop,
            "reason": self.reason,
            "stage": self.stage,
        }


@dataclass(frozen=True)
class JobReport:
    """What `report` prints."""

    job_id: str | None
    state: str | None
    failures: tuple[ReportFailure, ...]
    report_urls: Mapping[str, str]  # alias -> the vendor's report file, where there is one

    @property
    def report_url(self) -> str | None:
        """The one vendor report file, when exactly one provider offers one."""
        return next(iter(self.report_urls.values())) if len(self.report_urls) == 1 else None

    def outcomes(self) -> set[Outcome]:
        return {Outcome.TARGETS_FAILED} if self.failures else set()

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "state": self.state,
            "failures": [f.to_dict() for f in self.failures],
            "report_url": self.report_url,
            "report_urls": dict(self.report_urls),
        }


# --------------------------------------------------------------------------- jobs


@dataclass(frozen=True)
class JobRow:
    """One line of `jobs`."""

    job_id: str
    state: str  # a JobState value
    created_at: str
    providers: tuple[str, ...]
    n_urls: int
    total: int
    accepted: int
    rejected: int
    deferred: int
    failed: int  # after retries: `submit --resume` sends them again
    # Not taken by a vendor: deferred, unsent, in flight or of unknown outcome (as status's).
    not_sent: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "state": self.state,
            "created_at": self.created_at,
            "providers": list(self.providers),
            "urls": self.n_urls,
            "total": self.total,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "deferred": self.deferred,
            "failed": self.failed,
            "not_sent": self.not_sent,
        }
