"""Tables for what more than one command prints: submit summaries, plans, job status, reports."""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, closing, contextmanager
from itertools import groupby
from typing import TYPE_CHECKING, Any

from prewarm_cli.output import Column, counted

if TYPE_CHECKING:
    from prewarm_cli.engine import Claims, JobRef, ProviderSession, Workspace
    from prewarm_cli.errors import ExitCode
    from prewarm_cli.output import Output, Progress
    from prewarm_cli.plugin import ProbeTarget
    from prewarm_cli.results import JobReport, JobStatus, Plan, SubmitSummary
    from prewarm_cli.verify.probe import Pace

MAX_LISTED_FAILURES = 20  # per kind, in the submit table; `prewarm report` lists them all


Part = tuple[Generator[dict[str, Any], None, None], str | None, bool]  # results, target, named


class ClaimsCheck:
    """--verify of a job: its results as the answers come (``results``, read within
    `claims_verified`), each set beside the vendors' claim; their summary and exit code once
    read. ``parts``: the results of each group of probes, made as they are reached."""

    def __init__(
        self,
        parts: Generator[Part, None, None],
        claims: Claims,
        reading: Callable[[], AbstractContextManager[None]],
    ) -> None:
        from prewarm_cli.verify import probe

        self._tally = probe.Tally()
        self._n_mismatches = 0
        self.results = self._checked(parts, claims, reading)

    def _checked(
        self,
        parts: Generator[Part, None, None],
        claims: Claims,
        reading: Callable[[], AbstractContextManager[None]],
    ) -> Generator[dict[str, Any], None, None]:
        from prewarm_cli.verify import probe

        with closing(parts), reading():  # Ctrl-C while an answer is awaited names the job
            for results, label, pinned in parts:
                with closing(results):  # their threads and connections go with them
                    for item in probe.against_claims(results, claims.get):
                        if pinned:  # the target a provider named (its label, or none)
                            item["target"] = label
                        self._tally.add(item)
                        self._n_mismatches += item["mismatch"]
                        yield item

    def summary(self) -> dict[str, Any]:
        return {**self._tally.to_dict(), "mismatches": self._n_mismatches}

    def exit_code(self) -> ExitCode:
        from prewarm_cli.verify import probe

        return probe.exit_code(self.summary())


# A group of a provider's probe targets: alias, IP, Accept-Encoding, label, User-Agent.
_Group = tuple[str, str | None, str, str | None, str | None]


