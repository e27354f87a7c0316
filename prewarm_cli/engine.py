"""The workflow: from input URLs to paced vendor requests, and from vendor tasks to job states.

The engine talks to providers only through the plugin API. It owns batching,
pacing, retries, concurrency, multi-provider fan-out, the journal and resume
(DESIGN.md §4 and §8).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from prewarm_cli import config as config_mod
from prewarm_cli import journal as jr
from prewarm_cli.errors import (
    AuthError,
    BatchTooLarge,
    ConfigError,
    ExitCode,
    InputError,
    InvalidRequest,
    PrewarmError,
    ProviderError,
    QuotaExhausted,
    RateLimited,
    RetryableError,
    StackBusy,
    UnknownOutcome,
    UsageError,
    WaitTimeout,
    worst_exit,
)
from prewarm_cli.output import Output, Progress
from prewarm_cli.pacing import Pacer, RetryPolicy, call_with_retries
from prewarm_cli.plugin import (
    BatchResult,
    Capability,
    Limits,
    Provider,
    State,
    SubmitOptions,
    TaskStatus,
)

T = TypeVar("T")

MAX_LISTED_INVALID = 1000  # invalid input lines listed in full before "... and N more"
PURGE_WAIT_SECONDS = 600.0  # how long --invalidate waits for purges before prefetching


# --------------------------------------------------------------------------- workspace


class Workspace:
    """What one command works with: config, journal, output and the providers it uses."""

    def __init__(self, config: config_mod.Config, output: Output, *, force: bool = False) -> None:
        self.config = config
        self.out = output
        self.force = force
        self._journal: jr.Journal | None = None
        self._runners: dict[str, Runner] = {}
        self.policy = RetryPolicy(
            attempts=int(config.defaults.get("retries") or 5),
            timeout=float(config.defaults.get("retry_timeout") or 120.0),
        )

    @property
    def state_dir(self) -> Path:
        return config_mod.state_dir()

    @property
    def journal(self) -> jr.Journal:
        if self._journal is None:
            self._journal = jr.Journal.in_state_dir(self.state_dir)
        return self._journal

    def alias(self, name: str) -> str:
        return self.config.resolve_alias(name)

    def runner(self, alias: str) -> Runner:
        """The configured provider behind an alias (resolving only its own secrets)."""
        if alias not in self._runners:
            from prewarm_cli import registry

            cls = registry.load(self.config.provider_type(alias))
            settings = self.config.resolve(alias, cls)
            provider = cls(alias, settings.values)
            provider.attach_warn(self.out.warn)
            self._runners[alias] = Runner(
                provider, settings.values, self.policy, self.state_dir, self.force
            )
        return self._runners[alias]

    def selected(self, names: Sequence[str]) -> list[str]:
        """Aliases named with -p, or the default provider."""
        if names:
            aliases = list(dict.fromkeys(self.alias(n) for n in names))
        else:
            default = self.config.default_provider()
            if default is None:
                raise UsageError(
                    "no provider selected and no default configured",
                    hint="pass -p NAME, or set defaults.provider (prewarm config init)",
                )
            aliases = [default]
        for alias in aliases:
            self.runner(alias)
        return aliases

    def close(self) -> None:
        for runner in self._runners.values():
            runner.close()
        if self._journal is not None:
            self._journal.close()


class Runner:
    """One provider alias at work: its effective limits, pacing and retries."""

    def __init__(
        self,
        provider: Provider,
        settings: Mapping[str, Any],
        policy: RetryPolicy,
        state_dir: Path | None,
        force: bool,
    ) -> None:
        self.provider = provider
        self.alias = provider.alias
        self.settings = settings
        self.policy = policy
        self.force = force
        self._state_dir = state_dir
        self._limits: Limits | None = None
        self._pacer: Pacer | None = None
        self.batch_size_cap: int | None = None  # lowered when the vendor refuses a size

    @property
    def capabilities(self) -> frozenset[Capability]:
        return self.provider.active_capabilities()

    def require(self, capability: Capability) -> None:
        self.provider.require(capability)

    def limits(self) -> Limits:
        """The vendor's limits with the config's overrides (raising one needs --force)."""
        if self._limits is None:
            vendor = self.provider.limits()
            limits = vendor
            wanted_batch = self.settings.get("batch_size")
            if wanted_batch is not None:
                if wanted_batch > vendor.max_batch and (vendor.vendor_reported or not self.force):
                    raise ConfigError(
                        f"providers.{self.alias}.batch_size = {wanted_batch} is above the vendor"
                        f" limit of {vendor.max_batch} URLs per request",
                        hint="lower it"
                        + (
                            ""
                            if vendor.vendor_reported
                            else ", or pass --force if the vendor raised your limit"
                        ),
                    )
                limits = replace(limits, max_batch=int(wanted_batch))
            wanted_rate = self.settings.get("rate")
            if wanted_rate is not None:
                vendor_rate = vendor.requests_per_second
                if vendor_rate is not None and wanted_rate > vendor_rate and not self.force:
                    raise ConfigError(
                        f"providers.{self.alias}.rate = {wanted_rate} is above the vendor"
                        f" limit of {vendor_rate} requests/s",
                        hint="lower it, or pass --force if the vendor raised your limit",
                    )
                limits = replace(limits, requests_per_second=float(wanted_rate))
            if self.settings.get("concurrency"):
                limits = replace(limits, concurrency=int(self.settings["concurrency"]))
            if self.settings.get("poll_interval"):
                limits = replace(limits, poll_interval=float(self.settings["poll_interval"]))
            self._limits = limits
        return self._limits

    @property
    def batch_size(self) -> int:
        size = self.limits().max_batch
        return min(size, self.batch_size_cap) if self.batch_size_cap else size

    @property
    def pacer(self) -> Pacer:
        if self._pacer is None:
            self.provider.prepare()
            store = self._state_dir / "ratelimits.sqlite3" if self._state_dir else None
            self._pacer = Pacer(self.limits(), self.provider.rate_key(), store)
            self.provider.attach_pacer(self._pacer.acquire)
        return self._pacer

    def call(self, fn: Callable[..., T], *args: Any, urls: int = 0) -> T:
        """One vendor call, paced and retried while the vendor clearly did not accept it."""

        def attempt() -> T:
            with self.provider.engine_call():
                return fn(*args)

        try:
            return call_with_retries(self.policy, attempt, lambda: self.pacer.acquire(urls))
        except PrewarmError as exc:
            if exc.provider is None:
                exc.provider = self.alias
            raise

    def close(self) -> None:
        if self._pacer is not None:
            self._pacer.close()
        self.provider.close()


# --------------------------------------------------------------------------- intake


@dataclass(frozen=True)
class SubmitRequest:
    urls: Sequence[str] = ()
    files: Sequence[str] = ()
    sitemaps: Sequence[str] = ()
    providers: Sequence[str] = ()
    options: SubmitOptions = field(default_factory=SubmitOptions)
    skip_invalid: bool = False


class Router:
    """Which aliases warm a URL: -p, else [[routes]], else defaults.provider."""

    def __init__(self, ws: Workspace, selected: Sequence[str]) -> None:
        self.ws = ws
        self.selected = [ws.alias(n) for n in selected]
        self.routes = [
            (route, [ws.alias(p) for p in route.providers]) for route in ws.config.routes
        ]
        self.default = ws.config.default_provider() if not selected else None
        self._by_host: dict[str, list[str] | None] = {}
        if not (self.selected or self.routes or self.default):
            raise UsageError(
                "no provider selected and none configured as the default",
                hint="pass -p NAME, or set one up with `prewarm config init`"
                " (`prewarm providers` lists the types)",
            )

    def __call__(self, url: str) -> list[str] | None:
        if self.selected:
            return self.selected
        from prewarm_cli.urls import host_of

        host = host_of(url)
        if host not in self._by_host:
            chosen: list[str] | None = None
            for route, aliases in self.routes:
                if route.matches(host):
                    chosen = aliases
                    break
            if chosen is None and self.default:
                chosen = [self.default]
            self._by_host[host] = chosen
        return self._by_host[host]


def intake(ws: Workspace, journal: jr.Journal, req: SubmitRequest) -> str:
    """Reads, validates, routes and de-duplicates the input into a new job; sends nothing."""
    from prewarm_cli.urls import InvalidInput, check_inputs, host_of, iter_inputs

    router = Router(ws, req.providers)
    options = {
        "headers": [list(h) for h in req.options.headers],
        "invalidate": req.options.invalidate,
        "extra": dict(req.options.extra),
    }
    job_id = journal.create_job(router.selected, options)
    invalid: list[InvalidInput] = []
    skipped: list[dict[str, Any]] = []
    n_invalid = 0

    def items() -> Iterator[tuple[int, str, Sequence[str]]]:
        nonlocal n_invalid
        for seq, item in enumerate(check_inputs(iter_inputs(req.urls, req.files, req.sitemaps))):
            if not isinstance(item, InvalidInput):
                aliases = router(item.url)
                if aliases:
                    yield seq, item.url, aliases
                    continue
                item = InvalidInput(
                    item.url,
                    item.source,
                    item.line,
                    f"no provider covers host {host_of(item.url)!r}"
                    " (add a [[routes]] entry, set defaults.provider or pass -p)",
                )
            if req.skip_invalid:
                skipped.append(item.to_dict())
            else:
                n_invalid += 1
                if len(invalid) < MAX_LISTED_INVALID:
                    invalid.append(item)

    try:
        journal.add_targets(job_id, items())
    except BaseException:
        journal.delete_job(job_id)
        raise
    if n_invalid:
        journal.delete_job(job_id)
        lines = [str(i) for i in invalid]
        if n_invalid > len(invalid):
            lines.append(f"... and {n_invalid - len(invalid)} more")
        raise InputError(
            f"{n_invalid} invalid input line(s); nothing was sent:\n  " + "\n  ".join(lines),
            hint="fix them, or pass --skip-invalid to send the rest",
        )
    journal.finish_intake(job_id, skipped)
    counts = journal.counts(job_id)
    if not counts:
        journal.delete_job(job_id)
        raise InputError(
            "no URLs to send" + (f" ({len(skipped)} skipped as invalid)" if skipped else ""),
            hint="pass URLs as arguments, with -i FILE (or - for stdin), or --sitemap",
        )
    journal.set_providers(job_id, sorted(counts))
    return job_id


# --------------------------------------------------------------------------- plan


def plan(ws: Workspace, req: SubmitRequest) -> dict[str, Any]:
    """What a submit would send, without sending anything (quota lookups are read-only)."""
    import tempfile

    # A scratch journal on disk, not in memory: a million-URL plan stays small in RAM.
    scratch = tempfile.TemporaryDirectory(prefix="prewarm-plan-")
    journal = jr.Journal(Path(scratch.name) / "plan.sqlite3")
    try:
        job_id = intake(ws, journal, req)
        job = journal.job(job_id)
        counts = journal.counts(job_id)
        providers: dict[str, Any] = {}
        for alias, c in counts.items():
            runner = ws.runner(alias)
            runner.require(Capability.SUBMIT)
            providers[alias] = _plan_provider(ws, runner, c.total, req.options)
        return {
            "dry_run": True,
            "urls": job.urls,
            "total": sum(c.total for c in counts.values()),
            "skipped": list(job.skipped),
            "providers": providers,
        }
    finally:
        journal.close()
        scratch.cleanup()


def _plan_provider(ws: Workspace, runner: Runner, n: int, options: SubmitOptions) -> dict[str, Any]:
    limits = runner.limits()
    batches = math.ceil(n / runner.batch_size)
    requests = batches
    in_submit = options.invalidate and runner.provider.invalidates_in_submit
    purge_first = (
        options.invalidate and not in_submit and Capability.INVALIDATE in runner.capabilities
    )
    invalidate = in_submit or purge_first
    if purge_first:
        requests *= 2
    seconds = 0.0
    if limits.requests_per_second:
        seconds = max(seconds, requests / limits.requests_per_second)
    if limits.urls_per_second:
        seconds = max(seconds, n * (2 if purge_first else 1) / limits.urls_per_second)
    quota: dict[str, Any] | None = None
    would_defer = 0
    notes: list[str] = []
    if Capability.QUOTA in runner.capabilities:
        try:
            q = runner.call(runner.provider.quota)
            quota = q.to_dict()
            if q.remaining is not None and q.remaining < n:
                would_defer = n - q.remaining
        except PrewarmError as exc:
            notes.append(f"quota unknown: {exc}")
    if limits.requests_per_day and requests > limits.requests_per_day:
        notes.append(
            f"{requests} requests exceed the daily budget of {limits.requests_per_day}:"
            " the rest would be deferred"
        )
    if options.invalidate and not invalidate:
        notes.append(f"{runner.provider.name} cannot invalidate: URLs would be prefetched only")
    if in_submit:
        notes.append("the vendor purges each URL within its prefetch request")
    notes.extend(runner.provider.plan_notes(options))
    return {
        "provider": runner.alias,
        "type": runner.provider.name,
        "urls": n,
        "batch_size": runner.batch_size,
        "batches": batches,
        "requests": requests,
        "invalidate": invalidate,
        "estimated_seconds": round(seconds, 1),
        "quota": quota,
        "would_defer": would_defer,
        "notes": notes,
    }


# --------------------------------------------------------------------------- submit


class _Halt(Exception):
    """Stops one provider's workers (quota, auth); the error is kept for the summary."""


