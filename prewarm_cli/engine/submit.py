"""`submit`: runs or resumes a job, purging first with --invalidate; its summary and exit code."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from typing import Any

from prewarm_cli import journal as jr
from prewarm_cli.engine.intake import (
    SubmitRequest,
    check_invalidate,
    intake,
    same_vendor,
    vendor_of,
)
from prewarm_cli.engine.lock import JobLock
from prewarm_cli.engine.prefetch import SubmitRun
from prewarm_cli.engine.purge import invalidate
from prewarm_cli.engine.status import job_status, journal_ref, settled
from prewarm_cli.engine.workspace import ProviderSession, Workspace
from prewarm_cli.errors import (
    ExitCode,
    NotFoundError,
    PrewarmError,
    QuotaExhausted,
    StackBusy,
    UsageError,
    UserInterrupt,
    exit_for,
    worst_exit,
)
from prewarm_cli.output import counted
from prewarm_cli.plugin import Capability, SubmitOptions, unhonoured_options
from prewarm_cli.results import JobState, ProviderCounts, SubmitSummary, TargetFailure, TaskRow


def submit(
    ws: Workspace, req: SubmitRequest, *, resume: str | None = None
) -> tuple[SubmitSummary, ExitCode]:
    """Runs (or resumes) a job; returns the submit summary and its exit code.

    The job is locked for this process while it sends (DESIGN.md §8: one process per job).
    """
    journal = ws.journal
    if resume:
        try:
            job = journal.job(resume)
        except NotFoundError as exc:  # a vendor's task cannot be resumed: only a job
            raise NotFoundError(exc.message, hint="`prewarm jobs` lists recent jobs") from None
        if job.state == JobState.CREATED:
            raise UsageError(
                f"job {job.id} never finished reading its input; submit the URLs again"
            )
        lock = JobLock(ws.state_dir, job.id)
        lock.acquire()  # before anything of the job changes
        options = SubmitOptions(
            headers=tuple((str(h[0]), str(h[1])) for h in job.options.get("headers", [])),
            invalidate=bool(job.options.get("invalidate")),
            force=req.options.force,
            extra=job.options.get("extra", {}),
        )
        job_id = job.id
        aliases = list(job.providers)
        try:
            for alias in aliases:
                ws.session(alias)  # a config error (an alias gone) is said first, as exit 3
                _check_same_vendor(ws, job, alias)
                _check_same_settings(ws, job, alias, options)
            journal.prepare_resume(job.id)
        except BaseException:
            lock.release()
            raise
    else:
        # Locked before the job exists: a `status` meanwhile sees it worked on, not abandoned.
        job_id = jr.new_job_id()
        lock = JobLock(ws.state_dir, job_id)
        lock.acquire()
        options = req.options

        def settings_of(alias: str) -> Mapping[str, Any]:
            """The options checked, the provider made ready (its SDK: a missing one leaves no
            job behind), and what --resume holds the job to."""
            provider = ws.session(alias).provider
            provider.check_options(options)
            provider.prepare()
            return _as_json(provider.job_settings(options))

        try:
            intake(ws, journal, req, job_id, settings_of)
            job = journal.job(job_id)
            aliases = list(job.providers)
            try:
                for alias in aliases:
                    _check_limits(ws.session(alias))
                check_invalidate(ws, aliases, options)
                for alias in aliases:
                    # No request left to ask with: the run defers what it cannot send.
                    with suppress(QuotaExhausted):
                        check_busy(ws, job_id, [alias])
            except BaseException:
                journal.delete_job(job_id)  # nothing was sent: leave no job behind
                raise
        except BaseException:
            lock.release()  # the job is gone (intake deletes it on its own errors too)
            raise
    try:
        for alias in aliases:  # an option a provider cannot honour is said, not dropped
            for note in unhonoured_options(ws.session(alias).provider, options):
                ws.out.warn(f"{alias}: {note}")
        return _run(ws, job_id, job.urls, aliases, options, resumed=bool(resume))
    finally:
        lock.release()


def _looks_up(ws: Workspace, alias: str) -> bool:
    """Whether the provider can tell which URLs of a request whose answer was lost it has."""
    return Capability.LOOKUP in ws.session(alias).capabilities


def _run(
    ws: Workspace,
    job_id: str,
    n_urls: int,
    aliases: Sequence[str],
    options: SubmitOptions,
    *,
    resumed: bool,
) -> tuple[SubmitSummary, ExitCode]:
    journal = ws.journal
    counts = journal.counts(job_id)
    # Unknown outcomes are looked up (LOOKUP) and the missing sent, or sent again with
    # --force; otherwise they stay unknown, and the run's last line says so.
    to_send = sum(
        c[jr.UNSENT]
        + (c[jr.UNKNOWN] if c[jr.UNKNOWN] and (options.force or _looks_up(ws, alias)) else 0)
        for alias, c in counts.items()
    )
    to = ", ".join(aliases)
    if not resumed:
        ws.out.info(f"job {job_id} started ({counted(n_urls, 'URL')}, {to})")
    elif to_send:
        ws.out.info(
            f"job {job_id}: resumed, {to_send:,} of {counted(n_urls, 'URL')} to send ({to})"
        )
    elif any(c[jr.UNKNOWN] for c in counts.values()):
        ws.out.info(f"job {job_id}: resumed, nothing to send ({counted(n_urls, 'URL')}, {to})")
    else:
        ws.out.info(f"job {job_id}: nothing left to send ({counted(n_urls, 'URL')}, {to})")
    journal.set_state(job_id, JobState.SUBMITTING)
    run: SubmitRun | None = None
    errors: dict[str, PrewarmError] = {}
    try:
        with _run_notes_after(ws, aliases), ws.out.progress(to_send, "submitting") as progress:
            if options.invalidate:
                errors.update(invalidate(ws, job_id, aliases, options, progress))
            run = SubmitRun(ws, job_id, options, progress)
            run.run(aliases)
    except KeyboardInterrupt:
        ws.stop.set()
        # The state of each batch in the journal is what --resume reads; this is a label.
        with suppress(PrewarmError):
            journal.set_state(job_id, JobState.INTERRUPTED)
        raise UserInterrupt(
            f"interrupted; job {job_id} is saved",
            hint=f"prewarm submit --resume {job_id} sends what was not accepted"
            " (requests that were in flight are looked up first)",
            job_id=job_id,
        ) from None
    except PrewarmError as exc:
        with suppress(PrewarmError):
            journal.set_state(job_id, _submit_state(journal.counts(job_id)))
        raise _naming_job(exc, job_id) from None
    summary = submit_summary(ws, job_id)
    journal.set_state(job_id, _final_state(ws, summary, aliases))
    errors.update(run.errors if run else {})
    for alias, error in errors.items():
        error = _naming_job(error, job_id)
        ws.out.warn(f"{alias}: {error}")
        if error.hint:
            ws.out.info(f"hint: {error.hint}")
    n_rejected, n_failed = len(summary.rejected), len(summary.failed)
    # A target is a (URL, provider) pair: with one provider, a URL.
    unit = "URL" if len(aliases) == 1 else "target"
    if n_rejected or n_failed:  # what became of them, and where to see why, in every format
        what = ", ".join(
            f"{n:,} {word}" for n, word in ((n_rejected, "rejected"), (n_failed, "failed")) if n
        )
        again = ""
        if n_failed and journal.n_failed_to_resend(job_id):
            again = f"; `prewarm submit --resume {job_id}` sends the failed again"
        ws.out.info(
            f"{counted(n_rejected + n_failed, unit)} not accepted ({what}):"
            f" `prewarm report {job_id}` lists why{again}"
        )
    if summary.deferred:
        ws.out.info(
            f"{counted(summary.deferred, unit)} deferred: send"
            f" {'it' if summary.deferred == 1 else 'them'} later with"
            f" `prewarm submit --resume {job_id}`"
        )
    # Where the vendor can be asked which it holds, a --resume asks again; elsewhere only the
    # vendor's console can tell, and --force resends.
    n_looked_up = sum(
        c.unknown for alias, c in summary.providers.items() if c.unknown and _looks_up(ws, alias)
    )
    if n_looked_up:
        ws.out.info(
            f"{counted(n_looked_up, unit)} with an unknown outcome: `prewarm submit --resume"
            f" {job_id}` asks the vendor again which it holds, and sends the others"
        )
    if summary.unknown > n_looked_up:
        ws.out.info(
            f"{counted(summary.unknown - n_looked_up, unit)} with an unknown outcome: check"
            f" the vendor's console, then `prewarm submit --resume {job_id} --force` resends"
            " them"
        )
    return summary, submit_exit(summary, errors)


@contextmanager
def _run_notes_after(ws: Workspace, aliases: Sequence[str]) -> Iterator[None]:
    """The providers' notes on what they sent, once sending ends however it ends: before the
    job's outcome and next step, which the run's last lines say."""
    try:
        yield
    finally:
        for alias in aliases:
            with suppress(PrewarmError):  # a provider that could not be built sent nothing
                for line in ws.session(alias).provider.run_notes():
                    ws.out.info(f"{alias}: {line}")


def _final_state(ws: Workspace, summary: SubmitSummary, aliases: Sequence[str]) -> str:
    """The job's state once submit ends: the submit's, or, where every provider is done with
    what it accepted when it answers (direct warming), how the job ended, as `status` says."""
    state = summary.state
    if state == JobState.SUBMITTED and all(ws.finished_in_submit(a) for a in aliases):
        state = JobState.PARTIAL if summary.rejected or summary.failed else JobState.SUCCEEDED
    return str(state)


def _check_same_vendor(ws: Workspace, job: jr.Job, alias: str) -> None:
    """A job resumes where it began: an alias now of another type or endpoint would be sent
    the rest, and asked about batches the first vendor may have taken (jobs made before the
    job remembered its vendors are not checked)."""
    was = job.options.get("vendors", {}).get(alias)
    now = vendor_of(ws, alias)
    if was is not None and not same_vendor(was, now):
        raise UsageError(
            f"job {job.id} was sent to {alias} as {was}; the config now makes it {now}",
            hint="resume it with the configuration it began with, or submit the URLs"
            " again as a new job",
        )


def _check_same_settings(ws: Workspace, job: jr.Job, alias: str, options: SubmitOptions) -> None:
    """A job resumes as it began: settings of the alias that decide what it warms (direct's
    PoPs and variants) and that the config now makes otherwise are refused, each named."""
    was = job.options.get("settings", {}).get(alias)
    if not was:
        return  # none, or a job made before jobs remembered them
    now = _as_json(ws.session(alias).provider.job_settings(options))
    changed = [key for key in sorted({*was, *now}) if was.get(key) != now.get(key)]
    if changed:
        import json

        def said(values: Mapping[str, Any]) -> str:
            return ", ".join(f"{key} = {json.dumps(values.get(key))}" for key in changed)

        raise UsageError(
            f"job {job.id} began with {alias}'s {said(was)}; the config now makes it {said(now)}",
            hint=f"put them back in [providers.{alias}] to resume it, or submit the URLs again"
            " as a new job",
        )


def _as_json(settings: Mapping[str, Any]) -> dict[str, Any]:
    """A provider's job settings as the job keeps them (JSON: a tuple is a list)."""
    import json

    loaded: dict[str, Any] = json.loads(json.dumps(dict(settings)))
    return loaded


