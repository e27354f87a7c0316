"""The provider plugin API: what a CDN provider declares and implements.

A provider is a subclass of :class:`Provider` with declared facts (capabilities,
limits, credential env vars, config schema, extra submit options) and a few
small methods. The engine owns the workflow: batching, pacing, retries, the
journal and progress. This module imports only the standard library, so that
loading plugins to build the command line stays fast; a provider imports its
vendor SDK inside its methods.
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from prewarm_cli.errors import ConfigError, NotFoundError, UnsupportedError

if TYPE_CHECKING:
    import ssl

    import httpx

    from prewarm_cli.verify.classify import Classification

__all__ = [
    "CURL_UNTRUSTED",
    "BatchResult",
    "Capability",
    "ConfigField",
    "Failure",
    "Limits",
    "ProbeTarget",
    "Provider",
    "Quota",
    "Report",
    "State",
    "SubmitOption",
    "SubmitOptions",
    "TaskStatus",
    "UrlStatus",
    "cache_verdict",
    "cache_verdict_headers",
    "classify_cache",
    "curl_common_settings",
    "curl_connect_to",
    "describe_http_error",
    "host_port",
    "no_pin_for",
    "parse_resolve",
    "pinned_client",
    "state_dir",
    "tls_context",
    "url_to_ascii",
]


class Capability(StrEnum):
    SUBMIT = "submit"
    STATUS = "status"
    REPORT = "report"
    SCALE = "scale"
    CANCEL = "cancel"
    QUOTA = "quota"
    INVALIDATE = "invalidate"
    LOOKUP = "lookup"


class State(StrEnum):
    """Normalized job and task states; every vendor state maps to one."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"

    @property
    def finished(self) -> bool:
        return self not in (State.PENDING, State.RUNNING)


@dataclass(frozen=True)
class ConfigField:
    """One key a provider accepts in its ``[providers.<alias>]`` table."""

    name: str
    type: type = str
    help: str = ""
    required: bool = False
    default: Any = None
    secret: bool = False
    choices: tuple[Any, ...] | None = None
    item_type: builtins.type | None = None  # for list values

    def __post_init__(self) -> None:
        if self.type not in (str, int, float, bool, list):
            raise TypeError(f"config field {self.name!r}: unsupported type {self.type!r}")


@dataclass(frozen=True)
class SubmitOption:
    """An extra ``submit`` option a provider adds, e.g. ``--mode``."""

    name: str  # the option's long name without dashes, e.g. "media-segments"
    help: str
    type: type = str  # bool makes a flag
    choices: tuple[str, ...] | None = None
    default: Any = None
    multiple: bool = False  # repeatable: the value is a tuple of what was given

    @property
    def key(self) -> str:
        return self.name.replace("-", "_")


@dataclass(frozen=True)
class Limits:
    """How much a provider may be sent, and how fast."""

    max_batch: int  # URLs per request
    # True when the vendor reported max_batch at run time: --force cannot exceed it.
    vendor_reported: bool = False
    # True when max_batch stands in for what the vendor reports at run time (EdgeOne's
    # Batch): `config check` offline does not hold batch_size to it.
    batch_from_vendor: bool = False
    invalidate_batch: int | None = None  # URLs per purge request, when it differs
    max_batch_bytes: int | None = None  # request payload bytes, where the vendor bounds that
    requests_per_second: float | None = None
    urls_per_second: float | None = None
    requests_per_day: int | None = None
    concurrency: int = 4  # requests in flight at once
    poll_interval: float = 10.0  # seconds between status polls when waiting
    # Seconds a vendor may take to list an accepted request in find_submitted: the engine's
    # lookup that misses URLs of a request younger than this asks again once it has passed.
    lookup_settle: float = 0.0
    # The provider sends a batch's requests concurrently itself, up to `concurrency` at once
    # (direct warming: libcurl's multi interface); the engine then sends one batch at a time.
    parallel_in_batch: bool = False

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SubmitOptions:
    """What the user asked for, beyond the URLs."""

    headers: tuple[tuple[str, str], ...] = ()
    invalidate: bool = False
    force: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)
    job_id: str | None = None  # the job being sent (set by the engine; same on --resume)


