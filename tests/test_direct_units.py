"""Direct warming's parts: targets, DNS names, Retry-After, the plan, the Warmer on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from itertools import groupby
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prewarm_cli.errors import ConfigError, UsageError
from prewarm_cli.plugin import SubmitOptions

if TYPE_CHECKING:
    from prewarm_direct.store import Store

ROOT = Path(__file__).resolve().parent.parent


def provider(**settings: object):
    from prewarm_direct import DirectProvider

    return DirectProvider("direct", settings)


def test_pop_name_uses_the_first_label_of_cf_domain() -> None:
    from prewarm_direct.dns import parse_resolver, pop_name

    assert pop_name("d111111abcdef8.cloudfront.net", "NRT57") == (
        "d111111abcdef8.nrt57.cloudfront.net"
    )
    assert parse_resolver("8.8.8.8") == ("8.8.8.8", 53)
    assert parse_resolver("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert parse_resolver("[::1]:53") == ("::1", 53)
    with pytest.raises(ValueError):
        parse_resolver("dns.google")


def test_retry_after_seconds_and_dates() -> None:
    from prewarm_direct.warm import parse_retry_after

    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past


def test_header_reader_picks_the_named_headers_of_the_last_response() -> None:
    from prewarm_direct.warm import HeaderReader

    read = HeaderReader(("x-cache", "age", "content-length"))
    lines = [
        b"HTTP/1.1 100 Continue\r\n",
        b"X-Cache: from the interim answer\r\n",
        b"\r\n",
        b"HTTP/1.1 200 OK\r\n",
        b"X-Cache-Hits: 3\r\n",  # a longer name that starts with a wanted one
        b"X-Cache:  HIT from edge-1 \r\n",
        b"x-cache: MISS\r\n",
        b"Age:5\r\n",
        b"Content-Length: 2048\r\n",
        b"Date: Sat, 05 Dec 2026 21:00:00 GMT\r\n",
        b"\r\n",
    ]
    expected = {"x-cache": "HIT from edge-1, MISS", "age": "5", "content-length": "2048"}
    assert read(b"".join(lines)) == expected
    assert read(bytearray(b"".join(lines))) == expected  # as libcurl's header callback fills it
    assert read(b"HTTP/1.1 204 No Content\r\n\r\n") == {}
    assert read(b"HTTP/1.1 200 OK\nAGE: 5\n\n") == {"age": "5"}  # LF alone, any case
    assert read(b"HTTP/1.1 200 OK\r\nX-Cache: a\rb\r\n\r\n") == {"x-cache": "a\rb"}
    # A chunked body's trailer fields, after the header block (libcurl hands them over too).
    assert read(b"HTTP/1.1 200 OK\r\nX-Cache: HIT\r\n\r\nX-Cache: MISS\r\n\r\n") == {
        "x-cache": "HIT"
    }
    # Names that share a beginning, one of them whole in another: each read for itself.
    read = HeaderReader(("x-cache", "x-cache-hits", "x-served-by", "cf-cache-status", "a"))
    block = (
        b"HTTP/1.1 200 OK\r\nX-Cache-Hits: 3\r\nx-cache: HIT\r\nX-Served-By: e1\r\n"
        b"X-Cache-Hit: no\r\nX-Served: no\r\nCF-Cache-Status: MISS\r\nAge: 1\r\nA: z\r\n\r\n"
    )
    assert read(block) == {
        "x-cache-hits": "3",
        "x-cache": "HIT",
        "x-served-by": "e1",
        "cf-cache-status": "MISS",
        "a": "z",
    }


def test_requests_per_url_is_targets_times_variants() -> None:
    p = provider()
    url = "https://cdn.example.com/app.js"
    assert p.requests_per_url(url, SubmitOptions()) == 2  # the edge near us, two variants
    opts = SubmitOptions(
        extra={
            "resolve": ("cdn.example.com:443:192.0.2.1", "cdn.example.com:192.0.2.2"),
            "accept_encoding": ("br", "gzip", "identity"),
        }
    )
    assert p.requests_per_url(url, opts) == 6
    # A pin for another host or port does not apply.
    assert p.requests_per_url("https://other.example.com/a", opts) == 3
    # Port 80: only the pin without a port applies.
    assert p.requests_per_url("http://cdn.example.com/a", opts) == 1 * 3
    pops = provider(cf_domain="d1.cloudfront.net", pops=["NRT57", "SIN2"], ecs=["10.0.0.0/8"])
    assert pops.requests_per_url(url, SubmitOptions()) == 3 * 2


def test_a_resolver_that_does_not_answer_is_asked_once_and_named(monkeypatch) -> None:
    """Each lookup would wait its timeout: after the first silence the other PoP codes and
    subnets fail at once, and the warnings name the resolver setting."""
    import socket

    from prewarm_direct import dns
    from prewarm_direct.targets import POP_NOT_FOUND, Targets, TargetSpec

    monkeypatch.setattr(dns, "DNS_TIMEOUT", 0.3)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))  # takes queries, never answers
        silent.settimeout(0)
        port = silent.getsockname()[1]
        warnings: list[str] = []
        spec = TargetSpec(
            pops=("NRT57", "SIN2", "IAD89"),
            ecs=("198.51.100.0/24",),
            cf_domain="d1.cloudfront.net",
            resolver=f"127.0.0.1:{port}",
        )
        targets = Targets(spec, warnings.append).for_url("https://cdn.example.com/a.js")
        queries = 0
        while True:
            try:
                silent.recvfrom(4096)
            except BlockingIOError:
                break
            queries += 1
    assert [t.error for t in targets] == [POP_NOT_FOUND] * 4
    assert queries == 2  # a second silence: the resolver, not one name's servers
    assert len(warnings) == 4
    assert "NRT57" in warnings[0] and "no answer" in warnings[0]
    assert all(f"the resolver 127.0.0.1:{port} does not answer" in w for w in warnings[1:])
    assert "`resolver` setting" in warnings[-1]
    # Each names its own PoP, not the name first asked (d1.nrt57.cloudfront.net).
    assert "IAD89" in warnings[2] and "nrt57" not in warnings[2].lower()


def test_one_name_the_resolver_does_not_answer_leaves_the_others_asked(monkeypatch) -> None:
    """A PoP name whose lookup times out fails alone: the codes after it are asked, and
    warmed (they all failed as "PoP not found", depending on the order they were given)."""
    from cachebed import DnsServer
    from prewarm_direct import dns
    from prewarm_direct.targets import POP_NOT_FOUND, Targets, TargetSpec

    monkeypatch.setattr(dns, "DNS_TIMEOUT", 0.3)
    server = DnsServer().start()
    try:
        server.silent.add("d1.slow1.cloudfront.net")
        server.names["d1.nrt57.cloudfront.net"] = ["127.0.0.2"]
        server.names["d1.sin2.cloudfront.net"] = ["127.0.0.3"]
        spec = TargetSpec(
            pops=("SLOW1", "NRT57", "SIN2"), cf_domain="d1.cloudfront.net", resolver=server.address
        )
        warnings: list[str] = []
        targets = Targets(spec, warnings.append).for_url("https://cdn.example.com/a.js")
    finally:
        server.stop()
    assert [(t.label, t.ip, t.error) for t in targets] == [
        ("SLOW1", None, POP_NOT_FOUND),
        ("NRT57", "127.0.0.2", None),
        ("SIN2", "127.0.0.3", None),
    ]
    assert len(warnings) == 1 and "SLOW1" in warnings[0], warnings


def test_a_pop_code_or_client_subnet_given_twice_is_one_target() -> None:
    """Each (URL, PoP, variant) is asked once: a code repeated (in any case) or a subnet
    repeated (or written with host bits) is one target, in the plan too (each was sent
    twice: the second found the first's copy)."""
    from cachebed import DnsServer
    from prewarm_direct.targets import Targets, TargetSpec

    server = DnsServer().start()
    try:
        server.names["d1.nrt57.cloudfront.net"] = ["127.0.0.2"]
        server.subnets["cdn.example.com"] = [("198.51.100.0/24", "127.0.0.3")]
        spec = TargetSpec(
            pops=("NRT57", "NRT57", "nrt57"),
            ecs=("198.51.100.0/24", "198.51.100.0/24", "198.51.100.7/24"),
            cf_domain="d1.cloudfront.net",
            resolver=server.address,
        )
        warnings: list[str] = []
        targets = Targets(spec, warnings.append).for_url("https://cdn.example.com/a.js")
    finally:
        server.stop()
    assert [(t.label, t.ip) for t in targets] == [
        ("NRT57", "127.0.0.2"),
        ("ecs:198.51.100.0/24", "127.0.0.3"),
    ]
    assert warnings == []
    assert spec.count("https://cdn.example.com/a.js") == 2
    # Each kept where it was first given, spelt as it was first given.
    assert TargetSpec(pops=("IAD89", "LHR62", "iad89")).distinct_pops() == ["IAD89", "LHR62"]


def test_the_plan_counts_each_pinned_address_once_and_idn_hosts_as_sent() -> None:
    """--dry-run's requests are what the run sends: an IDN host's pins (it counted none,
    and the run warmed both) and a pin given twice (it counted two, the run warmed one)."""
    from prewarm_direct.targets import TargetSpec

    idn = TargetSpec(resolve=("bücher.test:80:127.0.0.2", "xn--bcher-kva.test:80:127.0.0.3"))
    assert idn.count("http://bücher.test/a.js") == 2
    twice = TargetSpec(
        resolve=("a.test:80:127.0.0.2", "a.test:127.0.0.2", "a.test:80:127.0.0.2", "a.test:80:::1")
    )
    assert twice.count("http://a.test/x") == 2
    assert twice.count("http://a.test:8080/x") == 1  # the portless pin only


def test_a_url_whose_host_ends_in_a_dot_is_pinned_as_written() -> None:
    """libcurl applies a connect-to entry only to the host as the URL writes it: for
    `http://cdn.example.com.:80/` the pin went unused, and the request went where this
    machine's DNS said, reported as warmed through the pin."""
    from prewarm_direct.targets import Targets, TargetSpec

    spec = TargetSpec(resolve=("cdn.example.com:80:127.0.0.2",))
    (absolute,) = Targets(spec, print).for_url("http://cdn.example.com./a.js")
    (plain,) = Targets(spec, print).for_url("http://cdn.example.com/a.js")
    assert (absolute.label, absolute.connect_to) == (
        "127.0.0.2",
        "cdn.example.com.:80:127.0.0.2:80",
    )
    assert plain.connect_to == "cdn.example.com:80:127.0.0.2:80"


def test_bad_target_settings_are_clear_errors() -> None:
    from prewarm_direct.targets import Targets, TargetSpec

    with pytest.raises(ConfigError, match="cf_domain"):
        Targets(TargetSpec(pops=("NRT57",)), print)
    with pytest.raises(ConfigError, match="ecs"):
        Targets(TargetSpec(ecs=("not-a-net",)), print)
    with pytest.raises(ConfigError, match="resolver"):
        Targets(TargetSpec(resolver="dns.google"), print)
    for everyone in ("0.0.0.0/0", "::/0"):
        with pytest.raises(ConfigError, match="names no client network"):
            Targets(TargetSpec(ecs=(everyone,)), print)
    with pytest.raises(ConfigError, match="port 'abc' is not a number"):
        Targets(TargetSpec(resolver="127.0.0.1:abc"), print)
    for domain in ("https://d111abc.cloudfront.net", "*.cloudfront.net", "d1.cloudfront.net/x"):
        with pytest.raises(ConfigError, match="is not a host name") as caught:
            Targets(TargetSpec(pops=("NRT57",), cf_domain=domain), print)
        assert caught.value.hint and "without https://" in caught.value.hint
    Targets(TargetSpec(pops=("NRT57",), cf_domain="D1.CloudFront.net."), print)  # as DNS takes it
    from prewarm_direct import DirectProvider

    problems = DirectProvider.config_problems("direct", {"resolver": " "})
    assert [p.message for p in problems] == ["providers.direct.resolver: the DNS server is empty"]
    with pytest.raises(UsageError):
        provider().requests_per_url("https://a.example/", SubmitOptions(extra={"resolve": ("x",)}))


def test_without_nginx_the_bed_skips_locally_and_fails_under_ci(monkeypatch) -> None:
    import cachebed

    monkeypatch.setattr(cachebed, "NGINX", "/nonexistent/nginx")
    monkeypatch.setattr(cachebed.shutil, "which", lambda _name: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install -y nginx-light"):
        cachebed.require_nginx()
    monkeypatch.setenv("CI", "1")
    with pytest.raises(pytest.fail.Exception, match="CI must run the nginx tests"):
        cachebed.require_nginx()


def test_a_warmer_stopped_midway_drops_what_was_in_flight_and_runs_again() -> None:
    from fakes.cache_server import CacheServer
    from prewarm_direct.targets import Target
    from prewarm_direct.warm import Request, Warmer

    with CacheServer() as edge:
        warmer = Warmer(concurrency=2, timeout=5.0, user_agent="test")
        lines = ("Accept-Encoding: identity",)
        url = f"http://127.0.0.1:{edge.port}/cloudfront/hit"
        taken = 0

        def take_then_stop() -> Request | None:
            nonlocal taken
            taken += 1
            if taken == 2:  # one request added, not yet sent: then Ctrl-C in a pacing wait
                raise KeyboardInterrupt
            return Request(url, Target("nearest"), "identity", lines)

        with pytest.raises(KeyboardInterrupt):
            warmer.run(take_then_stop, lambda request, answer: None)
        queue = [Request(f"{url}?n={i}", Target("nearest"), "identity", lines) for i in range(4)]
        answered = {}
        warmer.run(
            lambda: queue.pop() if queue else None,
            lambda request, answer: answered.update({request.url: answer}),
        )
        warmer.close()
    # Exactly the second run's requests, each answered: nothing of the first run left over.
    assert sorted(answered) == sorted(f"{url}?n={i}" for i in range(4))
    assert {(a.outcome, a.status_code) for a in answered.values()} == {("ok", 200)}


def test_a_warmer_closed_while_its_run_goes_on_in_another_thread_is_left_to_it() -> None:
    """A Ctrl-C lets the workers settle a while, then the provider is closed while a worker
    may still be sending: closing libcurl's handles then raised ("cannot invoke close() -
    perform() is currently running", exit 1 instead of 130), or left the run with closed
    handles."""
    import threading

    from fakes.cache_server import CacheServer, Route
    from helpers import wait_for
    from prewarm_direct.targets import Target
    from prewarm_direct.warm import Request, Warmer

    held = threading.Event()
    with CacheServer() as edge:
        edge.routes["/held"] = Route(headers={"X-Cache": "HIT"}, held=held)
        warmer = Warmer(concurrency=1, timeout=30.0, user_agent="test")
        queue = [Request(f"{edge.url}/held", Target("nearest"), "identity", ())]
        answered = []
        run = threading.Thread(
            target=warmer.run,
            args=(lambda: queue.pop() if queue else None, lambda r, a: answered.append(a)),
        )
        run.start()
        try:
            wait_for(lambda: edge.in_flight == 1, 30)
            warmer.close()  # the run's handles are left to it
        finally:
            held.set()
            run.join(30)
        assert [(a.outcome, a.status_code) for a in answered] == [("ok", 200)]
        warmer.close()  # now closed


def test_a_record_that_cannot_be_written_stops_the_run(write_config, monkeypatch) -> None:
    """A disk that fills up after the first commit: the run stops there, as it would for the
    journal, instead of sending batch after batch whose answers are thrown away."""
    import sqlite3

    import prewarm_direct.store as store_mod
    from fakes.cache_server import CacheServer
    from helpers import invoke
    from prewarm_direct.provider import MAX_BATCH

    class FillingUp:
        def __init__(self, db: sqlite3.Connection) -> None:
            self._db, self._n_ok = db, 1

        def execute(self, sql: str, *args: object) -> object:
            if sql == "BEGIN":
                if self._n_ok <= 0:
                    raise sqlite3.OperationalError("database or disk is full")
                self._n_ok -= 1
            return self._db.execute(sql, *args)

        def __getattr__(self, name: str) -> object:
            return getattr(self._db, name)

    opened = store_mod.Store.__init__

    def open_filling_up(self: store_mod.Store, path: Path) -> None:
        opened(self, path)
        self._db = FillingUp(self._db)  # type: ignore[assignment]

    monkeypatch.setattr(store_mod.Store, "__init__", open_filling_up)
    write_config('[providers.direct]\ntype = "direct"\nconcurrency = 4\nencodings = ["identity"]\n')
    with CacheServer() as edge:
        items = [f"{edge.url}/o{i}.js" for i in range(4 * MAX_BATCH)]  # 4 batches
        r = invoke("submit", "-p", "direct", "-o", "json", *items)
        n_answered = len(edge.requests)
    assert r.returncode == 1
    assert "cannot write the direct warming record" in r.stderr
    assert 0 < n_answered <= MAX_BATCH  # the first batch at most: no batch after the failure


def test_a_retry_after_longer_than_the_retries_defers_instead_of_failing(
    write_config, run_cli
) -> None:
    """An edge that asks for an hour: the URLs wait for --resume (exit 5), including one of
    the same batch that only timed out, rather than failing with their retries unspent."""
    import json

    from fakes.cache_server import CacheServer, Route

    write_config('[providers.direct]\ntype = "direct"\nencodings = ["identity"]\n')
    with CacheServer() as edge:
        edge.routes["/later"] = Route(status=429, headers={"Retry-After": "3600"})
        edge.routes["/timeout"] = Route(status=408)
        items = [f"{edge.url}/later", f"{edge.url}/timeout", f"{edge.url}/ok"]
        r = run_cli("submit", "-p", "direct", "-o", "json", *items)
        n_asked = {path: len(edge.paths(path)) for path in ("/later", "/timeout", "/ok")}
    data = json.loads(r.stdout)
    assert r.returncode == 5, r.stderr
    assert data["accepted"] == 1 and data["deferred"] == 2 and data["failed"] == []
    assert n_asked == {"/later": 1, "/timeout": 1, "/ok": 1}  # no retry into the hour
    assert "3600" in r.stderr and f"--resume {data['job_id']}" in r.stderr


def test_a_resume_under_a_config_that_warms_otherwise_is_refused(
    write_config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job deferred by max_bytes, resumed after its variants changed in the config: it
    would end half identity, half br, and say succeeded. Refused, naming what changed;
    resumed once the config is put back, though prewarm was upgraded meanwhile (its default
    User-Agent names its version: not a setting the job began with)."""
    import json

    import prewarm_direct.provider as direct_mod
    from fakes.cache_server import CacheServer, Route
    from helpers import invoke

    table = (
        '[providers.direct]\ntype = "direct"\nconcurrency = 1\nmax_bytes = 1000\nencodings = {}\n'
    )
    write_config(table.format('["identity"]'))
    with CacheServer() as edge:
        urls = [f"{edge.url}/{name}" for name in "abc"]
        for name in "abc":
            edge.routes[f"/{name}"] = Route(body=b"x" * 900)
        r = invoke("submit", "-p", "direct", "-o", "json", *urls)
        assert r.returncode == 5, r.stderr  # the budget is spent before the last: deferred
        job = json.loads(r.stdout)["job_id"]
        n_sent = len(edge.requests)
        write_config(table.format('["br"]'))
        r = invoke("submit", "--resume", job)
        assert r.returncode == 2, r.stderr
        assert (
            f'job {job} began with direct\'s encodings = ["identity"];'
            ' the config now makes it encodings = ["br"]'
        ) in r.stderr
        assert "put them back in [providers.direct]" in r.stderr
        assert len(edge.requests) == n_sent  # nothing sent
        write_config(table.format('["identity"]'))
        monkeypatch.setattr(direct_mod, "USER_AGENT", "prewarm-cli/99.0.0")
        r = invoke("submit", "--resume", job, "-o", "json")
        assert r.returncode == 0, r.stderr
        assert {q["headers"].get("accept-encoding") for q in edge.requests} == {"identity"}


def test_a_retry_after_of_some_answers_does_not_shorten_the_others_backoff(
    write_config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One URL's 503 says Retry-After: 0, another's says nothing: the two are sent again
    together after the backoff, not at once (five tries in 0.3 s hammered the edge)."""
    from fakes.cache_server import CacheServer, Route
    from helpers import invoke

    import prewarm_cli.engine.sender as sender_mod

    waits: list[float] = []
    put = sender_mod.RetryQueue.put

    def put_now(queue, part, wait, retries, unknown=None) -> None:  # the wait noted, not waited
        waits.append(wait)
        put(queue, part, 0.0, retries, unknown)

    monkeypatch.setattr(sender_mod.RetryQueue, "put", put_now)
    write_config(
        '[defaults]\nretries = 3\n\n[providers.direct]\ntype = "direct"\nencodings = ["identity"]\n'
    )
    with CacheServer() as edge:
        edge.routes["/now"] = Route(status=503, headers={"Retry-After": "0"})
        edge.routes["/busy"] = Route(status=503)
        r = invoke("submit", "-p", "direct", "-o", "json", f"{edge.url}/now", f"{edge.url}/busy")
        n_asked = {path: len(edge.paths(path)) for path in ("/now", "/busy")}
    assert r.returncode == 1, r.stderr
    assert n_asked == {"/now": 3, "/busy": 3}  # retries = 3 tries in all
    assert len(waits) == 2 and waits[0] >= 0.5 and waits[1] >= 1.0, waits  # the backoff


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--ecs", "notacidr"), "is not a network"),
        (("--resolve", "bad"), "is not HOST[:PORT]:IP"),
        (("--pop", "NRT57"), "PoP codes need cf_domain"),
        (("--accept-encoding", " "), "--accept-encoding value is empty"),
    ],
)
@pytest.mark.parametrize("dry_run", [False, True])
def test_options_direct_cannot_use_are_refused_before_any_job(
    write_config, args: tuple[str, ...], message: str, dry_run: bool
) -> None:
    from helpers import invoke

    write_config('[providers.direct]\ntype = "direct"\n')
    r = invoke("submit", "-p", "direct", *args, *(["--dry-run"] * dry_run), "http://a.test/x")
    assert r.returncode == 2, r.output
    assert message in r.stderr
    assert invoke("jobs", "-o", "json").stdout.strip() == "[]"  # no job left behind
    if args[0] == "--pop":  # where to set it: the alias's table, in the file
        assert "hint: set cf_domain in [providers.direct] of the config file" in r.stderr


def test_a_setting_direct_cannot_use_is_a_configuration_error(write_config) -> None:
    from helpers import invoke

    write_config('[providers.direct]\ntype = "direct"\necs = ["notacidr"]\n')
    r = invoke("submit", "-p", "direct", "http://a.test/x")
    assert r.returncode == 3, r.output
    assert "is not a network" in r.stderr


def test_the_verdict_remembered_per_header_lines_follows_each_answer() -> None:
    from prewarm_direct import warm

    warmer = warm.Warmer(concurrency=1, timeout=1.0, user_agent="t")
    try:
        hit = bytearray(
            b"HTTP/1.1 200 OK\r\nX-Cache: Hit from cloudfront\r\nX-Amz-Cf-Pop: NRT57-C1\r\n\r\n"
        )
        miss = bytearray(b"HTTP/1.1 200 OK\r\nx-cache: Miss from cloudfront\r\n\r\n")
        for _ in range(2):  # the second time from what was remembered
            assert warmer._verdict(hit) == ("hit", "NRT57-C1")
            assert warmer._verdict(miss) == ("miss", None)
        # Headers unique to each answer (a request id) do not grow the memory without bound.
        for i in range(warm._MAX_VERDICTS + 10):
            warmer._verdict(bytearray(b"HTTP/1.1 200 OK\r\nCF-Ray: %d-NRT\r\n\r\n" % i))
        assert len(warmer._verdicts) <= warm._MAX_VERDICTS
        assert warmer._verdict(hit) == ("hit", "NRT57-C1")
    finally:
        warmer.close()


def test_a_flush_returns_only_once_the_rows_queued_before_it_are_committed(tmp_path) -> None:
    """The writer thread is held just after it took A's rows; another thread then saves and
    flushes B's: A's flush must not return (its rows are not in the file yet), and B's rows
    must not be committed before A's (an older answer would replace a newer one)."""
    import sqlite3
    import threading

    from prewarm_direct.store import Store
    from prewarm_direct.warm import OK, Answer

    path = tmp_path / "direct.sqlite3"
    store = Store(path)
    taken, release = threading.Event(), threading.Event()

    class HeldAfterTaking(threading.Condition):
        def __exit__(self, *exc: object) -> None:
            super().__exit__(*exc)  # type: ignore[arg-type]
            took = not store._queue and store._n_queued > store._n_written
            if threading.current_thread().name == "direct-record" and took and not taken.is_set():
                taken.set()
                release.wait(10)

    store._cond = HeldAfterTaking()

    def save(tag: str) -> None:
        for i in range(3):
            url = f"https://h/{tag}{i}"
            store.save("job", "run", "direct", [(url, "edge", None, "identity", Answer(OK))])

    def committed(tag: str) -> int:
        with sqlite3.connect(path) as db:
            query = "SELECT COUNT(*) FROM requests WHERE url LIKE ?"
            return int(db.execute(query, (f"https://h/{tag}%",)).fetchone()[0])

    try:
        save("A")
        assert taken.wait(10)  # the writer holds A's rows
        a_done = threading.Event()
        a = threading.Thread(target=lambda: (store.flush(), a_done.set()))
        a.start()

        def save_and_flush_b() -> None:
            save("B")
            store.flush()

        b = threading.Thread(target=save_and_flush_b)
        b.start()
        returned_early = a_done.wait(1.0)  # it can only return once A's rows are committed
        a_rows_then, b_rows_then = committed("A"), committed("B")
        release.set()
        a.join(10)
        b.join(10)
        assert not (returned_early and a_rows_then < 3), "flush returned before its rows"
        assert not (b_rows_then and a_rows_then < 3), "B's rows were committed before A's"
        assert committed("A") == 3 and committed("B") == 3
    finally:
        release.set()
        store.close()


_EARLIER_RECORD = """
CREATE TABLE IF NOT EXISTS requests (
    run_id TEXT NOT NULL,
    alias TEXT NOT NULL,
    url TEXT NOT NULL,
    target TEXT NOT NULL,
    variant TEXT NOT NULL,
    outcome TEXT NOT NULL,
    status_code INTEGER,
    cache TEXT,
    bytes INTEGER NOT NULL DEFAULT 0,
    reason TEXT,
    pop TEXT,
    ip TEXT,
    at TEXT NOT NULL,{job}
    PRIMARY KEY (run_id, url, target, variant)
);
"""  # the layout before the record was keyed by job (and, before that, without a job)
_EARLIER_INDEX = "CREATE INDEX IF NOT EXISTS requests_by_job ON requests (job_id, url);"
_EARLIER_INSERT = (
    "INSERT OR REPLACE INTO requests (run_id, url, target, variant, outcome, status_code,"
    " cache, bytes, reason, pop, ip, at, alias, job_id) VALUES ({})".format(", ".join("?" * 14))
)


def _write_as_earlier_prewarm(path: Path, rows: list[tuple[object, ...]]) -> None:
    """What the previous version did when it opened the record and saved answers."""
    import sqlite3

    with sqlite3.connect(path) as db:
        db.executescript(_EARLIER_RECORD.format(job="\n    job_id TEXT,") + _EARLIER_INDEX)
        db.executemany(_EARLIER_INSERT, rows)


@pytest.mark.parametrize("with_job", [True, False], ids=["keyed-by-run", "before-jobs"])
def test_an_earlier_record_is_moved_to_the_table_keyed_by_job(tmp_path, with_job) -> None:
    import sqlite3

    from prewarm_direct.store import Store
    from prewarm_direct.warm import OK, REJECTED, Answer

    path = tmp_path / "direct.sqlite3"
    rows = [
        ("r1", "https://h/a", "edge", "gzip", OK, 200, "miss", 10, None, None, None),
        ("r1", "https://h/b", "edge", "gzip", REJECTED, 404, None, 0, "HTTP 404", None, None),
        ("r2", "https://h/a", "edge", "br", OK, 200, "hit", 9, None, None, None),
    ]
    rows = [(*r, f"2026-12-06T00:00:0{i}Z", "direct", "job1") for i, r in enumerate(rows)]
    if with_job:
        _write_as_earlier_prewarm(path, rows)
    else:
        with sqlite3.connect(path) as db:
            db.executescript(_EARLIER_RECORD.format(job=""))
            db.executemany(_EARLIER_INSERT.replace(", job_id", "").replace(", ?)", ")"), [
                r[:-1] for r in rows
            ])  # fmt: skip
    store = Store(path)
    try:
        runs = sorted((r.run_id, r.url, r.variant, r.outcome) for r in store.of_runs(["r1", "r2"]))
        assert runs == [
            ("r1", "https://h/a", "gzip", OK),
            ("r1", "https://h/b", "gzip", REJECTED),
            ("r2", "https://h/a", "br", OK),
        ]
        assert [r.run_id for r in store.of_runs(["r2"])] == ["r2"]
        if with_job:
            assert store.has_job("job1", "direct")
            answered = store.answered("job1", "direct", ["https://h/a"])
            assert sorted(r.variant for r in answered) == ["br", "gzip"]
        store.save("job2", "r3", "direct", [("https://h/c", "edge", None, "gzip", Answer(OK))])
        store.flush()
        assert [r.url for r in store.of_runs(["r3"])] == ["https://h/c"]
        assert [r.url for r in store.answered("job2", "direct", ["https://h/c"])] == ["https://h/c"]
    finally:
        store.close()
    with sqlite3.connect(path) as db:
        columns = sorted(db.execute("PRAGMA table_info(requests)"), key=lambda r: r[5])
        assert [c[1] for c in columns if c[5]] == ["job_id", "url", "target", "variant", "run_id"]
        indexes = (
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'requests'"
            " AND sql IS NOT NULL"
        )
        assert db.execute(indexes).fetchall() == []


def test_answers_an_earlier_prewarm_wrote_into_the_new_table_are_found(tmp_path) -> None:
    """Two versions taking turns on one state directory: the earlier one makes its index
    again and writes runs the `runs` table does not name."""
    import sqlite3

    from prewarm_direct.store import Store
    from prewarm_direct.warm import OK

    path = tmp_path / "direct.sqlite3"
    Store(path).close()
    row = ("r9", "https://h/z", "edge", "gzip", OK, 200, "hit", 5, None, None, None)
    _write_as_earlier_prewarm(path, [(*row, "2026-12-06T00:00:00Z", "direct", "job9")])
    store = Store(path)
    try:
        assert [(r.run_id, r.url) for r in store.of_runs(["r9"])] == [("r9", "https://h/z")]
        assert [r.url for r in store.answered("job9", "direct", ["https://h/z"])] == ["https://h/z"]
    finally:
        store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT run_id, job_id FROM runs").fetchall() == [("r9", "job9")]
        indexes = (
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'requests'"
            " AND sql IS NOT NULL"
        )
        assert db.execute(indexes).fetchall() == []


def test_the_answers_of_urls_warmed_whole_make_one_row_and_are_read_back(
    tmp_path, monkeypatch
) -> None:
    import sqlite3

    from prewarm_direct import store as store_module
    from prewarm_direct.store import Store
    from prewarm_direct.warm import OK, TRANSIENT, Answer

    # The writer takes nothing before the flush, however slow the machine.
    monkeypatch.setattr(store_module, "COMMIT_EVERY", 3600)

    path = tmp_path / "direct.sqlite3"
    store = Store(path)
    whole, half = "https://h/whole", "https://h/half"
    try:
        before = "2026-01-01T00:00:00.000000Z"
        for variant in ("gzip", "identity"):
            store.save("job1", "r1", "direct", [(whole, "edge", "192.0.2.1", variant, Answer(OK))])
        store.save("job1", "r1", "direct", [(half, "edge", "192.0.2.1", "gzip", Answer(OK))])
        failed = Answer(TRANSIENT, 503, reason="HTTP 503")
        store.save("job1", "r1", "direct", [(half, "edge", "192.0.2.1", "identity", failed)])
        # `half` named too: only OK answers of a URL go in the row, as the caller promises.
        store.flush(warmed_urls={whole})
        with sqlite3.connect(path) as db:
            by_url = db.execute("SELECT url, variant FROM requests ORDER BY variant").fetchall()
            (n_warmed,) = db.execute("SELECT COUNT(*) FROM warmed").fetchone()
        assert by_url == [(half, "gzip"), (half, "identity")] and n_warmed == 1
        records = {(r.url, r.variant): r for r in store.of_runs(["r1"])}
        assert records.keys() == {
            (whole, "gzip"),
            (whole, "identity"),
            (half, "gzip"),
            (half, "identity"),
        }
        assert records[(whole, "gzip")].ip == "192.0.2.1" and records[(whole, "gzip")].outcome == OK
        assert records[(half, "identity")].reason == "HTTP 503"
        # Looked up by URL: only what a resend may ask; the whole URL is found by time.
        assert {r.url for r in store.answered("job1", "direct", [whole, half])} == {half}
        assert store.warmed_since("job1", "direct", [whole, half], before) == {whole: "r1"}
        assert store.warmed_since("job1", "other", [whole], before) == {}
        later = "2999-01-01T00:00:00.000000Z"
        assert store.warmed_since("job1", "direct", [whole], later) == {}
        # Another job warming the same URL is not this job's answer.
        store.save("job2", "r2", "direct", [(whole, "edge", None, "gzip", Answer(OK))])
        store.flush(warmed_urls={whole})
        assert store.warmed_since("job1", "direct", [whole], before) == {whole: "r1"}
        assert store.warmed_since("job2", "direct", [whole], before) == {whole: "r2"}
        assert store.warmed_since("job3", "direct", [whole], before) == {}
        assert store.has_job("job2", "direct") and not store.has_job("job2", "other")
        assert [r.run_id for r in store.of_runs(["r2"])] == ["r2"]
    finally:
        store.close()


def test_probe_targets_carry_the_user_agent_of_the_run_that_warmed_them(tmp_path) -> None:
    """A job's runs may send different User-Agents (a --resume under a newer prewarm, whose
    default names its version): each target is probed with its own run's."""
    from prewarm_direct.store import Store
    from prewarm_direct.warm import OK, Answer

    store = Store(tmp_path / "direct.sqlite3")
    try:
        store.name_run("r1", "job", "prewarm-cli/1.0")
        store.save("job", "r1", "direct", [("https://h/a", "edge", None, "gzip", Answer(OK))])
        store.name_run("r2", "job", "prewarm-cli/1.1")
        store.save("job", "r2", "direct", [("https://h/b", "edge", None, "gzip", Answer(OK))])
        store.save("job", "r2", "direct", [("https://h/c", "edge", None, "gzip", Answer(OK))])
        store.name_run("r4", "job", "prewarm-cli/1.2")  # warms c again: its latest answer's
        store.save("job", "r4", "direct", [("https://h/c", "edge", None, "gzip", Answer(OK))])
        store.save("job", "r3", "direct", [("https://h/d", "edge", None, "gzip", Answer(OK))])
        store.flush(warmed_urls={"https://h/b"})  # one row per batch too
        found = {t.url: t.user_agent for t in store.warmed_targets(["r1", "r2", "r3", "r4"])}
        assert found == {
            "https://h/a": "prewarm-cli/1.0",
            "https://h/b": "prewarm-cli/1.1",
            "https://h/c": "prewarm-cli/1.2",
            "https://h/d": None,  # a run the record never named: the config's is used
        }
    finally:
        store.close()


def test_a_lookup_finds_only_what_the_job_being_sent_warmed_whole(tmp_path, monkeypatch) -> None:
    from datetime import UTC, datetime, timedelta

    from prewarm_direct import store as store_module
    from prewarm_direct.provider import DirectProvider
    from prewarm_direct.warm import OK, Answer

    monkeypatch.setattr(store_module, "COMMIT_EVERY", 3600)  # all answers wait for the flush

    provider = DirectProvider("direct", {})
    provider.attach_state_dir(tmp_path)
    since = datetime.now(UTC) - timedelta(minutes=5)
    try:
        store = provider.store
        for job, url in (("job1", "https://h/mine"), ("job2", "https://h/theirs")):
            store.save(job, f"run-{job}", "direct", [(url, "edge", None, "identity", Answer(OK))])
            store.flush(warmed_urls={url})
        urls = ["https://h/mine", "https://h/theirs"]
        assert provider.find_submitted(urls, since) == {}  # no job being sent
        provider.attach_job("job1")
        assert provider.find_submitted(urls, since) == {"https://h/mine": "run-job1"}
        assert provider.find_submitted(urls, datetime.now(UTC) + timedelta(minutes=1)) == {}
        provider.attach_job(None)  # the run is over
        assert provider.find_submitted(urls, since) == {}
    finally:
        provider.close()


def test_the_latest_answer_wins_across_the_record_s_two_tables(tmp_path, monkeypatch) -> None:
    """A URL warmed whole, then asked again (a lookup missed it): the newer answer is the one
    status and verify read, whichever table holds it."""
    from prewarm_direct import store as store_module
    from prewarm_direct.store import Store
    from prewarm_direct.warm import OK, Answer

    monkeypatch.setattr(store_module, "COMMIT_EVERY", 3600)
    store = Store(tmp_path / "direct.sqlite3")
    url = "https://h/again"
    try:
        store.save("job1", "r1", "direct", [(url, "edge", None, "gzip", Answer(OK, 200, "miss"))])
        store.flush(warmed_urls={url})
        store.save("job1", "r2", "direct", [(url, "edge", None, "gzip", Answer(OK, 200, "hit"))])
        store.flush()
        (record,) = store.of_runs(["r1", "r2"])
        assert (record.run_id, record.cache) == ("r2", "hit")
    finally:
        store.close()


def test_a_url_no_resolve_pin_matches_is_named_once(tmp_path) -> None:
    from prewarm_direct.targets import NEAREST, Targets, TargetSpec

    warnings: list[str] = []
    targets = Targets(TargetSpec(resolve=("h.test:8443:192.0.2.1",)), warnings.append)
    assert [t.label for t in targets.for_url("https://h.test:8443/a")] == ["192.0.2.1"]
    assert warnings == []
    for url in ("https://h.test/a", "https://h.test/b", "https://other.test/c"):
        assert [t.label for t in targets.for_url(url)] == [NEAREST]
    assert warnings == [
        "no --resolve pin for h.test:443 (--resolve h.test:8443:192.0.2.1 is for another port):"
        " its URLs are warmed through the edge this machine's DNS gives",
        "no --resolve pin for other.test:443: its URLs are warmed through the edge this"
        " machine's DNS gives",
    ]


@pytest.mark.parametrize("waits", [True, False])
def test_answers_are_recorded_before_a_pacing_wait(tmp_path, monkeypatch, waits: bool) -> None:
    """A rate's wait may be long (a kill in it would lose what the run holds): with a limit
    kept, the answers given so far are in the record before each wait begins; without one,
    they go every 50 ms and at the batch's end, as pacing then never waits."""
    import sqlite3

    from fakes.cache_server import CacheServer
    from prewarm_direct import provider as provider_module

    monkeypatch.setattr(provider_module, "COMMIT_EVERY", 3600)  # no hand-over by the clock
    p = provider(encodings=["identity"], concurrency=1)
    p.attach_state_dir(tmp_path)
    p.attach_job("job1")
    n_paced = 0
    seen_in_record: list[int] = []

    def pace(_n_urls: int, _meanwhile: object = None) -> None:
        nonlocal n_paced
        n_paced += 1
        if n_paced > 1:  # before the second request and the third (one at a time)
            p.store.flush()  # commits whatever the run has handed over by now
            with sqlite3.connect(tmp_path / "direct.sqlite3") as db:
                (n,) = db.execute("SELECT COUNT(*) FROM requests").fetchone()
            seen_in_record.append(n)

    p.attach_pacer(pace, waits=waits)
    try:
        with CacheServer() as edge:
            urls = [f"{edge.url}/cloudfront/hit?{i}" for i in range(3)]
            result = p.submit_batch(urls, SubmitOptions(job_id="job1"))
        assert result.accepted == tuple(urls)
    finally:
        p.close()
    assert seen_in_record == ([1, 2] if waits else [0, 0])


def test_an_answer_after_its_url_was_refused_is_recorded_and_ends_nothing(tmp_path) -> None:
    """A URL's variants go out together once its first is answered: one refused (404) while
    another is still in flight. The late answer is recorded, and the URL is rejected; the
    run goes on (the late answer raised KeyError, which stopped the whole run)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from prewarm_direct.warm import Warmer

    refused = threading.Event()  # the client has taken the 404 in

    class Edge(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            encoding = self.headers.get("Accept-Encoding")
            if encoding == "br":
                refused.wait(10)
            self.send_response(404 if encoding == "gzip" else 200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    done = Warmer._done

    def done_then_tell(self: Warmer, handle: object, error: object) -> None:
        request = self._slots[id(handle)].request
        done(self, handle, error)  # type: ignore[arg-type]
        if request is not None and request.variant == "gzip":
            refused.set()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Edge)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    p = provider(encodings=["identity", "gzip", "br"], concurrency=4)
    p.attach_state_dir(tmp_path)
    mp = pytest.MonkeyPatch()
    mp.setattr(Warmer, "_done", done_then_tell)
    try:
        url, other = (f"http://127.0.0.1:{server.server_port}/{name}" for name in ("x", "y"))
        result = p.submit_batch([url], SubmitOptions(job_id="job1"))
        assert refused.is_set()
        assert url in result.rejected and "HTTP 404" in result.rejected[url]
        assert not result.accepted and not result.failed
        # Each answer is in the run's counts and the record, the late one too.
        assert p.submit_details()["requests"] == 3
        assert {r.variant for r in p.store.of_runs([p.run_id])} == {"identity", "gzip", "br"}
        # The run goes on: the next batch (its br no longer waits).
        assert p.submit_batch([other], SubmitOptions(job_id="job1")).rejected.keys() == {other}
    finally:
        mp.undo()
        p.close()
        server.shutdown()
        server.server_close()


def test_answers_are_recorded_before_a_dns_lookup_of_a_new_host(tmp_path, monkeypatch) -> None:
    """A client subnet's edge is asked per host, and a DNS answer may take seconds: the
    answers given so far are in the record before the query goes out."""
    import sqlite3

    from fakes.cache_server import CacheServer
    from prewarm_direct import dns
    from prewarm_direct import provider as provider_module

    monkeypatch.setattr(provider_module, "COMMIT_EVERY", 3600)  # no hand-over by the clock
    p = provider(encodings=["identity"], concurrency=1, ecs=["192.0.2.0/24"])
    p.attach_state_dir(tmp_path)
    in_record_at_lookup: dict[str, int] = {}

    def resolve_a(name: str, _resolver: object, ecs: str | None = None) -> list[str]:
        if name != "a.test":  # the first host's answer came before this query
            p.store.flush()  # commits whatever the run has handed over by now
            with sqlite3.connect(tmp_path / "direct.sqlite3") as db:
                (n,) = db.execute("SELECT COUNT(*) FROM requests").fetchone()
            in_record_at_lookup[name] = n
        return ["127.0.0.1"]

    monkeypatch.setattr(dns, "resolve_a", resolve_a)
    try:
        with CacheServer() as edge:
            urls = [f"http://{host}:{edge.port}/cloudfront/hit" for host in ("a.test", "b.test")]
            result = p.submit_batch(urls, SubmitOptions(job_id="job1"))
        assert result.accepted == tuple(urls)
    finally:
        p.close()
    assert in_record_at_lookup == {"b.test": 1}


def test_a_urls_reasons_are_in_the_order_of_pop_target_and_variant() -> None:
    """Whatever order the answers came in (it varies from run to run)."""
    from prewarm_direct.provider import _describe
    from prewarm_direct.warm import TRANSIENT, Answer

    came = [
        (("b", "identity"), Answer(TRANSIENT, reason="HTTP 503")),
        (("a", "identity"), Answer(TRANSIENT, reason="HTTP 502")),
        (("b", "gzip"), Answer(TRANSIENT, reason="HTTP 504")),
        (("a", "gzip"), Answer(TRANSIENT, reason="HTTP 500")),
    ]
    assert _describe(came) == (
        "HTTP 500 at a (Accept-Encoding: gzip); HTTP 502 at a (Accept-Encoding: identity);"
        " HTTP 504 at b (Accept-Encoding: gzip); HTTP 503 at b (Accept-Encoding: identity)"
    )


def test_an_idn_hosts_pin_is_found_by_the_name_sent() -> None:
    """libcurl is given the URL in IDNA form: the pin, and curl's --connect-to entry, name the
    host as sent, not as typed."""
    from prewarm_direct.targets import Targets, TargetSpec

    warned: list[str] = []
    targets = Targets(TargetSpec(resolve=("xn--caf-dma.test:80:127.0.0.9",)), warned.append)
    (target,) = targets.for_url("http://café.test/menu.png")
    assert (target.ip, target.connect_to) == ("127.0.0.9", "xn--caf-dma.test:80:127.0.0.9:80")
    assert warned == []


def test_an_existing_record_is_made_private(tmp_path) -> None:
    import stat

    from prewarm_direct.store import Store

    # A record left readable (by a copy, an earlier prewarm, a permissive umask) holds every
    # URL warmed: it is made 0600 when opened, its SQLite sidecars too.
    path = tmp_path / "direct.sqlite3"
    Store(path).close()
    for extra in (path, Path(f"{path}-wal")):
        extra.touch()
        extra.chmod(0o644)
    store = Store(path)
    try:
        for extra in (path, Path(f"{path}-wal")):
            assert stat.S_IMODE(extra.stat().st_mode) == 0o600, extra
    finally:
        store.close()


def test_a_pruned_job_s_answers_leave_the_record(tmp_path) -> None:
    from prewarm_direct.store import Store
    from prewarm_direct.warm import OK, Answer

    store = Store(tmp_path / "direct.sqlite3")
    try:
        for job in ("job1", "job2"):
            url = f"https://h/{job}"
            store.save(job, f"run-{job}", "direct", [(url, "edge", None, "identity", Answer(OK))])
            store.flush(warmed_urls={url})  # one in the table of batches warmed whole
            store.save(job, f"run-{job}", "direct", [(url, "edge", None, "gzip", Answer(OK))])
            store.flush()
        store.forget(["job1"])
        assert not store.has_job("job1", "direct")
        assert store.of_runs(["run-job1"]) == []
        assert store.has_job("job2", "direct") and len(store.of_runs(["run-job2"])) == 2
    finally:
        store.close()


_KEYS = [
    ("https://h/a", "edge", "gzip"),
    ("https://h/a", "edge", "identity"),
    ("https://h/b", "pop2", "gzip"),
]


@contextmanager
def ticking_record() -> Iterator[Path]:
    """A temporary directory for a record whose every hand-over has a time of its own (which
    answer is the latest is then a tie only where an answer is carried) and is committed
    only by a flush."""
    import itertools
    import tempfile

    from prewarm_direct import store as store_module

    tick = itertools.count()
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as patch:
        patch.setattr(store_module, "utcnow", lambda: f"2026-12-06T00:00:00.{next(tick):06d}Z")
        patch.setattr(store_module, "COMMIT_EVERY", 3600)
        yield Path(tmp)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["r1", "r2", "r3"]),
            st.sampled_from(_KEYS),
            st.sampled_from(["ok", "rejected", "transient", "stopped", "not_found"]),
            st.booleans(),  # flushed as a batch's URLs warmed whole
        ),
        max_size=12,
    )
)
def test_a_report_reads_what_the_whole_record_says_failed(
    answers: list[tuple[str, tuple[str, str, str], str, bool]],
) -> None:
    """failures_of_runs, which reads the failures alone, gives what of_runs (every answer
    read) has that is not OK: each key's latest answer, unless one of the runs answered OK."""
    from prewarm_direct.store import Store
    from prewarm_direct.warm import OK, Answer

    with ticking_record() as tmp:
        store = Store(tmp / "direct.sqlite3")
        try:
            for run, (url, target, variant), outcome, whole in answers:
                answer = Answer(outcome, 200 if outcome == OK else 503, "miss", 10, None)
                store.save("job1", run, "direct", [(url, target, None, variant, answer)])
                store.flush(warmed_urls={url} if whole else frozenset())
            runs = ["r1", "r2", "r3"]
            expected = [r for r in store.of_runs(runs) if r.outcome != OK]
            found = store.failures_of_runs(runs)
            if not answers:
                assert found is None
            else:
                assert found == expected
        finally:
            store.close()


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["r1", "r2", "r3"]),
            st.sampled_from(_KEYS),
            st.sampled_from(["ok", "rejected", "transient", "stopped", "not_found"]),
            st.sampled_from(["hit", "miss", None]),
            st.sampled_from(["flushed", "warmed whole", "carried"]),
        ),
        max_size=12,
    )
)
def test_runs_counted_without_their_urls_count_as_with_them(
    answers: list[tuple[str, tuple[str, str, str], str, str | None, str]],
) -> None:
    """fetch_counts, which counts each URL as SQLite reads the record, gives fetch_status's
    states, counts and details (every answer read, each URL listed), whichever table holds an
    answer, and where an earlier run's answer was carried into a later one (the same time)."""
    from prewarm_direct.provider import DirectProvider
    from prewarm_direct.warm import OK, Answer

    from prewarm_cli.errors import NotFoundError

    with ticking_record() as tmp:
        direct = DirectProvider("direct", {})
        direct.attach_state_dir(tmp)
        store = direct.store
        try:
            # A job's runs come one after the other (its lock).
            for run, (url, target, variant), outcome, cache, how in sorted(
                answers, key=lambda answer: answer[0]
            ):
                if how == "carried":  # a resume carries an earlier run's final answers
                    earlier = [
                        r
                        for r in store.answered("job1", "direct", [url])
                        if r.run_id < run and (r.target, r.variant) == (target, variant)
                    ]
                    store.copy("job1", run, "direct", earlier[-1:])
                    store.flush(warmed_urls={url})
                    continue
                answer = Answer(outcome, 200 if outcome == OK else 503, cache, len(url), None)
                store.save("job1", run, "direct", [(url, target, None, variant, answer)])
                store.flush(warmed_urls={url} if how == "warmed whole" else frozenset())
            runs = ["r1", "r2", "r3"]
            try:
                expected = [replace(s, urls=()) for s in direct.fetch_status(runs)]
            except NotFoundError:
                with pytest.raises(NotFoundError):
                    direct.fetch_counts(runs)
            else:
                assert direct.fetch_counts(runs) == expected
        finally:
            direct.close()


