"""``--from-dir``: the files of a build directory, as sorted relative paths, streamed.

The walk holds one directory's entries at a time (they must be sorted), never the tree: a
million-file build costs the memory of its largest directory. Symlinked files are followed;
symlinked directories are not (no loops, nothing outside the tree).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Sequence
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
    excluded = _matcher(excludes)
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
        if any(excluded(name) for name in names):
            continue
        if entry.is_dir:
            stack.append((rel + "/", _entries(os.path.join(root, rel), default_excludes)))
        else:
            yield rel


def _matcher(excludes: Sequence[str]) -> Callable[[str], bool]:
    """Whether a relative path matches one of the globs, read as .gitignore and shells with
    globstar read them: a leading '/' or './' anchors a glob at the directory's top, where
    its '*' stays within one directory (`/*.html` is the top level's pages); `**/` also
    matches no directory at all (`**/*.html` matches `index.html`). Other globs match the
    whole relative path, '*' across directories (`*.png` is every PNG)."""
    patterns: list[str] = []
    anchored: list[str] = []
    for pattern in excludes:
        if pattern.startswith(("/", "./")):
            while pattern.startswith(("/", "./")):
                pattern = pattern[2:] if pattern.startswith("./") else pattern[1:]
            if pattern:
                anchored.append(_within_directories(pattern))
            continue
        patterns.append(pattern)
        while pattern.startswith("**/"):
            pattern = pattern[3:]
            patterns.append(pattern)
    top = re.compile("|".join(anchored)) if anchored else None

    def excluded(path: str) -> bool:
        if top is not None and top.fullmatch(path):
            return True
        return any(fnmatchcase(path, pattern) for pattern in patterns if pattern)

    return excluded


def _within_directories(glob: str) -> str:
    """A glob as a regular expression whose '*' and '?' do not cross a '/' ('**' does)."""
    out = []
    i = 0
    while i < len(glob):
        if glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif glob[i] == "*":
            out.append("[^/]*")
            i += 1
        elif glob[i] == "?":
            out.append("[^/]")
            i += 1
        elif glob[i] == "[" and "]" in glob[i + 2 :]:
            end = glob.index("]", i + 2)
            body = glob[i + 1 : end]
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
            i = end + 1
        else:
            out.append(re.escape(glob[i]))
            i += 1
    return "(?:" + "".join(out) + ")"


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
