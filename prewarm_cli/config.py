"""Configuration: TOML loading, validation, `env:VAR` secrets, writing and display.

The file is ``config.toml`` (DESIGN.md §3). Loading checks only its structure;
a provider's table is checked against its schema, and its ``env:VAR`` references
are resolved, when :meth:`Config.resolve` is called, i.e. only for the providers
a command uses. Every error is one line naming the file, the key path and the fix.
This module knows no provider: callers pass provider classes in. Where the file and
the state directory are is prewarm_cli.paths.
"""

from __future__ import annotations

import difflib
import fnmatch
import json
import os
import re
import secrets
import shlex
import stat
import tomllib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prewarm_cli.errors import ConfigError, UsageError
from prewarm_cli.paths import config_path, make_private_dirs
from prewarm_cli.plugin import CORE_FIELDS, ConfigField, Provider

__all__ = [
    "DEFAULTS_FIELDS",
    "Config",
    "ResolvedSettings",
    "Route",
    "load_config",
    "permission_warning",
    "provider_table",
    "show_rows",
    "write_config",
]

REDACTED = "********"
UNSET = "(unset)"

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
_ROUTE_KEYS = ("hosts", "providers")
# Numeric keys of [defaults] and of every provider table that must be greater than 0.
_POSITIVE_KEYS = frozenset(
    {
        "batch_size",
        "rate",
        "concurrency",
        "timeout",
        "poll_interval",
        "retries",
        "retry_timeout",
        "wait_timeout",
    }
)
_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_ENV_VAR_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SECRET_WORDS = ("key", "secret", "token", "password")
_TOML_POS_RE = re.compile(r"^(?P<msg>.*?) \(at line (?P<line>\d+), column (?P<col>\d+)\)$")
_TYPE_NAMES: dict[type, str] = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    list: "a list",
    dict: "a table",
}


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
            (key, REDACTED if key in self.secret_keys else _format_value(value), self.sources[key])
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
            close = difflib.get_close_matches(name, [*self.aliases(), *installed_types], n=1)
            if close:
                message += f"; did you mean {close[0]}?"
            raise UsageError(
                message,
                hint=f"installed provider types: {', '.join(sorted(installed_types)) or 'none'}",
            )
        return name

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

    def _environ(self) -> Mapping[str, str]:
        return os.environ if self.env is None else self.env

    def _resolve(
        self, alias: str, cls: type[Provider], *, strict: bool
    ) -> tuple[ResolvedSettings, dict[str, str]]:
        """Resolve; when not ``strict``, missing env vars are returned as {key: source}."""
        ptype = self.provider_type(alias)
        if ptype != cls.name:
            raise ValueError(f"alias {alias!r} has type {ptype!r}, not {cls.name!r}")
        table = self.providers.get(alias, {})
        fields = {f.name: f for f in (*CORE_FIELDS, *cls.config_schema)}
        section = f"providers.{alias}"
        for key in table:
            if key not in fields:
                raise _unknown_key(self.path, section, key, fields)
        env = self._environ()
        values: dict[str, Any] = {"type": ptype}
        sources: dict[str, str] = {"type": "file" if "type" in table else "default"}
        unset: dict[str, str] = {}
        for fld in (*cls.config_schema, *CORE_FIELDS):
            name = fld.name
            if name == "type":
                continue
            keypath = f"{section}.{name}"
            if name in table:
                raw = table[name]
                if isinstance(raw, str) and raw.startswith("env:"):
                    var = _env_var_name(self.path, keypath, raw)
                    text = env.get(var)
                    if not text:
                        if strict:
                            state = "is empty" if text == "" else "is not set"
                            raise ConfigError(
                                f"{self.path}: {keypath}: environment variable {var} {state} "
                                f"(export {var}=..., or change {name} in [{section}])"
                            )
                        unset[name] = f"env:{var} (not set)"
                        continue
                    values[name] = _from_env_text(self.path, keypath, fld, var, text)
                    sources[name] = f"env:{var}"
                else:
                    values[name] = _check_value(self.path, keypath, fld, raw)
                    sources[name] = "file"
            elif name in cls.credential_env:
                var = cls.credential_env[name]
                text = env.get(var)
                if text:
                    values[name] = _from_env_text(self.path, keypath, fld, var, text)
                    sources[name] = f"env {var} (default)"
                elif fld.required and strict:
                    raise ConfigError(
                        f"{self.path}: {keypath}: required, and environment variable {var} "
                        f'is not set (export {var}=..., or add {name} = "env:VAR" to '
                        f"[{section}])"
                    )
                elif not strict:
                    unset[name] = f"env {var} (default, not set)"
            elif fld.default is not None:
                values[name] = list(fld.default) if isinstance(fld.default, list) else fld.default
                sources[name] = "default"
            elif fld.required:
                raise ConfigError(
                    f"{self.path}: {keypath}: required key is missing "
                    f"(add {name} = {_example(fld)} to [{section}])"
                )
        if strict and "ca_bundle" in values:
            values["ca_bundle"] = self._ca_bundle(f"{section}.ca_bundle", values["ca_bundle"])
        secret_keys = frozenset(f.name for f in cls.config_schema if f.secret)
        settings = ResolvedSettings(alias, ptype, values, sources, secret_keys)
        return settings, unset

    def _ca_bundle(self, keypath: str, value: str) -> str:
        """The CA bundle path, relative to the config file's directory; it must exist."""
        path = Path(value).expanduser()
        if not path.is_absolute():
            path = self.path.parent / path
        if not path.is_file():
            raise ConfigError(
                f"{self.path}: {keypath}: file not found: {path} "
                "(give the path of a PEM CA bundle, or remove the key)"
            )
        return str(path)


