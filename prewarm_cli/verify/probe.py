"""Pinned probing: request each URL, optionally through a chosen IP, and classify the answer.

The options, the results and their summary; the requests themselves go through libcurl
(:mod:`prewarm_cli.verify.curl`). :func:`pinned_client` builds the httpx client offered to
providers (the plugin API) with the same rules: TLS verification always on (a CA bundle
replaces the trust store, as curl's ``--cacert``), redirects not followed (a 3xx is the answer
the CDN cached), and ``--resolve`` pins that connect to an IP while keeping Host and SNI, as
curl's ``--resolve`` does.

httpx and pycurl are imported only when requests are really made, so that ``prewarm --help``
stays fast.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prewarm_cli import __version__
from prewarm_cli.errors import ConfigError, ExitCode, Outcome, UsageError, exit_for
from prewarm_cli.verify.classify import (
    CACHE_VALUES,
    HIT,
    is_cached,
    is_warm,
)
from prewarm_cli.verify.pins import Pin, host_port, no_pin_for, parse_resolve

if TYPE_CHECKING:
    import ssl

    import httpx

    from prewarm_cli.inputs import DistinctUrls, InputNotes, InputSpec

# Waits for a request's turn, calling the function it is given (seconds at most) meanwhile.
Pace = Callable[[Callable[[float], None]], None]
METHODS = ("HEAD", "GET")
# What browsers send (minus zstd, which few CDNs cache separately yet): the variant users get.
DEFAULT_ACCEPT_ENCODING = "gzip, deflate, br"
DEFAULT_CONCURRENCY = 16
DEFAULT_TIMEOUT = 10.0
DEFAULT_RETRIES = 2
# What prewarm's own requests send; a probe says it is one, unless it must match a warm request.
USER_AGENT = f"prewarm-cli/{__version__}"
VERIFY_USER_AGENT = f"{USER_AGENT} (verify)"


@dataclass(frozen=True)
class VerifyOptions:
    """How to probe: method, headers, variants, pinning, concurrency, timeouts, TLS."""

    method: str = "HEAD"
    headers: tuple[tuple[str, str], ...] = ()
    encodings: tuple[str, ...] = ()  # one request per URL per value; () = DEFAULT_ACCEPT_ENCODING
    resolve: tuple[str, ...] = ()  # HOST[:PORT]:IP
    concurrency: int = DEFAULT_CONCURRENCY
    timeout: float = DEFAULT_TIMEOUT  # seconds, per connect / read / write
    retries: int = DEFAULT_RETRIES  # extra attempts after a connection error, nothing else
    ca_bundle: str | None = None
    expect_hit: bool = False
    user_agent: str = VERIFY_USER_AGENT  # a -H User-Agent replaces it

    def __post_init__(self) -> None:
        method = self.method.upper()
        if method not in METHODS:
            raise UsageError(f"method must be HEAD or GET, not {self.method!r}")
        object.__setattr__(self, "method", method)
        if self.concurrency < 1:
            raise UsageError("--concurrency must be at least 1")
        if not self.timeout > 0:
            raise UsageError("the timeout must be more than 0 seconds")
        if self.retries < 0:
            raise UsageError("retries cannot be negative")
        encodings = tuple(dict.fromkeys(e.strip() for e in self.encodings))
        if any(not e for e in encodings):
            raise UsageError("--accept-encoding needs a value (e.g. gzip, br, identity)")
        object.__setattr__(self, "encodings", encodings)
        if encodings and any(n.lower() == "accept-encoding" for n, _ in self.headers):
            raise UsageError(
                "give the encodings with --accept-encoding, not -H 'Accept-Encoding: ...'"
            )
        self.pins()  # a bad --resolve is reported before anything is sent

    def pins(self) -> tuple[Pin, ...]:
        return tuple(parse_resolve(spec) for spec in self.resolve)

    def variants(self) -> tuple[str | None, ...]:
        """The Accept-Encoding values to send per URL; None: the -H value or the default."""
        return self.encodings or (None,)


@dataclass(frozen=True)
class ProbeResult:
    """One request's outcome (DESIGN §5 verify results)."""

    url: str
    accept_encoding: str | None
    status_code: int | None
    cache: str
    pop: str | None
    age: int | None
    bytes: int | None  # body bytes as sent on the wire (GET only)
    elapsed_ms: int | None
    headers: dict[str, str]
    error: str | None
    source: str | None = None
    detail: str | None = None
    http_version: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "status_code": self.status_code,
            "cache": self.cache,
            "pop": self.pop,
            "age": self.age,
            "bytes": self.bytes,
            "elapsed_ms": self.elapsed_ms,
            "accept_encoding": self.accept_encoding,
            "headers": dict(self.headers),
            "error": self.error,
            "source": self.source,
            "detail": self.detail,
            "http_version": self.http_version,
        }


