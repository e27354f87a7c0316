"""Exit codes and the exception types shared by the core and the provider plugins."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import IntEnum, StrEnum
from typing import Any


class ExitCode(IntEnum):
    """Process exit codes (DESIGN.md §6)."""

    OK = 0
    FAILED = 1
    USAGE = 2
    CONFIG = 3
    INCOMPLETE = 4
    QUOTA = 5
    WAIT_TIMEOUT = 6
    INTERRUPTED = 130
    READER_GONE = 141  # stdout's reader went away (`| head`): as a process SIGPIPE ended


# Where several exit codes apply, the first of these wins (DESIGN.md §6).
EXIT_PRIORITY = (
    ExitCode.CONFIG,
    ExitCode.USAGE,
    ExitCode.QUOTA,
    ExitCode.WAIT_TIMEOUT,
    ExitCode.FAILED,
    ExitCode.INCOMPLETE,
)


def worst_exit(codes: list[ExitCode] | set[ExitCode]) -> ExitCode:
    """The exit code that wins among several that apply."""
    for code in EXIT_PRIORITY:
        if code in codes:
            return code
    return ExitCode.OK


class Outcome(StrEnum):
    """What a command found, as far as its exit code goes: a job's state (the values of
    plugin.State), or what became of its targets, or of a verification."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    TARGETS_FAILED = "targets_failed"  # some targets rejected or failed
    TARGETS_UNKNOWN = "targets_unknown"  # some outcomes unknown
    TARGETS_DEFERRED = "targets_deferred"  # quota or rate limit: --resume later
    NOTHING_ACCEPTED = "nothing_accepted"
    NOT_WARM = "not_warm"  # verify found a URL cold, or not as the vendor claims


# The one mapping from outcomes to exit codes (DESIGN.md §6). A job still pending or
# running is 0: `status` of a running job succeeds.
OUTCOME_EXIT: Mapping[Outcome, ExitCode] = {
    Outcome.PENDING: ExitCode.OK,
    Outcome.RUNNING: ExitCode.OK,
    Outcome.SUCCEEDED: ExitCode.OK,
    Outcome.PARTIAL: ExitCode.INCOMPLETE,
    Outcome.CANCELLED: ExitCode.INCOMPLETE,
    Outcome.TIMED_OUT: ExitCode.INCOMPLETE,
    Outcome.FAILED: ExitCode.FAILED,
    Outcome.TARGETS_FAILED: ExitCode.INCOMPLETE,
    Outcome.TARGETS_UNKNOWN: ExitCode.INCOMPLETE,
    Outcome.TARGETS_DEFERRED: ExitCode.QUOTA,
    Outcome.NOTHING_ACCEPTED: ExitCode.FAILED,
    Outcome.NOT_WARM: ExitCode.INCOMPLETE,
}


def exit_for(outcomes: Iterable[str]) -> ExitCode:
    """The exit code of everything a command found (the worst one wins)."""
    return worst_exit({OUTCOME_EXIT[Outcome(o)] for o in outcomes})


class ReaderGone(Exception):
    """stdout's reader closed it (`prewarm urls ... | head -1`): nothing more is written,
    nothing is said, and the run ends as a process that SIGPIPE ended (141)."""


class PrewarmError(Exception):
    """Base of every error prewarm reports to the user in one line."""

    exit_code = ExitCode.FAILED
    code = "error"

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        provider: str | None = None,
        request_id: str | None = None,
        job_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.provider = provider
        self.request_id = request_id
        self.job_id = job_id  # the job the error leaves behind, to resume or wait for

    def __str__(self) -> str:
        text = self.message
        if self.request_id:
            text += f" (request id {self.request_id})"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "error": {
                "code": self.code,
                "message": str(self),
                "hint": self.hint,
                "provider": self.provider,
                "request_id": self.request_id,
                "job_id": self.job_id,
            }
        }


class UsageError(PrewarmError):
    """The command line asks for something that cannot be done."""

    exit_code = ExitCode.USAGE
    code = "usage"


