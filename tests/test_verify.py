"""Tests for cache-status probing (prewarm_cli/verify/) against a fake CDN edge."""

from __future__ import annotations

import gzip
import io
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest
from fakes.cache_server import VENDOR_ROUTES, CacheServer, Route
from fakes.tcp_front import TcpFront
from helpers import wait_for

from prewarm_cli.errors import ExitCode, InputError, UsageError
from prewarm_cli.inputs import InputSpec
from prewarm_cli.output import Output
from prewarm_cli.verify import probe
from prewarm_cli.verify.classify import (
    BYPASS,
    HIT,
    MISS,
    REVALIDATED,
    UNKNOWN,
    classify,
    is_warm,
    parse_cache_status,
)
from prewarm_cli.verify.pins import Pin, parse_resolve
from prewarm_cli.verify.probe import (
    DEFAULT_ACCEPT_ENCODING,
    VerifyOptions,
    against_claims,
    exit_code,
    read_urls,
    summarize,
    verify,
)
from prewarm_cli.verify.render import records, render_table

FAST = VerifyOptions(timeout=2.0)


def verify_against_claims(
    urls: list[str], claims: dict[str, str], options: VerifyOptions
) -> dict[str, Any]:
    """verify() with each result set beside its claim, and the summary's mismatches, as
    status --verify gives them (commands._render.ClaimsCheck)."""
    result = verify(urls, options)
    result["results"] = list(against_claims(result["results"], claims.get))
    result["summary"]["mismatches"] = sum(1 for r in result["results"] if r["mismatch"])
    return result


def _listed(spec: InputSpec) -> list[str]:
    """read_urls' distinct URLs as a list (they are kept on disk)."""
    with read_urls(spec) as found:
        return list(found)


@pytest.fixture
def edge() -> Iterator[CacheServer]:
    with CacheServer() as server:
        yield server


def one(server: CacheServer, path: str, options: VerifyOptions = FAST) -> dict[str, Any]:
    result = verify([server.url + path], options)
    assert len(result["results"]) == 1
    item: dict[str, Any] = result["results"][0]
    return item


# --------------------------------------------------------------------------- classify


CLASSIFY_CASES: list[tuple[str, dict[str, str], str, str | None, str | None]] = [
    # (case, headers, cache, pop, deciding header)
    (
        "cloudfront hit",
        {"X-Cache": "Hit from cloudfront", "X-Amz-Cf-Pop": "SIN2-P1", "Age": "12"},
        HIT,
        "SIN2-P1",
        "x-cache",
    ),
    ("cloudfront miss", {"X-Cache": "Miss from cloudfront"}, MISS, None, "x-cache"),
    ("cloudfront refresh", {"x-cache": "RefreshHit from cloudfront"}, REVALIDATED, None, "x-cache"),
    ("cloudfront shield", {"X-Cache": "OriginShieldHit from cloudfront"}, MISS, None, "x-cache"),
    (
        "cloudfront error",
        {"X-Cache": "Error from cloudfront", "X-Amz-Cf-Pop": "IAD89-C1"},
        UNKNOWN,
        "IAD89-C1",
        "x-cache",
    ),
    (
        "cloudfront lambda",
        {"X-Cache": "LambdaGeneratedResponse from cloudfront"},
        BYPASS,
        None,
        "x-cache",
    ),
    (
        "cloudfront function",
        {"X-Cache": "FunctionGeneratedResponse from cloudfront"},
        BYPASS,
        None,
        "x-cache",
    ),
    ("cloudfront redirect", {"X-Cache": "Redirect from cloudfront"}, BYPASS, None, "x-cache"),
    # An origin's own X-Cache ahead of CloudFront's: CloudFront's member decides.
    ("cloudfront after origin", {"X-Cache": "HIT, Miss from cloudfront"}, MISS, None, "x-cache"),
    ("edgeone hit", {"EO-Cache-Status": "HIT", "EO-LOG-UUID": "41"}, HIT, None, "eo-cache-status"),
    ("edgeone miss", {"EO-Cache-Status": "MISS"}, MISS, None, "eo-cache-status"),
    ("edgeone refresh", {"EO-Cache-Status": "RefreshHit"}, REVALIDATED, None, "eo-cache-status"),
    ("edgeone expired", {"EO-Cache-Status": "EXPIRED"}, MISS, None, "eo-cache-status"),
    ("edgeone novel", {"EO-Cache-Status": "STALE"}, UNKNOWN, None, "eo-cache-status"),
    (
        "qiniu hit",
        {"X-Qnm-Cache": "Hit", "X-M-Log": "QNM:cdn-cache-dls-zjwz-wz-1;QNM3"},
        HIT,
        "cdn-cache-dls-zjwz-wz-1",
        "x-qnm-cache",
    ),
    ("qiniu miss", {"X-Qnm-Cache": "Miss"}, MISS, None, "x-qnm-cache"),
    (
        "qiniu with partner edge",
        {"X-Qnm-Cache": "Hit", "X-Cache": "HIT from BC12_dx-yancheng-3-cache-1(baishan)"},
        HIT,
        "BC12_dx-yancheng-3-cache-1(baishan)",  # the agreeing partner edge names the node
        "x-qnm-cache",
    ),
    (  # a fusion domain's partner edge: the outer X-Cache decides (the fact sheet)
        "qiniu fusion",
        {"X-Qnm-Cache": "Miss", "X-Cache": "HIT TCP_MEM_HIT dirn:1"},
        HIT,
        None,
        "x-cache",
    ),
    (
        "cloudflare hit",
        {"CF-Cache-Status": "HIT", "CF-Ray": "8a1b2c3d4e5f6789-FRA"},
        HIT,
        "FRA",
        "cf-cache-status",
    ),
    ("cloudflare dynamic", {"CF-Cache-Status": "DYNAMIC"}, BYPASS, None, "cf-cache-status"),
    ("cloudflare expired", {"CF-Cache-Status": "EXPIRED"}, MISS, None, "cf-cache-status"),
    ("rfc9211 hit", {"Cache-Status": "ExampleCDN; hit; ttl=30"}, HIT, None, "cache-status"),
    (
        "rfc9211 last decides",
        {"Cache-Status": "Shield; hit, Edge; fwd=uri-miss"},
        MISS,
        None,
        "cache-status",
    ),
    (
        "rfc9211 last decides hit",
        {"Cache-Status": "Shield; fwd=miss, Edge; hit"},
        HIT,
        None,
        "cache-status",
    ),
    (
        "rfc9211 vary-miss",
        {"Cache-Status": "Edge; fwd=vary-miss; stored"},
        MISS,
        None,
        "cache-status",
    ),
    (
        "rfc9211 stale 304",
        {"Cache-Status": "Edge; fwd=stale; fwd-status=304"},
        REVALIDATED,
        None,
        "cache-status",
    ),
    (
        "rfc9211 stale 200",
        {"Cache-Status": "Edge; fwd=stale; fwd-status=200"},
        MISS,
        None,
        "cache-status",
    ),
    ("rfc9211 bypass", {"Cache-Status": "Edge; fwd=bypass"}, BYPASS, None, "cache-status"),
    ("rfc9211 method", {"Cache-Status": "Edge; fwd=method"}, BYPASS, None, "cache-status"),
    ("rfc9211 request", {"Cache-Status": "Edge; fwd=request"}, BYPASS, None, "cache-status"),
    ("rfc9211 partial", {"Cache-Status": "Edge; fwd=partial"}, MISS, None, "cache-status"),
    ("rfc9211 hit=?0", {"Cache-Status": "Edge; hit=?0"}, UNKNOWN, None, "cache-status"),
    ("rfc9211 bare", {"Cache-Status": "Edge"}, UNKNOWN, None, "cache-status"),
    (
        "rfc9211 quoted comma",
        {"Cache-Status": 'E; hit; key="a, b; c=d"'},
        HIT,
        None,
        "cache-status",
    ),
    (
        "fastly shield miss edge hit",
        {"X-Cache": "MISS, HIT", "X-Served-By": "cache-iad-IAD, cache-lhr7380-LHR"},
        HIT,
        "cache-lhr7380-LHR",
        "x-cache",
    ),
    ("generic list last decides", {"X-Cache": "HIT, MISS"}, MISS, None, "x-cache"),
    (
        "squid style",
        {"X-Cache": "MISS from proxy1.example.net"},
        MISS,
        "proxy1.example.net",
        "x-cache",
    ),
    (
        "akamai tcp hit",
        {"X-Cache": "TCP_MEM_HIT from a23-1-2-3.deploy.akamaitechnologies.com"},
        HIT,
        "a23-1-2-3.deploy.akamaitechnologies.com",
        "x-cache",
    ),
    ("azure remote hit", {"X-Cache": "TCP_REMOTE_HIT"}, MISS, None, "x-cache"),
    ("refresh hit", {"X-Cache": "TCP_REFRESH_HIT"}, REVALIDATED, None, "x-cache"),
    ("azure nostore", {"X-Cache": "PRIVATE_NOSTORE"}, BYPASS, None, "x-cache"),
    ("generic novel", {"X-Cache": "MAYBE"}, UNKNOWN, None, "x-cache"),
    (
        "agreeing hit + refresh",
        {"EO-Cache-Status": "RefreshHit", "X-Cache": "HIT"},
        REVALIDATED,
        None,
        "eo-cache-status",
    ),
    (
        "disagreeing vendors",
        {"Cache-Status": "Origin; hit", "X-Cache": "Miss from cloudfront"},
        UNKNOWN,
        None,
        None,
    ),
    ("age only", {"Age": "300"}, UNKNOWN, None, None),
    ("nothing", {"Content-Type": "text/html"}, UNKNOWN, None, None),
    ("unknown cdn", {"X-Proxy-Cache": "HIT", "Server": "NewCDN"}, UNKNOWN, None, None),
]


