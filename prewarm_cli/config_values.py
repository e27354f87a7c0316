"""Checks of single config values against their ConfigField, and how values are shown.

Every error is a ConfigError of one line naming the file, the key path and the fix.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from prewarm_cli.errors import ConfigError
from prewarm_cli.plugin import ConfigField

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
_ENV_VAR_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SECRET_WORDS = ("key", "secret", "token", "password")
TYPE_NAMES: dict[type, str] = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    list: "a list",
    dict: "a table",
}


def type_name(value: Any) -> str:
    """How a TOML value's type is called in messages."""
    for kind in (bool, int, float, str, list, dict):
        if isinstance(value, kind):
            return TYPE_NAMES[kind]
    return "a date/time" if hasattr(value, "isoformat") else type(value).__name__


def example_value(fld: ConfigField) -> str:
    """A TOML example value for a field, for error hints."""
    if fld.choices:
        return toml_literal(fld.choices[0])
    if fld.secret:
        return '"env:VAR"'
    examples: dict[type, str] = {str: '"..."', int: "10", float: "1.5", bool: "true"}
    if fld.type is list:
        item = examples.get(fld.item_type or str, '"..."')
        return f"[{item}, {item}]"
    return examples.get(fld.type, '"..."')


def toml_literal(value: Any) -> str:
    """A scalar written as TOML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return str(value)


def type_ok(kind: type, value: Any) -> bool:
    """Whether ``value`` fits ``kind``; int is fine for float, bool is not a number."""
    if kind is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if kind is float:
        return isinstance(value, int | float)
    return isinstance(value, kind)


def wrong_type(path: Path, keypath: str, fld: ConfigField, value: Any, kind: type) -> ConfigError:
    """The error for a value of the wrong type."""
    expected = TYPE_NAMES[kind]
    got = type_name(value)
    name = fld.name
    if kind in (int, float, bool) and isinstance(value, str):
        fix = f"remove the quotes, e.g. {name} = {example_value(fld)}"
    elif kind is int and isinstance(value, float | bool):
        fix = f"write a whole number, e.g. {name} = 10"
    else:
        fix = f"write e.g. {name} = {example_value(fld)}"
    return ConfigError(f"{path}: {keypath}: expected {expected}, got {got} ({fix})")


def check_value(path: Path, keypath: str, fld: ConfigField, value: Any) -> Any:
    """Validate one value against its field; returns it normalised (ints become floats)."""
    if not type_ok(fld.type, value):
        raise wrong_type(path, keypath, fld, value, fld.type)
    if fld.type is float:
        value = float(value)
        if not math.isfinite(value):  # TOML has nan and inf; no wait or rate can hold them
            raise ConfigError(f"{path}: {keypath}: must be a finite number, got {value}")
    if fld.type is list:
        items: list[Any] = []
        item_type = fld.item_type
        for i, item in enumerate(value):
            if item_type is not None and not type_ok(item_type, item):
                raise ConfigError(
                    f"{path}: {keypath}[{i}]: expected {TYPE_NAMES[item_type]}, got "
                    f"{type_name(item)} (write e.g. {fld.name} = {example_value(fld)})"
                )
            if item_type is float and not math.isfinite(float(item)):
                raise ConfigError(f"{path}: {keypath}[{i}]: must be a finite number, got {item}")
            items.append(float(item) if item_type is float else item)
            check_choice(path, f"{keypath}[{i}]", fld, item)
        return items
    check_choice(path, keypath, fld, value)
    if fld.name in _POSITIVE_KEYS and fld.type in (int, float) and value <= 0:
        raise ConfigError(
            f"{path}: {keypath}: must be greater than 0, got {value} "
            f"(set a positive number, or remove the key)"
        )
    return value


def check_choice(path: Path, keypath: str, fld: ConfigField, value: Any) -> None:
    """Raise when ``value`` is not one of the field's choices."""
    if fld.choices is None or value in fld.choices:
        return
    shown = "this value" if fld.secret else repr(value)
    allowed = ", ".join(toml_literal(c) for c in fld.choices)
    raise ConfigError(f"{path}: {keypath}: {shown} is not allowed (use one of {allowed})")


def env_var_name(path: Path, keypath: str, ref: str) -> str:
    """The VAR of an ``env:VAR`` reference."""
    var = ref[4:].strip()
    if not _ENV_VAR_RE.match(var):
        raise ConfigError(
            f"{path}: {keypath}: {ref!r} is not a valid env: reference "
            "(write env:NAME with a variable name such as env:QINIU_SECRET_KEY)"
        )
    return var


def from_env_text(path: Path, keypath: str, fld: ConfigField, var: str, text: str) -> Any:
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
        example = example_value(fld).strip('"')
        raise ConfigError(
            f"{path}: {where}: {shown} is not {TYPE_NAMES[fld.type]} "
            f"(fix the variable, e.g. export {var}={example})"
        ) from None
    return check_value(path, where, fld, value)


def unknown_key(path: Path, section: str, key: str, known: Iterable[str]) -> ConfigError:
    """The error for an unknown key, with a suggestion."""
    names = sorted(known)
    keypath = f"{section}.{key}" if section else key
    import difflib  # for the error only

    close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    if close:
        fix = f"did you mean {close[0]}?"
    else:
        fix = f"known keys: {', '.join(names)}" if names else "remove it"
    return ConfigError(f"{path}: {keypath}: unknown key ({fix})")


def looks_secret(key: str) -> bool:
    """Whether a key of an unknown provider type looks like it holds a secret."""
    lowered = key.lower()
    return any(word in lowered for word in _SECRET_WORDS)


def format_value(value: Any) -> str:
    """A value as shown by ``config show``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple | dict):
        return json.dumps(value, default=str)
    return str(value)
