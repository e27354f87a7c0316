"""Probes through libcurl (pycurl), its multi interface driven from the calling thread.

Up to ``concurrency`` requests in flight on kept-alive connections (HTTP/2 where the edge
offers it over TLS), each answer classified as it comes and handed over in the order of the
URLs. httpx in a pool of threads spent more time waiting for Python's lock and its pool's
than probing: about 800 µs of CPU per probe, eight times this loop's.

What each request is, as `verify` promises it: the exact Accept-Encoding of its variant and
nothing decoded (a GET's body counted as it came over the wire, never kept); redirects not
followed; TLS always verified (a CA bundle replaces the trust store); ``--resolve`` pins that
connect to an IP while the URL keeps Host and SNI (curl's ``--connect-to``: its host as
written, with its final dot too), proxies unused where pins are given. A request is sent again
only when it never got an answer (no connection, or one closed before any response), at most
``retries`` times; ``timeout`` bounds the connection and each wait for a byte.
"""

from __future__ import annotations

import heapq
import math
import os
import time
from collections.abc import Callable, Generator, Iterator
from contextlib import suppress
from typing import Any, NamedTuple

from prewarm_cli.plugin import CURL_UNTRUSTED as _UNTRUSTED
from prewarm_cli.verify.classify import UNKNOWN, classify
from prewarm_cli.verify.pins import Pin
from prewarm_cli.verify.probe import Pace, ProbeResult, VerifyOptions, request_headers

_RETRY_BACKOFF = 0.1  # seconds; doubled per attempt (no answer at all only)
_TICK = 0.05  # seconds between looks for a request out of time (_overdue)
_MAX_AHEAD = 1024  # answers held for the order of the URLs at most
_HTTP_VERSIONS = {1: "HTTP/1.0", 2: "HTTP/1.1", 3: "HTTP/2", 30: "HTTP/3"}
_STALLED = -1  # not libcurl's codes: no byte of the answer for `timeout` seconds,
_CONNECT_TIMED_OUT = -2  # not connected and sent within `timeout` seconds
_NO_FINAL = -3  # ended with no final answer: 1xx only
# No name, no connection, none within the timeout.
_CONNECTING = frozenset({6, 7, 28, _CONNECT_TIMED_OUT})
_NO_RESPONSE = frozenset({52, 55, 56})  # closed before any response (a stale keep-alive)
_NO_SUCH_NAME = 6  # libcurl's CURLE_COULDNT_RESOLVE_HOST


class _Probe(NamedTuple):
    place: int  # its place among the answers
    url: str
    encoding: str | None  # its variant: None for the -H value or the default
    attempt: int = 0


