"""The one batch sender, for prefetch and purge alike (DESIGN.md §8).

A batch goes out through :meth:`BatchSender.send`, which decides what the vendor's
answer means: accepted, rejected URLs (named, or found by splitting the batch),
a smaller batch size, a deferral, a failure after retries, or an unknown outcome
to be looked up. Where the answer is written is a :class:`Ledger`: the journal for
prefetch (each part of a split is a batch of its own there), memory for purges.
When ``send`` returns, the batch it was given is settled in the ledger, or the part
of it to send again waits in the sender's :class:`RetryQueue` (its worker goes on
with the next batches meanwhile); when it raises, too, except where the journal
itself failed (the batch then stays *sending*, for ``--resume`` to look up).
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import suppress
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from prewarm_cli import journal as jr
from prewarm_cli.engine.workspace import ProviderSession
from prewarm_cli.errors import (
    AuthError,
    BatchTooLarge,
    ConfigError,
    InvalidRequest,
    JournalError,
    PrewarmError,
    ProviderError,
    QuotaExhausted,
    RateLimited,
    RateStoreError,
    RetryableError,
    StackBusy,
    TargetsFailed,
    UnknownOutcome,
)
from prewarm_cli.output import Output, counted
from prewarm_cli.pacing import Interrupted, RetryBudget
from prewarm_cli.plugin import BatchResult, Capability, Quota

# How far before a batch's own record a vendor's task may be dated (clock skew).
LOOKUP_SKEW = timedelta(minutes=5)


class Halt(Exception):
    """Stops sending: one provider's (a deferral) or everyone's (auth, config, the journal)."""

    def __init__(self, error: PrewarmError, *, defer: bool = False, n_deferred: int = 0) -> None:
        super().__init__(str(error))
        self.error = error
        self.defer = defer  # the provider's unsent targets are deferred, others go on
        self.n_deferred = n_deferred  # URLs of the halted batch, deferred already


class Ledger:
    """Where the sender writes what became of a batch."""

    def answered(self, batch: jr.Batch, result: BatchResult) -> None:
        raise NotImplementedError

    def split(self, batch: jr.Batch, part: Sequence[str]) -> tuple[jr.Batch, jr.Batch]:
        """(``part`` as a batch of its own, the rest of ``batch``); neither is sent yet."""
        raise NotImplementedError

    def release(
        self, batch: jr.Batch, outcome: str, reason: str | None = None, *, transient: bool = True
    ) -> None:
        raise NotImplementedError

    def unknown(self, batch: jr.Batch, reason: str) -> None:
        raise NotImplementedError

    def found(self, batch: jr.Batch, found: Mapping[str, str]) -> None:
        raise NotImplementedError

    def tasks_of_other_jobs(self, provider: str, task_ids: Collection[str]) -> set[str]:
        """Which of these tasks, found at ``provider``'s vendor, other jobs recorded there
        as theirs: none of this batch's."""
        return set()


class JournalLedger(Ledger):
    """A job's prefetch batches in the journal."""

    def __init__(self, journal: jr.Journal, job_id: str) -> None:
        self.journal = journal
        self.job_id = job_id

    def answered(self, batch: jr.Batch, result: BatchResult) -> None:
        self.journal.record_result(self.job_id, batch, result)

    def split(self, batch: jr.Batch, part: Sequence[str]) -> tuple[jr.Batch, jr.Batch]:
        return self.journal.split_batch(self.job_id, batch, part)

    def release(
        self, batch: jr.Batch, outcome: str, reason: str | None = None, *, transient: bool = True
    ) -> None:
        self.journal.release_batch(self.job_id, batch, outcome, reason, transient=transient)

    def unknown(self, batch: jr.Batch, reason: str) -> None:
        self.journal.mark_unknown(batch, reason)

    def found(self, batch: jr.Batch, found: Mapping[str, str]) -> None:
        self.journal.record_found(self.job_id, batch, found)

    def tasks_of_other_jobs(self, provider: str, task_ids: Collection[str]) -> set[str]:
        return self.journal.tasks_of_other_jobs(self.job_id, provider, task_ids)