def _naming_job(exc: PrewarmError, job_id: str) -> PrewarmError:
    """The error with the job it leaves behind (``job_id``, in its JSON too), and the job's id
    where its words say ``--resume JOB`` (a provider or the pacer, which do not know which job
    they work for, name the command that way)."""
    exc.job_id = job_id
    placeholder = "--resume JOB"
    if placeholder in exc.message or placeholder in (exc.hint or ""):
        exc.message = exc.message.replace(placeholder, f"--resume {job_id}")
        exc.hint = exc.hint.replace(placeholder, f"--resume {job_id}") if exc.hint else None
        exc.args = (exc.message,)
    return exc


def check_busy(ws: Workspace, job_id: str, aliases: Sequence[str]) -> None:
    """Refuses a second job on a provider that runs one job at a time, unless --force."""
    for alias in aliases:
        session = ws.session(alias)
        if not session.provider.one_job_at_a_time or ws.force:
            continue
        _check_busy(ws, session, job_id)


def _check_busy(ws: Workspace, session: ProviderSession, job_id: str) -> None:
    """StackBusy while another job of this journal, or of the vendor, runs there."""
    alias = session.alias
    for job in ws.journal.busy_jobs(alias, exclude=job_id):
        ref = journal_ref(ws, job.id)
        if not ref.tasks.get(alias):
            continue  # that job never reached the vendor
        # The journal only knows what was last seen: ask the vendor before refusing.
        status = job_status(ws, ref)
        if not settled(status):
            raise StackBusy(
                f"{alias} runs one job at a time and job {job.id} is still {status.state}",
                hint=f"wait with `prewarm status {job.id} --wait`, or pass --force",
                provider=alias,
            )
    in_progress = session.call(session.provider.busy)
    if in_progress:
        raise StackBusy(
            f"{alias} runs one job at a time and is busy: {in_progress}",
            hint="wait until it finishes, or pass --force",
            provider=alias,
        )


