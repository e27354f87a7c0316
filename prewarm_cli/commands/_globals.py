"""The global options: they work before and after the subcommand, and the root group has them.

Split from _common.py because every start-up imports it (`prewarm --help` too): click and the
standard library only, and as little code as possible.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import click

CONTEXT_SETTINGS: dict[str, Any] = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


# --------------------------------------------------------------------------- global options
# They work before and after the subcommand: `prewarm -o json submit` == `prewarm submit -o json`.


class GlobalOptions(dict[str, Any]):
    """The global options given so far, by name; the context's `obj`, shared by the root
    group and its subcommand. `main()` passes its own so that it can still read `--json`
    when it reports an error after the context is gone."""


def _store(
    name: str, value_given: Any = None
) -> Callable[[click.Context, click.Parameter, Any], None]:
    """A callback keeping the option's value as ``name`` (``value_given`` in its place, for
    a flag that sets another option: --json is -o json). Click calls callbacks in the order
    the options were typed, so the last of -o and --json wins."""

    def callback(ctx: click.Context, _param: click.Parameter, value: Any) -> None:
        given = ctx.ensure_object(GlobalOptions)
        if value is None or value is False or value == 0 or value == ():
            return
        given[name] = value if value_given is None else value_given

    return callback


# (name kept in GlobalOptions, option declarations, click keyword arguments)
_GLOBAL_OPTIONS: tuple[tuple[str, tuple[str, ...], dict[str, Any]], ...] = (
    (
        "output",
        ("-o", "--output"),
        {
            "type": click.Choice(["table", "json", "ndjson"]),
            "help": "Output format (default: table on a terminal, json otherwise).",
        },
    ),
    ("json", ("--json",), {"is_flag": True, "help": "Shortcut for -o json (the last one wins)."}),
    ("quiet", ("-q", "--quiet"), {"is_flag": True, "help": "Only data and errors."}),
    ("verbose", ("-v", "--verbose"), {"count": True, "help": "More detail on stderr."}),
    ("debug", ("--debug",), {"is_flag": True, "help": "Tracebacks on errors."}),
    ("no_color", ("--no-color",), {"is_flag": True, "help": "No colours (also NO_COLOR=1)."}),
    (
        "config",
        ("--config", "config_file"),
        {
            "metavar": "PATH",
            "help": "Config file (default: $PREWARM_CONFIG, then"
            " $XDG_CONFIG_HOME/prewarm/config.toml, ~/.config/prewarm/config.toml).",
        },
    ),
)


def global_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Adds the global options to a command (they set GlobalOptions, not parameters)."""
    for name, decls, kwargs in reversed(_GLOBAL_OPTIONS):
        store = _store("output", "json") if name == "json" else _store(name)
        f = click.option(*decls, callback=store, expose_value=False, **kwargs)(f)
    return f


def global_values() -> Mapping[str, Any]:
    ctx = click.get_current_context()
    return dict(ctx.find_object(GlobalOptions) or {})


def output_format(given: Mapping[str, Any]) -> str | None:
    """The format the global options ask for, or None for the default."""
    fmt: str | None = given.get("output")
    return fmt


def output_as_typed(args: list[str]) -> str | None:
    """The output format -o/--output/--json name on the command line as typed (the last
    wins), for an error click raised before it read them; None if none names one."""
    fmt = None
    tokens = iter(args)
    for arg in tokens:
        if arg == "--":
            break
        named = None
        if arg in ("-o", "--output"):
            named = next(tokens, None)
        elif arg.startswith("--output="):
            named = arg.partition("=")[2]
        elif arg.startswith("-o") and len(arg) > 2:
            named = arg[2:]
        elif arg == "--json":
            named = "json"
        if named in ("table", "json", "ndjson"):  # not another option's value that looks so
            fmt = named
    return fmt
