"""Configuration: TOML loading, validation, `env:VAR` secrets, the permission warning.

The file is ``config.toml`` (DESIGN.md §3). Loading checks only its structure;
a provider's table is checked against its schema, and its ``env:VAR`` references
are resolved, when :meth:`Config.resolve` is called, i.e. only for the providers
a command uses. Every error is one line naming the file, the key path and the fix.
Loading raises the first error; `config check` collects them all (``check_structure``,
:meth:`Config.problems`). This module knows no provider: callers pass provider classes in.
Single values are checked in config_values, the file is written by config_file, and where
it is (and the state directory) is prewarm_cli.paths.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import stat
import tomllib
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from prewarm_cli import DOCS_URL
from prewarm_cli.config_values import (
    check_value,
    env_var_name,
    example_value,
    format_value,
    from_env_text,
    looks_secret,
    type_name,
    unknown_key,
)
from prewarm_cli.errors import ConfigError, UsageError
from prewarm_cli.paths import config_path
from prewarm_cli.plugin import CORE_FIELDS, ConfigField, Provider

__all__ = [
    "DEFAULTS_FIELDS",
    "Config",
    "Report",
    "ResolvedSettings",
    "Route",
    "check_structure",
    "config_from_text",
    "load_config",
    "permission_warning",
]

REDACTED = "********"

# Keys allowed in [defaults].
DEFAULTS_FIELDS: tuple[ConfigField, ...] = (
    ConfigField("provider", str, "provider alias used when -p/--provider is not given"),
    ConfigField(
        "output", str, "output format when -o is not given", choices=("table", "json", "ndjson")
    ),
    ConfigField("retries", int, "attempts per request (first try included)", default=5),
    ConfigField(
        "retry_timeout",
        float,
        "seconds per request, backoff included, before giving up",
        default=120.0,
    ),
    ConfigField("poll_interval", float, "seconds between status polls when waiting"),
    ConfigField("wait_timeout", float, "seconds --wait waits before giving up (exit 6)"),
)

_TOP_LEVEL_KEYS = ("defaults", "providers", "routes")
ROUTE_KEYS = ("hosts", "providers")
# Numeric keys of [defaults] and of every provider table that must be greater than 0.
_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_TOML_POS_RE = re.compile(r"^(?P<msg>.*?) \(at line (?P<line>\d+), column (?P<col>\d+)\)$")


# Where an error found while checking goes: raised (loading), or collected (`config check`).
Report = Callable[[ConfigError], None]


def _raise(error: ConfigError) -> NoReturn:
    raise error


@dataclass(frozen=True)
class _Unset:
    """A key whose environment variable is not set (``config show``): where it was looked for."""

    source: str


# --- the model ---


@dataclass(frozen=True)
class Route:
    """A [[routes]] entry: which providers warm which hosts."""

    hosts: tuple[str, ...]
    providers: tuple[str, ...]

    def matches(self, host: str) -> bool:
        """Whether ``host`` matches one of the glob patterns, ignoring case."""
        host = host.lower().rstrip(".")
        return any(fnmatch.fnmatchcase(host, pattern.lower()) for pattern in self.hosts)


@dataclass(frozen=True)
class ResolvedSettings:
    """A provider alias's validated settings, with where each value came from."""

    alias: str
    type: str
    values: dict[str, Any] = field(repr=False)
    sources: dict[str, str]
    secret_keys: frozenset[str]

    def display(self) -> list[tuple[str, str, str]]:
        """Rows (key, shown value, source), secrets redacted."""
        return [
            (key, REDACTED if key in self.secret_keys else format_value(value), self.sources[key])
            for key, value in self.values.items()
        ]


