"""Warm requests: GET through an edge, each body read to its end undecoded, and its verdict.

The transfers are libcurl's (pycurl), driven by its multi interface from the one thread that
calls :meth:`Warmer.run`: up to ``concurrency`` requests in flight, connections kept open
between requests, bodies counted in C. Threads would each have to take Python's lock back
for every answer, and would spend more time waiting for it than sending. Pinning is curl's
``--connect-to`` (connect to the edge's IP, keep the URL's host for Host and SNI), which,
unlike ``--resolve``, keeps connections to two PoPs of one host apart in the shared pool.
"""

from __future__ import annotations

import math
import re
import select
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from typing import Any, NamedTuple

from prewarm_cli.plugin import (
    CURL_UNTRUSTED,
    cache_verdict,
    cache_verdict_headers,
    curl_close_multi,
    curl_common_settings,
    curl_lookup_unfinished,
    url_to_ascii,
)
from prewarm_direct.targets import Target

# Outcomes of one request.
OK = "ok"  # 2xx or 3xx, whole body: this (PoP, variant) is warm
REJECTED = "rejected"  # 4xx other than 408 and 429: final, never sent again
TRANSIENT = "transient"  # 5xx, 408, 429, timeout, connection error, short body: retried
NOT_FOUND = "not_found"  # the PoP has no address: nothing was sent
STOPPED = "stopped"  # cut short when the run's byte budget ran out: asked again later

HIT_VALUES = frozenset({"hit", "revalidated"})  # the object was already in that cache

# libcurl's error codes that mean the body was cut short once the answer had begun.
_CUT_SHORT = {18: "connection closed", 28: "stalled", 56: "connection reset"}
_WRITE_ERROR = 23  # our write function refused a chunk: the byte budget is spent
_MAX_VERDICTS = 4096  # verdicts kept per Warmer


class Answer(NamedTuple):
    """What one (URL, target, variant) request came to (a tuple: one is made per request)."""

    outcome: str
    status_code: int | None = None
    cache: str | None = None  # hit, miss, revalidated, bypass or unknown (verify's rules)
    bytes: int = 0  # body bytes as sent on the wire
    reason: str | None = None
    retry_after: float | None = None
    pop: str | None = None  # the PoP the edge names in its headers, where it does
    # A failure worth asking again in this run (not an edge whose certificate this machine
    # does not trust: asking again would fail the same way).
    retry: bool = True

    @property
    def answered(self) -> bool:
        """A final answer: never sent again in this job."""
        return self.outcome in (OK, REJECTED)


class Request(NamedTuple):
    """One warm request: the URL, where to connect, and its request header lines."""

    url: str
    target: Target  # the edge: its label, and where to connect (connect_to)
    variant: str  # its Accept-Encoding
    header_lines: tuple[str, ...]  # "Name: value", Accept-Encoding included


