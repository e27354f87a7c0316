"""`prewarm verify` and `--verify` as a user runs them, against a local fake CDN edge."""

from __future__ import annotations

import json

import pytest
from fakes.cache_server import CacheServer
from fakes.generic import FakeCdn
from helpers import invoke


@pytest.fixture
def edge():
    with CacheServer() as server:
        yield server


def test_verify_command_json_table_and_expect_hit(cli_env, edge) -> None:
    hit, miss = f"{edge.url}/cloudfront/hit", f"{edge.url}/cloudfront/miss"
    r = invoke("verify", hit, miss, "-o", "json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    by_url = {x["url"]: x for x in data["results"]}
    assert by_url[hit]["cache"] == "hit" and by_url[hit]["pop"] == "SIN2-P1"
    assert by_url[miss]["cache"] == "miss"
    assert data["summary"]["hit_ratio"] == 0.5
    r = invoke("verify", "--expect-hit", hit, miss)
    assert r.returncode == 4
    r = invoke("verify", "--expect-hit", hit)
    assert r.returncode == 0
    table = invoke("verify", hit, "-o", "table")
    assert "SIN2-P1" in table.stdout and "hit" in table.stdout
    nd = invoke("verify", hit, miss, "-o", "ndjson")
    assert len(nd.stdout.splitlines()) == 2
    bad = invoke("verify", "--resolve", "nonsense", hit)
    assert bad.returncode == 2


def test_submit_wait_verify_sets_the_vendor_claim_beside_the_truth(
    fake_config, fake_cdn: FakeCdn, edge
) -> None:
    hit, miss = f"{edge.url}/cloudfront/hit", f"{edge.url}/cloudfront/miss"
    r = invoke("submit", "--wait", "--interval", "0.2", "--verify", "-o", "json", hit, miss)
    data = json.loads(r.stdout)
    assert data["status"]["state"] == "succeeded"
    results = {x["url"]: x for x in data["verify"]["results"]}
    assert results[hit]["vendor"] == "succeeded" and results[hit]["mismatch"] is False
    assert results[miss]["vendor"] == "succeeded" and results[miss]["mismatch"] is True
    assert data["verify"]["summary"]["mismatches"] == 1
    assert r.returncode == 4  # the vendor says done, but one URL is not warm

    r = invoke("status", data["job_id"], "--verify", "-o", "json")
    again = json.loads(r.stdout)
    assert again["verify"]["summary"]["mismatches"] == 1 and r.returncode == 4
