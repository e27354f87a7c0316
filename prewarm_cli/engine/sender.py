"""Sending a job's batches to the vendors: concurrency, splits, retries, unknown outcomes."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from prewarm_cli import journal as jr
from prewarm_cli.engine.workspace import ProviderSession, Workspace
from prewarm_cli.errors import (
    AuthError,
    BatchTooLarge,
    ConfigError,
    InvalidRequest,
    PrewarmError,
    ProviderError,
    QuotaExhausted,
    RateLimited,
    RetryableError,
    StackBusy,
    UnknownOutcome,
)
from prewarm_cli.output import Progress
from prewarm_cli.plugin import (
    BatchResult,
    Capability,
    SubmitOptions,
)


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
        sessions = [self.ws.session(a) for a in aliases]
        for session in sessions:
            session.require(Capability.SUBMIT)
        workers: list[tuple[ProviderSession, int]] = []
        for session in sessions:
            self._resolve_unknown_batches(session)
            self._check_quota(session)
            workers.extend((session, i) for i in range(session.limits().concurrency))
        pool = ThreadPoolExecutor(max_workers=max(1, len(workers)), thread_name_prefix="submit")
        futures = [pool.submit(self._worker, session) for session, _ in workers]
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

    def _worker(self, session: ProviderSession) -> None:
        while not self.stop.is_set() and session.alias not in self._halted:
            batch = self.journal.claim_batch(
                self.job_id, session.alias, session.batch_size, session.limits().max_batch_bytes
            )
            if batch is None:
                return
            try:
                self._send(session, batch, list(batch.urls))
            except _Halt:
                return
            except BaseException as exc:
                # A bug or an unexpected error after the request may have left: unknown.
                self.journal.release_batch(self.job_id, batch, jr.UNKNOWN, f"internal error: {exc}")
                self._halt_all(
                    exc
                    if isinstance(exc, PrewarmError)
                    else PrewarmError(f"{session.alias}: unexpected error: {exc!r}")
                )
                raise

    def _send(self, session: ProviderSession, batch: jr.Batch, urls: list[str]) -> None:
        alias = session.alias
        try:
            result = session.call(session.provider.submit_batch, urls, self.options, urls=len(urls))
        except (QuotaExhausted, RateLimited, StackBusy) as exc:
            self.journal.release_batch(self.job_id, batch, jr.UNSENT)
            deferred = self.journal.defer_unsent(self.job_id, alias, str(exc))
            self.progress.advance(deferred)
            self._halt(session, exc)
        except UnknownOutcome as exc:
            self._resolve_unknown(session, replace(batch, urls=tuple(urls)), exc)
        except InvalidRequest as exc:
            self._split_invalid(session, batch, urls, exc)
        except BatchTooLarge as exc:
            with self._lock:
                new = exc.limit or max(1, len(urls) // 2)
                session.batch_size_cap = min(session.batch_size_cap or new, new)
            self.ws.out.detail(f"{alias}: batch size lowered to {session.batch_size}: {exc}")
            self.journal.release_batch(self.job_id, batch, jr.UNSENT)
        except (AuthError, ConfigError) as exc:
            self.journal.release_batch(self.job_id, batch, jr.UNSENT)
            self._halt_all(exc)
            raise _Halt from exc
        except RetryableError as exc:
            self.journal.release_batch(self.job_id, batch, jr.FAILED, f"gave up: {exc}")
            self.progress.advance(len(urls))
            self._note(session, exc)
        except ProviderError as exc:
            self.journal.release_batch(self.job_id, batch, jr.FAILED, str(exc))
            self.progress.advance(len(urls))
            self._note(session, exc)
        else:
            self._record(session, batch, urls, result)

    def _record(
        self, session: ProviderSession, batch: jr.Batch, urls: Sequence[str], result: BatchResult
    ) -> None:
        self.journal.record_result(self.job_id, replace(batch, urls=tuple(urls)), result)
        self.progress.advance(len(result.accepted) + len(result.rejected))

    def _split_invalid(
        self, session: ProviderSession, batch: jr.Batch, urls: list[str], exc: InvalidRequest
    ) -> None:
        """Rejects only the URLs the vendor names; unnamed, halves the batch to find them."""
        if exc.urls:
            named = {u: r for u, r in exc.urls.items() if u in urls}
            if named:
                self._record(
                    session,
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
                session,
                batch,
                urls,
                BatchResult(task_id=None, accepted=(), rejected={urls[0]: exc.message}),
            )
            return
        mid = len(urls) // 2
        for half in (urls[:mid], urls[mid:]):
            if self.stop.is_set():
                break
            self._send(session, batch, half)
        if self.stop.is_set():
            self.journal.release_batch(self.job_id, batch, jr.UNSENT)

    def _check_quota(self, session: ProviderSession) -> None:
        """Sends only what the vendor's daily quota still allows; the rest is deferred now."""
        if Capability.QUOTA not in session.capabilities:
            return
        try:
            q = session.call(session.provider.quota)
        except PrewarmError as exc:
            self.ws.out.detail(f"{session.alias}: quota unknown ({exc}); sending")
            return
        if q.source != "api" or q.remaining is None:
            return  # a remembered figure may be stale: let the vendor decide
        deferred = self.journal.defer_beyond(
            self.job_id,
            session.alias,
            q.remaining,
            f"daily quota: {q.remaining} URL(s) left"
            + (f", resets {q.resets_at}" if q.resets_at else ""),
        )
        if deferred:
            self.progress.advance(deferred)
            self.errors[session.alias] = QuotaExhausted(
                f"the daily quota allows {q.remaining} more URL(s); {deferred} deferred",
                provider=session.alias,
                resets_at=q.resets_at,
            )

    # -- unknown outcomes (DESIGN.md §8) --

    def _resolve_unknown_batches(self, session: ProviderSession) -> None:
        for batch in self.journal.unknown_batches(self.job_id, session.alias):
            if batch.urls:
                self._resolve_unknown(session, batch, None)

    def _resolve_unknown(
        self, session: ProviderSession, batch: jr.Batch, exc: UnknownOutcome | None
    ) -> None:
        urls = list(batch.urls)
        reason = f"no reply from the vendor ({exc})" if exc else "the run ended mid-request"
        if Capability.LOOKUP in session.capabilities:
            created = datetime.strptime(batch.created_at, "%Y-%m-%dT%H:%M:%S.%fZ")
            since = created.replace(tzinfo=UTC) - timedelta(minutes=5)
            try:
                found = session.call(session.provider.find_submitted, urls, since)
            except PrewarmError as lookup_exc:
                self.ws.out.warn(f"{session.alias}: lookup failed: {lookup_exc}")
            else:
                found = {u: t for u, t in found.items() if u in set(urls)}
                self.journal.record_found(self.job_id, session.alias, found)
                self.journal.release_batch(self.job_id, batch, jr.UNSENT)
                self.progress.advance(len(found))
                if found:
                    self.ws.out.detail(
                        f"{session.alias}: {len(found)} URL(s) of an unanswered request"
                        " were found at the vendor"
                    )
                return
        if session.force:
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

    def _note(self, session: ProviderSession, exc: PrewarmError) -> None:
        with self._lock:
            self.errors.setdefault(session.alias, exc)

    def _halt(self, session: ProviderSession, exc: PrewarmError) -> None:
        with self._lock:
            self.errors[session.alias] = exc
            self._halted.add(session.alias)
        raise _Halt

    def _halt_all(self, exc: BaseException) -> None:
        with self._lock:
            if self.fatal is None and isinstance(exc, PrewarmError):
                self.fatal = exc
        self.stop.set()