def unpinned(urls: Iterable[str], options: VerifyOptions) -> list[str]:
    """A line per host and port of the URLs that none of the --resolve pins applies to
    (none when no pin was given): those are probed where DNS sends them."""
    pins = list(zip(options.resolve, options.pins(), strict=True))
    if not pins:
        return []
    origins = dict.fromkeys(host_port(url) for url in urls)
    notes = (no_pin_for(host, port, pins) for host, port in origins)
    lines = [f"{note}: probed through the edge DNS gives" for note in notes if note]
    # Two pins for one host and port: one address is probed, the last (curl's rule).
    last = {(pin.host, pin.port): spec for spec, pin in pins}
    lines += [
        f"--resolve {spec} is replaced by --resolve {last[(pin.host, pin.port)]}: verify"
        " probes one address per host (`prewarm status JOB --verify` probes every PoP a"
        " direct job warmed)"
        for spec, pin in pins
        if last[(pin.host, pin.port)] != spec
    ]
    return lines


def planned_requests(n_urls: int, options: VerifyOptions) -> int:
    """How many requests verify() makes for n_urls distinct URLs (the progress total)."""
    return n_urls * len(options.variants())


def verify(
    urls: Iterable[str],
    options: VerifyOptions | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Requests every URL (once per encoding) and classifies it: ``{results, summary}``."""
    results, tally = verify_stream(dict.fromkeys(urls), options or VerifyOptions(), progress)
    return {"results": list(results), "summary": tally.to_dict()}


def verify_stream(
    urls: Iterable[str],
    options: VerifyOptions,
    progress: Callable[[int], None] | None = None,
    pace: Pace | None = None,
) -> tuple[Generator[dict[str, Any], None, None], Tally]:
    """verify() of distinct ``urls``, its results made as they are read: the tally is the
    summary of those read so far, whole once they all are. Nothing is held but the answers
    that came ahead of an earlier one still in flight. Close the results if they are not
    read to their end: their threads and connections go with them."""

    answers = probe_each(urls, options, progress, pace)  # a CA bundle unreadable: said now

    def results() -> Generator[dict[str, Any], None, None]:
        with contextlib.closing(answers):
            for answer in answers:
                item = answer.to_dict()
                tally.add(item)
                yield item

    tally = Tally()
    return results(), tally


def against_claims(
    results: Iterable[dict[str, Any]], claim_of: Callable[[str], str | None]
) -> Generator[dict[str, Any], None, None]:
    """Each result with ``vendor`` (the URL's claimed state, or None) and ``mismatch`` (the
    vendor says ``succeeded`` but the cache here does not hold the URL's answer: a cached
    redirect holds it, as direct warming warms it), as it comes."""
    for item in results:
        claim = claim_of(item["url"])
        item["vendor"] = claim
        item["mismatch"] = claim == "succeeded" and not is_cached(item)
        yield item


@dataclass
class Tally:
    """The summary of verify results, counted one result at a time."""

    total: int = 0
    caches: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CACHE_VALUES, 0))
    errors: int = 0
    non_2xx: int = 0
    warm: int = 0
    warm_hits: int = 0  # a cached 404 is a hit for the CDN, but not a warm copy of the URL

    def add(self, result: Mapping[str, Any]) -> None:
        self.total += 1
        cache = result["cache"]
        self.caches[cache] = self.caches.get(cache, 0) + 1
        self.errors += bool(result.get("error"))
        code = result.get("status_code")
        self.non_2xx += isinstance(code, int) and not 200 <= code < 300
        if is_warm(result):
            self.warm += 1
            self.warm_hits += cache == HIT

    def to_dict(self) -> dict[str, Any]:
        """Counts per cache value (they add up to total), errors, non-2xx, warm, hit_ratio."""
        return {
            "total": self.total,
            **self.caches,
            "errors": self.errors,
            "non_2xx": self.non_2xx,
            "warm": self.warm,
            "hit_ratio": round(self.warm_hits / self.total, 4) if self.total else 0.0,
        }


def summarize(results: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Counts per cache value (they add up to total), errors, non-2xx, warm, hit_ratio."""
    tally = Tally()
    for result in results:
        tally.add(result)
    return tally.to_dict()


def exit_code(summary: Mapping[str, Any], expect_hit: bool = False) -> ExitCode:
    """4 when a request failed, a vendor's "succeeded" was contradicted, or (expect_hit) a
    URL is not warm; else 0 (from the results' summary)."""
    failed = summary.get("errors") or summary.get("mismatches")
    cold = expect_hit and summary.get("warm", 0) < summary.get("total", 0)
    return exit_for([Outcome.NOT_WARM] if failed or cold else [])


def read_urls(inputs: InputSpec, notes: InputNotes | None = None) -> DistinctUrls:
    """The distinct valid input URLs, in order (on disk past a few thousand: close them when
    done); InputError listing the invalid ones."""
    from prewarm_cli.inputs import read_urls as read

    return read(
        inputs, notes=notes, consequence="nothing was requested", nothing="no URLs to verify"
    )


def probe_each(
    urls: Iterable[str],
    options: VerifyOptions,
    progress: Callable[[int], None] | None = None,
    pace: Pace | None = None,
) -> Generator[ProbeResult, None, None]:
    """Probes each URL once per variant, ``concurrency`` at a time, and yields the answers in
    the order of the URLs. URLs are read as they are needed and answers kept only while an
    earlier one is still awaited, so that a million URLs are never all in memory.

    ``pace`` is called before each request and may wait (a provider's rate, kept across
    processes by the engine's pacer); it calls the function it is given instead of sleeping,
    with the seconds it may take, and the requests in flight go on meanwhile.

    A CA bundle that cannot be read is said at once, before any answer is written; close the
    iterator if it is not read to its end."""
    check_trust(options.ca_bundle)
    work = ((url, enc) for url in urls for enc in options.variants())
    first = next(work, None)
    if first is None:
        none: tuple[ProbeResult, ...] = ()
        return (answer for answer in none)
    from prewarm_cli.verify.curl import probe_all

    return probe_all(itertools.chain([first], work), options, progress, pace)


def request_headers(options: VerifyOptions, encoding: str | None) -> dict[str, str]:
    """The headers of one probe: -H values, and the Accept-Encoding of this variant."""
    headers = {"Accept-Encoding": DEFAULT_ACCEPT_ENCODING}
    for name, value in options.headers:
        if name.lower() == "accept-encoding":
            headers.pop("Accept-Encoding", None)
        headers[name] = value
    if encoding is not None:
        headers["Accept-Encoding"] = encoding
    return headers


def describe_error(exc: BaseException, timeout: float) -> str:
    """One line for a failed request: which phase timed out, or what the connection said."""
    import httpx

    if isinstance(exc, httpx.TimeoutException):
        phase = {
            httpx.ConnectTimeout: "connecting",
            httpx.ReadTimeout: "waiting for the response",
            httpx.WriteTimeout: "sending the request",
            httpx.PoolTimeout: "waiting for a free connection",
        }.get(type(exc), "")
        return f"timed out after {timeout:g} s" + (f" {phase}" if phase else "")
    text = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect: {text}"
    return f"{type(exc).__name__}: {text}"


def check_trust(ca_bundle: str | None) -> None:
    """That the trust store (SSL_CERT_FILE's, SSL_CERT_DIR's or certifi's), or the bundle
    that replaces it, can be read (UsageError, ConfigError): once per process, not once per
    group of a job's probes (18 ms each)."""
    _check_trust(ca_bundle, os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))


