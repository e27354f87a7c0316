"""What every command uses: global options, command output, the workspace, shared inputs,
and which provider owns which extra submit option.

Click and the standard library only at module level; the core is imported inside functions.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn

import click

from prewarm_cli.commands._globals import (  # re-exported: commands import them from here
    CONTEXT_SETTINGS,
    GlobalOptions,
    global_options,
    global_values,
    output_format,
)
from prewarm_cli.errors import ExitCode, PrewarmError, UsageError

if TYPE_CHECKING:
    from prewarm_cli.config import Config
    from prewarm_cli.engine import Workspace
    from prewarm_cli.output import Output

__all__ = [
    "CONTEXT_SETTINGS",
    "GlobalOptions",
    "ProviderOptions",
    "command_output",
    "exit_with",
    "global_options",
    "global_values",
    "output_format",
    "parse_header",
    "provider_options",
    "stdin_text",
    "url_inputs",
    "workspace",
]


# --------------------------------------------------------------------------- what commands use


def command_output() -> Output:
    from prewarm_cli.output import Output

    g = global_values()
    color = False if g.get("no_color") else None
    return Output(
        output_format(g), color=color, quiet=bool(g.get("quiet")), verbose=int(g.get("verbose", 0))
    )


@contextmanager
def workspace(
    force: bool = False, *, config_optional: bool = False, sends_nothing: bool = False
) -> Iterator[Workspace]:
    """Loads config and opens the journal for one command.

    ``config_optional``: a config file that cannot be read or is invalid is a warning naming
    it, and the command goes on without it (`jobs`, `status` of a finished job).
    ``sends_nothing``: a dry run, which plans for a provider whose secrets are not set.
    """
    from prewarm_cli import config as config_mod
    from prewarm_cli.engine import Workspace
    from prewarm_cli.engine.workspace import load_config_leniently

    g = global_values()
    out = command_output()
    problem = None
    if config_optional:
        cfg, problem = load_config_leniently(g.get("config"), out.warn)
    else:
        cfg = config_mod.load_config(g.get("config"))
    use_default_output(out, cfg)
    ws = Workspace(cfg, out, force=force, sends_nothing=sends_nothing, config_problem=problem)
    warn_permissions(ws.config, ws.out.warn)
    try:
        yield ws
    finally:
        ws.close()


def use_default_output(out: Output, config: Config) -> None:
    """The config's `defaults.output` where no -o was given and stdout is a terminal."""
    wanted = config.defaults.get("output")
    if wanted and out.fmt == "table" and output_format(global_values()) is None:
        out.fmt = wanted


def warn_permissions(config: Config, warn: Callable[[str], None]) -> None:
    """A config file that others can read and that holds a secret: said by every command that
    reads it (DESIGN §3)."""
    from prewarm_cli import config as config_mod
    from prewarm_cli import registry

    if not config.exists:
        return
    secrets: dict[str, list[str]] = {}
    for ptype in {config.provider_type(a) for a in config.aliases()}:
        try:
            cls = registry.load(ptype)
        except PrewarmError:
            continue
        secrets[ptype] = [f.name for f in cls.config_schema if f.secret]
    warning = config_mod.permission_warning(config, secrets)
    if warning:
        warn(warning)


def exit_with(code: ExitCode) -> NoReturn:
    raise SystemExit(int(code))


def stdin_text() -> str:
    import sys

    return sys.stdin.read()


# What a header name may hold (RFC 9110's token).
_NAME_CHARS = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


def parse_header(text: str) -> tuple[str, str]:
    """`-H "Name: value"` as a (name, value) pair; a usage error otherwise. A line break or
    other control character in the value is refused: it would start a header of its own."""
    name, sep, value = text.partition(":")
    name, value = name.strip(), value.strip()
    if not sep or not name or not _NAME_CHARS.issuperset(name):
        # Named by its first word, up to a colon: never more, which may be a token given
        # without the header's colon ("Authorization Bearer a:b").
        shown = (text.split() or [""])[0].partition(":")[0]
        more = " …" if shown != text.strip() else ""
        named = repr(shown + more) if shown else "with no name"
        raise UsageError(f"header {named} is not 'Name: value'")
    if any((ord(c) < 32 and c != "\t") or ord(c) == 127 for c in value):
        raise UsageError(
            f"header {name}'s value holds a line break or another control character",
            hint="give each header with a -H of its own",
        )
    return name, value


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
        help="What aws s3 sync, rclone --combined or gsutil/gcloud rsync printed (- for stdin)."
        " Repeatable.",
    ),
)


# --------------------------------------------------------------------------- provider options


class ProviderOptions:
    """The installed plugins' extra `submit` options (e.g. EdgeOne's --mode), and who owns them.

    A plain class (no NamedTuple or dataclass): this module is imported on every start-up.
    """

    __slots__ = ("owners", "params", "warnings")

    def __init__(
        self,
        params: tuple[click.Option, ...],
        owners: Mapping[str, frozenset[str]],  # option key -> the provider types declaring it
        warnings: tuple[str, ...],  # plugins that failed to load
    ) -> None:
        self.params = params
        self.owners = owners
        self.warnings = warnings


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


class Seconds(click.ParamType):  # type: ignore[type-arg]  # generic in newer click
    """A number of seconds above 0 and at most a year: no negative wait, no NaN or infinity
    (which a deadline or a socket timeout cannot hold). With ``zero``, 0 is taken too (what
    it means is the option's help: a wait without limit)."""

    name = "seconds"
    most = 365 * 24 * 3600.0

    def __init__(self, *, zero: bool = False) -> None:
        self.zero = zero

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        if self.zero and seconds == 0:
            return seconds
        if not 0 < seconds <= self.most:  # False for NaN too
            least = "0 or more" if self.zero else "above 0"
            self.fail(f"{value} is not a number of seconds {least} and at most a year", param, ctx)
        return seconds


SECONDS = Seconds()
WAIT_SECONDS = Seconds(zero=True)  # --wait-timeout: 0 waits without a limit


def wait_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """--interval, --wait-timeout and --verify: how a --wait polls, for how long, and what
    follows it (submit and status)."""
    f = click.option("--verify", is_flag=True, help="After waiting, check the URLs' cache status.")(
        f
    )
    f = click.option(
        "--wait-timeout",
        type=WAIT_SECONDS,
        metavar="S",
        help="Give up waiting after S seconds (exit 6); 0 waits without a limit.",
    )(f)
    return click.option(
        "--interval", type=SECONDS, metavar="S", help="Seconds between status polls."
    )(f)


@contextmanager
def naming_the_job(job_id: str | None, interrupted: str, hint: str) -> Iterator[None]:
    """Around what follows a made job (its wait, its verify): an error names the job in its
    JSON, and Ctrl-C says ``interrupted`` with the command that does it again."""
    from prewarm_cli.errors import UserInterrupt
    from prewarm_cli.output import interrupted_as, said_as

    stopped = UserInterrupt(interrupted, hint=hint, job_id=job_id)
    try:
        with interrupted_as(stopped):  # as a streamed document cut short says it, too
            yield
    except KeyboardInterrupt as exc:
        raise said_as(exc, stopped) from None
    except PrewarmError as exc:
        exc.job_id = exc.job_id or job_id
        raise
