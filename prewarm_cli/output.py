"""Rendering: data to stdout as table, json or ndjson; messages and progress to stderr.

rich is imported only when a table or a progress bar is really drawn, so that
JSON output in scripts and ``--help`` stay fast.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TextIO

FORMATS = ("table", "json", "ndjson")


def counted(n: int, singular: str, plural: str | None = None) -> str:
    """`1 URL`, `2 URLs`: a count with its noun in the right number."""
    return f"{n} {singular if n == 1 else (plural or singular + 's')}"


def _is_tty(stream: TextIO) -> bool:
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
        self.fmt = fmt or ("table" if _is_tty(self.stdout) else "json")
        if color is None:
            color = not os.environ.get("NO_COLOR") and _is_tty(self.stderr)
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
        if self.color:
            from rich.markup import escape

            self._console().print(escape(text), style=style)
        else:
            print(text, file=self.stderr, flush=True)

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
        records: Callable[[Any], Sequence[Any]] | None = None,
    ) -> None:
        """Write ``data``: as JSON, as ndjson (``records`` picks the lines), or as a table."""
        if self.fmt == "json":
            self.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")
        elif self.fmt == "ndjson":
            lines = records(data) if records else (data if isinstance(data, list) else [data])
            for item in lines:
                self.stdout.write(json.dumps(item, ensure_ascii=False, default=str) + "\n")
        elif table is not None:
            table(data)
        else:
            self.kv(data)
        self.stdout.flush()

    def _out_console(self) -> Any:
        from rich.console import Console

        no_color = not (os.environ.get("NO_COLOR") is None and self.color)
        # Piped tables (an explicit -o table) are not cut to 80 columns.
        width = None if _is_tty(self.stdout) or os.environ.get("COLUMNS") else 160
        return Console(
            file=self.stdout, no_color=no_color, highlight=False, soft_wrap=False, width=width
        )

    def table(
        self,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        *,
        title: str | None = None,
        caption: str | None = None,
    ) -> None:
        from rich import box
        from rich.markup import escape
        from rich.table import Table

        tbl = Table(title=title, caption=caption, box=box.SIMPLE_HEAD, title_justify="left")
        for col in columns:
            tbl.add_column(col, overflow="fold")
        for row in rows:
            # Plain values are escaped (a "[" in a URL is not markup); rich Text keeps its style.
            tbl.add_row(
                *("" if v is None else v if hasattr(v, "stylize") else escape(str(v)) for v in row)
            )
        self._out_console().print(tbl)

    def records(
        self,
        records: Sequence[Mapping[str, Any]],
        columns: Sequence[tuple[str, str | Callable[[Mapping[str, Any]], Any]]],
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
        self.table(("key", "value"), rows, title=title)

    def line(self, text: str) -> None:
        """A plain line of data on stdout (table mode summaries)."""
        self.stdout.write(text + "\n")

    # --- progress (stderr, TTY only) ---

    @contextmanager
    def progress(self, total: int | None, description: str) -> Iterator[Progress]:
        if self.quiet or not _is_tty(self.stderr):
            yield Progress(None, None)
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
            console=self._console(),
            transient=True,
        )
        with bar:
            task = bar.add_task(description, total=total)
            yield Progress(bar, task)


class Progress:
    """A progress handle; does nothing when there is no terminal to draw on."""

    def __init__(self, bar: Any, task: Any) -> None:
        self._bar = bar
        self._task = task

    def advance(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, n)

    def update(self, *, completed: int | None = None, total: int | None = None, **kw: Any) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=completed, total=total, **kw)
