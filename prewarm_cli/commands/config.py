"""`prewarm config`: path, show, check and init of the configuration file."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from prewarm_cli import paths
from prewarm_cli.commands import short_help
from prewarm_cli.commands._common import (
    CONTEXT_SETTINGS,
    command_output,
    exit_with,
    global_options,
    global_values,
)
from prewarm_cli.errors import ConfigError, ExitCode, PrewarmError, UsageError, worst_exit

if TYPE_CHECKING:
    from prewarm_cli.plugin import Provider


class _InOrder(click.Group):
    """Lists its subcommands in the order they are defined here: path, show, check, init."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)


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
    from prewarm_cli.output import Column

    out = command_output()
    cfg = config_mod.load_config(global_values().get("config"))
    rows = config_mod.show_rows(cfg, registry.load_all(out.warn))
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
    """Validate the config file and every provider's settings (exit 3 on errors)."""
    from prewarm_cli import config as config_mod
    from prewarm_cli.engine import build_provider

    out = command_output()
    cfg = config_mod.load_config(global_values().get("config"))
    if not cfg.exists:
        raise ConfigError(f"{cfg.path}: no config file", hint="create one: prewarm config init")
    results = []
    codes: set[ExitCode] = set()
    for alias in cfg.aliases():
        entry: dict[str, Any] = {
            "provider": alias,
            "type": cfg.provider_type(alias),
            "ok": True,
            "notes": [],
        }
        try:
            # providers validate their settings when built
            provider = build_provider(cfg, alias, out.warn)
            try:
                if online:
                    entry["notes"] = provider.check()
            finally:
                provider.close()
        except PrewarmError as exc:
            entry.update(ok=False, error=str(exc), hint=exc.hint)
            codes.add(exc.exit_code)
        results.append(entry)
    data = {"path": str(cfg.path), "ok": not codes, "providers": results}
    if out.fmt == "table":
        for r in results:
            if r["ok"]:
                out.line(f"ok     {r['provider']} ({r['type']})")
                for note in r["notes"]:
                    out.line(f"       {note}")
            else:
                out.line(f"error  {r['provider']} ({r['type']}): {r['error']}")
        out.info(f"{cfg.path}: {'ok' if not codes else 'has errors'}")
    else:
        out.emit(data)
    exit_with(worst_exit(codes))


@config.command("init", context_settings=CONTEXT_SETTINGS)
@click.option("--type", "ptype", metavar="TYPE", help="Provider type, e.g. qiniu.")
@click.option("--alias", metavar="NAME", help="Alias for the provider (default: the type).")
@click.option(
    "--set",
    "values",
    multiple=True,
    metavar="KEY=VALUE",
    help="A provider setting (repeatable); secrets are best given as env:VAR.",
)
@click.option(
    "--default/--no-default", "make_default", default=True, help="Make it defaults.provider."
)
@click.option("--force", is_flag=True, help="Overwrite an existing config file.")
@global_options
def config_init(
    ptype: str | None,
    alias: str | None,
    values: tuple[str, ...],
    make_default: bool,
    force: bool,
) -> None:
    """Write a config file: interactive prompts on a terminal, or flags for scripts."""
    from prewarm_cli import config as config_mod
    from prewarm_cli import registry

    out = command_output()
    path, _how = paths.config_path(global_values().get("config"))
    interactive = sys.stdin.isatty() and not (ptype and values)
    classes = registry.load_all(out.warn)
    if not ptype:
        if not interactive:
            raise UsageError(
                "config init needs --type when not on a terminal",
                hint=f"installed types: {', '.join(classes) or 'none'}",
            )
        # Direct warming first: it needs no account (DESIGN §9).
        choices = sorted(classes, key=lambda t: (t != "direct", t))
        ptype = click.prompt(
            "Provider type" + (" (direct: no account needed)" if "direct" in classes else ""),
            type=click.Choice(choices),
            default="direct" if "direct" in classes else None,
            err=True,
        )
    if ptype not in classes:
        registry.load(ptype)  # raises the one-line error naming what is installed
    cls = classes[ptype]
    alias = alias or ptype
    answers: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep:
            raise UsageError(f"--set {item!r} is not KEY=VALUE")
        answers[key.strip()] = _parse_value(raw.strip())
    if interactive:
        answers.update(_prompt_settings(cls, skip=set(answers)))
    existing: dict[str, Any] = {}
    if path.exists() and force:
        import tomllib

        existing = tomllib.loads(path.read_text())
    data = dict(existing)
    data.setdefault("providers", {})[alias] = config_mod.provider_table(cls, answers)
    if make_default:
        data.setdefault("defaults", {})["provider"] = alias
    config_mod.write_config(path, data, overwrite=force)
    config_mod.load_config(str(path))  # what was written must load
    out.info(f"wrote {path} (mode 600); check it with `prewarm config check`")
    if out.fmt != "table":
        out.emit({"path": str(path), "provider": alias, "type": ptype})


# --------------------------------------------------------------------------- config init's prompts


def _prompt_settings(cls: type[Provider], skip: set[str]) -> dict[str, Any]:
    """Asks on the terminal for each setting a new alias needs (not those in `skip`).

    An optional secret with a default environment variable is not asked for: the provider
    reads that variable when the key is absent.
    """
    answers: dict[str, Any] = {}
    for fld in cls.config_schema:
        if fld.name in skip:
            continue
        default = fld.default
        if fld.secret and fld.name in cls.credential_env:
            if not fld.required:
                continue
            default = f"env:{cls.credential_env[fld.name]}"
        if not fld.required and default is None:
            continue
        answers[fld.name] = _parse_value(
            click.prompt(
                f"{fld.name} ({fld.help})",
                default=default,
                hide_input=fld.secret,
                show_default=not fld.secret or str(default).startswith("env:"),
                err=True,
            )
        )
    return answers


def _parse_value(raw: str) -> Any:
    """TOML-ish values for --set and prompts: numbers, booleans, [lists], else text."""
    import tomllib

    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw
