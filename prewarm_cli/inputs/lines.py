"""Text sources: URL arguments, and files read line by line ('#' comments, '-' is stdin)."""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import NamedTuple, TextIO, TypeVar

from prewarm_cli.errors import InputError
from prewarm_cli.inputs.validate import ARGUMENT_SOURCE, STDIN_SOURCE, InputUrl

T = TypeVar("T")


class Line(NamedTuple):
    """One meaningful line of a file: stripped, neither blank nor a '#' comment."""

    text: str
    source: str  # the file's name, or <stdin>
    number: int


def iter_arguments(args: Sequence[str]) -> Iterator[InputUrl]:
    """URL arguments, numbered from 1."""
    for position, arg in enumerate(args, 1):
        # Blank arguments are kept so that an unset "$URL" is reported, not silently dropped.
        yield InputUrl(arg.strip(), ARGUMENT_SOURCE, position)


def iter_url_file(path: str, stdin: TextIO | None = None) -> Iterator[InputUrl]:
    """The URLs of a file ('-' is stdin), one per line, with their line numbers."""
    # Made from each line directly, with no Line in between: a URL file can be millions
    # of lines long.
    return _lines_as(InputUrl, path, "URL file", stdin)


def check_readable(path: str, what: str) -> None:
    """InputError unless path is a readable file (or FIFO); stat only, nothing is read.

    Local paths are checked before anything is read, so that a typo fails first; stat rather
    than open, since opening a FIFO such as <(cmd) twice would lose its data.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError as exc:
        raise InputError(f"{what} not found: {path}") from exc
    except OSError as exc:
        raise InputError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc
    if stat.S_ISDIR(mode):
        raise InputError(f"cannot read {what} {path}: it is a directory")
    if not os.access(path, os.R_OK):
        raise InputError(f"cannot read {what} {path}: permission denied")


def iter_lines(path: str, what: str, stdin: TextIO | None = None) -> Iterator[Line]:
    """The meaningful lines of a file, or of stdin for '-', decoded as UTF-8 line by line."""
    return _lines_as(Line, path, what, stdin)


def _lines_as(
    make: Callable[[str, str, int], T], path: str, what: str, stdin: TextIO | None
) -> Iterator[T]:
    """iter_lines, each line made into ``make(text, source, number)``."""
    if path == "-":
        if stdin is not None:
            yield from _meaningful(stdin, STDIN_SOURCE, make)
            return
        if sys.stdin is None:
            raise InputError(f"cannot read the {what} from stdin: there is none")
        buffer = getattr(sys.stdin, "buffer", None)
        if buffer is not None:
            yield from _meaningful_bytes(buffer, STDIN_SOURCE, make)
        else:
            yield from _meaningful(sys.stdin, STDIN_SOURCE, make)
        return
    try:
        # Binary, decoded line by line, so a bad byte is reported with its exact line.
        with open(path, "rb") as handle:
            yield from _meaningful_bytes(handle, path, make)
    except OSError as exc:
        raise InputError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc


def _meaningful_bytes(
    lines: Iterable[bytes], source: str, make: Callable[[str, str, int], T]
) -> Iterator[T]:
    """_meaningful for lines of bytes, each decoded as UTF-8 (one loop: this is per line)."""
    for number, raw in enumerate(lines, 1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(
                f"{source}:{number}: not UTF-8 text (byte 0x{raw[exc.start]:02x})",
                hint="save the file as UTF-8",
            ) from exc
        # Universal newlines are not assumed: strip() drops the '\r' of CRLF files too.
        text = (line.removeprefix("\ufeff") if number == 1 else line).strip()
        if text and not text.startswith("#"):
            yield make(text, source, number)


def _meaningful(
    lines: Iterable[str], source: str, make: Callable[[str, str, int], T]
) -> Iterator[T]:
    number = 0
    try:
        for number, raw in enumerate(lines, 1):
            # Universal newlines are not assumed: strip() drops the '\r' of CRLF files too.
            text = (raw.removeprefix("\ufeff") if number == 1 else raw).strip()
            if text and not text.startswith("#"):
                yield make(text, source, number)
    except UnicodeDecodeError as exc:
        raise InputError(f"{source}: not UTF-8 text after line {number}") from exc