# --- value checks ---


def _type_name(value: Any) -> str:
    """How a TOML value's type is called in messages."""
    for kind in (bool, int, float, str, list, dict):
        if isinstance(value, kind):
            return _TYPE_NAMES[kind]
    return "a date/time" if hasattr(value, "isoformat") else type(value).__name__


def _example(fld: ConfigField) -> str:
    """A TOML example value for a field, for error hints."""
    if fld.choices:
        return _toml_literal(fld.choices[0])
    if fld.secret:
        return '"env:VAR"'
    examples: dict[type, str] = {str: '"..."', int: "10", float: "1.5", bool: "true"}
    if fld.type is list:
        item = examples.get(fld.item_type or str, '"..."')
        return f"[{item}, {item}]"
    return examples.get(fld.type, '"..."')


def _toml_literal(value: Any) -> str:
    """A scalar written as TOML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return str(value)


def _type_ok(kind: type, value: Any) -> bool:
    """Whether ``value`` fits ``kind``; int is fine for float, bool is not a number."""
    if kind is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if kind is float:
        return isinstance(value, int | float)
    return isinstance(value, kind)


def _wrong_type(path: Path, keypath: str, fld: ConfigField, value: Any, kind: type) -> ConfigError:
    """The error for a value of the wrong type."""
    expected = _TYPE_NAMES[kind]
    got = _type_name(value)
    name = fld.name
    if kind in (int, float, bool) and isinstance(value, str):
        fix = f"remove the quotes, e.g. {name} = {_example(fld)}"
    elif kind is int and isinstance(value, float | bool):
        fix = f"write a whole number, e.g. {name} = 10"
    else:
        fix = f"write e.g. {name} = {_example(fld)}"
    return ConfigError(f"{path}: {keypath}: expected {expected}, got {got} ({fix})")


def _check_value(path: Path, keypath: str, fld: ConfigField, value: Any) -> Any:
    """Validate one value against its field; returns it normalised (ints become floats)."""
    if not _type_ok(fld.type, value):
        raise _wrong_type(path, keypath, fld, value, fld.type)
    if fld.type is float:
        value = float(value)
    if fld.type is list:
        items: list[Any] = []
        item_type = fld.item_type
        for i, item in enumerate(value):
            if item_type is not None and not _type_ok(item_type, item):
                raise ConfigError(
                    f"{path}: {keypath}[{i}]: expected {_TYPE_NAMES[item_type]}, got "
                    f"{_type_name(item)} (write e.g. {fld.name} = {_example(fld)})"
                )
            items.append(float(item) if item_type is float else item)
            _check_choice(path, f"{keypath}[{i}]", fld, item)
        return items
    _check_choice(path, keypath, fld, value)
    if fld.name in _POSITIVE_KEYS and fld.type in (int, float) and value <= 0:
        raise ConfigError(
            f"{path}: {keypath}: must be greater than 0, got {value} "
            f"(set a positive number, or remove the key)"
        )
    return value


def _check_choice(path: Path, keypath: str, fld: ConfigField, value: Any) -> None:
    """Raise when ``value`` is not one of the field's choices."""
    if fld.choices is None or value in fld.choices:
        return
    shown = "this value" if fld.secret else repr(value)
    allowed = ", ".join(_toml_literal(c) for c in fld.choices)
    raise ConfigError(f"{path}: {keypath}: {shown} is not allowed (use one of {allowed})")


