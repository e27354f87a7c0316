"""Provider discovery through the entry-point group ``prewarm.providers``.

Built-in providers register through the same group as third-party plugins.
A plugin that fails to load is reported as a warning and skipped.

Reading the installed distributions' metadata costs a command about 30 ms (importing
``importlib.metadata`` is most of it), so what the two groups hold is kept in the state
directory (``plugins.json``) with what it was read from: the metadata directories on each
``sys.path`` entry and the identity of each one's entry_points.txt (or of a zip on the path).
Installing, removing or reinstalling a distribution changes that, and the next command reads
the metadata again.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prewarm_cli.errors import ConfigError

if TYPE_CHECKING:  # imported when a plugin is loaded: `prewarm --version` needs only metadata
    from importlib.metadata import EntryPoint

    from prewarm_cli.config import Config
    from prewarm_cli.plugin import Provider, SubmitOption

GROUP = "prewarm.providers"
OPTIONS_GROUP = "prewarm.submit_options"  # type name -> "module:TUPLE" of SubmitOption
NO_SUBMIT_OPTIONS: tuple[SubmitOption, ...] = ()  # what a provider without extras declares
BUILTIN_DISTRIBUTION = "prewarm-cli"
CACHE_FILENAME = "plugins.json"
_CACHE_FORMAT = 3


@dataclass(frozen=True)
class PluginInfo:
    """Where a provider type comes from."""

    name: str
    source: str  # "built-in" or the distribution that provides it
    version: str | None
    target: str  # "module:Class"


def _entry_points(group: str = GROUP) -> dict[str, str]:
    """The group's entry points, name -> "module:attr"; the first one on sys.path wins, as for
    imports."""
    return _targets(tuple(sys.path))[group]


@functools.cache
def _targets(path: tuple[str, ...]) -> dict[str, dict[str, str]]:
    """Both groups, from the state directory's copy when the metadata on sys.path is as it
    was when the copy was written (``_path_key``), else from the metadata, copied again."""
    key = _path_key(path)
    cache = _cache_file()
    if cache is not None:
        try:
            kept = json.loads(cache.read_text(encoding="utf-8"))
            if kept.get("format") == _CACHE_FORMAT and kept.get("path") == key:
                return {group: dict(kept["groups"][group]) for group in (GROUP, OPTIONS_GROUP)}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass  # no copy yet, or one that cannot be read: the metadata decides
    found = {
        group: {name: ep.value for name, ep in by_name.items()}
        for group, by_name in _installed(path).items()
    }
    if cache is not None:
        _write_cache(cache, {"format": _CACHE_FORMAT, "path": key, "groups": found})
    return found


@functools.cache
def _installed(_path: tuple[str, ...]) -> dict[str, dict[str, EntryPoint]]:
    """Both groups from one pass over the installed distributions' metadata (what
    `prewarm --version` and `providers` show comes from the distributions), again only when
    sys.path changes."""
    from importlib.metadata import entry_points

    found: dict[str, dict[str, EntryPoint]] = {GROUP: {}, OPTIONS_GROUP: {}}
    installed = entry_points()
    for group, by_name in found.items():
        for ep in installed.select(group=group):
            by_name.setdefault(ep.name, ep)
    return found


_METADATA_DIRS = (".dist-info", ".egg-info", "EGG-INFO")


def _path_key(path: tuple[str, ...]) -> list[list[Any]]:
    """What decides the entry points found on ``path``. For a directory, its distributions'
    metadata directories and the identity of each one's entry_points.txt (an installation,
    a removal, a reinstall or an edit in place changes it; other files in the directory do
    not); for a file on the path (a zip), the file's own identity; None when absent."""
    key: list[list[Any]] = []
    for entry in path:
        try:
            with os.scandir(entry or ".") as children:
                found: Any = sorted(
                    [child.name, _identity(os.path.join(child.path, "entry_points.txt"))]
                    for child in children
                    if child.name.endswith(_METADATA_DIRS)
                )
        except NotADirectoryError:  # a zip: its distributions change with the file
            found = _identity(entry)
        except OSError:  # absent, or unreadable
            found = None
        key.append([entry, found])
    return key


