"""Input to job: reading, validating, routing and de-duplicating URLs into the journal."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from prewarm_cli import journal as jr
from prewarm_cli.engine.workspace import Router, Workspace
from prewarm_cli.errors import (
    InputError,
)
from prewarm_cli.plugin import (
    SubmitOptions,
)

MAX_LISTED_INVALID = 1000  # invalid input lines listed in full before "... and N more"


@dataclass(frozen=True)
class SubmitRequest:
    urls: Sequence[str] = ()
    files: Sequence[str] = ()
    sitemaps: Sequence[str] = ()
    providers: Sequence[str] = ()
    options: SubmitOptions = field(default_factory=SubmitOptions)
    skip_invalid: bool = False


def intake(ws: Workspace, journal: jr.Journal, req: SubmitRequest) -> str:
    """Reads, validates, routes and de-duplicates the input into a new job; sends nothing."""
    from prewarm_cli.urls import InvalidInput, check_inputs, host_of, iter_inputs

    router = Router(ws, req.providers)
    options = {
        "headers": [list(h) for h in req.options.headers],
        "invalidate": req.options.invalidate,
        "extra": dict(req.options.extra),
    }
    job_id = journal.create_job(router.selected, options)
    invalid: list[InvalidInput] = []
    skipped: list[dict[str, Any]] = []
    n_invalid = 0

    def items() -> Iterator[tuple[int, str, Sequence[str]]]:
        nonlocal n_invalid
        for seq, item in enumerate(check_inputs(iter_inputs(req.urls, req.files, req.sitemaps))):
            if not isinstance(item, InvalidInput):
                aliases = router(item.url)
                if aliases:
                    yield seq, item.url, aliases
                    continue
                item = InvalidInput(
                    item.url,
                    item.source,
                    item.line,
                    f"no provider covers host {host_of(item.url)!r}"
                    " (add a [[routes]] entry, set defaults.provider or pass -p)",
                )
            if req.skip_invalid:
                skipped.append(item.to_dict())
            else:
                n_invalid += 1
                if len(invalid) < MAX_LISTED_INVALID:
                    invalid.append(item)

    try:
        journal.add_targets(job_id, items())
    except BaseException:
        journal.delete_job(job_id)
        raise
    if n_invalid:
        journal.delete_job(job_id)
        lines = [str(i) for i in invalid]
        if n_invalid > len(invalid):
            lines.append(f"... and {n_invalid - len(invalid)} more")
        raise InputError(
            f"{n_invalid} invalid input line(s); nothing was sent:\n  " + "\n  ".join(lines),
            hint="fix them, or pass --skip-invalid to send the rest",
        )
    journal.finish_intake(job_id, skipped)
    counts = journal.counts(job_id)
    if not counts:
        journal.delete_job(job_id)
        raise InputError(
            "no URLs to send" + (f" ({len(skipped)} skipped as invalid)" if skipped else ""),
            hint="pass URLs as arguments, with -i FILE (or - for stdin), or --sitemap",
        )
    journal.set_providers(job_id, sorted(counts))
    return job_id
