"""Cache-status classification: what a response's cache headers say (DESIGN §7).

The classification is table-driven: each vendor header is one small rule in ``RULES``.
Every recognised header that is present gives a signal; when they all agree that is the
answer, and when they disagree, or when none is present, the answer is ``unknown`` with the
headers that were seen. A header can come from a cache further from us (passed through, or
even stored along with the response), so we never pick one of two contradicting claims, but
for one case known well: a Qiniu fusion domain's partner edge, whose X-Cache decides over the
X-Qnm-Cache stored with the object.

``verify`` and the ``direct`` provider both read responses with :func:`classify`. This module
imports only the standard library.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Protocol

HIT = "hit"
MISS = "miss"
REVALIDATED = "revalidated"
BYPASS = "bypass"
UNKNOWN = "unknown"
CACHE_VALUES = (HIT, MISS, REVALIDATED, BYPASS, UNKNOWN)
WARM = frozenset({HIT, REVALIDATED})

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


def _rule_headers(rules: Sequence[HeaderRule]) -> tuple[str, ...]:
    wanted = {r.header for r in rules}
    for rule in rules:
        if isinstance(rule, Rule):
            wanted.update(name for name, _ in rule.pop if name)
    return tuple(sorted(wanted))


_RULE_HEADERS = _rule_headers(RULES)
VERDICT_HEADERS = _RULE_HEADERS  # the only headers cache_verdict reads


def cache_verdict(headers: Mapping[str, str]) -> tuple[str, str | None]:
    """classify()'s (cache, pop) for headers with lower-case names, remembered for the values
    of the headers the rules read: cheap enough to call once per warm request."""
    return _verdict(tuple(map(headers.get, _RULE_HEADERS)))


@lru_cache(maxsize=4096)
def _verdict(values: tuple[str | None, ...]) -> tuple[str, str | None]:
    seen = {n: v for n, v in zip(_RULE_HEADERS, values, strict=True) if v is not None}
    result = classify(seen)
    return result.cache, result.pop


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


_FUSION_PARTNER = re.compile(r"\bTCP_|\(baishan\)", re.IGNORECASE)


def _decide(signals: Sequence[Signal]) -> tuple[str, Signal | None, str]:
    if not signals:
        return UNKNOWN, None, ""
    outer = [
        s
        for s in signals
        if s.source == GENERIC_X_CACHE.header
        and s.cache != UNKNOWN
        and _FUSION_PARTNER.search(s.value)
    ]
    inner = [s for s in signals if s.source == QINIU.header]
    if outer and inner and {s.cache for s in inner} != {s.cache for s in outer}:
        # A Qiniu fusion domain served by a partner edge (Alibaba's TCP_..., Baishan's
        # "(baishan)"): X-Qnm-Cache was cached with the object; the outer X-Cache is what
        # this request met (Qiniu's fact sheet). Any other X-Cache (an origin's) decides
        # nothing.
        rest = [s for s in signals if s.source != QINIU.header]
        cache, chosen, described = _decide(rest)
        note = "; ".join(f"{s.describe()} (cached with the object)" for s in inner)
        return cache, chosen, f"{described}; {note}"
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


def is_warm(result: Mapping[str, Any]) -> bool:
    """A result (dict) that proves the URL warm: 2xx, hit or revalidated, no error."""
    return is_cached(result) and result["status_code"] < 300


def is_cached(result: Mapping[str, Any]) -> bool:
    """A result (dict) that the cache answered with what it holds for the URL: a 2xx or a
    3xx (a redirect, cached as direct warming warms it), hit or revalidated, no error. What
    a vendor's `succeeded` is held to (a cached 404 is a hit, but not the URL's copy)."""
    code = result.get("status_code")
    return (
        result.get("error") is None
        and isinstance(code, int)
        and 200 <= code < 400
        and result.get("cache") in WARM
    )


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