class _Slot:
    """A libcurl handle, and the probe it is sending."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self.received = bytearray()  # the answer's header lines, as they came
        self.probe: _Probe | None = None
        self.proxy: str | None = None  # the proxy it was last set to
        self.started = 0.0
        self.ended = 0.0  # when its request ended (handed to the loop maybe later)
        self.n_seen = 0  # header and body bytes at the last look
        self.last_byte = 0.0  # when they last grew


_Ended = tuple["_Slot", _Probe, tuple[int, str] | None]  # a request that ended, and its error


def probe_all(
    work: Iterator[tuple[str, str | None]],
    options: VerifyOptions,
    progress: Callable[[int], None] | None = None,
    pace: Pace | None = None,
) -> Generator[ProbeResult, None, None]:
    """Probes each (URL, variant) of ``work`` and yields the answers in its order, reading it
    as requests are due: only the answers that came before an earlier one are held. ``pace``
    (see ``probe_each``) is asked before each request."""
    prober = _Prober(options, pace)
    try:
        yield from prober.run(work, progress)
    finally:
        prober.close()


class _Prober:
    def __init__(self, options: VerifyOptions, pace: Pace | None = None) -> None:
        import pycurl

        self._pycurl = pycurl  # imported here: `prewarm --help` stays fast
        self._options = options
        self._pace = pace
        self._ended: list[_Ended] = []  # requests that ended while pace() waited
        self._next_look = 0.0  # when to look for requests out of time
        self._multi = pycurl.CurlMulti()
        self._lookup_left = False  # a request ended before its name was resolved (close_multi)
        self._slots: dict[int, _Slot] = {}
        self._free: list[_Slot] = []
        self._in_flight = 0
        # Each variant's request header lines, and the Accept-Encoding they send.
        self._headers: dict[str | None, tuple[list[str], str | None]] = {}
        for encoding in options.variants():
            headers = request_headers(options, encoding)
            lines = [f"{name}: {value}" if value else f"{name};" for name, value in headers.items()]
            sent = next((v for k, v in headers.items() if k.lower() == "accept-encoding"), None)
            self._headers[encoding] = (lines, sent)
        connect_to = _connect_to(options.pins())
        # Where no pin is given, the proxies of the environment, as Python reads them
        # (HTTP_PROXY too, which libcurl leaves to CGI scripts), by URL scheme.
        self._proxies: dict[str, str] = {} if connect_to else _env_proxies()
        for _ in range(options.concurrency):
            handle = pycurl.Curl()
            slot = _Slot(handle)
            handle.setopt(pycurl.WRITEFUNCTION, len)  # the body counted, never kept
            handle.setopt(pycurl.HEADERFUNCTION, slot.received.extend)
            if options.method == "HEAD":
                handle.setopt(pycurl.NOBODY, 1)
            # The timeout is this loop's (_overdue): libcurl's would count the time the reader
            # holds the answers too, and a stall in whole seconds only.
            common_settings(handle, options.ca_bundle)
            handle.setopt(pycurl.USERAGENT, options.user_agent)
            if connect_to:
                handle.setopt(pycurl.CONNECT_TO, connect_to)
                handle.setopt(pycurl.PROXY, "")  # a proxy would choose the edge
            else:
                handle.setopt(pycurl.NOPROXY, self._proxies.get("no", ""))
            self._slots[id(handle)] = slot
            self._free.append(slot)

    def run(
        self, work: Iterator[tuple[str, str | None]], progress: Callable[[int], None] | None
    ) -> Generator[ProbeResult, None, None]:
        ahead = max(2 * self._options.concurrency, _MAX_AHEAD)
        retries: list[tuple[float, int, _Probe]] = []  # (when, index, probe): a heap
        early: dict[int, ProbeResult] = {}  # answers that came before an earlier one
        n_taken = n_given = 0
        exhausted = False
        self._next_look = time.monotonic() + _TICK
        while True:
            now = time.monotonic()
            while self._free:
                if retries and retries[0][0] <= now:
                    probe = heapq.heappop(retries)[2]
                elif not exhausted and n_taken - n_given < ahead:
                    item = next(work, None)
                    if item is None:
                        exhausted = True
                        continue
                    probe = _Probe(n_taken, *item)
                    n_taken += 1
                else:
                    break
                if self._pace is not None:
                    self._pace(self._meanwhile)  # its turn; the others go on meanwhile
                    self._start(probe, time.monotonic())
                    break  # what came meanwhile is handed over before the next turn
                self._start(probe, now)
            answered, self._ended = self._ended + self._transfer(), []
            now = time.monotonic()
            if now >= self._next_look:
                answered += self._overdue(now)
                self._next_look = now + _TICK
            for slot, probe, error in answered:
                result = self._result(slot, probe, error, now)
                self._free.append(slot)
                if result is None:
                    due = now + _RETRY_BACKOFF * 2**probe.attempt
                    heapq.heappush(
                        retries, (due, probe.place, probe._replace(attempt=probe.attempt + 1))
                    )
                    continue
                early[probe.place] = result
                if progress is not None:
                    progress(1)
            while n_given in early:
                paused = time.monotonic()
                yield early.pop(n_given)
                n_given += 1
                # The reader's time is not the edge's: a stall is counted while this loop
                # drives the transfers only.
                paused = time.monotonic() - paused
                for slot in self._slots.values():
                    slot.started += paused
                    slot.last_byte += paused
            if exhausted and not self._in_flight and not retries:
                return
            paced_next = self._pace is not None and self._free and not exhausted
            if not answered and not paced_next and (self._in_flight or retries):
                due = min(now + _TICK, retries[0][0] if retries else math.inf)
                self._wait(due - now, self._next_look - now)

    def _meanwhile(self, seconds: float) -> None:
        """While pace() waits: the transfers in flight go on, and those that end are kept for
        the run's loop."""
        deadline = time.monotonic() + seconds
        while True:
            self._ended += self._transfer()
            now = time.monotonic()
            if now >= self._next_look:
                self._ended += self._overdue(now)
                self._next_look = now + _TICK
            if now >= deadline:
                return
            self._wait(deadline - now, self._next_look - now)

    def _start(self, probe: _Probe, now: float) -> None:
        pycurl = self._pycurl
        slot = self._free.pop()
        handle = slot.handle
        handle.setopt(pycurl.URL, _ascii(probe.url))
        if self._proxies:
            scheme = probe.url.partition(":")[0].lower()
            proxy = self._proxies.get(scheme) or self._proxies.get("all", "")
            if proxy != slot.proxy:
                handle.setopt(pycurl.PROXY, proxy)
                slot.proxy = proxy
        handle.setopt(pycurl.HTTPHEADER, self._headers[probe.encoding][0])
        del slot.received[:]
        slot.probe, slot.started, slot.n_seen, slot.last_byte = probe, now, 0, now
        self._multi.add_handle(handle)
        self._in_flight += 1

    def _transfer(self) -> list[_Ended]:
        """Lets libcurl send and receive what it can now: the requests that ended."""
        pycurl, multi = self._pycurl, self._multi
        while multi.perform()[0] == pycurl.E_CALL_MULTI_PERFORM:
            pass
        ended: list[_Ended] = []
        while True:
            n_queued, ok, failed = multi.info_read()
            ended += [self._end(self._slots[id(handle)]) for handle in ok]
            ended += [
                self._end(self._slots[id(handle)], (errno, message))
                for handle, errno, message in failed
            ]
            if not n_queued:
                return ended

    def _overdue(self, now: float) -> list[_Ended]:
        """The requests that ran out of ``timeout``: not sent that long after they began (the
        name, the connection, its TLS: a connect timeout, asked again), or sent and given no
        byte for that long since the last (a read timeout). Counted while this loop drives
        the transfers only: ``run`` moves the clocks past the reader's time."""
        pycurl, timeout = self._pycurl, self._options.timeout
        ended: list[_Ended] = []
        for slot in self._slots.values():
            if slot.probe is None:
                continue
            getinfo = slot.handle.getinfo
            if not getinfo(pycurl.REQUEST_SIZE):  # not sent yet: connecting
                if now - slot.started >= timeout:
                    ended.append(self._end(slot, (_CONNECT_TIMED_OUT, "")))
                slot.last_byte = now
                continue
            n_seen = len(slot.received) + getinfo(pycurl.SIZE_DOWNLOAD_T)
            if n_seen != slot.n_seen:
                slot.n_seen, slot.last_byte = n_seen, now
            elif now - slot.last_byte >= timeout:
                ended.append(self._end(slot, (_STALLED, "")))
        return ended

    def _end(self, slot: _Slot, error: tuple[int, str] | None = None) -> _Ended:
        """The slot's request taken out of the transfers: the slot, its probe, its error."""
        if error is not None and lookup_unfinished(slot.handle, error[0]):
            self._lookup_left = True
        self._multi.remove_handle(slot.handle)
        self._in_flight -= 1
        slot.ended = time.monotonic()
        probe, slot.probe = slot.probe, None
        assert probe is not None
        return slot, probe, error

    def _wait(self, due_in: float, look_in: float) -> None:
        """Until a socket is ready, libcurl's next timer or a retry is due, or the next look
        for a request out of time (``due_in``, ``look_in``: seconds)."""
        multi = self._multi
        wait = multi.timeout()  # libcurl's next timer: a connect, a name
        wait_s = min(1.0 if wait < 0 else wait / 1000, max(due_in, 0.0), max(look_in, 0.0))
        if wait_s <= 0:
            return
        if not self._in_flight or multi.select(wait_s) < 0:
            time.sleep(min(wait_s, 0.001) if self._in_flight else wait_s)

    def _result(
        self, slot: _Slot, probe: _Probe, error: tuple[int, str] | None, now: float
    ) -> ProbeResult | None:
        """The probe's result; None when it is to be sent again."""
        pycurl, options = self._pycurl, self._options
        getinfo = slot.handle.getinfo
        sent_encoding = self._headers[probe.encoding][1]
        elapsed_ms = round((slot.ended - slot.started) * 1000)
        code = getinfo(pycurl.RESPONSE_CODE) or None
        if code is not None and not _final_headers_ended(slot.received):
            # Cut short before the final answer's headers ended (a stall, a connection lost,
            # interim answers only): its verdict would read half a header block.
            code, error = None, error or (_NO_FINAL, "")
        if code is None:  # no answer at all
            assert error is not None
            errno, message = error
            # Nothing reached the edge, or it closed before answering: asked again (not a
            # certificate this machine does not trust, the same every time).
            if errno in _RETRIED and probe.attempt < options.retries:
                return None
            suffix = f" (after {probe.attempt + 1} attempts)" if probe.attempt else ""
            return ProbeResult(
                url=probe.url,
                accept_encoding=sent_encoding,
                status_code=None,
                cache=UNKNOWN,
                pop=None,
                age=None,
                bytes=None,
                elapsed_ms=elapsed_ms,
                headers={},
                error=self._describe(errno, message) + suffix,
                detail="no response",
            )
        size = getinfo(pycurl.SIZE_DOWNLOAD_T) if options.method == "GET" else None
        body_error = None
        if error is not None and options.method == "GET":
            body_error = f"{self._describe(*error)} after {size or 0} bytes of the body"
        verdict = classify(_headers(slot.received), code)
        return ProbeResult(
            url=probe.url,
            accept_encoding=sent_encoding,
            status_code=code,
            cache=verdict.cache,
            pop=verdict.pop,
            age=verdict.age,
            bytes=size,
            elapsed_ms=elapsed_ms,
            headers=verdict.headers,
            error=body_error,
            source=verdict.source,
            detail=verdict.detail,
            http_version=_HTTP_VERSIONS.get(getinfo(pycurl.INFO_HTTP_VERSION)),
        )

    def _describe(self, errno: int, message: str) -> str:
        """One line for a request that failed: which wait ran out, or what libcurl said."""
        timeout = f"timed out after {self._options.timeout:g} s"
        if errno == _STALLED:
            return f"{timeout} waiting for the response"
        if errno == _NO_FINAL:
            return "no final answer (interim answers only)"
        if errno in (_CONNECT_TIMED_OUT, 28):  # ours, or libcurl's own (5 minutes)
            return f"{timeout} connecting"
        if errno in _UNTRUSTED:
            return (
                f"cannot connect: {message or f'libcurl error {errno}'} (certificate not trusted)"
            )
        if errno in (6, 7) or errno in _TLS:
            return f"cannot connect: {message or f'libcurl error {errno}'}"
        if errno == 18:
            return "connection closed"
        if errno in _NO_RESPONSE:
            return f"connection closed: {message}" if message else "connection closed"
        return message or f"libcurl error {errno}"

    def close(self) -> None:
        for slot in self._slots.values():
            if slot.probe is not None:
                self._lookup_left = self._lookup_left or lookup_unfinished(slot.handle)
                with suppress(self._pycurl.error):  # taken out already (Ctrl-C inside _end)
                    self._multi.remove_handle(slot.handle)
            slot.handle.close()
        close_multi(self._multi, lookup_left=self._lookup_left)


