"""Input to job: reading, validating, routing and de-duplicating URLs into the journal."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from prewarm_cli import journal as jr
from prewarm_cli.engine.workspace import Router, Workspace
from prewarm_cli.errors import InputError, UsageError
from prewarm_cli.inputs import (
    MAX_KEPT_SKIPPED,
    NO_INPUT_HINT,
    InputNotes,
    InputSpec,
    InvalidInput,
    InvalidList,
    check_inputs,
    host_of,
    iter_inputs,
)
from prewarm_cli.plugin import Capability, SubmitOptions


@dataclass(frozen=True)
class SubmitRequest:
    inputs: InputSpec = field(default_factory=InputSpec)
    providers: Sequence[str] = ()
    options: SubmitOptions = field(default_factory=SubmitOptions)
    skip_invalid: bool = False


def vendor_of(ws: Workspace, alias: str) -> str:
    """Which vendor an alias sends to: its type, and its endpoint where the config names one
    (scheme and host in lower case, without a default port or a trailing slash). A job
    remembers it, so that a --resume does not send the rest, and look its unanswered batches
    up, elsewhere."""
    ptype = ws.config.provider_type(alias)
    endpoint = ws.config.providers.get(alias, {}).get("endpoint")
    if not endpoint:
        return ptype
    parts = urlsplit(str(endpoint).strip())
    default_port = {"http": 80, "https": 443}.get(parts.scheme.lower())
    try:
        port = parts.port
    except ValueError:
        port = None
    host = (parts.hostname or "") + (f":{port}" if port and port != default_port else "")
    return f"{ptype} at {parts.scheme.lower()}://{host}{parts.path.rstrip('/')}"


def same_vendor(was: str, now: str) -> bool:
    """Whether two vendor_of() values can be the same vendor: the same type, and the same
    endpoint where both name one (an endpoint left out is the provider's default, which an
    explicit one may equal)."""
    type_was, _, endpoint_was = was.partition(" at ")
    type_now, _, endpoint_now = now.partition(" at ")
    if type_was != type_now:
        return False
    return endpoint_was == endpoint_now or not (endpoint_was and endpoint_now)


def intake(
    ws: Workspace,
    journal: jr.Journal,
    req: SubmitRequest,
    job_id: str | None = None,
    settings_of: Callable[[str], Mapping[str, Any]] = lambda alias: {},
) -> str:
    """Reads, validates, routes and de-duplicates the input into a new job (``job_id``, or a
    new one), with each provider's ``settings_of`` (Journal.finish_intake); sends nothing.
    No job is left behind when any of it fails."""
    router = Router(ws, req.providers)
    options = {
        "headers": [list(h) for h in req.options.headers],
        "invalidate": req.options.invalidate,
        "extra": dict(req.options.extra),
    }
    job_id = journal.create_job(router.selected, options, job_id)
    inputs = req.inputs
    if inputs.sitemaps:  # fetched through what the providers' own requests trust
        inputs = replace(inputs, ca_bundles=router.ca_bundles())
    invalid = InvalidList()
    skipped = InvalidList(MAX_KEPT_SKIPPED)  # all counted, the first kept (the job's JSON)
    notes = InputNotes()

    def items() -> Iterator[tuple[int, str, Sequence[str]]]:
        for seq, item in enumerate(check_inputs(iter_inputs(inputs, notes=notes))):
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
                skipped.add(item)
            else:
                invalid.add(item)

    try:
        journal.add_targets(job_id, items())
    except BaseException:
        journal.delete_job(job_id)
        raise
    for message in notes.messages():
        ws.out.warn(message)
    if skipped:
        ws.out.warn(skipped.trimmed().message("skipped (--skip-invalid)"))
    if invalid:
        journal.delete_job(job_id)
        # A provider that cannot be used here (its credentials unset) is said first: of the
        # two errors, configuration comes before input (DESIGN §6: 3 before 2).
        for alias in dict.fromkeys([*router.selected, *filter(None, [router.default])]):
            ws.session(alias)
        raise invalid.error(
            "nothing was sent", hint="fix them, or pass --skip-invalid to send the rest"
        )
    # A sync log's failed uploads are skipped too (DESIGN §4), with their line.
    skipped.merge(notes.failed_uploads)
    try:
        journal.finish_intake(
            job_id,
            [item.to_dict() for item in skipped.listed],
            lambda alias: vendor_of(ws, alias),
            settings_of,
            n_skipped=len(skipped),
        )
    except BaseException:
        journal.delete_job(job_id)
        raise
    counts = journal.counts(job_id)
    if not counts:
        journal.delete_job(job_id)
        raise InputError(
            "no URLs to send" + (f" ({len(skipped)} skipped)" if skipped else ""),
            # Inputs that gave nothing (an empty directory, no path under --strip-prefix):
            # what they resolve to is for `urls` to show.
            hint="`prewarm urls` with the same inputs shows what they resolve to"
            if req.inputs.has_input()
            else NO_INPUT_HINT,
        )
    return job_id


def check_invalidate(ws: Workspace, aliases: Sequence[str], options: SubmitOptions) -> None:
    """--invalidate that no selected provider can honour is refused: a stale copy would stay
    at the edge and be counted warm."""
    if not options.invalidate:
        return
    for alias in aliases:
        provider = ws.session(alias).provider
        if provider.invalidates_in_submit or Capability.INVALIDATE in provider.capabilities:
            return
    raise UsageError(
        f"--invalidate: {', '.join(aliases)} cannot purge",
        hint="drop --invalidate, or pick a provider that can purge with -p",
    )
