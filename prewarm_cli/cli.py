"""The command line: parse, call the core, render. Nothing else lives here.

Only click and the standard library are imported at start-up; every command
imports what it needs when it runs, so `prewarm --help` stays fast.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn

import click

from prewarm_cli import __version__
from prewarm_cli.errors import ExitCode, PrewarmError

if TYPE_CHECKING:
    from prewarm_cli.engine import Workspace
    from prewarm_cli.output import Output

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
_GLOBALS = "prewarm.globals"
_seen_globals: dict[str, Any] = {}  # kept after the context is gone, for error output


# --------------------------------------------------------------------------- global options
# They work before and after the subcommand: `prewarm -o json submit` == `prewarm submit -o json`.


def _store(name: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    def callback(ctx: click.Context, _param: click.Parameter, value: Any) -> None:
        if value is None or value is False or value == 0 or value == ():
            return
        ctx.meta.setdefault(_GLOBALS, {})[name] = value
        _seen_globals[name] = value

    return callback


# (name kept in ctx.meta, option declarations, click keyword arguments)
_GLOBAL_OPTIONS: tuple[tuple[str, tuple[str, ...], dict[str, Any]], ...] = (
    (
        "output",
        ("-o", "--output"),
        {
            "type": click.Choice(["table", "json", "ndjson"]),
            "help": "Output format (default: table on a terminal, json otherwise).",
        },
    ),
    ("json", ("--json",), {"is_flag": True, "help": "Shortcut for -o json."}),
    ("quiet", ("-q", "--quiet"), {"is_flag": True, "help": "Only data and errors."}),
    ("verbose", ("-v", "--verbose"), {"count": True, "help": "More detail on stderr."}),
    ("debug", ("--debug",), {"is_flag": True, "help": "Tracebacks on errors."}),
    ("no_color", ("--no-color",), {"is_flag": True, "help": "No colours (also NO_COLOR=1)."}),
    (
        "config",
        ("--config", "config_file"),
        {
            "metavar": "PATH",
            "help": "Config file (default: $PREWARM_CONFIG, then ~/.config/prewarm/config.toml).",
        },
    ),
)


def global_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for name, decls, kwargs in reversed(_GLOBAL_OPTIONS):
        f = click.option(*decls, callback=_store(name), expose_value=False, **kwargs)(f)
    return f


def global_values() -> dict[str, Any]:
    ctx = click.get_current_context()
    return dict(ctx.meta.get(_GLOBALS, {}))


def command_output() -> Output:
    from prewarm_cli.output import Output

    g = global_values()
    fmt = "json" if g.get("json") else g.get("output")
    color = False if g.get("no_color") else None
    out = Output(fmt, color=color, quiet=bool(g.get("quiet")), verbose=int(g.get("verbose", 0)))
    while _PLUGIN_WARNINGS:
        out.warn(_PLUGIN_WARNINGS.pop(0))
    return out


@contextmanager
def workspace(force: bool = False) -> Iterator[Workspace]:
    """Loads config and opens the journal for one command."""
    from prewarm_cli import config as config_mod
    from prewarm_cli.engine import Workspace

    g = global_values()
    cfg = config_mod.load_config(g.get("config"))
    out = command_output()
    if out.fmt == "table" and not g.get("output") and not g.get("json"):
        wanted = cfg.defaults.get("output")
        if wanted:
            out.fmt = wanted
    ws = Workspace(cfg, out, force=force)
    _warn_permissions(ws)
    try:
        yield ws
    finally:
        ws.close()


def _warn_permissions(ws: Workspace) -> None:
    from prewarm_cli import config as config_mod
    from prewarm_cli import registry

    if not ws.config.exists:
        return
    secrets: dict[str, list[str]] = {}
    for ptype in {ws.config.provider_type(a) for a in ws.config.aliases()}:
        try:
            cls = registry.load(ptype)
        except PrewarmError:
            continue
        secrets[ptype] = [f.name for f in cls.config_schema if f.secret]
    warning = config_mod.permission_warning(ws.config, secrets)
    if warning:
        ws.out.warn(warning)


def exit_with(code: ExitCode) -> NoReturn:
    raise SystemExit(int(code))


# --------------------------------------------------------------------------- the group


class PrewarmGroup(click.Group):
    """Builds each command only when it runs: `prewarm --help` neither defines nor compiles
    them (they live in prewarm_cli.commands)."""

    def __init__(self, *args: Any, lazy: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy or {}  # command name -> short help; built by commands.make_NAME()

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*self.lazy, *(n for n in super().list_commands(ctx) if n not in self.lazy)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy and cmd_name not in self.commands:
            from prewarm_cli import commands

            self.add_command(getattr(commands, f"make_{cmd_name}")(), cmd_name)
        cmd = super().get_command(ctx, cmd_name)
        if cmd_name == "submit" and cmd is not None:
            _add_provider_options(cmd)
        return cmd

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = list(self.lazy.items())
        rows += [
            (name, cmd.get_short_help_str(limit=formatter.width - 6 - len(name)))
            for name, cmd in self.commands.items()
            if name not in self.lazy and not cmd.hidden
        ]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


PROVIDER_OPTIONS: dict[str, Any] = {}
_PLUGIN_WARNINGS: list[str] = []  # shown once the command knows whether to be quiet


def _add_provider_options(cmd: click.Command) -> None:
    """Adds each plugin's extra submit options (e.g. --mode) once, on first use."""
    if getattr(cmd, "_provider_options_added", False):
        return
    from prewarm_cli import registry

    taken = {opt for p in cmd.params for opt in getattr(p, "opts", [])}
    for ptype, cls in registry.load_all(_PLUGIN_WARNINGS.append).items():
        for opt in cls.submit_options:
            flag = f"--{opt.name}"
            if flag in taken:
                if opt.key in PROVIDER_OPTIONS:
                    PROVIDER_OPTIONS[opt.key]["types"].add(ptype)
                continue
            taken.add(flag)
            PROVIDER_OPTIONS[opt.key] = {"types": {ptype}, "default": opt.default}
            help_text = f"[{ptype}] {opt.help}"
            if opt.type is bool:
                param = click.Option([flag], is_flag=True, default=None, help=help_text)
            else:
                kind: Any = click.Choice(opt.choices) if opt.choices else opt.type
                param = click.Option([flag], type=kind, default=None, help=help_text)
            cmd.params.append(param)
    cmd._provider_options_added = True  # type: ignore[attr-defined]