# libcurl's codes for a TLS handshake that failed or a certificate not trusted: no answer.
_TLS = frozenset({35, 51, 53, 54, 58, 59, 60, 64, 66, 77, 80, 82, 83, 90, 91})
# No answer at all, and asking again may get one (not a certificate this machine does not
# trust, nor a stall once connected: the edge has the request).
_RETRIED = (_CONNECTING | _NO_RESPONSE | _TLS) - _UNTRUSTED


def common_settings(handle: Any, ca_bundle: str | None) -> None:
    """What every libcurl transfer of prewarm's is: redirects not followed, no signals (a
    timeout in a thread), and TLS verified, the peer's certificate and name, against
    ``ca_bundle`` (which replaces the trust store, as curl's ``--cacert``) or else the trust
    store Python uses here: SSL_CERT_FILE and SSL_CERT_DIR where set, else certifi's."""
    import pycurl

    handle.setopt(pycurl.FOLLOWLOCATION, 0)
    handle.setopt(pycurl.NOSIGNAL, 1)
    handle.setopt(pycurl.SSL_VERIFYPEER, 1)
    handle.setopt(pycurl.SSL_VERIFYHOST, 2)
    cafile = ca_bundle or os.environ.get("SSL_CERT_FILE")
    capath = None if ca_bundle else os.environ.get("SSL_CERT_DIR")
    if cafile or not capath:
        handle.setopt(pycurl.CAINFO, cafile or _certifi())
    else:
        handle.unsetopt(pycurl.CAINFO)  # the directory alone, as Python and httpx read it
    if capath:
        handle.setopt(pycurl.CAPATH, capath)


