"""The commands about providers: `providers`, `quota` and `scale`."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from prewarm_cli.commands import examples, short_help
from prewarm_cli.commands._common import (
    CONTEXT_SETTINGS,
    command_output,
    global_options,
    global_values,
    use_default_output,
    warn_permissions,
    workspace,
)
from prewarm_cli.errors import PrewarmError, UsageError

if TYPE_CHECKING:
    from prewarm_cli.config import Config
    from prewarm_cli.plugin import Provider


@click.command(
    context_settings=CONTEXT_SETTINGS, short_help=short_help("providers"), epilog=examples.PROVIDERS
)
@global_options
def providers() -> None:
    """List installed provider types and configured aliases, with capabilities."""
    from prewarm_cli import registry
    from prewarm_cli.engine.workspace import load_config_leniently

    out = command_output()
    classes = registry.load_all(out.warn)
    cfg, _ = load_config_leniently(global_values().get("config"), out.warn)
    use_default_output(out, cfg)
    warn_permissions(cfg, out.warn)
    rows = []
    for alias in cfg.aliases():
        ptype = cfg.provider_type(alias)
        rows.append(_provider_row(alias, ptype, classes.get(ptype), cfg, out.warn))
    configured_types = {r["type"] for r in rows}
    for ptype, cls in classes.items():
        if ptype not in configured_types:
            rows.append(_provider_row(None, ptype, cls))
    out.emit(
        rows,
        table=lambda d: out.records(
            d,
            [
                ("alias", lambda r: r["provider"] or "-"),
                ("type", "type"),
                ("source", "source"),
                ("version", "version"),
                ("capabilities", lambda r: ", ".join(r["capabilities"])),
            ],
        ),
    )


@click.command(
    context_settings=CONTEXT_SETTINGS, short_help=short_help("quota"), epilog=examples.QUOTA
)
@click.option(
    "-p",
    "--provider",
    "providers",
    multiple=True,
    metavar="NAME",
    help="Provider alias (default: every configured provider with a quota).",
)
@global_options
def quota(providers: tuple[str, ...]) -> None:
    """Show the daily quota, what remains and when it resets."""
    from prewarm_cli import engine

    with workspace() as ws:
        if providers:
            rows = engine.quota(ws, [ws.alias(p) for p in providers])
        else:
            rows = engine.every_quota(ws)
        ws.out.emit(
            rows,
            table=lambda d: ws.out.records(
                d,
                [
                    ("provider", "provider"),
                    ("type", "type"),
                    ("daily", "daily"),
                    ("remaining", "remaining"),
                    ("resets at", "resets_at"),
                    ("batch", "batch"),
                    ("source", "source"),
                ],
            ),
        )


@click.command(
    context_settings=CONTEXT_SETTINGS, short_help=short_help("scale"), epilog=examples.SCALE
)
@click.argument("count", type=click.IntRange(min=0), required=False)
@click.option(
    "-p",
    "--provider",
    metavar="NAME",
    help="Provider alias (default: the default provider, or the one alias that can scale).",
)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@global_options
def scale(count: int | None, provider: str | None, yes: bool) -> None:
    """Show or set the number of warming instances (providers that have them)."""
    from prewarm_cli import engine
    from prewarm_cli.output import counted

    with workspace() as ws:
        alias = engine.scale_alias(ws, provider)
        if count is not None and not yes:
            if not sys.stdin.isatty():
                raise UsageError("setting the scale needs --yes when not on a terminal")
            instances = counted(count, "instance")
            click.confirm(f"Set {alias} to {instances}?", abort=True, err=True)
        result = engine.scale(ws, alias, count)
        ws.out.emit(result)


def _provider_row(
    alias: str | None,
    ptype: str,
    cls: type[Provider] | None,
    cfg: Config | None = None,
    warn: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    from prewarm_cli import registry
    from prewarm_cli.engine import build_provider

    try:
        info = registry.plugin_info(ptype)
        source, version = info.source, info.version
    except PrewarmError:
        source, version = "not installed", None
    caps = sorted(str(c) for c in cls.capabilities) if cls else []
    if cls and alias and cfg is not None and warn is not None:
        try:  # a configured alias's capabilities may depend on its settings
            provider = build_provider(cfg, alias, warn)
            caps = sorted(str(c) for c in provider.active_capabilities())
            provider.close()
        except PrewarmError:
            pass  # e.g. a secret's variable is not set here: the type's capabilities
    return {
        "provider": alias,
        "type": ptype,
        "source": source,
        "version": version,
        "capabilities": caps,
    }
