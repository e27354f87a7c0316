"""`prewarm config init`: add a provider alias to the config file, from prompts or flags."""

from __future__ import annotations

import os
import shlex
import sys
from typing import TYPE_CHECKING, Any

import click

from prewarm_cli import paths
from prewarm_cli.commands._common import (
    CONTEXT_SETTINGS,
    command_output,
    global_options,
    global_values,
)
from prewarm_cli.errors import ConfigError, UsageError

if TYPE_CHECKING:
    from prewarm_cli.config_init import InitTarget
    from prewarm_cli.output import Output
    from prewarm_cli.plugin import ConfigField, Provider

# A follow-up question per error the provider's own rules raise (a list that another key's
# value requires); more than this many in a row means the answers go round in circles.
_MAX_FOLLOW_UPS = 10


@click.command("init", context_settings=CONTEXT_SETTINGS)
@click.option("--type", "ptype", metavar="TYPE", help="Provider type, e.g. qiniu.")
@click.option("--alias", metavar="NAME", help="Alias for the provider (default: the type).")
@click.option(
    "--set",
    "values",
    multiple=True,
    metavar="KEY=VALUE",
    help="A provider setting (repeatable); secrets are best given as env:VAR. A list is"
    " a, b, or TOML where an item holds commas: encodings=['gzip, br', 'identity'].",
)
@click.option(
    "--default/--no-default",
    "make_default",
    default=None,
    help="Make the alias defaults.provider, or leave that as it is."
    " Without either: set when there is no default yet; on a terminal, ask.",
)
@click.option("--force", is_flag=True, help="Replace an alias of the same name.")
@global_options
def config_init(
    ptype: str | None,
    alias: str | None,
    values: tuple[str, ...],
    make_default: bool | None,
    force: bool,
) -> None:
    """Add a provider to the config file (created if missing), keeping its comments.

    On a terminal it asks for each setting, checks each answer and asks again; with --type
    and --set it asks nothing. What it writes passes `prewarm config check` (once the
    variables its secrets name are set).
    """
    from prewarm_cli import registry
    from prewarm_cli.config_file import write_config_text
    from prewarm_cli.config_init import InitTarget, check_new_text, parse_set_option

    out = command_output()
    path, _how = paths.config_path(global_values().get("config"))
    interactive = sys.stdin.isatty() and not (ptype and values)
    classes = registry.load_all(out.warn)
    target = InitTarget.open(path)
    if not ptype:
        if not interactive:
            raise UsageError(
                "config init needs --type when not on a terminal",
                hint=f"installed types: {', '.join(classes) or 'none'}",
            )
        ptype = _ask_type(classes)
    if ptype not in classes:
        try:
            registry.load(ptype)
        except ConfigError as exc:  # a mistyped option: usage (2), naming what is installed
            raise UsageError(f"--type: {exc.message}", hint=exc.hint) from None
    cls = classes[ptype]
    alias = _choose_alias(target, alias or ptype, force=force, interactive=interactive)
    replacing = alias in target.aliases
    answers = parse_set_option(cls, alias, values)
    if interactive:
        answers.update(_ask_settings(target, cls, alias, answers, out))
    # What becomes of defaults.provider is said once the file is written, not before a refusal.
    default_notes: list[str] = []
    default = _choose_default(
        target, alias, make_default, interactive=interactive, notes=default_notes
    )
    text = target.text_with(cls, alias, answers, default)
    problems, unset = check_new_text(path, text, cls, alias)
    if problems:
        *others, last = problems
        for problem in others:
            out.error(problem.message, problem.hint)
        raise ConfigError(
            last.message,
            hint=(f"{last.hint}; " if last.hint else "")
            + f"nothing was written to {path}: fix the settings (--set KEY=VALUE)",
        )
    write_config_text(path, text, overwrite=True)
    action = "replaced" if replacing else "added"
    out.info(f"wrote {path} (mode 600): {action} [providers.{alias}]")
    for note in default_notes:
        out.info(note)
    for var in unset:
        out.info(f"{var} is not set: export {var}=... before using {alias}")
    explicit = global_values().get("config")  # the file named, where it is not the default
    option = f" --config {shlex.quote(explicit)}" if explicit else ""
    then = f"once {' and '.join(unset)} {'is' if len(unset) == 1 else 'are'} set, " if unset else ""
    out.info(f"{then}check it with `prewarm{option} config check`")
    if out.fmt != "table":
        out.emit(
            {
                "path": str(path),
                "provider": alias,
                "type": ptype,
                "replaced": replacing,
                "default_provider": default or target.effective_default(),
                "unset_env": unset,
            }
        )


def _ask_type(classes: dict[str, type[Provider]]) -> str:
    # Direct warming first: it needs no account (DESIGN §9).
    choices = sorted(classes, key=lambda t: (t != "direct", t))
    return str(
        click.prompt(
            "Provider type" + (" (direct: no account needed)" if "direct" in classes else ""),
            type=click.Choice(choices),
            default="direct" if "direct" in classes else None,
            err=True,
        )
    )