def _submit_state(counts: Mapping[str, jr.Counts]) -> JobState:
    total = jr.Counts()
    for c in counts.values():
        total.add(c)
    if total[jr.UNSENT] + total[jr.DEFERRED] + total[jr.UNKNOWN] + total[jr.SENDING]:
        return JobState.INCOMPLETE
    if total[jr.ACCEPTED] == 0:
        return JobState.FAILED
    return JobState.SUBMITTED


def _check_limits(session: ProviderSession) -> None:
    """A batch_size or rate above the vendor's limits is refused before the job is kept.
    Any other error on the way (a key refused, no network, a zone not found) is said when
    the run asks again: the job is kept, its URLs read, for --resume."""
    try:
        session.limits()
    except PrewarmError as exc:
        if exc is session.over_limit:
            raise


def submit_summary(ws: Workspace, job_id: str) -> SubmitSummary:
    """The submit JSON of DESIGN.md §5, from the journal."""
    journal = ws.journal
    job = journal.job(job_id)
    counts = journal.counts(job_id)
    total = jr.Counts()
    for c in counts.values():
        total.add(c)
    failures = journal.targets(job_id, [jr.REJECTED, jr.FAILED])
    return SubmitSummary(
        job_id=job.id,
        state=_submit_state(counts),
        n_urls=job.urls,
        total=total.total,
        accepted=total[jr.ACCEPTED],
        rejected=tuple(
            TargetFailure(r["url"], r["provider"], r["reason"])
            for r in failures
            if r["outcome"] == jr.REJECTED
        ),
        failed=tuple(
            TargetFailure(r["url"], r["provider"], r["reason"])
            for r in failures
            if r["outcome"] == jr.FAILED
        ),
        deferred=total[jr.DEFERRED] + total[jr.UNSENT],
        unknown=total[jr.UNKNOWN] + total[jr.SENDING],
        skipped=tuple(job.skipped),
        n_skipped=job.n_skipped,
        tasks=tuple(TaskRow(t.provider, t.task_id, t.urls) for t in journal.tasks(job_id)),
        providers={
            alias: ProviderCounts(
                total=c.total,
                accepted=c[jr.ACCEPTED],
                rejected=c[jr.REJECTED],
                failed=c[jr.FAILED],
                deferred=c[jr.DEFERRED] + c[jr.UNSENT],
                unknown=c[jr.UNKNOWN] + c[jr.SENDING],
                details=ws.session(alias).provider.submit_details(),
            )
            for alias, c in sorted(counts.items())
        },
        created_at=job.created_at,
    )


def submit_exit(summary: SubmitSummary, errors: Mapping[str, PrewarmError]) -> ExitCode:
    """The summary's outcomes, and the errors that stopped a provider: a quota error is
    already its deferred targets, and a vendor refusal after our validation is a rejection
    (DESIGN.md §6), not a usage error."""
    codes: set[ExitCode] = {
        e.exit_code for e in errors.values() if e.exit_code not in (ExitCode.QUOTA, ExitCode.USAGE)
    }
    codes.add(exit_for(summary.outcomes()))
    return worst_exit(codes)