def _env_var_name(path: Path, keypath: str, ref: str) -> str:
    """The VAR of an ``env:VAR`` reference."""
    var = ref[4:].strip()
    if not _ENV_VAR_RE.match(var):
        raise ConfigError(
            f"{path}: {keypath}: {ref!r} is not a valid env: reference "
            "(write env:NAME with a variable name such as env:QINIU_SECRET_KEY)"
        )
    return var


def _from_env_text(path: Path, keypath: str, fld: ConfigField, var: str, text: str) -> Any:
    """Convert an environment variable's text to the field's type, then validate it."""
    where = f"{keypath} (from environment variable {var})"
    value: Any = text
    try:
        if fld.type is int:
            value = int(text.strip())
        elif fld.type is float:
            value = float(text.strip())
        elif fld.type is bool:
            lowered = text.strip().lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(text)
            value = lowered in ("true", "1", "yes")
        elif fld.type is list:
            parts = [p.strip() for p in text.split(",") if p.strip()]
            if fld.item_type is int:
                value = [int(p) for p in parts]
            elif fld.item_type is float:
                value = [float(p) for p in parts]
            else:
                value = parts
    except ValueError:
        shown = "its value" if fld.secret else repr(text)
        example = _example(fld).strip('"')
        raise ConfigError(
            f"{path}: {where}: {shown} is not {_TYPE_NAMES[fld.type]} "
            f"(fix the variable, e.g. export {var}={example})"
        ) from None
    return _check_value(path, where, fld, value)


def _unknown_key(path: Path, section: str, key: str, known: Iterable[str]) -> ConfigError:
    """The error for an unknown key, with a suggestion."""
    names = sorted(known)
    keypath = f"{section}.{key}" if section else key
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    if close:
        fix = f"did you mean {close[0]}?"
    else:
        fix = f"known keys: {', '.join(names)}" if names else "remove it"
    return ConfigError(f"{path}: {keypath}: unknown key ({fix})")


def _looks_secret(key: str) -> bool:
    """Whether a key of an unknown provider type looks like it holds a secret."""
    lowered = key.lower()
    return any(word in lowered for word in _SECRET_WORDS)


def _format_value(value: Any) -> str:
    """A value as shown by ``config show``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple | dict):
        return json.dumps(value, default=str)
    return str(value)


# --- loading ---


def load_config(explicit: str | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Find, read and structurally validate the config file; a missing default file is empty."""
    path, how = config_path(explicit, env)
    defaults = _apply_defaults({})
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        if how == "default":
            return Config(path, how, False, defaults, {}, (), env=env)
        origin = "--config" if how == "--config" else "$PREWARM_CONFIG"
        raise ConfigError(
            f"{path}: config file not found (given by {origin}; fix the path, "
            f"or create it with `prewarm config init --config {shlex.quote(str(path))}`)"
        ) from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory (give the path of a config.toml file)") from None
    except OSError as exc:
        raise ConfigError(
            f"{path}: cannot read the config file: {exc.strerror or exc} (check its permissions)"
        ) from None
    try:
        doc = tomllib.loads(data.decode("utf-8"))
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
            "(fix the syntax; see config.example.toml for the format)"
        ) from None
    return _build(path, how, doc, env)


