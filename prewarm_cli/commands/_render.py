"""Tables for what more than one command prints: submit summaries, plans, job status, reports."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prewarm_cli.engine import Workspace
    from prewarm_cli.errors import ExitCode
    from prewarm_cli.output import Output

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


def submit_table(out: Output, d: dict[str, Any]) -> None:
    rows = [
        (alias, p["total"], p["accepted"], p["rejected"], p["failed"], p["deferred"], p["unknown"])
        for alias, p in d["providers"].items()
    ]
    out.table(
        ("provider", "targets", "accepted", "rejected", "failed", "deferred", "unknown"),
        rows,
        title=f"job {d['job_id']}: {d['state']}",
    )
    listed = [
        *(("rejected", r) for r in d["rejected"][:MAX_LISTED_FAILURES]),
        *(("failed  ", r) for r in d["failed"][:MAX_LISTED_FAILURES]),
    ]
    for kind, r in listed:
        out.line(f"{kind}  {r['provider']}  {r['url']}  {r['reason']}")
    more = len(d["rejected"]) + len(d["failed"]) - len(listed)
    if more > 0:
        out.line(f"... and {more} more: prewarm report {d['job_id']}")


def plan_table(out: Output, d: dict[str, Any]) -> None:
    rows = []
    for alias, p in d["providers"].items():
        q = p["quota"] or {}
        rows.append(
            (
                alias,
                p["urls"],
                p["batch_size"],
                p["batches"],
                p["requests"],
                p["estimated_seconds"],
                q.get("remaining"),
                p["would_defer"],
            )
        )
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
        title=f"dry run: {d['urls']} URLs, nothing sent",
    )
    for alias, p in d["providers"].items():
        for note in p["notes"]:
            out.line(f"note  {alias}: {note}")


def status_table(out: Output, d: dict[str, Any]) -> None:
    rows = [
        (
            alias,
            p["state"],
            p["raw_state"],
            p["total"],
            p["succeeded"],
            p["failed"],
            p["in_progress"],
            p["pending"],
            p["not_sent"],
        )
        for alias, p in d["providers"].items()
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
        title=f"job {d['job_id'] or '(vendor tasks)'}: {d['state']}",
    )


def report_table(out: Output, d: dict[str, Any]) -> None:
    out.table(
        ("provider", "url", "pop", "reason"),
        [(f["provider"], f["url"], f["pop"], f["reason"]) for f in d["failures"]],
        title=f"job {d['job_id'] or '(vendor tasks)'}: {len(d['failures'])} failure(s)",
    )
    for alias, url in d.get("report_urls", {}).items():
        out.info(f"{alias} report: {url}")