@dataclass
class Config:
    """A loaded config file (or the empty config when there is none)."""

    path: Path
    how: str
    exists: bool
    defaults: dict[str, Any]
    providers: dict[str, dict[str, Any]] = field(repr=False)
    routes: tuple[Route, ...]
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    env: Mapping[str, str] | None = field(default=None, repr=False)

    def provider_type(self, alias: str) -> str:
        """The type of ``alias``: its table's ``type``, or the alias itself."""
        table = self.providers.get(alias, {})
        ptype = table.get("type", alias)
        return ptype if isinstance(ptype, str) else alias

    def build(self, cls: type[Provider], alias: str, values: Mapping[str, Any]) -> Provider:
        """The provider behind ``alias`` made from its settings; a rule its table breaks
        (checked as it is made) is named with this file, as every other error in it is."""
        try:
            for problem in cls.config_problems(alias, values):
                raise problem
            return cls(alias, values)
        except ConfigError as exc:
            named = in_file(self.path if self.exists else None, exc, alias)
            if named is exc:
                raise
            raise named from None

    def aliases(self) -> list[str]:
        """The configured provider aliases, in file order."""
        return list(self.providers)

    def aliases_of_type(self, ptype: str) -> list[str]:
        """The aliases whose type is ``ptype``."""
        return [a for a in self.providers if self.provider_type(a) == ptype]

    def resolve_alias(self, name: str, installed_types: Collection[str] | None = None) -> str:
        """An alias for ``name``: an alias, the one alias of that type, or ``name`` itself
        (a type name is an implicit alias with default settings).

        With ``installed_types``, a name that is neither an alias nor an installed type is a
        usage error with the nearest alias or type as a suggestion.
        """
        if name in self.providers:
            return name
        matches = self.aliases_of_type(name)
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise UsageError(
                f"{name!r} is the type of several configured providers ({', '.join(matches)}); "
                f"name one of them, e.g. -p {matches[0]}"
            )
        if installed_types is not None and name not in installed_types:
            configured = ", ".join(self.aliases()) or "none"
            message = f"no alias {name!r} (configured: {configured})"
            import difflib  # for the error only

            close = difflib.get_close_matches(name, [*self.aliases(), *installed_types], n=1)
            if close:
                message += f"; did you mean {close[0]}?"
            raise UsageError(
                message,
                hint=f"installed provider types: {', '.join(sorted(installed_types)) or 'none'}",
            )
        return name

    def default_problem(self, installed_types: Collection[str]) -> ConfigError | None:
        """defaults.provider naming neither an alias nor an installed type (a typo)."""
        name = self.defaults.get("provider")
        if not isinstance(name, str) or name in self.providers or name in installed_types:
            return None
        if self.aliases_of_type(name):
            return None  # the type of configured aliases (several: said when loading)
        try:
            self.resolve_alias(name, installed_types)
        except UsageError as exc:
            return ConfigError(
                f"{self.path}: defaults.provider: {exc.message}",
                hint="name a [providers.NAME] alias or an installed type (`prewarm providers`)",
            )
        return None

    def default_provider(self) -> str | None:
        """defaults.provider resolved, or the only alias when exactly one is configured."""
        name = self.defaults.get("provider")
        if isinstance(name, str):
            return self.resolve_alias(name)
        if len(self.providers) == 1:
            return next(iter(self.providers))
        return None

    def resolve(self, alias: str, cls: type[Provider]) -> ResolvedSettings:
        """Validate the alias's table against ``cls`` and resolve env: references and defaults."""
        settings, _ = self._resolve(alias, cls, strict=True)
        return settings

    def problems(
        self, alias: str, cls: type[Provider]
    ) -> tuple[ResolvedSettings, list[ConfigError]]:
        """Every error of the alias's table at once, and the settings that are valid
        (for `config check`, which lists them all; ``resolve`` raises the first)."""
        found: list[ConfigError] = []
        settings, _ = self._resolve(alias, cls, strict=True, report=found.append)
        return settings, found

    def resolve_partly(
        self, alias: str, cls: type[Provider]
    ) -> tuple[ResolvedSettings, dict[str, str]]:
        """Like ``resolve``, but a variable that is not set is no error: it is left out and
        returned as {key: where it was looked for} (`config show`, a dry run without secrets)."""
        return self._resolve(alias, cls, strict=False)

    def _environ(self) -> Mapping[str, str]:
        return os.environ if self.env is None else self.env

    def _resolve(
        self, alias: str, cls: type[Provider], *, strict: bool, report: Report | None = None
    ) -> tuple[ResolvedSettings, dict[str, str]]:
        """Resolve; when not ``strict``, missing env vars are returned as {key: source}.

        Each error goes to ``report`` (raised when there is none), and the key is left out.
        """
        problem: Report = report or _raise
        ptype = self.provider_type(alias)
        if ptype != cls.name:
            raise ValueError(f"alias {alias!r} has type {ptype!r}, not {cls.name!r}")
        table = self.providers.get(alias, {})
        fields = {f.name: f for f in (*CORE_FIELDS, *cls.config_schema)}
        section = f"providers.{alias}"
        for key in table:
            if key not in fields:
                problem(unknown_key(self.path, section, key, fields))
        env = self._environ()
        values: dict[str, Any] = {"type": ptype}
        sources: dict[str, str] = {"type": "file" if "type" in table else "default"}
        unset: dict[str, str] = {}
        for fld in (*cls.config_schema, *CORE_FIELDS):
            name = fld.name
            if name == "type":
                continue
            try:
                found = self._resolve_one(section, fld, cls, table, env, strict=strict)
            except ConfigError as exc:
                problem(exc)
                continue
            if isinstance(found, _Unset):
                unset[name] = found.source
            elif found is not None:
                values[name], sources[name] = found
        if strict and "ca_bundle" in values:
            try:
                values["ca_bundle"] = self._ca_bundle(f"{section}.ca_bundle", values["ca_bundle"])
            except ConfigError as exc:
                problem(exc)
                del values["ca_bundle"]
        secret_keys = frozenset(f.name for f in cls.config_schema if f.secret)
        settings = ResolvedSettings(alias, ptype, values, sources, secret_keys)
        return settings, unset

    def _resolve_one(
        self,
        section: str,
        fld: ConfigField,
        cls: type[Provider],
        table: Mapping[str, Any],
        env: Mapping[str, str],
        *,
        strict: bool,
    ) -> tuple[Any, str] | _Unset | None:
        """One key's (value, source); _Unset for a variable that is not set (not ``strict``);
        None when the key has no value at all."""
        name = fld.name
        keypath = f"{section}.{name}"
        if name in table:
            raw = table[name]
            if isinstance(raw, str) and raw.startswith("env:"):
                var = env_var_name(self.path, keypath, raw)
                text = env.get(var)
                if not text:
                    if strict:
                        state = "is empty" if text == "" else "is not set"
                        raise ConfigError(
                            f"{self.path}: {keypath}: environment variable {var} {state} "
                            f"(export {var}=..., or change {name} in [{section}])"
                        )
                    return _Unset(f"env:{var} (not set)")
                return from_env_text(self.path, keypath, fld, var, text), f"env:{var}"
            return check_value(self.path, keypath, fld, raw), "file"
        if name in cls.credential_env:
            var = cls.credential_env[name]
            text = env.get(var)
            if text:
                return from_env_text(self.path, keypath, fld, var, text), f"env {var} (default)"
            if fld.required and strict:
                if not self.exists:  # no file to add the key to: the variable is the fix
                    raise ConfigError(
                        f"{keypath}: required, and environment variable {var} is not set"
                        f" (export {var}=...; there is no config file, {self.path})"
                    )
                raise ConfigError(
                    f"{self.path}: {keypath}: required, and environment variable {var} "
                    f'is not set (export {var}=..., or add {name} = "env:VAR" to '
                    f"[{section}])"
                )
            return None if strict else _Unset(f"env {var} (default, not set)")
        if fld.default is not None:
            default = list(fld.default) if isinstance(fld.default, list) else fld.default
            return default, "default"
        if fld.required:
            if not self.exists:
                raise ConfigError(
                    f"{keypath}: required key is missing: there is no config file"
                    f" ({self.path}); `prewarm config init --type {cls.name}` writes one"
                )
            raise ConfigError(
                f"{self.path}: {keypath}: required key is missing "
                f"(add {name} = {example_value(fld)} to [{section}])"
            )
        return None

    def _ca_bundle(self, keypath: str, value: str) -> str:
        """The CA bundle path, relative to the config file's directory; it must exist."""
        path = Path(value).expanduser()
        if not path.is_absolute():
            path = self.path.parent / path
        if not path.is_file():
            what = "a directory, not a file" if path.is_dir() else "file not found"
            raise ConfigError(
                f"{self.path}: {keypath}: {what}: {path} "
                "(give the path of a PEM CA bundle, or remove the key)"
            )
        import ssl  # loaded where a bundle is configured: every request would fail on it

        try:
            ssl.create_default_context(cafile=str(path))
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise ConfigError(
                f"{self.path}: {keypath}: {path} is not a CA bundle that can be read ({exc})",
                hint="give a file of PEM certificates (-----BEGIN CERTIFICATE-----),"
                " or remove the key",
            ) from exc
        return str(path)


