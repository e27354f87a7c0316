"""`prewarm config`: path, show, check and init of the configuration file."""

from __future__ import annotations

import click

from prewarm_cli import paths
from prewarm_cli.commands import short_help
from prewarm_cli.commands._common import (
    CONTEXT_SETTINGS,
    command_output,
    exit_with,
    global_options,
    global_values,
    use_default_output,
    warn_permissions,
)
from prewarm_cli.commands.config_init import config_init


class _InOrder(click.Group):
    """Lists its subcommands in the order they are defined here: path, show, check, init."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args and not ctx.resilient_parsing:  # `prewarm config` alone: as `prewarm`
            click.echo(ctx.get_help(), color=ctx.color)
            ctx.exit(0)
        return super().parse_args(ctx, args)


@click.group(cls=_InOrder, context_settings=CONTEXT_SETTINGS, short_help=short_help("config"))
@global_options
def config() -> None:
    """Create, show and check the configuration file."""


@config.command("path", context_settings=CONTEXT_SETTINGS)
@global_options
def config_path_cmd() -> None:
    """Print the config file path in use, and the state directory."""

    path, how = paths.config_path(global_values().get("config"))
    out = command_output()
    data = {
        "config": str(path),
        "how": how,
        "exists": path.exists(),
        "state_dir": str(paths.state_dir(create=False)),
    }
    if out.fmt == "table":
        out.line(str(path))
        out.info(
            f"({'exists' if path.exists() else 'does not exist'}; chosen by {how};"
            f" state in {data['state_dir']})"
        )
    else:
        out.emit(data)


@config.command("show", context_settings=CONTEXT_SETTINGS)
@global_options
def config_show() -> None:
    """Show every setting, where it came from; secrets redacted."""
    from prewarm_cli import config as config_mod
    from prewarm_cli import registry
    from prewarm_cli.config_show import show_rows
    from prewarm_cli.output import Column

    out = command_output()
    cfg = config_mod.load_config(global_values().get("config"))
    use_default_output(out, cfg)
    warn_permissions(cfg, out.warn)
    rows = show_rows(cfg, registry.load_all(out.warn))
    out.emit(
        {"path": str(cfg.path), "exists": cfg.exists, "settings": rows},
        table=lambda d: out.table(
            (Column("key", "id"), Column("value", "url"), Column("source", drop=1)),
            [(r["key"], r["value"], r["source"]) for r in d["settings"]],
            title=f"{cfg.path}" + ("" if cfg.exists else " (missing)"),
        ),
        records=lambda d: d["settings"],
    )


@config.command("check", context_settings=CONTEXT_SETTINGS)
@click.option("--online", is_flag=True, help="Also let each provider make one cheap request.")
@global_options
def config_check(online: bool) -> None:
    """Validate the config file and every provider's settings, listing every error (exit 3)."""
    from prewarm_cli.config_check import check_config

    out = command_output()
    cfg, found = check_config(global_values().get("config"), online=online)
    if cfg is not None and not cfg.exists:
        # Where no file was named: a fresh machine, which warms directly (DESIGN §9).
        from dataclasses import replace

        none = (
            f"no config file at {cfg.path}: submit warms directly"
            " (`prewarm config init` sets up a provider)"
        )
        found = replace(found, warnings=(none, *found.warnings))
    for warning in found.warnings:
        out.warn(warning)
    errors = found.all_errors()
    for _alias, problem in errors:  # on stderr in every format, in the JSON as well
        out.error(problem.message, problem.hint)
    if out.fmt == "table":
        for entry in found.providers:
            if entry.ok:
                out.line(f"ok     {entry.alias} ({entry.type})")
                for note in entry.notes:
                    out.line(f"       {note}")
            else:
                # The key of each, or what the vendor said where no key is to blame.
                keys = ", ".join(
                    dict.fromkeys(
                        p.key or p.message.removeprefix(f"{found.path}: ") for p in entry.errors
                    )
                )
                out.line(f"error  {entry.alias} ({entry.type}): {keys}")
        count = len(errors)
        out.info(f"{found.path}: " + ("ok" if not count else f"{count} error{'s' * (count > 1)}"))
    else:
        out.emit(found.to_dict())
    exit_with(found.exit_code)


config.add_command(config_init)
