"""`submit --dry-run`: what a submit would send, without sending anything."""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from prewarm_cli import journal as jr
from prewarm_cli.engine.intake import SubmitRequest, check_invalidate, intake
from prewarm_cli.engine.workspace import ProviderSession, Workspace
from prewarm_cli.errors import ConfigError, PrewarmError, QuotaExhausted, StackBusy
from prewarm_cli.output import counted
from prewarm_cli.plugin import (
    Capability,
    SubmitOptions,
    unhonoured_options,
)
from prewarm_cli.results import Plan, ProviderPlan


def plan(ws: Workspace, req: SubmitRequest) -> Plan:
    """What a submit would send, without sending anything (quota lookups are read-only)."""
    import tempfile

    # A scratch journal on disk, not in memory: a million-URL plan stays small in RAM.
    scratch = tempfile.TemporaryDirectory(prefix="prewarm-plan-")
    journal = jr.Journal(Path(scratch.name) / "plan.sqlite3")
    try:
        job_id = intake(ws, journal, req)
        job = journal.job(job_id)
        counts = journal.counts(job_id)
        check_invalidate(ws, list(counts), req.options)
        providers: dict[str, ProviderPlan] = {}
        for alias, c in counts.items():
            session = ws.session(alias)
            session.require(Capability.SUBMIT)
            session.provider.check_options(req.options)
            first = journal.iter_unsent(job_id, alias, chunk=session.batch_size)
            with contextlib.closing(first) as rows:
                first_batch = [r["url"] for r in itertools.islice(rows, session.batch_size)]
            max_bytes = session.limits().max_batch_bytes
            n_batches = math.ceil(c.total / session.batch_size)
            if max_bytes:  # as the run claims them: cut by their bytes too
                first_batch = jr.fit_bytes(first_batch, max_bytes)
                unsent = journal.iter_unsent(job_id, alias)
                with contextlib.closing(unsent) as rows:
                    urls = (r["url"] for r in rows)
                    n_batches = _n_batches(urls, session.batch_size, max_bytes)
            providers[alias] = _plan_provider(
                ws, session, c.total, req.options, first_batch, n_batches
            )
            # A provider whose requests are per URL and edge (direct) counts them itself.
            per_url = session.provider.requests_per_url
            if per_url is not None:
                unsent = journal.iter_unsent(job_id, alias)
                with contextlib.closing(unsent) as rows:
                    n_requests = sum(per_url(r["url"], req.options) for r in rows)
                planned = providers[alias]
                rps = session.limits().requests_per_second
                seconds = n_requests / rps if rps else planned.estimated_seconds
                providers[alias] = replace(
                    planned, requests=n_requests, estimated_seconds=round(seconds, 1)
                )
        return Plan(
            n_urls=job.urls,
            total=sum(c.total for c in counts.values()),
            skipped=tuple(job.skipped),
            n_skipped=job.n_skipped,
            providers=providers,
        )
    finally:
        journal.close()
        scratch.cleanup()