# --- loading ---


def in_file(path: Path | str | None, error: ConfigError, alias: str | None = None) -> ConfigError:
    """The error with the config file's name in front, as every error about the file has it
    (a provider's rule or limit says only the key); itself when there is no file or it has."""
    if path is None or error.message.startswith(f"{path}: "):
        return error
    return ConfigError(f"{path}: {error.message}", hint=error.hint, provider=alias)


def load_config(explicit: str | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Find, read and structurally validate the config file; a missing default file is empty.

    Raises the first error; ``check_structure`` finds them all.
    """
    path, how = config_path(explicit, env)
    doc = _read_document(path, how)
    if doc is None:
        return Config(path, how, False, _apply_defaults({}), {}, (), env=env)
    return _build(path, how, doc, env, _raise)


def check_structure(
    explicit: str | None = None, env: Mapping[str, str] | None = None
) -> tuple[Config | None, list[ConfigError]]:
    """Like ``load_config``, with every structural error at once. The Config holds what is
    valid; it is None only when the file cannot be read or parsed."""
    path, how = config_path(explicit, env)
    try:
        doc = _read_document(path, how)
    except ConfigError as exc:
        return None, [exc]
    if doc is None:
        return Config(path, how, False, _apply_defaults({}), {}, (), env=env), []
    found: list[ConfigError] = []
    return _build(path, how, doc, env, found.append), found


def _read_document(path: Path, how: str) -> dict[str, Any] | None:
    """The parsed TOML document; None when the default file does not exist."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        if how == "default":
            return None
        origin = "--config" if how == "--config" else "$PREWARM_CONFIG"
        raise ConfigError(
            f"{path}: config file not found (given by {origin})",
            hint="fix the path, or create it with"
            f" `prewarm config init --config {shlex.quote(str(path))}`",
        ) from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory (give the path of a config.toml file)") from None
    except OSError as exc:
        raise ConfigError(
            f"{path}: cannot read the config file: {exc.strerror or exc} (check its permissions)"
        ) from None
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text at byte {exc.start} (save the file as UTF-8)"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        text = str(exc)
        match = _TOML_POS_RE.match(text)
        if match:
            where = f"line {match['line']}, column {match['col']}"
            text = match["msg"]
        else:
            where = "end of file" if "end of document" in text else "syntax"
            text = text.replace(" (at end of document)", "")
        raise ConfigError(
            f"{path}: {where}: invalid TOML: {text} "
            f"(fix the syntax; see {DOCS_URL}/config.example.toml for the format)"
        ) from None


def config_from_text(
    path: Path, text: str, env: Mapping[str, str] | None = None
) -> tuple[Config, list[ConfigError]]:
    """A Config from TOML text not yet written to ``path`` (what `config init` will write),
    and every structural error in it."""
    found: list[ConfigError] = []
    return _build(path, "--config", tomllib.loads(text), env, found.append), found


def _build(
    path: Path, how: str, doc: dict[str, Any], env: Mapping[str, str] | None, report: Report
) -> Config:
    """Check the parsed document's structure and build the Config of what is valid."""
    for key, value in doc.items():
        if key not in _TOP_LEVEL_KEYS:
            import difflib  # for the error only

            close = difflib.get_close_matches(key, _TOP_LEVEL_KEYS, n=1, cutoff=0.75)
            if isinstance(value, dict) and close:  # [default], [route]: a name mistyped
                meant = "[[routes]]" if close[0] == "routes" else f"[{close[0]}]"  # an array
                report(ConfigError(f"{path}: {key}: unknown table (did you mean {meant}?)"))
            elif isinstance(value, dict) and _NAME_RE.match(key):
                report(
                    ConfigError(
                        f"{path}: {key}: unknown table "
                        f"(provider tables are named [providers.{key}]; allowed: "
                        f"{', '.join(_TOP_LEVEL_KEYS)})"
                    )
                )
            else:
                report(unknown_key(path, "", key, _TOP_LEVEL_KEYS))

    raw_defaults = doc.get("defaults", {})
    if not isinstance(raw_defaults, dict):
        report(ConfigError(f"{path}: defaults: expected a table (write it as [defaults])"))
        raw_defaults = {}
    fields = {f.name: f for f in DEFAULTS_FIELDS}
    checked: dict[str, Any] = {}
    for key, value in raw_defaults.items():
        if key not in fields:
            report(unknown_key(path, "defaults", key, fields))
            continue
        try:
            checked[key] = check_value(path, f"defaults.{key}", fields[key], value)
        except ConfigError as exc:
            report(exc)
    defaults = _apply_defaults(checked)

    raw_providers = doc.get("providers", {})
    if not isinstance(raw_providers, dict):
        report(
            ConfigError(
                f"{path}: providers: expected tables "
                "(write one [providers.ALIAS] table per provider)"
            )
        )
        raw_providers = {}
    providers: dict[str, dict[str, Any]] = {}
    for alias, table in raw_providers.items():
        problem = _provider_problem(path, alias, table)
        if problem is not None:
            report(problem)
        else:
            providers[alias] = dict(table)

    config = Config(path, how, True, defaults, providers, (), raw=doc, env=env)
    config.routes = _build_routes(config, doc.get("routes", []), report)

    provider = defaults.get("provider")
    if isinstance(provider, str) and provider not in providers:
        matches = config.aliases_of_type(provider)
        if len(matches) > 1:
            report(
                ConfigError(
                    f"{path}: defaults.provider: {provider!r} is the type of several aliases "
                    f"({', '.join(matches)}) (name one of them)"
                )
            )
    return config


def _provider_problem(path: Path, alias: str, table: Any) -> ConfigError | None:
    """What is wrong with a [providers.ALIAS] table's shape, if anything."""
    if not _NAME_RE.match(alias):
        return ConfigError(
            f"{path}: providers.{json.dumps(alias)}: invalid alias "
            "(use letters, digits, '_' and '-' only, e.g. [providers.qiniu])"
        )
    if not isinstance(table, dict):
        return ConfigError(
            f"{path}: providers.{alias}: expected a table, got {type_name(table)} "
            f"(write [providers.{alias}] followed by its keys)"
        )
    ptype = table.get("type")
    if ptype is not None and not (isinstance(ptype, str) and _NAME_RE.match(ptype)):
        return ConfigError(
            f"{path}: providers.{alias}.type: expected a provider type name "
            f'(write e.g. type = "qiniu"; `prewarm providers` lists the types)'
        )
    return None


def _apply_defaults(checked: dict[str, Any]) -> dict[str, Any]:
    """[defaults] values with the field defaults filled in."""
    result = dict(checked)
    for fld in DEFAULTS_FIELDS:
        if fld.name not in result and fld.default is not None:
            result[fld.name] = fld.default
    return result


def _build_routes(config: Config, raw_routes: Any, report: Report) -> tuple[Route, ...]:
    """Check [[routes]] and build Route objects for the valid ones."""
    path = config.path
    if not isinstance(raw_routes, list):
        report(
            ConfigError(f"{path}: routes: expected [[routes]] tables (write each as [[routes]])")
        )
        return ()
    routes: list[Route] = []
    for i, entry in enumerate(raw_routes):
        found: list[ConfigError] = []
        route = _route(config, f"routes[{i}]", entry, found.append)
        for problem in found:
            report(problem)
        if route is not None and not found:
            routes.append(route)
    return tuple(routes)


def _route(config: Config, where: str, entry: Any, report: Report) -> Route | None:
    """One [[routes]] entry, its errors reported."""
    path = config.path
    if not isinstance(entry, dict):
        report(
            ConfigError(
                f"{path}: {where}: expected a table, got {type_name(entry)} "
                "(write each route as [[routes]] with hosts and providers)"
            )
        )
        return None
    for key in entry:
        if key not in ROUTE_KEYS:
            report(unknown_key(path, where, key, ROUTE_KEYS))
    try:
        hosts = _string_list(path, f"{where}.hosts", entry, '["static.example.com"]')
    except ConfigError as exc:
        report(exc)
        hosts = []
    for j, host in enumerate(hosts):
        if "/" in host or " " in host:
            report(
                ConfigError(
                    f"{path}: {where}.hosts[{j}]: {host!r} is not a host pattern "
                    "(write the host only, e.g. static.example.com or *.example.com)"
                )
            )
    try:
        names = _string_list(path, f"{where}.providers", entry, '["qiniu"]')
    except ConfigError as exc:
        report(exc)
        return None
    from prewarm_cli import registry

    for j, name in enumerate(names):
        if name in config.providers:
            continue
        matches = config.aliases_of_type(name)
        if len(matches) == 1:
            continue
        if not matches and name in registry.names():
            continue  # an installed type's implicit alias, as for -p (direct needs no table)
        if matches:
            report(
                ConfigError(
                    f"{path}: {where}.providers[{j}]: {name!r} is the type of several aliases "
                    f"({', '.join(matches)}) (name one of them)"
                )
            )
            continue
        known = ", ".join(config.aliases())
        instead = f", or use one of: {known}" if known else ""
        report(
            ConfigError(
                f"{path}: {where}.providers[{j}]: {name!r} is not a configured provider "
                f"(add a [providers.{name}] table{instead})"
            )
        )
    return Route(tuple(hosts), tuple(names)) if hosts else None


def _string_list(path: Path, keypath: str, entry: Mapping[str, Any], example: str) -> list[str]:
    """A required, non-empty list of non-empty strings."""
    name = keypath.rsplit(".", 1)[-1]
    if name not in entry:
        raise ConfigError(f"{path}: {keypath}: required key is missing (add {name} = {example})")
    value = entry[name]
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(v, str) and v.strip() for v in value)
    ):
        raise ConfigError(
            f"{path}: {keypath}: expected a non-empty list of strings (write {name} = {example})"
        )
    return [v.strip() for v in value]