@functools.lru_cache(maxsize=8)
def _check_trust(ca_bundle: str | None, cert_file: str | None, cert_dir: str | None) -> None:
    ssl_context(ca_bundle)  # the environment's names are in the key


def ssl_context(ca_bundle: str | Sequence[str] | None = None) -> ssl.SSLContext:
    """A verifying TLS context; UsageError when a CA bundle cannot be loaded.

    Verification is always on. A CA bundle (or several: each providers' own) replaces the
    default trust store, as curl's --cacert does; without one, httpx honours SSL_CERT_FILE /
    SSL_CERT_DIR.
    """
    import ssl

    import httpx

    bundles = [ca_bundle] if isinstance(ca_bundle, str) else list(ca_bundle or ())
    if not bundles:
        try:
            return httpx.create_ssl_context(verify=True, trust_env=True)
        except (OSError, ssl.SSLError) as exc:  # SSL_CERT_FILE or SSL_CERT_DIR unreadable
            import os

            named = " and ".join(
                f"{name}={os.environ[name]}"
                for name in ("SSL_CERT_FILE", "SSL_CERT_DIR")
                if os.environ.get(name)
            )
            raise ConfigError(
                f"cannot load the CA certificates of {named or 'the system trust store'}: {exc}",
                hint="fix or unset it, or name a CA bundle: --ca-bundle, or ca_bundle in the"
                " provider's table",
            ) from exc
    try:
        context = ssl.create_default_context(cafile=bundles[0])
        for bundle in bundles[1:]:
            context.load_verify_locations(cafile=bundle)
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"cannot load CA bundle {' or '.join(bundles)}: {exc}") from exc
    return context