class _Slot:
    """A libcurl handle and what it was last set to (settings are kept between requests)."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self.received = bytearray()  # the answer's header lines, as they came
        self.request: Request | None = None
        self.connect_to: str | None = None
        self.header_lines: tuple[str, ...] = ()
        self.n_refused = 0  # body bytes received but refused: the run's byte budget is spent
        self.read_whole = False  # the run's first request: never cut short
        self.count_against_budget: Callable[[bytes], int] = len


class Warmer:
    """Sends warm requests, up to ``concurrency`` at once, from the calling thread.

    Redirects are not followed, no Accept-Encoding is added (each request carries its exact
    value) and nothing is decoded; TLS is always verified. Not thread-safe: one per thread.
    """

    def __init__(
        self,
        *,
        concurrency: int,
        timeout: float,
        user_agent: str,
        ca_bundle: str | None = None,
    ) -> None:
        import pycurl

        self._pycurl = pycurl  # imported here, not with the module: `prewarm --help` stays fast
        self.timeout = timeout
        self._stall_s = max(1, math.ceil(timeout))  # libcurl counts a stall in whole seconds
        self._budget: int | None = None  # body bytes this run may still read
        self._n_started = 0  # requests started this run
        self._n_received = 0  # body bytes read this run, while a budget is kept
        self._read_verdict_headers = HeaderReader(cache_verdict_headers())
        self._read_other_headers = HeaderReader(("content-length", "retry-after"))
        # The verdict per the verdict headers' lines as they came: one edge answers with a few
        # combinations only, so a warm request rarely runs the classifier (bounded, see _verdict).
        self._verdicts: dict[tuple[tuple[bytes, bytes], ...], tuple[str, str | None]] = {}
        self._multi = pycurl.CurlMulti()
        self._lookup_left = False  # a request ended before its name was resolved
        self._running = False  # in run(), in some thread
        self._in_flight = 0  # requests of the run sent and not answered
        # The run's callbacks, kept for keep_sending, which takes answers during take().
        self._on_answer: Callable[[Request, Answer], None] = _no_answer
        self._on_tick: Callable[[], None] | None = None
        self._tick_every = 0.05
        self._next_tick = math.inf
        self._slots: dict[int, _Slot] = {}
        self._free: list[_Slot] = []
        for _ in range(max(1, concurrency)):
            handle = pycurl.Curl()
            slot = _Slot(handle)
            # Both callbacks are C functions: no Python runs per chunk or header line.
            handle.setopt(pycurl.WRITEFUNCTION, len)  # the body's bytes, counted by libcurl
            handle.setopt(pycurl.HEADERFUNCTION, slot.received.extend)
            curl_common_settings(handle, ca_bundle)  # no redirect followed, TLS verified
            handle.setopt(pycurl.CONNECTTIMEOUT_MS, max(1, int(timeout * 1000)))
            # Stalled for `timeout` seconds (no byte at all): given up, as a read timeout would.
            handle.setopt(pycurl.LOW_SPEED_LIMIT, 1)
            handle.setopt(pycurl.LOW_SPEED_TIME, self._stall_s)
            handle.setopt(pycurl.USERAGENT, user_agent)
            slot.count_against_budget = self._budget_writer(slot)
            self._slots[id(handle)] = slot
            self._free.append(slot)

    def run(
        self,
        take: Callable[[], Request | None],
        on_answer: Callable[[Request, Answer], None],
        *,
        byte_budget: int | None = None,
        on_tick: Callable[[], None] | None = None,
        tick_every: float = 0.05,
    ) -> None:
        """Sends requests until ``take`` has none and every one sent is answered.

        ``take`` is asked whenever a slot is free: the next request, or None when none is
        ready (an answer may make more ready: ``on_answer`` is called for each as it comes).
        When either raises (Ctrl-C in a pacing wait, a record that cannot be written), what is
        in flight is dropped unanswered, and the Warmer is ready for the next run.
        With ``byte_budget``, the bodies read stop there: requests in flight when it runs out
        are cut short and answered STOPPED (past the budget by at most the chunk each had
        just received), except the run's first: each run warms at least one body whole, so a
        body larger than the budget is warmed too, by a run of its own. Without a budget,
        bodies are counted in C; with one, each chunk passes through Python.
        ``on_tick`` is called every ``tick_every`` seconds while the run lasts, answers or
        not (a stalled edge): the caller records the answers it holds.
        """
        if on_tick is not None and tick_every <= 0:
            raise ValueError("tick_every must be positive")  # the loop would never wait
        self._budget, self._n_received, self._n_started = byte_budget, 0, 0
        for slot in self._slots.values():
            write = len if byte_budget is None else slot.count_against_budget
            slot.handle.setopt(self._pycurl.WRITEFUNCTION, write)
        self._on_answer, self._on_tick, self._tick_every = on_answer, on_tick, tick_every
        self._next_tick = time.monotonic() + tick_every if on_tick else math.inf
        self._running = True
        try:
            self._run(take)
        finally:
            self._drop_in_flight()
            self._on_answer, self._on_tick = _no_answer, None
            self._running = False

    @property
    def budget_spent(self) -> bool:
        """Whether the run's byte budget is read to its end (never, without one)."""
        return self._budget is not None and self._n_received >= self._budget

    def _budget_writer(self, slot: _Slot) -> Callable[[bytes], int]:
        def write(chunk: bytes) -> int:
            self._n_received += len(chunk)
            over = self._budget is not None and self._n_received > self._budget
            if over and not slot.read_whole:
                slot.n_refused = len(chunk)  # received all the same
                return 0  # libcurl stops the transfer
            return len(chunk)

        return write

    def _run(self, take: Callable[[], Request | None]) -> None:
        multi = self._multi
        while True:
            while self._free:
                request = take()
                if request is None:
                    break
                slot = self._free.pop()
                self._prepare(slot, request)
                multi.add_handle(slot.handle)
                self._in_flight += 1
            if not self._in_flight:
                return
            n_done = self._transfer()
            now = time.monotonic()
            if self._in_flight and not n_done:
                # Until a socket is ready, libcurl's next timer (a connect, a retry) is due, or
                # the next tick.
                wait = multi.timeout()
                wait_s = min(1.0 if wait < 0 else wait / 1000, 1.0, self._next_tick - now)
                if wait_s > 0 and multi.select(wait_s) < 0:
                    time.sleep(min(wait_s, 0.001))  # no socket to wait on yet

    def _transfer(self) -> int:
        """Lets libcurl send and receive what it can now, hands over each answer that came,
        and ticks when a tick is due; how many answers came."""
        pycurl, multi = self._pycurl, self._multi
        while multi.perform()[0] == pycurl.E_CALL_MULTI_PERFORM:
            pass
        n_done = 0
        while True:
            n_queued, ok, failed = multi.info_read()
            for handle in ok:
                self._done(handle, None)
            for handle, errno, message in failed:
                self._done(handle, (errno, message))
            n_done += len(ok) + len(failed)
            if not n_queued:
                break
        self._tick_if_due()
        return n_done

    def _tick_if_due(self) -> None:
        now = time.monotonic()
        if now >= self._next_tick and self._on_tick is not None:
            self._on_tick()
            self._next_tick = now + self._tick_every

    def keep_sending(self, seconds: float) -> None:
        """Keeps the run's transfers going for up to ``seconds``, their answers handed over
        as they come: called while ``take`` waits for a rate, so that a request taken before
        that wait goes out at once, not with the next one, and an answer meanwhile is
        recorded (a Ctrl-C in the wait keeps it)."""
        multi = self._multi
        deadline = time.monotonic() + seconds
        while True:
            if self._in_flight:
                self._transfer()
            else:
                self._tick_if_due()  # the answers that came are recorded
            left = deadline - time.monotonic()
            if left <= 0:
                return
            reading, writing, failing = multi.fdset()
            if not (reading or writing or failing):
                # No socket to wait on (nothing in flight, or a name being resolved): a wait
                # on none would return at once, and this loop would spin a core.
                time.sleep(min(left, 0.001 if self._in_flight else self._tick_every))
                continue
            wait = multi.timeout()  # libcurl's next timer: a connect, a retry
            wait_s = min(left, 1.0 if wait < 0 else max(wait / 1000, 0.001))
            select.select(reading, writing, failing, wait_s)

    def _drop_in_flight(self) -> None:
        for slot in self._slots.values():
            if slot.request is not None:
                self._lookup_left = self._lookup_left or curl_lookup_unfinished(slot.handle)
                self._multi.remove_handle(slot.handle)
                slot.request = None
                self._free.append(slot)
        self._in_flight = 0

    def _prepare(self, slot: _Slot, request: Request) -> None:
        pycurl = self._pycurl
        handle = slot.handle
        url = request.url  # as the journal has it: sent in RFC 3986 form (libcurl needs ASCII)
        handle.setopt(pycurl.URL, url if url.isascii() else url_to_ascii(url))
        connect_to = request.target.connect_to
        if connect_to != slot.connect_to:
            if connect_to:
                handle.setopt(pycurl.CONNECT_TO, [connect_to])
                handle.setopt(pycurl.PROXY, "")  # a proxy would choose the edge
            else:
                handle.unsetopt(pycurl.CONNECT_TO)
                handle.unsetopt(pycurl.PROXY)
            slot.connect_to = connect_to
        if request.header_lines != slot.header_lines:
            handle.setopt(pycurl.HTTPHEADER, list(request.header_lines))
            slot.header_lines = request.header_lines
        del slot.received[:]
        slot.n_refused = 0
        slot.read_whole = self._n_started == 0
        self._n_started += 1
        slot.request = request

    def _done(self, handle: Any, error: tuple[int, str] | None) -> None:
        if error is not None and curl_lookup_unfinished(handle, error[0]):
            self._lookup_left = True  # (a lookup that timed out may still run)
        self._multi.remove_handle(handle)
        self._in_flight -= 1
        slot = self._slots[id(handle)]
        request, slot.request = slot.request, None
        self._free.append(slot)
        assert request is not None
        self._on_answer(request, self._answer(slot, error))

    def _answer(self, slot: _Slot, error: tuple[int, str] | None) -> Answer:
        getinfo = slot.handle.getinfo
        code = getinfo(self._pycurl.RESPONSE_CODE) or None
        size = getinfo(self._pycurl.SIZE_DOWNLOAD_T)
        if error is not None and error[0] == _WRITE_ERROR and slot.n_refused:
            size += slot.n_refused
            expected = getinfo(self._pycurl.CONTENT_LENGTH_DOWNLOAD_T)  # -1: not said
            if not 0 <= expected <= size:
                reason = f"cut short after {size} bytes: the run's byte budget is spent"
                return Answer(STOPPED, code, bytes=size, reason=reason)
            error = None  # the chunk refused was the body's last: it came whole, and is warm
        if error is not None:
            return self._failed(error, code, size, self._read_other_headers(slot.received))
        assert code is not None
        cache, pop = self._verdict(slot.received)
        if code in (408, 429) or code >= 500:
            retry_after = self._read_other_headers(slot.received).get("retry-after")
            return Answer(
                TRANSIENT,
                code,
                cache,
                size,
                f"HTTP {code}",
                retry_after=parse_retry_after(retry_after),
                pop=pop,
            )
        if code >= 400:
            return Answer(REJECTED, code, cache, size, f"HTTP {code}", pop=pop)
        return Answer(OK, code, cache, size, None, None, pop)

    def _verdict(self, block: bytearray) -> tuple[str, str | None]:
        """verify's (cache, pop) for an answer's header block."""
        lines = self._read_verdict_headers.lines(block)
        verdict = self._verdicts.get(lines)
        if verdict is None:
            verdict = cache_verdict(HeaderReader.joined(lines))
            if len(self._verdicts) >= _MAX_VERDICTS:  # headers unique per answer (a request id)
                self._verdicts.clear()
            self._verdicts[lines] = verdict
        return verdict

    def _failed(
        self, error: tuple[int, str], code: int | None, size: int, received: dict[str, str]
    ) -> Answer:
        errno, message = error
        if code is not None and errno in _CUT_SHORT:
            expected = _content_length(received.get("content-length"))
            of = f" of {expected}" if expected is not None else ""
            why = f"no data for {self._stall_s}s" if errno == 28 else _CUT_SHORT[errno]
            reason = f"short body: {size}{of} bytes ({why})"
            return Answer(TRANSIENT, code, bytes=size, reason=reason)
        if errno == 28:
            # libcurl's words say which wait ran out, and after how long (a connection, or
            # no byte for whole seconds).
            return Answer(TRANSIENT, reason=f"timed out ({message})")
        if errno in CURL_UNTRUSTED:
            reason = f"{message or f'libcurl error {errno}'} (is ca_bundle the edge's CA?)"
            return Answer(TRANSIENT, reason=reason, retry=False)
        return Answer(TRANSIENT, reason=message or f"libcurl error {errno}")

    def close(self) -> None:
        """Releases libcurl's handles, without waiting for a name lookup (curl_close_multi).
        Those of a run still sending in another thread (a run a signal stopped, whose worker
        the process leaves behind as it ends) are left to the process's end: they cannot be
        closed while they transfer, the run would go on with closed ones, and freed as the
        process ends, they would wait for the lookups in progress."""
        if self._running:
            curl_close_multi(self._multi, lookup_left=True)  # never cleaned up
            return
        with suppress(self._pycurl.error):  # a run begun meanwhile: left to the process's end
            for slot in self._slots.values():
                slot.handle.close()
            curl_close_multi(self._multi, lookup_left=self._lookup_left)


