"""``--paths``: relative paths one per line, e.g. ``git diff --name-only`` output."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TextIO

from prewarm_cli.inputs.baseurl import RelPath
from prewarm_cli.inputs.lines import iter_lines
from prewarm_cli.inputs.validate import InvalidInput

_C_ESCAPES = {"a": 7, "b": 8, "t": 9, "n": 10, "v": 11, "f": 12, "r": 13, '"': 34, "\\": 92}


def unquote_git_path(text: str) -> str:
    """A path as git prints it: ``"caf\\303\\251.png"`` is ``café.png``; unquoted text as is.

    git quotes a path holding a byte outside printable ASCII (core.quotePath) or a '"', '\\',
    tab or newline: C escapes, and octal escapes for the bytes of UTF-8 characters.
    ValueError when the quoting is broken or the bytes are not UTF-8.
    """
    if not (len(text) >= 2 and text[0] == text[-1] == '"'):
        return text
    body = text[1:-1]
    out = bytearray()
    i = 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out += ch.encode("utf-8")
            i += 1
            continue
        escape = body[i + 1 : i + 2]
        if escape in _C_ESCAPES:
            out.append(_C_ESCAPES[escape])
            i += 2
        elif len(body[i + 1 : i + 4]) == 3 and all(c in "01234567" for c in body[i + 1 : i + 4]):
            out.append(int(body[i + 1 : i + 4], 8) & 0xFF)
            i += 4
        else:
            raise ValueError(f"a broken escape in git's quoted form at {body[i : i + 4]!r}")
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError("git's quoted path is not UTF-8") from exc


_URL_START = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


def iter_path_list(path: str, stdin: TextIO | None = None) -> Iterator[RelPath | InvalidInput]:
    """The paths of a file ('-' is stdin): '#' comments and blank lines ignored. A line that
    cannot be a relative path (a URL; a NUL, which no path holds; a tab, which git would have
    quoted) is invalid input, not a URL made of it."""
    for line in iter_lines(path, "path list", stdin):
        problem = _not_a_path(line.text)
        if problem is None:
            try:
                yield RelPath(unquote_git_path(line.text), line.source, line.number)
                continue
            except ValueError as exc:
                problem = str(exc)
        yield InvalidInput(line.text, line.source, line.number, problem)


def _not_a_path(text: str) -> str | None:
    if "\0" in text:
        return "holds a NUL character: a NUL-separated list (git diff -z)? give one path per line"
    if "\t" in text:
        # git quotes a path that holds a tab: a raw one separates columns.
        return (
            "holds a tab: git diff --name-status output? give the paths alone"
            " (git diff --name-only --diff-filter=d)"
        )
    if _URL_START.match(text):
        return "is a URL, not a path: give a URL list with -i, or paths with --paths"
    if _STAT_LINE.match(text):
        return f"git diff --stat output? {_PATHS_ALONE}"
    if _STATUS_LINE.match(text):
        return f"git status output? {_PATHS_ALONE}"
    return None


_PATHS_ALONE = "give the paths alone (git diff --name-only --diff-filter=d)"
# `git diff --stat`: "a.js | 3 ++-", "b.sh | 0" (its mode only), "c.png | Bin 0 -> 120 bytes",
# and "2 files changed, 3 insertions(+), 1 deletion(-)".
_STAT_LINE = re.compile(
    r".* \| +(?:\d+ [+-]+|0|Bin(?: \d+ -> \d+ bytes)?)$"
    r"|\d+ files? changed(?:, \d+ insertions?\(\+\))?(?:, \d+ deletions?\(-\))?$"
)
# `git status --short` / `--porcelain` as no path begins: "?? new.js", "M  staged.js",
# "AM added.js", "R  old.js -> new.js" (a lone " M a.js" reads "M a.js" once its line is
# trimmed: a path); porcelain v2's "1 .M N... 100644 ...".
_STATUS_LINE = re.compile(r"(?:\?\?|!!|[MTADRCU][MTADRCU ]) \S|[12u] [.MTADRCU]{2} [NS]")
