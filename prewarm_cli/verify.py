"""Cache-status probing: request each URL and read what the CDNs' cache headers say (DESIGN §7).

The classification is table-driven: each vendor header is one small rule in ``RULES``.
Every recognised header that is present gives a signal; when they all agree that is the
answer, and when they disagree, or when none is present, the answer is ``unknown`` with the
headers that were seen. A header can come from a cache further from us (passed through, or
even stored along with the response), so we never pick one of two contradicting claims.

httpx is imported only when requests are really made, so that ``prewarm --help`` stays fast.
"""

from __future__ import annotations

import ipaddress
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from prewarm_cli import __version__
from prewarm_cli.errors import ExitCode, InputError, UsageError

if TYPE_CHECKING:
    import httpx

    from prewarm_cli.output import Output

HIT = "hit"
MISS = "miss"
REVALIDATED = "revalidated"
BYPASS = "bypass"
UNKNOWN = "unknown"
CACHE_VALUES = (HIT, MISS, REVALIDATED, BYPASS, UNKNOWN)
WARM = frozenset({HIT, REVALIDATED})

METHODS = ("HEAD", "GET")
# What browsers send (minus zstd, which few CDNs cache separately yet): the variant users get.
DEFAULT_ACCEPT_ENCODING = "gzip, deflate, br"
DEFAULT_CONCURRENCY = 16
DEFAULT_TIMEOUT = 10.0
DEFAULT_RETRIES = 2
MAX_LISTED_INVALID = 50
_RETRY_BACKOFF = 0.1  # seconds; doubled per attempt (connection errors only)

# Headers worth showing beside the verdict, besides those the rules read and any header whose
# name mentions "cache" (X-Proxy-Cache, Akamai-Cache-Status, X-Swift-CacheTime, ...).
_CONTEXT_HEADERS = frozenset(
    {
        "age",
        "via",
        "vary",
        "cache-control",
        "content-encoding",
        "content-length",
        "location",
        "x-served-by",
        "x-amz-cf-id",
        "eo-log-uuid",
        "x-m-reqid",
    }
)


# --------------------------------------------------------------------------- classification


@dataclass(frozen=True)
class Signal:
    """What one header says about the cache."""

    cache: str
    source: str  # the header that says it, lower case
    value: str  # the list member (or whole value) that decided
    pop: str | None = None
    note: str | None = None

    def describe(self) -> str:
        text = f"{self.source}: {self.value}"
        return f"{text} ({self.note})" if self.note else text


@dataclass(frozen=True)
class Classification:
    """The verdict for one response, and why."""

    cache: str
    pop: str | None
    age: int | None
    source: str | None  # the header that decided; None when nothing did
    detail: str
    headers: dict[str, str] = field(default_factory=dict)  # the cache-related headers seen


class HeaderRule(Protocol):
    """A rule reads one vendor header (when present) into a Signal."""

    @property
    def header(self) -> str: ...

    def read(self, headers: Mapping[str, str]) -> Signal | None: ...


@dataclass(frozen=True)
class Rule:
    """A vendor header whose list members are looked up in a table.

    The value is a comma list when several caches wrote it; the last member (the cache
    nearest to us) decides. Patterns are full, case-insensitive matches, first one wins; a
    present header whose member matches no pattern gives ``unknown``, never a guess.
    """

    vendor: str
    header: str
    table: tuple[tuple[str, str], ...]
    # A member must contain this to be the vendor's; others are skipped (e.g. an origin's
    # own X-Cache ahead of CloudFront's).
    claim: str | None = None
    # A value containing this belongs to another rule: this one ignores the header.
    disclaim: str | None = None
    # Where the PoP is: (header, regex with one group); "" as header means the member itself.
    pop: tuple[tuple[str, str], ...] = ()

    def read(self, headers: Mapping[str, str]) -> Signal | None:
        value = headers.get(self.header)
        if value is None or not value.strip():
            return None
        if self.disclaim and re.search(self.disclaim, value, re.IGNORECASE):
            return None
        members = [m.strip() for m in _split_outside_quotes(value, ",") if m.strip()]
        if self.claim:
            members = [m for m in members if re.search(self.claim, m, re.IGNORECASE)]
        if not members:
            return None
        member = members[-1]
        pop = self._pop(headers, member)
        for pattern, cache in self.table:
            if re.fullmatch(pattern, member, re.IGNORECASE):
                return Signal(cache, self.header, member, pop)
        return Signal(UNKNOWN, self.header, member, pop, f"not a known {self.vendor} value")

    def _pop(self, headers: Mapping[str, str], member: str) -> str | None:
        for name, pattern in self.pop:
            text = member if not name else headers.get(name)
            if text:
                match = re.search(pattern, text, re.IGNORECASE)
                if match:
                    return match.group(1)
        return None


