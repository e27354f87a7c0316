"""How a run that went wrong ends: one line on stderr (and the error as JSON on stdout when
the output is JSON), and the exit code of DESIGN.md §6. Imported only when a run ends so."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

import click

from prewarm_cli.commands._globals import output_format
from prewarm_cli.errors import ExitCode, PrewarmError
from prewarm_cli.output import is_tty, said_on_stdout, stdout_reader_gone


def exit_for(exc: BaseException, given: Mapping[str, Any], debug: bool) -> ExitCode:
    """The one line (or JSON) for what ended the run, and its exit code."""
    if isinstance(exc, click.exceptions.Abort):
        # Click turns Ctrl-C into Abort: one message, the same as everywhere else.
        ctrl_c = isinstance(exc.__context__, KeyboardInterrupt)
        return _interrupted(given, "interrupted" if ctrl_c else "aborted", exc.__context__)
    if isinstance(exc, click.ClickException):
        exc.show()  # click's usage line and message, on stderr
        from prewarm_cli.errors import UsageError

        failed_in = getattr(getattr(exc, "ctx", None), "command", None)
        if not (getattr(failed_in, "lines_unless_asked", False) and output_format(given) is None):
            _json_error(UsageError(exc.format_message()), given)  # as any error, in JSON mode
        return ExitCode.USAGE
    if isinstance(exc, KeyboardInterrupt):
        return _interrupted(given, "interrupted", exc)
    from prewarm_cli.errors import ReaderGone

    if isinstance(exc, ReaderGone):
        return ExitCode.READER_GONE  # nobody reads stdout any more: nothing to say there
    if isinstance(exc, PrewarmError):
        report_error(exc, given, debug)
        return exc.exit_code
    if debug:  # the one place that turns a bug into one clear line
        raise exc
    click.echo(
        f"error: unexpected {type(exc).__name__}: {exc} (run with --debug for the traceback)",
        err=True,
    )
    return ExitCode.FAILED


def report_error(exc: PrewarmError, given: Mapping[str, Any], debug: bool) -> None:
    if debug:
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    _json_error(exc, given)
    click.echo(f"error: {exc}", err=True)
    if exc.hint:
        click.echo(f"hint: {exc.hint}", err=True)


def _interrupted(given: Mapping[str, Any], word: str, cause: BaseException | None) -> ExitCode:
    """Ctrl-C (or a prompt given up) where nothing was left to save: one word on stderr, and
    in JSON mode the error on stdout as for any other."""
    from prewarm_cli.errors import UserInterrupt

    _json_error(UserInterrupt(word), given, cause)
    click.echo(word, err=True)
    return ExitCode.INTERRUPTED


def _json_error(
    exc: PrewarmError, given: Mapping[str, Any], cause: BaseException | None = None
) -> None:
    """The error as JSON on stdout when the output is JSON (asked for, or stdout piped),
    unless the document streamed there closed with it (``cause``, or ``exc``, cut it short)."""
    import json

    if said_on_stdout(cause or exc):
        return
    fmt = output_format(given)
    if fmt is None and not is_tty(sys.stdout):
        fmt = "json"
    if fmt in ("json", "ndjson"):
        try:
            sys.stdout.write(json.dumps(exc.to_dict(), ensure_ascii=False) + "\n")
            sys.stdout.flush()
        except BrokenPipeError:  # nobody reads it: stderr still says what happened
            if not stdout_reader_gone():
                raise
