"""Direct warming over HTTPS: TLS always verified, a custom CA through ca_bundle, SNI kept."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from fakes.cache_server import CacheServer


def trusting_its_ca(
    tls_edge: tuple[CacheServer, Path], write_config: Callable[[str], Path]
) -> tuple[CacheServer, str, str]:
    """The edge, a URL on it, and its pin, with direct configured to trust its CA."""
    edge, ca = tls_edge
    write_config(
        f'[providers.direct]\ntype = "direct"\nca_bundle = "{ca}"\nencodings = ["identity"]\n'
    )
    return (
        edge,
        f"https://pinned.test:{edge.port}/cloudfront/hit",
        f"pinned.test:{edge.port}:127.0.0.1",
    )


def test_warms_over_tls_with_the_configured_ca_and_keeps_host_and_sni(
    tls_edge: tuple[CacheServer, Path], run_cli, write_config: Callable[[str], Path]
) -> None:
    edge, url, pin = trusting_its_ca(tls_edge, write_config)
    r = run_cli("submit", "-p", "direct", "-o", "json", "--resolve", pin, url)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["accepted"] == 1
    assert set(edge.sni) == {"pinned.test"}  # connected to 127.0.0.1, named pinned.test
    assert [(q["host"], q["headers"]["accept-encoding"]) for q in edge.requests] == [
        (f"pinned.test:{edge.port}", "identity")
    ]


def test_an_edge_the_ca_does_not_vouch_for_gets_no_request(
    tls_edge: tuple[CacheServer, Path], run_cli, write_config: Callable[[str], Path]
) -> None:
    edge, _ca = tls_edge
    write_config('[defaults]\nretries = 3\n\n[providers.direct]\ntype = "direct"\n')
    url = f"https://pinned.test:{edge.port}/cloudfront/hit"
    pin = f"pinned.test:{edge.port}:127.0.0.1"
    r = run_cli("submit", "-p", "direct", "-o", "json", "--resolve", pin, url)
    assert r.returncode == 1, r.stderr  # nothing warmed
    reason = json.loads(r.stdout)["failed"][0]["reason"]
    assert "certificate" in reason.lower() and "ca_bundle" in reason, reason
    assert edge.requests == []  # the handshake failed: no request was sent
    # Once per variant, not retried: the same certificate would fail the same way.
    assert len(edge.sni) == 2, edge.sni


def test_wait_verify_probes_trust_the_configured_ca_too(
    tls_edge: tuple[CacheServer, Path], run_cli, write_config: Callable[[str], Path]
) -> None:
    edge, url, pin = trusting_its_ca(tls_edge, write_config)
    r = run_cli("submit", "-p", "direct", "-o", "json", "--resolve", pin, url, "--wait", "--verify")
    assert r.returncode == 0, r.stderr
    [probe] = json.loads(r.stdout)["verify"]["results"]
    assert probe["cache"] == "hit" and not probe["mismatch"], probe
    assert [q["method"] for q in edge.requests] == ["GET", "HEAD"]  # the warm, then the probe


def test_an_https_sitemap_is_fetched_with_the_ca_the_requests_trust(
    tmp_path: Path, run_cli, write_config: Callable[[str], Path]
) -> None:
    # A site behind a private CA lists its URLs in a sitemap on the same host: verify's
    # --ca-bundle and the providers' ca_bundle are trusted for the sitemap too (it was
    # fetched with the default store alone), and nothing else is.
    import ssl

    from fakes.cache_server import VENDOR_ROUTES, Route
    from fakes.tls import tls_files

    ca, cert, key = tls_files(tmp_path, "localhost")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with CacheServer(dict(VENDOR_ROUTES), ssl_context=context) as edge:
        page = f"https://localhost:{edge.port}/cloudfront/hit"
        listing = (
            '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
            f"<url><loc>{page}</loc></url></urlset>"
        )
        edge.routes["/sitemap.xml"] = Route(body=listing.encode())
        sitemap = f"https://localhost:{edge.port}/sitemap.xml"

        r = run_cli("verify", "-o", "json", "--sitemap", sitemap, "--ca-bundle", str(ca))
        assert r.returncode == 0, r.stderr
        assert [p["url"] for p in json.loads(r.stdout)["results"]] == [page]

        write_config(f'[providers.direct]\ntype = "direct"\nca_bundle = "{ca}"\n')
        r = run_cli("submit", "-p", "direct", "-o", "json", "--sitemap", sitemap)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["accepted"] == 1

        write_config('[providers.direct]\ntype = "direct"\n')
        r = run_cli("submit", "-p", "direct", "-o", "json", "--sitemap", sitemap)
        assert r.returncode == 2 and "certificate" in r.stderr.lower(), r.stderr


def test_an_untrusted_edge_is_not_asked_again_when_another_url_of_its_batch_is(
    tls_edge: tuple[CacheServer, Path], run_cli, write_config: Callable[[str], Path]
) -> None:
    """The batch is sent again for a URL answered 503: the URL whose edge's certificate is
    not trusted is not asked again with it (its handshakes were repeated with every retry)."""
    from fakes.cache_server import Route

    edge, _ca = tls_edge
    write_config('[defaults]\nretries = 3\n\n[providers.direct]\ntype = "direct"\n')
    with CacheServer() as busy:
        busy.routes["/busy"] = Route(status=503)
        url, busy_url = f"https://pinned.test:{edge.port}/cloudfront/hit", f"{busy.url}/busy"
        pin = f"pinned.test:{edge.port}:127.0.0.1"
        r = run_cli("submit", "-p", "direct", "-o", "json", "--resolve", pin, url, busy_url)
        n_busy = len(busy.paths("/busy"))
    assert r.returncode == 1, r.stderr
    assert {f["url"] for f in json.loads(r.stdout)["failed"]} == {url, busy_url}
    assert n_busy == 6  # two variants, three tries each
    assert len(edge.sni) == 2, edge.sni  # once per variant
