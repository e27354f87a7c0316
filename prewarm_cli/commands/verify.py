"""`prewarm verify`: probe each URL and classify the CDNs' cache headers (DESIGN.md §7)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from prewarm_cli.commands import examples, short_help
from prewarm_cli.commands._common import (
    CONTEXT_SETTINGS,
    SECONDS,
    command_output,
    exit_with,
    global_options,
    parse_header,
    url_inputs,
)

if TYPE_CHECKING:
    from prewarm_cli.inputs import InputSpec


@click.command(
    context_settings=CONTEXT_SETTINGS, short_help=short_help("verify"), epilog=examples.VERIFY
)
@url_inputs
@click.option(
    "--get",
    "use_get",
    is_flag=True,
    help="GET and download each body (counted, not kept) instead of HEAD.",
)
@click.option(
    "-H",
    "--header",
    "headers",
    multiple=True,
    metavar="'Name: value'",
    help="Extra request header. Repeatable.",
)
@click.option(
    "--accept-encoding",
    "encodings",
    multiple=True,
    metavar="ENC",
    help="Check this Accept-Encoding variant (gzip, br, identity, ...); one request per"
    " URL per value. Repeatable.",
)
@click.option(
    "--resolve",
    "--pop-resolve",
    "resolve",
    multiple=True,
    metavar="HOST[:PORT]:IP",
    help="Connect to IP for HOST, keeping Host and SNI (like curl). Repeatable.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=16,
    show_default=True,
    help="Requests in flight at once.",
)
@click.option(
    "--timeout",
    type=SECONDS,
    default=10.0,
    show_default=True,
    metavar="S",
    help="Seconds to connect, and per read.",
)
@click.option(
    "--retries",
    type=click.IntRange(min=0),
    default=2,
    show_default=True,
    help="Retries after a connection error (nothing else is retried).",
)
@click.option(
    "--ca-bundle",
    type=click.Path(exists=True, dir_okay=False),
    metavar="FILE",
    help="PEM CA bundle to verify against (TLS is always verified).",
)
@click.option(
    "--expect-hit", is_flag=True, help="Exit 4 unless every URL is a 2xx hit or revalidated."
)
@global_options
def verify(
    inputs: InputSpec,
    use_get: bool,
    headers: tuple[str, ...],
    encodings: tuple[str, ...],
    resolve: tuple[str, ...],
    concurrency: int,
    timeout: float,
    retries: int,
    ca_bundle: str | None,
    expect_hit: bool,
) -> None:
    """Check the CDNs' cache headers: is each URL warm where you stand?

    Requests each URL and classifies the answer hit, miss, revalidated, bypass or unknown.

    \b
    Reads CloudFront X-Cache / X-Amz-Cf-Pop, EdgeOne EO-Cache-Status, Qiniu
    X-Qnm-Cache, RFC 9211 Cache-Status and generic X-Cache. Age alone proves
    nothing. Redirects are reported, not followed. See
    https://github.com/prewarm/prewarm-cli/blob/main/docs/verify.md
    """
    import contextlib

    from prewarm_cli.inputs import InputNotes
    from prewarm_cli.output import is_tty
    from prewarm_cli.verify import probe, render

    options = probe.VerifyOptions(
        method="GET" if use_get else "HEAD",
        headers=tuple(parse_header(h) for h in headers),
        encodings=encodings,
        resolve=resolve,
        concurrency=concurrency,
        timeout=timeout,
        retries=retries,
        ca_bundle=ca_bundle,
        expect_hit=expect_hit,
    )
    out = command_output()
    notes = InputNotes()
    if ca_bundle:  # a sitemap is fetched as the probes are
        import dataclasses

        inputs = dataclasses.replace(inputs, ca_bundles=(ca_bundle,))
    # Piped JSON and ndjson are written as the answers come, in the order of the URLs: a
    # million of them are never all held. A table (or JSON on a terminal, under a progress
    # bar) is written once they all came.
    streamed = out.fmt != "table" and not is_tty(out.stdout)
    with probe.read_urls(inputs, notes=notes) as targets:
        for message in notes.messages():
            out.warn(message)
        for message in probe.unpinned(targets, options):
            out.warn(message)
        total = probe.planned_requests(len(targets), options)
        with out.progress(total, "verifying") as bar:
            results, tally = probe.verify_stream(targets, options, progress=bar.advance)
            with contextlib.closing(results):  # the probes stop with a reader gone
                if streamed:
                    summary = tally.to_dict
                    out.emit(
                        {"results": results, "summary": summary}, records=render.records, live=True
                    )
                else:
                    result = {"results": list(results), "summary": tally.to_dict()}
    if not streamed:
        out.emit(result, table=lambda d: render.render_table(out, d), records=render.records)
    exit_with(probe.exit_code(tally.to_dict(), expect_hit))