class QuotaGate:
    """Never more URLs in flight than the vendor's daily quota is known to allow.

    The remaining quota comes from a quota lookup before the run or from the vendor's
    replies (Qiniu's ``surplusDay``). While it is not known yet, a provider that has a
    quota sends one request at a time until a reply tells.
    """

    def __init__(self, remaining: int | None, *, probe: bool) -> None:
        self.remaining = remaining
        self._probe = probe and remaining is None
        self._in_flight = 0
        self._cond = threading.Condition()

    def admit(self, wanted: int, stop: threading.Event) -> int:
        """How many URLs may go out now (at most ``wanted``); 0 when the quota is spent."""
        with self._cond:
            while not stop.is_set():
                if self.remaining is None and not self._probe:
                    self._in_flight += wanted
                    return wanted
                if self.remaining is None:  # probing: one request until a reply tells
                    if self._in_flight == 0:
                        self._in_flight += wanted
                        return wanted
                else:
                    free = self.remaining - self._in_flight
                    if free > 0:
                        n = min(wanted, free)
                        self._in_flight += n
                        return n
                    if self._in_flight == 0:
                        return 0
                self._cond.wait(0.2)
            return 0

    def settle(self, admitted: int, quota: Quota | None = None) -> None:
        """``admitted`` URLs are no longer in flight; ``quota`` is what the reply said."""
        with self._cond:
            self._in_flight = max(0, self._in_flight - admitted)
            if quota is not None and quota.remaining is not None:
                known = self.remaining
                # Replies can arrive out of order: the lowest figure is the latest at the vendor.
                self.remaining = quota.remaining if known is None else min(known, quota.remaining)
            self._probe = False
            self._cond.notify_all()