def record_many_warm_answers(store: Store, refused_by: str) -> None:
    """60,000 warm answers of run r1 (half in rows of batches warmed whole, half a row each),
    and one 404 of https://h/gone.js given by ``refused_by``."""
    from prewarm_direct.warm import OK, REJECTED, Answer

    warm = Answer(OK, 200, "miss", 2048, None)
    for start in range(0, 60_000, 10_000):
        urls = [f"https://h/{i:06d}.js" for i in range(start, start + 10_000)]
        store.save("job1", "r1", "direct", [(u, "edge", None, "gzip", warm) for u in urls])
        store.flush(warmed_urls=set(urls[: len(urls) // 2]))
    refused = Answer(REJECTED, 404, None, 0, "HTTP 404 at edge")
    store.save("job1", refused_by, "direct", [("https://h/gone.js", "edge", None, "gzip", refused)])
    store.flush()


def test_a_report_of_many_warm_answers_holds_none_of_them(tmp_path: Path) -> None:
    import tracemalloc

    from prewarm_direct.store import Store

    store = Store(tmp_path / "direct.sqlite3")
    try:
        record_many_warm_answers(store, refused_by="r1")
        tracemalloc.start()
        try:
            failures = store.failures_of_runs(["r1"])
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert [f.url for f in failures or []] == ["https://h/gone.js"]
        # The 60,000 warm answers read as records would take tens of MB.
        assert peak < 2 * 2**20, f"{peak} bytes"
    finally:
        store.close()


def test_runs_of_many_answers_are_counted_without_holding_them(tmp_path: Path) -> None:
    """status within a journal job asks fetch_counts: 60,000 answers counted, not held."""
    import tracemalloc

    from prewarm_direct.provider import DirectProvider

    direct = DirectProvider("direct", {})
    direct.attach_state_dir(tmp_path)
    try:
        record_many_warm_answers(direct.store, refused_by="r2")
        tracemalloc.start()
        try:
            first, second = direct.fetch_counts(["r1", "r2"])
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert (first.total, first.succeeded, first.details["filled"]) == (60_000, 60_000, 60_000)
        assert (second.state, second.failed, second.details["rejected"]) == ("failed", 1, 1)
        # fetch_status holds every URL's result and record: tens of MB.
        assert peak < 2 * 2**20, f"{peak} bytes"
    finally:
        direct.close()


def test_the_probe_targets_of_many_answers_are_read_as_probed_not_held(tmp_path: Path) -> None:
    """--verify of a direct job reads its probe targets from the record twice (to count,
    then to probe), a PoP's with one variant side by side: 60,000 are never all held."""
    import tracemalloc

    from prewarm_direct.provider import DirectProvider
    from prewarm_direct.warm import OK, Answer

    direct = DirectProvider("direct", {})
    direct.attach_state_dir(tmp_path)
    try:
        record_many_warm_answers(direct.store, refused_by="r2")
        # A second PoP warmed a few of them, one after a failure: each once, with its IP.
        failed, warm = Answer("transient", 503, None, 0, "HTTP 503"), Answer(OK, 200, "hit", 9)
        answers = [
            ("https://h/000001.js", "b", "10.0.0.2", "gzip", failed),
            ("https://h/000001.js", "b", "10.0.0.2", "gzip", warm),
            ("https://h/000002.js", "b", "10.0.0.2", "gzip", warm),
        ]
        direct.store.save("job1", "r2", "direct", answers)
        direct.store.flush()
        targets = direct.probe_targets(["r1", "r2"])
        assert targets is not None
        tracemalloc.start()
        try:
            n_targets = sum(1 for _ in targets)
            groups = [
                (key, sum(1 for _ in same))
                for key, same in groupby(targets, key=lambda t: (t.label, t.ip, t.accept_encoding))
            ]
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert n_targets == 60_002
        assert groups == [(("b", "10.0.0.2", "gzip"), 2), (("edge", None, "gzip"), 60_000)]
        # Read as records and targets, the 60,000 took tens of MB.
        assert peak < 2 * 2**20, f"{peak} bytes"
    finally:
        direct.close()


def test_a_read_of_the_latest_answers_left_unfinished_does_not_hold_the_store(
    tmp_path: Path,
) -> None:
    """Ctrl-C while status counted the answers left the iterator alive, holding the store's
    lock, and closing the store waited for it for ever."""
    import threading

    from prewarm_direct.store import Store
    from prewarm_direct.warm import OK, Answer

    store = Store(tmp_path / "direct.sqlite3")
    urls = [f"https://h/{i}.js" for i in range(3)]
    store.save("job1", "r1", "direct", [(u, "edge", None, "gzip", Answer(OK)) for u in urls])
    store.flush()
    unfinished = store.latest_of_runs(["r1"])
    assert next(unfinished).url == urls[0]
    closer = threading.Thread(target=store.close)
    closer.start()
    closer.join(timeout=10)
    assert not closer.is_alive(), "closing the store waited for the unfinished read"
    unfinished.close()


def test_settings_a_plugin_gives_as_tuples_compare_as_the_job_kept_them() -> None:
    """Kept as JSON, a tuple comes back a list: the same settings are not a change."""
    from types import SimpleNamespace

    from prewarm_cli.engine.submit import _as_json, _check_same_settings

    settings = {"pops": ("NRT57",), "cf_domain": None}
    job = SimpleNamespace(id="J1", options={"settings": {"d": _as_json(settings)}})
    provider = SimpleNamespace(job_settings=lambda options: settings)
    ws = SimpleNamespace(session=lambda alias: SimpleNamespace(provider=provider))
    _check_same_settings(ws, job, "d", None)  # type: ignore[arg-type]


def test_a_dry_run_with_a_ca_bundle_not_found_is_a_config_error(write_config, tmp_path) -> None:
    """--dry-run plans without secrets that are not set here; a ca_bundle that cannot be
    found is not a secret: it is said (exit 3), as the submit would say it (the plan went
    ahead with a note that secrets were missing)."""
    from helpers import invoke

    for bundle, said in ((tmp_path / "gone.pem", "file not found"), (tmp_path, "a directory")):
        write_config(f'[providers.direct]\ntype = "direct"\nca_bundle = "{bundle}"\n')
        r = invoke("submit", "-p", "direct", "--dry-run", "-o", "json", "https://a.test/x")
        assert r.returncode == 3, r.output
        assert f"providers.direct.ca_bundle: {said}" in r.stderr
        assert "planning without its secrets" not in r.stderr


def test_a_warmer_whose_request_failed_once_connected_closes_its_connections() -> None:
    """A failure on a reused connection (no answer to a second request) is no lookup left
    running: close() closes the multi handle and the connections it keeps (only a multi
    handle whose lookup may still run is left to the process's end)."""
    import socket
    import threading

    from prewarm_direct.targets import Target
    from prewarm_direct.warm import OK, TRANSIENT, Request, Warmer

    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    idle_closed = threading.Event()
    with (
        socket.create_server(("127.0.0.1", 0)) as kept,  # its connection stays idle, kept
        socket.create_server(("127.0.0.1", 0)) as stalls,  # answers once, then nothing
    ):

        def serve_kept() -> None:
            conn, _ = kept.accept()
            with conn:
                while data := conn.recv(65536):
                    if b"\r\n\r\n" in data:
                        conn.sendall(ok)
            idle_closed.set()  # the client closed its side

        def serve_once() -> None:
            conn, _ = stalls.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(ok)
                while conn.recv(65536):  # the second request: no answer
                    pass

        for serve in (serve_kept, serve_once):
            threading.Thread(target=serve, daemon=True).start()
        header_lines = ("Accept-Encoding: identity",)
        requests = [
            Request(f"http://127.0.0.1:{server.getsockname()[1]}/{n}", Target("nearest"),
                    "identity", header_lines)
            for server, n in ((kept, 1), (stalls, 1), (stalls, 2))
        ]  # fmt: skip
        answers: list[str] = []
        warmer = Warmer(concurrency=1, timeout=1.0, user_agent="t")
        warmer.run(
            lambda: requests.pop(0) if requests else None, lambda _r, a: answers.append(a.outcome)
        )
        assert answers == [OK, OK, TRANSIENT]
        warmer.close()
        assert idle_closed.wait(30), "the idle connection was left open"
