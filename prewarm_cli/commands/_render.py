"""Tables for what more than one command prints: submit summaries, plans, job status, reports."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prewarm_cli.output import Column, counted

if TYPE_CHECKING:
    from prewarm_cli.engine import JobRef, Workspace
    from prewarm_cli.errors import ExitCode
    from prewarm_cli.output import Output
    from prewarm_cli.plugin import ProbeTarget
    from prewarm_cli.results import JobReport, JobStatus, Plan, SubmitSummary

MAX_LISTED_FAILURES = 20  # per kind, in the submit table; `prewarm report` lists them all


def verify_claims(
    ws: Workspace, claims: dict[str, str], ref: JobRef | None = None
) -> tuple[dict[str, Any], ExitCode]:
    """--verify: probe the job's URLs and set the vendors' claims beside what was seen.

    A provider that warmed given edges and variants (direct) names them: each is probed
    through its own IP with its own Accept-Encoding; other URLs are probed once, as `verify`.
    """
    from prewarm_cli import verify as verify_mod

    options = verify_mod.VerifyOptions()
    pinned = _probe_targets(ws, ref)
    rest = [u for u in claims if u not in {t.url for t in pinned}]
    total = verify_mod.planned_requests(len(rest), options) + len(pinned)
    with ws.out.progress(total, "verifying") as bar:
        result = verify_mod.verify_against_claims(rest, claims, options, bar.advance)
        groups: dict[tuple[str | None, str, str | None], list[str]] = {}
        for t in pinned:
            groups.setdefault((t.ip, t.accept_encoding, t.label), []).append(t.url)
        for (ip, encoding, label), urls in groups.items():
            from prewarm_cli.inputs import host_of

            pins = tuple(sorted({f"{host_of(u)}:{ip}" for u in urls})) if ip else ()
            more = verify_mod.verify_against_claims(
                urls,
                claims,
                verify_mod.VerifyOptions(resolve=pins, encodings=(encoding,)),
                bar.advance,
            )
            result["results"].extend({**r, "target": label} for r in more["results"])
    result["summary"] = {
        **verify_mod.summarize(result["results"]),
        "mismatches": sum(1 for r in result["results"] if r["mismatch"]),
    }
    return result, verify_mod.exit_code(result)


def _probe_targets(ws: Workspace, ref: JobRef | None) -> list[ProbeTarget]:
    found: list[ProbeTarget] = []
    for alias, task_ids in (ref.tasks if ref else {}).items():
        if task_ids:
            found.extend(ws.session(alias).provider.probe_targets(task_ids) or [])
    return found


def verify_table(out: Output, result: dict[str, Any]) -> None:
    from prewarm_cli import verify as verify_mod

    verify_mod.render_table(out, result)


def submit_table(out: Output, summary: SubmitSummary) -> None:
    rows = [
        (alias, c.total, c.accepted, c.rejected, c.failed, c.deferred, c.unknown)
        for alias, c in summary.providers.items()
    ]
    out.table(
        (
            Column("provider", "id"),
            Column("targets", "id"),
            Column("accepted", "id"),
            Column("rejected", "id"),
            Column("failed", "id"),
            Column("deferred", "id", drop=1),
            Column("unknown", "id", drop=1),
        ),
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
            Column("provider", "id"),
            Column("urls", "id"),
            Column("batch", "id", drop=2),
            Column("batches", "id", drop=1),
            Column("requests", "id"),
            Column("est. seconds", "id"),
            Column("quota left", "id", drop=3),
            Column("would defer", "id"),
        ),
        rows,
        title=f"dry run: {counted(plan.n_urls, 'URL')}, nothing sent",
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
            Column("provider", "id"),
            Column("state", "id"),
            Column("vendor state", "id", drop=3),
            Column("total", "id"),
            Column("succeeded", "id"),
            Column("failed", "id"),
            Column("in progress", "id", drop=1),
            Column("pending", "id", drop=2),
            Column("not sent", "id", drop=4),
        ),
        rows,
        title=f"job {status.job_id or '(vendor tasks)'}: {status.state}",
    )


def report_table(out: Output, report: JobReport) -> None:
    failures = counted(len(report.failures), "failure")
    out.table(
        (Column("provider", "id"), Column("url", "url"), Column("pop", "id", drop=1), "reason"),
        [(f.provider, f.url, f.pop, f.reason) for f in report.failures],
        title=f"job {report.job_id or '(vendor tasks)'}: {failures}",
    )
    for alias, url in report.report_urls.items():
        out.info(f"{alias} report: {url}")
