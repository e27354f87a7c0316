"""Writing the config file: a new one, or an alias added to an existing one.

An existing file is edited with tomlkit, so that its comments, order and layout stay as the
user wrote them; the result is written atomically, mode 0600 from creation.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prewarm_cli import DOCS_URL
from prewarm_cli.errors import ConfigError
from prewarm_cli.paths import make_private_dirs, replace_private
from prewarm_cli.plugin import CORE_FIELDS, Provider

if TYPE_CHECKING:
    from tomlkit import TOMLDocument

__all__ = [
    "ConfigDocument",
    "provider_table",
    "write_config_text",
]

NEW_FILE_HEADER = (
    "prewarm configuration (written by `prewarm config init`).",
    f"Every key is described in {DOCS_URL}/docs/configuration.md;",
    "`prewarm config check` validates this file.",
)


class ConfigDocument:
    """The config file as TOML text that keeps the user's comments and layout."""

    def __init__(self, doc: TOMLDocument) -> None:
        self.doc = doc

    @classmethod
    def new(cls) -> ConfigDocument:
        import tomlkit

        doc = tomlkit.document()
        for line in NEW_FILE_HEADER:
            doc.add(tomlkit.comment(line))
        doc.add(tomlkit.nl())
        return cls(doc)

    @classmethod
    def parse(cls, path: Path, text: str) -> ConfigDocument:
        import tomlkit
        from tomlkit.exceptions import TOMLKitError

        try:
            return cls(tomlkit.parse(text))
        except TOMLKitError as exc:
            raise ConfigError(
                f"{path}: invalid TOML: {exc} (fix it first: `prewarm config check` shows where)"
            ) from None

    def text(self) -> str:
        return self.doc.as_string()

    def has_alias(self, alias: str) -> bool:
        providers = self.doc.get("providers")
        return isinstance(providers, Mapping) and alias in providers

    def default_provider(self) -> str | None:
        defaults = self.doc.get("defaults")
        value = defaults.get("provider") if isinstance(defaults, Mapping) else None
        return str(value) if value is not None else None

    def set_provider(self, alias: str, table: Mapping[str, Any]) -> None:
        """Add ``[providers.ALIAS]`` after the other provider tables, or replace it in place."""
        import tomlkit
        from tomlkit.items import InlineTable

        item = tomlkit.table()
        for key, value in table.items():
            item.add(key, value)
        providers = self.doc.get("providers")
        if providers is None:
            providers = tomlkit.table(is_super_table=True)
            self.doc.add("providers", providers)
        if isinstance(providers, InlineTable) or isinstance(providers.get(alias), InlineTable):
            raise ConfigError(
                "providers is written inline ({ ... }) in the config file: config init adds"
                f" a [providers.{alias}] table; write the providers as tables, or add it by"
                " hand (`prewarm config check` checks it)"
            )
        if alias in providers:
            providers[alias] = item
            return
        if not _ends_with_blank_line(self.doc):
            item.add(tomlkit.nl())  # keeps a blank line before a table that follows
        providers.add(alias, item)

    def set_default_provider(self, alias: str) -> None:
        import tomlkit

        defaults = self.doc.get("defaults")
        if defaults is None:
            defaults = tomlkit.table()
            self.doc.add("defaults", defaults)
        from tomlkit.items import Comment, Table, Whitespace

        if "provider" in defaults or not isinstance(defaults, Table):
            # Set in place: an inline table, or [defaults] split around other tables (which
            # tomlkit hands back as a proxy, with no body to place the key in).
            defaults["provider"] = alias
            return
        # After the table's last key, not after the comments that follow it: those may be
        # commented-out tables ("# [[routes]]") that the key would end up under once a user
        # uncomments them. The table is rebuilt in its place, its comments kept.
        body = list(defaults.value.body)
        last = max((i for i, (key, _) in enumerate(body) if key is not None), default=-1)
        rebuilt = tomlkit.table()
        if last < 0:
            rebuilt.add("provider", alias)
        for i, (key, item) in enumerate(body):
            if key is not None:
                rebuilt.add(key, item)
            elif isinstance(item, Comment | Whitespace):  # what a body holds without a key
                rebuilt.add(item)
            if i == last:
                rebuilt.add("provider", alias)
        self.doc["defaults"] = rebuilt


def _ends_with_blank_line(doc: TOMLDocument) -> bool:
    return doc.as_string().endswith("\n\n")


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


def write_config_text(path: Path, text: str, *, overwrite: bool = False) -> None:
    """Write ``text`` atomically, mode 0600 from creation; parents are made 0700. A symlink
    (a dotfiles checkout) is followed: its target is written, the link kept."""
    if path.exists() and not overwrite:
        raise ConfigError(f"{path}: already exists (use --force to overwrite it)")
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    try:
        make_private_dirs(path.parent)
        replace_private(path, text.encode("utf-8"))
    except OSError as exc:
        raise ConfigError(
            f"{path}: cannot write the config file: {exc.strerror or exc} "
            "(check the directory's permissions, or pass --config PATH)"
        ) from None
