"""The root group: the lazy command map, the global options, and main().

Only click and the standard library are imported at start-up; the commands live in
prewarm_cli.commands, one module per family, imported when they run, and what turns an
error into its line and exit code (prewarm_cli.exits) only when one ends the run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator, Mapping
from typing import Any, NoReturn

import click

from prewarm_cli.commands import COMMANDS, CommandEntry
from prewarm_cli.commands._globals import (
    CONTEXT_SETTINGS,
    GlobalOptions,
    global_options,
    output_as_typed,
)


class PrewarmGroup(click.Group):
    """Click's LazyGroup: each command is imported from its "module:attribute" only when it
    runs, so `prewarm --help` lists the commands from the index without importing them."""

    def __init__(
        self, *args: Any, lazy_commands: Mapping[str, CommandEntry] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        eager = [n for n in super().list_commands(ctx) if n not in self.lazy_commands]
        return [*self.lazy_commands, *eager]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = self.lazy_commands.get(cmd_name)
        if entry is None:
            return super().get_command(ctx, cmd_name)
        return _import_command(entry.target)

    def invoke(self, ctx: click.Context) -> Any:
        with _reader_gone_said():
            return super().invoke(ctx)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        with _reader_gone_said():  # the help and --version are written while parsing
            if not args and not ctx.resilient_parsing:  # `prewarm` alone: the help, success
                # (shell completion parses `prewarm` with no arguments too: it wants no help)
                click.echo(ctx.get_help(), color=ctx.color)
                ctx.exit(0)
            return super().parse_args(ctx, args)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0] if args else ""
        known = self.list_commands(ctx)
        if name in known or name.startswith("-") or ctx.resilient_parsing:
            return super().resolve_command(ctx, args)
        import difflib

        message = f"No such command {name!r}."
        close = difflib.get_close_matches(name, known, n=1)
        if close:
            message += f" Did you mean {close[0]!r}?"
        raise click.UsageError(message, ctx)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, entry.short_help) for name, entry in self.lazy_commands.items()]
        rows += [
            (name, cmd.get_short_help_str(limit=formatter.width - 6 - len(name)))
            for name, cmd in self.commands.items()
            if name not in self.lazy_commands and not cmd.hidden
        ]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _print_version(ctx: click.Context) -> None:
    from prewarm_cli.registry import version_text

    click.echo(version_text())
    ctx.exit(0)


def _import_command(target: str) -> click.Command:
    import importlib

    module_name, _, attribute = target.partition(":")
    command = getattr(importlib.import_module(module_name), attribute)
    if not isinstance(command, click.Command):
        raise TypeError(f"{target} is not a click command")
    return command


@click.group(cls=PrewarmGroup, lazy_commands=COMMANDS, context_settings=CONTEXT_SETTINGS)
@click.option(
    "-V",
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=lambda ctx, _param, value: _print_version(ctx) if value else None,
    help="Show the version, Python, the platform and the provider plugins, and exit.",
)
@global_options
def cli() -> None:
    """Pre-warm CDN caches across several CDNs with one command set.

    \b
    Examples:
      prewarm config init                      # set up a provider
      prewarm submit -i urls.txt --wait        # warm the URLs in a file, wait for the vendor
      prewarm submit -p qiniu -p edgeone URL   # the same URL on two CDNs
      prewarm status                           # the latest job
      prewarm report JOB -o ndjson | jq .      # what failed, one line per URL

    Data goes to stdout (a table on a terminal, JSON otherwise), messages to stderr.
    Exit codes: 0 ok, 1 failed, 2 usage/input, 3 config/credentials, 4 not everything
    warmed, 5 quota/rate limit (resume later), 6 --wait-timeout, 130 interrupted, 141
    stdout's reader gone (| head).
    """


# --------------------------------------------------------------------------- entry point


def _help_width() -> int:
    """The width click gives help text, found as click would find it but without importing
    shutil for it (4 ms of `prewarm --help`, for the compressors shutil loads): $COLUMNS, else
    the terminal's width, else 80 (shutil.get_terminal_size's order), at most the context's
    max_content_width."""
    columns = int(os.environ["COLUMNS"]) if os.environ.get("COLUMNS", "").isdigit() else 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return max(min(columns or 80, int(CONTEXT_SETTINGS["max_content_width"])) - 2, 50)


def _stop_as_interrupted(signum: int, _frame: object) -> None:
    """SIGTERM (a CI job's time limit, `kill`, a container stopping) stops a run as Ctrl-C
    does: what was sent is recorded, and the last line says how to resume. A SIGTERM after
    either (a CI runner sends SIGINT, then SIGTERM) is ignored while that is done; a second
    Ctrl-C still stops at once, and SIGKILL ends it."""
    global _stopping
    if signum == signal.SIGTERM and _stopping:
        return  # (not SIG_IGN: a SIGTERM already pending would then raise an OSError)
    _stopping = True
    raise KeyboardInterrupt


_stopping = False  # a run is being stopped (by a signal)


@contextlib.contextmanager
def _reader_gone_said() -> Iterator[None]:
    """stdout's reader gone (`| head -1`) ends the run as ReaderGone (141, silent), before
    click takes the broken pipe for a silent exit 1; a socket's broken pipe stays as it is."""
    try:
        yield
    except BrokenPipeError as exc:
        from prewarm_cli.output import stdout_reader_gone

        if not stdout_reader_gone():
            raise
        from prewarm_cli.errors import ReaderGone

        raise ReaderGone() from exc


def main(argv: list[str] | None = None) -> NoReturn:
    given = GlobalOptions()  # filled while parsing; still readable when an error ends the run
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    # Not where SIGTERM was set aside (ignored by a parent, or a caller's own handler), nor
    # from another thread than the main one, which cannot.
    previous = signal.getsignal(signal.SIGTERM)
    if previous is signal.SIG_DFL:
        with contextlib.suppress(ValueError):
            signal.signal(signal.SIGTERM, _stop_as_interrupted)
            if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
                signal.signal(signal.SIGINT, _stop_as_interrupted)
    try:
        cli.main(
            args=argv,
            prog_name="prewarm",
            standalone_mode=False,
            obj=given,
            terminal_width=_help_width(),
        )
    except SystemExit:
        raise
    except click.exceptions.Exit as exc:  # ctx.exit() outside a command, e.g. in completion
        sys.exit(exc.exit_code)
    except (Exception, KeyboardInterrupt) as exc:
        from prewarm_cli.exits import exit_for  # only when something went wrong

        if "output" not in given:  # click stopped before it read them (a bad option first)
            typed = output_as_typed(argv if argv is not None else sys.argv[1:])
            if typed is not None:
                given["output"] = typed
        sys.exit(exit_for(exc, given, debug))
    finally:
        # A caller in this process (a test) gets its own handlers back, unless a signal is
        # stopping the run: then ours stay, and the process exits with 130 even when the
        # second signal of the stop (a CI runner's SIGINT, then SIGTERM) comes as it does
        # (restored, SIGTERM's default ended it with 143, its record already written).
        if previous is signal.SIG_DFL and not _stopping:
            with contextlib.suppress(ValueError):
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                if signal.getsignal(signal.SIGINT) is _stop_as_interrupted:
                    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.exit(0)