@dataclass(frozen=True)
class CacheStatusMember:
    """One cache's entry in an RFC 9211 Cache-Status list."""

    cache: str  # the cache's name
    params: dict[str, str | bool]
    raw: str


def parse_cache_status(value: str) -> list[CacheStatusMember]:
    """The members of a Cache-Status field, first (nearest the origin) to last."""
    members = []
    for raw in _split_outside_quotes(value, ","):
        raw = raw.strip()
        if not raw:
            continue
        name, *params = _split_outside_quotes(raw, ";")
        parsed: dict[str, str | bool] = {}
        for param in params:
            key, sep, val = param.strip().partition("=")
            key = key.strip().lower()
            if not key:
                continue
            val = val.strip()
            if not sep or val == "?1":
                parsed[key] = True
            elif val == "?0":
                parsed[key] = False
            else:
                parsed[key] = _unquote(val)
        members.append(CacheStatusMember(_unquote(name.strip()), parsed, raw))
    return members


# RFC 9211 §2.2 fwd values: why the cache forwarded the request.
_FWD = {
    "uri-miss": MISS,  # nothing stored for this URI
    "vary-miss": MISS,  # stored, but for other values of the Vary headers
    "miss": MISS,
    "partial": MISS,  # only part of the response was stored
    "bypass": BYPASS,  # the cache was configured not to handle this request
    "method": BYPASS,  # the request method is not cacheable
}


@dataclass(frozen=True)
class CacheStatusRule:
    """RFC 9211 ``Cache-Status``: the last member (the cache nearest the client) decides."""

    header: str = "cache-status"

    def read(self, headers: Mapping[str, str]) -> Signal | None:
        value = headers.get(self.header)
        if value is None:
            return None
        members = parse_cache_status(value)
        if not members:
            return None
        return self.member_signal(members[-1])

    def member_signal(self, member: CacheStatusMember) -> Signal:
        params = member.params
        fwd = params.get("fwd")
        status = params.get("fwd-status")

        def sig(cache: str, note: str | None = None) -> Signal:
            return Signal(cache, self.header, member.raw, None, note)

        if params.get("hit") is True:
            return sig(HIT)
        if not isinstance(fwd, str):
            return sig(UNKNOWN, "neither hit nor fwd")
        fwd = fwd.lower()
        if fwd in ("stale", "request") and status == "304":
            return sig(REVALIDATED)
        if fwd == "stale":
            return sig(MISS)
        if fwd == "request":
            # The cache held a fresh copy, but the request (e.g. -H 'Cache-Control: no-cache')
            # did not allow its use.
            return sig(BYPASS, "the request's own headers made the cache forward it")
        if fwd in _FWD:
            return sig(_FWD[fwd])
        return sig(UNKNOWN, f"unknown fwd value {fwd!r}")


_LAST = r"([^,\s]+)\s*$"