@dataclass(frozen=True)
class BatchResult:
    """The vendor's answer to one submitted batch.

    Every URL of the batch is in exactly one of ``accepted``, ``rejected``
    (the vendor refused that URL, with its reason), ``resend`` (neither:
    the engine sends it again) or ``failed`` (it did not go through this time, with the
    reason: the engine sends those URLs again, alone, within its retry policy, waiting at
    least ``retry_after`` seconds; what still fails is recorded failed and a --resume sends
    it again). A provider that retries on its own says ``retry=False``.
    """

    task_id: str | None
    accepted: tuple[str, ...]
    rejected: Mapping[str, str] = field(default_factory=dict)
    resend: tuple[str, ...] = ()
    # Accepted URLs that belong to another task than task_id (e.g. already being
    # prefetched under an earlier one): url -> that task's id.
    task_ids: Mapping[str, str] = field(default_factory=dict)
    quota: Quota | None = None
    request_id: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    failed: Mapping[str, str] = field(default_factory=dict)
    retry_after: float | None = None
    retry: bool = True
    # task_id keeps the whole batch, its refused and failed URLs too (direct warming's run,
    # whose record status and report read): the task is recorded even when it accepted none.
    task_keeps_all: bool = False

    @classmethod
    def from_response(
        cls,
        task_id: str | None,
        urls: Sequence[str],
        rejected: Mapping[str, str] | None = None,
        **kw: Any,
    ) -> BatchResult:
        """All URLs accepted except those the vendor rejected."""
        rejected = dict(rejected or {})
        failed = kw.get("failed") or {}
        accepted = tuple(u for u in urls if u not in rejected and u not in failed)
        return cls(task_id=task_id, accepted=accepted, rejected=rejected, **kw)

    def task_of(self, url: str) -> str | None:
        return self.task_ids.get(url, self.task_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "accepted": len(self.accepted),
            "rejected": [{"url": u, "reason": r} for u, r in self.rejected.items()],
            "resend": len(self.resend),
            "failed": [{"url": u, "reason": r} for u, r in self.failed.items()],
            "request_id": self.request_id,
            "quota": self.quota.to_dict() if self.quota else None,
            "details": dict(self.details),
        }


@dataclass(frozen=True)
class UrlStatus:
    url: str
    state: State
    reason: str | None = None
    pop: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"url": self.url, "state": str(self.state), "reason": self.reason, "pop": self.pop}


@dataclass(frozen=True)
class TaskStatus:
    """One vendor task's state, with counts of URLs (never of bytes or sub-tasks)."""

    task_id: str
    state: State
    raw_state: str | None
    total: int
    succeeded: int = 0
    failed: int = 0
    in_progress: int = 0
    pending: int = 0
    urls: tuple[UrlStatus, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "state": str(self.state),
            "raw_state": self.raw_state,
            "total": self.total,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "in_progress": self.in_progress,
            "pending": self.pending,
            "details": dict(self.details),
        }


def config_errors(*checks: Callable[[], object]) -> list[ConfigError]:
    """The ConfigError each check raises, for ``Provider.config_problems``: each check runs,
    whether or not one before it failed."""
    found = []
    for check in checks:
        try:
            check()
        except ConfigError as exc:
            found.append(exc)
    return found


def first_details(statuses: Sequence[TaskStatus]) -> dict[str, Any]:
    """Each key of the tasks' details as the first task that has it gives it."""
    details: dict[str, Any] = {}
    for status in statuses:
        for key, value in status.details.items():
            details.setdefault(key, value)
    return details


@dataclass(frozen=True)
class Failure:
    url: str
    reason: str
    pop: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"url": self.url, "pop": self.pop, "reason": self.reason}


@dataclass(frozen=True)
class ProbeTarget:
    """One request `--verify` should repeat: a URL with one Accept-Encoding, through one IP."""

    url: str
    accept_encoding: str
    ip: str | None = None  # None: wherever the URL's host resolves
    label: str | None = None  # the PoP target's name in results
    user_agent: str | None = None  # the one the warm request sent (a -H User-Agent wins)