@contextmanager
def claims_verified(
    ws: Workspace,
    claims: Claims,
    ref: JobRef | None,
    reading: Callable[[], AbstractContextManager[None]],
) -> Iterator[ClaimsCheck]:
    """--verify: probe the job's URLs and set the vendors' claims beside what was seen, under
    a progress bar; ``reading`` is entered around the reading of the answers.

    The probes send the job's -H headers: a cache keyed on one of them (a device header) is
    checked in the entry that was warmed. A provider that warmed given edges and variants
    (direct) names them: each is probed through its own IP with its own Accept-Encoding, the
    User-Agent the provider sent and its ca_bundle, within its concurrency and rate (those of
    the warm, the rate through the engine's pacer: a cold cache's misses reach the origin as
    the warm's did); other URLs are probed once, as `verify`.
    The URLs and targets are read as they are probed (a first pass counts them and finds
    each group's hosts): a million are never all held. A CA bundle that cannot be read is
    said before any answer.
    """
    from prewarm_cli.inputs import host_of
    from prewarm_cli.verify import probe

    headers = _job_headers(ws, ref)
    options = probe.VerifyOptions(headers=headers)
    named = _probe_targets(ws, ref)
    # Each target is probed with its own Accept-Encoding; a -H one was not sent (direct).
    own_headers = tuple((n, v) for n, v in headers if n.lower() != "accept-encoding")
    n_rest = sum(1 for _ in claims.urls(without=named))
    if n_rest:
        probe.check_trust(None)  # before any result is written, as each alias's below
    hosts: dict[_Group, set[str]] = {}  # each group's hosts, for its pins
    n_named = 0
    for alias, targets in named.items():
        probe.check_trust(ws.session(alias).ca_bundle)
        for t in targets:
            key = (alias, t.ip, t.accept_encoding, t.label, t.user_agent)
            hosts.setdefault(key, set()).add(host_of(t.url))
            n_named += 1

    def parts(bar: Progress) -> Generator[Part, None, None]:
        rest = claims.urls(without=named)
        yield probe.verify_stream(rest, options, bar.advance)[0], None, False
        for alias, targets in named.items():
            by_group = groupby(
                targets, key=lambda t: (alias, t.ip, t.accept_encoding, t.label, t.user_agent)
            )
            for (_, ip, encoding, label, user_agent), same in by_group:
                key = (alias, ip, encoding, label, user_agent)
                pins = tuple(sorted(f"{host}:{ip}" for host in hosts.get(key, ()))) if ip else ()
                session = ws.session(alias)
                keeps_limits = session.provider.probes_keep_limits
                group_options = probe.VerifyOptions(
                    headers=own_headers,
                    resolve=pins,
                    encodings=(encoding,),
                    user_agent=user_agent or probe.USER_AGENT,
                    ca_bundle=session.ca_bundle,
                    concurrency=(  # the warm's, where the probes keep it
                        session.limits().concurrency if keeps_limits else options.concurrency
                    ),
                )
                urls = (t.url for t in same)
                results = probe.verify_stream(urls, group_options, bar.advance, paced(session))
                yield results[0], label, True

    total = probe.planned_requests(n_rest, options) + n_named
    with ws.out.progress(total, "verifying") as bar:
        check = ClaimsCheck(parts(bar), claims, reading)
        with closing(check.results):
            yield check


def emit_verified(
    ws: Workspace,
    data: dict[str, Any],
    claims: Claims,
    ref: JobRef,
    *,
    table: Callable[[dict[str, Any]], None],
    records: Callable[[dict[str, Any]], Iterable[dict[str, Any]]],
) -> ExitCode:
    """``data`` with its `verify` part (`claims_verified`), written; verify's exit code.

    Piped JSON and ndjson are written as the answers come, each flushed: a million results
    are never all held. Cut short by Ctrl-C, the JSON document is closed with the error in
    it, naming the job and the command that verifies it again (as any error names the job).
    A table, and JSON on a terminal (under the progress bar), once they all came.
    """
    from prewarm_cli.commands._common import naming_the_job
    from prewarm_cli.engine import wait_again
    from prewarm_cli.output import is_tty

    named, again = wait_again(ref, "--verify")

    def naming() -> AbstractContextManager[None]:
        return naming_the_job(ref.job_id, f"interrupted while verifying job {named}", again)

    out = ws.out
    streamed = out.fmt != "table" and not is_tty(out.stdout)
    with naming(), claims_verified(ws, claims, ref, naming) as check:
        if streamed:
            data["verify"] = {"results": check.results, "summary": check.summary}
            out.emit(data, records=records, live=True)
        else:
            data["verify"] = {"results": list(check.results), "summary": check.summary()}
    if not streamed:
        out.emit(data, table=table, records=records)
    if out.fmt != "table":
        verify_note(out, check.summary())
    return check.exit_code()


def _job_headers(ws: Workspace, ref: JobRef | None) -> tuple[tuple[str, str], ...]:
    """The -H headers the job was submitted with (none for bare vendor tasks)."""
    from prewarm_cli.errors import NotFoundError

    if ref is None or ref.job_id is None:
        return ()
    try:
        recorded = ws.journal.job(ref.job_id).options.get("headers") or []
    except NotFoundError:  # a submit's JSON piped from another machine: its tasks only
        return ()
    return tuple((str(h[0]), str(h[1])) for h in recorded)


def paced(session: ProviderSession) -> Pace | None:
    """The provider's rate for probes of what it warmed, as its warm requests keep it (the
    engine's pacer, shared with other processes); None where it keeps none, or where its
    probes do not keep its limits (Provider.probes_keep_limits)."""
    pacer = session.pacer
    if not (session.provider.probes_keep_limits and pacer.waits):
        return None
    return lambda meanwhile: pacer.acquire(0, meanwhile)