CLOUDFRONT = Rule(
    "CloudFront",
    "x-cache",
    claim=r"\bfrom cloudfront\b",
    table=(
        (r"hit from cloudfront", HIT),
        (r"refreshhit from cloudfront", REVALIDATED),  # stale, origin answered 304
        (r"miss from cloudfront", MISS),
        # Served by the origin shield: the edge itself did not have it.
        (r"originshieldhit from cloudfront", MISS),
        # Generated at the edge without a cache lookup.
        (r"(?:redirect|lambdageneratedresponse|functiongeneratedresponse) from cloudfront", BYPASS),
        # Error, LimitExceeded, CapacityExceeded, Lambda*Error...: no claim either way.
    ),
    pop=(("x-amz-cf-pop", _LAST),),
)

EDGEONE = Rule(
    "EdgeOne",
    "eo-cache-status",
    table=(
        (r"hit", HIT),
        (r"refreshhit", REVALIDATED),  # expired, origin answered 304
        # MISS also covers "expired and the origin sent a new copy". EXPIRED is not in the
        # documentation; if it appears it can only mean the copy was not served fresh.
        (r"miss|expired", MISS),
    ),
)

QINIU = Rule(
    "Qiniu",
    "x-qnm-cache",
    table=((r"hit", HIT), (r"miss", MISS)),
    # X-M-Log: QNM:<cache node>;QNM3 names the Qiniu node that answered.
    pop=(("x-m-log", r"\bQNM:([^;,\s]+)"),),
)

CLOUDFLARE = Rule(
    "Cloudflare",
    "cf-cache-status",
    table=(
        (r"hit|stale|updating", HIT),  # stale/updating: served from the cache while refreshing
        (r"revalidated", REVALIDATED),
        (r"miss|expired", MISS),
        (r"bypass|dynamic", BYPASS),
    ),
    pop=(("cf-ray", r"-([a-z]{3,4})\s*$"),),
)

GENERIC_X_CACHE = Rule(
    "X-Cache",
    "x-cache",
    disclaim=r"\bfrom cloudfront\b",
    table=(
        (r"(?:tcp_)?refresh_?hit\b.*|tcp_expired_hit\b.*|revalidated\b.*", REVALIDATED),
        (r"tcp_remote_hit\b.*", MISS),  # Azure: served by the regional tier, not the edge
        (r"(?:tcp_)?(?:mem_|disk_|ims_)?hit\b.*", HIT),
        (r"(?:tcp_)?(?:refresh_|client_refresh_|expired_)?miss\b.*|expired\b.*", MISS),
        (r"bypass\b.*|pass\b.*|private_nostore\b.*|config_nocache\b.*", BYPASS),
    ),
    # Fastly lists its caches in X-Served-By; Squid-style values say "HIT from <cache>".
    pop=(("x-served-by", _LAST), ("", r"\bfrom\s+(\S+)")),
)

# Order only decides which agreeing signal names the PoP and the source.
RULES: tuple[HeaderRule, ...] = (
    CacheStatusRule(),
    CLOUDFRONT,
    EDGEONE,
    QINIU,
    CLOUDFLARE,
    GENERIC_X_CACHE,
)


def cache_headers(
    headers: Mapping[str, str], rules: Sequence[HeaderRule] = RULES
) -> dict[str, str]:
    """The cache-related headers of a response, lower-case names, in response order."""
    wanted = {r.header for r in rules}
    for rule in rules:
        if isinstance(rule, Rule):
            wanted.update(name for name, _ in rule.pop if name)
    seen = {}
    for name, value in headers.items():
        key = name.lower()
        if key in wanted or key in _CONTEXT_HEADERS or "cache" in key:
            seen[key] = value
    return seen


def parse_age(value: str | None) -> int | None:
    """The Age header's seconds, or None when absent or malformed."""
    if value is None:
        return None
    first = value.split(",")[0].strip()
    return int(first) if first.isascii() and first.isdigit() else None