@dataclass(frozen=True)
class Report:
    failures: tuple[Failure, ...]
    report_url: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    # Tasks none of whose URLs counts as warmed, with why (a job stopped before the vendor
    # said which were): the engine lists each URL the job sent in them, as `status` counts
    # them failed, unless ``failures`` names it with a reason of its own.
    stopped_tasks: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "failures": [f.to_dict() for f in self.failures],
            "report_url": self.report_url,
            "details": dict(self.details),
            "stopped_tasks": dict(self.stopped_tasks),
        }


@dataclass(frozen=True)
class Quota:
    daily: int | None
    remaining: int | None
    resets_at: str | None = None
    batch: int | None = None
    source: str = "api"  # "api" (asked now) or "last_response" (remembered)
    details: Mapping[str, Any] = field(default_factory=dict)
    # URLs the vendor's daily purge quota still allows, where it has one and said so: a dry
    # run of --invalidate plans the rest deferred (shown in details, as the vendor gives it).
    invalidate_remaining: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "daily": self.daily,
            "remaining": self.remaining,
            "resets_at": self.resets_at,
            "batch": self.batch,
            "source": self.source,
            "details": dict(self.details),
        }


def state_dir() -> Path:
    """prewarm's state directory, for code that runs outside an engine-built provider.

    A provider uses ``self.state_dir``, which the engine hands over (attach_state_dir).
    """
    from prewarm_cli.paths import state_dir as _state_dir

    return _state_dir()


def private_file(path: Path) -> None:
    """A provider's state file (SQLite, JSON) exists with mode 0600 before it is opened, and
    an existing one, its SQLite -wal and -shm too, is made so: others may read nothing of it."""
    from prewarm_cli.paths import create_private

    create_private(path)


def write_private(path: Path, data: bytes) -> None:
    """A provider's small state file (JSON) written at once, mode 0600: a reader sees the old
    file or the new one, never half of it. OSError as the system gives it."""
    from prewarm_cli.paths import replace_private

    replace_private(path, data)


def url_to_ascii(url: str) -> str:
    """A URL in RFC 3986 form (IDNA host, non-ASCII percent-encoded), as prewarm validates it.

    For a vendor that wants URLs encoded by the client; an ASCII URL comes back unchanged.
    """
    from prewarm_cli.inputs import to_ascii

    return to_ascii(url)


# --- HTTP helpers shared with `verify` (imported on first use: this module stays light) ---


def parse_resolve(spec: str) -> tuple[str, int | None, str]:
    """curl's --resolve HOST[:PORT]:IP as (host, port or None, ip); UsageError when malformed."""
    from prewarm_cli.verify.pins import parse_resolve as _parse

    return tuple(_parse(spec))  # type: ignore[return-value]


def host_port(url: str) -> tuple[str, int]:
    """The host (lower case) and port a URL connects to, as --resolve pins name them."""
    from prewarm_cli.verify.pins import host_port as _host_port

    return _host_port(url)


def no_pin_for(
    host: str, port: int, pins: Sequence[tuple[str, tuple[str, int | None, str]]]
) -> str | None:
    """What to say of a host and port no --resolve pin applies to, or None; ``pins`` are
    (the option's text, parse_resolve of it)."""
    from prewarm_cli.verify.pins import no_pin_for as _no_pin_for

    return _no_pin_for(host, port, pins)


def pinned_client(
    pins: Sequence[tuple[str, int | None, str]] = (),
    *,
    timeout: float,
    max_connections: int,
    ca_bundle: str | None = None,
    user_agent: str | None = None,
) -> httpx.Client:
    """verify's httpx client: connects as ``pins`` say (curl's --resolve, Host and SNI kept),
    never follows redirects, TLS always verified. Send Accept-Encoding explicitly per request
    and read bodies with ``iter_raw()``; the caller closes the client."""
    from prewarm_cli.verify.pins import Pin
    from prewarm_cli.verify.probe import pinned_client as _client

    kw: dict[str, Any] = {"user_agent": user_agent} if user_agent else {}
    return _client(
        [Pin(*p) for p in pins],
        timeout=timeout,
        ca_bundle=ca_bundle,
        max_connections=max_connections,
        **kw,
    )


