"""One warm request: GET through an edge, the body read to its end undecoded, and its verdict."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

from prewarm_cli.plugin import classify_cache, describe_http_error

if TYPE_CHECKING:
    import httpx

# Outcomes of one request.
OK = "ok"  # 2xx or 3xx, whole body: this (PoP, variant) is warm
REJECTED = "rejected"  # 4xx other than 408 and 429: final, never sent again
TRANSIENT = "transient"  # 5xx, 408, 429, timeout, connection error, short body: retried
NOT_FOUND = "not_found"  # the PoP has no address: nothing was sent

HIT_VALUES = frozenset({"hit", "revalidated"})  # the object was already in that cache


@dataclass(frozen=True)
class Answer:
    """What one (URL, target, variant) request came to."""

    outcome: str
    status_code: int | None = None
    cache: str | None = None  # hit, miss, revalidated, bypass or unknown (verify's rules)
    bytes: int = 0  # body bytes as sent on the wire
    reason: str | None = None
    retry_after: float | None = None
    pop: str | None = None  # the PoP the edge names in its headers, where it does

    @property
    def answered(self) -> bool:
        """A final answer: never sent again in this job."""
        return self.outcome in (OK, REJECTED)


def warm(client: httpx.Client, url: str, headers: Mapping[str, str], timeout: float) -> Answer:
    """GETs ``url`` once, reading the whole body as sent; never raises for HTTP trouble."""
    import httpx

    try:
        with client.stream("GET", url, headers=dict(headers)) as response:
            size = 0
            try:
                for chunk in response.iter_raw():  # undecoded: counted as the edge sent it
                    size += len(chunk)
            except httpx.HTTPError as exc:
                expected = _content_length(response.headers.get("content-length"))
                why = (
                    "connection closed"
                    if isinstance(exc, httpx.RemoteProtocolError)
                    else describe_http_error(exc, timeout)
                )
                return Answer(
                    TRANSIENT,
                    response.status_code,
                    bytes=size,
                    reason=f"short body: {size}"
                    + (f" of {expected}" if expected is not None else "")
                    + f" bytes ({why})",
                )
            code = response.status_code
            expected = _content_length(response.headers.get("content-length"))
            if expected is not None and size < expected:
                return Answer(
                    TRANSIENT,
                    code,
                    bytes=size,
                    reason=f"short body: {size} of {expected} bytes",
                )
            verdict = classify_cache(response.headers, code)
            if code in (408, 429) or code >= 500:
                return Answer(
                    TRANSIENT,
                    code,
                    verdict.cache,
                    size,
                    f"HTTP {code}",
                    retry_after=parse_retry_after(response.headers.get("retry-after")),
                    pop=verdict.pop,
                )
            if code >= 400:
                return Answer(REJECTED, code, verdict.cache, size, f"HTTP {code}", pop=verdict.pop)
            return Answer(OK, code, verdict.cache, size, pop=verdict.pop)
    except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError) as exc:
        return Answer(TRANSIENT, reason=describe_http_error(exc, timeout))


def _content_length(value: str | None) -> int | None:
    if value is None or not value.strip().isdigit():
        return None
    return int(value.strip())


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds from now: delta-seconds or an HTTP date; None when unusable."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