def classify(
    headers: Mapping[str, str],
    status_code: int | None = None,
    rules: Sequence[HeaderRule] = RULES,
) -> Classification:
    """What the response's cache headers say: hit, miss, revalidated, bypass or unknown."""
    lower = {k.lower(): v for k, v in headers.items()}
    seen = cache_headers(lower, rules)
    age = parse_age(lower.get("age"))
    signals = [s for s in (rule.read(lower) for rule in rules) if s is not None]
    cache, chosen, detail = _decide(signals)
    if not signals:
        others = [f"{k}: {v}" for k, v in seen.items() if k not in _CONTEXT_HEADERS]
        detail = "no recognised cache-status header"
        if others:
            detail += " (seen: " + "; ".join(others) + ")"
        if age is not None:
            detail += f"; Age: {age} alone does not prove a cache hit"
    if status_code is not None and not 200 <= status_code < 300:
        detail += f"; HTTP {status_code} is not a warm copy of the URL"
    return Classification(
        cache=cache,
        pop=chosen.pop if chosen else None,
        age=age,
        source=chosen.source if chosen else None,
        detail=detail,
        headers=seen,
    )


def _decide(signals: Sequence[Signal]) -> tuple[str, Signal | None, str]:
    if not signals:
        return UNKNOWN, None, ""
    values = {s.cache for s in signals}
    if values == {HIT, REVALIDATED}:
        values = {REVALIDATED}  # both say "served from the cache"; keep the weaker claim
    described = "; ".join(s.describe() for s in signals)
    if len(values) == 1 and UNKNOWN not in values:
        (cache,) = values
        chosen = next(s for s in signals if s.cache == cache)
        pop = chosen.pop or next((s.pop for s in signals if s.pop), None)
        return cache, Signal(cache, chosen.source, chosen.value, pop), described
    if values == {UNKNOWN}:
        return UNKNOWN, signals[0], described
    return UNKNOWN, None, "cache headers disagree: " + described


# --------------------------------------------------------------------------- options


class Pin(NamedTuple):
    """A --resolve entry: connect to ``ip`` for ``host`` (on ``port``, or any port)."""

    host: str
    port: int | None
    ip: str


def parse_resolve(spec: str) -> Pin:
    """HOST[:PORT]:IP as curl's --resolve takes it (IPv6 in brackets or bare); UsageError else."""
    usage = f"--resolve {spec!r} is not HOST[:PORT]:IP (e.g. cdn.example.com:443:203.0.113.7)"
    host, sep, rest = spec.strip().partition(":")
    host = host.strip().lower().rstrip(".")
    if not sep or not host or any(c in host for c in "/[]@ ") or not rest:
        raise UsageError(usage)
    port: int | None = None
    # As in curl, a number followed by an address is a port; so an IPv6 address without a
    # port goes in brackets: HOST:[2001:db8::1].
    match = re.fullmatch(r"(\d{1,5}):(.+)", rest)
    ip = _ip(match.group(2)) if match else None
    if match and ip is not None:
        port = int(match.group(1))
        if not 1 <= port <= 65535:
            raise UsageError(f"--resolve {spec!r}: port must be a number from 1 to 65535")
    else:
        ip = _ip(rest)
    if ip is None:
        raise UsageError(usage)
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise UsageError(usage) from exc
    return Pin(host, port, ip)


def _ip(text: str) -> str | None:
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


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


# --------------------------------------------------------------------------- probing


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


def is_warm(result: Mapping[str, Any]) -> bool:
    """A result (dict) that proves the URL warm: 2xx, hit or revalidated, no error."""
    code = result.get("status_code")
    return (
        result.get("error") is None
        and isinstance(code, int)
        and 200 <= code < 300
        and result.get("cache") in WARM
    )


def planned_requests(n_urls: int, options: VerifyOptions) -> int:
    """How many requests verify() makes for n_urls distinct URLs (the progress total)."""
    return n_urls * len(options.variants())


