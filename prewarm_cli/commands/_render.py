"""Tables for what more than one command prints: submit summaries, plans, job status, reports."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prewarm_cli.engine import Workspace
    from prewarm_cli.errors import ExitCode
    from prewarm_cli.output import Output
    from prewarm_cli.results import JobReport, JobStatus, Plan, SubmitSummary

MAX_LISTED_FAILURES = 20  # per kind, in the submit table; `prewarm report` lists them all


def verify_claims(ws: Workspace, claims: dict[str, str]) -> tuple[dict[str, Any], ExitCode]:
    """--verify: probe the job's URLs and set the vendors' claims beside what was seen."""
    from prewarm_cli import verify as verify_mod

    options = verify_mod.VerifyOptions()
    with ws.out.progress(verify_mod.planned_requests(len(claims), options), "verifying") as bar:
        result = verify_mod.verify_against_claims(list(claims), claims, options, bar.advance)
    return result, verify_mod.exit_code(result)


def verify_table(out: Output, result: dict[str, Any]) -> None:
    from prewarm_cli import verify as verify_mod

    verify_mod.render_table(out, result)


def submit_table(out: Output, summary: SubmitSummary) -> None:
    rows = [
        (alias, c.total, c.accepted, c.rejected, c.failed, c.deferred, c.unknown)
        for alias, c in summary.providers.items()
    ]
    out.table(
        ("provider", "targets", "accepted", "rejected", "failed", "deferred", "unknown"),
        rows,
        title=f"job {summary.job_id}: {summary.state}",
    )
    listed = [
        *(("rejected", r) for r in summary.rejected[:MAX_LISTED_FAILURES]),
        *(("failed  ", r) for r in summary.failed[:MAX_LISTED_FAILURES]),
    ]
    for kind, r in listed:
        out.line(f"{kind}  {r.provider}  {r.url}  {r.reason}")
    more = len(summary.rejected) + len(summary.failed) - len(listed)
    if more > 0:
        out.line(f"... and {more} more: prewarm report {summary.job_id}")


def plan_table(out: Output, plan: Plan) -> None:
    rows = [
        (
            alias,
            p.n_urls,
            p.batch_size,
            p.batches,
            p.requests,
            p.estimated_seconds,
            (p.quota or {}).get("remaining"),
            p.would_defer,
        )
        for alias, p in plan.providers.items()
    ]
    out.table(
        (
            "provider",
            "urls",
            "batch",
            "batches",
            "requests",
            "est. seconds",
            "quota left",
            "would defer",
        ),
        rows,
        title=f"dry run: {plan.n_urls} URLs, nothing sent",
    )
    for alias, p in plan.providers.items():
        for note in p.notes:
            out.line(f"note  {alias}: {note}")


def status_table(out: Output, status: JobStatus) -> None:
    rows = [
        (
            alias,
            p.state,
            p.raw_state,
            p.total,
            p.succeeded,
            p.failed,
            p.in_progress,
            p.pending,
            p.not_sent,
        )
        for alias, p in status.providers.items()
    ]
    out.table(
        (
            "provider",
            "state",
            "vendor state",
            "total",
            "succeeded",
            "failed",
            "in progress",
            "pending",
            "not sent",
        ),
        rows,
        title=f"job {status.job_id or '(vendor tasks)'}: {status.state}",
    )


def report_table(out: Output, report: JobReport) -> None:
    out.table(
        ("provider", "url", "pop", "reason"),
        [(f.provider, f.url, f.pop, f.reason) for f in report.failures],
        title=f"job {report.job_id or '(vendor tasks)'}: {len(report.failures)} failure(s)",
    )
    for alias, url in report.report_urls.items():
        out.info(f"{alias} report: {url}")
