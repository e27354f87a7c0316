"""`prewarm submit`: send URLs to the providers, optionally wait and verify."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from prewarm_cli.commands import examples, short_help
from prewarm_cli.commands._common import (
    CONTEXT_SETTINGS,
    exit_with,
    global_options,
    naming_the_job,
    parse_header,
    provider_options,
    url_inputs,
    wait_options,
    workspace,
)
from prewarm_cli.commands._render import (
    emit_verified,
    job_records,
    plan_table,
    status_views,
    submit_table,
)
from prewarm_cli.errors import (
    EXIT_PRIORITY,
    PrewarmError,
    UsageError,
    exit_for,
    worst_exit,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from prewarm_cli.engine import Workspace
    from prewarm_cli.inputs import InputSpec


class SubmitCommand(click.Command):
    """`submit` with the installed provider plugins' extra options (e.g. --mode) after its own."""

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        own_and_help = super().get_params(ctx)
        extra = provider_options(ctx).params
        n_own = len(self.params)
        return [*own_and_help[:n_own], *extra, *own_and_help[n_own:]]


@click.command(
    cls=SubmitCommand,
    context_settings=CONTEXT_SETTINGS,
    short_help=short_help("submit"),
    epilog=examples.SUBMIT,
)
@url_inputs
@click.option(
    "-p",
    "--provider",
    "providers",
    multiple=True,
    metavar="NAME",
    help="Provider alias; repeat for several CDNs (default: [[routes]], defaults.provider).",
)
@click.option(
    "-H",
    "--header",
    "headers",
    multiple=True,
    metavar="'Name: value'",
    help="Header of the prefetch (the CDN sends it to the origin; direct, to the edge) and of"
    " --verify's probes. Repeatable.",
)
@click.option(
    "--invalidate",
    is_flag=True,
    help="Purge the URLs first, then prefetch them (exit 2 when no selected provider can).",
)
@click.option("--skip-invalid", is_flag=True, help="Send the valid URLs and list the invalid ones.")
@click.option("--dry-run", is_flag=True, help="Print the plan; send nothing.")
@click.option("--wait", "wait_", is_flag=True, help="Wait until the vendors finish.")
@wait_options
@click.option(
    "--force",
    is_flag=True,
    help="Allow limits above defaults, resending unknown batches, a 2nd job on a busy stack.",
)
@click.option(
    "--resume",
    metavar="JOB",
    help="Continue JOB: send what is deferred, unsent or failed, with the job's own URLs,"
    " providers and options (giving others is a usage error; --force, --wait and its options"
    " are this run's).",
)
@global_options
def submit(
    inputs: InputSpec,
    providers: tuple[str, ...],
    headers: tuple[str, ...],
    invalidate: bool,
    skip_invalid: bool,
    dry_run: bool,
    wait_: bool,
    interval: float | None,
    wait_timeout: float | None,
    verify: bool,
    force: bool,
    resume: str | None,
    **extra: Any,
) -> None:
    """Send URLs to the CDNs' prefetch APIs.

    \b
    URLs come from arguments, -i FILE (or - for stdin), --sitemap, and the files
    of a deploy under --base-url (--from-dir, --paths, --from-sync-log); they are
    validated and de-duplicated before anything is sent, as a client sends them
    (no #fragment, the host in lower case, no ./ or ../ segments, the path in
    ASCII: café.js is caf%C3%A9.js).
    """
    from prewarm_cli import engine
    from prewarm_cli.plugin import SubmitOptions

    if (verify or interval is not None or wait_timeout is not None) and not wait_:
        raise UsageError("--interval, --wait-timeout and --verify need --wait")
    if resume:
        _check_resume(click.get_current_context())
    extra_options = provider_options(click.get_current_context())
    given_extra = {k: v for k, v in extra.items() if v is not None}
    options = SubmitOptions(
        headers=tuple(parse_header(h) for h in headers),
        invalidate=invalidate,
        force=force,
        extra=given_extra,
    )
    req = engine.SubmitRequest(
        inputs=inputs,
        providers=providers,
        options=options,
        skip_invalid=skip_invalid,
    )
    with workspace(force=force, sends_nothing=dry_run) as ws:
        for warning in extra_options.warnings:
            ws.out.warn(warning)
        if not resume:
            _check_extra_options(ws, providers, given_extra, extra_options.owners)
        if dry_run:
            if resume:
                raise UsageError("--dry-run cannot be combined with --resume")
            plan = engine.plan(ws, req)
            ws.out.emit(
                plan.to_dict(),
                table=lambda _d: plan_table(ws.out, plan),
                records=lambda _d: [
                    {"record": "plan", **p.to_dict()} for p in plan.providers.values()
                ],
            )
            return
        summary, code = engine.submit(ws, req, resume=resume)
        if not wait_:
            ws.out.emit(
                summary.to_dict(),
                table=lambda _d: submit_table(ws.out, summary),
                records=lambda _d: job_records(summary.job_id, summary=summary),
            )
            exit_with(code)
        if ws.out.fmt == "table":
            submit_table(ws.out, summary)
        elif ws.out.fmt == "ndjson":  # the job is named before the wait, which may not end well
            ws.out.emit(summary, records=lambda _d: job_records(summary.job_id, summary=summary))
        ref = engine.parse_job_ref(ws, summary.job_id, lambda: "")
        job = summary.job_id
        try:
            with naming_the_job(
                job,
                f"interrupted while waiting; job {job} goes on at the vendors",
                engine.wait_again(ref)[1],
            ):
                status, claims = engine.wait_with_claims(
                    ws, ref, interval=interval, timeout=wait_timeout, with_claims=verify
                )
        except PrewarmError as exc:  # the submit's own code may come first (DESIGN §6: 5)
            if exc.exit_code in EXIT_PRIORITY:  # not a Ctrl-C's 130, nor a reader gone
                exc.exit_code = worst_exit({code, exc.exit_code})
            raise
        result: dict[str, Any] = {**summary.to_dict(), "status": status.to_dict()}
        codes = {code, exit_for(status.outcomes())}
        table, records = status_views(ws, summary.job_id, status)  # after the submit's
        if claims is not None:
            codes.add(emit_verified(ws, result, claims, ref, table=table, records=records))
        else:
            ws.out.emit(result, table=table, records=records)
        exit_with(worst_exit(codes))


