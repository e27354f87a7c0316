"""Rendering: data to stdout as table, json or ndjson; messages and progress to stderr.

rich is imported only when a table or a progress bar is really drawn, so that
JSON output in scripts and ``--help`` stay fast.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal, NoReturn, TextIO

FORMATS = ("table", "json", "ndjson")


_SAYING = threading.Lock()  # one message line on stderr at a time, whichever thread says it


def counted(n: int, singular: str, plural: str | None = None) -> str:
    """`1 URL`, `2 URLs`, `20,000 URLs`: a count with its noun in the right number."""
    return f"{n:,} {singular if n == 1 else (plural or singular + 's')}"


@dataclass(frozen=True)
class Column:
    """How a table column behaves when the terminal is narrow.

    ``kind``: ``text`` wraps between words; ``id`` (job ids, keys, states, numbers) never
    wraps; ``url`` stays on one line and loses its middle (the full value is in ``-o json``).
    ``drop``: 0 is always shown; when even the narrowest layout is wider than the terminal,
    the column with the highest ``drop`` goes first.
    """

    header: str
    kind: Literal["text", "id", "url"] = "text"
    drop: int = 0


ColumnSpec = str | Column

_MIN_TEXT_WIDTH = 16  # a text column is wrapped, but not into a ribbon narrower than this
_MIN_URL_WIDTH = 24  # enough to keep a URL's host and its last path segment apart


def ellipsize_middle(text: str, width: int) -> str:
    """``https://cdn.example.com/…/app.js``: the start and the end of ``text`` in ``width``."""
    if len(text) <= width:
        return text
    if width <= 1:
        return "…"[:width]
    tail = (width - 1) // 2
    return text[: width - 1 - tail] + "…" + (text[-tail:] if tail else "")


def _cell_text(value: Any) -> str:
    return "" if value is None else str(getattr(value, "plain", value))


def _as_column(spec: ColumnSpec, cells: Sequence[Any]) -> Column:
    if isinstance(spec, Column):
        return spec
    # A bare header: numbers never wrap, anything else wraps between words.
    numeric = bool(cells) and all(isinstance(v, int | float) or v is None for v in cells)
    return Column(spec, "id" if numeric else "text")


def _table_overhead(n_columns: int) -> int:
    # rich's SIMPLE_HEAD box: one space of padding each side of a cell, one rule between
    # columns and one at each edge: 3 per column plus 1.
    return 3 * n_columns + 1