class RetryQueue:
    """Parts of batches to send again once their wait has passed (a backoff, a Retry-After).

    They wait here, not in a worker: a worker goes on with the next batches meanwhile, so
    that a run whose every batch has a URL answered 503 once does not wait out a backoff per
    batch (one worker, as direct warming has, would add that wait for every batch).
    Each part stays *sending* in the journal while it waits: a run killed meanwhile has it
    looked up at ``--resume``; a run stopped releases it unsent (``drain``).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        # (due, order, part, its retries, why its outcome is unknown: None where it is not)
        self._heap: list[tuple[float, int, jr.Batch, RetryBudget, str | None]] = []
        self._order = itertools.count()  # equal times keep their order; batches never compare
        self._lock = threading.Lock()

    def put(
        self, part: jr.Batch, wait: float, retries: RetryBudget, unknown: str | None = None
    ) -> None:
        """``unknown``: the vendor may hold the part (an unanswered request sent again with
        --force): why, for the journal, should the run stop before it goes."""
        with self._lock:
            entry = (self._clock() + wait, next(self._order), part, retries, unknown)
            heapq.heappush(self._heap, entry)

    def take_due(self) -> tuple[jr.Batch, RetryBudget] | None:
        """The part whose wait has passed first, if any. The time it waited past its due
        time, for a worker busy with other batches, is not counted against its retries."""
        with self._lock:
            now = self._clock()
            if not self._heap or self._heap[0][0] > now:
                return None
            due, _, part, retries, _unknown = heapq.heappop(self._heap)
        retries.started_late(now - due)
        return part, retries

    def wait(self, stop: threading.Event, halted: Callable[[], bool] = lambda: False) -> bool:
        """Waits until the next part is due, the run stops or its provider is ``halted`` (a
        deferral: the part is released at once, not at its time); False when none waits."""
        with self._lock:
            if not self._heap:
                return False
            due = self._heap[0][0]
        while not halted() and not stop.wait(min(max(0.0, due - self._clock()), 0.2)):
            if self._clock() >= due:
                break
        return True

    def drain(self) -> list[tuple[jr.Batch, str | None]]:
        """Every part still waiting, taken out, with why its outcome is unknown (if it is)."""
        with self._lock:
            parts = [(part, unknown) for _, _, part, _, unknown in self._heap]
            self._heap.clear()
            return parts


class BatchSender:
    """Sends batches for one provider alias; safe to share between worker threads."""

    def __init__(
        self,
        session: ProviderSession,
        ledger: Ledger,
        request: Callable[[list[str]], BatchResult],
        *,
        out: Output,
        advance: Callable[[int], None],
        stop: threading.Event,
        purge: bool = False,
        force: bool = False,
        gate: QuotaGate | None = None,
        later: RetryQueue | None = None,
    ) -> None:
        self.session = session
        self.alias = session.alias
        self.ledger = ledger
        self.request = request
        self.out = out
        self.advance = advance
        self.stop = stop
        self.purge = purge
        self.force = force
        self.gate = gate
        # Where parts to send again wait (the workers take them when due); None: the part is
        # sent again by the call that failed it, after its wait.
        self.later = later
        self.cap: int | None = None  # lowered when the vendor refuses a batch size
        self.errors: list[PrewarmError] = []  # failures noted on the way (the first is shown)
        self.started = datetime.now(UTC)
        self._lock = threading.Lock()

    @property
    def batch_size(self) -> int:
        size = self.session.batch_size
        return min(size, self.cap) if self.cap else size

    # -- one batch --

    def send(
        self, batch: jr.Batch, retries: RetryBudget | None = None, *, resent: bool = False
    ) -> None:
        """Sends one batch (already recorded *sending*) and settles it in the ledger.

        ``retries``: what is left of the retry policy when ``batch`` holds URLs that failed.
        ``resent``: a purge sent once more because its first request went unanswered.
        """
        urls = list(batch.urls)
        try:
            result = self.session.call(
                self.request, urls, n_urls=len(urls), on_retry=self._retry_note(len(urls))
            )
        except Interrupted:
            self.ledger.release(batch, jr.UNSENT)  # stopped while waiting: nothing went out
            raise
        except RateStoreError as exc:
            self.ledger.release(batch, jr.UNSENT)
            raise Halt(exc) from exc
        except (QuotaExhausted, RateLimited, StackBusy) as exc:
            # Deferred at once, never unsent: another worker could claim and send it
            # again before the halt reaches the run.
            self.ledger.release(batch, jr.DEFERRED, str(exc))
            raise Halt(exc, defer=True, n_deferred=len(urls)) from exc
        except UnknownOutcome as exc:
            self._unknown(batch, exc, retries or RetryBudget(self.session.policy), resent=resent)
        except InvalidRequest as exc:
            self._invalid(batch, exc)
        except BatchTooLarge as exc:
            if len(urls) == 1:  # refused even alone: no smaller batch to send
                self._fail(batch, f"refused even alone: {exc}", exc)
                return
            size = exc.limit if exc.limit and exc.limit < len(urls) else max(1, len(urls) // 2)
            with self._lock:
                self.cap = min(self.cap or size, size)
            self.out.detail(f"{self.alias}: batch size lowered to {size}: {exc}")
            self._send_in_parts(batch, size)
        except (AuthError, ConfigError) as exc:
            self.ledger.release(batch, jr.UNSENT)
            raise Halt(exc) from exc
        except RetryableError as exc:
            self._fail(batch, f"gave up: {exc}", exc)
        except ProviderError as exc:
            self._fail(batch, str(exc), exc)
        else:
            if self.gate is not None:
                self.gate.settle(0, result.quota)
            if result.failed and result.retry:
                self._failed(batch, result, retries or RetryBudget(self.session.policy))
                return
            self.ledger.answered(batch, result)
            self.advance(len(result.accepted) + len(result.rejected) + len(result.failed))

    def _failed(self, batch: jr.Batch, result: BatchResult, retries: RetryBudget) -> None:
        """Some URLs did not go through: the rest is recorded, those are sent again, alone,
        within the retry policy; what still fails then is recorded failed."""
        n_failed = len(result.failed)
        first_url, first = next(iter(result.failed.items()))
        if result.retry_after is not None and result.retry_after > retries.left():
            self._defer_failed(batch, result, f"{first_url}: {first}")
        # Retry-After as a floor: it came with some of the failed URLs' answers, maybe not all.
        wait = retries.next_wait(result.retry_after, at_least=True)
        if wait is None:
            self.ledger.answered(batch, result)
            self.advance(len(result.accepted) + len(result.rejected) + n_failed)
            with self._lock:
                self.errors.append(
                    TargetsFailed(
                        f"{counted(n_failed, 'URL')} failed after retries"
                        + (
                            f", {first_url} first: {first}"
                            if n_failed > 1
                            else f": {first_url}: {first}"
                        ),
                        provider=self.alias,
                    )
                )
            return
        part, rest = self.ledger.split(batch, list(result.failed))
        self.ledger.answered(rest, replace(result, failed={}))
        self.advance(len(result.accepted) + len(result.rejected))
        self.out.detail(
            f"{self.alias}: retrying {counted(n_failed, 'URL')} in {wait:.1f}s: {first}"
        )
        self._send_after(part, wait, retries)

    def _send_after(
        self, part: jr.Batch, wait: float, retries: RetryBudget, *, unknown: str | None = None
    ) -> None:
        """Sends ``part`` again after ``wait`` seconds, within what is left of ``retries``
        (queued in ``later`` if there is one); stopped while waiting, it is released as it
        stands: unsent (nothing of it went out again), or unknown where the vendor may hold
        it (``unknown``: why), so that only --resume --force sends it again."""
        if self.later is not None:
            if self.stop.is_set():
                self._release_stopped(part, unknown)
                raise Interrupted("stopped")
            self.later.put(part, wait, retries, unknown)
            return
        try:
            wait_for(self.stop, wait)
        except Interrupted:
            self._release_stopped(part, unknown)
            raise
        self.send(part, retries)

    def release_waiting(self) -> None:
        """The parts still waiting in ``later`` when the run stops are released as they
        stand (see _send_after); left *sending* where the journal cannot say so, for
        --resume to look up."""
        if self.later is None:
            return
        for part, unknown in self.later.drain():
            with suppress(JournalError):
                self._release_stopped(part, unknown)

    def _release_stopped(self, part: jr.Batch, unknown: str | None) -> None:
        if unknown is None:
            self.ledger.release(part, jr.UNSENT)
        else:
            self.ledger.release(part, jr.UNKNOWN, _resend_forced(unknown))

    def _defer_failed(self, batch: jr.Batch, result: BatchResult, first: str) -> None:
        """Asked to wait longer than the retries have left (a Retry-After of an hour): the
        rest is recorded, the failed URLs and the provider's unsent ones wait for --resume.
        ``first``: the first failed URL and its reason (a provider names first the one that
        asked for the wait, where it knows)."""
        part, rest = self.ledger.split(batch, list(result.failed))
        self.ledger.answered(rest, replace(result, failed={}))
        self.advance(len(result.accepted) + len(result.rejected))
        wait = result.retry_after or 0.0
        until = (datetime.now(UTC) + timedelta(seconds=wait)).strftime("%H:%M:%S UTC")
        exc = RateLimited(
            f"asked to wait {wait:.0f}s (until {until}), longer than the retries have left: {first}"
            if wait >= 10
            else f"asked to wait {wait:.1f}s, longer than the retries have left: {first}",
            provider=self.alias,
            retry_after=result.retry_after,
        )
        self.ledger.release(part, jr.DEFERRED, str(exc))
        raise Halt(exc, defer=True, n_deferred=len(part.urls))

    def _retry_note(self, n_urls: int) -> Callable[[Exception, float], None]:
        told = False

        def note(exc: Exception, wait: float) -> None:
            nonlocal told
            if not told:  # once per batch: -v shows that prewarm is retrying, not each try
                told = True
                what = "purge" if self.purge else "request"
                self.out.detail(
                    f"{self.alias}: retrying a {what} of {counted(n_urls, 'URL')}"
                    f" in {wait:.1f}s: {exc}"
                )

        return note

    def _fail(self, batch: jr.Batch, reason: str, exc: PrewarmError) -> None:
        """The batch failed after retries: its URLs failed, the run goes on (exit 4 unless
        nothing at all was accepted)."""
        self.ledger.release(batch, jr.FAILED, reason, transient=True)
        self.advance(len(batch.urls))
        failed = TargetsFailed(
            f"{counted(len(batch.urls), 'URL')} failed: {reason}",
            hint=exc.hint,
            provider=exc.provider or self.alias,
            request_id=exc.request_id,
        )
        with self._lock:
            self.errors.append(failed)

    def _send_in_parts(self, batch: jr.Batch, size: int) -> None:
        """Sends ``batch`` as parts of ``size`` URLs, each a batch of its own."""
        rest = batch
        try:
            while len(rest.urls) > size and not self.stop.is_set():
                part, rest = self.ledger.split(rest, rest.urls[:size])
                self.send(part)
        except BaseException:
            self._release_quietly(rest)
            raise
        if self.stop.is_set():
            self.ledger.release(rest, jr.UNSENT)  # recorded, never sent: safe to send later
            return
        self.send(rest)

    def _release_quietly(self, batch: jr.Batch) -> None:
        # If the journal fails too, the batch stays *sending*: --resume looks it up.
        with suppress(JournalError):
            self.ledger.release(batch, jr.UNSENT)

    def _invalid(self, batch: jr.Batch, exc: InvalidRequest) -> None:
        """Rejects only the URLs the vendor names; unnamed, halves the batch to find them."""
        urls = list(batch.urls)
        named = {u: r for u, r in (exc.urls or {}).items() if u in set(urls)}
        if named:
            resend = tuple(u for u in urls if u not in named)
            self.ledger.answered(batch, BatchResult(None, (), rejected=named, resend=resend))
            self.advance(len(named))
        elif len(urls) == 1:
            self.ledger.answered(batch, BatchResult(None, (), rejected={urls[0]: exc.message}))
            self.advance(1)
        else:
            self._send_in_parts(batch, (len(urls) + 1) // 2)

    # -- unknown outcomes --

    def _unknown(
        self, batch: jr.Batch, exc: UnknownOutcome, retries: RetryBudget, *, resent: bool
    ) -> None:
        named = [u for u in batch.urls if u in exc.rejected]
        if named:  # refused by name in an answer that is otherwise not known: never resent
            refused, rest = (
                self.ledger.split(batch, named) if len(named) < len(batch.urls) else (batch, None)
            )
            rejected = {u: exc.rejected[u] for u in named}
            self.ledger.answered(refused, BatchResult(None, accepted=(), rejected=rejected))
            self.advance(len(named))
            if rest is None:
                return
            batch = rest
        if self.purge:
            # Purging twice only costs quota: an unanswered purge is sent once more.
            if resent:
                self._fail(batch, f"no answer to the purge: {exc}", exc)
            else:
                self.send(batch, retries, resent=True)
            return
        reason = f"the vendor's answer is not known ({exc})"
        self.ledger.unknown(batch, reason)
        # Its request left before this reply, however long retries or pacing delayed it.
        self.resolve(batch, reason, last_sent=datetime.now(UTC), retries=(retries, exc))

    def resolve(
        self,
        batch: jr.Batch,
        reason: str,
        *,
        last_sent: datetime | None = None,
        retries: tuple[RetryBudget, PrewarmError] | None = None,
    ) -> None:
        """An unknown batch: looked up where the vendor can; found URLs accepted, the rest resent.

        Without a lookup it stays unknown, unless --force sends it again. ``last_sent``: when
        its request left, at the latest; by default when this sender began (a batch left
        unknown by an earlier run was sent before that run stopped). ``retries``: for a
        request this run sent, the retry policy's budget left and the error; the URLs not
        found are sent again within it (a vendor answering every request with a 5xx would
        otherwise be asked again and again), then recorded failed, or left unknown where no
        lookup could tell (see ``_send_again``).
        """
        if not batch.urls:
            self.ledger.found(batch, {})
            return
        lookup_failed = False
        if Capability.LOOKUP in self.session.capabilities:
            try:
                found = self._look_up(batch, last_sent or self.started)
            except Interrupted:
                raise  # still unknown in the ledger: the next --resume looks again
            except PrewarmError as lookup_exc:
                self.out.warn(f"{self.alias}: lookup failed: {lookup_exc}")
                lookup_failed = True
            else:
                missing = [u for u in batch.urls if u not in found]
                part = None
                if missing and retries is not None:
                    part, batch = self.ledger.split(batch, missing)
                self.ledger.found(batch, found)
                self.advance(len(found))
                if found:
                    self.out.detail(
                        f"{self.alias}: {counted(len(found), 'URL')} of an unanswered request"
                        " were found at the vendor"
                    )
                if part is not None and retries is not None:
                    reason = f"{reason}, and not found at the vendor"
                    self._send_again(part, reason, *retries, known_missing=True)
                return
        if self.force:
            if retries is not None:
                # This run's request: sent again unknown, as --force asks, but within its
                # retry policy (a vendor answering every request with a 5xx, its lookup too,
                # would otherwise be asked again and again).
                why = "and the lookup failed" if lookup_failed else "and nothing can look it up"
                self._send_again(batch, f"{reason}, {why}", *retries, known_missing=False)
                return
            self.ledger.release(batch, jr.UNSENT)  # left unknown by an earlier run: once more
            return
        self._leave_unknown(batch, reason)

    def _leave_unknown(self, batch: jr.Batch, reason: str) -> None:
        """Recorded unknown: the vendor may hold it; only --resume --force sends it again."""
        self.ledger.release(batch, jr.UNKNOWN, _resend_forced(reason))
        self.advance(len(batch.urls))

    def _send_again(
        self,
        part: jr.Batch,
        reason: str,
        retries: RetryBudget,
        cause: PrewarmError,
        *,
        known_missing: bool,
    ) -> None:
        """Sends the URLs of an unanswered request again (``reason``: why they are not known
        to be held), after the retry policy's next wait. Once the policy is spent they are
        failed when a lookup found them missing (``known_missing``), else still unknown: a
        plain --resume must not send what the vendor may hold."""
        wait = retries.next_wait(None)
        if wait is None:
            if known_missing:
                self._fail(part, f"{reason}, after retries", cause)
            else:
                self._leave_unknown(part, f"{reason}, after retries")
            return
        self.out.detail(
            f"{self.alias}: sending {counted(len(part.urls), 'URL')} of an unanswered request"
            f" again in {wait:.1f}s ({reason})"
        )
        self._send_after(part, wait, retries, unknown=None if known_missing else reason)

    def _look_up(self, batch: jr.Batch, last_sent: datetime) -> dict[str, str]:
        """Which of the batch's URLs the vendor holds; asks again once the vendor's lists settle.

        A vendor may list an accepted request only seconds later: what a first lookup
        misses is looked up again ``Limits.lookup_settle`` seconds after ``last_sent``.
        """
        created = datetime.strptime(batch.created_at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        since = created - LOOKUP_SKEW
        wanted = list(batch.urls)
        find = self.session.provider.find_submitted
        found = {u: t for u, t in self.session.call(find, wanted, since).items() if u in wanted}
        missing = [u for u in wanted if u not in found]
        settle = self.session.limits().lookup_settle
        if missing and settle > 0:
            age = (datetime.now(UTC) - max(created, last_sent)).total_seconds()
            if age < settle:
                if self.stop.wait(settle - age):
                    raise Interrupted("stopped while waiting for the vendor's lists")
                again = self.session.call(find, missing, since)
                found.update({u: t for u, t in again.items() if u in set(missing)})
        # A task another job recorded holds its URLs from before this batch (a run minutes
        # ago that warmed them, then purged by this job's --invalidate): this batch's URLs
        # are not in it, and are sent again.
        theirs = self.ledger.tasks_of_other_jobs(self.alias, set(found.values()))
        return {u: t for u, t in found.items() if t not in theirs}


def _resend_forced(reason: str) -> str:
    """An unknown outcome's reason, with what to do about it."""
    return f"{reason}; check the vendor's console, then resend with --resume --force"


def wait_for(stop: threading.Event, seconds: float) -> None:
    """Sleeps ``seconds`` unless stopped; raises pacing's Interrupted when stopped."""
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        if stop.wait(min(left, 0.2)):
            raise Interrupted("stopped")
