"""`submit --invalidate`: purge first, through the same batch sender, and wait until done.

A URL whose purge failed is not prefetched: a late purge would evict the warm copy.
Purges are idempotent (purging twice costs quota, nothing else), so they are kept in
memory: a resumed job purges its unsent URLs again.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence

from prewarm_cli import journal as jr
from prewarm_cli.engine.sender import BatchSender, Halt, Ledger, wait_for
from prewarm_cli.engine.workspace import Workspace
from prewarm_cli.errors import PrewarmError
from prewarm_cli.output import Progress
from prewarm_cli.pacing import Interrupted
from prewarm_cli.plugin import BatchResult, Capability, Provider, State, SubmitOptions

PURGE_WAIT_SECONDS = 600.0  # how long --invalidate waits for purges before prefetching


class PurgeLedger(Ledger):
    """One provider's purges of a job: tasks to wait for, URLs to purge again, failures."""

    def __init__(self, ws: Workspace, job_id: str, alias: str, urls: Sequence[str]) -> None:
        self.ws = ws
        self.job_id = job_id
        self.alias = alias
        self.pending: deque[str] = deque(urls)
        self.tasks: dict[str, list[str]] = {}  # purge task -> its URLs

    def answered(self, batch: jr.Batch, result: BatchResult) -> None:
        if result.rejected:
            self.fail(result.rejected, transient=False)
        if result.failed:
            self.fail(result.failed, transient=True)
        self.pending.extendleft(reversed(result.resend))
        per_task: dict[str, list[str]] = {}
        for url in result.accepted:
            task_id = result.task_of(url)
            if task_id:
                per_task.setdefault(task_id, []).append(url)
        for task_id, urls in per_task.items():
            self.tasks.setdefault(task_id, []).extend(urls)
            self.ws.journal.add_task(self.job_id, self.alias, task_id, len(urls), "purge")

    def split(self, batch: jr.Batch, part: Sequence[str]) -> tuple[jr.Batch, jr.Batch]:
        wanted = set(part)
        rest = tuple(u for u in batch.urls if u not in wanted)
        return (
            jr.Batch(0, batch.provider, tuple(part), batch.created_at),
            jr.Batch(0, batch.provider, rest, batch.created_at),
        )

    def release(
        self, batch: jr.Batch, outcome: str, reason: str | None = None, *, transient: bool = True
    ) -> None:
        if outcome in (jr.UNSENT, jr.DEFERRED):  # purges are not resumed: sent again later
            self.pending.extendleft(reversed(batch.urls))
        else:
            self.fail(dict.fromkeys(batch.urls, reason or outcome), transient=transient)

    def unknown(self, batch: jr.Batch, reason: str) -> None:
        self.fail(dict.fromkeys(batch.urls, reason), transient=True)

    def found(self, batch: jr.Batch, found: Mapping[str, str]) -> None:
        raise AssertionError("purges are resent, never looked up")

    def fail(self, failed: Mapping[str, str], *, transient: bool) -> None:
        for url, reason in failed.items():
            self.ws.journal.set_outcome(
                self.job_id, self.alias, [url], jr.FAILED, f"purge failed: {reason}",
                transient=transient,
            )  # fmt: skip


def invalidate(
    ws: Workspace,
    job_id: str,
    aliases: Sequence[str],
    options: SubmitOptions,
    progress: Progress,
) -> dict[str, PrewarmError]:
    """Purges the job's unsent URLs first and waits (bounded) until each purge is done.

    A provider whose purges are deferred (its purge quota is spent, it is rate limited
    beyond the retries) has the URLs it did not purge deferred, not prefetched: a late purge
    would evict the warm copy; those it purged are prefetched. Returns why, per alias; the
    other providers go on.
    """
    deferred: dict[str, PrewarmError] = {}
    for alias in aliases:
        session = ws.session(alias)
        if session.provider.invalidates_in_submit:
            continue  # the prefetch request carries options.invalidate
        if Capability.INVALIDATE not in session.capabilities:
            ws.out.warn(f"{alias} cannot invalidate; its URLs are prefetched only")
            continue
        urls = [r["url"] for r in ws.journal.iter_unsent(job_id, alias)]
        ledger = PurgeLedger(ws, job_id, alias, urls)
        sender = BatchSender(
            session,
            ledger,
            _purge(session.provider, options),
            out=ws.out,
            advance=lambda n: None,  # progress counts prefetches
            stop=ws.stop,
            purge=True,
        )
        size = min(session.limits().invalidate_batch or session.batch_size, session.batch_size)
        try:
            while ledger.pending:
                chunk = [ledger.pending.popleft() for _ in range(min(size, len(ledger.pending)))]
                sender.send(jr.Batch(0, alias, tuple(chunk), jr.utcnow()))
                size = min(size, sender.batch_size)
            _wait_for_purges(ws, sender, ledger)
        except Halt as halt:
            if not halt.defer:
                raise halt.error from halt
            deferred[alias] = halt.error
            # Those not purged wait for --resume; those purged are prefetched once done.
            not_purged = list(ledger.pending)
            ws.journal.set_outcome(job_id, alias, not_purged, jr.DEFERRED, str(halt.error))
            progress.advance(len(not_purged))
            try:
                _wait_for_purges(ws, sender, ledger)
            except Interrupted as exc:
                raise KeyboardInterrupt from exc
        except Interrupted as exc:
            raise KeyboardInterrupt from exc
    return deferred


def _purge(provider: Provider, options: SubmitOptions) -> Callable[[list[str]], BatchResult]:
    def request(urls: list[str]) -> BatchResult:
        return provider.invalidate_batch(urls, options)

    return request


def _wait_for_purges(ws: Workspace, sender: BatchSender, ledger: PurgeLedger) -> None:
    session = sender.session
    deadline = time.monotonic() + PURGE_WAIT_SECONDS
    while ledger.tasks and time.monotonic() < deadline:
        statuses = session.call(session.provider.fetch_invalidation_status, list(ledger.tasks))
        for st in statuses:
            if not st.state.finished:
                continue
            urls = ledger.tasks.pop(st.task_id, [])
            failed = {
                u.url: u.reason or str(u.state) for u in st.urls if u.state != State.SUCCEEDED
            }
            if st.state != State.SUCCEEDED and not failed:
                failed = dict.fromkeys(urls, st.raw_state or str(st.state))
            ledger.fail(failed, transient=False)  # the vendor's verdict on those URLs
        if ledger.tasks:
            wait_for(ws.stop, session.limits().poll_interval)
    for urls in ledger.tasks.values():
        ledger.fail(dict.fromkeys(urls, "did not finish in time"), transient=True)