class SubmitRun:
    """Sends one job's unsent targets for every provider, concurrently and paced."""

    def __init__(
        self, ws: Workspace, job_id: str, options: SubmitOptions, progress: Progress
    ) -> None:
        self.ws = ws
        self.journal = ws.journal
        self.job_id = job_id
        self.options = options
        self.progress = progress
        self.stop = threading.Event()
        self.errors: dict[str, PrewarmError] = {}
        self.fatal: PrewarmError | None = None
        self._halted: set[str] = set()
        self._lock = threading.Lock()

    def run(self, aliases: Sequence[str]) -> None:
        runners = [self.ws.runner(a) for a in aliases]
        for runner in runners:
            runner.require(Capability.SUBMIT)
        workers: list[tuple[Runner, int]] = []
        for runner in runners:
            self._resolve_unknown_batches(runner)
            self._check_quota(runner)
            workers.extend((runner, i) for i in range(runner.limits().concurrency))
        pool = ThreadPoolExecutor(max_workers=max(1, len(workers)), thread_name_prefix="submit")
        futures = [pool.submit(self._worker, runner) for runner, _ in workers]
        try:
            for fut in futures:
                while True:
                    try:
                        fut.result(timeout=0.2)  # short waits keep Ctrl-C responsive
                        break
                    except TimeoutError:
                        continue
        except BaseException:
            self.stop.set()  # workers finish the request in flight, record it, and stop
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
        if self.fatal is not None:
            raise self.fatal

    # -- one worker thread --

    def _worker(self, runner: Runner) -> None:
        while not self.stop.is_set() and runner.alias not in self._halted:
            batch = self.journal.claim_batch(
                self.job_id, runner.alias, runner.batch_size, runner.limits().max_batch_bytes
            )
            if batch is None:
                return
            try:
                self._send(runner, batch, list(batch.urls))
            except _Halt:
                return
            except BaseException as exc:
                # A bug or an unexpected error after the request may have left: unknown.
                self.journal.release_batch(self.job_id, batch, jr.UNKNOWN, f"internal error: {exc}")
                self._halt_all(
                    exc
                    if isinstance(exc, PrewarmError)
                    else PrewarmError(f"{runner.alias}: unexpected error: {exc!r}")
                )
                raise

    def _send(self, runner: Runner, batch: jr.Batch, urls: list[str]) -> None:
        alias = runner.alias
        try:
            result = runner.call(runner.provider.submit_batch, urls, self.options, urls=len(urls))
        except (QuotaExhausted, RateLimited, StackBusy) as exc:
            self.journal.release_batch(self.job_id, batch, jr.UNSENT)
            deferred = self.journal.defer_unsent(self.job_id, alias, str(exc))
            self.progress.advance(deferred)
            self._halt(runner, exc)
        except UnknownOutcome as exc:
            self._resolve_unknown(runner, replace(batch, urls=tuple(urls)), exc)
        except InvalidRequest as exc:
            self._split_invalid(runner, batch, urls, exc)
        except BatchTooLarge as exc:
            with self._lock:
                new = exc.limit or max(1, len(urls) // 2)
                runner.batch_size_cap = min(runner.batch_size_cap or new, new)
            self.ws.out.detail(f"{alias}: batch size lowered to {runner.batch_size}: {exc}")
            self.journal.release_batch(self.job_id, batch, jr.UNSENT)
        except (AuthError, ConfigError) as exc:
            self.journal.release_batch(self.job_id, batch, jr.UNSENT)
            self._halt_all(exc)
            raise _Halt from exc
        except RetryableError as exc:
            self.journal.release_batch(self.job_id, batch, jr.FAILED, f"gave up: {exc}")
            self.progress.advance(len(urls))
            self._note(runner, exc)
        except ProviderError as exc:
            self.journal.release_batch(self.job_id, batch, jr.FAILED, str(exc))
            self.progress.advance(len(urls))
            self._note(runner, exc)
        else:
            self._record(runner, batch, urls, result)

    def _record(
        self, runner: Runner, batch: jr.Batch, urls: Sequence[str], result: BatchResult
    ) -> None:
        self.journal.record_result(self.job_id, replace(batch, urls=tuple(urls)), result)
        self.progress.advance(len(result.accepted) + len(result.rejected))

    def _split_invalid(
        self, runner: Runner, batch: jr.Batch, urls: list[str], exc: InvalidRequest
    ) -> None:
        """Rejects only the URLs the vendor names; unnamed, halves the batch to find them."""
        if exc.urls:
            named = {u: r for u, r in exc.urls.items() if u in urls}
            if named:
                self._record(
                    runner,
                    batch,
                    urls,
                    BatchResult(
                        task_id=None,
                        accepted=(),
                        rejected=named,
                        resend=tuple(u for u in urls if u not in named),
                    ),
                )
                return
        if len(urls) == 1:
            self._record(
                runner,
                batch,
                urls,
                BatchResult(task_id=None, accepted=(), rejected={urls[0]: exc.message}),
            )
            return
        mid = len(urls) // 2
        for half in (urls[:mid], urls[mid:]):
            if self.stop.is_set():
                break
            self._send(runner, batch, half)
        if self.stop.is_set():
            self.journal.release_batch(self.job_id, batch, jr.UNSENT)

    def _check_quota(self, runner: Runner) -> None:
        """Sends only what the vendor's daily quota still allows; the rest is deferred now."""
        if Capability.QUOTA not in runner.capabilities:
            return
        try:
            q = runner.call(runner.provider.quota)
        except PrewarmError as exc:
            self.ws.out.detail(f"{runner.alias}: quota unknown ({exc}); sending")
            return
        if q.source != "api" or q.remaining is None:
            return  # a remembered figure may be stale: let the vendor decide
        deferred = self.journal.defer_beyond(
            self.job_id,
            runner.alias,
            q.remaining,
            f"daily quota: {q.remaining} URL(s) left"
            + (f", resets {q.resets_at}" if q.resets_at else ""),
        )
        if deferred:
            self.progress.advance(deferred)
            self.errors[runner.alias] = QuotaExhausted(
                f"the daily quota allows {q.remaining} more URL(s); {deferred} deferred",
                provider=runner.alias,
                resets_at=q.resets_at,
            )

    # -- unknown outcomes (DESIGN.md §8) --

    def _resolve_unknown_batches(self, runner: Runner) -> None:
        for batch in self.journal.unknown_batches(self.job_id, runner.alias):
            if batch.urls:
                self._resolve_unknown(runner, batch, None)

    def _resolve_unknown(self, runner: Runner, batch: jr.Batch, exc: UnknownOutcome | None) -> None:
        urls = list(batch.urls)
        reason = f"no reply from the vendor ({exc})" if exc else "the run ended mid-request"
        if Capability.LOOKUP in runner.capabilities:
            created = datetime.strptime(batch.created_at, "%Y-%m-%dT%H:%M:%S.%fZ")
            since = created.replace(tzinfo=UTC) - timedelta(minutes=5)
            try:
                found = runner.call(runner.provider.find_submitted, urls, since)
            except PrewarmError as lookup_exc:
                self.ws.out.warn(f"{runner.alias}: lookup failed: {lookup_exc}")
            else:
                found = {u: t for u, t in found.items() if u in set(urls)}
                self.journal.record_found(self.job_id, runner.alias, found)
                self.journal.release_batch(self.job_id, batch, jr.UNSENT)
                self.progress.advance(len(found))
                if found:
                    self.ws.out.detail(
                        f"{runner.alias}: {len(found)} URL(s) of an unanswered request"
                        " were found at the vendor"
                    )
                return
        if runner.force:
            self.journal.release_batch(self.job_id, batch, jr.UNSENT)
            return
        self.journal.release_batch(
            self.job_id,
            batch,
            jr.UNKNOWN,
            f"{reason}; check the vendor's console, then resend with --resume --force",
        )
        self.progress.advance(len(urls))

    # -- stopping --

    def _note(self, runner: Runner, exc: PrewarmError) -> None:
        with self._lock:
            self.errors.setdefault(runner.alias, exc)

    def _halt(self, runner: Runner, exc: PrewarmError) -> None:
        with self._lock:
            self.errors[runner.alias] = exc
            self._halted.add(runner.alias)
        raise _Halt

    def _halt_all(self, exc: BaseException) -> None:
        with self._lock:
            if self.fatal is None and isinstance(exc, PrewarmError):
                self.fatal = exc
        self.stop.set()


def submit(
    ws: Workspace, req: SubmitRequest, *, resume: str | None = None
) -> tuple[dict[str, Any], ExitCode]:
    """Runs (or resumes) a job; returns the submit summary and its exit code."""
    journal = ws.journal
    if resume:
        job = journal.job(resume)
        if job.state == "created":
            raise UsageError(
                f"job {job.id} never finished reading its input; submit the URLs again"
            )
        options = SubmitOptions(
            headers=tuple((str(h[0]), str(h[1])) for h in job.options.get("headers", [])),
            invalidate=bool(job.options.get("invalidate")),
            force=req.options.force,
            extra=job.options.get("extra", {}),
        )
        journal.prepare_resume(job.id)
        job_id = job.id
        aliases = list(job.providers)
        for alias in aliases:
            ws.runner(alias)
    else:
        job_id = intake(ws, journal, req)
        job = journal.job(job_id)
        options = req.options
        aliases = list(job.providers)
        try:
            _check_busy(ws, job_id, aliases)
        except BaseException:
            journal.delete_job(job_id)  # nothing was sent: leave no job behind
            raise
    ws.out.info(f"job {job_id} started ({job.urls} URLs, {', '.join(aliases)})")
    journal.set_state(job_id, "submitting")
    counts = journal.counts(job_id)
    to_send = sum(c[jr.UNSENT] + c[jr.UNKNOWN] for c in counts.values())
    run: SubmitRun | None = None
    try:
        with ws.out.progress(to_send, "submitting") as progress:
            if options.invalidate:
                invalidate(ws, job_id, aliases, options, progress)
            run = SubmitRun(ws, job_id, options, progress)
            run.run(aliases)
    except KeyboardInterrupt:
        journal.set_state(job_id, "interrupted")
        ws.out.error(
            f"interrupted; job {job_id} is saved",
            hint=f"prewarm submit --resume {job_id} sends what was not accepted",
        )
        raise
    except PrewarmError:
        journal.set_state(job_id, _submit_state(journal.counts(job_id)))
        raise
    summary = submit_summary(ws, job_id)
    journal.set_state(job_id, summary["state"])
    errors = run.errors if run else {}
    for alias, exc in errors.items():
        ws.out.warn(f"{alias}: {exc}")
        if exc.hint:
            ws.out.info(f"hint: {exc.hint}")
    if summary["deferred"]:
        ws.out.info(
            f"{summary['deferred']} URL(s) deferred: send them later with"
            f" `prewarm submit --resume {job_id}`"
        )
    if summary["unknown"]:
        ws.out.info(
            f"{summary['unknown']} URL(s) with an unknown outcome: check the vendor's console,"
            f" then `prewarm submit --resume {job_id} --force` resends them"
        )
    return summary, submit_exit(summary, errors)


def _check_busy(ws: Workspace, job_id: str, aliases: Sequence[str]) -> None:
    """Refuses a second job on a provider that runs one job at a time, unless --force."""
    for alias in aliases:
        runner = ws.runner(alias)
        if not runner.provider.one_job_at_a_time or ws.force:
            continue
        for job in ws.journal.busy_jobs(alias, exclude=job_id):
            ref = _journal_ref(ws, job.id)
            if not ref.tasks.get(alias):
                continue  # that job never reached the vendor
            # The journal only knows what was last seen: ask the vendor before refusing.
            state = State(job_status(ws, ref)["state"])
            if not state.finished:
                raise StackBusy(
                    f"{alias} runs one job at a time and job {job.id} is still {state}",
                    hint=f"wait with `prewarm status {job.id} --wait`, or pass --force",
                    provider=alias,
                )
        in_progress = runner.call(runner.provider.busy)
        if in_progress:
            raise StackBusy(
                f"{alias} runs one job at a time and is busy: {in_progress}",
                hint="wait until it finishes, or pass --force",
                provider=alias,
            )


def invalidate(
    ws: Workspace,
    job_id: str,
    aliases: Sequence[str],
    options: SubmitOptions,
    progress: Progress,
) -> None:
    """Purges the job's URLs first and waits (bounded) until each purge is done.

    A URL whose purge failed is not prefetched: a late purge would evict the warm copy.
    """
    for alias in aliases:
        runner = ws.runner(alias)
        if runner.provider.invalidates_in_submit:
            continue  # the prefetch request carries options.invalidate
        if Capability.INVALIDATE not in runner.capabilities:
            ws.out.warn(f"{alias} cannot invalidate; its URLs are prefetched only")
            continue
        pending = [r["url"] for r in ws.journal.targets(job_id, [jr.UNSENT]) if r[0] == alias]
        size = min(runner.limits().invalidate_batch or runner.batch_size, runner.batch_size)
        purge_tasks: dict[str, list[str]] = {}
        while pending:
            chunk, pending = pending[:size], pending[size:]
            try:
                result = _purge(runner, chunk, options)
            except BatchTooLarge as exc:
                size = exc.limit or max(1, len(chunk) // 2)
                pending = chunk + pending
                continue
            except (AuthError, ConfigError, QuotaExhausted):
                raise
            except InvalidRequest as exc:
                named = {u: r for u, r in (exc.urls or {}).items() if u in chunk}
                if not named and len(chunk) > 1:  # halve until the culprit is alone
                    size = max(1, len(chunk) // 2)
                    pending = chunk + pending
                    continue
                named = named or {chunk[0]: exc.message}
                _fail_purge(ws, job_id, alias, named)
                pending = [u for u in chunk if u not in named] + pending
                continue
            except ProviderError as exc:
                _fail_purge(ws, job_id, alias, dict.fromkeys(chunk, str(exc)))
                continue
            if result.rejected:
                _fail_purge(ws, job_id, alias, result.rejected)
            if result.resend:
                pending = list(result.resend) + pending
            if result.task_id:
                purge_tasks[result.task_id] = list(result.accepted)
                ws.journal.add_task(job_id, alias, result.task_id, len(result.accepted), "purge")
        deadline = time.monotonic() + PURGE_WAIT_SECONDS
        while purge_tasks and time.monotonic() < deadline:
            statuses = runner.call(runner.provider.fetch_invalidation_status, list(purge_tasks))
            for st in statuses:
                if st.state.finished:
                    urls = purge_tasks.pop(st.task_id, [])
                    failed = {
                        u.url: u.reason or str(u.state)
                        for u in st.urls
                        if u.state != State.SUCCEEDED
                    }
                    if st.state != State.SUCCEEDED and not failed:
                        failed = dict.fromkeys(urls, st.raw_state or str(st.state))
                    _fail_purge(ws, job_id, alias, failed)
            if purge_tasks:
                time.sleep(runner.limits().poll_interval)
        for urls in purge_tasks.values():
            _fail_purge(ws, job_id, alias, dict.fromkeys(urls, "did not finish in time"))


def _purge(runner: Runner, urls: list[str], options: SubmitOptions) -> BatchResult:
    """One purge request; purging twice only costs quota, so an unknown outcome is resent."""
    try:
        return runner.call(runner.provider.invalidate_batch, urls, options, urls=len(urls))
    except UnknownOutcome:
        return runner.call(runner.provider.invalidate_batch, urls, options, urls=len(urls))


def _fail_purge(ws: Workspace, job_id: str, alias: str, failed: Mapping[str, str]) -> None:
    for url, reason in failed.items():
        ws.journal.set_outcome(job_id, alias, [url], jr.FAILED, f"purge failed: {reason}")


def _submit_state(counts: Mapping[str, jr.Counts]) -> str:
    total = jr.Counts()
    for c in counts.values():
        total.add(c)
    if total[jr.UNSENT] + total[jr.DEFERRED] + total[jr.UNKNOWN] + total[jr.SENDING]:
        return "incomplete"
    if total[jr.ACCEPTED] == 0:
        return "failed"
    return "submitted"


def submit_summary(ws: Workspace, job_id: str) -> dict[str, Any]:
    """The submit JSON of DESIGN.md §5, from the journal."""
    journal = ws.journal
    job = journal.job(job_id)
    counts = journal.counts(job_id)
    total = jr.Counts()
    for c in counts.values():
        total.add(c)
    failures = journal.targets(job_id, [jr.REJECTED, jr.FAILED])
    return {
        "job_id": job.id,
        "state": _submit_state(counts),
        "urls": job.urls,
        "total": total.total,
        "accepted": total[jr.ACCEPTED],
        "rejected": [
            {"url": r["url"], "provider": r["provider"], "reason": r["reason"]}
            for r in failures
            if r["outcome"] == jr.REJECTED
        ],
        "failed": [
            {"url": r["url"], "provider": r["provider"], "reason": r["reason"]}
            for r in failures
            if r["outcome"] == jr.FAILED
        ],
        "deferred": total[jr.DEFERRED] + total[jr.UNSENT],
        "unknown": total[jr.UNKNOWN] + total[jr.SENDING],
        "skipped": list(job.skipped),
        "tasks": [
            {"provider": t.provider, "task_id": t.task_id, "urls": t.urls}
            for t in journal.tasks(job_id)
        ],
        "providers": {
            alias: {
                "total": c.total,
                "accepted": c[jr.ACCEPTED],
                "rejected": c[jr.REJECTED],
                "failed": c[jr.FAILED],
                "deferred": c[jr.DEFERRED] + c[jr.UNSENT],
                "unknown": c[jr.UNKNOWN] + c[jr.SENDING],
            }
            for alias, c in sorted(counts.items())
        },
        "created_at": job.created_at,
    }


def submit_exit(summary: Mapping[str, Any], errors: Mapping[str, PrewarmError]) -> ExitCode:
    codes: set[ExitCode] = {e.exit_code for e in errors.values() if e.exit_code != ExitCode.QUOTA}
    if summary["deferred"]:
        codes.add(ExitCode.QUOTA)
    if summary["total"] and not (summary["accepted"] or summary["deferred"] or summary["unknown"]):
        codes.add(ExitCode.FAILED)
    if summary["rejected"] or summary["failed"] or summary["unknown"]:
        codes.add(ExitCode.INCOMPLETE)
    codes.discard(ExitCode.USAGE)  # vendor refusals after validation are rejections (§6)
    return worst_exit(codes)


# --------------------------------------------------------------------------- status


@dataclass
class JobRef:
    """What `status`/`report` work on: a journal job, or bare vendor tasks."""

    job_id: str | None
    tasks: dict[str, list[str]]  # alias -> task ids


def parse_job_ref(ws: Workspace, ref: str | None, stdin_text: Callable[[], str]) -> JobRef:
    """JOB, ALIAS:task[,task...], '-' (a submit JSON on stdin) or nothing (the latest job)."""
    import json

    if ref == "-":
        text = stdin_text()
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise UsageError(f"stdin is not a prewarm submit JSON: {exc}") from exc
        if not isinstance(data, dict) or "tasks" not in data:
            raise UsageError("stdin JSON has no `tasks`: pipe `prewarm submit -o json` into it")
        job_id = data.get("job_id")
        if job_id:
            try:
                ws.journal.job(job_id)
                return _journal_ref(ws, job_id)
            except PrewarmError:
                pass
        tasks: dict[str, list[str]] = {}
        for t in data["tasks"]:
            tasks.setdefault(ws.alias(t["provider"]), []).append(str(t["task_id"]))
        return JobRef(job_id, tasks)
    if ref and ":" in ref:
        name, _, ids = ref.partition(":")
        task_ids = [i for i in ids.split(",") if i]
        if not task_ids:
            raise UsageError(f"{ref!r} names no task id; use ALIAS:TASK_ID[,TASK_ID...]")
        return JobRef(None, {ws.alias(name): task_ids})
    job = ws.journal.job(ref) if ref else ws.journal.latest_job()
    return _journal_ref(ws, job.id)


def _journal_ref(ws: Workspace, job_id: str) -> JobRef:
    tasks: dict[str, list[str]] = {}
    for t in ws.journal.tasks(job_id):
        tasks.setdefault(t.provider, []).append(t.task_id)
    job = ws.journal.job(job_id)
    for alias in job.providers:
        tasks.setdefault(alias, [])
    return JobRef(job_id, tasks)


def combine_states(states: Iterable[State]) -> State:
    """One state for several tasks or providers."""
    found = set(states)
    if not found:
        return State.PENDING
    if found == {State.PENDING}:
        return State.PENDING
    if found & {State.PENDING, State.RUNNING}:
        return State.RUNNING
    if len(found) == 1:
        return found.pop()
    if found <= {State.FAILED, State.CANCELLED, State.TIMED_OUT}:
        return State.FAILED if State.FAILED in found else State.PARTIAL
    return State.PARTIAL


def job_status(ws: Workspace, ref: JobRef) -> dict[str, Any]:
    """Asks each provider about its tasks and sums per target (DESIGN.md §5)."""
    return _job_status(ws, ref)[0]


def _job_status(ws: Workspace, ref: JobRef) -> tuple[dict[str, Any], dict[str, list[TaskStatus]]]:
    counts = ws.journal.counts(ref.job_id) if ref.job_id else {}
    mine: dict[tuple[str, str], set[str]] = {}  # (alias, task) -> this job's URLs in it
    if ref.job_id:
        for row in ws.journal.targets(ref.job_id, [jr.ACCEPTED]):
            mine.setdefault((row["provider"], row["task_id"]), set()).add(row["url"])
    providers: dict[str, Any] = {}
    seen: dict[str, list[TaskStatus]] = {}
    for alias, task_ids in ref.tasks.items():
        runner = ws.runner(alias)
        statuses: list[TaskStatus] = []
        if task_ids:
            runner.require(Capability.STATUS)
            statuses = runner.call(runner.provider.fetch_status, task_ids)
            if ref.job_id:
                statuses = [_only_urls(s, mine.get((alias, s.task_id))) for s in statuses]
        seen[alias] = statuses
        providers[alias] = _provider_status(alias, statuses, counts.get(alias))
        if ref.job_id:
            ws.journal.save_task_states(
                ref.job_id, alias, [(s.task_id, str(s.state), s.raw_state) for s in statuses]
            )
    fields = ("total", "succeeded", "failed", "in_progress", "pending", "not_sent")
    totals = {f: sum(p[f] for p in providers.values()) for f in fields}
    raws = {p["raw_state"] for p in providers.values()}
    state = combine_states(State(p["state"]) for p in providers.values())
    result = {
        "job_id": ref.job_id,
        "state": str(state),
        "raw_state": raws.pop() if len(raws) == 1 else None,
        **totals,
        "providers": providers,
    }
    if ref.job_id:
        ws.journal.set_state(ref.job_id, str(state))
    return result, seen


def _only_urls(status: TaskStatus, urls: set[str] | None) -> TaskStatus:
    """A vendor task narrowed to this job's URLs (a task found by lookup may hold others)."""
    if not status.urls or urls is None or {u.url for u in status.urls} <= urls:
        return status
    from prewarm_cli.urls import to_ascii

    # Vendors may list a URL in its encoded form (IDNA host, percent-encoded path).
    wanted = urls | {to_ascii(u) for u in urls}
    kept = tuple(u for u in status.urls if u.url in wanted or to_ascii(u.url) in wanted)
    by_state = {state: sum(1 for u in kept if u.state == state) for state in State}
    failed = by_state[State.FAILED] + by_state[State.TIMED_OUT] + by_state[State.CANCELLED]
    state = status.state
    if state.finished and state not in (State.CANCELLED, State.TIMED_OUT):
        if not failed:
            state = State.SUCCEEDED
        elif not by_state[State.SUCCEEDED]:
            state = State.FAILED
        else:
            state = State.PARTIAL
    return replace(
        status,
        state=state,
        total=len(kept),
        succeeded=by_state[State.SUCCEEDED],
        failed=failed,
        in_progress=by_state[State.RUNNING],
        pending=by_state[State.PENDING],
        urls=kept,
    )


def status_with_claims(ws: Workspace, ref: JobRef) -> tuple[dict[str, Any], dict[str, str]]:
    """job_status(), also returning each URL's vendor state (for --verify)."""
    status, statuses = _job_status(ws, ref)
    return status, url_claims(ws, ref, statuses)


def url_claims(
    ws: Workspace, ref: JobRef, statuses: Mapping[str, list[TaskStatus]]
) -> dict[str, str]:
    """What the vendors say about each URL: its own state where given, else its task's."""
    claims: dict[str, str] = {}

    def claim(url: str, state: str) -> None:
        # One URL on several CDNs: "succeeded" only when every vendor says so.
        if claims.get(url, "succeeded") == "succeeded":
            claims[url] = state

    for alias, task_statuses in statuses.items():
        by_task = {s.task_id: s for s in task_statuses}
        per_url = {u.url: str(u.state) for s in task_statuses for u in s.urls}
        if ref.job_id:
            for row in ws.journal.targets(ref.job_id, [jr.ACCEPTED]):
                if row["provider"] == alias:
                    task = by_task.get(row["task_id"])
                    fallback = str(task.state) if task else "pending"
                    claim(row["url"], per_url.get(row["url"], fallback))
        else:
            for url, state in per_url.items():
                claim(url, state)
    return claims


def _provider_status(
    alias: str, statuses: Sequence[TaskStatus], counts: jr.Counts | None
) -> dict[str, Any]:
    succeeded = sum(s.succeeded for s in statuses)
    failed = sum(s.failed for s in statuses)
    in_progress = sum(s.in_progress for s in statuses)
    pending = sum(s.pending for s in statuses)
    vendor_total = sum(s.total for s in statuses)
    not_sent = 0
    if counts is not None:
        # Targets the vendor never took count too: rejected and failed at submit are
        # failures; deferred and unknown are not sent (yet).
        failed += counts[jr.REJECTED] + counts[jr.FAILED]
        not_sent = counts[jr.DEFERRED] + counts[jr.UNSENT] + counts[jr.UNKNOWN] + counts[jr.SENDING]
        total = counts.total
        # A vendor that counts fewer URLs than were accepted (not yet listed) leaves them pending.
        pending += max(0, counts[jr.ACCEPTED] - vendor_total)
    else:
        total = vendor_total
    states = [s.state for s in statuses]
    state = combine_states(states) if states else State.PENDING
    if state == State.SUCCEEDED and (failed or not_sent):
        state = State.PARTIAL  # the vendor finished its part, but not every target got there
    if not statuses and counts is not None and counts.total and not counts[jr.ACCEPTED]:
        state = State.FAILED if not not_sent else State.PENDING
    raws = {s.raw_state for s in statuses}
    details: dict[str, Any] = {}
    for s in statuses:
        for k, v in s.details.items():
            details.setdefault(k, v)
    return {
        "provider": alias,
        "state": str(state),
        "raw_state": raws.pop() if len(raws) == 1 else None,
        "total": total,
        "succeeded": succeeded,
        "failed": failed,
        "in_progress": in_progress,
        "pending": pending,
        "not_sent": not_sent,
        "tasks": [s.to_dict() for s in statuses],
        "details": details,
    }


def status_exit(state: str) -> ExitCode:
    return {
        "succeeded": ExitCode.OK,
        "partial": ExitCode.INCOMPLETE,
        "cancelled": ExitCode.INCOMPLETE,
        "timed_out": ExitCode.INCOMPLETE,
        "failed": ExitCode.FAILED,
    }.get(state, ExitCode.OK)


def poll_interval(ws: Workspace, ref: JobRef, wanted: float | None) -> float:
    """The wait between polls: the user's choice, never below a provider's polling budget."""
    floor = max((ws.runner(a).limits().poll_interval for a in ref.tasks), default=10.0)
    configured = ws.config.defaults.get("poll_interval")
    interval = wanted if wanted is not None else (configured or floor)
    if interval < floor and not ws.force:
        ws.out.warn(
            f"--interval {interval:g}s is below the provider's polling budget; using {floor:g}s"
        )
        return floor
    return float(interval)


def wait(
    ws: Workspace,
    ref: JobRef,
    *,
    interval: float | None,
    timeout: float | None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Polls until the job is finished or our --wait-timeout expires."""
    return wait_with_claims(ws, ref, interval=interval, timeout=timeout, sleep=sleep, clock=clock)[
        0
    ]


def wait_with_claims(
    ws: Workspace,
    ref: JobRef,
    *,
    interval: float | None,
    timeout: float | None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[dict[str, Any], dict[str, str]]:
    """wait(), also returning each URL's final vendor state (for --verify)."""
    every = poll_interval(ws, ref, interval)
    if timeout is None:
        timeout = ws.config.defaults.get("wait_timeout")
    deadline = clock() + timeout if timeout else None
    with ws.out.progress(None, "waiting") as progress:
        while True:
            status, statuses = _job_status(ws, ref)
            progress.update(
                completed=status["succeeded"] + status["failed"],
                total=status["total"],
                description=status["state"],
            )
            if State(status["state"]).finished:
                return status, url_claims(ws, ref, statuses)
            if deadline is None:
                sleep(every)
                continue
            left = deadline - clock()
            if left <= 0:
                raise WaitTimeout(
                    f"job {ref.job_id or ''} is still {status['state']} after {timeout:g}s",
                    hint="check again later with `prewarm status`",
                )
            sleep(min(every, left))


# --------------------------------------------------------------------------- report


def report(ws: Workspace, ref: JobRef) -> dict[str, Any]:
    """Every target that failed or was rejected, from the journal and the vendors."""
    failures: list[dict[str, Any]] = []
    report_urls: dict[str, str] = {}
    if ref.job_id:
        for r in ws.journal.targets(ref.job_id, [jr.REJECTED, jr.FAILED]):
            failures.append(
                {
                    "url": r["url"],
                    "provider": r["provider"],
                    "pop": None,
                    "reason": r["reason"],
                    "stage": "submit",
                }
            )
    for alias, task_ids in ref.tasks.items():
        if not task_ids:
            continue
        runner = ws.runner(alias)
        if Capability.REPORT not in runner.capabilities:
            runner.require(Capability.STATUS)
        rep = runner.call(runner.provider.report, task_ids)
        for f in rep.failures:
            failures.append({**f.to_dict(), "provider": alias, "stage": "vendor"})
        if rep.report_url:
            report_urls[alias] = rep.report_url
    state = ws.journal.job(ref.job_id).state if ref.job_id else None
    return {
        "job_id": ref.job_id,
        "state": state,
        "failures": failures,
        "report_url": next(iter(report_urls.values())) if len(report_urls) == 1 else None,
        "report_urls": report_urls,
    }


def download_report(ws: Workspace, result: Mapping[str, Any], path: str) -> None:
    """Saves the vendor's report file now: vendors' report links expire within minutes."""
    import httpx

    links = result.get("report_urls") or {}
    if not links:
        raise UsageError("the vendor offers no report file for this job")
    if len(links) > 1:
        raise UsageError("several providers offer a report file; use -p to pick one")
    ((alias, url),) = links.items()
    with (
        httpx.Client(timeout=60.0, follow_redirects=True) as client,
        open(path, "wb") as fh,
        client.stream("GET", url) as response,
    ):
        if response.status_code != 200:
            raise ProviderError(
                f"downloading the report failed: HTTP {response.status_code}", provider=alias
            )
        for chunk in response.iter_bytes():
            fh.write(chunk)
    ws.out.info(f"saved {alias}'s report to {path}")


# --------------------------------------------------------------------------- misc commands


def recent_jobs(ws: Workspace, limit: int, state: str | None) -> list[dict[str, Any]]:
    """`prewarm jobs`: the newest local jobs with their target counts."""
    rows = []
    for job in ws.journal.jobs(limit, state):
        total = jr.Counts()
        for counts in ws.journal.counts(job.id).values():
            total.add(counts)
        rows.append(
            {
                "job_id": job.id,
                "state": job.state,
                "created_at": job.created_at,
                "providers": list(job.providers),
                "urls": job.urls,
                "total": total.total,
                "accepted": total[jr.ACCEPTED],
                "rejected": total[jr.REJECTED],
                "deferred": total[jr.DEFERRED] + total[jr.UNSENT],
            }
        )
    return rows


def quota(ws: Workspace, aliases: Sequence[str]) -> list[dict[str, Any]]:
    rows = []
    for alias in aliases:
        runner = ws.runner(alias)
        runner.require(Capability.QUOTA)
        q = runner.call(runner.provider.quota)
        rows.append({"provider": alias, "type": runner.provider.name, **q.to_dict()})
    return rows


def scale(ws: Workspace, alias: str, count: int | None) -> dict[str, Any]:
    runner = ws.runner(alias)
    runner.require(Capability.SCALE)
    return {"provider": alias, **runner.call(runner.provider.scale, count)}


def cancel(ws: Workspace, ref: JobRef) -> list[dict[str, Any]]:
    results = []
    for alias, task_ids in ref.tasks.items():
        runner = ws.runner(alias)
        runner.require(Capability.CANCEL)
        if task_ids:
            answer = runner.call(runner.provider.cancel, task_ids)
            results.append({"provider": alias, **answer})
    if ref.job_id:
        ws.journal.set_state(ref.job_id, "cancelled")
    return results