# --- warnings, display ---


def permission_warning(
    config: Config, secret_keys_by_type: Mapping[str, Iterable[str]]
) -> str | None:
    """A one-line warning when others may change the file, or read a literal secret in it
    (POSIX only)."""
    if os.name != "posix" or not config.exists:
        return None
    try:
        mode = config.path.stat().st_mode
    except OSError:
        return None
    if mode & (stat.S_IWGRP | stat.S_IWOTH) and config.providers:
        # Secrets in env:VAR or not: whoever can write the file can set an endpoint of theirs,
        # which is then sent the keys.
        return (
            f"{config.path} can be changed by other users, who could point a provider's"
            f" endpoint elsewhere and receive its credentials;"
            f" run `chmod 600 {shlex.quote(str(config.path))}`"
        )
    if not mode & (stat.S_IRGRP | stat.S_IROTH):
        return None
    for alias, table in config.providers.items():
        ptype = config.provider_type(alias)
        known = secret_keys_by_type.get(ptype)
        secret_keys = set(known) if known is not None else {k for k in table if looks_secret(k)}
        for key in table:
            value = table[key]
            if key in secret_keys and not (isinstance(value, str) and value.startswith("env:")):
                if value in ("", None):
                    continue
                quoted = shlex.quote(str(config.path))
                return (
                    f"{config.path} is readable by other users and holds a secret "
                    f"(providers.{alias}.{key}); run `chmod 600 {quoted}`, "
                    "or use env:VAR references"
                )
    return None