def fit_columns(
    columns: Sequence[Column], rows: Sequence[Sequence[Any]], width: int
) -> list[tuple[int, int]]:
    """Which columns to show and how wide, so that the table fits in ``width``.

    Returns (column index, content width) pairs. A header is never split: no column is
    narrower than its header. Columns are dropped by ``drop`` until the narrowest layout fits;
    the room left goes to the url and text columns, the narrowest wants first.
    """
    natural = []
    floor = []
    for i, col in enumerate(columns):
        longest = max((len(_cell_text(r[i])) for r in rows), default=0)
        natural.append(max(len(col.header), longest, 1))
        if col.kind == "id":
            floor.append(natural[i])
        else:
            least = _MIN_URL_WIDTH if col.kind == "url" else _MIN_TEXT_WIDTH
            floor.append(max(len(col.header), min(natural[i], least)))
    shown = list(range(len(columns)))

    def room() -> int:
        return width - _table_overhead(len(shown))

    while sum(floor[i] for i in shown) > room():
        droppable = [i for i in shown if columns[i].drop > 0]
        if not droppable:
            break
        shown.remove(max(droppable, key=lambda i: (columns[i].drop, i)))
    widths = {i: floor[i] for i in shown}
    spare = room() - sum(widths.values())
    flexible = sorted(
        (i for i in shown if columns[i].kind != "id"), key=lambda i: natural[i] - floor[i]
    )
    for n, i in enumerate(flexible):
        if spare <= 0:
            break
        give = min(natural[i] - widths[i], spare // (len(flexible) - n))
        widths[i] += give
        spare -= give
    return [(i, widths[i]) for i in shown]


def write_json(stream: TextIO, value: Any, *, live: bool = False) -> None:
    """``value`` as ``json.dumps(value, indent=2)`` would write it, without holding it whole:
    an iterator is a list written item by item as it yields (``live``: each flushed as it
    comes), a callable is called for its value when its turn comes (a summary known only once
    the items before it are written); so in mappings at any depth, whose keys must be
    strings (not in lists).

    Cut short while it waits for an item (Ctrl-C, or one of prewarm's errors), a document
    that has begun is closed where it stands, still valid JSON, with the error under
    ``error`` at its top when it is a mapping (see `said_on_stdout`); a list is closed and the
    error follows as for any other. Anything else leaves it cut, as a failed write does.
    """
    try:
        _write_json(stream, value, 0, live)
    except _Cut as cut:
        raise cut.cause from None


class _Cut(Exception):
    """What ended a streamed document, once the levels written so far were closed."""

    def __init__(self, cause: BaseException) -> None:
        self.cause = cause


def _write_json(stream: TextIO, value: Any, level: int, live: bool) -> None:
    if _is_lazy_mapping(value):
        items: Iterator[Any] = iter(value.items())
        opening, closing = "{", "}"
    elif isinstance(value, Iterator):
        items, opening, closing = value, "[", "]"
    else:
        stream.write(_json_text(value, level))
        return
    inner = "\n" + "  " * (level + 1)
    first = True
    while True:
        try:  # what may wait, and be cut short: the next item, a value made when its turn comes
            item = next(items)
            if closing == "}":
                key, item = item
            if callable(item):
                item = item()
        except StopIteration:
            break
        except BaseException as exc:
            _close(stream, exc, level, opening + closing if first else closing)
        head = (opening if first else ",") + inner
        if closing == "}":
            head += _ENCODER.encode(key) + ": "
        # Only a mapping's values are looked into (a list's items are data: a result each).
        if isinstance(item, Iterator) or (closing == "}" and _is_lazy_mapping(item)):
            try:
                stream.write(head)
            except BaseException as exc:  # written (see below): the value it names is null
                with suppress(OSError):
                    stream.write("null")
                _close(stream, exc, level, closing)
            first = False
            try:
                _write_json(stream, item, level + 1, live)
            except _Cut as cut:
                _close(stream, cut.cause, level, closing)
        else:
            try:  # made whole before anything of it is written: cut here, it is left out
                text = head + _json_text(item, level + 1)
            except BaseException as exc:
                _close(stream, exc, level, opening + closing if first else closing)
            try:
                stream.write(text)
            except BaseException as exc:
                # A signal's handler runs once the write's call returned: the item is out.
                _close(stream, exc, level, closing)
            first = False
        if live:
            try:
                stream.flush()
            except BaseException as exc:
                _close(stream, exc, level, closing)
    stream.write(opening + closing if first else "\n" + "  " * level + closing)


def _close(stream: TextIO, cause: BaseException, level: int, closing: str) -> NoReturn:
    """Closes the level ``cause`` cut short (``closing``: its bracket, or both when it is
    empty) and raises _Cut; raises ``cause`` itself where nothing is to be closed: nothing
    written yet, or an error that is not prewarm's to say."""
    error = _error_object(cause)
    if error is None or (level == 0 and len(closing) == 2):
        raise cause
    with suppress(OSError):  # a reader gone takes no more
        if level == 0 and closing[-1] == "}":
            stream.write(",\n  " + '"error": ' + _json_text(error, 1))
            setattr(cause, _SAID, True)
            named = _INTERRUPTED.get()
            if isinstance(cause, KeyboardInterrupt) and named is not None:
                setattr(named, _SAID, True)  # what the exit will say of it: said already
        stream.write(closing if len(closing) == 2 else "\n" + "  " * level + closing)
        if level == 0:
            stream.write("\n")
            stream.flush()
    raise _Cut(cause)


_SAID = "prewarm_said_on_stdout"


def said_on_stdout(exc: BaseException) -> bool:
    """Whether a JSON document on stdout, cut short by ``exc``, already carries the error."""
    return bool(getattr(exc, _SAID, False))


def said_as(exc: BaseException, error: BaseException) -> BaseException:
    """``error``, raised in ``exc``'s place, marked said on stdout where ``exc`` was."""
    if said_on_stdout(exc):
        setattr(error, _SAID, True)
    return error


# What Ctrl-C stops where it cuts a streamed document short (see interrupted_as).
_INTERRUPTED: ContextVar[BaseException | None] = ContextVar("prewarm_interrupted", default=None)


@contextmanager
def interrupted_as(error: BaseException) -> Iterator[None]:
    """Within: a streamed document that Ctrl-C cuts short says ``error`` in it (the job it
    stopped, and the command that does it again), and ``error`` is then marked said: raise
    it in place of the KeyboardInterrupt, and the exit writes no second object."""
    token = _INTERRUPTED.set(error)
    try:
        yield
    finally:
        _INTERRUPTED.reset(token)


def _error_object(exc: BaseException) -> dict[str, Any] | None:
    """The ``error`` object of the JSON error output, for a run's own errors and Ctrl-C."""
    from prewarm_cli.errors import PrewarmError, UserInterrupt

    if isinstance(exc, KeyboardInterrupt):
        exc = _INTERRUPTED.get() or UserInterrupt("interrupted")
    if isinstance(exc, PrewarmError):
        error: dict[str, Any] = exc.to_dict()["error"]
        return error
    return None


_ENCODER = json.JSONEncoder(indent=2, ensure_ascii=False, default=str)
_ONE_LINE = json.JSONEncoder(ensure_ascii=False, default=str)  # ndjson


def _json_text(value: Any, level: int) -> str:
    """``value`` as JSON with ``indent=2``, its lines after the first indented to ``level``."""
    text = _ENCODER.encode(value)
    return text.replace("\n", "\n" + "  " * level) if level and "\n" in text else text


def _is_lazy(value: Any) -> bool:
    return callable(value) or isinstance(value, Iterator) or _is_lazy_mapping(value)


def _is_lazy_mapping(value: Any) -> bool:
    """A mapping with a lazy value, at any depth (status's `verify.results`)."""
    return isinstance(value, Mapping) and any(_is_lazy(v) for v in value.values())


def stdout_reader_gone() -> bool:
    """Whether stdout is a pipe or socket whose reader closed it (asked after a broken pipe);
    if so, stdout goes to /dev/null from now on, so that nothing written or flushed later (the
    exit's) fails again."""
    import select

    try:
        fd = sys.stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        # A pipe's writer sees POLLERR on Linux, POLLHUP elsewhere; a socket's, POLLHUP.
        gone = any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll(), or no descriptor (a buffer)
        return False
    if gone:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
    return gone


def is_tty(stream: TextIO) -> bool:
    """Whether ``stream`` is a terminal (False for a closed or replaced stream)."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Output:
    """Where everything the user sees goes."""

    def __init__(
        self,
        fmt: str | None = None,
        *,
        color: bool | None = None,
        quiet: bool = False,
        verbose: int = 0,
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
    ) -> None:
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        self.fmt = fmt or ("table" if is_tty(self.stdout) else "json")
        if color is None:
            color = not os.environ.get("NO_COLOR") and is_tty(self.stderr)
        self.color = color
        self.quiet = quiet
        self.verbose = verbose
        self._err_console: Any = None

    # --- messages (stderr) ---

    def _console(self) -> Any:
        if self._err_console is None:
            from rich.console import Console

            self._err_console = Console(
                file=self.stderr,
                no_color=not self.color,
                highlight=False,
                soft_wrap=True,
            )
        return self._err_console

    def _say(self, text: str, style: str | None = None) -> None:
        # One line at a time: workers' lines never run into each other (print wrote the
        # text and its newline apart: "…found at the vendoredgeone: 2 URLs…").
        with _SAYING:
            if self.color:
                from rich.markup import escape

                self._console().print(escape(text), style=style)
            else:
                self.stderr.write(text + "\n")
                self.stderr.flush()

    def info(self, text: str) -> None:
        if not self.quiet:
            self._say(text)

    def detail(self, text: str) -> None:
        if self.verbose and not self.quiet:
            self._say(text, "dim")

    def warn(self, text: str) -> None:
        if not self.quiet:
            self._say(f"warning: {text}", "yellow")

    def error(self, text: str, hint: str | None = None) -> None:
        self._say(f"error: {text}", "bold red")
        if hint:
            self._say(f"hint: {hint}", "cyan")

    # --- data (stdout) ---

    def emit(
        self,
        data: Any,
        *,
        table: Callable[[Any], None] | None = None,
        records: Callable[[Any], Iterable[Any]] | None = None,
        live: bool = False,
    ) -> None:
        """Write ``data``: as JSON, as ndjson (``records`` picks the lines), or as a table.

        An iterator in ``data`` (at its top, or a value of it) is written as it yields, so a
        long list streams (see `write_json`); ``live``: each item is flushed as it comes, for
        items that take time (answers), not for those read at once (a file's lines)."""
        if self.fmt == "json":
            write_json(self.stdout, data, live=live)
            self.stdout.write("\n")
        elif self.fmt == "ndjson":
            lines = (
                records(data) if records else data if isinstance(data, list | Iterator) else [data]
            )
            for item in lines:
                self.stdout.write(_ONE_LINE.encode(item) + "\n")
                if live:
                    self.stdout.flush()
        elif table is not None:
            table(data)
        elif isinstance(data, list):  # one key-value table per item, titled by its provider
            for item in data:
                self.kv(item, title=item.get("provider"))
        else:
            self.kv(data)
        self.stdout.flush()

    def _out_console(self) -> Any:
        from rich.console import Console

        no_color = not (os.environ.get("NO_COLOR") is None and self.color)
        # Piped tables (an explicit -o table) are not cut to 80 columns.
        width = None if is_tty(self.stdout) or os.environ.get("COLUMNS") else 160
        return Console(
            file=self.stdout, no_color=no_color, highlight=False, soft_wrap=False, width=width
        )

    def table(
        self,
        columns: Sequence[ColumnSpec],
        rows: Sequence[Sequence[Any]],
        *,
        title: str | None = None,
        caption: str | None = None,
    ) -> None:
        """A table that fits the terminal: see `Column` and `fit_columns`."""
        from rich import box
        from rich.markup import escape
        from rich.table import Table

        console = self._out_console()
        if not rows and title:  # its title says what there is: no header over nothing
            from rich.text import Text

            console.print(Text(title))
            return
        specs = [_as_column(c, [r[i] for r in rows]) for i, c in enumerate(columns)]
        fitted = fit_columns(specs, rows, console.width)
        # A title wider than the table would wrap inside it (and split a job id).
        title_width = min(len(title or ""), console.width)
        tbl = Table(
            title=title,
            caption=caption,
            box=box.SIMPLE_HEAD,
            title_justify="left",
            min_width=title_width,
        )
        for i, width in fitted:
            col = specs[i]
            tbl.add_column(
                col.header,
                width=width,
                no_wrap=col.kind != "text",
                overflow="fold" if col.kind == "text" else "ellipsis",
            )
        for row in rows:
            cells = []
            for i, width in fitted:
                v = row[i]
                if v is None:
                    cells.append("")
                elif hasattr(v, "stylize"):  # rich Text keeps its style
                    cells.append(v)
                else:
                    text = str(v)
                    if specs[i].kind == "url":
                        text = ellipsize_middle(text, width)
                    # Plain values are escaped (a "[" in a URL is not markup).
                    cells.append(escape(text))
            tbl.add_row(*cells)
        console.print(tbl)
        shown = {i for i, _ in fitted}
        hidden = [specs[i].header for i in range(len(specs)) if i not in shown]
        if hidden:
            self.info(f"hidden for width: {', '.join(hidden)} (-o json shows all)")

    def records(
        self,
        records: Sequence[Mapping[str, Any]],
        columns: Sequence[tuple[ColumnSpec, str | Callable[[Mapping[str, Any]], Any]]],
        *,
        title: str | None = None,
    ) -> None:
        """A table of records: each column is (header, key, or a function of the record)."""
        self.table(
            [header for header, _ in columns],
            [[pick(r) if callable(pick) else r[pick] for _, pick in columns] for r in records],
            title=title,
        )

    def kv(self, data: Mapping[str, Any], *, title: str | None = None) -> None:
        """A two-column table of keys and values (nested values as compact JSON)."""
        rows = []
        for key, value in data.items():
            if isinstance(value, dict | list):
                value = json.dumps(value, ensure_ascii=False, default=str)
            rows.append((key, value))
        self.table((Column("key", "id"), "value"), rows, title=title)

    def line(self, text: str) -> None:
        """A plain line of data on stdout (table mode summaries)."""
        self.stdout.write(text + "\n")

    def lines(self, texts: Iterable[str]) -> None:
        """Plain lines of data on stdout, written as they come."""
        self.stdout.writelines(text + "\n" for text in texts)

    # --- progress (stderr, TTY only) ---

    @contextmanager
    def progress(self, total: int | None, description: str) -> Iterator[Progress]:
        if self.quiet:
            yield Progress(None, None)
            return
        if not is_tty(self.stderr):
            # No bar in a CI log: what a bar would show comes as lines (`Progress.note`).
            yield Progress(None, None, note=self._say)
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as RichProgress

        bar = RichProgress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[note]}"),
            console=self._console(),
            transient=True,
        )
        with bar:
            task = bar.add_task(description, total=total, note="")
            yield Progress(bar, task)


class Progress:
    """A progress handle; without a terminal to draw on, only `note` shows anything."""

    def __init__(self, bar: Any, task: Any, *, note: Callable[[str], None] | None = None) -> None:
        self._bar = bar
        self._task = task
        self._note = note

    def note(self, text: str) -> None:
        """A line for a log that has no bar (stderr not a terminal); nothing under a bar."""
        if self._note is not None:
            self._note(text)

    def advance(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, n)

    def set_note(self, text: str) -> None:
        """A figure beside the bar (e.g. requests and bytes so far); nothing without a bar."""
        if self._bar is not None:
            self._bar.update(self._task, note=text)

    def update(self, *, completed: int | None = None, total: int | None = None, **kw: Any) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=completed, total=total, **kw)