def verify(
    urls: Iterable[str],
    options: VerifyOptions | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Requests every URL (once per encoding) and classifies it: ``{results, summary}``."""
    options = options or VerifyOptions()
    distinct = list(dict.fromkeys(urls))
    work = [(url, enc) for url in distinct for enc in options.variants()]
    probes = _run(work, options, progress)
    results = [p.to_dict() for p in probes]
    return {"results": results, "summary": summarize(results)}


def verify_against_claims(
    urls: Iterable[str],
    claims: Mapping[str, str],
    options: VerifyOptions | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """verify(), with each vendor's claimed state beside what was observed.

    Each result gets ``vendor`` (the normalized state the vendor reported for the URL, or
    None) and ``mismatch``: the vendor says ``succeeded`` but the URL is not warm here.
    The summary gets ``mismatches`` (counted per request, like ``total``).
    """
    result = verify(urls, options, progress)
    for item in result["results"]:
        claim = claims.get(item["url"])
        item["vendor"] = claim
        item["mismatch"] = claim == "succeeded" and not is_warm(item)
    result["summary"]["mismatches"] = sum(1 for r in result["results"] if r["mismatch"])
    return result


def summarize(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Counts per cache value (they add up to total), errors, non-2xx, warm, hit_ratio."""
    total = len(results)
    counts = dict.fromkeys(CACHE_VALUES, 0)
    for r in results:
        counts[r["cache"]] = counts.get(r["cache"], 0) + 1
    errors = sum(1 for r in results if r.get("error"))
    non_2xx = sum(
        1
        for r in results
        if isinstance(r.get("status_code"), int) and not 200 <= r["status_code"] < 300
    )
    # A cached 404 is a hit for the CDN, but not a warm copy of the URL: only 2xx hits count.
    ok_hits = sum(1 for r in results if r["cache"] == HIT and is_warm(r))
    return {
        "total": total,
        **counts,
        "errors": errors,
        "non_2xx": non_2xx,
        "warm": sum(1 for r in results if is_warm(r)),
        "hit_ratio": round(ok_hits / total, 4) if total else 0.0,
    }


def exit_code(result: Mapping[str, Any], expect_hit: bool = False) -> ExitCode:
    """4 when a request failed, a vendor's "succeeded" was contradicted, or (expect_hit) a
    URL is not warm; else 0."""
    results = result["results"]
    if any(r.get("error") for r in results) or result["summary"].get("mismatches"):
        return ExitCode.INCOMPLETE
    if expect_hit and not all(is_warm(r) for r in results):
        return ExitCode.INCOMPLETE
    return ExitCode.OK


def read_urls(
    args: Sequence[str], files: Sequence[str] = (), sitemaps: Sequence[str] = ()
) -> list[str]:
    """The distinct valid input URLs, in order; InputError listing the invalid ones."""
    from prewarm_cli.urls import InvalidInput, check_inputs, iter_inputs, unique

    valid: list[str] = []
    invalid: list[InvalidInput] = []
    n_invalid = 0
    for item in check_inputs(iter_inputs(args, files, sitemaps)):
        if isinstance(item, InvalidInput):
            n_invalid += 1
            if len(invalid) < MAX_LISTED_INVALID:
                invalid.append(item)
        else:
            valid.append(item.url)
    if n_invalid:
        lines = [str(i) for i in invalid]
        if n_invalid > len(invalid):
            lines.append(f"... and {n_invalid - len(invalid)} more")
        raise InputError(
            f"{n_invalid} invalid input line(s); nothing was requested:\n  " + "\n  ".join(lines)
        )
    if not valid:
        raise InputError(
            "no URLs to verify", hint="pass URLs as arguments, with -i FILE (or - for stdin)"
        )
    return list(unique(valid))


def _run(
    work: Sequence[tuple[str, str | None]],
    options: VerifyOptions,
    progress: Callable[[int], None] | None,
) -> list[ProbeResult]:
    results: list[ProbeResult | None] = [None] * len(work)
    if not work:
        return []
    client = _build_client(options)
    pool = ThreadPoolExecutor(
        max_workers=min(options.concurrency, len(work)), thread_name_prefix="prewarm-verify"
    )
    pending: dict[Future[ProbeResult], int] = {}
    queue = iter(enumerate(work))
    window = options.concurrency * 2  # bounded: a million URLs do not become a million futures
    try:
        while True:
            while len(pending) < window:
                item = next(queue, None)
                if item is None:
                    break
                index, (url, enc) = item
                pending[pool.submit(_probe, client, url, enc, options)] = index
            if not pending:
                break
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                results[pending.pop(future)] = future.result()
                if progress is not None:
                    progress(1)
    except BaseException:
        # Ctrl-C: drop what has not started, and close the connections under the rest.
        pool.shutdown(wait=False, cancel_futures=True)
        client.close()
        raise
    pool.shutdown(wait=True)
    client.close()
    return [r for r in results if r is not None]


def _request_headers(options: VerifyOptions, encoding: str | None) -> dict[str, str]:
    headers = {"Accept-Encoding": DEFAULT_ACCEPT_ENCODING}
    for name, value in options.headers:
        if name.lower() == "accept-encoding":
            headers.pop("Accept-Encoding", None)
        headers[name] = value
    if encoding is not None:
        headers["Accept-Encoding"] = encoding
    return headers


def _probe(
    client: httpx.Client, url: str, encoding: str | None, options: VerifyOptions
) -> ProbeResult:
    import httpx

    headers = _request_headers(options, encoding)
    sent_encoding = next((v for k, v in headers.items() if k.lower() == "accept-encoding"), None)
    attempt = 0
    while True:
        started = time.monotonic()
        response: httpx.Response | None = None
        try:
            with client.stream(options.method, url, headers=headers) as response:
                size: int | None = None
                error: str | None = None
                if options.method == "GET":
                    size = 0
                    try:
                        # Raw: counted as sent (compressed), never decoded nor kept.
                        for chunk in response.iter_raw():
                            size += len(chunk)
                    except httpx.HTTPError as exc:
                        error = f"{_describe(exc, options)} after {size} bytes of the body"
                elapsed = time.monotonic() - started
                verdict = classify(response.headers, response.status_code)
                return ProbeResult(
                    url=url,
                    accept_encoding=sent_encoding,
                    status_code=response.status_code,
                    cache=verdict.cache,
                    pop=verdict.pop,
                    age=verdict.age,
                    bytes=size,
                    elapsed_ms=round(elapsed * 1000),
                    headers=verdict.headers,
                    error=error,
                    source=verdict.source,
                    detail=verdict.detail,
                    http_version=response.http_version,
                )
        except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError) as exc:
            # Only a request that never got an answer is sent again: nothing reached the CDN
            # (connect) or the connection died before any response (e.g. a stale keep-alive).
            retryable = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout) or (
                isinstance(exc, httpx.RemoteProtocolError) and response is None
            )
            if retryable and attempt < options.retries:
                time.sleep(_RETRY_BACKOFF * 2**attempt)
                attempt += 1
                continue
            suffix = f" (after {attempt + 1} attempts)" if attempt else ""
            return ProbeResult(
                url=url,
                accept_encoding=sent_encoding,
                status_code=None,
                cache=UNKNOWN,
                pop=None,
                age=None,
                bytes=None,
                elapsed_ms=round((time.monotonic() - started) * 1000),
                headers={},
                error=_describe(exc, options) + suffix,
                detail="no response",
            )


