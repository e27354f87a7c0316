"""Sending a job's unsent targets: worker threads per provider, each batch through the sender.

Workers are daemon threads: on Ctrl-C the main thread stops waiting at once, and a
request in flight stays *sending* in the journal, for ``--resume`` to look up.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import replace

from prewarm_cli.engine.sender import BatchSender, Halt, JournalLedger, QuotaGate, RetryQueue
from prewarm_cli.engine.workspace import ProviderSession, Workspace
from prewarm_cli.errors import JournalError, PrewarmError, QuotaExhausted
from prewarm_cli.output import Progress, counted
from prewarm_cli.pacing import Interrupted
from prewarm_cli.plugin import BatchResult, Capability, Provider, SubmitOptions

# How long the main thread lets workers settle after Ctrl-C before it returns anyway:
# a worker in a wait records its batch as unsent at once; one in a request cannot.
SETTLE_ON_INTERRUPT = 0.7


class SubmitRun:
    """Sends one job's unsent targets for every provider, concurrently and paced."""

    def __init__(
        self, ws: Workspace, job_id: str, options: SubmitOptions, progress: Progress
    ) -> None:
        self.ws = ws
        self.journal = ws.journal
        self.job_id = job_id
        self.options = replace(options, job_id=job_id)
        self.progress = progress
        self.stop = ws.stop
        self.errors: dict[str, PrewarmError] = {}
        self.fatal: BaseException | None = None
        self._halted: set[str] = set()
        self._lock = threading.Lock()
        self._running = 0
        self._all_done = threading.Event()
        self._started_tasks: dict[str, str | None] = {}  # per alias: Provider.started_task

    def run(self, aliases: Sequence[str]) -> None:
        sessions = [self.ws.session(a) for a in aliases]
        for session in sessions:
            session.require(Capability.SUBMIT)
        try:
            for session in sessions:
                session.provider.attach_job(self.job_id)
            self._send(sessions)
        finally:
            for session in sessions:
                session.provider.attach_job(None)

    def _send(self, sessions: Sequence[ProviderSession]) -> None:
        threads: list[threading.Thread] = []
        senders: list[BatchSender] = []
        for session in sessions:
            gate = self._quota_gate(session)
            sender = BatchSender(
                session,
                JournalLedger(self.journal, self.job_id),
                _prefetch(session.provider, self.options),
                out=self.ws.out,
                advance=self.progress.advance,
                stop=self.stop,
                force=session.force,
                gate=gate,
                # A quota gate admits a batch's retries with the batch: they are sent by the
                # worker that sent it (the admission settles once they are answered).
                later=RetryQueue() if gate is None else None,
            )
            senders.append(sender)
            self._resolve_unknown_batches(sender)
            self._started_tasks[session.alias] = session.provider.started_task()
            limits = session.limits()
            n_workers = 1 if limits.parallel_in_batch else limits.concurrency
            for i in range(n_workers):
                threads.append(
                    threading.Thread(
                        target=self._worker,
                        args=(sender,),
                        name=f"submit-{session.alias}-{i}",
                        daemon=True,
                    )
                )
        self._running = len(threads)
        for thread in threads:
            thread.start()
        try:
            # An Event, not Thread.join: a join interrupted by Ctrl-C can leave the thread
            # looking finished (CPython 3.11), and the short waits keep Ctrl-C responsive.
            while threads and not self._all_done.wait(0.2):
                self._show_notes(sessions)
        except KeyboardInterrupt:
            self.stop.set()  # every wait ends; requests in flight stay *sending*
            self._all_done.wait(SETTLE_ON_INTERRUPT)  # waiting workers record their release
            raise
        for sender in senders:
            if sender.errors and sender.alias not in self.errors:
                self.errors[sender.alias] = sender.errors[0]
        if self.fatal is not None:
            raise self.fatal

    def _show_notes(self, sessions: Sequence[ProviderSession]) -> None:
        """The providers' own figures beside the bar (direct: requests and bytes so far)."""
        notes = [(s.alias, s.provider.progress_note()) for s in sessions]
        shown = [f"{alias}: {note}" if len(notes) > 1 else note for alias, note in notes if note]
        if shown:
            self.progress.set_note("; ".join(shown))

    # -- before the workers --

    def _resolve_unknown_batches(self, sender: BatchSender) -> None:
        """Batches a previous run left unanswered (or a part of a split): looked up first."""
        for batch in self.journal.unknown_batches(self.job_id, sender.alias):
            try:
                sender.resolve(batch, "the run ended mid-request")
            except Interrupted as exc:
                raise KeyboardInterrupt from exc

    def _quota_gate(self, session: ProviderSession) -> QuotaGate | None:
        """Defers now what the vendor's daily quota cannot take; the gate keeps the rest safe."""
        if Capability.QUOTA not in session.capabilities:
            return None
        try:
            q = session.call(session.provider.quota)
        except Interrupted as exc:
            raise KeyboardInterrupt from exc
        except PrewarmError as exc:
            self.ws.out.detail(f"{session.alias}: quota unknown ({exc}); sending")
            return QuotaGate(None, probe=True)
        if q.source != "api":
            return QuotaGate(None, probe=True)  # a remembered figure may be stale: ask the vendor
        if q.remaining is None:
            return None  # no daily quota
        deferred = self.journal.defer_beyond(
            self.job_id,
            session.alias,
            q.remaining,
            f"daily quota: {counted(q.remaining, 'URL')} left"
            + (f", resets {q.resets_at}" if q.resets_at else ""),
        )
        if deferred:
            self.progress.advance(deferred)
            self.errors[session.alias] = QuotaExhausted(
                f"the daily quota allows {q.remaining} more; {counted(deferred, 'URL')} deferred",
                provider=session.alias,
                resets_at=q.resets_at,
            )
        return QuotaGate(q.remaining, probe=False)

    # -- one worker thread --

    def _worker(self, sender: BatchSender) -> None:
        try:
            self._work(sender)
        finally:
            with self._lock:
                self._running -= 1
                if self._running == 0:
                    self._all_done.set()

    def _work(self, sender: BatchSender) -> None:
        try:
            while not self.stop.is_set() and sender.alias not in self._halted:
                if not self._send_next(sender):
                    return
        finally:
            # Parts waiting for their retry are released as they stand (unsent, or unknown):
            # a worker that finds nothing left to send leaves the queue alone, as another
            # worker's batch may still add to it (that worker then sends it).
            if self.stop.is_set() or sender.alias in self._halted:
                sender.release_waiting()

    def _send_next(self, sender: BatchSender) -> bool:
        """Sends a part whose retry is due, else the next batch (or waits for the next
        retry when no batch is left); False when the worker is done."""
        alias = sender.alias
        due = sender.later.take_due() if sender.later is not None else None
        admitted = 0
        if due is None:
            wanted = sender.batch_size
            admitted = sender.gate.admit(wanted, self.stop) if sender.gate else wanted
            if admitted <= 0:
                if not self.stop.is_set():
                    self._quota_spent(sender)
                return False
        try:
            try:
                if due is not None:
                    sender.send(*due)
                    return True
                batch = self.journal.claim_batch(
                    self.job_id,
                    alias,
                    admitted,
                    sender.session.limits().max_batch_bytes,
                    self._started_tasks.get(alias),
                )
                if batch is None:
                    return sender.later is not None and sender.later.wait(
                        self.stop, lambda: alias in self._halted
                    )
                sender.send(batch)
            finally:
                if sender.gate is not None and admitted:
                    sender.gate.settle(admitted)
        except Halt as halt:
            sender.release_waiting()  # deferred with the rest of the provider's
            self._halt(sender, halt)
            return False
        except Interrupted:
            return False  # the sender released the batch: nothing went out
        except JournalError as exc:
            # The vendor may have taken the batch: it stays *sending* for --resume.
            self._stop_all(exc)
            return False
        except BaseException as exc:
            if self.stop.is_set():
                return False  # shutting down (Ctrl-C): what is in flight stays *sending*
            self._stop_all(
                exc
                if isinstance(exc, PrewarmError)
                else PrewarmError(f"{alias}: unexpected error: {exc!r}")
            )
            return False
        return True

    def _quota_spent(self, sender: BatchSender) -> None:
        try:
            deferred = self.journal.defer_unsent(self.job_id, sender.alias, "daily quota used up")
        except JournalError as exc:
            self._stop_all(exc)
            return
        self.progress.advance(deferred)
        with self._lock:
            self._halted.add(sender.alias)
            if deferred:
                self.errors.setdefault(
                    sender.alias,
                    QuotaExhausted(
                        f"the vendor's daily quota is used up; {counted(deferred, 'URL')} deferred",
                        provider=sender.alias,
                        hint=f"prewarm submit --resume {self.job_id} after the quota resets",
                    ),
                )

    def _halt(self, sender: BatchSender, halt: Halt) -> None:
        if not halt.defer:
            self._stop_all(halt.error)
            return
        with self._lock:
            self._halted.add(sender.alias)
            self.errors[sender.alias] = halt.error
        try:
            deferred = self.journal.defer_unsent(self.job_id, sender.alias, str(halt.error))
        except JournalError as exc:  # unsent targets stay unsent: --resume sends them
            self._stop_all(exc)
            return
        self.progress.advance(deferred + halt.n_deferred)

    def _stop_all(self, exc: BaseException) -> None:
        with self._lock:
            if self.fatal is None:
                self.fatal = exc
        self.stop.set()


def _prefetch(provider: Provider, options: SubmitOptions) -> Callable[[list[str]], BatchResult]:
    def request(urls: list[str]) -> BatchResult:
        return provider.submit_batch(urls, options)

    return request