def _build(path: Path, how: str, doc: dict[str, Any], env: Mapping[str, str] | None) -> Config:
    """Check the parsed document's structure and build the Config."""
    for key, value in doc.items():
        if key not in _TOP_LEVEL_KEYS:
            if isinstance(value, dict) and _NAME_RE.match(key):
                raise ConfigError(
                    f"{path}: {key}: unknown table "
                    f"(provider tables are named [providers.{key}]; allowed: "
                    f"{', '.join(_TOP_LEVEL_KEYS)})"
                )
            raise _unknown_key(path, "", key, _TOP_LEVEL_KEYS)

    raw_defaults = doc.get("defaults", {})
    if not isinstance(raw_defaults, dict):
        raise ConfigError(f"{path}: defaults: expected a table (write it as [defaults])")
    fields = {f.name: f for f in DEFAULTS_FIELDS}
    checked: dict[str, Any] = {}
    for key, value in raw_defaults.items():
        if key not in fields:
            raise _unknown_key(path, "defaults", key, fields)
        checked[key] = _check_value(path, f"defaults.{key}", fields[key], value)
    defaults = _apply_defaults(checked)

    raw_providers = doc.get("providers", {})
    if not isinstance(raw_providers, dict):
        raise ConfigError(
            f"{path}: providers: expected tables (write one [providers.ALIAS] table per provider)"
        )
    providers: dict[str, dict[str, Any]] = {}
    for alias, table in raw_providers.items():
        if not _NAME_RE.match(alias):
            raise ConfigError(
                f"{path}: providers.{json.dumps(alias)}: invalid alias "
                "(use letters, digits, '_' and '-' only, e.g. [providers.qiniu])"
            )
        if not isinstance(table, dict):
            raise ConfigError(
                f"{path}: providers.{alias}: expected a table, got {_type_name(table)} "
                f"(write [providers.{alias}] followed by its keys)"
            )
        ptype = table.get("type")
        if ptype is not None and not (isinstance(ptype, str) and _NAME_RE.match(ptype)):
            raise ConfigError(
                f"{path}: providers.{alias}.type: expected a provider type name "
                f'(write e.g. type = "qiniu"; `prewarm providers` lists the types)'
            )
        providers[alias] = dict(table)

    config = Config(path, how, True, defaults, providers, (), raw=doc, env=env)
    config.routes = _build_routes(config, doc.get("routes", []))

    provider = defaults.get("provider")
    if isinstance(provider, str) and provider not in providers:
        matches = config.aliases_of_type(provider)
        if len(matches) > 1:
            raise ConfigError(
                f"{path}: defaults.provider: {provider!r} is the type of several aliases "
                f"({', '.join(matches)}) (name one of them)"
            )
    return config


def _apply_defaults(checked: dict[str, Any]) -> dict[str, Any]:
    """[defaults] values with the field defaults filled in."""
    result = dict(checked)
    for fld in DEFAULTS_FIELDS:
        if fld.name not in result and fld.default is not None:
            result[fld.name] = fld.default
    return result


def _build_routes(config: Config, raw_routes: Any) -> tuple[Route, ...]:
    """Check [[routes]] and build Route objects."""
    path = config.path
    if not isinstance(raw_routes, list):
        raise ConfigError(f"{path}: routes: expected [[routes]] tables (write each as [[routes]])")
    routes: list[Route] = []
    for i, entry in enumerate(raw_routes):
        where = f"routes[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(
                f"{path}: {where}: expected a table, got {_type_name(entry)} "
                "(write each route as [[routes]] with hosts and providers)"
            )
        for key in entry:
            if key not in _ROUTE_KEYS:
                raise _unknown_key(path, where, key, _ROUTE_KEYS)
        hosts = _string_list(path, f"{where}.hosts", entry, '["static.example.com"]')
        for j, host in enumerate(hosts):
            if "/" in host or " " in host:
                raise ConfigError(
                    f"{path}: {where}.hosts[{j}]: {host!r} is not a host pattern "
                    "(write the host only, e.g. static.example.com or *.example.com)"
                )
        names = _string_list(path, f"{where}.providers", entry, '["qiniu"]')
        for j, name in enumerate(names):
            if name in config.providers:
                continue
            matches = config.aliases_of_type(name)
            if len(matches) == 1:
                continue
            if matches:
                raise ConfigError(
                    f"{path}: {where}.providers[{j}]: {name!r} is the type of several aliases "
                    f"({', '.join(matches)}) (name one of them)"
                )
            known = ", ".join(config.aliases()) or "none"
            raise ConfigError(
                f"{path}: {where}.providers[{j}]: {name!r} is not a configured provider "
                f"(add a [providers.{name}] table, or use one of: {known})"
            )
        routes.append(Route(tuple(hosts), tuple(names)))
    return tuple(routes)


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