def _describe(exc: BaseException, options: VerifyOptions) -> str:
    import httpx

    if isinstance(exc, httpx.TimeoutException):
        phase = {
            httpx.ConnectTimeout: "connecting",
            httpx.ReadTimeout: "waiting for the response",
            httpx.WriteTimeout: "sending the request",
            httpx.PoolTimeout: "waiting for a free connection",
        }.get(type(exc), "")
        return f"timed out after {options.timeout:g} s" + (f" {phase}" if phase else "")
    text = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect: {text}"
    return f"{type(exc).__name__}: {text}"


def _build_client(options: VerifyOptions) -> httpx.Client:
    import ssl

    import httpx

    # Verification is always on. A CA bundle replaces the default trust store, as curl's
    # --cacert does; without one, httpx honours SSL_CERT_FILE / SSL_CERT_DIR.
    if options.ca_bundle:
        try:
            context = ssl.create_default_context(cafile=options.ca_bundle)
        except (OSError, ssl.SSLError) as exc:
            raise UsageError(f"cannot load CA bundle {options.ca_bundle}: {exc}") from exc
    else:
        context = httpx.create_ssl_context(verify=True, trust_env=True)
    limits = httpx.Limits(
        max_connections=options.concurrency, max_keepalive_connections=options.concurrency
    )
    pins = options.pins()
    transport = _pinned_transport(pins, context, limits) if pins else None
    return httpx.Client(
        http2=True,
        verify=context,
        timeout=httpx.Timeout(options.timeout),
        limits=limits,
        follow_redirects=False,  # a 3xx is the answer: the CDN cached the redirect, or not
        trust_env=True,
        transport=transport,
        headers={"User-Agent": f"prewarm-cli/{__version__} (verify)"},
    )