class HeaderReader:
    """Picks the named headers out of an answer's header block, in one pass of a regular
    expression over it: names in lower case, repeated ones joined with ", " as one value;
    only the last response counts (after any 1xx)."""

    def __init__(self, names: Sequence[str]) -> None:
        # Any case by character classes rather than re.IGNORECASE, so that the pattern starts
        # with a literal newline, which the engine skips to at C speed; the names as a tree of
        # their common beginnings, so that a line is tried once per character, not per name.
        self._pattern = re.compile(
            rb"\n(" + _any_case(names) + rb")[ \t]*:[ \t]*([^\n]*?)[ \t]*\r?(?=\n)"
        )

    def __call__(self, block: bytes | bytearray) -> dict[str, str]:
        return self.joined(self.lines(block))

    def lines(self, block: bytes | bytearray) -> tuple[tuple[bytes, bytes], ...]:
        """The named headers' (name, value) as they came, in order; not a chunked body's
        trailer fields, which come after the header block's blank line."""
        start = block.rfind(b"\nHTTP/") + 1  # a header name cannot hold "/": a status line
        end = block.find(b"\n\r\n", start)
        return tuple(self._pattern.findall(block, start, len(block) if end < 0 else end + 1))

    @staticmethod
    def joined(lines: Sequence[tuple[bytes, bytes]]) -> dict[str, str]:
        """Lower-case names; a repeated header's values joined with ", "."""
        headers: dict[str, str] = {}
        for name, value in lines:
            key, text = name.decode("latin-1").lower(), value.decode("latin-1")
            seen = headers.get(key)
            headers[key] = text if seen is None else f"{seen}, {text}"
        return headers


def _any_case(names: Sequence[str]) -> bytes:
    """Header names as one pattern that matches each in any case: a tree of their common
    beginnings (``x-(?:cache|served-by)``), in which a name may end where another goes on."""
    tree: dict[str, dict[str, Any]] = {}
    for name in names:
        node = tree
        for c in name.lower():
            node = node.setdefault(c, {})
        node[""] = {}  # a name ends here

    def pattern(node: dict[str, Any]) -> bytes:
        branches = [
            (b"[%s%s]" % (c.encode(), c.upper().encode()) if c.isalpha() else re.escape(c.encode()))
            + pattern(child)
            for c, child in sorted(node.items())
            if c
        ]
        if not branches:
            return b""
        if "" in node:  # a name ends here, and a longer one goes on
            return b"(?:" + b"|".join(branches) + b")?"
        return branches[0] if len(branches) == 1 else b"(?:" + b"|".join(branches) + b")"

    return pattern(tree)


def _no_answer(_request: Request, _answer: Answer) -> None:
    raise AssertionError("an answer outside a run")


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
    from email.utils import parsedate_to_datetime  # an HTTP date: rare, and email is slow to load

    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
