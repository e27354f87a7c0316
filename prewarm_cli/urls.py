"""Kept while callers move to prewarm_cli.inputs: the names they import from here."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TextIO

from prewarm_cli.inputs import (
    MAX_URL_LENGTH,
    InputSpec,
    InputUrl,
    InvalidInput,
    check_inputs,
    host_of,
    is_ascii,
    to_ascii,
    unique,
    validate_url,
)
from prewarm_cli.inputs import iter_inputs as _iter_spec

__all__ = [
    "MAX_URL_LENGTH",
    "InputUrl",
    "InvalidInput",
    "check_inputs",
    "host_of",
    "is_ascii",
    "iter_inputs",
    "to_ascii",
    "unique",
    "validate_url",
]


def iter_inputs(
    args: Sequence[str],
    files: Sequence[str],
    sitemaps: Sequence[str],
    *,
    stdin: TextIO | None = None,
    timeout: float = 30.0,
) -> Iterator[InputUrl | InvalidInput]:
    """Arguments, then files ('-' is stdin), then sitemaps, streamed; not validated."""
    spec = InputSpec(
        urls=tuple(args), files=tuple(files), sitemaps=tuple(sitemaps), sitemap_timeout=timeout
    )
    return _iter_spec(spec, stdin=stdin)
