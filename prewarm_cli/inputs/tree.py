"""``--from-dir``: the files of a build directory, as sorted relative paths, streamed.

The walk holds one directory's entries at a time (they must be sorted), never the tree: a
million-file build costs the memory of its largest directory. Symlinked files are followed;
symlinked directories are not (no loops, nothing outside the tree).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from fnmatch import fnmatchcase
from typing import NamedTuple

from prewarm_cli.errors import InputError

# Precompressed siblings (app.js.gz beside app.js): the CDN serves them through
# Accept-Encoding on the plain URL, so their own URLs are not worth warming.
PRECOMPRESSED_SUFFIXES = (".gz", ".br", ".zst")
SOURCE_MAP_SUFFIX = ".map"


class _Entry(NamedTuple):
    key: str  # sort key: a directory sorts as "name/", so the walk is in relative-path order
    name: str
    is_dir: bool


def check_directory(root: str) -> None:
    """InputError unless root is a directory that can be listed."""
    if not os.path.exists(root):
        raise InputError(f"--from-dir {root}: no such directory")
    if not os.path.isdir(root):
        raise InputError(f"--from-dir {root}: not a directory")
    if not os.access(root, os.R_OK | os.X_OK):
        raise InputError(f"--from-dir {root}: permission denied")


def iter_tree(
    root: str, excludes: Sequence[str] = (), default_excludes: bool = True
) -> Iterator[str]:
    """Every file under root as a '/'-separated relative path, in sorted order.

    Default excludes (unless ``default_excludes`` is False): any path component starting
    with '.', ``*.map``, and ``*.gz``/``*.br``/``*.zst`` when the uncompressed sibling is
    there. ``excludes`` are globs matched against the relative path (a matching directory
    is not entered).
    """
    check_directory(root)
    excludes = _as_relative(excludes)
    stack: list[tuple[str, Iterator[_Entry]]] = [("", _entries(root, default_excludes))]
    while stack:
        prefix, entries = stack[-1]
        entry = next(entries, None)
        if entry is None:
            stack.pop()
            continue
        rel = prefix + entry.name
        # A directory matches as "drafts" and as "drafts/", as users write it both ways.
        names = (rel, rel + "/") if entry.is_dir else (rel,)
        if any(fnmatchcase(name, pattern) for name in names for pattern in excludes):
            continue
        if entry.is_dir:
            stack.append((rel + "/", _entries(os.path.join(root, rel), default_excludes)))
        else:
            yield rel


def _as_relative(excludes: Sequence[str]) -> tuple[str, ...]:
    """Globs as the relative paths they are matched against take them: a leading '/' or
    './' names the directory's top (`/about/*`), and `**/` also matches no directory at all
    (`**/*.html` matches `index.html`), as .gitignore and shells with globstar read them."""
    found: list[str] = []
    for pattern in excludes:
        while pattern.startswith(("/", "./")):
            pattern = pattern[2:] if pattern.startswith("./") else pattern[1:]
        found.append(pattern)
        while pattern.startswith("**/"):
            pattern = pattern[3:]
            found.append(pattern)
    return tuple(dict.fromkeys(p for p in found if p))


def _entries(directory: str, default_excludes: bool) -> Iterator[_Entry]:
    try:
        with os.scandir(directory) as scan:
            listed = []
            for item in scan:
                if item.is_dir(follow_symlinks=False):
                    listed.append(_Entry(item.name + "/", item.name, True))
                elif item.is_file():  # follows a symlinked file; a broken link is no file
                    listed.append(_Entry(item.name, item.name, False))
    except OSError as exc:
        raise InputError(f"cannot list {directory}: {exc.strerror or exc}") from exc
    if default_excludes:
        files = {e.name for e in listed if not e.is_dir}
        listed = [e for e in listed if not _excluded_by_default(e, files)]
    listed.sort()
    return iter(listed)


def _excluded_by_default(entry: _Entry, files: set[str]) -> bool:
    name = entry.name
    if name.startswith("."):
        return True
    if entry.is_dir:
        return False
    if name.endswith(SOURCE_MAP_SUFFIX):
        return True
    base, dot, suffix = name.rpartition(".")
    return bool(dot) and f".{suffix}" in PRECOMPRESSED_SUFFIXES and base in files


def readable_name(name: str) -> str | None:
    """A file name that is not UTF-8 (its undecodable bytes are lone surrogates in ``str``)
    with those bytes written as ``\\xff``, or None for a UTF-8 name: no URL names the file,
    and the name must be shown in valid text (the JSON, the terminal)."""
    if name.isascii():
        return None
    encoded = os.fsencode(name)
    try:
        encoded.decode("utf-8")
    except UnicodeDecodeError:
        return encoded.decode("utf-8", "backslashreplace")
    return None