# What a resumed run may set for itself; every other option is the job's, fixed when it began.
_RESUME_RUN_OPTIONS = frozenset({"resume", "force", "wait_", "interval", "wait_timeout", "verify"})


def _check_resume(ctx: click.Context) -> None:
    """--resume continues the job as it was started: URLs, providers and options given with it
    are a usage error (never silently replaced by the job's own), naming each."""
    from click.core import ParameterSource

    given = [
        param
        for param in ctx.command.get_params(ctx)
        if param.expose_value
        and param.name not in _RESUME_RUN_OPTIONS
        and ctx.get_parameter_source(param.name or "")
        in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
    ]
    if given:
        names = ", ".join(
            "URL arguments" if isinstance(p, click.Argument) else "/".join(p.opts) for p in given
        )
        raise UsageError(
            f"--resume takes no new URLs, providers or options: it continues the job with those"
            f" it was started with (given: {names})",
            hint="submit again without --resume to warm with other options",
        )


def _check_extra_options(
    ws: Workspace,
    names: tuple[str, ...],
    given: dict[str, Any],
    owners: Mapping[str, frozenset[str]],
) -> None:
    """An extra option no selected provider declares is a usage error."""
    if not given:
        return
    from prewarm_cli.engine.workspace import IMPLICIT_PROVIDER

    if names:
        aliases = [ws.alias(n) for n in names]
    else:  # what [[routes]] and defaults.provider may pick, not every alias configured
        routed = [ws.alias(p) for route in ws.config.routes for p in route.providers]
        aliases = list(dict.fromkeys([*routed, *filter(None, [ws.default_alias()])]))
        if not aliases and ws.config.aliases():
            return  # none is selected: the router says so
        # With no provider configured, submit warms directly (DESIGN §9).
        aliases = aliases or [IMPLICIT_PROVIDER]
    types = {ws.config.provider_type(a) for a in aliases}
    for key in given:
        declared_by = owners.get(key, frozenset())
        if not declared_by & types:
            flag = "--" + key.replace("_", "-")
            # The provider to pick: an alias of a type that has the option, or that type.
            offer = next(
                (a for t in sorted(declared_by) for a in ws.config.aliases_of_type(t)),
                min(declared_by, default=None),
            )
            raise UsageError(
                f"{flag} is an option of {', '.join(sorted(declared_by))}, not of the selected"
                f" {'provider' if len(aliases) == 1 else 'providers'} {', '.join(aliases)}",
                hint=f"pass -p {offer} to use it" if offer else None,
            )
