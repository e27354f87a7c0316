"""`config check`: every check that loading the file and building its providers runs, with
every error found at once instead of the first.

Per alias: the table's keys against the provider's schema, its env: references, the rules the
provider checks when it is built (endpoint URLs, keys required with another key's value),
and `batch_size`/`rate` against the vendor's limits. With ``online``, each provider also makes
its one cheap request, and the limits are the ones the vendor reports.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prewarm_cli import config as config_mod
from prewarm_cli.errors import ConfigError, ExitCode, PrewarmError, worst_exit
from prewarm_cli.plugin import Limits, Provider

__all__ = ["ConfigCheck", "Problem", "ProviderCheck", "check_config", "check_provider"]

_FORCE_HINT = "pass --force to submit if the vendor raised your limit"
_KEY_PATH_RE = re.compile(r"\b((?:defaults|providers|routes)(?:\.[A-Za-z0-9_\"-]+|\[\d+\])*)")
_TOP_LEVEL_KEY_RE = re.compile(r"([A-Za-z0-9_-]+): ")


@dataclass(frozen=True)
class Problem:
    """One error: the key path it is about (when there is one), the message and the fix."""

    key: str | None
    message: str
    hint: str | None
    exit_code: ExitCode = ExitCode.CONFIG

    @classmethod
    def from_error(cls, error: PrewarmError, path: str) -> Problem:
        text = str(error)
        bare = text[len(path) + 2 :] if text.startswith(f"{path}: ") else text
        return cls(_key_path(bare), text, error.hint, error.exit_code)

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "message": self.message, "hint": self.hint}


def _key_path(message: str) -> str | None:
    """The key path a message (without the file's path) is about: where it starts, or, for a
    provider's own message, the first one it names."""
    if "invalid TOML" in message:
        return None
    match = _KEY_PATH_RE.match(message) or _TOP_LEVEL_KEY_RE.match(message)
    match = match or _KEY_PATH_RE.search(message)
    return match.group(1) if match else None


@dataclass(frozen=True)
class ProviderCheck:
    """What checking one alias found."""

    alias: str
    type: str
    errors: tuple[Problem, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "provider": self.alias,
            "type": self.type,
            "ok": self.ok,
            "notes": list(self.notes),
            "errors": [p.to_dict() for p in self.errors],
        }
        if self.errors:  # the first one, as before lists of errors
            data.update(error=self.errors[0].message, hint=self.errors[0].hint)
        return data


@dataclass(frozen=True)
class ConfigCheck:
    """What `config check` found: the file's own errors, each alias's, and warnings."""

    path: str
    errors: tuple[Problem, ...] = ()  # not about one alias: syntax, [defaults], [[routes]]
    providers: tuple[ProviderCheck, ...] = ()
    warnings: tuple[str, ...] = ()

    def all_errors(self) -> list[tuple[str | None, Problem]]:
        """Every error, with the alias it belongs to (None for the file's own)."""
        found: list[tuple[str | None, Problem]] = [(None, p) for p in self.errors]
        for entry in self.providers:
            found.extend((entry.alias, p) for p in entry.errors)
        return found

    @property
    def ok(self) -> bool:
        return not self.all_errors()

    @property
    def exit_code(self) -> ExitCode:
        return worst_exit({p.exit_code for _, p in self.all_errors()})

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "ok": self.ok,
            "errors": [{"provider": alias, **p.to_dict()} for alias, p in self.all_errors()],
            "warnings": list(self.warnings),
            "providers": [entry.to_dict() for entry in self.providers],
        }


def check_config(
    explicit: str | None, *, online: bool = False
) -> tuple[config_mod.Config | None, ConfigCheck]:
    """Checks the config file in use; the Config is None when it cannot be read or parsed."""
    from prewarm_cli import paths

    config, found = config_mod.check_structure(explicit)
    path = str(config.path if config else paths.config_path(explicit)[0])
    errors = [Problem.from_error(e, path) for e in found]
    if config is None:
        return None, ConfigCheck(path, tuple(errors))
    warnings: list[str] = []
    from prewarm_cli import registry

    aliases = _aliases_in_use(config, registry.names())
    classes = _provider_classes(config, aliases, errors, path)
    default = config.default_problem(registry.names())
    if default is not None:
        errors.append(Problem.from_error(default, path))
    if len(config.aliases()) > 1 and not config.defaults.get("provider") and not config.routes:
        warnings.append(
            "no default provider and no [[routes]]: a submit without -p NAME is refused"
            " (set [defaults] provider, or add [[routes]])"
        )
    secret_keys = {t: [f.name for f in c.config_schema if f.secret] for t, c in classes.items()}
    permission = config_mod.permission_warning(config, secret_keys)
    if permission:
        warnings.append(permission)
    providers = tuple(
        check_provider(
            config, alias, classes[ptype], online=online, prepare=True, warn=warnings.append
        )
        for alias in aliases
        if (ptype := config.provider_type(alias)) in classes
    )
    return config, ConfigCheck(path, tuple(errors), providers, tuple(warnings))


def _aliases_in_use(config: config_mod.Config, installed: Collection[str]) -> list[str]:
    """The tables' aliases, then the types that [defaults] provider and [[routes]] name
    without a table (implicit aliases with the type's defaults, which a submit builds too)."""
    aliases = config.aliases()
    named = [config.defaults.get("provider"), *(p for r in config.routes for p in r.providers)]
    for name in named:
        if not isinstance(name, str) or name in aliases or name not in installed:
            continue
        if not config.aliases_of_type(name):
            aliases.append(name)
    return aliases


