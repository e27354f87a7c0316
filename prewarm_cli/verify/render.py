"""Rendering verify results: the table and the one-line summary."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from prewarm_cli.verify.classify import (
    BYPASS,
    CACHE_VALUES,
    HIT,
    MISS,
    REVALIDATED,
    UNKNOWN,
    is_warm,
)

if TYPE_CHECKING:
    from prewarm_cli.output import Output

_CACHE_STYLE = {
    HIT: "green",
    REVALIDATED: "green",
    MISS: "red",
    BYPASS: "yellow",
    UNKNOWN: "magenta",
}


def records(result: Mapping[str, Any]) -> Iterable[dict[str, Any]]:
    """ndjson lines: one per URL (per encoding), as they come."""
    return result["results"]  # type: ignore[no-any-return]


def summary_line(summary: Mapping[str, Any]) -> str:
    """One line: counts, errors, hit ratio (and mismatches with vendor claims)."""
    if not summary["total"]:  # `--verify` of a job with no URL known here to have succeeded
        return "nothing checked: no URL of the job is known here to have succeeded"
    parts = [f"{summary['total']} checked"]
    parts += [f"{summary[v]} {v}" for v in CACHE_VALUES if summary.get(v)]
    if summary.get("non_2xx"):
        parts.append(f"{summary['non_2xx']} non-2xx")
    if summary.get("errors"):
        parts.append(f"{summary['errors']} failed")
    if "mismatches" in summary:
        parts.append(f"{summary['mismatches']} not warm although the vendor says succeeded")
    parts.append(f"hit ratio {summary['hit_ratio'] * 100:.1f}%")
    return " · ".join(parts)


def render_table(out: Output, result: Mapping[str, Any]) -> None:
    """The results as a table on stdout, then the summary line."""
    from rich.text import Text

    rows_in = result["results"]
    if not rows_in:  # no header over nothing
        out.line(summary_line(result["summary"]))
        return
    show_enc = len({r["accept_encoding"] for r in rows_in}) > 1
    show_bytes = any(r["bytes"] is not None for r in rows_in)
    show_vendor = any("vendor" in r for r in rows_in)
    # The edge a warm request was pinned to: what tells two PoPs' rows of one URL apart.
    show_target = any(r.get("target") for r in rows_in)
    from prewarm_cli.output import Column

    columns = [Column("url", "url")]
    columns += [Column("target", "id")] if show_target else []
    # With the target, what tells a URL's rows apart: kept however narrow the terminal.
    columns += [Column("accept-encoding", "id")] if show_enc else []
    columns += [Column("status", "id"), Column("cache", "id"), Column("pop", "id", drop=2)]
    columns += [Column("age", "id", drop=4)]
    columns += [Column("bytes", "id", drop=5)] if show_bytes else []
    columns += [Column("ms", "id", drop=6)]
    columns += [Column("vendor", "id", drop=3)] if show_vendor else []  # also in the summary
    columns += [Column("note", drop=1)]
    rows = []
    for r in rows_in:
        code = r["status_code"]
        status: Any = "-" if code is None else str(code)
        if code is not None and not 200 <= code < 300:
            status = Text(str(code), style="bold yellow")
        cache = Text(r["cache"], style=_CACHE_STYLE.get(r["cache"], "default"))
        note = r["error"] or ("" if is_warm(r) else r.get("detail") or "")
        row: list[Any] = [r["url"]]
        row += [r.get("target") or ""] if show_target else []
        row += [r["accept_encoding"] or ""] if show_enc else []
        row += [status, cache, r["pop"] or "", r["age"]]
        row += [r["bytes"]] if show_bytes else []
        row += [r["elapsed_ms"]]
        if show_vendor:
            vendor = r.get("vendor") or ""
            row += [Text(vendor, style="bold red") if r.get("mismatch") else vendor]
        row += [note]
        rows.append(row)
    out.table(columns, rows)
    out.line(summary_line(result["summary"]))