def _pinned_transport(
    pins: Sequence[Pin], context: Any, limits: httpx.Limits
) -> httpx.HTTPTransport:
    """An HTTP transport whose TCP connections go to the pinned IPs; Host and SNI unchanged.

    httpcore takes the Host header and the TLS server name from the request URL and only
    asks the network backend for a TCP connection to (host, port): rewriting that one call
    is exactly curl's --resolve.
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

    transport = httpx.HTTPTransport(verify=context, http2=True, limits=limits, trust_env=False)
    # httpx has no public hook for the network backend; its pool is rebuilt with the same
    # settings and ours (httpcore's public API). With pins, HTTPS_PROXY is not used.
    transport._pool = httpcore.ConnectionPool(
        ssl_context=context,
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        http1=True,
        http2=True,
        network_backend=PinnedBackend(),
    )
    return transport


# --------------------------------------------------------------------------- rendering

_CACHE_STYLE = {
    HIT: "green",
    REVALIDATED: "green",
    MISS: "red",
    BYPASS: "yellow",
    UNKNOWN: "magenta",
}


def records(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """ndjson lines: one per URL (per encoding)."""
    return list(result["results"])


def summary_line(summary: Mapping[str, Any]) -> str:
    """One line: counts, errors, hit ratio (and mismatches with vendor claims)."""
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
    show_enc = len({r["accept_encoding"] for r in rows_in}) > 1
    show_bytes = any(r["bytes"] is not None for r in rows_in)
    show_vendor = any("vendor" in r for r in rows_in)
    columns = ["url"]
    columns += ["accept-encoding"] if show_enc else []
    columns += ["status", "cache", "pop", "age"]
    columns += ["bytes"] if show_bytes else []
    columns += ["ms"]
    columns += ["vendor"] if show_vendor else []
    columns += ["note"]
    rows = []
    for r in rows_in:
        code = r["status_code"]
        status: Any = "-" if code is None else str(code)
        if code is not None and not 200 <= code < 300:
            status = Text(str(code), style="bold yellow")
        cache = Text(r["cache"], style=_CACHE_STYLE.get(r["cache"], "default"))
        note = r["error"] or ("" if is_warm(r) else r.get("detail") or "")
        row: list[Any] = [r["url"]]
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


# --------------------------------------------------------------------------- helpers


def _split_outside_quotes(text: str, sep: str) -> list[str]:
    parts: list[str] = []
    buf: list[str] = []
    quoted = escaped = False
    for ch in text:
        if escaped:
            escaped = False
        elif quoted and ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == sep and not quoted:
            parts.append("".join(buf))
            buf = []
            continue
        buf.append(ch)
    parts.append("".join(buf))
    return parts


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return re.sub(r"\\(.)", r"\1", text[1:-1])
    return text
