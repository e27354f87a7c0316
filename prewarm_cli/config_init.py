"""`config init`'s core: what to ask, each answer's check, and the file's new text checked
as `config check` would check it before anything is written. The prompts are the command's.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from prewarm_cli import config as config_mod
from prewarm_cli.config_check import Problem, check_provider
from prewarm_cli.config_file import ConfigDocument, provider_table
from prewarm_cli.config_values import TYPE_NAMES, check_value, example_value, toml_literal
from prewarm_cli.errors import ConfigError, UsageError
from prewarm_cli.plugin import CORE_FIELDS, ConfigField, Provider

__all__ = [
    "InitTarget",
    "alias_problem",
    "check_answer",
    "check_new_text",
    "credential_in_environment",
    "default_answer",
    "field_for",
    "fields_to_ask",
    "parse_answer",
    "parse_set_option",
    "settable_fields",
    "shown_default",
]

# What an unset credential variable holds while the new file is checked: its absence is
# reported as a note (export it before use), not as an error in the file.
_PLACEHOLDER = "placeholder-for-config-init"
_NO_FILE = Path("(answer)")  # answers are checked before they are in a file
_ALIAS_RE = re.compile(r"^[A-Za-z0-9_-]+$")


def settable_fields(cls: type[Provider]) -> dict[str, ConfigField]:
    """The keys a [providers.ALIAS] table of ``cls`` takes, but `type`."""
    return {f.name: f for f in (*cls.config_schema, *CORE_FIELDS) if f.name != "type"}


def field_for(cls: type[Provider], key: str) -> ConfigField:
    """The field named by `--set KEY=...`; a typo is a config error with the nearest key."""
    fields = settable_fields(cls)
    if key in fields:
        return fields[key]
    close = difflib.get_close_matches(key, fields, n=1, cutoff=0.6)
    fix = f"did you mean {close[0]}?" if close else f"known keys: {', '.join(sorted(fields))}"
    raise ConfigError(f"--set {key}: {cls.name} has no key {key!r} ({fix})")


def parse_set_option(cls: type[Provider], alias: str, items: tuple[str, ...]) -> dict[str, Any]:
    """`--set KEY=VALUE` options as checked values by key."""
    answers: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set {item!r} is not KEY=VALUE (e.g. --set batch_size=50)")
        fld = field_for(cls, key.strip())
        answers[fld.name] = check_answer(alias, fld, parse_answer(raw.strip(), fld))
    return answers


def parse_answer(raw: str, fld: ConfigField) -> Any:
    """Text typed for a field as its value: TOML for numbers, booleans and [lists]; a list
    may also be written `a, b`; anything else is text."""
    if raw.startswith("env:"):
        return raw
    if fld.type is list and not raw.startswith("["):
        return [part.strip() for part in raw.split(",") if part.strip()]
    if fld.type is str:
        return raw
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def check_answer(alias: str, fld: ConfigField, value: Any) -> Any:
    """One answer checked as loading would check it, URLs included; ConfigError otherwise."""
    keypath = f"providers.{alias}.{fld.name}"
    if isinstance(value, str) and value.startswith("env:"):
        if not re.fullmatch(r"env:[A-Za-z_][A-Za-z0-9_]*", value):
            raise ConfigError(f"{keypath}: {value!r} is not env:NAME (e.g. env:MY_API_KEY)")
        return value
    if isinstance(value, str) and fld.type is str and not value.strip() and fld.required:
        raise ConfigError(f"{keypath}: required (type a value)")
    if isinstance(value, str) and fld.type in (int, float, bool):
        # Typed, not quoted: the file's advice ("remove the quotes") would not fit.
        expected = TYPE_NAMES[fld.type]
        raise ConfigError(f"{keypath}: {value!r} is not {expected} (e.g. {example_value(fld)})")
    try:
        checked = check_value(_NO_FILE, keypath, fld, value)
    except ConfigError as exc:
        raise ConfigError(str(exc).removeprefix(f"{_NO_FILE}: ")) from None
    if _is_url_field(fld) and isinstance(checked, str):
        parts = urlsplit(checked)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            example = f"https://{checked.split('://')[-1]}" if checked else "https://..."
            raise ConfigError(
                f"{keypath}: {checked!r} is not a URL with scheme and host "
                f"(write it in full, e.g. {example})"
            )
    return checked


def _is_url_field(fld: ConfigField) -> bool:
    # DESIGN §3: an endpoint is always a full URL with scheme.
    return fld.type is str and (fld.name == "endpoint" or fld.name.endswith("_endpoint"))


def alias_problem(name: str) -> str | None:
    """Why ``name`` cannot be an alias, if it cannot."""
    if not _ALIAS_RE.match(name):
        return "use letters, digits, '_' and '-' only"
    return None


def credential_in_environment(cls: type[Provider], key: str) -> str | None:
    """The variable a credential key falls back to, when it is set in the environment."""
    var = cls.credential_env.get(key)
    return var if var and os.environ.get(var) else None


def fields_to_ask(cls: type[Provider], given: Mapping[str, Any]) -> list[ConfigField]:
    """What the prompts ask, required keys first, then those with a default; an optional
    key with a default variable is not asked (the provider reads the variable)."""
    asked = [
        f
        for f in cls.config_schema
        if f.name not in given and not (not f.required and f.name in cls.credential_env)
    ]
    return [f for f in asked if f.required] + [
        f for f in asked if not f.required and f.default is not None
    ]


def default_answer(cls: type[Provider], fld: ConfigField) -> Any:
    """The value a prompt offers: a secret's env: reference, or the field's default."""
    if fld.name in cls.credential_env:
        return f"env:{cls.credential_env[fld.name]}"
    return fld.default


def shown_default(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, list):  # as TOML: an item may hold a comma ("gzip, deflate, br")
        return "[" + ", ".join(toml_literal(v) for v in value) + "]"
    if isinstance(value, bool):
        return toml_literal(value)
    return str(value)


@dataclass
class InitTarget:
    """The file `config init` writes: its present text (as an editable document) or a new one."""

    path: Path
    document: ConfigDocument
    aliases: list[str] = field(default_factory=list)

    @classmethod
    def open(cls, path: Path) -> InitTarget:
        try:
            with path.open(encoding="utf-8", newline="") as handle:  # CRLF kept as it is
                text = handle.read()
        except FileNotFoundError:
            return cls(path, ConfigDocument.new())
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"{path}: cannot read the config file: {exc} (check it, or pass --config PATH)"
            ) from None
        document = ConfigDocument.parse(path, text)
        providers = document.doc.get("providers")
        aliases = [str(a) for a in providers] if isinstance(providers, Mapping) else []
        return cls(path, document, aliases)

    def effective_default(self) -> str | None:
        """The default provider today: defaults.provider, or the only alias."""
        explicit = self.document.default_provider()
        if explicit is not None:
            return explicit
        return self.aliases[0] if len(self.aliases) == 1 else None

    def text_with(
        self, cls: type[Provider], alias: str, answers: Mapping[str, Any], default: str | None
    ) -> str:
        """The file's text with [providers.ALIAS] added or replaced, and defaults.provider
        set to ``default`` when it is not already that; the document itself is left as is."""
        original = self.document.text()
        document = ConfigDocument.parse(self.path, original)
        if default is not None and document.default_provider() != default:
            document.set_default_provider(default)  # first: a new file starts with it
        try:
            document.set_provider(alias, provider_table(cls, answers))
        except ConfigError as exc:
            raise ConfigError(f"{self.path}: {exc.message}", hint=exc.hint) from None
        text = document.text()
        if "\r\n" in original:  # a file of CRLF lines: the new lines too
            text = text.replace("\r\n", "\n").replace("\n", "\r\n")
        return text


def check_new_text(
    path: Path, text: str, cls: type[Provider], alias: str
) -> tuple[list[Problem], list[str]]:
    """The errors `config check` would find in the new alias, and the credential variables
    it names that are not set (a note: the file is right, the shell is not ready yet)."""
    env = dict(os.environ)
    unset: list[str] = []
    config, structural = config_mod.config_from_text(path, text, env)
    table = config.providers.get(alias, {})
    for fld in cls.config_schema:
        value = table.get(fld.name)
        if isinstance(value, str) and value.startswith("env:"):
            var: str | None = value[4:]
        elif fld.name not in table and fld.required:
            var = cls.credential_env.get(fld.name)
        else:
            var = None  # a literal, or an optional key the provider can do without
        if var and not env.get(var):
            env[var] = _PLACEHOLDER
            unset.append(var)
    config.env = env
    about_alias = re.compile(rf"\bproviders\.{re.escape(alias)}(?![A-Za-z0-9_-])")
    mine = [e for e in structural if about_alias.search(str(e))]
    problems = [Problem.from_error(e, str(path)) for e in mine]
    problems += check_provider(config, alias, cls).errors
    return problems, unset
