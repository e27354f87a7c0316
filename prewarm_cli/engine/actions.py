"""The smaller commands' work: report, jobs, quota, scale and cancel."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from prewarm_cli import journal as jr
from prewarm_cli.engine.lock import JobLock
from prewarm_cli.engine.status import JobRef, poll_interval
from prewarm_cli.engine.workspace import ProviderSession, Workspace
from prewarm_cli.errors import (
    ConfigError,
    ExitCode,
    NotYetCancellable,
    PrewarmError,
    ProviderError,
    UnsupportedError,
    UsageError,
    WaitTimeout,
    worst_exit,
)
from prewarm_cli.paths import create_private
from prewarm_cli.plugin import (
    Capability,
)
from prewarm_cli.results import JobReport, JobRow, JobState, ReportFailure


def _cancel_pause(
    ws: Workspace,
    ref: JobRef,
    session: ProviderSession,
    refused: NotYetCancellable,
    deadline: float | None,
    wait_timeout: float | None,
    clock: Callable[[], float],
) -> float:
    """How long to wait before asking again, or the error that ends the waiting."""
    job = ref.job_id or f"{session.alias}:{','.join(ref.tasks[session.alias])}"
    if deadline is None:
        hint = f"wait until it can be: prewarm cancel --wait {job}"
        raise NotYetCancellable(
            refused.message,
            hint=f"{refused.hint}; or {hint}" if refused.hint else hint,
            provider=refused.provider,
            request_id=refused.request_id,
        ) from refused
    left = deadline - clock()
    if left <= 0:
        raise WaitTimeout(
            f"{refused.message} (still, after {wait_timeout:g}s)",
            hint=f"try again later: prewarm cancel --wait {job}",
            provider=refused.provider,
        ) from refused
    return min(poll_interval(ws, ref, None), left)


def report(ws: Workspace, ref: JobRef) -> JobReport:
    """Every target that failed or was rejected, from the journal and the vendors."""
    from_vendors: list[ReportFailure] = []
    report_urls: dict[str, str] = {}
    stopped: dict[str, Mapping[str, str]] = {}  # per alias: its stopped tasks, and why
    for alias, task_ids in ref.tasks.items():
        if not task_ids:
            continue
        # The vendor's report, or the failures its status lists.
        session = ws.session(alias, needs=(Capability.REPORT, Capability.STATUS))
        rep = session.call(session.provider.report, task_ids)
        for f in rep.failures:
            from_vendors.append(ReportFailure(f.url, alias, f.pop, f.reason, "vendor"))
        if rep.report_url:
            report_urls[alias] = rep.report_url
        if rep.stopped_tasks:
            stopped[alias] = rep.stopped_tasks
    failures: list[ReportFailure] = []
    if ref.job_id:
        from_vendors = _as_the_job_has_them(ws, ref.job_id, from_vendors)
        from_vendors += _stopped_midway(ws, ref.job_id, stopped, from_vendors)
        # A URL the provider's own report names is listed there, in its detail (direct
        # warming's record: per PoP and variant), not a second time from the journal.
        named = {(f.provider, f.url) for f in from_vendors}
        for r in ws.journal.iter_targets(ref.job_id, [jr.REJECTED, jr.FAILED]):
            if (r["provider"], r["url"]) not in named:
                failures.append(ReportFailure(r["url"], r["provider"], None, r["reason"], "submit"))
    state = ws.journal.job(ref.job_id).state if ref.job_id else None
    return JobReport(
        job_id=ref.job_id,
        state=state,
        failures=(*failures, *from_vendors),
        report_urls=report_urls,
    )


def _stopped_midway(
    ws: Workspace,
    job_id: str,
    stopped: Mapping[str, Mapping[str, str]],
    named: Sequence[ReportFailure],
) -> list[ReportFailure]:
    """Each URL the job sent in a task that stopped before its vendor said which were warmed
    (none counts as warmed: `status` counts them failed), unless the vendor named it."""
    if not stopped:
        return []
    listed = {(f.provider, f.url) for f in named}
    return [
        ReportFailure(r["url"], alias, None, stopped[alias][r["task_id"]], "vendor")
        for alias in stopped
        for r in ws.journal.iter_targets(job_id, [jr.ACCEPTED], alias)
        if r["task_id"] in stopped[alias] and (alias, r["url"]) not in listed
    ]


def _as_the_job_has_them(
    ws: Workspace, job_id: str, failures: list[ReportFailure]
) -> list[ReportFailure]:
    """The vendors' failures with each URL as the job has it, where a vendor lists it in an
    encoded form of its own (AWS's prewarm API writes ( ) as %28 %29)."""
    from dataclasses import replace

    from prewarm_cli.inputs import match_key

    if not any("%" in f.url for f in failures):  # only an escape makes a form of its own
        return failures
    ours: dict[str, str] = {}
    for row in ws.journal.iter_targets(job_id, [jr.ACCEPTED]):  # what the vendors were given
        ours.setdefault(match_key(row["url"]), row["url"])
    return [replace(f, url=ours.get(match_key(f.url), f.url)) for f in failures]


def download_report(ws: Workspace, ref: JobRef, result: JobReport, path: str) -> None:
    """Saves the vendor's report file now: vendors' report links expire within minutes."""
    import httpx

    links = result.report_urls
    if not links:
        raise UsageError("the vendor offers no report file for this job")
    if len(links) > 1:
        one_each = "; ".join(
            f"`prewarm report {alias}:{','.join(ref.tasks[alias])} --download FILE`"
            for alias in links
        )
        raise UsageError(
            f"several providers offer a report file ({', '.join(links)}): save each on its own",
            hint=one_each,
        )
    ((alias, url),) = links.items()
    from prewarm_cli.verify.probe import ssl_context

    verify = ssl_context(ws.session(alias).ca_bundle)
    with (
        httpx.Client(timeout=60.0, follow_redirects=True, verify=verify) as client,
        client.stream("GET", url) as response,
    ):
        if response.status_code != 200:
            raise ProviderError(
                f"downloading the report failed: HTTP {response.status_code}", provider=alias
            )
        # The vendor's report may hold the request headers, -H secrets included: others may
        # read nothing of it.
        create_private(Path(path))
        with open(path, "wb") as fh:
            for chunk in response.iter_bytes():
                fh.write(chunk)
    ws.out.info(f"saved {alias}'s report to {path}")


# --------------------------------------------------------------------------- misc commands


def recent_jobs(ws: Workspace, limit: int, state: JobState | None) -> list[JobRow]:
    """`prewarm jobs`: the newest local jobs with their target counts."""
    rows = []
    for job in ws.journal.jobs(limit, state):
        total = jr.Counts()
        for counts in ws.journal.counts(job.id).values():
            total.add(counts)
        rows.append(
            JobRow(
                job_id=job.id,
                state=job.state,
                created_at=job.created_at,
                providers=tuple(job.providers),
                n_urls=job.urls,
                total=total.total,
                accepted=total[jr.ACCEPTED],
                rejected=total[jr.REJECTED],
                deferred=total[jr.DEFERRED],
                failed=total[jr.FAILED],
                not_sent=sum(total[o] for o in (jr.DEFERRED, jr.UNSENT, jr.SENDING, jr.UNKNOWN)),
            )
        )
    return rows


def prune_jobs(ws: Workspace, days: int) -> int:
    """`jobs --prune DAYS`: the jobs with nothing left to resume that nothing changed for
    DAYS days are deleted, with what their providers keep of them; how many."""
    from datetime import UTC, datetime, timedelta

    before = jr.timestamp(datetime.now(UTC) - timedelta(days=days))
    pruned = [
        job_id
        for job_id in ws.journal.prunable(before)
        if JobLock(ws.state_dir, job_id).holder() is None  # not one a live process holds
    ]
    if not pruned:
        return 0
    # What the provider types keep first, whatever the config says (a job's alias may have
    # left it): a job the journal no longer names could never be pruned from their files.
    # An error there stops the prune with the journal whole.
    from prewarm_cli import registry

    for cls in registry.load_all(ws.out.warn).values():
        cls.forget_jobs(ws.state_dir, pruned)
    n_pruned = 0
    for job_id in pruned:  # a transaction each: a large job's rows are many
        if JobLock(ws.state_dir, job_id).holder() is None:  # not taken up meanwhile
            ws.journal.delete_job(job_id)
            n_pruned += 1
    return n_pruned


def quota(ws: Workspace, aliases: Sequence[str]) -> list[dict[str, Any]]:
    """The quota of each alias named: the first that cannot be asked stops it."""
    return [_quota_row(ws, alias) for alias in aliases]


def every_quota(ws: Workspace) -> list[dict[str, Any]]:
    """The quota of every configured alias with one. One that cannot be asked here (its
    secret's variable unset) or whose vendor refuses or fails is skipped and said on stderr,
    so that the others' rows are shown; when none answers, the first error stops it: a
    vendor's, or the configuration's where no alias could be asked (exit 3)."""
    rows: list[dict[str, Any]] = []
    unusable: list[tuple[str, PrewarmError]] = []  # no session here
    failed: list[tuple[str, PrewarmError]] = []  # asked, and refused or failed
    for alias in ws.config.aliases():
        try:
            capabilities = ws.session(alias).capabilities
        except ConfigError as exc:
            unusable.append((alias, exc))
            continue
        if Capability.QUOTA not in capabilities:
            continue
        try:
            rows.append(_quota_row(ws, alias))
        except PrewarmError as exc:
            failed.append((alias, exc))
    if not rows and (failed or unusable):
        raise (failed or unusable)[0][1]
    if not rows:
        configured = ", ".join(ws.config.aliases()) or "none"
        raise UsageError(
            f"no configured provider reports a quota (configured: {configured})",
            hint="`prewarm providers` lists what each type can do",
        )
    for alias, error in [*unusable, *failed]:
        ws.out.warn(f"skipping {alias}: {error}")
    return rows


def _quota_row(ws: Workspace, alias: str) -> dict[str, Any]:
    session = ws.session(alias)
    session.require(Capability.QUOTA)
    q = session.call(session.provider.quota)
    return {"provider": alias, "type": session.provider.name, **q.to_dict()}


def scale_alias(ws: Workspace, name: str | None) -> str:
    """The alias `scale` works on: the one named, else the default provider when its type
    can scale, else the one configured alias whose type can (only the AWS prewarm stack has
    instances; a Qiniu default should not make `prewarm scale` fail beside it). One that
    cannot scale is said here, before anything is asked (a confirmation, its secrets)."""
    alias = _scale_alias(ws, name)
    ws.session(alias, needs=Capability.SCALE)
    return alias


def _scale_alias(ws: Workspace, name: str | None) -> str:
    if name:
        return ws.alias(name)
    default = ws.default_alias()
    capable = [a for a in ws.config.aliases() if Capability.SCALE in ws.declared_capabilities(a)]
    if default not in capable and len(capable) == 1:
        return capable[0]
    if not capable:
        configured = ", ".join(ws.config.aliases()) or "none"
        raise UsageError(
            f"no configured provider can scale (configured: {configured})",
            hint="only the AWS prewarm stack has instances to scale: set one up with"
            " `prewarm config init --type aws`",
        )
    if default is None:
        return ws.selected([])[0]  # no provider selected: that error, with its hint
    if default not in capable and capable:
        ws.out.info(f"{default} cannot scale; {' and '.join(capable)} can: pass -p NAME")
    return default


def scale(ws: Workspace, alias: str, count: int | None) -> dict[str, Any]:
    session = ws.session(alias, needs=Capability.SCALE)
    return {"provider": alias, **session.call(session.provider.scale, count)}


def _cancel_sessions(ws: Workspace, ref: JobRef) -> dict[str, ProviderSession]:
    """The session of each provider of the job, all able to cancel: a job routed to one that
    cannot is refused before any of its tasks is stopped (the tasks of the others can be
    cancelled by ALIAS:TASK). A provider with nothing left to stop (no task, or direct
    warming, done when its submit ended) is passed over while another has tasks to cancel;
    with none, each is asked as before (one that cannot cancel says so)."""
    sessions: dict[str, ProviderSession] = {}
    unable: list[UnsupportedError] = []
    passed_over = []
    for alias, task_ids in ref.tasks.items():
        if not task_ids or ws.finished_in_submit(alias):
            passed_over.append(alias)
            continue
        try:
            sessions[alias] = ws.session(alias, needs=Capability.CANCEL)
        except UnsupportedError as exc:
            unable.append(exc)
    if not sessions and not unable:
        for alias in passed_over:
            sessions[alias] = ws.session(alias, needs=Capability.CANCEL)
    if unable:
        refused = unable[0]
        able = [f"`prewarm cancel {a}:{','.join(ref.tasks[a])}`" for a in sessions]
        if able:
            refused.message = f"{refused.message}: nothing was cancelled"
            refused.args = (refused.message,)
            refused.hint = f"cancel the other providers' tasks alone: {'; '.join(able)}"
        raise refused
    return sessions


def cancel(
    ws: Workspace,
    ref: JobRef,
    *,
    wait_timeout: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[list[dict[str, Any]], ExitCode]:
    """Stops the job's tasks; with ``wait_timeout``, tries again (for at most that many
    seconds) while a vendor answers that a task cannot be cancelled yet. Every provider of
    the job is asked: one that refuses or fails is said in its item (``error``) and the
    others are still cancelled; when none could be, the first error stops it. The answers,
    and the exit code their errors make."""
    deadline = None if wait_timeout is None else clock() + wait_timeout
    sessions = _cancel_sessions(ws, ref)  # every provider able, before any is asked
    results: list[dict[str, Any]] = []
    errors: list[PrewarmError] = []
    for alias, session in sessions.items():
        task_ids = ref.tasks[alias]
        if not task_ids:
            continue
        try:
            while True:
                try:
                    answer = session.call(session.provider.cancel, task_ids)
                    break
                except NotYetCancellable as e:
                    pause = _cancel_pause(ws, ref, session, e, deadline, wait_timeout, clock)
                    ws.out.info(f"{alias}: {e}; trying again in {round(pause, 1):g} s")
                    sleep(pause)
        except PrewarmError as exc:
            if exc.provider is None:
                exc.provider = alias
            errors.append(exc)
            ws.out.warn(f"{alias}: {exc}")
            results.append({"provider": alias, **exc.to_dict()})
            continue
        results.append({"provider": alias, **answer})
    if errors and len(errors) == len(results):
        raise errors[0]  # none could be cancelled: the error is the answer
    if ref.job_id:
        ws.journal.set_state(ref.job_id, JobState.CANCELLED)
    return results, worst_exit({e.exit_code for e in errors})