class InputError(UsageError):
    """Input URLs or files are invalid; nothing was sent."""

    code = "invalid_input"


class ConfigError(PrewarmError):
    """The configuration file or a credential is missing or wrong."""

    exit_code = ExitCode.CONFIG
    code = "config"


class NotFoundError(UsageError):
    """A job or task the user named does not exist."""

    code = "not_found"


class WaitTimeout(PrewarmError):
    """Our own --wait-timeout expired before the job finished."""

    exit_code = ExitCode.WAIT_TIMEOUT
    code = "wait_timeout"


class JournalError(PrewarmError):
    """The local journal cannot be read or written; the message names the file."""

    code = "journal"

    def __init__(self, message: str, *, exit_code: ExitCode = ExitCode.FAILED, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.exit_code = exit_code


class NotYetCancellable(UsageError):
    """The vendor cannot cancel the job in its present state but will once it runs:
    `cancel --wait` tries again."""

    code = "not_cancellable_yet"


class JobInUse(UsageError):
    """Another process is working on the job."""

    code = "job_in_use"


class RateStoreError(PrewarmError):
    """The shared rate-limit store failed before a request was sent (nothing was sent)."""

    code = "rate_store"


class UserInterrupt(PrewarmError):
    """The user pressed Ctrl-C; what was recorded stays in the journal."""

    exit_code = ExitCode.INTERRUPTED
    code = "interrupted"


# --- errors a provider raises; the engine decides retry, defer or stop (DESIGN.md §8) ---


class ProviderError(PrewarmError):
    """A vendor error that fits no narrower kind."""

    code = "provider_error"


class AuthError(ProviderError):
    """The vendor refused the credentials or the account's permissions."""

    exit_code = ExitCode.CONFIG
    code = "auth"


class UnsupportedError(ProviderError):
    """The provider lacks the capability the command needs."""

    exit_code = ExitCode.USAGE
    code = "unsupported"


class QuotaExhausted(ProviderError):
    """The vendor's quota is used up: what was not sent is deferred."""

    exit_code = ExitCode.QUOTA
    code = "quota_exhausted"

    def __init__(self, message: str, *, resets_at: str | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.resets_at = resets_at


class TargetsFailed(ProviderError):
    """Some targets did not go through after retries; the run itself went on (exit 4)."""

    exit_code = ExitCode.INCOMPLETE


class RetryableError(ProviderError):
    """The vendor clearly did not accept the request; sending it again is safe."""

    code = "retryable"

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class RateLimited(RetryableError):
    """The vendor throttled the request (HTTP 429 or a throttling code)."""

    exit_code = ExitCode.QUOTA
    code = "rate_limited"


class UnknownOutcome(ProviderError):
    """The request may or may not have been accepted (read timeout, dropped reply, 5xx, an
    answer that names no task). ``rejected``: URLs the answer did refuse by name, with the
    reason; those are recorded rejected, and only the rest is looked up."""

    code = "unknown_outcome"

    def __init__(
        self, message: str, *, rejected: Mapping[str, str] | None = None, **kw: Any
    ) -> None:
        super().__init__(message, **kw)
        self.rejected = dict(rejected or {})


class InvalidRequest(ProviderError):
    """The vendor refused the request because of its input.

    ``urls`` names the offending URLs when the vendor says which; the engine
    rejects those and resends the rest, or splits the batch to find them.
    """

    exit_code = ExitCode.USAGE
    code = "invalid_request"

    def __init__(self, message: str, *, urls: dict[str, str] | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.urls = urls


class BatchTooLarge(ProviderError):
    """The vendor refused the batch size; ``limit`` is the size to shrink to, if known."""

    code = "batch_too_large"

    def __init__(self, message: str, *, limit: int | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.limit = limit


class StackBusy(ProviderError):
    """The provider can run only one job at a time and one is in progress.

    Before a job starts it refuses the job; raised by ``submit_batch`` during a job it
    defers what is not sent yet (``--resume`` sends it once the stack is idle).
    """

    exit_code = ExitCode.USAGE
    code = "busy"
