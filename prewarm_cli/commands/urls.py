"""`prewarm urls`: the URLs the inputs resolve to, printed; nothing is sent (DESIGN.md §4)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from prewarm_cli.commands import examples, short_help
from prewarm_cli.commands._common import (
    CONTEXT_SETTINGS,
    GlobalOptions,
    command_output,
    global_options,
    output_format,
    url_inputs,
)

if TYPE_CHECKING:
    from prewarm_cli.inputs import InputSpec


class LinesCommand(click.Command):
    """A command whose stdout is plain lines unless -o/--json asks for JSON (lines_unless_asked):
    an error in its options stays off stdout too (exits.exit_for), and its -o says so."""

    lines_unless_asked = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if isinstance(param, click.Option) and param.name == "output":
                param.help = "Output format (default: one URL per line, piped or not)."


def lines_unless_asked(f: Callable[..., Any]) -> Callable[..., Any]:
    """Plain lines on stdout unless -o/--json asks for JSON, piped or not: the list is the
    data (`prewarm urls ... > urls.txt`), and an error then stays off stdout too."""

    @functools.wraps(f)
    def wrapper(**kwargs: Any) -> Any:
        given = click.get_current_context().ensure_object(GlobalOptions)
        if output_format(given) is None:
            given["output"] = "table"
        return f(**kwargs)

    return wrapper


@click.command(
    cls=LinesCommand,
    context_settings=CONTEXT_SETTINGS,
    short_help=short_help("urls"),
    epilog=examples.URLS,
)
@lines_unless_asked
@url_inputs
@global_options
def urls(inputs: InputSpec) -> None:
    """Print the URLs the inputs resolve to; send nothing.

    \b
    The same inputs as submit and verify, validated and de-duplicated: the way
    to check a --base-url mapping before a warm, or to feed another tool.
    One URL per line, piped or not; -o json prints a list, -o ndjson one JSON
    string per line.
    """
    from prewarm_cli.inputs import InputNotes, read_urls

    out = command_output()
    notes = InputNotes()
    # Given inputs that resolve to nothing (a deploy that changed nothing) are an empty
    # list, not an error; no input at all is one.
    nothing = None if inputs.has_input() else "no URLs given"
    with read_urls(inputs, notes=notes, consequence="nothing was listed", nothing=nothing) as found:
        for message in notes.messages():
            out.warn(message)
        if not found:
            out.warn("the inputs resolve to no URL")
        # Written as read back (from disk when many): a million URLs are never all in memory.
        out.emit(iter(found), table=out.lines)