def _choose_alias(target: InitTarget, alias: str, *, force: bool, interactive: bool) -> str:
    """The alias to write: the one asked for, unless it exists and may not be replaced."""
    from prewarm_cli.config_init import alias_problem

    problem = alias_problem(alias)
    if problem:
        raise UsageError(f"--alias {alias!r}: not a valid alias ({problem})")
    if alias not in target.aliases or force:
        return alias
    where = f"{target.path}: providers.{alias}"
    if not interactive:
        raise ConfigError(
            f"{where} already exists (pass --force to replace it, or --alias NAME to add another)"
        )
    if click.confirm(f"[providers.{alias}] exists in {target.path}; replace it?", err=True):
        return alias

    def new_alias(text: str) -> str:
        name = text.strip()
        why = alias_problem(name) or ("already in the file" if name in target.aliases else None)
        if why:
            raise click.BadParameter(f"{name!r}: {why}")
        return name

    return str(click.prompt("Alias for the new provider", value_proc=new_alias, err=True))


def _choose_default(
    target: InitTarget, alias: str, wanted: bool | None, *, interactive: bool, notes: list[str]
) -> str | None:
    """What defaults.provider becomes (None: leave it), and in ``notes`` what to tell the
    user once the file is written. Never changed without being asked."""
    current = target.effective_default()
    others = [a for a in target.aliases if a != alias]
    if wanted or (wanted is None and not others and current in (None, alias)):
        return alias
    if current == alias:
        return None
    if wanted is None and interactive:
        now = f"now: {current}" if current else "there is none now"
        if click.confirm(f"Make {alias} the default provider ({now})?", err=True):
            return alias
    elif wanted is None:
        stays = f"stays {current}" if current else "stays unset"
        notes.append(f"defaults.provider {stays} (pass --default to make it {alias})")
    if current and target.document.default_provider() is None:
        # The only alias was the default by being the only one; a second would end that.
        notes.append(f"defaults.provider = {current!r} written: it stays the default")
        return current
    return None


def _ask_settings(
    target: InitTarget,
    cls: type[Provider],
    alias: str,
    given: dict[str, Any],
    out: Output,
) -> dict[str, Any]:
    """Asks for each setting the alias needs, then for what the provider's own rules say the
    answers require (e.g. `regions` with target_type = "region")."""
    from prewarm_cli.config_init import (
        check_new_text,
        credential_in_environment,
        fields_to_ask,
        settable_fields,
    )

    for fld in cls.config_schema:
        var = credential_in_environment(cls, fld.name)
        if fld.name not in given and var and not fld.required:
            out.info(f"{fld.name}: read from {var}, which is set in the environment")
    answers = dict(given)
    plan = fields_to_ask(cls, given)
    fields = settable_fields(cls)
    for i, fld in enumerate(plan):
        answers[fld.name] = _ask(cls, alias, fld, answers.get(fld.name), out)
        if any(f.required for f in plan[i + 1 :]):
            continue  # the provider's rules can only be tried once the required keys are in
        later = {f.name for f in plan[i + 1 :]}
        for _ in range(_MAX_FOLLOW_UPS):
            text = target.text_with(cls, alias, answers, None)
            problems, _unset = check_new_text(target.path, text, cls, alias)
            keys = [_field_key(p.key, alias) for p in problems]
            asked = [(k, p) for k, p in zip(keys, problems, strict=True) if k in fields]
            pending = [(k, p) for k, p in asked if k not in later]
            if not pending:
                break
            key, problem = pending[0]
            # Said as what the next question is about (nothing is written yet): the message
            # from `providers.ALIAS.KEY` on, without the file's name.
            _, at, about = problem.message.partition(f"providers.{alias}.")
            said = at + about if at else problem.message
            out.info(said + (f" ({problem.hint})" if problem.hint else ""))
            # Asked again without the refused answer as its default (Enter would refuse it).
            answers[key] = _ask(cls, alias, fields[key], None, out)
    return answers


def _field_key(keypath: str | None, alias: str) -> str | None:
    """`regions` of `providers.ALIAS.regions[0]`."""
    prefix = f"providers.{alias}."
    if not keypath or not keypath.startswith(prefix):
        return None
    return keypath[len(prefix) :].split(".")[0].split("[")[0]


def _ask(cls: type[Provider], alias: str, fld: ConfigField, previous: Any, out: Output) -> Any:
    """One prompt, asked again until the answer passes the checks loading runs."""
    from prewarm_cli.config_init import check_answer, default_answer, parse_answer, shown_default

    default = previous if previous is not None else default_answer(cls, fld)
    var = cls.credential_env.get(fld.name)
    if var:
        if os.environ.get(var):
            out.info(f"{fld.name}: found {var} in the environment; Enter keeps env:{var}")
        else:
            out.info(
                f"{fld.name}: {var} is not set; Enter reads it from there all the same"
                " (export it before use), or type the value"
            )
    label = f"{fld.name} ({fld.help})" if fld.help else fld.name
    if fld.choices and not all(str(c) in fld.help for c in fld.choices):
        label += f" [{' | '.join(str(c) for c in fld.choices)}]"

    def checked(text: str) -> Any:
        try:
            return check_answer(alias, fld, parse_answer(text.strip(), fld))
        except ConfigError as exc:
            raise click.BadParameter(str(exc)) from None

    shown = shown_default(default)
    return click.prompt(
        label,
        default=shown,
        hide_input=fld.secret,
        show_default=shown is not None and (not fld.secret or shown.startswith("env:")),
        value_proc=checked,
        err=True,
    )