def classify_cache(headers: Mapping[str, str], status_code: int | None) -> Classification:
    """verify's reading of a response's cache headers: hit, miss, revalidated, bypass, unknown."""
    from prewarm_cli.verify.classify import classify

    return classify(headers, status_code)


def cache_verdict(headers: Mapping[str, str]) -> tuple[str, str | None]:
    """classify_cache's (cache, pop) for headers with lower-case names, remembered for the
    values of the headers that decide: for a provider that reads every response (direct)."""
    from prewarm_cli.verify.classify import cache_verdict as _verdict

    return _verdict(headers)


def cache_verdict_headers() -> tuple[str, ...]:
    """The header names (lower case) cache_verdict reads: all a provider that reads every
    response needs to pick out of it."""
    from prewarm_cli.verify.classify import VERDICT_HEADERS

    return VERDICT_HEADERS


# libcurl's error codes for a certificate this machine does not trust (or a CA bundle it
# cannot use): the same answer every time, until the CA bundle changes.
CURL_UNTRUSTED = frozenset({58, 60, 77, 83, 90, 91})


def curl_connect_to(host: str, port: int | None, ip: str) -> str:
    """curl's --connect-to entry that pins requests to ``host`` (and ``port``; None: any) to
    ``ip``, Host and SNI kept, as verify's ``--resolve`` pins are sent."""
    from prewarm_cli.verify.curl import connect_to

    return connect_to(host, port, ip)


def tls_context(ca_bundle: str | None = None) -> ssl.SSLContext:
    """The TLS verification of a provider's httpx client (``verify=``): ``ca_bundle``, which
    replaces the trust store, or else the trust store (SSL_CERT_FILE, SSL_CERT_DIR or
    certifi's). One that cannot be read is a ConfigError naming it and the fix, where httpx
    would raise FileNotFoundError from the first request."""
    from prewarm_cli.verify.probe import ssl_context

    return ssl_context(ca_bundle)


def curl_common_settings(handle: Any, ca_bundle: str | None) -> None:
    """Sets a libcurl (pycurl) handle as verify's probes are: redirects not followed, no
    signals, TLS verified against ``ca_bundle`` (which replaces the trust store) or else
    SSL_CERT_FILE, SSL_CERT_DIR or certifi's."""
    from prewarm_cli.verify.curl import common_settings

    common_settings(handle, ca_bundle)


def curl_lookup_unfinished(handle: Any, errno: int | None = None) -> bool:
    """Whether the request of a libcurl (pycurl) handle, ended with libcurl's ``errno`` (None:
    taken out of its multi handle before its answer), had its host's name still unresolved:
    that lookup may still run in libcurl's resolver, and the multi handle is closed with
    ``lookup_left``."""
    from prewarm_cli.verify.curl import lookup_unfinished

    return lookup_unfinished(handle, errno)


def curl_close_multi(multi: Any, *, lookup_left: bool) -> None:
    """Closes a libcurl multi handle whose easy handles are taken out, without waiting for a
    name lookup that hangs (5 to 10 s, after a Ctrl-C too): with ``lookup_left``, the handle
    is left to the process's end instead, as verify's are."""
    from prewarm_cli.verify.curl import close_multi

    close_multi(multi, lookup_left=lookup_left)


def describe_http_error(exc: BaseException, timeout: float) -> str:
    """verify's one-line description of a failed request (which phase timed out, ...)."""
    from prewarm_cli.verify.probe import describe_error

    return describe_error(exc, timeout)


# The method each capability needs a subclass to implement.
_CAPABILITY_METHODS: dict[Capability, str] = {
    Capability.SUBMIT: "submit_batch",
    Capability.STATUS: "fetch_status",
    Capability.SCALE: "scale",
    Capability.CANCEL: "cancel",
    Capability.QUOTA: "quota",
    Capability.INVALIDATE: "invalidate_batch",
    Capability.LOOKUP: "find_submitted",
}

# Keys every provider accepts; the core handles them (DESIGN.md §3).
CORE_FIELDS: tuple[ConfigField, ...] = (
    ConfigField("type", str, "provider type (the plugin's name)"),
    ConfigField("batch_size", int, "URLs per request; lower than the vendor's limit"),
    ConfigField("rate", float, "requests per second; lower than the vendor's limit"),
    ConfigField("concurrency", int, "requests in flight at once"),
    ConfigField("timeout", float, "HTTP timeout in seconds", default=30.0),
    ConfigField("poll_interval", float, "seconds between status polls when waiting"),
    ConfigField("ca_bundle", str, "path of a CA bundle for TLS verification"),
)


STATUS_TASKS = 100  # tasks status and the default report ask fetch_status about at once


class Provider:
    """Base class of CDN provider plugins; one instance is one configured alias."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    capabilities: ClassVar[frozenset[Capability]]
    default_limits: ClassVar[Limits]
    credential_env: ClassVar[Mapping[str, str]] = {}  # config key -> env var read when absent
    config_schema: ClassVar[tuple[ConfigField, ...]] = ()
    submit_options: ClassVar[tuple[SubmitOption, ...]] = ()
    # These two may also be set per instance (in __init__) when they depend on config.
    # The vendor runs one job at a time per endpoint (a second submit is refused unless --force).
    one_job_at_a_time: ClassVar[bool] = False
    # The vendor purges as part of the prefetch request itself (options.invalidate tells it):
    # --invalidate then needs no separate purge step.
    invalidates_in_submit: ClassVar[bool] = False
    # The vendor's request has a place for -H request headers. A provider whose API has none
    # says False: the engine warns at submit and notes it in --dry-run (`unhonoured_options`).
    sends_headers: ClassVar[bool] = True
    # What the provider accepted is done when submit_batch returns (direct warming: a URL is
    # accepted once warmed): the job's state is final when submit ends, as `jobs` shows it.
    finished_in_submit: ClassVar[bool] = False
    # How many tasks `status` asks fetch_status about at once: their per-URL results are
    # counted and let go before the next are asked, so that a job's million are never all
    # held. None: all of a job's tasks in one call, where a task's state depends on the
    # others' (direct warming counts each request in the latest run that answered it).
    status_tasks: ClassVar[int | None] = STATUS_TASKS
    # --verify's probes of its probe_targets go where its warm requests went (direct warming:
    # the edges), and keep the same limits: limits().concurrency, and the rate its pacer keeps
    # (shared with other processes). False: they are verify's own requests, to the CDN, not
    # to the vendor's API, and are not charged to its rate or its daily budget.
    probes_keep_limits: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        problems = _check_provider_class(cls)
        if problems:
            raise TypeError(f"provider class {cls.__qualname__}: " + "; ".join(problems))

    def __init__(self, alias: str, settings: Mapping[str, Any]) -> None:
        self.alias = alias
        self.settings = dict(settings)
        self._pace: Callable[..., None] | None = None
        self._pace_waits = True
        self._warn: Callable[[str], None] | None = None
        self._info: Callable[[str], None] | None = None
        self._state_dir: Path | None = None
        self._sending_job_id: str | None = None
        self._paid = threading.local()  # the engine paid for this call's first request

    @property
    def state_dir(self) -> Path:
        """A directory where the provider may keep small files (e.g. the last quota it was told).

        The engine hands it over (attach_state_dir); a provider built by hand (a test, a
        script) gets prewarm's own state directory.
        """
        if self._state_dir is None:
            self._state_dir = state_dir()
        return self._state_dir

    def attach_state_dir(self, path: Path) -> None:
        """The engine hands over the state directory, as it does the pacer."""
        self._state_dir = path

    @property
    def sending_job_id(self) -> str | None:
        """The job the engine is sending (a submit or its --resume), whose batches a lookup
        (find_submitted) is about: ``SubmitOptions.job_id`` of the calls that send it. None
        outside such a run (status, a test, a script)."""
        return self._sending_job_id

    def attach_job(self, job_id: str | None) -> None:
        """The engine names the job it starts sending, and None once it is done."""
        self._sending_job_id = job_id

    def attach_pacer(self, pace: Callable[..., None], *, waits: bool = True) -> None:
        """The engine hands over its rate limiter (shared across processes and runs);
        ``waits`` is False when it keeps no limit (``pace()`` then only checks the stop)."""
        self._pace = pace
        self._pace_waits = waits

    @property
    def pace_waits(self) -> bool:
        """Whether ``pace()`` may wait: a provider holding results in memory between requests
        records them before it paces."""
        return self._pace is not None and self._pace_waits

    def attach_warn(self, warn: Callable[[str], None]) -> None:
        """The engine hands over its warning channel (stderr, quiet with -q)."""
        self._warn = warn

    def attach_info(self, info: Callable[[str], None]) -> None:
        """The engine hands over its message channel (stderr, quiet with -q)."""
        self._info = info

    def info(self, message: str) -> None:
        """A one-line message for the user (not a warning), prefixed with the alias."""
        text = f"{self.alias}: {message}"
        if self._info is not None:
            self._info(text)
        else:
            import sys

            print(text, file=sys.stderr)

    def warn(self, message: str) -> None:
        """A one-line warning for the user, prefixed with the alias."""
        text = f"{self.alias}: {message}"
        if self._warn is not None:
            self._warn(text)
        else:
            import sys

            print(f"warning: {text}", file=sys.stderr)

    def pace(self, urls: int = 0, *, meanwhile: Callable[[float], None] | None = None) -> None:
        """Waits for the rate limits: call it before every request the provider sends.

        The engine waits before each call it makes, so the first pace() inside such a
        call returns at once; every further request of that call (the next page, a
        follow-up lookup) waits its turn. Outside engine calls it paces every request.
        ``meanwhile`` is called instead of sleeping while the wait lasts, with the seconds
        it may take at most: a provider with requests in flight keeps them going (direct
        warming's transfers), so that each leaves when its own turn came.
        """
        if getattr(self._paid, "value", False):
            self._paid.value = False
            return
        if self._pace is not None:
            if meanwhile is None:
                self._pace(urls)
            else:
                self._pace(urls, meanwhile)

    @contextmanager
    def engine_call(self) -> Iterator[None]:
        """The engine has paced the first request of what runs inside."""
        self._paid.value = True
        try:
            yield
        finally:
            self._paid.value = False

    # --- declared facts, per configured instance ---

    def limits(self) -> Limits:
        """The limits for this alias; may read config or ask the vendor."""
        return self.default_limits

    def active_capabilities(self) -> frozenset[Capability]:
        """Capabilities of this alias; may depend on config."""
        return self.capabilities

    def rate_key(self) -> str:
        """Identifies the vendor credential: aliases with the same key share rate limits."""
        parts = [self.name, str(self.settings.get("endpoint", ""))]
        for fld in self.config_schema:
            if fld.secret and fld.name in self.credential_env:
                parts.append(str(self.settings.get(fld.name, "")))
        import hashlib  # OpenSSL's loading is 3 ms of start-up that most commands do not need

        return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]

    def require(self, capability: Capability) -> None:
        if capability not in self.active_capabilities():
            raise UnsupportedError(
                f"{self.alias} ({self.name}) does not support {capability}",
                provider=self.alias,
            )

    # --- the work; the engine calls these ---

    def submit_batch(self, urls: Sequence[str], options: SubmitOptions) -> BatchResult:
        raise UnsupportedError(f"{self.name} does not support submit", provider=self.alias)

    def fetch_status(self, task_ids: Sequence[str]) -> list[TaskStatus]:
        raise UnsupportedError(f"{self.name} does not support status", provider=self.alias)

    def started_task(self) -> str | None:
        """The task every batch of this run will belong to, where it is known before any is
        sent (direct warming: the run); None by default. Asked once a run's sending begins:
        the job names the task with its first batch, so that `status` asks about a run
        stopped (Ctrl-C, kill -9) before any batch of it was answered."""
        return None

    def fetch_counts(self, task_ids: Sequence[str]) -> list[TaskStatus]:
        """fetch_status without per-URL results, asked instead of it within a journal job by
        a provider ``finished_in_submit``: a URL the journal accepted into one of its tasks is
        done there, so `status` counts each task's URLs from the journal and never needs them.
        By default fetch_status's, let go; a provider that can count its tasks without holding
        their URLs (direct warming) does so here, so that a million are never all held."""
        return [replace(status, urls=()) for status in self.fetch_status(task_ids)]

    @classmethod
    def config_problems(cls, alias: str, settings: Mapping[str, Any]) -> list[ConfigError]:
        """Every rule of the alias's table that ``settings`` break, beyond what the schema
        says (types, required keys, choices): an endpoint that is not a base URL, a key another
        key's value requires. Each message starts with the key path (``providers.ALIAS.KEY:``).
        `config check` lists them all; any command stops at the first, before the provider is
        made. Nothing is sent. The default finds none."""
        return []

    def job_settings(self, options: SubmitOptions) -> Mapping[str, Any]:
        """What this alias's settings make of a job's work beyond its options, as JSON values
        (direct warming: its PoP targets, variants and User-Agent). A job remembers them when
        it starts, and a `submit --resume` whose config makes them otherwise is refused,
        naming each. Empty by default: a vendor's rate or batch size change how the rest is
        sent, not what is warmed."""
        return {}

    def job_details(self, statuses: Sequence[TaskStatus]) -> dict[str, Any]:
        """The ``details`` of this provider's part of a job, from its tasks' (status's
        ``providers.ALIAS.details``). By default each key as the first task that has it gives
        it: a vendor's quota or zone is the same in every task. A provider whose tasks count
        their own work adds them up here."""
        return first_details(statuses)

    def report(self, task_ids: Sequence[str]) -> Report:
        """Failed URLs; by default read from the per-URL results of fetch_status, asked for
        ``status_tasks`` tasks at a time, as `status` asks: only their failures are kept, so
        that a job's million results are never all held at once. A task not found is said as
        fetch_status says it of all of them (a vendor may name every task it no longer keeps)."""
        step = self.status_tasks or max(1, len(task_ids))
        try:
            failures = [
                Failure(url=u.url, reason=u.reason or str(u.state), pop=u.pop)
                for start in range(0, len(task_ids), step)
                for status in self.fetch_status(task_ids[start : start + step])
                for u in status.urls
                if u.state in (State.FAILED, State.TIMED_OUT, State.CANCELLED)
            ]
        except NotFoundError:
            if len(task_ids) > step:
                self.fetch_status(task_ids)  # its error names them all, as `status` does
            raise
        return Report(failures=tuple(failures))

    # How many requests one URL costs, for `submit --dry-run`, where that is not one per batch
    # (direct: PoP targets times variants); None: one request per batch.
    requests_per_url: Callable[[str, SubmitOptions], int] | None = None

    def submit_details(self) -> Mapping[str, Any]:
        """What this run did beyond the outcomes, for the submit summary (direct: requests,
        bytes, per PoP); empty by default."""
        return {}

    def progress_note(self) -> str | None:
        """A short figure for the progress bar beside the URL count (direct: requests and
        bytes so far); None by default. Called a few times a second while a run sends, from
        another thread than the one sending: keep it cheap and thread-safe."""
        return None

    def probe_targets(self, task_ids: Sequence[str]) -> Iterable[ProbeTarget] | None:
        """What `--verify` probes for these tasks, where a provider warmed specific edges and
        variants (direct); None: each URL once, as `verify` does by default.

        Each target once, and those of one edge (IP and label), Accept-Encoding and
        User-Agent side by side. It is read twice, to count and then to probe, one target at
        a time: a provider that may name a million returns an iterable that reads them again
        each time (a list will do for a few)."""
        return None

    def find_submitted(self, urls: Sequence[str], since: datetime) -> dict[str, str]:
        """Which of these URLs the vendor holds a task for since ``since``: {url: task_id}."""
        raise UnsupportedError(f"{self.name} cannot look up submitted URLs", provider=self.alias)

    def quota(self) -> Quota:
        raise UnsupportedError(f"{self.name} does not support quota", provider=self.alias)

    def scale(self, count: int | None) -> dict[str, Any]:
        raise UnsupportedError(f"{self.name} does not support scale", provider=self.alias)

    def cancel(self, task_ids: Sequence[str]) -> dict[str, Any]:
        raise UnsupportedError(f"{self.name} does not support cancel", provider=self.alias)

    def invalidate_batch(self, urls: Sequence[str], options: SubmitOptions) -> BatchResult:
        raise UnsupportedError(f"{self.name} does not support invalidate", provider=self.alias)

    def fetch_invalidation_status(self, task_ids: Sequence[str]) -> list[TaskStatus]:
        """States of purge tasks made by invalidate_batch; by default read like prefetch tasks."""
        return self.fetch_status(task_ids)

    def busy(self) -> str | None:
        """For one-job-at-a-time vendors: what is in progress at the vendor, or None."""
        return None

    def prepare(self) -> None:
        """Called once before the first paced request: import the SDK, build clients.

        Work done here is not counted against the rate limits, so a slow first
        request cannot land in the next rate window.
        """

    def plan_notes(self, options: SubmitOptions) -> list[str]:
        """What `submit --dry-run` should tell the user about this provider (e.g. side effects)."""
        return []

    def first_job(self, urls: Sequence[str]) -> tuple[int, Mapping[str, str]]:
        """For `submit --dry-run` of a provider that runs one job at a time: of a first batch's
        URLs, how many its job would take, and those it would refuse (URL -> why), without
        sending anything (read-only lookups only). By default, all of them."""
        return len(urls), {}

    def check_options(self, options: SubmitOptions) -> None:
        """Refuses submit options it cannot use, before a job is made or a plan shown:
        UsageError for a command-line option, ConfigError for a setting. Sends nothing."""

    def check(self) -> list[str]:
        """Extra checks for ``config check`` (may make one cheap request); returns notes."""
        return []

    @classmethod
    def forget_jobs(cls, state_dir: Path, job_ids: Sequence[str]) -> None:
        """The journal is about to drop these jobs (``jobs --prune``): delete what the type
        keeps of them in ``state_dir`` (direct warming's record), whatever the config says
        (the jobs' aliases may have left it). Raise a PrewarmError to stop the prune. Nothing
        by default."""

    def run_notes(self) -> list[str]:
        """Lines for the user on what this instance sent, said (prefixed with the alias) once
        a submit's sending ends, before the job's outcome and next step; none by default.
        Direct warming gives one per PoP target."""
        return []

    def detail_lines(self, details: Mapping[str, Any]) -> list[str]:
        """Lines for the user on a status's ``details`` (what ``fetch_status`` or
        ``job_details`` gave), shown under the status table; none by default. Direct
        warming gives one per PoP target, as its submit's ``run_notes``."""
        return []

    def close(self) -> None:
        """Release connections."""


def unhonoured_options(provider: Provider, options: SubmitOptions) -> list[str]:
    """What of ``options`` the provider cannot do: one rule for the submit warning and the
    --dry-run note, so that an option is never dropped silently."""
    if options.headers and not provider.sends_headers:
        names = ", ".join(name for name, _ in options.headers)  # names only: values may be secret
        return [f"{provider.name} cannot send request headers: -H {names} is not sent"]
    return []


def _check_provider_class(cls: type[Provider]) -> list[str]:
    problems: list[str] = []
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name.replace("_", "").replace("-", "").isalnum():
        problems.append("`name` must be a short identifier such as 'qiniu'")
    caps = getattr(cls, "capabilities", None)
    if not isinstance(caps, frozenset) or not all(isinstance(c, Capability) for c in caps):
        problems.append("`capabilities` must be a frozenset of Capability")
        caps = frozenset()
    if not isinstance(getattr(cls, "default_limits", None), Limits):
        problems.append("`default_limits` must be a Limits")
    for cap in caps:
        method = _CAPABILITY_METHODS.get(cap)
        if method and getattr(cls, method) is getattr(Provider, method):
            problems.append(f"declares {cap} but does not implement {method}()")
    core_names = {f.name for f in CORE_FIELDS}
    names = [f.name for f in cls.config_schema]
    if not all(isinstance(f, ConfigField) for f in cls.config_schema):
        problems.append("`config_schema` must hold ConfigField items")
    if len(set(names)) != len(names):
        problems.append("`config_schema` names a key twice")
    if clash := core_names & set(names):
        problems.append(f"`config_schema` redefines core keys {sorted(clash)}")
    for key in cls.credential_env:
        if key not in names:
            problems.append(f"`credential_env` names {key!r}, which is not in config_schema")
    return problems