def _probe_targets(ws: Workspace, ref: JobRef | None) -> dict[str, Iterable[ProbeTarget]]:
    """The probe targets of each provider that names its own (direct)."""
    found: dict[str, Iterable[ProbeTarget]] = {}
    for alias, task_ids in (ref.tasks if ref else {}).items():
        if task_ids:
            targets = ws.session(alias).provider.probe_targets(task_ids)
            if targets is not None:
                # Read twice: an iterator (a generator) would be empty the second time.
                found[alias] = list(targets) if iter(targets) is targets else targets
    return found


def status_views(
    ws: Workspace, job_id: str | None, status: JobStatus
) -> tuple[Callable[[dict[str, Any]], None], Callable[[dict[str, Any]], Iterator[dict[str, Any]]]]:
    """A job's status as a table (with the providers' lines on their details under it) and
    as ndjson lines, each with its `verify` part where the data has one (status, and submit
    --wait, whose own table came before the wait)."""
    out = ws.out

    def table(data: dict[str, Any]) -> None:
        status_table(out, status)
        for alias, p in status.providers.items():
            for line in _detail_lines(ws, alias, p.details):
                out.line(f"{alias}: {line}")
        if "verify" in data:
            verify_table(out, data["verify"])

    def records(data: dict[str, Any]) -> Iterator[dict[str, Any]]:
        return job_records(job_id, status=status, verify=data.get("verify"))

    return table, records


def _detail_lines(ws: Workspace, alias: str, details: Mapping[str, Any]) -> list[str]:
    """The provider's lines on its details; none where the alias cannot be built here (its
    table gone from the config): the counts above say what is known."""
    from prewarm_cli.errors import PrewarmError

    if not details:
        return []
    try:
        return ws.session(alias).provider.detail_lines(details)
    except PrewarmError:
        return []


def verify_table(out: Output, result: dict[str, Any]) -> None:
    from prewarm_cli.verify import render

    render.render_table(out, result)


def verify_note(out: Output, summary: Mapping[str, Any]) -> None:
    """Beside JSON data, the verify summary on stderr: the reason for an exit 4 in words."""
    from prewarm_cli.verify import render

    out.info(f"verify: {render.summary_line(summary)}")
    if summary.get("mismatches"):
        out.info(
            "hint: each result's `detail` says why it is not warm (an answer the edge does"
            " not cache, an entry since evicted); submit those URLs again to warm them anew"
        )


def job_records(
    job_id: str | None,
    *,
    summary: SubmitSummary | None = None,
    status: JobStatus | None = None,
    verify: dict[str, Any] | None = None,
) -> Iterator[dict[str, Any]]:
    """The -o ndjson lines of submit and status: the submit's counts, one per vendor task,
    one per provider's status, one per verify request; each says which (`record`) and names
    its job (a submit with no task, all deferred, still says which job to resume). The verify
    lines come as its results do."""
    if summary is not None:
        counts = {
            k: summary.n_skipped if k == "skipped" else len(v) if isinstance(v, list) else v
            for k, v in summary.to_dict().items()
            if k
            in (
                "state",
                "urls",
                "total",
                "accepted",
                "rejected",
                "failed",
                "deferred",
                "unknown",
                "skipped",
            )
        }
        yield {"record": "submit", "job_id": job_id, **counts}
        for t in summary.tasks:
            yield {"record": "task", "job_id": job_id, **t.to_dict()}
    if status is not None:
        for p in status.providers.values():
            yield {"record": "status", "job_id": job_id, **p.to_dict()}
    if verify is not None:
        for r in verify["results"]:
            yield {"record": "verify", "job_id": job_id, **r}


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
            Column("vendor state", "id", drop=4),
            Column("total", "id"),
            Column("succeeded", "id"),
            Column("failed", "id"),
            Column("in progress", "id", drop=3),
            Column("pending", "id", drop=2),
            Column("not sent", "id", drop=1),  # what `submit --resume` would send: kept longest
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