def lookup_unfinished(handle: Any, errno: int | None = None) -> bool:
    """Whether the request of ``handle``, ended with libcurl's ``errno`` (None: taken out
    before its answer), had no address to connect to yet, its host's name not resolved: that
    lookup may still run in libcurl's resolver. Not a name that does not resolve (6): its
    lookup ended. (A connection reused, or a lookup that ended, has an address.)"""
    import pycurl

    return errno != _NO_SUCH_NAME and not handle.getinfo(pycurl.PRIMARY_IP)


def close_multi(multi: Any, *, lookup_left: bool) -> None:
    """Closes a libcurl multi handle whose easy handles are taken out, at once.

    libcurl's cleanup waits for the name lookups its resolver's threads are in, and a lookup
    on a resolver that does not answer takes 5 to 10 s to give up: a Ctrl-C, or the end of a
    run whose lookup timed out, would wait that long. libcurl's CURLMOPT_QUICK_EXIT skips that
    wait, but pycurl cannot set it. So a multi handle whose lookup may still run
    (``lookup_left``: see lookup_unfinished) is never cleaned up: it is left to the process's
    end, which ends its threads and closes its connections."""
    if not lookup_left:
        multi.close()
        return
    import ctypes

    # A reference that is never given back: Python frees everything else as it shuts down, a
    # list of a module's included, and freeing the handle would run libcurl's cleanup.
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(multi))