COMMANDS = {  # name -> short help, for `prewarm --help` without building the commands
    "submit": "Send URLs to the CDNs' prefetch APIs.",
    "status": "Show a job's state: JOB, ALIAS:TASK_ID[,...], - (a submit JSON), or the latest.",
    "report": "List every URL that failed or was rejected, with provider, PoP and reason.",
    "jobs": "List recent local jobs, newest first.",
    "quota": "Show the daily quota, what remains and when it resets.",
    "scale": "Show or set the number of warming instances (providers that have them).",
    "cancel": "Stop a running job at the vendor (providers that can).",
    "verify": "Check the CDNs' cache headers: is each URL warm where you stand?",
    "providers": "List installed provider types and configured aliases, with capabilities.",
    "config": "Create, show and check the configuration file.",
}


@click.group(cls=PrewarmGroup, lazy=COMMANDS, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "-V", "--version", prog_name="prewarm")
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
    warmed, 5 quota/rate limit (resume later), 6 --wait-timeout, 130 interrupted.
    """


# --------------------------------------------------------------------------- entry point


def main(argv: list[str] | None = None) -> NoReturn:
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        cli.main(args=argv, prog_name="prewarm", standalone_mode=False)
    except SystemExit:
        raise
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(ExitCode.INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(ExitCode.USAGE)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(ExitCode.INTERRUPTED)
    except PrewarmError as exc:
        _report_error(exc, debug)
        sys.exit(exc.exit_code)
    except Exception as exc:  # the one place that turns a bug into one clear line
        if debug:
            raise
        click.echo(
            f"error: unexpected {type(exc).__name__}: {exc} (run with --debug for the traceback)",
            err=True,
        )
        sys.exit(ExitCode.FAILED)
    sys.exit(ExitCode.OK)


def _report_error(exc: PrewarmError, debug: bool) -> None:
    import json

    if debug:
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    fmt = "json" if _seen_globals.get("json") else _seen_globals.get("output")
    if fmt is None and not _stdout_is_tty():
        fmt = "json"
    if fmt in ("json", "ndjson"):
        sys.stdout.write(json.dumps(exc.to_dict(), ensure_ascii=False) + "\n")
        sys.stdout.flush()
    click.echo(f"error: {exc}", err=True)
    if exc.hint:
        click.echo(f"hint: {exc.hint}", err=True)


def _stdout_is_tty() -> bool:
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False
