"""What every command uses: global options, command output, the workspace, shared inputs.

Imported for `prewarm --help` (the root group carries the global options), so it imports
only click and the standard library at module level.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn

import click

from prewarm_cli.errors import ExitCode, PrewarmError, UsageError

if TYPE_CHECKING:
    from prewarm_cli.engine import Workspace
    from prewarm_cli.output import Output

CONTEXT_SETTINGS: dict[str, Any] = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


# --------------------------------------------------------------------------- global options
# They work before and after the subcommand: `prewarm -o json submit` == `prewarm submit -o json`.


class GlobalOptions(dict[str, Any]):
    """The global options given so far, by name; the context's `obj`, shared by the root
    group and its subcommand. `main()` passes its own so that it can still read `--json`
    when it reports an error after the context is gone."""


def _store(name: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    def callback(ctx: click.Context, _param: click.Parameter, value: Any) -> None:
        given = ctx.ensure_object(GlobalOptions)
        if value is None or value is False or value == 0 or value == ():
            return
        given[name] = value

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
    """Adds the global options to a command (they set GlobalOptions, not parameters)."""
    for name, decls, kwargs in reversed(_GLOBAL_OPTIONS):
        f = click.option(*decls, callback=_store(name), expose_value=False, **kwargs)(f)
    return f


def global_values() -> Mapping[str, Any]:
    ctx = click.get_current_context()
    return dict(ctx.find_object(GlobalOptions) or {})


def output_format(given: Mapping[str, Any]) -> str | None:
    """The format the global options ask for, or None for the default."""
    if given.get("json"):
        return "json"
    fmt: str | None = given.get("output")
    return fmt


# --------------------------------------------------------------------------- what commands use


def command_output() -> Output:
    from prewarm_cli.output import Output

    g = global_values()
    color = False if g.get("no_color") else None
    return Output(
        output_format(g), color=color, quiet=bool(g.get("quiet")), verbose=int(g.get("verbose", 0))
    )


@contextmanager
def workspace(force: bool = False) -> Iterator[Workspace]:
    """Loads config and opens the journal for one command."""
    from prewarm_cli import config as config_mod
    from prewarm_cli.engine import Workspace

    g = global_values()
    cfg = config_mod.load_config(g.get("config"))
    out = command_output()
    if out.fmt == "table" and output_format(g) is None:
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


def stdin_text() -> str:
    import sys

    return sys.stdin.read()


def parse_header(text: str) -> tuple[str, str]:
    """`-H "Name: value"` as a (name, value) pair; a usage error otherwise."""
    name, sep, value = text.partition(":")
    if not sep or not name.strip() or any(c in name for c in " \t"):
        raise UsageError(f"header {text!r} is not 'Name: value'")
    return name.strip(), value.strip()


# --------------------------------------------------------------------------- shared inputs


def url_inputs(f: Callable[..., Any]) -> Callable[..., Any]:
    """The URL inputs submit, verify and urls share (DESIGN §4), given to the command as one
    ``inputs`` parameter, an InputSpec: arguments, -i FILE, --sitemap, and the files of a
    deploy mapped through --base-url. A new URL source is one more option here and one more
    InputSpec field.
    """

    @functools.wraps(f)
    def with_inputs(**kwargs: Any) -> Any:
        from prewarm_cli.inputs import InputSpec

        given = {name: kwargs.pop(name) for name in _INPUT_SPEC_FIELDS}
        inputs = InputSpec(**given, default_excludes=not kwargs.pop("no_default_excludes"))
        return f(inputs=inputs, **kwargs)

    for option in reversed(_URL_SOURCE_OPTIONS):
        with_inputs = option(with_inputs)
    return click.argument("urls", nargs=-1)(with_inputs)


# The parameters of the options below that are InputSpec fields of the same name.
_INPUT_SPEC_FIELDS = (
    "urls",
    "files",
    "sitemaps",
    "base_url",
    "from_dirs",
    "paths",
    "sync_logs",
    "strip_prefix",
    "index",
    "excludes",
)

_URL_SOURCE_OPTIONS: tuple[Callable[[Callable[..., Any]], Callable[..., Any]], ...] = (
    click.option(
        "-i",
        "--input",
        "files",
        multiple=True,
        metavar="FILE",
        help="Read URLs from FILE, one per line (- for stdin). Repeatable.",
    ),
    click.option(
        "--sitemap",
        "sitemaps",
        multiple=True,
        metavar="URL|FILE",
        help="Read URLs from a sitemap or sitemap index (gzip ok). Repeatable.",
    ),
    click.option(
        "--base-url",
        metavar="URL",
        help="The URL the files of --from-dir, --paths and --from-sync-log are served under.",
    ),
    click.option(
        "--from-dir",
        "from_dirs",
        multiple=True,
        metavar="DIR",
        help="Every file under DIR (a build output), mapped through --base-url. Repeatable.",
    ),
    click.option(
        "--index",
        type=click.Choice(["dir", "file", "both"]),
        default="dir",
        show_default=True,
        help="index.html as its directory's URL, its own URL, or both.",
    ),
    click.option(
        "--exclude",
        "excludes",
        multiple=True,
        metavar="GLOB",
        help="Leave out --from-dir paths matching GLOB (relative, with /). Repeatable.",
    ),
    click.option(
        "--no-default-excludes",
        is_flag=True,
        help="Keep dot-paths, *.map and precompressed *.gz/*.br/*.zst siblings.",
    ),
    click.option(
        "--paths",
        multiple=True,
        metavar="FILE",
        help="Relative paths, one per line (- for stdin), e.g. git diff --name-only. Repeatable.",
    ),
    click.option(
        "--strip-prefix",
        metavar="DIR",
        help="Remove this leading directory from --paths and sync-log paths; skip the others.",
    ),
    click.option(
        "--from-sync-log",
        "sync_logs",
        multiple=True,
        metavar="FILE",
        help="What aws s3 sync, rclone --combined or gsutil/gcloud rsync printed (- for stdin).",
    ),
)


# --------------------------------------------------------------------------- provider options


class ProviderOptions(NamedTuple):
    """The installed plugins' extra `submit` options (e.g. EdgeOne's --mode), and who owns them."""

    params: tuple[click.Option, ...]
    owners: Mapping[str, frozenset[str]]  # option key -> the provider types that declare it
    warnings: tuple[str, ...]  # plugins that failed to load


_PROVIDER_OPTIONS_KEY = "prewarm.provider_options"


def provider_options(ctx: click.Context) -> ProviderOptions:
    """The extra submit options, built once per command line from the installed plugins.

    A flag two plugins declare is one option that both own (the first one's help is shown);
    a flag the command has itself stays the command's.
    """
    if _PROVIDER_OPTIONS_KEY in ctx.meta:
        found: ProviderOptions = ctx.meta[_PROVIDER_OPTIONS_KEY]
        return found
    from prewarm_cli import registry

    taken = {flag for param in ctx.command.params for flag in param.opts}
    warnings: list[str] = []
    params: dict[str, click.Option] = {}
    owners: dict[str, set[str]] = {}
    for ptype, declared in registry.submit_options(warnings.append).items():
        for opt in declared:
            flag = f"--{opt.name}"
            if flag in taken:
                continue
            owners.setdefault(opt.key, set()).add(ptype)
            if opt.key in params:
                continue
            help_text = f"[{ptype}] {opt.help}"
            if opt.type is bool:
                params[opt.key] = click.Option([flag], is_flag=True, default=None, help=help_text)
            else:
                kind: Any = click.Choice(opt.choices) if opt.choices else opt.type
                params[opt.key] = click.Option(
                    [flag],
                    type=kind,
                    default=None,
                    multiple=opt.multiple,
                    # a repeatable option not given is None, like any option not given
                    callback=(lambda _c, _p, v: v or None) if opt.multiple else None,
                    help=help_text + (" Repeatable." if opt.multiple else ""),
                )
    found = ProviderOptions(
        params=tuple(params.values()),
        owners={key: frozenset(types) for key, types in owners.items()},
        warnings=tuple(warnings),
    )
    ctx.meta[_PROVIDER_OPTIONS_KEY] = found
    return found
