"""The commands about one job or many: `status`, `report`, `cancel` and `jobs`."""

from __future__ import annotations

from typing import Any

import click

from prewarm_cli.commands import examples, short_help
from prewarm_cli.commands._common import (
    CONTEXT_SETTINGS,
    SECONDS,
    exit_with,
    global_options,
    naming_the_job,
    stdin_text,
    wait_options,
    workspace,
)
from prewarm_cli.commands._render import (
    emit_verified,
    report_table,
    status_views,
)
from prewarm_cli.errors import exit_for, worst_exit
from prewarm_cli.output import Column
from prewarm_cli.results import JobState

# An AWS job takes minutes to get from CREATED through CHECK_POP and INSERT_TASK to a state
# that can be cancelled; ten minutes covers a large job without hanging a CI step for long.
CANCEL_WAIT_TIMEOUT = 600.0


@click.command(
    context_settings=CONTEXT_SETTINGS, short_help=short_help("status"), epilog=examples.STATUS
)
@click.argument("job", required=False)
@click.option("--wait", "wait_", is_flag=True, help="Poll until the job is finished.")
@wait_options
@click.option("--force", is_flag=True, help="Poll faster than the provider's polling budget.")
@global_options
def status(
    job: str | None,
    wait_: bool,
    interval: float | None,
    wait_timeout: float | None,
    verify: bool,
    force: bool,
) -> None:
    """Show a job's state: JOB, ALIAS:TASK_ID[,...], - (a submit JSON on stdin), or the latest."""
    from prewarm_cli import engine

    with workspace(force=force, config_optional=True) as ws:
        ref = engine.parse_job_ref(ws, job, stdin_text)
        named, again = engine.wait_again(ref)
        if wait_:
            with naming_the_job(ref.job_id, f"interrupted while waiting for job {named}", again):
                result, claims = engine.wait_with_claims(
                    ws, ref, interval=interval, timeout=wait_timeout, with_claims=verify
                )
        else:
            result, claims = engine.status_with_claims(ws, ref, with_claims=verify)
        data = result.to_dict()
        codes = {exit_for(result.outcomes())}
        table, records = status_views(ws, result.job_id, result)
        if claims is not None:
            codes.add(emit_verified(ws, data, claims, ref, table=table, records=records))
        else:
            ws.out.emit(data, table=table, records=records)
        exit_with(worst_exit(codes))


@click.command(
    context_settings=CONTEXT_SETTINGS, short_help=short_help("report"), epilog=examples.REPORT
)
@click.argument("job", required=False)
@click.option(
    "--download", metavar="FILE", help="Save the vendor's own report file (where one exists)."
)
@global_options
def report(job: str | None, download: str | None) -> None:
    """List every URL that failed or was rejected, with provider, PoP and reason."""
    from prewarm_cli import engine

    with workspace() as ws:
        ref = engine.parse_job_ref(ws, job, stdin_text)
        result = engine.report(ws, ref)
        if download:
            engine.download_report(ws, ref, result, download)
        ws.out.emit(
            result.to_dict(),
            table=lambda _d: report_table(ws.out, result),
            records=lambda _d: [f.to_dict() for f in result.failures],
        )
        exit_with(exit_for(result.outcomes()))


@click.command(
    context_settings=CONTEXT_SETTINGS, short_help=short_help("cancel"), epilog=examples.CANCEL
)
@click.argument("job")
@click.option(
    "--wait",
    "wait_",
    is_flag=True,
    help="If the job cannot be cancelled yet (still being set up), try again until it can.",
)
@click.option(
    "--wait-timeout",
    type=SECONDS,
    default=CANCEL_WAIT_TIMEOUT,
    show_default=True,
    metavar="S",
    help="With --wait: give up after S seconds (exit 6).",
)
@global_options
def cancel(job: str, wait_: bool, wait_timeout: float) -> None:
    """Stop a running job at the vendor (providers that can)."""
    from prewarm_cli import engine

    with workspace() as ws:
        ref = engine.parse_job_ref(ws, job, stdin_text)
        results, code = engine.cancel(ws, ref, wait_timeout=wait_timeout if wait_ else None)
        ws.out.emit(results)
    if code:
        exit_with(code)


@click.command(
    context_settings=CONTEXT_SETTINGS, short_help=short_help("jobs"), epilog=examples.JOBS
)
@click.option(
    "--limit", type=click.IntRange(min=1), default=20, show_default=True, help="How many jobs."
)
@click.option(
    "--state",
    type=click.Choice([str(s) for s in JobState]),
    metavar="STATE",
    help=f"Only jobs in this state: {', '.join(JobState)}.",
)
@click.option(
    "--prune",
    "prune_days",
    type=click.IntRange(min=0),
    metavar="DAYS",
    help="First delete the jobs with nothing left to resume that have not changed for DAYS"
    " days (the journal, and direct warming's record, keep every job until then).",
)
@global_options
def jobs(limit: int, state: str | None, prune_days: int | None) -> None:
    """List recent local jobs, newest first."""
    from prewarm_cli import engine
    from prewarm_cli.output import counted

    with workspace(config_optional=True) as ws:
        if prune_days is not None:
            n_pruned = engine.prune_jobs(ws, prune_days)
            ws.out.info(
                f"deleted {counted(n_pruned, 'job')} unchanged for"
                f" {counted(prune_days, 'day')} with"
                " nothing left to resume (the jobs `prewarm submit --resume JOB` can still"
                " send are kept)"
            )
        rows = engine.recent_jobs(ws, limit, JobState(state) if state else None)

        def table(listed: list[dict[str, Any]]) -> None:
            if not listed:  # a line that says so, not a header over nothing
                ws.out.info(
                    f"no {state} jobs in the journal"
                    if state
                    else "no jobs in the journal yet: `prewarm submit URL...` starts one"
                )
                return
            ws.out.records(
                listed,
                [
                    (Column("job", "id"), "job_id"),
                    (Column("state", "id"), "state"),
                    # What to do next (report the failed, resume the not sent) goes last.
                    (Column("created", "id", drop=3), lambda r: r["created_at"][:19]),
                    (Column("providers", drop=4), lambda r: ",".join(r["providers"])),
                    (Column("urls", "id"), "urls"),
                    (Column("accepted", "id"), "accepted"),
                    (Column("rejected", "id", drop=2), "rejected"),
                    (Column("failed", "id", drop=1), "failed"),
                    (Column("not sent", "id", drop=1), "not_sent"),
                ],
            )

        ws.out.emit([row.to_dict() for row in rows], table=table)