@pytest.mark.parametrize(
    ("headers", "cache", "pop", "source"),
    [c[1:] for c in CLASSIFY_CASES],
    ids=[c[0] for c in CLASSIFY_CASES],
)
def test_classify(headers: dict[str, str], cache: str, pop: str | None, source: str | None) -> None:
    verdict = classify(headers, 200)
    assert (verdict.cache, verdict.pop, verdict.source) == (cache, pop, source), verdict.detail


def test_classify_explains_itself() -> None:
    assert "alone does not prove" in classify({"Age": "5"}).detail
    assert classify({"Age": "5"}).age == 5
    unknown = classify({"X-Proxy-Cache": "HIT", "Server": "NewCDN", "Age": "x"})
    assert unknown.headers == {"x-proxy-cache": "HIT", "age": "x"}  # seen, never guessed from
    assert unknown.age is None
    assert "x-proxy-cache" in unknown.detail
    conflict = classify({"Cache-Status": "Origin; hit", "X-Cache": "Miss"})
    assert "disagree" in conflict.detail and "x-cache: Miss" in conflict.detail
    # A Qiniu fusion domain behind a partner edge: X-Qnm-Cache was cached with the object,
    # the outer X-Cache says what this request met (Qiniu's fact sheet).
    fusion = classify({"X-Qnm-Cache": "Miss", "X-Cache": "HIT TCP_MEM_HIT dirn:-2:-2"})
    assert (fusion.cache, fusion.source) == (HIT, "x-cache"), fusion.detail
    assert "x-qnm-cache: Miss (cached with the object)" in fusion.detail
    assert classify({"X-Qnm-Cache": "Hit", "X-Cache": "MISS TCP_MISS"}).cache == MISS
    assert classify({"X-Qnm-Cache": "Miss", "X-Cache": "HIT from n1(baishan)"}).cache == HIT
    # Any other X-Cache (an origin's, stored by Qiniu) decides nothing: they disagree.
    origin = classify({"X-Qnm-Cache": "Hit", "X-Cache": "MISS from varnish-origin"})
    assert origin.cache == UNKNOWN and "disagree" in origin.detail
    assert "HTTP 404" in classify({"X-Cache": "HIT"}, 404).detail