def _plan_provider(
    ws: Workspace,
    session: ProviderSession,
    n: int,
    options: SubmitOptions,
    first_batch: Sequence[str],
    batches: int,
) -> ProviderPlan:
    """``first_batch``: the URLs the first request would carry (in input order);
    ``batches``: how many requests the run would make of the URLs."""
    limits = session.limits()
    requests = batches
    in_submit = options.invalidate and session.provider.invalidates_in_submit
    purge_first = (
        options.invalidate and not in_submit and Capability.INVALIDATE in session.capabilities
    )
    invalidate = in_submit or purge_first
    if purge_first:
        requests *= 2
    seconds = 0.0
    if limits.requests_per_second:
        seconds = max(seconds, requests / limits.requests_per_second)
    if limits.urls_per_second:
        seconds = max(seconds, n * (2 if purge_first else 1) / limits.urls_per_second)
    quota: dict[str, Any] | None = None
    would_defer = 0
    notes: list[str] = []
    if session.limits_unread:
        size = (
            f"{session.batch_size} (batch_size)"
            if session.settings.get("batch_size") is not None
            else f"{session.batch_size}, {session.provider.name}'s default"
        )
        notes.append(f"batches of {size}: the vendor's own limit is read with the secrets")
    if Capability.QUOTA in session.capabilities:
        try:
            q = session.call(session.provider.quota)
            quota = q.to_dict()
            if q.remaining is not None and q.remaining < n:
                would_defer = n - q.remaining
            purges_left = q.invalidate_remaining
            if purge_first and purges_left is not None and purges_left < n:
                # What is not purged is not prefetched either: deferred, as the run does.
                would_defer = max(would_defer, n - purges_left)
                notes.append(f"the daily purge quota allows {counted(purges_left, 'more URL')}")
        except PrewarmError as exc:
            notes.append(f"quota unknown: {exc}")
    if session.provider.one_job_at_a_time:
        would_defer = max(would_defer, _one_job_deferral(ws, session, n, first_batch, notes))
    if limits.requests_per_day and requests > limits.requests_per_day:
        notes.append(
            f"{requests} requests exceed the daily budget of {limits.requests_per_day}:"
            " the rest would be deferred"
        )
    if options.invalidate and not invalidate:
        notes.append(f"{session.provider.name} cannot invalidate: URLs would be prefetched only")
    if in_submit:
        notes.append("the vendor purges each URL within its prefetch request")
    notes.extend(unhonoured_options(session.provider, options))
    notes.extend(session.provider.plan_notes(options))
    return ProviderPlan(
        provider=session.alias,
        type=session.provider.name,
        n_urls=n,
        batch_size=session.batch_size,
        batches=batches,
        requests=requests,
        invalidate=invalidate,
        estimated_seconds=round(seconds, 1),
        quota=quota,
        would_defer=would_defer,
        notes=tuple(notes),
    )


def _n_batches(urls: Iterable[str], batch_size: int, max_bytes: int) -> int:
    """How many batches the run's claims would make of ``urls``: at most ``batch_size`` URLs
    and ``max_bytes`` of JSON each (a URL longer than that alone)."""
    n_batches, n_urls, size = 0, 0, 2  # a JSON list's brackets
    for url in urls:
        cost = jr.json_bytes(url)
        if n_urls and (n_urls == batch_size or size + cost > max_bytes):
            n_batches, n_urls, size = n_batches + 1, 0, 2
        n_urls, size = n_urls + 1, size + cost
    return n_batches + (1 if n_urls else 0)


def _one_job_deferral(
    ws: Workspace,
    session: ProviderSession,
    n: int,
    first_batch: Sequence[str],
    notes: list[str],
) -> int:
    """What a vendor that runs one job at a time would not take now: all of it while it is
    busy (the submit is refused unless --force), else what its one job does not take (the
    rest of the URLs, those of another distribution) or refuses."""
    from prewarm_cli.engine.submit import check_busy

    try:
        check_busy(ws, "", [session.alias])
    except StackBusy as exc:
        notes.append(f"{exc}: the submit would be refused (exit 2) unless --force")
        return n
    except QuotaExhausted as exc:
        notes.append(f"{exc}: every URL would be deferred")
        return n
    except PrewarmError as exc:
        notes.append(f"whether {session.alias} is busy is unknown: {exc}")
    try:  # not a vendor request (no pacing, no budget): read-only lookups at most
        n_taken, refused = session.provider.first_job(list(first_batch))
    except ConfigError:
        raise  # the run stops the same way
    except PrewarmError as exc:
        notes.append(f"which URLs its job would take is unknown: {exc}")
        n_taken, refused = len(first_batch), {}
    if refused:
        url, why = next(iter(refused.items()))
        notes.append(f"{counted(len(refused), 'URL')} would be rejected ({url}: {why})")
    if n_taken + len(refused) >= n:
        return 0
    n_deferred = n - n_taken - len(refused)
    notes.append(
        f"{session.alias} runs one job at a time: {counted(n_taken, 'URL')} become its job,"
        f" the other {n_deferred:,} are deferred"
        " (`prewarm submit --resume JOB` once it is done)"
    )
    return n_deferred