def pinned_client(
    pins: Sequence[Pin] = (),
    *,
    timeout: float = DEFAULT_TIMEOUT,
    ca_bundle: str | None = None,
    http2: bool = True,
    max_connections: int = DEFAULT_CONCURRENCY,
    user_agent: str = USER_AGENT,
) -> httpx.Client:
    """An httpx client for probing or warming a CDN edge, connecting as ``pins`` say.

    - ``pins``: (host, port or None, ip) entries, curl's ``--resolve``: a request to a pinned
      host connects to the IP, while the URL, the Host header and the TLS server name (SNI)
      stay the host's. Unpinned hosts resolve as usual. With pins, proxies are not used.
    - Redirects are not followed: a 3xx is the answer the CDN cached, or not.
    - No Accept-Encoding is added beyond httpx's default: pass the exact value per request
      (``identity`` explicitly); read bodies with ``response.iter_raw()`` to count the bytes
      as sent, undecoded.
    - ``timeout`` is per connect / read / write, in seconds. The caller closes the client.
    """
    import httpx

    context = ssl_context(ca_bundle)
    limits = httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_connections
    )
    transport = pinned_transport(pins, context, limits, http2=http2) if pins else None
    return httpx.Client(
        http2=http2,
        verify=context,
        timeout=httpx.Timeout(timeout),
        limits=limits,
        follow_redirects=False,
        trust_env=True,
        transport=transport,
        headers={"User-Agent": user_agent},
    )


def pinned_transport(
    pins: Sequence[Pin], context: ssl.SSLContext, limits: httpx.Limits, *, http2: bool = True
) -> httpx.HTTPTransport:
    """An HTTP transport whose TCP connections go to the pinned IPs; Host and SNI unchanged.

    httpcore takes the Host header and the TLS server name from the request URL and only
    asks the network backend for a TCP connection to (host, port): rewriting that one call
    is exactly curl's --resolve. A pin with a port applies to that port only; one without,
    to every port; the last of two pins for the same host and port wins.
    """
    import httpcore
    import httpx

    table = {(p.host, p.port): p.ip for p in pins}

    class PinnedBackend(httpcore.NetworkBackend):
        def __init__(self) -> None:
            self._inner = httpcore.SyncBackend()

        def connect_tcp(
            self,
            host: str,
            port: int,
            timeout: float | None = None,
            local_address: str | None = None,
            socket_options: Iterable[Any] | None = None,
        ) -> httpcore.NetworkStream:
            key = host.lower().rstrip(".")
            ip = table.get((key, port)) or table.get((key, None))
            return self._inner.connect_tcp(ip or host, port, timeout, local_address, socket_options)

        def connect_unix_socket(
            self, path: str, timeout: float | None = None, socket_options: Any = None
        ) -> httpcore.NetworkStream:
            return self._inner.connect_unix_socket(path, timeout, socket_options)

        def sleep(self, seconds: float) -> None:
            self._inner.sleep(seconds)

    transport = httpx.HTTPTransport(verify=context, http2=http2, limits=limits, trust_env=False)
    # httpx has no public hook for the network backend; its pool is rebuilt with the same
    # settings and ours (httpcore's public API). With pins, HTTPS_PROXY is not used.
    transport._pool = httpcore.ConnectionPool(
        ssl_context=context,
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        http1=True,
        http2=http2,
        network_backend=PinnedBackend(),
    )
    return transport