def connect_to(host: str, port: int | None, ip: str) -> str:
    """curl's --connect-to entry, HOST:PORT:IP:PORT (an IPv6 address in brackets; no port:
    any): connect to the IP, keep the host for Host and SNI, as --resolve does. libcurl
    matches it against the host as the URL writes it (with a final dot or not)."""
    to = f"[{ip}]" if ":" in ip else ip
    at = "" if port is None else str(port)
    return f"{host}:{at}:{to}:{at}"


def _env_proxies() -> dict[str, str]:
    from urllib.request import getproxies

    return getproxies()


def _connect_to(pins: tuple[Pin, ...]) -> list[str]:
    """The entries of ``--resolve`` pins: the last pin for a host and port wins, a pin with a
    port before one without; each host also as written with a final dot."""
    table = {(pin.host.lower().rstrip("."), pin.port): pin.ip for pin in pins}
    ordered = sorted(table.items(), key=lambda item: item[0][1] is None)
    return [
        connect_to(name, port, ip) for (host, port), ip in ordered for name in (host, host + ".")
    ]


def _final_block(block: bytearray) -> tuple[int, int]:
    """Where the final answer's header block lies in ``block``: from its status line (after
    any 1xx, whose blocks libcurl hands over too) to its blank line, or to the end where that
    has not come (trailers may follow the body); -1 as the end when it has not."""
    start = block.rfind(b"\nHTTP/") + 1  # 0: the block's first response
    ends = [i for i in (block.find(b"\n\r\n", start), block.find(b"\n\n", start)) if i >= 0]
    return start, min(ends, default=-1)


def _final_headers_ended(block: bytearray) -> bool:
    """Whether the block holds a final answer's whole header block: its blank line came, and
    its status is not 1xx."""
    start, end = _final_block(block)
    status = block[start : start + 16].split(b" ", 2)
    return end >= 0 and len(status) > 1 and not status[1].startswith(b"1")


def _headers(block: bytearray) -> dict[str, str]:
    """The final response's headers: lower-case names, a repeated one's values joined with
    ", ", in the order they came."""
    start, end = _final_block(block)
    text = bytes(block[start : end if end >= 0 else len(block)]).decode("latin-1")
    headers: dict[str, str] = {}
    for line in text.split("\n")[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            continue
        key, value = name.strip().lower(), value.strip()
        seen = headers.get(key)
        headers[key] = value if seen is None else f"{seen}, {value}"
    return headers


def _ascii(url: str) -> str:
    if url.isascii():
        return url
    from prewarm_cli.plugin import url_to_ascii

    return url_to_ascii(url)


def _certifi() -> str:
    import certifi

    return str(certifi.where())