def _provider_classes(
    config: config_mod.Config, aliases: Sequence[str], errors: list[Problem], path: str
) -> dict[str, type[Provider]]:
    """The installed provider class of each type the file names; an error for the others."""
    from prewarm_cli import registry

    classes: dict[str, type[Provider]] = {}
    for alias in aliases:
        ptype = config.provider_type(alias)
        if ptype in classes:
            continue
        try:
            classes[ptype] = registry.load_for(config, alias)
        except ConfigError as exc:
            errors.append(Problem.from_error(config_mod.in_file(path, exc, alias), path))
    return classes


def check_provider(
    config: config_mod.Config,
    alias: str,
    cls: type[Provider],
    *,
    online: bool = False,
    prepare: bool = False,
    warn: Callable[[str], None] = lambda _: None,
) -> ProviderCheck:
    """Every error of one alias: its keys, then (when those are fine) building the provider,
    its limits, with ``prepare`` what it needs before its first request (its SDK: no request
    is made), and with ``online`` its one cheap request."""
    from prewarm_cli import paths

    path = str(config.path)
    ptype = config.provider_type(alias)
    settings, found = config.problems(alias, cls)
    # The table's rules too, but not a second word on a key the schema already faulted (an
    # endpoint that is missing is not also "not a URL").
    faulted = {_key_path(str(e)) for e in found}
    found += [
        e for e in cls.config_problems(alias, settings.values) if _key_path(str(e)) not in faulted
    ]
    # Offline, the limits the provider declares; online, those the vendor reports (below).
    # A batch size the vendor reports only at run time is not known offline.
    declared = cls.default_limits
    offline = {
        k: v
        for k, v in settings.values.items()
        if not (k == "batch_size" and declared.batch_from_vendor)
    }
    limits = [] if online else limit_problems(alias, offline, declared)
    errors = [_in_file(e, path, alias) for e in found + limits]
    table = config.providers.get(alias, {})
    for fld in cls.config_schema:
        value = table.get(fld.name)
        var = _variable_named(value) if fld.secret and isinstance(value, str) else None
        if var:
            warn(  # the value is not said: a secret may look so
                f"{path}: providers.{alias}.{fld.name} looks like a reference to the variable"
                f' {var}, but is taken as the secret itself: write "env:{var}"'
            )
    if found:
        return ProviderCheck(alias, ptype, tuple(errors))
    try:
        provider = config.build(cls, alias, settings.values)
    except PrewarmError as exc:
        return ProviderCheck(alias, ptype, (_in_file(exc, path, alias), *errors))
    provider.attach_warn(warn)
    provider.attach_state_dir(paths.state_dir())
    notes: list[str] = []
    try:
        try:
            if prepare or online:
                try:
                    provider.prepare()
                except PrewarmError:
                    raise
                except Exception as exc:  # a value its client cannot take (a non-ASCII key)
                    raise ConfigError(
                        f"providers.{alias}: its client cannot be made from these settings"
                        f" ({type(exc).__name__}: {exc})"
                    ) from exc
            if online:
                notes = list(provider.check())
                vendor = provider.limits()
                errors += [
                    _in_file(e, path, alias) for e in limit_problems(alias, settings.values, vendor)
                ]
        except PrewarmError as exc:
            errors.append(_in_file(exc, path, alias))
    finally:
        provider.close()
    return ProviderCheck(alias, ptype, tuple(errors), tuple(notes))


# ${NAME}, $NAME (a shell's, in capitals: "$Tr0ub4dor" may be a password), ENV:NAME.
_REFERENCE = re.compile(r"(?:\$\{([A-Za-z_]\w*)\}|\$([A-Z_][A-Z0-9_]*)|(?i:env):\s*([A-Za-z_]\w*))")


def _variable_named(value: str) -> str | None:
    """The variable a literal secret seems meant to name (``${QAK}``, ``$QAK``, ``ENV:QAK``):
    TOML expands nothing, and only ``env:VAR`` is read from the environment."""
    found = _REFERENCE.fullmatch(value.strip())
    if found is None or value.startswith("env:"):
        return None
    return next(name for name in found.groups() if name)


def _in_file(error: PrewarmError, path: str, alias: str) -> Problem:
    """A problem; a configuration error's message names the file, as every other does."""
    if isinstance(error, ConfigError):
        error = config_mod.in_file(path, error, alias)
    return Problem.from_error(error, path)


def limit_problems(
    alias: str, settings: Mapping[str, Any], vendor: Limits, *, force: bool = False
) -> list[ConfigError]:
    """`batch_size` and `rate` above the vendor's limits: what a run refuses. With ``force``
    only a limit the vendor reported at run time is kept to."""
    section = f"providers.{alias}"
    found: list[ConfigError] = []
    batch_size = settings.get("batch_size")
    if (
        batch_size is not None
        and batch_size > vendor.max_batch
        and (vendor.vendor_reported or not force)
    ):
        found.append(
            ConfigError(
                f"{section}.batch_size = {batch_size} is above the vendor limit of "
                f"{vendor.max_batch} URLs per request",
                hint="lower it" + ("" if vendor.vendor_reported else f", or {_FORCE_HINT}"),
            )
        )
    rate = settings.get("rate")
    vendor_rate = vendor.requests_per_second
    if rate is not None and vendor_rate is not None and rate > vendor_rate and not force:
        found.append(
            ConfigError(
                f"{section}.rate = {rate} is above the vendor limit of {vendor_rate} requests/s",
                hint=f"lower it, or {_FORCE_HINT}",
            )
        )
    return found