# --- warnings, writing, display ---


def permission_warning(
    config: Config, secret_keys_by_type: Mapping[str, Iterable[str]]
) -> str | None:
    """A one-line warning when a file readable by others holds a literal secret (POSIX only)."""
    if os.name != "posix" or not config.exists:
        return None
    try:
        mode = config.path.stat().st_mode
    except OSError:
        return None
    if not mode & (stat.S_IRGRP | stat.S_IROTH):
        return None
    for alias, table in config.providers.items():
        ptype = config.provider_type(alias)
        known = secret_keys_by_type.get(ptype)
        secret_keys = set(known) if known is not None else {k for k in table if _looks_secret(k)}
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


def write_config(path: Path, data: Mapping[str, Any], *, overwrite: bool = False) -> None:
    """Write ``data`` as TOML atomically, mode 0600 from creation; parents are made 0700."""
    import tomli_w

    if path.exists() and not overwrite:
        raise ConfigError(f"{path}: already exists (use --force to overwrite it)")
    text = tomli_w.dumps(dict(data))
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    try:
        make_private_dirs(path.parent)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
        fd = os.open(tmp, flags, 0o600)
        try:
            if hasattr(os, "fchmod"):
                os.fchmod(fd, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(text.encode("utf-8"))
                handle.flush()
                os.fsync(handle.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ConfigError(
            f"{path}: cannot write the config file: {exc.strerror or exc} "
            "(check the directory's permissions, or pass --config PATH)"
        ) from None


def provider_table(cls: type[Provider], answers: Mapping[str, Any]) -> dict[str, Any]:
    """A [providers.<alias>] table for `config init`: type, then answers in schema order."""
    fields = [*cls.config_schema, *(f for f in CORE_FIELDS if f.name != "type")]
    known = {f.name for f in fields} | {"type"}
    unknown = sorted(set(answers) - known)
    if unknown:
        raise ValueError(f"{cls.name} has no config keys {unknown}")
    table: dict[str, Any] = {"type": cls.name}
    for fld in fields:
        value = answers.get(fld.name)
        if value is not None and value != "":
            table[fld.name] = list(value) if isinstance(value, tuple) else value
        elif fld.secret and fld.required and fld.name in cls.credential_env:
            # Spelled out for required secrets only: an env: reference to an unset variable
            # is an error, and an optional secret falls back to its variable anyway.
            table[fld.name] = f"env:{cls.credential_env[fld.name]}"
    return table


def show_rows(config: Config, classes: Mapping[str, type[Provider]]) -> list[dict[str, str]]:
    """Rows {key, value, source} for `config show`; secrets are always redacted."""
    rows: list[dict[str, str]] = []
    raw_defaults = config.raw.get("defaults", {})
    for fld in DEFAULTS_FIELDS:
        if fld.name in config.defaults:
            rows.append(
                {
                    "key": f"defaults.{fld.name}",
                    "value": _format_value(config.defaults[fld.name]),
                    "source": "file" if fld.name in raw_defaults else "default",
                }
            )
    for alias in config.aliases():
        prefix = f"providers.{alias}"
        cls = classes.get(config.provider_type(alias))
        if cls is None:
            for key, value in config.providers[alias].items():
                is_ref = isinstance(value, str) and value.startswith("env:")
                shown = REDACTED if _looks_secret(key) and not is_ref else _format_value(value)
                rows.append(
                    {
                        "key": f"{prefix}.{key}",
                        "value": shown,
                        "source": "file (unknown provider type)",
                    }
                )
            continue
        settings, unset = config._resolve(alias, cls, strict=False)
        shown_rows = {key: (value, source) for key, value, source in settings.display()}
        for fld in (*CORE_FIELDS[:1], *cls.config_schema, *CORE_FIELDS[1:]):
            if fld.name in shown_rows:
                value, source = shown_rows[fld.name]
            elif fld.name in unset:
                value, source = UNSET, unset[fld.name]
            else:
                continue
            rows.append({"key": f"{prefix}.{fld.name}", "value": value, "source": source})
    for i, route in enumerate(config.routes):
        for key in _ROUTE_KEYS:
            rows.append(
                {
                    "key": f"routes[{i}].{key}",
                    "value": _format_value(list(getattr(route, key))),
                    "source": "file",
                }
            )
    return rows
