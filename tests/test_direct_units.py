"""Direct warming's parts without a network: targets, DNS names, Retry-After, the plan."""

from __future__ import annotations

from pathlib import Path

import pytest

from prewarm_cli.errors import ConfigError, UsageError
from prewarm_cli.plugin import SubmitOptions

ROOT = Path(__file__).resolve().parent.parent


def provider(**settings: object):
    from prewarm_direct import DirectProvider

    return DirectProvider("direct", settings)


def test_example_config_documents_every_direct_key() -> None:
    from prewarm_cli import registry

    text = (ROOT / "config.example.toml").read_text()
    for field in registry.load("direct").config_schema:
        assert f"# {field.name} = " in text, field.name


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


def test_bad_target_settings_are_clear_errors() -> None:
    from prewarm_direct.targets import Targets, TargetSpec

    with pytest.raises(ConfigError, match="cf_domain"):
        Targets(TargetSpec(pops=("NRT57",)), print)
    with pytest.raises(ConfigError, match="ecs"):
        Targets(TargetSpec(ecs=("not-a-net",)), print)
    with pytest.raises(ConfigError, match="resolver"):
        Targets(TargetSpec(resolver="dns.google"), print)
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