def _identity(path: str) -> list[int] | None:
    """A file's modification and change times, inode and size (None: absent). The change
    time and inode are the operating system's: an installer that keeps an archive's
    modification times still changes them."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_size]


def _cache_file() -> Path | None:
    """plugins.json in the state directory, when that directory exists (it is not created
    for this: `prewarm submit --help` on a new machine writes nothing)."""
    from prewarm_cli import paths

    try:
        directory = paths.state_dir(create=False)
    except Exception:  # an unusable state directory is reported by the commands that need it
        return None
    return directory / CACHE_FILENAME if directory.is_dir() else None


def _write_cache(cache: Path, content: dict[str, Any]) -> None:
    """Replaces the copy at once, private to the user; a directory that cannot be written
    only means the metadata is read again next time."""
    from prewarm_cli import paths

    with contextlib.suppress(OSError):
        paths.replace_private(cache, json.dumps(content).encode("utf-8"))


def _load_target(target: str) -> Any:
    """The object an entry point's "module:attr.attr [extras]" names, as EntryPoint.load
    finds it."""
    module, _, attrs = target.partition("[")[0].partition(":")
    found: Any = importlib.import_module(module.strip())
    for attr in filter(None, attrs.strip().split(".")):
        found = getattr(found, attr)
    return found


def _distributions() -> dict[str, EntryPoint]:
    """The provider group's entry points with their distributions (for versions)."""
    return _installed(tuple(sys.path))[GROUP]


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
    ep = _distributions().get(name)
    if ep is None:
        raise _unknown(name)
    return _info(ep)


_loaded: dict[str, type[Provider]] = {}


def load(name: str) -> type[Provider]:
    """The provider class of a type name; a clear config error when it is unknown or broken."""
    if name in _loaded:
        return _loaded[name]
    target = _entry_points().get(name)
    if target is None:
        raise _unknown(name)
    try:
        cls: Any = _load_target(target)
    except Exception as exc:  # a broken plugin must not crash prewarm
        raise ConfigError(
            f"provider plugin {name!r} ({target}) failed to load: {exc}",
            hint="reinstall or upgrade the plugin's package",
        ) from exc
    from prewarm_cli.plugin import Provider

    if not (isinstance(cls, type) and issubclass(cls, Provider)):
        raise ConfigError(f"provider plugin {name!r} ({target}) is not a prewarm Provider class")
    if cls.name != name:
        raise ConfigError(
            f"provider plugin {name!r} ({target}) declares the name {cls.name!r}; "
            "the entry point and the class must agree"
        )
    _loaded[name] = cls
    return cls


def load_for(config: Config, alias: str) -> type[Provider]:
    """The provider class of an alias. An unknown or broken type of a table is a config error
    naming its key (`providers.ALIAS.type`); a table without `type` is told to add one (its
    alias was taken for a type)."""
    if alias not in config.providers and alias not in names():
        # A job's alias (status, report, --resume) that this config does not have.
        raise ConfigError(
            f"no provider {alias!r} here: no [providers.{alias}] table, and no installed"
            f" provider type of that name (configured: {', '.join(config.aliases()) or 'none'};"
            f" types: {', '.join(names()) or 'none'})",
            hint=f"a job sent through {alias!r} is read with the config it was sent with:"
            " --config FILE (or PREWARM_CONFIG)",
        )
    try:
        return load(config.provider_type(alias))
    except ConfigError as exc:
        if alias not in config.providers:
            raise
        hint = exc.hint
        if "type" not in config.providers[alias]:
            hint = f'add type = "TYPE" to [providers.{alias}]'
        raise ConfigError(f"providers.{alias}.type: {exc.message}", hint=hint) from None


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
        target = declared.get(name)
        if target is None:
            try:
                found[name] = tuple(load(name).submit_options)
            except ConfigError as exc:
                warn(str(exc))
            continue
        try:
            options = tuple(_load_target(target))
        except Exception as exc:  # a broken plugin must not crash prewarm
            warn(f"provider plugin {name!r}: its submit options ({target}) failed to load: {exc}")
            continue
        if not all(isinstance(o, SubmitOption) for o in options):
            warn(f"provider plugin {name!r}: {target} is not a tuple of SubmitOption")
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
    from importlib.metadata import PackageNotFoundError, version

    ep = _distributions().get(name)
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
    import difflib  # for the error only

    known = names()
    installed = ", ".join(known) or "none"
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return ConfigError(
        f"unknown provider type {name!r} (installed: {installed})",
        hint=f"did you mean {close[0]!r}?"
        if close
        else "install the plugin package that provides it (docs/plugins.md)",
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
    installed = sorted(_distributions())  # the metadata is read for the versions anyway
    width = max((len(n) for n in installed), default=0)
    for name in installed:
        info = plugin_info(name)
        source = "built-in" if info.source == "built-in" else f"{info.source} {info.version}"
        sdks = ", ".join(f"{dist} {ver or '(not installed)'}" for dist, ver in plugin_sdks(name))
        lines.append(f"  {name:<{width}}  {source}" + (f"; {sdks}" if sdks else ""))
    if not installed:
        lines.append("  none")
    return "\n".join(lines)
