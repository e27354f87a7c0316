"""Provider discovery through the entry-point group ``prewarm.providers``.

Built-in providers register through the same group as third-party plugins.
A plugin that fails to load is reported as a warning and skipped.
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, PackageNotFoundError, entry_points, version
from typing import TYPE_CHECKING, Any

from prewarm_cli.errors import ConfigError

if TYPE_CHECKING:  # imported when a plugin is loaded: `prewarm --version` needs only metadata
    from prewarm_cli.plugin import Provider, SubmitOption

GROUP = "prewarm.providers"
OPTIONS_GROUP = "prewarm.submit_options"  # type name -> "module:TUPLE" of SubmitOption
NO_SUBMIT_OPTIONS: tuple[SubmitOption, ...] = ()  # what a provider without extras declares
BUILTIN_DISTRIBUTION = "prewarm-cli"


@dataclass(frozen=True)
class PluginInfo:
    """Where a provider type comes from."""

    name: str
    source: str  # "built-in" or the distribution that provides it
    version: str | None
    target: str  # "module:Class"


def _entry_points(group: str = GROUP) -> dict[str, EntryPoint]:
    """The group's entry points by name; the first one on sys.path wins, as for imports."""
    return _scan(tuple(sys.path))[group]


@functools.cache
def _scan(_path: tuple[str, ...]) -> dict[str, dict[str, EntryPoint]]:
    """Both groups from one pass over the installed distributions (the slow part of
    `prewarm --version`), again only when sys.path changes."""
    found: dict[str, dict[str, EntryPoint]] = {GROUP: {}, OPTIONS_GROUP: {}}
    installed = entry_points()
    for group, by_name in found.items():
        for ep in installed.select(group=group):
            by_name.setdefault(ep.name, ep)
    return found


def _info(ep: EntryPoint) -> PluginInfo:
    dist = ep.dist
    dist_name = dist.metadata["Name"] if dist is not None else None
    source = "built-in" if dist_name == BUILTIN_DISTRIBUTION else (dist_name or "unknown")
    return PluginInfo(
        name=ep.name,
        source=source,
        version=dist.version if dist is not None else None,
        target=ep.value,
    )


def names() -> list[str]:
    """Installed provider type names, without importing any plugin."""
    return sorted(_entry_points())


def plugin_info(name: str) -> PluginInfo:
    ep = _entry_points().get(name)
    if ep is None:
        raise _unknown(name)
    return _info(ep)


_loaded: dict[str, type[Provider]] = {}


def load(name: str) -> type[Provider]:
    """The provider class of a type name; a clear config error when it is unknown or broken."""
    if name in _loaded:
        return _loaded[name]
    ep = _entry_points().get(name)
    if ep is None:
        raise _unknown(name)
    try:
        cls: Any = ep.load()
    except Exception as exc:  # a broken plugin must not crash prewarm
        raise ConfigError(
            f"provider plugin {name!r} ({ep.value}) failed to load: {exc}",
            hint="reinstall or upgrade the plugin's package",
        ) from exc
    from prewarm_cli.plugin import Provider

    if not (isinstance(cls, type) and issubclass(cls, Provider)):
        raise ConfigError(f"provider plugin {name!r} ({ep.value}) is not a prewarm Provider class")
    if cls.name != name:
        raise ConfigError(
            f"provider plugin {name!r} ({ep.value}) declares the name {cls.name!r}; "
            "the entry point and the class must agree"
        )
    _loaded[name] = cls
    return cls


def load_all(warn: Callable[[str], None]) -> dict[str, type[Provider]]:
    """Every provider class that loads; each broken plugin is one warning."""
    classes: dict[str, type[Provider]] = {}
    for name in names():
        try:
            classes[name] = load(name)
        except ConfigError as exc:
            warn(str(exc))
    return classes


def submit_options(warn: Callable[[str], None]) -> dict[str, tuple[SubmitOption, ...]]:
    """Each installed type's extra submit options, without importing the providers that
    declare them through the `prewarm.submit_options` entry-point group (the others are
    loaded to read their class). Each plugin that fails is one warning."""
    from prewarm_cli.plugin import SubmitOption

    declared = _entry_points(OPTIONS_GROUP)
    found: dict[str, tuple[SubmitOption, ...]] = {}
    for name in names():
        ep = declared.get(name)
        if ep is None:
            try:
                found[name] = tuple(load(name).submit_options)
            except ConfigError as exc:
                warn(str(exc))
            continue
        try:
            options = tuple(ep.load())
        except Exception as exc:  # a broken plugin must not crash prewarm
            warn(f"provider plugin {name!r}: its submit options ({ep.value}) failed to load: {exc}")
            continue
        if not all(isinstance(o, SubmitOption) for o in options):
            warn(f"provider plugin {name!r}: {ep.value} is not a tuple of SubmitOption")
            continue
        found[name] = options
    return found


_REQUIREMENT_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def plugin_sdks(name: str) -> list[tuple[str, str | None]]:
    """The packages a provider type needs, with their installed versions (None: missing).

    Read from metadata, without importing the plugin: for a built-in type the requirements
    of prewarm-cli's extra of that name (`prewarm-cli[qiniu]`), for a third-party plugin its
    distribution's own requirements.
    """
    ep = _entry_points().get(name)
    dist = ep.dist if ep is not None else None
    if dist is None:
        return []
    builtin = dist.metadata["Name"] == BUILTIN_DISTRIBUTION
    found: list[tuple[str, str | None]] = []
    for requirement in dist.requires or []:
        spec, _, marker = requirement.partition(";")
        if builtin != (f'extra == "{name}"' in marker.replace("'", '"')):
            continue
        if not builtin and "extra ==" in marker:
            continue  # a plugin's own optional extras
        match = _REQUIREMENT_NAME.match(spec)
        if match is None or match.group(1).lower().replace("_", "-") == BUILTIN_DISTRIBUTION:
            continue
        try:
            found.append((match.group(1), version(match.group(1))))
        except PackageNotFoundError:
            found.append((match.group(1), None))
    return found


def _unknown(name: str) -> ConfigError:
    installed = ", ".join(names()) or "none"
    return ConfigError(
        f"unknown provider type {name!r} (installed: {installed})",
        hint="install the plugin that provides it, e.g. pip install 'prewarm-cli[all]'",
    )


def version_text() -> str:
    """What a bug report needs: versions of prewarm, Python, the platform and each plugin
    with the SDK it uses, read from metadata (no plugin is imported)."""
    import platform

    from prewarm_cli import __version__

    lines = [
        f"prewarm, version {__version__}",
        f"Python {platform.python_version()} ({platform.python_implementation()}),"
        f" {platform.platform(terse=True)}",
        "provider plugins:",
    ]
    installed = names()
    width = max((len(n) for n in installed), default=0)
    for name in installed:
        info = plugin_info(name)
        source = "built-in" if info.source == "built-in" else f"{info.source} {info.version}"
        sdks = ", ".join(f"{dist} {ver or '(not installed)'}" for dist, ver in plugin_sdks(name))
        lines.append(f"  {name:<{width}}  {source}" + (f"; {sdks}" if sdks else ""))
    if not installed:
        lines.append("  none")
    return "\n".join(lines)