def test_parse_cache_status() -> None:
    members = parse_cache_status(
        'Shield; hit; ttl=300, "CDN, Inc"; fwd=uri-miss; stored; key="a;b"'
    )
    assert [m.cache for m in members] == ["Shield", "CDN, Inc"]
    assert members[0].params == {"hit": True, "ttl": "300"}
    assert members[1].params == {"fwd": "uri-miss", "stored": True, "key": "a;b"}
    assert parse_cache_status("") == []
    assert parse_cache_status('E; detail="say \\"hi\\""')[0].params["detail"] == 'say "hi"'


@pytest.mark.parametrize(
    ("spec", "pin"),
    [
        ("cdn.example.com:443:203.0.113.7", Pin("cdn.example.com", 443, "203.0.113.7")),
        ("CDN.Example.com:203.0.113.7", Pin("cdn.example.com", None, "203.0.113.7")),
        ("h.test:8443:[2001:db8::1]", Pin("h.test", 8443, "2001:db8::1")),
        ("h.test:443:2001:db8::1", Pin("h.test", 443, "2001:db8::1")),  # as curl reads it
        ("h.test:[::1]", Pin("h.test", None, "::1")),
        ("bücher.example:80:10.0.0.1", Pin("xn--bcher-kva.example", 80, "10.0.0.1")),
    ],
)
def test_parse_resolve(spec: str, pin: Pin) -> None:
    assert parse_resolve(spec) == pin


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "host",
        "host:",
        ":443:1.2.3.4",
        "host:443:not-an-ip",
        "host:99999:1.2.3.4",
        "a/b:1.2.3.4",
    ],
)
def test_parse_resolve_rejects(spec: str) -> None:
    with pytest.raises(UsageError, match="--resolve"):
        parse_resolve(spec)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "POST"}, "HEAD or GET"),
        ({"concurrency": 0}, "concurrency"),
        ({"timeout": 0}, "timeout"),
        ({"retries": -1}, "retries"),
        ({"encodings": ("gzip", " ")}, "accept-encoding"),
        ({"encodings": ("gzip",), "headers": (("Accept-Encoding", "br"),)}, "--accept-encoding"),
        ({"resolve": ("nonsense",)}, "--resolve"),
    ],
)
def test_options_are_checked_before_anything_is_sent(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        VerifyOptions(**kwargs)


def test_options_normalize() -> None:
    options = VerifyOptions(method="get", encodings=("gzip", "br", "gzip"))
    assert options.method == "GET"
    assert options.encodings == ("gzip", "br")


# --------------------------------------------------------------------------- against the edge


EDGE_CASES: list[tuple[str, int, str, str | None]] = [
    ("/cloudfront/hit", 200, HIT, "SIN2-P1"),
    ("/cloudfront/miss", 200, MISS, "FRA56-P5"),
    ("/cloudfront/refresh", 200, REVALIDATED, "NRT57-P2"),
    ("/cloudfront/error", 502, UNKNOWN, "IAD89-C1"),
    ("/cloudfront/lambda", 200, BYPASS, None),
    ("/edgeone/hit", 200, HIT, None),
    ("/edgeone/miss", 200, MISS, None),
    ("/edgeone/refresh", 200, REVALIDATED, None),
    ("/qiniu/hit", 200, HIT, "cdn-cache-dls-zjwz-wz-1"),
    ("/qiniu/miss", 200, MISS, "xs463"),
    ("/qiniu/layered-hit", 200, HIT, "tj11"),
    ("/qiniu/conflict", 200, HIT, None),  # the outer X-Cache decides
    ("/rfc9211/edge-miss", 200, MISS, None),
    ("/rfc9211/edge-hit", 200, HIT, None),
    ("/rfc9211/stale-304", 200, REVALIDATED, None),
    ("/rfc9211/bypass", 200, BYPASS, None),
    ("/generic/hit", 200, HIT, "cache-lhr7380-LHR"),
    ("/generic/miss", 200, MISS, None),
    ("/age-only", 200, UNKNOWN, None),
    ("/unknown-cdn", 200, UNKNOWN, None),
    ("/404-hit", 404, HIT, None),
    ("/redirect-301", 301, HIT, None),
    ("/redirect-302", 302, BYPASS, None),
]


def test_every_vendor_shape_end_to_end(edge: CacheServer) -> None:
    urls = [edge.url + path for path, *_ in EDGE_CASES]
    result = verify(urls, FAST)
    got = [(r["status_code"], r["cache"], r["pop"]) for r in result["results"]]
    assert got == [case[1:] for case in EDGE_CASES]
    assert [r["url"] for r in result["results"]] == urls  # input order kept
    assert all(r["error"] is None for r in result["results"])
    assert all(r["http_version"] == "HTTP/1.1" for r in result["results"])  # no TLS: no h2
    assert {r["method"] for r in edge.requests} == {"HEAD"}

    by_path = {r["url"].removeprefix(edge.url): r for r in result["results"]}
    cf = by_path["/cloudfront/hit"]
    assert cf["age"] == 1520 and cf["bytes"] is None and cf["source"] == "x-cache"
    assert cf["headers"]["x-cache"] == "Hit from cloudfront"
    assert cf["headers"]["x-amz-cf-pop"] == "SIN2-P1"
    assert cf["headers"]["x-amz-cf-id"] == "Jm9Hq2xRzA8b=="
    assert "content-type" not in cf["headers"]
    assert by_path["/edgeone/hit"]["headers"]["eo-log-uuid"] == "4105283880544427145"
    unknown = by_path["/unknown-cdn"]
    assert unknown["headers"] == {"x-proxy-cache": "HIT", "age": "9", "content-length": "0"}
    assert "x-proxy-cache" in unknown["detail"]
    assert "Age: 300 alone" in by_path["/age-only"]["detail"]

    summary = result["summary"]
    n = len(EDGE_CASES)
    assert summary["total"] == n
    assert sum(summary[v] for v in (HIT, MISS, REVALIDATED, BYPASS, UNKNOWN)) == n
    assert summary[HIT] == 9  # the 404 and the 301 included: that is what the CDN said
    assert summary["non_2xx"] == 4 and summary["errors"] == 0
    # ... but only 2xx hits count toward the hit ratio, and only 2xx hit/revalidated is warm.
    assert summary["hit_ratio"] == round(7 / n, 4)
    assert summary["warm"] == 7 + 3
    assert exit_code(result["summary"]) == ExitCode.OK
    assert exit_code(result["summary"], expect_hit=True) == ExitCode.INCOMPLETE


def test_non_2xx_hit_is_not_warm(edge: CacheServer) -> None:
    item = one(edge, "/404-hit")
    assert item["status_code"] == 404 and item["cache"] == HIT
    assert not is_warm(item)
    assert "HTTP 404" in item["detail"]
    result = verify([edge.url + "/404-hit"], FAST)
    assert result["summary"]["hit_ratio"] == 0.0
    assert exit_code(result["summary"], expect_hit=True) == ExitCode.INCOMPLETE


def test_expect_hit_passes_when_all_warm(edge: CacheServer) -> None:
    paths = ["/cloudfront/hit", "/cloudfront/refresh", "/edgeone/hit", "/qiniu/hit"]
    result = verify([edge.url + p for p in paths], VerifyOptions(expect_hit=True))
    assert result["summary"]["warm"] == 4
    assert result["summary"]["hit_ratio"] == 0.75
    assert exit_code(result["summary"], expect_hit=True) == ExitCode.OK


def test_redirects_are_reported_not_followed(edge: CacheServer) -> None:
    result = verify([edge.url + "/redirect-301", edge.url + "/redirect-302"], FAST)
    assert [r["status_code"] for r in result["results"]] == [301, 302]
    assert result["results"][0]["headers"]["location"] == "/cloudfront/hit"
    assert edge.paths("/cloudfront/hit") == []  # the Location was never requested


def test_slow_response_times_out_without_retry(edge: CacheServer) -> None:
    item = one(edge, "/slow", VerifyOptions(timeout=0.3, retries=2))
    assert len(edge.paths("/slow")) == 1  # a timeout is not asked again
    assert item["status_code"] is None and item["cache"] == UNKNOWN
    assert item["error"].startswith("timed out after 0.3 s")
    # The server got the request: a read timeout is not a connection error, so no retry.
    assert len(edge.paths("/slow")) == 1
    assert exit_code(verify([], FAST)["summary"]) == ExitCode.OK
    assert exit_code(summarize([item])) == ExitCode.INCOMPLETE


def test_dropped_connection_is_retried_a_bounded_number_of_times(edge: CacheServer) -> None:
    item = one(edge, "/drop", VerifyOptions(timeout=2.0, retries=2))
    assert len(edge.paths("/drop")) == 3
    assert item["error"] and "after 3 attempts" in item["error"]
    edge.requests.clear()
    one(edge, "/drop", VerifyOptions(timeout=2.0, retries=0))
    assert len(edge.paths("/drop")) == 1


def test_connection_refused_is_an_error(edge: CacheServer) -> None:
    port = edge.port
    edge.stop()
    item = verify([f"http://127.0.0.1:{port}/x"], VerifyOptions(retries=1))["results"][0]
    assert item["error"].startswith("cannot connect") and "after 2 attempts" in item["error"]
    assert item["status_code"] is None and item["cache"] == UNKNOWN


def test_a_reader_slower_than_the_timeout_is_no_stall_of_the_edge(edge: CacheServer) -> None:
    """Time spent writing the answers out (a slow pipe) is not the edge's: a probe in flight
    meanwhile was taken for stalled, and one that had just ended was ended twice (a crash:
    "curl object not on this multi-stack")."""
    edge.routes["/dropped"] = Route(delay=0.3, drop=True)
    urls = [edge.url + "/cloudfront/hit", edge.url + "/dropped", edge.url + "/cloudfront/hit?2"]
    answers = probe.probe_each(urls, VerifyOptions(timeout=1.5, retries=0, concurrency=4))
    first = next(answers)
    time.sleep(2.0)  # the reader busy elsewhere, longer than the timeout
    dropped, last = list(answers)
    assert [first.url, dropped.url, last.url] == urls
    assert dropped.error and dropped.error.startswith("connection closed")
    assert (last.status_code, last.cache, last.error) == (200, HIT, None)


def test_a_pace_spaces_the_requests_while_those_in_flight_go_on(
    edge: CacheServer, tmp_path: Path
) -> None:
    """A provider's rate, kept by the engine's pacer, bounds --verify's probes of what it
    warmed: 1 a second whatever the concurrency; the first, slow, is answered during the
    second's wait, and its elapsed_ms is its own."""
    from prewarm_cli.pacing import Pacer
    from prewarm_cli.plugin import Limits

    pacer = Pacer(Limits(max_batch=1, requests_per_second=1), "t", tmp_path / "rates.sqlite3")
    edge.routes["/slow"] = Route(headers={"X-Cache": "HIT"}, delay=0.2)
    urls = [edge.url + "/slow", edge.url + "/cloudfront/hit"]
    began = time.monotonic()
    answers = list(
        probe.probe_each(
            urls, VerifyOptions(concurrency=8), pace=lambda go_on: pacer.acquire(0, go_on)
        )
    )
    took = time.monotonic() - began
    assert [(a.url, a.cache) for a in answers] == [(urls[0], HIT), (urls[1], HIT)]
    assert took >= 0.95  # the second left a second after the first (at once: 10 ms)
    assert answers[0].elapsed_ms is not None and answers[0].elapsed_ms < 900


def test_a_pace_hands_each_answer_over_before_the_next_turn(
    edge: CacheServer, tmp_path: Path
) -> None:
    """The answers that came while a request waited for its turn are read then, before the
    next one's: the first was held until every free slot had had its turn (3 s here, and
    (concurrency - 1) / rate at most), and a Ctrl-C then dropped them all."""
    from prewarm_cli.pacing import Pacer
    from prewarm_cli.plugin import Limits

    pacer = Pacer(Limits(max_batch=1, requests_per_second=1), "t", tmp_path / "rates.sqlite3")
    urls = [f"{edge.url}/cloudfront/hit?i={i}" for i in range(4)]
    began = time.monotonic()
    answers = probe.probe_each(
        urls, VerifyOptions(concurrency=8), pace=lambda go_on: pacer.acquire(0, go_on)
    )
    first = next(answers)
    assert time.monotonic() - began < 1.9 and first.url == urls[0]  # at the second's turn
    answers.close()


def test_the_proxy_of_the_environment_is_used_where_no_pin_is_given(
    edge: CacheServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP_PROXY in capitals too, as Python and httpx read it (libcurl reads it in lower case
    only)."""
    for name in ("http_proxy", "no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", edge.url)  # the fake edge answers absolute-form requests
    item = verify(["http://static.example.invalid/cloudfront/hit"], VerifyOptions(retries=0))
    assert (item["results"][0]["status_code"], item["results"][0]["cache"]) == (200, HIT)
    assert edge.requests[-1]["host"] == "static.example.invalid"


def raw_server(answer: bytes, *, close: bool = True) -> Iterator[str]:
    """A server on 127.0.0.1 that answers each request with ``answer`` (and closes, or holds
    the connection until the test ends); its base URL."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        held: list[socket.socket] = []

        def answer_each() -> None:
            with suppress(OSError):
                while True:
                    conn, _ = listener.accept()
                    conn.recv(65536)
                    conn.sendall(answer)
                    if close:
                        conn.close()
                    else:
                        held.append(conn)

        threading.Thread(target=answer_each, daemon=True).start()
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
        for conn in held:
            conn.close()


@pytest.mark.parametrize("method", ["HEAD", "GET"])
def test_an_answer_cut_short_in_its_headers_is_no_answer(method: str) -> None:
    """A status line and a header, then nothing: a timeout waiting for the response, not a
    hit read off half a header block (HEAD dropped the error; GET said "after 0 bytes of the
    body")."""
    for base in raw_server(b"HTTP/1.1 200 OK\r\nX-Cache: HIT\r\n", close=False):
        options = VerifyOptions(method=method, timeout=0.5, retries=0)
        item = verify([base + "/x"], options)["results"][0]
    assert (item["status_code"], item["cache"]) == (None, UNKNOWN)
    assert item["error"] == "timed out after 0.5 s waiting for the response"


def test_trailers_are_not_the_answers_headers() -> None:
    """A chunked body's trailer fields come after it: the verdict is the header's."""
    answer = (
        b"HTTP/1.1 200 OK\r\nX-Cache: HIT\r\nTransfer-Encoding: chunked\r\nTrailer: X-Cache\r\n\r\n"
        b"5\r\nhello\r\n0\r\nX-Cache: MISS\r\n\r\n"
    )
    for base in raw_server(answer):
        item = verify([base + "/chunked"], VerifyOptions(method="GET", concurrency=1))
    item = item["results"][0]
    assert (item["cache"], item["bytes"], item["headers"]["x-cache"]) == (HIT, 5, "HIT")


def test_get_counts_bytes_streamed(edge: CacheServer) -> None:
    head = one(edge, "/big")
    get = one(edge, "/big", VerifyOptions(method="GET"))
    assert head["bytes"] is None
    assert get["bytes"] == len(VENDOR_ROUTES["/big"].body) == 102400
    assert get["cache"] == HIT
    assert [r["method"] for r in edge.paths("/big")] == ["HEAD", "GET"]


def test_body_cut_short_keeps_the_verdict_and_reports_the_error(edge: CacheServer) -> None:
    item = one(edge, "/truncated", VerifyOptions(method="GET", retries=2))
    assert item["status_code"] == 200 and item["cache"] == HIT and item["bytes"] == 1000
    assert item["error"] and item["error"].endswith("after 1000 bytes of the body")
    assert not is_warm(item)
    assert len(edge.paths("/truncated")) == 1  # the CDN answered: not a connection error


@pytest.mark.parametrize("method", ["HEAD", "GET"])
def test_probes_one_after_another_share_one_connection(edge: CacheServer, method: str) -> None:
    """A HEAD answer closed unread closed its connection: a TCP and TLS handshake per URL."""
    paths = [f"/k{i}.js" for i in range(6)]
    result = verify([edge.url + p for p in paths], VerifyOptions(method=method, concurrency=1))
    assert [r["status_code"] for r in result["results"]] == [200] * len(paths)
    assert [r["method"] for r in edge.requests] == [method] * len(paths)
    assert edge.connections == 1


def test_head_and_get_can_differ(edge: CacheServer) -> None:
    assert one(edge, "/head-differs")["cache"] == MISS
    assert one(edge, "/head-differs", VerifyOptions(method="GET"))["cache"] == HIT


def test_each_accept_encoding_is_its_own_request(edge: CacheServer) -> None:
    options = VerifyOptions(method="GET", encodings=("gzip", "br", "identity"))
    result = verify([edge.url + "/encodings", edge.url + "/edgeone/hit"], options)
    got = [(r["url"][len(edge.url) :], r["accept_encoding"], r["cache"]) for r in result["results"]]
    assert got == [
        ("/encodings", "gzip", HIT),
        ("/encodings", "br", MISS),
        ("/encodings", "identity", HIT),
        ("/edgeone/hit", "gzip", HIT),
        ("/edgeone/hit", "br", HIT),
        ("/edgeone/hit", "identity", HIT),
    ]
    sent = [r["headers"]["accept-encoding"] for r in edge.paths("/encodings")]
    assert sorted(sent) == ["br", "gzip", "identity"]
    gz = result["results"][0]
    # Raw bytes as sent: the compressed size, never decoded.
    assert gz["bytes"] == len(gzip.compress(b"a" * 5000))
    assert gz["headers"]["content-encoding"] == "gzip"
    assert gz["headers"]["vary"] == "Accept-Encoding"
    assert result["summary"]["total"] == 6


def test_default_and_extra_headers(edge: CacheServer) -> None:
    options = VerifyOptions(headers=(("X-Debug", "1"), ("User-Agent", "Mozilla/5.0 test")))
    item = one(edge, "/edgeone/hit", options)
    assert item["accept_encoding"] == DEFAULT_ACCEPT_ENCODING
    sent = edge.paths("/edgeone/hit")[0]["headers"]
    assert sent["accept-encoding"] == DEFAULT_ACCEPT_ENCODING
    assert sent["x-debug"] == "1"
    assert sent["user-agent"] == "Mozilla/5.0 test"
    one(edge, "/edgeone/miss", VerifyOptions(headers=(("accept-encoding", "identity"),)))
    assert edge.paths("/edgeone/miss")[0]["headers"]["accept-encoding"] == "identity"


def test_duplicates_are_requested_once_and_progress_is_reported(edge: CacheServer) -> None:
    ticks: list[int] = []
    urls = [edge.url + "/qiniu/hit", edge.url + "/qiniu/miss", edge.url + "/qiniu/hit"]
    result = verify(urls, VerifyOptions(encodings=("gzip", "br")), progress=ticks.append)
    assert len(result["results"]) == 4 and len(edge.requests) == 4
    assert sum(ticks) == 4


def test_concurrency_bound_is_respected(edge: CacheServer) -> None:
    held = threading.Event()
    edge.routes["/wait"] = Route(headers={"X-Cache": "HIT"}, held=held)
    urls = [f"{edge.url}/wait?i={i}" for i in range(24)]
    result: dict[str, Any] = {}
    run = threading.Thread(
        target=lambda: result.update(verify(urls, VerifyOptions(concurrency=4, timeout=60)))
    )
    run.start()
    try:
        wait_for(lambda: edge.in_flight == 4, 30)  # really concurrent
    finally:
        held.set()
    run.join(60)
    assert result["summary"][HIT] == 24
    assert edge.max_in_flight == 4  # never more


def test_answers_come_in_input_order_reading_a_bounded_way_ahead(
    edge: CacheServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prewarm_cli.verify import curl

    monkeypatch.setattr(curl, "_MAX_AHEAD", 8)  # concurrency 2: 8 read ahead
    held = threading.Event()
    edge.routes["/first"] = Route(headers={"X-Cache": "HIT"}, held=held)
    urls = [f"{edge.url}/first", *(f"{edge.url}/next?i={i}" for i in range(39))]
    answered: list[str] = []
    too_far: list[tuple[int, int]] = []  # (URL read, answers given by then)

    def inputs() -> Iterator[str]:
        for i, url in enumerate(urls):
            if i >= len(answered) + 8:
                too_far.append((i, len(answered)))
            yield url

    def read() -> None:
        for answer in probe.probe_each(inputs(), VerifyOptions(concurrency=2, timeout=60)):
            answered.append(answer.url)

    run = threading.Thread(target=read)
    run.start()
    try:
        # The first URL held: the seven after it answered, and no more asked for.
        wait_for(lambda: len(edge.requests) == 8 and edge.in_flight == 1, 30)
        assert answered == []  # nothing given before the first
    finally:
        held.set()
    run.join(60)
    assert answered == urls
    assert too_far == []


def test_verify_against_claims(edge: CacheServer) -> None:
    urls = [
        edge.url + p for p in ("/cloudfront/hit", "/cloudfront/miss", "/age-only", "/qiniu/miss")
    ]
    claims = {urls[0]: "succeeded", urls[1]: "succeeded", urls[2]: "succeeded", urls[3]: "failed"}
    result = verify_against_claims(urls, claims, FAST)
    rows = [(r["vendor"], r["cache"], r["mismatch"]) for r in result["results"]]
    assert rows == [
        ("succeeded", HIT, False),
        ("succeeded", MISS, True),
        ("succeeded", UNKNOWN, True),
        ("failed", MISS, False),  # the vendor said so: no contradiction
    ]
    assert result["summary"]["mismatches"] == 2
    assert (
        exit_code(result["summary"]) == ExitCode.INCOMPLETE
    )  # verification contradicted the vendor
    # A cached redirect is the URL's answer as the cache holds it (direct warming warms it as
    # such): no contradiction, though not "warm" for verify's own count of warm copies.
    redirect, not_found = edge.url + "/redirect-301", edge.url + "/404-hit"
    claimed = {redirect: "succeeded", not_found: "succeeded"}
    result = verify_against_claims([redirect, not_found], claimed, FAST)
    assert [r["mismatch"] for r in result["results"]] == [False, True]
    assert result["summary"]["warm"] == 0
    partial = verify_against_claims(urls[:1], {}, FAST)
    assert partial["results"][0]["vendor"] is None and partial["summary"]["mismatches"] == 0
    assert exit_code(partial["summary"]) == ExitCode.OK


# --------------------------------------------------------------------------- --resolve


def test_resolve_pins_the_connection_and_keeps_host(edge: CacheServer) -> None:
    port = edge.port
    url = f"http://pinned.test:{port}/cloudfront/hit"
    unpinned = verify([url], VerifyOptions(timeout=2, retries=0))["results"][0]
    assert unpinned["error"] and "cannot connect" in unpinned["error"]  # the name does not resolve
    assert edge.requests == []

    for spec in (f"pinned.test:{port}:127.0.0.1", "pinned.test:127.0.0.1"):
        item = verify([url], VerifyOptions(resolve=(spec,)))["results"][0]
        assert item["error"] is None and item["cache"] == HIT
        assert edge.requests[-1]["host"] == f"pinned.test:{port}"
    # A pin for another port does not apply.
    other = verify([url], VerifyOptions(resolve=(f"pinned.test:{port + 1}:127.0.0.1",), retries=0))
    assert other["results"][0]["error"]


def test_pinned_client_offered_to_providers_keeps_host_and_counts_raw_bytes(
    edge: CacheServer,
) -> None:
    """pinned_client + classify, as a provider may use them (the plugin API): exact
    Accept-Encoding, the raw body counted, Host kept while the connection goes to the pinned
    IP."""
    from prewarm_cli.verify.classify import classify as classify_headers
    from prewarm_cli.verify.probe import pinned_client

    url = f"http://pinned.test:{edge.port}/cloudfront/hit"
    with pinned_client([Pin("pinned.test", None, "127.0.0.1")], timeout=2) as client:
        for encoding in ("gzip, deflate, br", "identity"):
            with client.stream("GET", url, headers={"Accept-Encoding": encoding}) as response:
                n_bytes = sum(len(chunk) for chunk in response.iter_raw())
                verdict = classify_headers(response.headers, response.status_code)
            assert response.status_code == 200 and verdict.cache == HIT
            assert n_bytes == int(response.headers["content-length"])
            assert edge.requests[-1]["headers"]["accept-encoding"] == encoding
    assert {r["host"] for r in edge.requests} == {f"pinned.test:{edge.port}"}


def test_resolve_keeps_sni_and_verifies_tls_over_http2(tls_edge: tuple[CacheServer, Path]) -> None:
    edge, ca = tls_edge
    url = f"https://pinned.test:{edge.port}/cloudfront/hit"
    pin = (f"pinned.test:{edge.port}:127.0.0.1",)
    result = verify([url, url + "?again"], VerifyOptions(resolve=pin, ca_bundle=str(ca)))
    for item in result["results"]:
        assert item["error"] is None, item["error"]
        assert item["cache"] == HIT and item["pop"] == "SIN2-P1"
        assert item["http_version"] == "HTTP/2"  # the server offered h2 over ALPN
    assert edge.sni and set(edge.sni) == {"pinned.test"}
    assert {r["host"] for r in edge.requests} == {f"pinned.test:{edge.port}"}
    assert {r["protocol"] for r in edge.requests} == {"HTTP/2"}


def test_a_slow_tls_handshake_is_not_counted_in_the_wait_for_the_answer(
    tls_edge: tuple[CacheServer, Path],
) -> None:
    """--timeout bounds the connection and each wait for a byte apart: a handshake of 1.2 s,
    then an answer 1.2 s later, each within 2 s (counted together, it timed out)."""
    edge, ca = tls_edge
    edge.routes["/slow"] = Route(headers={"X-Cache": "HIT"}, delay=1.2)
    with TcpFront(edge.port, hold=1.2) as front:
        url = f"https://pinned.test:{front.port}/slow"
        options = VerifyOptions(resolve=("pinned.test:127.0.0.1",), ca_bundle=str(ca), timeout=2)
        item = verify([url], options)["results"][0]
    assert (item["status_code"], item["cache"], item["error"]) == (200, HIT, None)


def test_a_connect_timeout_is_asked_again_and_said_so(tls_edge: tuple[CacheServer, Path]) -> None:
    """A handshake held past the timeout: no answer came, so it is asked again, --retries
    times, and the error names the connection (libcurl fills in its transfer times when a
    connection fails, which read as a stall once connected: asked once)."""
    edge, ca = tls_edge
    with TcpFront(edge.port, hold=2.0) as front:
        url = f"https://pinned.test:{front.port}/cloudfront/hit"
        options = VerifyOptions(
            resolve=("pinned.test:127.0.0.1",), ca_bundle=str(ca), timeout=0.5, retries=2
        )
        item = verify([url], options)["results"][0]
        assert item["error"] == "timed out after 0.5 s connecting (after 3 attempts)"
        assert front.n_accepted == 3


def test_a_reader_slower_than_the_timeout_is_no_connect_timeout(
    edge: CacheServer, tls_edge: tuple[CacheServer, Path]
) -> None:
    """The reader holds the answers (a slow pipe) while the second probe's handshake, held
    0.5 s, goes on: libcurl's connect timeout counted that time, and failed it; and its
    elapsed_ms counted it."""
    tls, ca = tls_edge
    with TcpFront(tls.port, hold=0.5) as front:
        urls = [edge.url + "/cloudfront/hit", f"https://pinned.test:{front.port}/cloudfront/hit"]
        options = VerifyOptions(
            resolve=("pinned.test:127.0.0.1",), ca_bundle=str(ca), timeout=1, retries=0
        )
        answers = probe.probe_each(urls, options)
        first = next(answers)
        time.sleep(1.5)  # the reader busy elsewhere, longer than the timeout
        second = next(answers)
    assert first.error is None and (second.status_code, second.error) == (200, None)
    assert second.elapsed_ms is not None and second.elapsed_ms < 1400  # the edge's time only


def test_a_connection_reset_during_the_tls_handshake_is_asked_again(
    tls_edge: tuple[CacheServer, Path],
) -> None:
    edge, ca = tls_edge
    with TcpFront(edge.port, reset_first=1) as front:
        url = f"https://pinned.test:{front.port}/cloudfront/hit"
        options = VerifyOptions(resolve=("pinned.test:127.0.0.1",), ca_bundle=str(ca), retries=2)
        item = verify([url], options)["results"][0]
        assert (item["status_code"], item["cache"], item["error"]) == (200, HIT, None)
        assert front.n_accepted == 2


def test_tls_verification_is_always_on(tls_edge: tuple[CacheServer, Path]) -> None:
    edge, ca = tls_edge
    pin = (f"pinned.test:{edge.port}:127.0.0.1", f"other.test:{edge.port}:127.0.0.1")
    untrusted = verify(
        [f"https://pinned.test:{edge.port}/cloudfront/hit"],
        VerifyOptions(resolve=pin, retries=0),
    )["results"][0]
    assert untrusted["error"] and "(certificate not trusted)" in untrusted["error"]
    wrong_name = verify(
        [f"https://other.test:{edge.port}/cloudfront/hit"],
        VerifyOptions(resolve=pin, ca_bundle=str(ca), retries=0),
    )["results"][0]
    assert wrong_name["error"] and "other.test" in wrong_name["error"]
    assert edge.requests == []


def test_a_certificate_not_trusted_is_not_asked_again(tls_edge: tuple[CacheServer, Path]) -> None:
    """The same answer every time until the CA changes: one handshake, whatever --retries."""
    edge, _ = tls_edge
    pin = (f"pinned.test:{edge.port}:127.0.0.1",)
    item = verify(
        [f"https://pinned.test:{edge.port}/cloudfront/hit"],
        VerifyOptions(resolve=pin, retries=2),
    )["results"][0]
    assert item["error"] and item["error"].endswith("(certificate not trusted)")
    assert edge.sni == ["pinned.test"]


def test_bad_ca_bundle_is_a_usage_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(UsageError, match="CA bundle"):
        verify(["https://example.invalid/"], VerifyOptions(ca_bundle=str(missing)))


# --------------------------------------------------------------------------- output


def _render(result: dict[str, Any]) -> str:
    stdout = io.StringIO()
    out = Output("table", color=False, stdout=stdout, stderr=io.StringIO())
    render_table(out, result)
    return stdout.getvalue()


def test_a_narrow_table_keeps_what_tells_a_urls_rows_apart(
    edge: CacheServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two variants of one URL through one edge, with the vendor's claim, on 80 columns."""
    monkeypatch.setenv("COLUMNS", "80")
    options = VerifyOptions(timeout=2.0, encodings=("gzip, deflate, br", "identity"))
    result = verify([edge.url + "/cloudfront/hit"], options)
    for r in result["results"]:
        r.update(target="127.0.0.2", vendor="succeeded")
    lines = [line for line in _render(result).splitlines() if line.strip()]
    assert "target" in lines[0] and "accept-encoding" in lines[0]
    assert "gzip, deflate, br" in lines[2] and "identity" in lines[3]
    assert all(len(line) <= 80 for line in lines[:-1])


def test_table_and_records(edge: CacheServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    paths = ["/cloudfront/hit", "/404-hit", "/unknown-cdn", "/cloudfront/hit?[x]"]
    result = verify([edge.url + p for p in paths], FAST)
    text = _render(result)
    lines = [line for line in text.splitlines() if line.strip()]
    assert "status" in lines[0] and "cache" in lines[0] and "pop" in lines[0]
    assert "bytes" not in lines[0] and "accept-encoding" not in lines[0]
    assert "SIN2-P1" in text and "404" in text
    assert "/cloudfront/hit?[x]" in text  # brackets are not taken for markup
    assert "x-proxy-cache" in text  # an unknown says what it saw
    assert lines[-1].startswith("4 checked · 3 hit · 1 unknown · 1 non-2xx")
    assert lines[-1].endswith("hit ratio 50.0%")

    assert list(records(result)) == result["results"]
    stdout = io.StringIO()
    Output("ndjson", stdout=stdout, stderr=io.StringIO()).emit(result, records=records)
    parsed = [json.loads(line) for line in stdout.getvalue().splitlines()]
    assert [p["url"] for p in parsed] == [edge.url + p for p in paths]
    assert set(parsed[0]) >= {
        "url",
        "status_code",
        "cache",
        "pop",
        "age",
        "bytes",
        "elapsed_ms",
        "accept_encoding",
        "headers",
        "error",
    }

    claims = verify_against_claims(
        [edge.url + "/cloudfront/miss"],
        {edge.url + "/cloudfront/miss": "succeeded"},
        VerifyOptions(method="GET", encodings=("gzip", "br")),
    )
    text = _render(claims)
    assert (
        "vendor" in text.strip().splitlines()[0] and "bytes" in text and "accept-encoding" in text
    )
    assert "2 not warm although the vendor says succeeded" in text


def test_summarize_empty() -> None:
    assert summarize([]) == {
        "total": 0,
        "hit": 0,
        "miss": 0,
        "revalidated": 0,
        "bypass": 0,
        "unknown": 0,
        "errors": 0,
        "non_2xx": 0,
        "warm": 0,
        "hit_ratio": 0.0,
    }


# --------------------------------------------------------------------------- input


def test_read_urls(tmp_path: Path) -> None:
    f = tmp_path / "urls.txt"
    f.write_text("https://a.example/1\n# c\nhttps://a.example/2\nhttps://a.example/1\n")
    assert _listed(InputSpec(urls=("https://a.example/0",), files=(str(f),))) == [
        "https://a.example/0",
        "https://a.example/1",
        "https://a.example/2",
    ]
    f.write_text("https://a.example/1\nftp://nope\n")
    with pytest.raises(InputError, match=r"nothing was requested:\n  .*urls.txt:2: ftp://nope"):
        _listed(InputSpec(files=(str(f),)))
    with pytest.raises(InputError, match="no URLs to verify"):
        _listed(InputSpec())


def test_module_import_does_not_load_httpx() -> None:
    code = (
        "import sys, prewarm_cli.verify; sys.exit('httpx' in sys.modules or 'rich' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_probes_keep_a_providers_rate_only_where_they_go_where_its_warms_went() -> None:
    """A vendor's pacer keeps its API's rate (and daily budget): --verify's probes go to the
    CDN, and are not charged to it; direct's probes go to the edges its warms went to."""
    from types import SimpleNamespace

    from prewarm_direct.provider import DirectProvider

    from prewarm_cli.commands._render import paced
    from prewarm_cli.plugin import Provider

    acquired: list[float] = []
    pacer = SimpleNamespace(waits=True, acquire=lambda n, meanwhile: acquired.append(n))
    assert not Provider.probes_keep_limits and DirectProvider.probes_keep_limits
    vendor = SimpleNamespace(provider=SimpleNamespace(probes_keep_limits=False), pacer=pacer)
    assert paced(vendor) is None  # type: ignore[arg-type]
    direct = SimpleNamespace(provider=SimpleNamespace(probes_keep_limits=True), pacer=pacer)
    pace = paced(direct)  # type: ignore[arg-type]
    assert pace is not None
    pace(lambda seconds: None)
    assert acquired == [0]
    unpaced = SimpleNamespace(waits=False)
    assert paced(SimpleNamespace(provider=direct.provider, pacer=unpaced)) is None  # type: ignore[arg-type]
