"""One warm request: GET through an edge, the body read to its end undecoded, and its verdict.

The transfers are libcurl's (pycurl): a handle per worker thread and edge keeps its
connection open between requests, and the body is counted in C, so a warm costs little more
than `curl --parallel` would. Pinning is curl's own ``--resolve`` (CURLOPT_RESOLVE): connect to
the edge's IP, keep the URL's host for Host and SNI.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

from prewarm_cli.plugin import cache_verdict

# Outcomes of one request.
OK = "ok"  # 2xx or 3xx, whole body: this (PoP, variant) is warm
REJECTED = "rejected"  # 4xx other than 408 and 429: final, never sent again
TRANSIENT = "transient"  # 5xx, 408, 429, timeout, connection error, short body: retried
NOT_FOUND = "not_found"  # the PoP has no address: nothing was sent

HIT_VALUES = frozenset({"hit", "revalidated"})  # the object was already in that cache

# libcurl's error codes that mean the body was cut short once the answer had begun.
_CUT_SHORT = {18: "connection closed", 28: "stalled", 56: "connection reset"}


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


class Edge:
    """A libcurl handle for one worker thread and one edge: its connection is kept open.

    ``pin`` is curl's ``--resolve`` entry (HOST:PORT:IP), or None to resolve as usual.
    Redirects are not followed, no Accept-Encoding is added (the caller sends the exact
    value) and nothing is decoded; TLS is always verified.
    """

    def __init__(
        self,
        pin: str | None,
        *,
        timeout: float,
        user_agent: str,
        ca_bundle: str | None = None,
    ) -> None:
        import pycurl

        self.timeout = timeout
        self._header_lines: list[bytes] = []
        self._sent_lines: Sequence[str] | None = None
        handle = pycurl.Curl()
        # Both callbacks are C functions: no Python runs per chunk or header line.
        handle.setopt(pycurl.WRITEFUNCTION, len)  # the body's bytes, counted by libcurl
        handle.setopt(pycurl.HEADERFUNCTION, self._header_lines.append)
        handle.setopt(pycurl.FOLLOWLOCATION, 0)
        handle.setopt(pycurl.NOSIGNAL, 1)
        handle.setopt(pycurl.CONNECTTIMEOUT_MS, max(1, int(timeout * 1000)))
        # Stalled for `timeout` seconds (no byte at all): given up, as a read timeout would.
        handle.setopt(pycurl.LOW_SPEED_LIMIT, 1)
        handle.setopt(pycurl.LOW_SPEED_TIME, max(1, math.ceil(timeout)))
        handle.setopt(pycurl.USERAGENT, user_agent)
        handle.setopt(pycurl.SSL_VERIFYPEER, 1)
        handle.setopt(pycurl.SSL_VERIFYHOST, 2)
        handle.setopt(pycurl.CAINFO, ca_bundle or os.environ.get("SSL_CERT_FILE") or _certifi())
        if not ca_bundle and os.environ.get("SSL_CERT_DIR"):
            handle.setopt(pycurl.CAPATH, os.environ["SSL_CERT_DIR"])
        if pin:
            handle.setopt(pycurl.RESOLVE, [pin])
            handle.setopt(pycurl.PROXY, "")  # a proxy would choose the edge: never when pinned
        self._handle = handle

    def _headers(self) -> dict[str, str]:
        """The last response's headers (after any 1xx), names in lower case; repeated ones
        joined with ", " as one value."""
        headers: dict[str, str] = {}
        for line in self._header_lines:
            if line.startswith(b"HTTP/"):
                headers = {}  # a new response: only the last one counts
                continue
            name, colon, value = line.decode("latin-1").partition(":")
            if colon:
                key, text = name.strip().lower(), value.strip()
                seen = headers.get(key)
                headers[key] = text if seen is None else f"{seen}, {text}"
        return headers

    def warm(self, url: str, header_lines: Sequence[str]) -> Answer:
        """GETs ``url`` once with these request headers ("Name: value"), reading the whole
        body as sent; never raises for HTTP trouble."""
        import pycurl

        handle = self._handle
        handle.setopt(pycurl.URL, url)
        if header_lines is not self._sent_lines:  # one list per variant: set when it changes
            handle.setopt(pycurl.HTTPHEADER, list(header_lines))
            self._sent_lines = header_lines
        self._header_lines.clear()
        try:
            handle.perform()
        except pycurl.error as exc:
            return self._failed(exc)
        code = int(handle.getinfo(pycurl.RESPONSE_CODE))
        size = int(handle.getinfo(pycurl.SIZE_DOWNLOAD_T))
        received = self._headers()
        cache, pop = cache_verdict(received)
        if code in (408, 429) or code >= 500:
            return Answer(
                TRANSIENT,
                code,
                cache,
                size,
                f"HTTP {code}",
                retry_after=parse_retry_after(received.get("retry-after")),
                pop=pop,
            )
        if code >= 400:
            return Answer(REJECTED, code, cache, size, f"HTTP {code}", pop=pop)
        return Answer(OK, code, cache, size, pop=pop)

    def _failed(self, exc: Any) -> Answer:
        import pycurl

        errno, message = exc.args[0], str(exc.args[1])
        code = int(self._handle.getinfo(pycurl.RESPONSE_CODE)) or None
        size = int(self._handle.getinfo(pycurl.SIZE_DOWNLOAD_T))
        if code is not None and errno in _CUT_SHORT:
            expected = _content_length(self._headers().get("content-length"))
            of = f" of {expected}" if expected is not None else ""
            why = _CUT_SHORT[errno]
            if errno == 28:
                why = f"no data for {self.timeout:g}s"
            reason = f"short body: {size}{of} bytes ({why})"
            return Answer(TRANSIENT, code, bytes=size, reason=reason)
        if errno == 28:
            return Answer(TRANSIENT, reason=f"timed out after {self.timeout:g}s ({message})")
        return Answer(TRANSIENT, reason=message or f"libcurl error {errno}")

    def close(self) -> None:
        self._handle.close()


def _certifi() -> str:
    import certifi

    return str(certifi.where())


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
