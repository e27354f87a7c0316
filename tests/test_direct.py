"""Direct warming through a real caching proxy (nginx proxy_cache, two PoPs), via the CLI.

Every claim is checked from the origin's request counts and from a second request through
each PoP (X-Cache: HIT for every variant), never from prewarm's own output alone.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cachebed import HOST, POPS, CacheBed, DnsServer, cache_bed
from helpers import read_until_closed, wait_for

GZIP = "gzip, deflate, br"
IDENTITY = "identity"
# `prewarm submit -p direct -o json` in a process of its own (to be stopped or watched)
SUBMIT_DIRECT = (sys.executable, "-m", "prewarm_cli", "submit", "-p", "direct", "-o", "json")

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def bed(tmp_path: Path) -> Iterator[CacheBed]:
    yield from cache_bed(tmp_path / "bed")


@pytest.fixture
def device_bed(tmp_path: Path) -> Iterator[CacheBed]:
    """The bed with X-Device in nginx's cache key: one copy per device, as a CDN keyed on it."""
    yield from cache_bed(tmp_path / "bed", cache_key_headers=("X-Device",))


@pytest.fixture
def agent_bed(tmp_path: Path) -> Iterator[CacheBed]:
    """The bed with User-Agent in nginx's cache key."""
    yield from cache_bed(tmp_path / "bed", cache_key_headers=("User-Agent",))


@pytest.fixture
def direct_config(write_config: Callable[[str], Path]) -> Callable[[str], Path]:
    """Writes a config with quick retries, plus the given [providers.direct] lines."""

    def write(table: str = "") -> Path:
        return write_config(
            "[defaults]\nretries = 3\nretry_timeout = 30\n\n"
            '[providers.direct]\ntype = "direct"\n' + table
        )

    return write


def submit(run_cli: Callable[..., subprocess.CompletedProcess[str]], *args: str, **kw: object):
    r = run_cli("submit", "-p", "direct", "-o", "json", *args, **kw)
    data = json.loads(r.stdout) if r.stdout.strip() else None
    return r, data


def submit_with_max_bytes(
    bed: CacheBed, run_cli, direct_config, paths: list[str], *, concurrency: int
) -> tuple[subprocess.CompletedProcess[str], Any]:
    """A submit through the first PoP alone, identity only, with max_bytes = 5000."""
    direct_config(f'concurrency = {concurrency}\nmax_bytes = 5000\nencodings = ["identity"]\n')
    pin = ("--resolve", f"{HOST}:{bed.nginx.port}:{POPS[0]}")
    return submit(run_cli, *pin, *(bed.nginx.url(p) for p in paths))


def assert_hit_at_first_pop(bed: CacheBed, paths: list[str]) -> None:
    for path in paths:
        status, cache, _ = bed.nginx.probe(POPS[0], path, IDENTITY)
        assert (status, cache) == (200, "HIT"), path


def assert_hit_everywhere(bed: CacheBed, path: str, encodings: tuple[str, ...]) -> None:
    for pop in POPS:
        for enc in encodings:
            status, cache, _ = bed.nginx.probe(pop, path, enc)
            assert (status, cache) == (200, "HIT"), (pop, path, enc)


def test_warms_every_pop_and_variant_once(bed: CacheBed, run_cli, direct_config) -> None:
    direct_config()
    paths = [f"/obj/{i}.js" for i in range(3)]
    r, data = submit(run_cli, *bed.nginx.resolve_args(), *(bed.nginx.url(p) for p in paths))
    assert r.returncode == 0, r.stderr
    assert data["accepted"] == 3 and data["state"] == "submitted"
    assert data["rejected"] == [] and data["failed"] == []
    assert "started" in r.stderr  # messages on stderr, data on stdout
    for pop in POPS:  # one summary line per PoP
        assert r.stderr.count(f"direct: {pop}: 6 requests,") == 1
        assert f"direct: {pop}: 6 requests," not in r.stdout
    assert "0 already warm, 6 filled" in r.stderr
    details = data["providers"]["direct"]["details"]  # this run's figures, in the submit JSON
    assert (details["requests"], details["filled"], details["already_warm"]) == (12, 12, 0)
    assert details["pops"][POPS[1]]["requests"] == 6
    for path in paths:
        # One request per (PoP, variant), with exactly the Accept-Encoding asked for: the
        # identity variant is sent as `identity`, not as the HTTP library's default header.
        seen = {enc: n for (p, enc), n in bed.counts.counts.items() if p == path}
        assert seen == {GZIP: 2, IDENTITY: 2}
        assert_hit_everywhere(bed, path, (GZIP, IDENTITY))
        # The variants are distinct copies: gzip for one, the plain bytes for the other.
        assert bed.nginx.probe(POPS[0], path, GZIP)[2] == "gzip"
        assert bed.nginx.probe(POPS[0], path, IDENTITY)[2] == ""

    # status reads the record and sends nothing.
    before = bed.counts.total()
    st = run_cli("status", data["job_id"], "-o", "json")
    assert st.returncode == 0, st.stderr
    status = json.loads(st.stdout)
    assert status["state"] == "succeeded" and status["succeeded"] == 3
    details = status["providers"]["direct"]["details"]
    assert details["requests"] == 12 and details["filled"] == 12 and details["already_warm"] == 0
    assert set(details["pops"]) == set(POPS)
    assert details["pops"][POPS[0]]["requests"] == 6
    assert details["bytes"] > 3 * 2048  # three identity bodies of 2 KB, and gzip ones
    table = run_cli("status", data["job_id"], "-o", "table").stdout
    for pop in POPS:  # the table says them per PoP too, as the submit did
        assert f"direct: {pop}: 6 requests," in table and "0 already warm, 6 filled" in table
    assert bed.counts.total() == before

    # A second job finds everything warm: hits, and the origin is asked nothing.
    r2, data2 = submit(run_cli, *bed.nginx.resolve_args(), *(bed.nginx.url(p) for p in paths))
    assert r2.returncode == 0, r2.stderr
    assert bed.counts.total() == before
    st2 = json.loads(run_cli("status", data2["job_id"], "-o", "json").stdout)
    assert st2["providers"]["direct"]["details"]["already_warm"] == 12


def test_a_redirect_is_the_answer_warmed_not_followed(
    bed: CacheBed, run_cli, direct_config
) -> None:
    # The edge caches the 301 itself: that is what a visitor gets, and what is warmed. The
    # page it points to is another URL, not asked for.
    direct_config('encodings = ["identity"]\n')
    r, data = submit(run_cli, *bed.nginx.resolve_args(), bed.nginx.url("/moved/r.js"))
    assert r.returncode == 0, r.stderr
    assert data["accepted"] == 1 and data["rejected"] == [] and data["failed"] == []
    assert bed.counts.count("/moved/r.js") == 2  # once per PoP
    assert bed.counts.count("/obj/r.js") == 0  # the Location was not followed
    for pop in POPS:
        status, cache, _ = bed.nginx.probe(pop, "/moved/r.js", IDENTITY)
        assert (status, cache) == (301, "HIT"), pop


def test_encodings_option_and_headers(bed: CacheBed, run_cli, direct_config) -> None:
    direct_config('user_agent = "warmer/1"\n')
    path = "/obj/variants.css"
    r, _ = submit(
        run_cli,
        "--resolve",
        f"{HOST}:{bed.nginx.port}:{POPS[0]}",
        "--accept-encoding",
        "br",
        "--accept-encoding",
        IDENTITY,
        "-H",
        "X-Warm: yes",
        "-H",
        "Accept-Encoding: gzip",  # the variants set it: said once, and left out
        bed.nginx.url(path),
    )
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("-H Accept-Encoding is ignored") == 1, r.stderr
    assert {enc: n for (p, enc), n in bed.counts.counts.items() if p == path} == {
        "br": 1,
        IDENTITY: 1,
    }
    # -H headers and user_agent on every warm request (nginx passes them to the origin).
    assert bed.counts.headers[path]["x-warm"] == "yes"
    assert bed.counts.headers[path]["user-agent"] == "warmer/1"
    assert bed.nginx.probe(POPS[0], path, "br")[1] == "HIT"
    assert bed.nginx.probe(POPS[1], path, "br")[1] == "MISS"  # only the PoP asked for


def test_outcomes_rejected_retried_failed(bed: CacheBed, run_cli, direct_config) -> None:
    direct_config("timeout = 1.5\n")
    paths = {
        "missing": "/missing/a.js",
        "flaky": "/flaky/2/b.js",
        "stall": "/stall/c.js",
        "close": "/close/d.js",
        "ok": "/obj/e.js",
    }
    r, data = submit(
        run_cli,
        *bed.nginx.resolve_args(),
        *(bed.nginx.url(p) for p in paths.values()),
        timeout=120,
    )
    assert r.returncode == 4, r.stderr
    assert data["accepted"] == 2
    rejected = {x["url"]: x["reason"] for x in data["rejected"]}
    failed = {x["url"]: x["reason"] for x in data["failed"]}
    url = bed.nginx.url
    assert set(rejected) == {url(paths["missing"])}
    assert "HTTP 404" in rejected[url(paths["missing"])]
    assert POPS[0] in rejected[url(paths["missing"])]
    # A refused URL is not asked again, nor through the other PoP.
    assert bed.counts.count(paths["missing"]) == 1
    assert set(failed) == {url(paths["stall"]), url(paths["close"])}
    assert "timed out" in failed[url(paths["stall"])]
    # libcurl's words for the wait that ran out, no byte for 2 whole seconds (timeout 1.5),
    # not a figure of its own that says otherwise.
    assert "the last 2 seconds" in failed[url(paths["stall"])]
    assert "1.5s" not in failed[url(paths["stall"])]
    assert "short body" in failed[url(paths["close"])]
    # 503 twice per variant, then answered: each answered request was never sent again.
    assert bed.counts.count(paths["flaky"], GZIP) == 4
    assert bed.counts.count(paths["flaky"], IDENTITY) == 4
    assert_hit_everywhere(bed, paths["flaky"], (GZIP, IDENTITY))
    assert_hit_everywhere(bed, paths["ok"], (GZIP, IDENTITY))
    # Stalled at both PoPs: each request sent once per attempt (retries = 3), no more.
    assert bed.counts.count(paths["stall"], GZIP) == 2 * 3
    assert bed.counts.count(paths["stall"], IDENTITY) == 2 * 3

    # The last line says what happened and what to do next; the per-PoP lines come before.
    *before, last = r.stderr.strip().splitlines()
    assert last == (
        "3 URLs not accepted (1 rejected, 2 failed): `prewarm report"
        f" {data['job_id']}` lists why; `prewarm submit --resume {data['job_id']}` sends the"
        " failed again"
    )
    assert any(line.startswith(f"direct: {POPS[0]}: ") for line in before), before
    (job,) = json.loads(run_cli("jobs", "-o", "json").stdout)
    assert (job["accepted"], job["rejected"], job["failed"]) == (2, 1, 2)
    # The run warmed some URLs and not others: partial, asked by its task alone too.
    (task,) = data["tasks"]
    by_task = run_cli("status", f"direct:{task['task_id']}", "-o", "json")
    assert by_task.returncode == 4 and json.loads(by_task.stdout)["state"] == "partial"
    alone = json.loads(by_task.stdout)["providers"]["direct"]
    assert (alone["total"], alone["succeeded"], alone["failed"]) == (5, 2, 3)
    # Within the job, its run counts what it warmed, and says so: the journal counts the
    # rest (a run that said partial with 2 of 2 succeeded contradicted its own counts).
    part = json.loads(run_cli("status", data["job_id"], "-o", "json").stdout)["providers"]
    (run,) = part["direct"]["tasks"]
    assert (run["state"], run["total"], run["succeeded"], run["failed"]) == ("succeeded", 2, 2, 0)
    assert (part["direct"]["state"], part["direct"]["failed"]) == ("partial", 3)
    rep = run_cli("report", data["job_id"], "-o", "json")
    failures = json.loads(rep.stdout)["failures"]
    # One line per failed (URL, PoP, variant), with its reason; the journal's line per URL
    # is not listed a second time.
    assert all(f["pop"] in POPS for f in failures), failures
    refused = [f for f in failures if f["url"] == url(paths["missing"])]
    assert [(f["pop"], f["reason"].split(" (")[0]) for f in refused] == [(POPS[0], "HTTP 404")]
    stalled = [f for f in failures if f["url"] == url(paths["stall"])]
    assert sorted((f["pop"], f["reason"].split("Accept-Encoding: ")[1]) for f in stalled) == [
        (pop, enc + ")") for pop in POPS for enc in sorted((GZIP, IDENTITY))
    ]
    assert all("timed out" in f["reason"] for f in stalled)


def test_a_request_asked_again_is_counted_once_by_its_latest_answer(
    bed: CacheBed, run_cli, direct_config
) -> None:
    direct_config('encodings = ["identity"]\n')
    path = "/flaky/1/f.js"  # a 503, then the object
    pin = ("--resolve", f"{HOST}:{bed.nginx.port}:{POPS[0]}")
    r, data = submit(run_cli, *pin, bed.nginx.url(path))
    assert r.returncode == 0, r.stderr
    assert bed.counts.count(path, IDENTITY) == 2  # sent twice: the 503 was asked again
    details = data["providers"]["direct"]["details"]
    assert details["pops"][POPS[0]] == {
        "requests": 1,
        "bytes": 2048,
        "already_warm": 0,
        "filled": 1,
        "rejected": 0,
        "failed": 0,
    }
    assert f"{POPS[0]}: 1 request, 2.0 KB, 0 already warm, 1 filled\n" in r.stderr
    status = json.loads(run_cli("status", data["job_id"], "-o", "json").stdout)
    assert status["providers"]["direct"]["details"] == details  # submit and status agree


def test_a_url_with_non_ascii_characters_is_warmed_in_its_encoded_form(
    bed: CacheBed, run_cli, direct_config
) -> None:
    direct_config('encodings = ["identity"]\n')
    url = bed.nginx.url("/obj/café.js")
    r, data = submit(run_cli, "--resolve", f"{HOST}:{bed.nginx.port}:{POPS[0]}", url)
    assert r.returncode == 0, r.stderr
    assert data["accepted"] == 1
    assert bed.counts.count("/obj/caf%C3%A9.js", IDENTITY) == 1  # as RFC 3986 has it
    assert bed.nginx.probe(POPS[0], "/obj/caf%C3%A9.js", IDENTITY)[1] == "HIT"
    rep = json.loads(run_cli("report", data["job_id"], "-o", "json").stdout)
    assert rep["failures"] == []


def test_a_piped_direct_submit_on_a_machine_without_its_record_is_counted_as_it_said(
    bed: CacheBed, run_cli, direct_config, tmp_path
) -> None:
    # `submit -o json | status --wait -` where the run's record is not: direct warming is
    # done when its submit returns, so the piped counts are its state (it was not_found).
    direct_config('encodings = ["identity"]\n')
    items = [bed.nginx.url("/obj/piped.js"), bed.nginx.url("/missing/piped.js")]
    r, data = submit(run_cli, *bed.nginx.resolve_args(), *items)
    assert r.returncode == 4 and data["accepted"] == 1, r.stderr
    elsewhere = {"PREWARM_STATE_DIR": str(tmp_path / "another-machine")}
    r = run_cli("status", "--wait", "-", "-o", "json", input=r.stdout, env_extra=elsewhere)
    assert r.returncode == 4, r.stderr
    st = json.loads(r.stdout)
    assert (st["state"], st["total"], st["succeeded"], st["failed"]) == ("partial", 2, 1, 1)


def test_a_run_this_machine_has_no_record_of_is_not_found(run_cli, direct_config) -> None:
    direct_config()
    for command in ("status", "report"):  # report said "no failures", exit 0
        r = run_cli(command, "direct:20261206T080000Z-0badf00d", "-o", "json")
        assert r.returncode == 2, r.stderr  # as a job the journal does not hold, not "failed"
        error = json.loads(r.stdout)["error"]
        assert error["code"] == "not_found" and "on the machine that ran it" in error["hint"]
        assert "put back the file if it was moved" in error["hint"]


def test_a_job_that_warmed_nothing_has_its_details_and_report_per_pop(
    bed: CacheBed, run_cli, direct_config
) -> None:
    direct_config('encodings = ["identity"]\n')
    paths = ["/missing/x.js", "/missing/y.js"]
    r, data = submit(run_cli, *bed.nginx.resolve_args(), *(bed.nginx.url(p) for p in paths))
    assert r.returncode == 1, r.stderr
    assert (data["state"], data["accepted"], len(data["rejected"])) == ("failed", 0, 2)
    # One line says what became of them, and where to see why.
    assert f"2 URLs not accepted (2 rejected): `prewarm report {data['job_id']}` lists why\n" in (
        r.stderr
    )
    assert sum(bed.counts.count(p) for p in paths) == 2  # each refused once, at one PoP

    status = run_cli("status", data["job_id"], "-o", "json")
    assert status.returncode == 1, status.stderr
    part = json.loads(status.stdout)["providers"]["direct"]
    assert (part["state"], part["succeeded"], part["failed"]) == ("failed", 0, 2)
    (task,) = part["tasks"]  # the run: it warmed nothing
    assert (task["state"], task["total"]) == ("failed", 0)
    by_task = run_cli("status", f"direct:{task['task_id']}", "-o", "json")
    assert by_task.returncode == 1 and json.loads(by_task.stdout)["state"] == "failed"
    assert part["details"]["rejected"] == 2
    assert sum(p["rejected"] for p in part["details"]["pops"].values()) == 2

    rep = json.loads(run_cli("report", data["job_id"], "-o", "json").stdout)
    assert sorted(f["url"] for f in rep["failures"]) == sorted(bed.nginx.url(p) for p in paths)
    assert all(f["pop"] in POPS and "HTTP 404" in f["reason"] for f in rep["failures"])
    # --verify has nothing to check: it says so, with no table over nothing.
    verified = run_cli("status", data["job_id"], "--verify", "-o", "table")
    assert verified.stdout.rstrip().endswith(
        "nothing checked: no URL of the job is known here to have succeeded"
    )
    assert "hit ratio" not in verified.stdout and "cache" not in verified.stdout


def test_max_bytes_defers_and_resume_warms_only_the_rest(
    bed: CacheBed, run_cli, direct_config
) -> None:
    paths = [f"/obj/budget{i}.bin?size=2048" for i in range(7)]
    r, data = submit_with_max_bytes(bed, run_cli, direct_config, paths, concurrency=1)
    assert r.returncode == 5, r.stderr
    # Two bodies fit; the third runs past the budget, but in one chunk, whole: it is warm
    # (and never asked again). The rest waits.
    assert data["accepted"] == 3 and data["deferred"] == 4
    assert (
        f"4 URLs deferred: send them later with `prewarm submit --resume {data['job_id']}`"
        in r.stderr
    )
    assert data["providers"]["direct"]["details"]["requests"] == 3
    # Each resume has a budget of its own: three more bodies.
    resume = ("submit", "--resume", data["job_id"], "-o", "json")
    r2 = run_cli(*resume)
    data2 = json.loads(r2.stdout)
    assert r2.returncode == 5 and data2["accepted"] == 6, r2.stderr
    assert "1 URL deferred: send it later with" in r2.stderr
    assert f"job {data['job_id']}: resumed, 4 of 7 URLs to send (direct)" in r2.stderr
    r3 = run_cli(*resume)
    data3 = json.loads(r3.stdout)
    assert r3.returncode == 0 and data3["accepted"] == 7, r3.stderr
    # Only what was not answered was asked again: each URL once in all.
    n_requests = [d["providers"]["direct"]["details"]["requests"] for d in (data2, data3)]
    assert n_requests == [3, 1]
    assert_hit_at_first_pop(bed, paths)
    r4 = run_cli(*resume)
    assert r4.returncode == 0, r4.stderr
    assert f"job {data['job_id']}: nothing left to send (7 URLs, direct)" in r4.stderr


def test_a_body_larger_than_max_bytes_is_warmed_by_a_run_of_its_own(
    bed: CacheBed, run_cli, direct_config
) -> None:
    paths = ["/obj/huge0.bin?size=20000", "/obj/huge1.bin?size=20000"]
    r, data = submit_with_max_bytes(bed, run_cli, direct_config, paths, concurrency=1)
    assert r.returncode == 5 and data["accepted"] == 1, r.stderr  # the second is cut short
    r2 = run_cli("submit", "--resume", data["job_id"], "-o", "json")
    assert r2.returncode == 0 and json.loads(r2.stdout)["accepted"] == 2, r2.stderr
    assert_hit_at_first_pop(bed, paths)


def test_a_run_that_accepted_nothing_before_its_budget_ran_out_has_its_details(
    bed: CacheBed, run_cli, direct_config
) -> None:
    """The first PoP's body is read whole and spends the budget: the URL waits for its second
    PoP, nothing is accepted, and status still reads the run's record."""
    direct_config('concurrency = 1\nmax_bytes = 5000\nencodings = ["identity"]\n')
    path = "/obj/twopops.bin?size=102400"
    r, data = submit(run_cli, *bed.nginx.resolve_args(), bed.nginx.url(path))
    assert r.returncode == 5, r.stderr
    assert (data["accepted"], data["deferred"]) == (0, 1)
    status = run_cli("status", data["job_id"], "-o", "json")
    assert status.returncode == 5, status.stderr
    details = json.loads(status.stdout)["providers"]["direct"]["details"]
    assert (details["requests"], details["bytes"]) == (1, 102400)
    assert details == data["providers"]["direct"]["details"]


def test_max_bytes_cuts_the_bodies_in_flight_short(bed: CacheBed, run_cli, direct_config) -> None:
    """Eight 100 KB bodies in flight when 5,000 bytes are spent: only the run's first is read
    to its end (each run warms at least one body, however large)."""
    paths = [f"/obj/big{i}.bin?size=102400" for i in range(20)]
    r, data = submit_with_max_bytes(bed, run_cli, direct_config, paths, concurrency=8)
    assert r.returncode == 5, r.stderr
    assert data["accepted"] == 1 and data["deferred"] == 19
    details = data["providers"]["direct"]["details"]
    assert details["requests"] <= 8  # the first of each slot, and no other
    # The first body whole, the others cut after at most one chunk each (libcurl's buffer,
    # 16 KiB); reading every body in flight would be 800 KB.
    assert details["bytes"] <= 102400 + 7 * 16384
    assert details["failed"] == 0 and details["rejected"] == 0
    rep = json.loads(run_cli("report", data["job_id"], "-o", "json").stdout)
    assert not [f for f in rep["failures"] if f["pop"]]  # cut short is not a failure
    # The summary line says what became of every request: here, cut short.
    n_cut = details["requests"] - details["filled"] - details["already_warm"]
    assert n_cut >= 1 and f", {n_cut} cut short by max_bytes" in r.stderr, r.stderr


def test_resume_of_a_failed_url_asks_only_its_unanswered_requests(
    bed: CacheBed, run_cli, direct_config
) -> None:
    direct_config()
    dead = "127.0.0.9"  # no edge listens there: its requests fail, the real PoP's succeed
    pins = ("--resolve", f"{HOST}:{bed.nginx.port}:{POPS[0]}")
    pins += ("--resolve", f"{HOST}:{bed.nginx.port}:{dead}")
    paths = ["/obj/half-a.js", "/obj/half-b.js"]
    r, data = submit(run_cli, *pins, *(bed.nginx.url(p) for p in paths))
    assert r.returncode == 1, r.stderr  # nothing warmed everywhere
    assert {f["url"] for f in data["failed"]} == {bed.nginx.url(p) for p in paths}
    assert all(dead in f["reason"] for f in data["failed"])
    r2 = run_cli("submit", "--resume", data["job_id"], "-o", "json")
    assert r2.returncode == 1, r2.stderr
    assert json.loads(r2.stdout)["providers"]["direct"]["details"]["pops"].keys() == {dead}
    # The real PoP's answers are the job's: the resume never asked them again.
    for path in paths:
        assert bed.nginx.edge_requests(path) == {(POPS[0], GZIP): 1, (POPS[0], IDENTITY): 1}
    # Still nothing warmed everywhere: failed, though the first run's latest answers are now
    # all OK (the dead PoP's moved to the resume) and it reads succeeded on its own.
    r3 = run_cli("status", data["job_id"], "-o", "json")
    assert r3.returncode == 1, r3.stderr
    status = json.loads(r3.stdout)
    assert (status["state"], status["succeeded"], status["failed"]) == ("failed", 0, 2)
    assert [t["state"] for t in status["providers"]["direct"]["tasks"]] == ["succeeded", "failed"]
    assert json.loads(run_cli("jobs", "-o", "json").stdout)[0]["state"] == "failed"


def test_each_run_s_details_are_its_own_and_add_up_to_the_job_s(
    bed: CacheBed, run_cli, write_config
) -> None:
    write_config(
        "[defaults]\nretries = 1\nretry_timeout = 30\n\n"
        '[providers.direct]\ntype = "direct"\nencodings = ["identity"]\n'
    )
    pin = ("--resolve", f"{HOST}:{bed.nginx.port}:{POPS[0]}")
    paths = ["/obj/run-a.js", "/obj/run-b.js", "/flaky/1/run-c.js"]  # a 503, then the object
    r, data = submit(run_cli, *pin, *(bed.nginx.url(p) for p in paths))
    assert r.returncode == 4, r.stderr
    # The warning names the URL that failed, and why.
    assert f"1 URL failed after retries: {bed.nginx.url(paths[2])}: HTTP 503" in r.stderr
    # The job is finished when submit returns: `jobs` says how it ended, as status would.
    assert json.loads(run_cli("jobs", "-o", "json").stdout)[0]["state"] == "partial"
    r2 = run_cli("submit", "--resume", data["job_id"], "-o", "json")
    assert r2.returncode == 0, r2.stderr
    assert json.loads(run_cli("jobs", "-o", "json").stdout)[0]["state"] == "succeeded"
    assert bed.counts.count(paths[2], IDENTITY) == 2
    r3 = run_cli("status", data["job_id"], "-o", "json")
    assert r3.returncode == 0, r3.stderr
    part = json.loads(r3.stdout)["providers"]["direct"]
    first, second = part["tasks"]
    # The 503 was answered again by the resume: each request counts in its latest run.
    assert (first["total"], first["details"]["requests"], first["details"]["failed"]) == (2, 2, 0)
    assert (second["total"], second["details"]["requests"]) == (1, 1)
    assert part["details"]["requests"] == part["details"]["filled"] == 3
    assert part["details"]["pops"][POPS[0]]["requests"] == 3
    assert second["details"]["bytes"] + first["details"]["bytes"] == part["details"]["bytes"]


def test_a_url_warmed_across_two_runs_counts_in_the_run_that_accepted_it(
    bed: CacheBed, run_cli, write_config
) -> None:
    """Its gzip copy warmed by the first run, its identity copy by the resume: the first run's
    latest answers for it are all OK, yet only the resume accepted it (status counts a run's
    URLs as the journal accepted them, never holding them)."""
    write_config(
        "[defaults]\nretries = 1\nretry_timeout = 30\n\n"
        '[providers.direct]\ntype = "direct"\nencodings = ["gzip", "identity"]\n'
    )
    pin = ("--resolve", f"{HOST}:{bed.nginx.port}:{POPS[0]}")
    split = "/flaky/1/split.js"  # 503 once per variant, then the object
    assert bed.nginx.probe(POPS[0], split, "gzip")[0] == 503
    assert bed.nginx.probe(POPS[0], split, "gzip")[:2] == (200, "MISS")  # gzip now cached
    paths = ["/obj/whole.js", split]
    r, data = submit(run_cli, *pin, *(bed.nginx.url(p) for p in paths))
    assert r.returncode == 4, r.stderr
    assert [f["url"] for f in data["failed"]] == [bed.nginx.url(split)]
    r2 = run_cli("submit", "--resume", data["job_id"], "-o", "json")
    assert r2.returncode == 0, r2.stderr
    assert bed.counts.count(split, "gzip") == 2 and bed.counts.count(split, IDENTITY) == 2
    r3 = run_cli("status", data["job_id"], "-o", "json")
    assert r3.returncode == 0, r3.stderr
    part = json.loads(r3.stdout)["providers"]["direct"]
    first, second = part["tasks"]
    assert (first["state"], first["total"], first["succeeded"]) == ("succeeded", 1, 1)
    assert (second["state"], second["total"], second["succeeded"]) == ("succeeded", 1, 1)
    assert (part["total"], part["succeeded"], part["failed"]) == (2, 2, 0)
    # Each request counted in the run that gave its latest answer.
    assert first["details"]["requests"] == 3 and second["details"]["requests"] == 1
    # Asked about as bare runs (no journal): each URL counted once, in the run of its latest
    # answer, whichever order the runs are named in.
    for runs in ((first, second), (second, first)):
        ref = "direct:" + ",".join(t["task_id"] for t in runs)
        bare = json.loads(run_cli("status", ref, "-o", "json").stdout)["providers"]["direct"]
        assert (bare["total"], bare["succeeded"], bare["failed"]) == (2, 2, 0), ref
        # The carried answer counts in the run that sent it, named first or not.
        requests = {t["task_id"]: t["details"]["requests"] for t in bare["tasks"]}
        assert requests == {first["task_id"]: 3, second["task_id"]: 1}, ref


def test_kill_and_resume_sends_only_what_was_not_answered(
    bed: CacheBed, cli_env, run_cli, direct_config, tmp_path: Path
) -> None:
    direct_config("concurrency = 1\ntimeout = 60\n")
    stall = "/stallnth/3/c.js"  # its 3rd request (PoP 2, gzip) stalls until released
    paths = ["/obj/ka.js", "/obj/kb.js", stall, "/obj/kd.js"]
    args = [*bed.nginx.resolve_args(), *(bed.nginx.url(p) for p in paths)]
    record = Path(cli_env["PREWARM_STATE_DIR"]) / "direct.sqlite3"
    # The two answers of the stalled URL before it are in the record (committed by the
    # record's writer while the third request hangs): what a resume must not ask again.
    kill_at_stall(bed, cli_env, tmp_path, args, stall, lambda: recorded(record, stall) == 2)
    job = json.loads(run_cli("jobs", "-o", "json").stdout)[0]["job_id"]
    r = run_cli("submit", "--resume", job, "-o", "json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["accepted"] == 4
    # Answered before the kill: never asked again, as the edges' own logs show.
    once = {(pop, enc): 1 for pop in POPS for enc in (GZIP, IDENTITY)}
    for path in ("/obj/ka.js", "/obj/kb.js", "/obj/kd.js"):
        assert bed.nginx.edge_requests(path) == once, path
    sent = bed.nginx.edge_requests(stall)
    assert sent[(POPS[0], GZIP)] == sent[(POPS[0], IDENTITY)] == 1  # answered before the kill
    assert sent[(POPS[1], GZIP)] >= 1  # the killed one (logged once nginx sees it gone), again
    assert sent[(POPS[1], IDENTITY)] == 1  # never reached before the kill
    assert bed.counts.count(stall, GZIP) == 3  # PoP 1, PoP 2 (killed), PoP 2 again
    assert bed.counts.count(stall, IDENTITY) == 2  # PoP 1 before the kill, PoP 2 after
    for path in paths:
        assert_hit_everywhere(bed, path, (GZIP, IDENTITY))


def test_a_resume_that_sends_nothing_counts_the_urls_it_accepted(
    bed: CacheBed, cli_env, run_cli, direct_config, tmp_path: Path
) -> None:
    """Killed after the record had every answer of a batch but before the journal did (it
    was busy): the resume finds one URL in the batches warmed whole, and accepts the other
    from its recorded answers without a request. The job is whole, nothing pending."""
    direct_config('encodings = ["identity"]\ntimeout = 60\n')
    fast, slow = "/obj/nothing-sent.js", "/hold/nothing-sent.js"
    state = Path(cli_env["PREWARM_STATE_DIR"])
    record = state / "direct.sqlite3"
    pin = f"{HOST}:{bed.nginx.port}:{POPS[0]}"
    urls = [bed.nginx.url(fast), bed.nginx.url(slow)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "prewarm_cli", "submit", "-p", "direct", "--resolve", pin, *urls],
        env=cli_env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    journal = None
    try:
        with bed.counts.cond:
            assert bed.counts.cond.wait_for(
                lambda: bed.counts.counts[(slow, IDENTITY)] >= 1, timeout=60
            )
        wait_for(lambda: recorded(record, fast) == 1, 30)  # committed by the record's writer
        journal = sqlite3.connect(state / "journal.sqlite3", timeout=30)
        journal.execute("BEGIN IMMEDIATE")  # the journal busy: the batch's answer waits
        bed.counts.release.set()
        wait_for(lambda: _warmed_rows(record) == 1, 30)  # the slow URL's, at the batch's end
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        if journal is not None:
            journal.rollback()
            journal.close()
    (job,) = json.loads(run_cli("jobs", "-o", "json").stdout)
    r = run_cli("submit", "--resume", job["job_id"], "-o", "json")
    assert r.returncode == 0, r.stderr
    assert bed.counts.count(fast) == 1 and bed.counts.count(slow) == 1  # nothing sent again
    r = run_cli("status", job["job_id"], "-o", "json")
    assert r.returncode == 0, r.stderr
    part = json.loads(r.stdout)["providers"]["direct"]
    assert (part["state"], part["total"], part["succeeded"], part["pending"]) == (
        "succeeded",
        2,
        2,
        0,
    )
    assert [t["total"] for t in part["tasks"]] == [1, 1]
    assert part["details"]["requests"] == 2


def test_a_run_stopped_before_its_first_batch_ended_is_in_status(
    bed: CacheBed, cli_env, run_cli, direct_config, tmp_path: Path
) -> None:
    """Ctrl-C while the job's one batch is in flight: `status` shows the run and what it
    warmed, and after the resume each run counts the requests it sent itself."""
    direct_config('encodings = ["identity"]\ntimeout = 60\n')
    paths = ["/obj/stopped-a.js", "/obj/stopped-b.js", "/hold/stopped-c.js"]
    record = Path(cli_env["PREWARM_STATE_DIR"]) / "direct.sqlite3"
    interrupt_while_held(
        bed,
        cli_env,
        tmp_path,
        [bed.nginx.url(p) for p in paths],
        paths[2],
        lambda: recorded(record, paths[0]) + recorded(record, paths[1]) == 2,
    )
    (job,) = json.loads(run_cli("jobs", "-o", "json").stdout)
    status = json.loads(run_cli("status", job["job_id"], "-o", "json").stdout)
    (stopped,) = status["providers"]["direct"]["tasks"]
    assert stopped["details"]["requests"] == 2  # what it warmed before the stop
    r = run_cli("submit", "--resume", job["job_id"], "-o", "json")
    assert r.returncode == 0, r.stderr
    assert bed.counts.count(paths[0]) == bed.counts.count(paths[1]) == 1  # not sent again
    part = json.loads(run_cli("status", job["job_id"], "-o", "json").stdout)["providers"]["direct"]
    first, second = part["tasks"]
    assert first["task_id"] == stopped["task_id"]
    assert (first["details"]["requests"], second["details"]["requests"]) == (2, 1)
    assert (part["state"], part["succeeded"], part["details"]["requests"]) == ("succeeded", 3, 3)


def test_a_run_stopped_before_any_answer_is_this_machine_s(
    bed: CacheBed, cli_env, run_cli, direct_config, tmp_path: Path
) -> None:
    """Its record holds no answer of it, yet names it: status does not send the user to
    another machine, and report lists nothing."""
    direct_config('encodings = ["identity"]\ntimeout = 60\n')
    held = "/hold/stopped-first.js"
    interrupt_while_held(bed, cli_env, tmp_path, [bed.nginx.url(held)], held)
    (job,) = json.loads(run_cli("jobs", "-o", "json").stdout)
    r = run_cli("status", job["job_id"], "-o", "json")
    assert "no record" not in r.stderr, r.stderr
    part = json.loads(r.stdout)["providers"]["direct"]
    (task,) = part["tasks"]
    assert (part["state"], part["not_sent"], task["total"], task["state"]) == (
        "incomplete",
        1,
        0,
        "cancelled",
    )
    # Asked about alone, the run says it was stopped, not that it warmed nothing.
    r = run_cli("status", f"direct:{task['task_id']}", "-o", "json")
    bare = json.loads(r.stdout)["providers"]["direct"]
    assert (r.returncode, bare["state"], bare["tasks"][0]["raw_state"]) == (
        4,
        "cancelled",
        "stopped before any answer",
    )
    r = run_cli("report", job["job_id"], "-o", "json")
    assert r.returncode == 0 and json.loads(r.stdout)["failures"] == [], r.stderr


def _warmed_rows(record: Path) -> int:
    """The record's rows of batches warmed whole."""
    db = sqlite3.connect(f"file:{record}?mode=ro", uri=True)
    try:
        (n,) = db.execute("SELECT COUNT(*) FROM warmed").fetchone()
    except sqlite3.OperationalError:  # not made yet
        n = 0
    finally:
        db.close()
    return int(n)


def test_a_batch_warmed_whole_before_the_journal_said_so_is_found_at_resume(
    bed: CacheBed, cli_env, run_cli, direct_config
) -> None:
    """A kill after the record took a batch's answers, before the journal took its result:
    ``--resume`` looks the batch up, finds its URLs warmed, and sends nothing again."""
    import sqlite3

    direct_config()
    paths = ["/obj/wa.js", "/obj/wb.js"]
    r, data = submit(run_cli, *bed.nginx.resolve_args(), *(bed.nginx.url(p) for p in paths))
    assert r.returncode == 0 and data["accepted"] == 2, r.stderr
    job = data["job_id"]
    once = {(pop, enc): 1 for pop in POPS for enc in (GZIP, IDENTITY)}
    assert all(bed.nginx.edge_requests(p) == once for p in paths)
    # The journal as that kill leaves it: the batch sent, no result, the run's task unknown.
    journal = Path(cli_env["PREWARM_STATE_DIR"]) / "journal.sqlite3"
    with sqlite3.connect(journal) as db:
        db.execute(
            "UPDATE targets SET outcome = 'sending', task_id = NULL WHERE job_id = ?", (job,)
        )
        db.execute("UPDATE batches SET state = 'sending' WHERE job_id = ?", (job,))
        db.execute("UPDATE jobs SET state = 'submitting' WHERE id = ?", (job,))
        db.execute("DELETE FROM tasks WHERE job_id = ?", (job,))
    r = run_cli("submit", "--resume", job, "-o", "json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["accepted"] == 2
    for path in paths:  # not one request more, as the edges' own logs show
        assert bed.nginx.edge_requests(path) == once, path
    status = json.loads(run_cli("status", job, "-o", "json").stdout)
    assert status["providers"]["direct"]["details"]["requests"] == 8  # 2 URLs, 2 PoPs, 2 variants


def test_a_resumed_job_is_not_answered_by_another_jobs_warm_of_its_url(
    bed: CacheBed, cli_env, run_cli, direct_config, tmp_path: Path
) -> None:
    """Job A warms a URL through one PoP; job B, for the same URL through the other PoP, is
    killed on its first request: its --resume warms B's own PoP, A's answers are not B's."""
    direct_config("concurrency = 1\ntimeout = 60\n")
    path = "/stallnth/3/u.js"  # A's two requests are answered, B's first one stalls
    url = bed.nginx.url(path)
    pop_a = ("--resolve", f"{HOST}:{bed.nginx.port}:{POPS[0]}")
    pop_b = ("--resolve", f"{HOST}:{bed.nginx.port}:{POPS[1]}")
    ra, data_a = submit(run_cli, *pop_a, url, bed.nginx.url("/obj/other.js"))
    assert ra.returncode == 0 and data_a["accepted"] == 2, ra.stderr
    kill_at_stall(bed, cli_env, tmp_path, [*pop_b, url], path)  # job B
    jobs = json.loads(run_cli("jobs", "-o", "json").stdout)
    (job_b,) = [j["job_id"] for j in jobs if j["job_id"] != data_a["job_id"]]
    r = run_cli("submit", "--resume", job_b, "-o", "json")
    assert r.returncode == 0, r.stderr
    assert {t["task_id"] for t in json.loads(r.stdout)["tasks"]}.isdisjoint(
        t["task_id"] for t in data_a["tasks"]
    )
    sent = bed.nginx.edge_requests(path)
    assert sent[(POPS[1], IDENTITY)] == 1  # B's own PoP, both variants
    assert sent[(POPS[1], GZIP)] >= 1
    assert_hit_everywhere(bed, path, (GZIP, IDENTITY))
    status = json.loads(run_cli("status", job_b, "-o", "json").stdout)
    assert status["providers"]["direct"]["details"]["pops"].keys() == {POPS[1]}


def test_a_url_asked_again_waits_while_the_next_batches_go_out(
    bed: CacheBed, cli_env, direct_config, tmp_path: Path
) -> None:
    """A URL answered 503 waits out its Retry-After while the run's one worker sends the
    next batches: it waited in the worker, and a run with such a URL in every batch took the
    backoff once per batch (1 % of 20,000 URLs answered 503 once: 18 s instead of 1)."""
    direct_config('batch_size = 1\nconcurrency = 1\nencodings = ["identity"]\n')
    flaky, held = "/flaky/1/wait.js", "/hold/next.js"
    pin = f"{HOST}:{bed.nginx.port}:{POPS[0]}"
    urls = [bed.nginx.url(flaky + "?retry_after=2"), bed.nginx.url(held)]
    flaky_then: list[int] = []
    next_batch_out = arrived_noting(bed, held, flaky, flaky_then)
    done = run_submit(bed, cli_env, tmp_path, ["--resolve", pin, *urls], next_batch_out)
    assert flaky_then == [1]  # the second batch went out while the first's URL waited
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert (data["state"], data["accepted"], data["failed"]) == ("submitted", 2, [])
    assert bed.counts.counts[(flaky, IDENTITY)] == 2  # its 503, then the object
    assert_hit_at_first_pop(bed, [flaky + "?retry_after=2", held])


def test_a_url_waiting_to_be_asked_again_is_sent_by_the_resume_of_a_stopped_run(
    bed: CacheBed, cli_env, run_cli, direct_config, tmp_path: Path
) -> None:
    """Ctrl-C while a URL waits for its retry: it is left unsent (not sending, not failed),
    and --resume warms it."""
    direct_config('batch_size = 1\nconcurrency = 1\nencodings = ["identity"]\n')
    flaky, held = "/flaky/1/later.js", "/hold/meanwhile.js"
    urls = [bed.nginx.url(flaky + "?retry_after=20"), bed.nginx.url(held)]
    interrupt_while_held(bed, cli_env, tmp_path, urls, held)
    assert bed.counts.counts[(flaky, IDENTITY)] == 1
    r = run_cli("jobs", "-o", "json")
    (job,) = json.loads(r.stdout)
    assert job["state"] == "interrupted"
    r = run_cli("submit", "-o", "json", "--resume", job["job_id"])
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert (data["state"], data["failed"]) == ("submitted", [])
    assert bed.counts.counts[(flaky, IDENTITY)] == 2
    assert_hit_at_first_pop(bed, [flaky + "?retry_after=20", held])


def kill_at_stall(
    bed: CacheBed,
    cli_env: dict[str, str],
    cwd: Path,
    args: list[str],
    stall: str,
    ready: Callable[[], bool] = lambda: True,
) -> None:
    """Runs `submit -p direct ARGS` until the origin holds the 3rd request for ``stall``
    (``/stallnth/3/...``) and ``ready()`` holds, kills it with SIGKILL, then lets the origin
    answer the stalled request."""

    def held() -> bool:
        return sum(n for (p, _), n in bed.counts.counts.items() if p == stall) >= 3

    run_submit(bed, cli_env, cwd, args, held, ready, signal.SIGKILL)


def interrupt_while_held(
    bed: CacheBed,
    cli_env: dict[str, str],
    cwd: Path,
    urls: list[str],
    held: str,
    ready: Callable[[], bool] = lambda: True,
    reached: Callable[[], bool] | None = None,
) -> None:
    """Runs `submit -p direct` pinned to the first PoP until the origin holds the request of
    ``held`` (a /hold/ path; or until ``reached``, read under the origin's lock) and
    ``ready()`` holds, stops it with SIGINT (exit 130), then lets the origin answer."""
    pin = f"{HOST}:{bed.nginx.port}:{POPS[0]}"

    def held_there() -> bool:
        return bed.counts.counts[(held, IDENTITY)] >= 1

    stopped = run_submit(
        bed, cli_env, cwd, ["--resolve", pin, *urls], reached or held_there, ready, signal.SIGINT
    )
    assert stopped.returncode == 130, stopped.stderr


def arrived_noting(bed: CacheBed, arrived: str, noted: str, seen: list[int]) -> Callable[[], bool]:
    """A condition for run_submit: ``arrived``'s identity request reached the origin; then
    ``noted``'s count at that moment goes to ``seen`` (read under the origin's lock)."""

    def check() -> bool:
        if bed.counts.counts[(arrived, IDENTITY)] < 1:
            return False
        seen.append(bed.counts.counts[(noted, IDENTITY)])
        return True

    return check


def run_submit(
    bed: CacheBed,
    cli_env: dict[str, str],
    cwd: Path,
    args: list[str],
    reached: Callable[[], bool],
    ready: Callable[[], bool] = lambda: True,
    sig: signal.Signals | None = None,
) -> subprocess.CompletedProcess[str]:
    """Runs `submit -p direct -o json ARGS` until the origin's counts say ``reached`` (read
    under their lock) and ``ready()`` holds, sends ``sig`` (none: lets it go on), then lets
    the origin answer what it holds; how the submit ended."""
    proc = subprocess.Popen(
        [*SUBMIT_DIRECT, *args],
        env=cli_env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with bed.counts.cond:
            assert bed.counts.cond.wait_for(reached, timeout=60), "never reached"
        wait_for(ready, 30)
        if sig is not None:
            proc.send_signal(sig)  # what the origin holds is let go once the submit ended
        else:
            bed.counts.release.set()  # the origin lets what it holds go, and the run ends
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        bed.counts.release.set()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def recorded(record: Path, path: str) -> int:
    """How many answers the direct provider's record holds for URLs ending in ``path``."""
    import sqlite3

    if not record.exists():
        return 0
    db = sqlite3.connect(f"file:{record}?mode=ro", uri=True)
    try:
        query = "SELECT COUNT(*) FROM requests WHERE url LIKE ?"
        (n,) = db.execute(query, (f"%{path}",)).fetchone()
    except sqlite3.OperationalError:  # the table is not there yet
        n = 0
    finally:
        db.close()
    return int(n)


def test_concurrency_bound_is_what_the_origin_sees(bed: CacheBed, run_cli, direct_config) -> None:
    direct_config('concurrency = 3\nencodings = ["identity"]\n')
    bed.counts.gate_size = 3  # the first requests wait until three are in flight at once
    paths = [f"/gate/{i}.png" for i in range(12)]
    pin = ("--resolve", f"{HOST}:{bed.nginx.port}:{POPS[0]}")
    r, data = submit(run_cli, *pin, *(bed.nginx.url(p) for p in paths))
    assert r.returncode == 0, r.stderr
    assert data["accepted"] == 12
    assert bed.counts.max_in_flight == 3


# --------------------------------------------------------------------------- PoPs and ECS


@pytest.fixture
def dns_server() -> Iterator[DnsServer]:
    server = DnsServer().start()
    yield server
    server.stop()


def test_cloudfront_pop_codes_resolve_through_cf_domain(
    bed: CacheBed, dns_server: DnsServer, run_cli, direct_config
) -> None:
    dns_server.names["d111abc.nrt57.cloudfront.net"] = [POPS[0]]
    dns_server.names["d111abc.sin2.cloudfront.net"] = [POPS[1]]
    direct_config(f'cf_domain = "d111abc.cloudfront.net"\nresolver = "{dns_server.address}"\n')
    paths = ["/obj/pop-a.js", "/obj/pop-b.js"]
    pops = ("--pop", "NRT57", "--pop", "SIN2")
    r, data = submit(run_cli, *pops, *(bed.nginx.url(p) for p in paths))
    assert r.returncode == 0, r.stderr
    assert data["accepted"] == 2
    for path in paths:
        assert {e: n for (p, e), n in bed.counts.counts.items() if p == path} == {
            GZIP: 2,
            IDENTITY: 2,
        }
        assert_hit_everywhere(bed, path, (GZIP, IDENTITY))
    status = json.loads(run_cli("status", data["job_id"], "-o", "json").stdout)
    assert set(status["providers"]["direct"]["details"]["pops"]) == {"NRT57", "SIN2"}
    # Each PoP name was asked once for the whole run.
    assert sorted(q for q, _ in dns_server.queries) == [
        "d111abc.nrt57.cloudfront.net",
        "d111abc.sin2.cloudfront.net",
    ]


def test_an_unresolvable_pop_is_named_once_and_its_requests_fail(
    bed: CacheBed, dns_server: DnsServer, run_cli, direct_config
) -> None:
    dns_server.names["d111abc.nrt57.cloudfront.net"] = [POPS[0]]
    direct_config(f'cf_domain = "d111abc.cloudfront.net"\nresolver = "{dns_server.address}"\n')
    paths = ["/obj/nf-a.js", "/obj/nf-b.js", "/obj/nf-c.js"]
    r, data = submit(run_cli, "--pop", "NRT57", "--pop", "XYZ9", *(bed.nginx.url(p) for p in paths))
    assert r.returncode == 1, r.stderr  # no URL warmed everywhere: the job failed as a whole
    assert data["state"] == "failed"
    assert r.stderr.count("PoP not found: XYZ9") == 1
    assert {f["url"] for f in data["failed"]} == {bed.nginx.url(p) for p in paths}
    assert all("PoP not found at XYZ9" in f["reason"] for f in data["failed"])
    # The PoP that exists was warmed; the other was never tried.
    for path in paths:
        assert bed.counts.count(path) == 2
        for enc in (GZIP, IDENTITY):
            assert bed.nginx.probe(POPS[0], path, enc)[1] == "HIT"
            assert bed.nginx.probe(POPS[1], path, enc)[1] == "MISS"


def test_ecs_warms_the_edge_each_client_subnet_gets(
    bed: CacheBed, dns_server: DnsServer, run_cli, direct_config
) -> None:
    dns_server.subnets[HOST] = [("198.51.100.0/24", POPS[0]), ("203.0.113.0/24", POPS[1])]
    direct_config(f'resolver = "{dns_server.address}"\n')
    path = "/obj/ecs.js"
    r, data = submit(
        run_cli, "--ecs", "198.51.100.7/24", "--ecs", "203.0.113.0/24", bed.nginx.url(path)
    )
    assert r.returncode == 0, r.stderr
    assert bed.counts.count(path, GZIP) == 2 and bed.counts.count(path, IDENTITY) == 2
    assert_hit_everywhere(bed, path, (GZIP, IDENTITY))
    assert sorted(dns_server.queries) == [(HOST, "198.51.100.0/24"), (HOST, "203.0.113.0/24")]
    status = json.loads(run_cli("status", data["job_id"], "-o", "json").stdout)
    assert set(status["providers"]["direct"]["details"]["pops"]) == {
        "ecs:198.51.100.7/24",
        "ecs:203.0.113.0/24",
    }


def test_an_ipv6_client_subnet_warms_the_edge_it_gets(
    bed: CacheBed, dns_server: DnsServer, run_cli, direct_config
) -> None:
    dns_server.subnets[HOST] = [("198.51.100.0/24", POPS[0]), ("2001:db8::/48", POPS[1])]
    direct_config(f'resolver = "{dns_server.address}"\n')
    path = "/obj/ecs6.js"
    r, _ = submit(run_cli, "--ecs", "2001:db8:0:100::/56", bed.nginx.url(path))
    assert r.returncode == 0, r.stderr
    assert dns_server.queries == [(HOST, "2001:db8:0:100::/56")]
    assert bed.nginx.edge_requests(path) == {(POPS[1], GZIP): 1, (POPS[1], IDENTITY): 1}


def test_targets_that_give_one_edge_warm_it_once(
    bed: CacheBed, dns_server: DnsServer, run_cli, direct_config
) -> None:
    # Two client subnets the DNS sends to one edge, and a pin to that edge given twice.
    dns_server.subnets[HOST] = [("198.51.100.0/24", POPS[0]), ("203.0.113.0/24", POPS[0])]
    direct_config(f'resolver = "{dns_server.address}"\n')
    path = "/obj/one-edge.js"
    pin = f"{HOST}:{bed.nginx.port}:{POPS[0]}"
    subnets = ("--ecs", "198.51.100.0/24", "--ecs", "203.0.113.0/24")
    r, data = submit(run_cli, *subnets, "--resolve", pin, "--resolve", pin, bed.nginx.url(path))
    assert r.returncode == 0, r.stderr
    # What the edges got: one request per variant, at the one edge.
    assert bed.nginx.edge_requests(path) == {(POPS[0], GZIP): 1, (POPS[0], IDENTITY): 1}
    for enc in (GZIP, IDENTITY):
        assert bed.nginx.probe(POPS[0], path, enc)[:2] == (200, "HIT")
    for label in ("ecs:198.51.100.0/24", "ecs:203.0.113.0/24"):
        assert r.stderr.count(f"{label} gives the edge {POPS[0]} gives") == 1, r.stderr
    status = json.loads(run_cli("status", data["job_id"], "-o", "json").stdout)
    assert set(status["providers"]["direct"]["details"]["pops"]) == {POPS[0]}


# --------------------------------------------------------------------------- no config needed


def test_with_no_config_at_all_submit_warms_directly(
    bed: CacheBed, cli_env: dict[str, str], run_cli
) -> None:
    del cli_env["PREWARM_CONFIG"]  # a fresh machine: no config file anywhere
    path = "/obj/fresh.js"
    r = run_cli("submit", "-o", "json", *bed.nginx.resolve_args(), bed.nginx.url(path))
    assert r.returncode == 0, r.stderr
    notice = (
        "no provider configured: warming directly through the CDN edge; see prewarm config init"
    )
    assert r.stderr.count(notice) == 1
    data = json.loads(r.stdout)
    assert data["accepted"] == 1 and data["tasks"][0]["provider"] == "direct"
    assert_hit_everywhere(bed, path, (GZIP, IDENTITY))


def test_p_direct_works_beside_other_providers_without_a_table(
    bed: CacheBed, run_cli, write_config
) -> None:
    write_config(
        '[defaults]\nprovider = "one"\n\n[providers.one]\ntype = "fake"\n'
        'endpoint = "http://127.0.0.1:9"\n'
    )
    path = "/obj/implicit.js"
    r, data = submit(run_cli, *bed.nginx.resolve_args(), bed.nginx.url(path))
    assert r.returncode == 0, r.stderr
    assert "no provider configured" not in r.stderr
    assert data["accepted"] == 1
    assert_hit_everywhere(bed, path, (GZIP, IDENTITY))


# --------------------------------------------------------------------------- --wait --verify


def test_wait_verify_probes_every_warmed_pop_and_variant(
    bed: CacheBed, run_cli, direct_config
) -> None:
    direct_config()
    paths = ["/obj/v1.js", "/obj/v2.js"]
    urls = [bed.nginx.url(p) for p in paths]
    r, data = submit(run_cli, "--wait", "--verify", *bed.nginx.resolve_args(), *urls)
    assert r.returncode == 0, r.stderr
    assert data["status"]["state"] == "succeeded"
    results = data["verify"]["results"]
    # Every (URL, PoP, variant) was probed again through its PoP, and is a hit there.
    assert sorted((x["url"], x["target"], x["accept_encoding"]) for x in results) == sorted(
        (u, pop, enc) for u in urls for pop in POPS for enc in (GZIP, IDENTITY)
    )
    assert all(x["cache"] == "hit" and not x["mismatch"] for x in results)
    assert data["verify"]["summary"]["mismatches"] == 0
    # The probes reached nginx only: the origin saw each variant once per PoP, as warmed.
    for path in paths:
        assert bed.counts.count(path, GZIP) == 2 and bed.counts.count(path, IDENTITY) == 2


def test_wait_verify_reports_a_variant_that_is_not_warm(
    bed: CacheBed, run_cli, direct_config, tmp_path: Path
) -> None:
    direct_config()
    path = "/obj/evicted.js"
    r, data = submit(run_cli, *bed.nginx.resolve_args(), bed.nginx.url(path))
    assert r.returncode == 0, r.stderr
    # The second PoP loses its copies (as an eviction would): verify must say so.
    shutil.rmtree(bed.nginx.dir / "cache" / "1")
    (bed.nginx.dir / "cache" / "1").mkdir()
    st = run_cli("status", data["job_id"], "--verify", "-o", "json")
    assert st.returncode == 4, st.stderr
    results = json.loads(st.stdout)["verify"]["results"]
    cold = sorted((x["target"], x["accept_encoding"]) for x in results if x["mismatch"])
    assert cold == [(POPS[1], GZIP), (POPS[1], IDENTITY)]


def test_verify_of_a_partial_job_holds_each_warmed_url_to_its_claim(
    bed: CacheBed, run_cli, direct_config
) -> None:
    direct_config('encodings = ["identity"]\n')
    paths = ["/obj/kept.js", "/missing/gone.js"]  # the second is a 404: the run is partial
    r, data = submit(run_cli, *bed.nginx.resolve_args(), *(bed.nginx.url(p) for p in paths))
    assert r.returncode == 4, r.stderr
    shutil.rmtree(bed.nginx.dir / "cache" / "1")  # the second PoP loses what was warmed
    (bed.nginx.dir / "cache" / "1").mkdir()
    st = run_cli("status", data["job_id"], "--verify", "-o", "json")
    assert st.returncode == 4, st.stderr
    verify = json.loads(st.stdout)["verify"]
    by_target = {x["target"]: x for x in verify["results"]}
    assert by_target.keys() == set(POPS)  # the warmed URL only, at each PoP
    assert by_target[POPS[0]]["vendor"] == "succeeded" and not by_target[POPS[0]]["mismatch"]
    assert by_target[POPS[1]]["vendor"] == "succeeded" and by_target[POPS[1]]["mismatch"]
    assert verify["summary"]["mismatches"] == 1


def test_verify_of_a_run_named_by_its_task_probes_its_targets_only(
    bed: CacheBed, run_cli, direct_config
) -> None:
    """`status direct:RUN --verify` (no journal job: the run lists its URLs) probed each URL
    once more, unpinned through this machine's DNS, beside its PoP targets: 6 results, exit 4."""
    direct_config('encodings = ["identity"]\n')
    urls = [bed.nginx.url(p) for p in ("/obj/a.js", "/obj/b.js")]
    r, data = submit(run_cli, *bed.nginx.resolve_args(), *urls)
    assert r.returncode == 0, r.stderr
    for ref in (data["job_id"], f"direct:{data['tasks'][0]['task_id']}"):
        st = run_cli("status", ref, "--verify", "-o", "json")
        assert st.returncode == 0, st.stderr
        results = json.loads(st.stdout)["verify"]["results"]
        assert sorted((x["url"], x["target"]) for x in results) == sorted(
            (u, pop) for u in urls for pop in POPS
        )


def test_verify_of_a_direct_job_keeps_its_rate(bed: CacheBed, run_cli, direct_config) -> None:
    """The probes of what a direct job warmed go to its edges as the warm did: within its
    `rate` (a cold cache's misses reach the origin), here 2 in any second, kept by the
    engine's pacer together with the warm's."""
    direct_config('encodings = ["identity"]\nrate = 2\n')
    urls = [bed.nginx.url(p) for p in ("/obj/r1.js", "/obj/r2.js")]
    r, data = submit(run_cli, *bed.nginx.resolve_args(), *urls)
    assert r.returncode == 0, r.stderr
    began = time.monotonic()
    st = run_cli("status", data["job_id"], "--verify", "-o", "json")
    took = time.monotonic() - began
    assert st.returncode == 0, st.stderr
    assert len(json.loads(st.stdout)["verify"]["results"]) == 2 * len(POPS)
    # The warm's last two requests leave a second before the first two probes may, and
    # those a second before the last two: 1.7 s at least from the command's start (3 s
    # here; unpaced, the command took 1.1 s).
    assert took >= 1.6


def test_verify_of_a_direct_job_checks_the_trust_store_before_any_result(
    bed: CacheBed, run_cli, direct_config, tmp_path: Path
) -> None:
    """The probes' parts are made as they are reached: a trust store that cannot be read is
    said before the document's verify part begins, not inside it."""
    direct_config('encodings = ["identity"]\n')
    r, data = submit(run_cli, *bed.nginx.resolve_args(), bed.nginx.url("/obj/t.js"))
    assert r.returncode == 0, r.stderr
    missing = str(tmp_path / "nowhere.pem")
    st = run_cli(
        "status", data["job_id"], "--verify", "-o", "json", env_extra={"SSL_CERT_FILE": missing}
    )
    assert st.returncode == 3, st.stderr
    assert "verify" not in json.loads(st.stdout) and f"SSL_CERT_FILE={missing}" in st.stderr


def test_wait_verify_probes_the_entry_the_headers_warmed(
    device_bed: CacheBed, run_cli, direct_config
) -> None:
    direct_config()
    bed, path = device_bed, "/obj/device.js"
    r, data = submit(
        run_cli, "-H", "X-Device: mobile", "--wait", "--verify", *bed.nginx.resolve_args(),
        bed.nginx.url(path),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    results = data["verify"]["results"]
    assert len(results) == 4 and all(x["cache"] == "hit" and not x["mismatch"] for x in results)
    # The origin saw the warm's requests only, each with the header: no probe missed an
    # entry without it (and filled that one instead).
    assert bed.counts.count(path) == 4
    assert bed.counts.count_with(path, "X-Device", "mobile") == 4
    for pop in POPS:
        for enc in (GZIP, IDENTITY):
            answer = bed.nginx.probe(pop, path, enc, headers={"X-Device": "mobile"})
            assert answer[:2] == (200, "HIT"), (pop, enc)


def test_wait_verify_probes_with_the_user_agent_the_warm_sent(
    agent_bed: CacheBed, run_cli, direct_config
) -> None:
    bed = agent_bed
    pin = ("--resolve", f"{HOST}:{bed.nginx.port}:{POPS[0]}")
    for table, header, path, agent in (
        ('user_agent = "warmer/1"\n', (), "/obj/agent-set.js", "warmer/1"),
        ('user_agent = "warmer/1"\n', ("-H", "User-Agent: tv/2"), "/obj/agent-h.js", "tv/2"),
        ("", (), "/obj/agent-default.js", None),
    ):
        direct_config(table + 'encodings = ["identity"]\n')
        r, data = submit(run_cli, *header, "--wait", "--verify", *pin, bed.nginx.url(path))
        assert r.returncode == 0, (path, r.stderr)
        (result,) = data["verify"]["results"]
        assert result["cache"] == "hit" and not result["mismatch"], path
        # One request reached the origin, the warm's: the probe asked for the entry it filled.
        assert bed.counts.count(path) == 1, path
        if agent is not None:
            assert bed.counts.count_with(path, "User-Agent", agent) == 1, path


def test_status_verify_probes_with_the_jobs_user_agent_not_the_configs_of_now(
    agent_bed: CacheBed, run_cli, direct_config
) -> None:
    bed = agent_bed
    path = "/obj/agent-later.js"
    direct_config('user_agent = "warmer/1"\nencodings = ["identity"]\n')
    r, data = submit(
        run_cli, "--resolve", f"{HOST}:{bed.nginx.port}:{POPS[0]}", bed.nginx.url(path)
    )
    assert r.returncode == 0, r.stderr
    for table in ('user_agent = "warmer/2"\n', ""):  # changed since, or left to the default
        direct_config(table + 'encodings = ["identity"]\n')
        r = run_cli("status", data["job_id"], "--verify", "-o", "json")
        assert r.returncode == 0, r.stderr
        (result,) = json.loads(r.stdout)["verify"]["results"]
        assert result["cache"] == "hit" and not result["mismatch"], table
    # The warm's one request, with the job's User-Agent; the probes asked for what it filled.
    assert bed.counts.count(path) == 1
    assert bed.counts.count_with(path, "User-Agent", "warmer/1") == 1


def test_wait_verify_table_names_the_pop_target_of_each_row(
    bed: CacheBed, run_cli, direct_config
) -> None:
    direct_config('encodings = ["identity"]\n')
    url = bed.nginx.url("/obj/table.js")
    r = run_cli(
        "submit", "-p", "direct", "--wait", "--verify", "-o", "table",
        *bed.nginx.resolve_args(), url,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    verify_at = next(i for i, line in enumerate(lines) if "target" in line.split())
    rows = [line.split() for line in lines[verify_at:] if url in line]
    assert sorted(pop for row in rows for pop in POPS if pop in row) == sorted(POPS)


def test_resume_refuses_options_and_keeps_the_jobs_own(
    device_bed: CacheBed, run_cli, direct_config
) -> None:
    direct_config('concurrency = 1\nmax_bytes = 5000\nencodings = ["identity"]\n')
    bed = device_bed
    paths = [f"/obj/keep{i}.bin" for i in range(5)]
    pin = ("--resolve", f"{HOST}:{bed.nginx.port}:{POPS[0]}")
    r, data = submit(run_cli, "-H", "X-Device: mobile", *pin, *(bed.nginx.url(p) for p in paths))
    assert r.returncode == 5 and data["deferred"], r.stderr
    job = data["job_id"]
    sent = bed.counts.total()
    other = ("--accept-encoding", "gzip", "--resolve", f"{HOST}:{bed.nginx.port}:{POPS[1]}")
    r = run_cli("submit", "--resume", job, *other, "-H", "X-Device: tv", "-o", "json")
    assert r.returncode == 2, r.stderr
    assert json.loads(r.stdout)["error"]["code"] == "usage"
    for name in ("--header", "--accept-encoding", "--resolve"):
        assert name in r.stderr
    assert bed.counts.total() == sent  # nothing was sent
    # The run's own options are welcome; the job's recorded ones are used, -H included.
    direct_config('concurrency = 1\nencodings = ["identity"]\n')
    r = run_cli("submit", "--resume", job, "--force", "--wait", "--verify", "-o", "json")
    assert r.returncode == 0, r.stderr
    again = json.loads(r.stdout)
    assert again["accepted"] == 5
    results = again["verify"]["results"]
    assert len(results) == 5
    assert {(x["target"], x["cache"]) for x in results} == {(POPS[0], "hit")}
    # Every request that reached the origin (warms, and probes had they missed) was the
    # job's: X-Device mobile, no other device, no other PoP.
    for path in paths:
        assert bed.counts.count_with(path, "X-Device", "mobile") == bed.counts.count(path) >= 1
    assert bed.nginx.edge_requests(paths[0]).keys() <= {(POPS[0], IDENTITY)}


def test_a_job_killed_as_its_intake_ends_keeps_the_settings_resume_holds_it_to(
    bed: CacheBed, run_cli, direct_config, cli_env, tmp_path
) -> None:
    """Killed (SIGKILL) at the first step after its intake: the job is resumable, and its
    settings were written with it, so that a config that now warms other variants is refused."""
    direct_config('encodings = ["identity"]\n')
    hook = tmp_path / "hook"
    hook.mkdir()
    # Killed in the first check after the intake, before any request.
    (hook / "sitecustomize.py").write_text(
        "import os, signal, sys\n"
        "import prewarm_cli.engine.submit\n"  # the package names its function so: the module
        "module = sys.modules['prewarm_cli.engine.submit']\n"
        "module._check_limits = lambda session: os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    env = {**cli_env, "PYTHONPATH": os.pathsep.join([str(hook), cli_env.get("PYTHONPATH", "")])}
    url = bed.nginx.url("/obj/killed-at-intake.js")
    pin = f"{HOST}:{bed.nginx.port}:{POPS[0]}"
    killed = subprocess.run(
        [sys.executable, "-m", "prewarm_cli", "submit", "-p", "direct", "--resolve", pin, url],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert bed.counts.total() == 0
    (job,) = json.loads(run_cli("jobs", "-o", "json").stdout)
    direct_config('encodings = ["gzip"]\n')
    r = run_cli("submit", "--resume", job["job_id"], "-o", "json")
    assert r.returncode == 2, r.stderr
    assert "identity" in r.stderr and bed.counts.total() == 0
    direct_config('encodings = ["identity"]\n')
    r = run_cli("submit", "--resume", job["job_id"], "-o", "json")
    assert r.returncode == 0, r.stderr
    assert bed.counts.count("/obj/killed-at-intake.js", IDENTITY) == 1


def test_a_request_goes_out_when_its_rate_lets_it_not_with_the_next(
    bed: CacheBed, cli_env, direct_config, tmp_path: Path
) -> None:
    """With a rate, each request leaves when it is taken: the requests taken to fill the
    free slots went out together once the last one's wait was over (rate = 1 with
    concurrency 4: nothing for 3 s, then four at once)."""
    direct_config('rate = 0.01\nconcurrency = 2\nencodings = ["identity"]\n')
    first, second = "/hold/paced-first.js", "/obj/paced-second.js"
    second_then: list[int] = []
    first_arrived = arrived_noting(bed, first, second, second_then)
    interrupt_while_held(
        bed,
        cli_env,
        tmp_path,
        [bed.nginx.url(first), bed.nginx.url(second)],
        first,
        reached=first_arrived,
    )
    # The first went out at once (it waited for the second's 100 s), the second waits.
    assert second_then == [0]


def test_a_host_written_with_its_final_dot_is_warmed_through_its_pin(
    bed: CacheBed, run_cli, direct_config
) -> None:
    """`http://host.:port/` pinned to the first PoP is warmed there: the pin went unused (the
    request went where this machine's DNS sent it, or failed), and the run said it warmed
    the pinned PoP."""
    direct_config('encodings = ["identity"]\n')
    path = "/obj/absolute-name.js"
    url = bed.nginx.url(path).replace(f"//{HOST}:", f"//{HOST}.:")
    r, data = submit(run_cli, "--resolve", f"{HOST}:{bed.nginx.port}:{POPS[0]}", url)
    assert r.returncode == 0, r.stderr
    assert data["accepted"] == 1
    assert data["providers"]["direct"]["details"]["pops"][POPS[0]]["filled"] == 1
    assert bed.counts.count(path, IDENTITY) == 1
    assert_hit_at_first_pop(bed, [path])


def test_a_wait_longer_than_the_retries_names_the_url_that_asked_for_it(
    bed: CacheBed, run_cli, direct_config
) -> None:
    """Two URLs answered 503, one with Retry-After: 100 (longer than retry_timeout): the run
    defers them and says which answer asked to wait, and until when (it quoted the first
    failed URL's reason, whose answer asked nothing)."""
    direct_config('encodings = ["identity"]\n')
    asks_nothing = bed.nginx.url("/flaky/1/asks-nothing.js?retry_after=")
    asks_long = bed.nginx.url("/flaky/1/asks-long.js?retry_after=100")
    pin = ("--resolve", f"{HOST}:{bed.nginx.port}:{POPS[0]}")
    r, data = submit(run_cli, *pin, asks_nothing, asks_long)
    assert r.returncode == 5, r.stderr
    assert data["deferred"] == 2
    (line,) = [line for line in r.stderr.splitlines() if "asked to wait" in line]
    assert "asked to wait 100s (until " in line and asks_long in line, line
    assert asks_nothing not in line


def test_an_answer_while_the_rate_waits_is_recorded_and_not_asked_again(
    bed: CacheBed, cli_env, run_cli, direct_config, tmp_path: Path
) -> None:
    """The first request is answered while the second waits for the rate: the answer is
    recorded then, so Ctrl-C in the wait keeps it, and --resume asks only the second (the
    answer waited for the loop's return; Ctrl-C dropped it, and the resume asked again)."""
    direct_config('rate = 0.01\nconcurrency = 2\nencodings = ["identity"]\n')
    first, second = "/obj/rate-answered.js", "/obj/rate-waiting.js"
    record = Path(cli_env["PREWARM_STATE_DIR"]) / "direct.sqlite3"
    seen: list[int] = []
    stopped = run_submit(
        bed,
        cli_env,
        tmp_path,
        ["--resolve", f"{HOST}:{bed.nginx.port}:{POPS[0]}", *map(bed.nginx.url, (first, second))],
        arrived_noting(bed, first, second, seen),
        ready=lambda: recorded(record, first) >= 1,
        sig=signal.SIGINT,
    )
    assert stopped.returncode == 130, stopped.stderr
    assert seen == [0]
    (job,) = json.loads(run_cli("jobs", "-o", "json").stdout)
    direct_config('concurrency = 2\nencodings = ["identity"]\n')  # no rate: at once
    r = run_cli("submit", "-o", "json", "--resume", job["job_id"])
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["state"] == "submitted"
    assert bed.counts.count(first, IDENTITY) == 1  # answered before the stop: not again
    assert bed.counts.count(second, IDENTITY) == 1
    assert_hit_at_first_pop(bed, [first, second])


def test_a_rate_s_wait_does_not_spin_a_core(bed: CacheBed, run_cli, direct_config) -> None:
    """While the second request waits four seconds for the rate, with nothing in flight,
    the process sleeps (it spun: a wait on no socket returned at once, 100 % of a core)."""
    import resource

    direct_config('rate = 0.25\nconcurrency = 2\nencodings = ["identity"]\n')
    urls = [bed.nginx.url(f"/obj/rate-idle-{i}.js") for i in range(2)]

    def children_cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    before = children_cpu()
    r, data = submit(run_cli, "--resolve", f"{HOST}:{bed.nginx.port}:{POPS[0]}", *urls)
    cpu_s = children_cpu() - before
    assert r.returncode == 0 and data["accepted"] == 2, r.stderr
    assert cpu_s < 1.5, f"{cpu_s:.1f} s of CPU for two requests four seconds apart"


def test_dry_run_plans_urls_times_pops_times_variants(bed: CacheBed, run_cli, direct_config):
    direct_config()
    urls = [bed.nginx.url(f"/obj/plan{i}.js") for i in range(3)]
    r = run_cli(
        "submit", "-p", "direct", "--dry-run", "-o", "json", *bed.nginx.resolve_args(), *urls
    )
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)["providers"]["direct"]
    assert plan["urls"] == 3 and plan["requests"] == 3 * 2 * 2
    assert bed.counts.total() == 0  # nothing sent
    # Each variant quoted whole: the first holds commas of its own.
    assert "('gzip, deflate, br', 'identity')" in " ".join(plan["notes"]), plan["notes"]
    direct_config("rate = 4.0\n")  # the time is the requests' at the rate, not the batches'
    r = run_cli(
        "submit", "-p", "direct", "--dry-run", "-o", "json", *bed.nginx.resolve_args(), *urls
    )
    assert json.loads(r.stdout)["providers"]["direct"]["estimated_seconds"] == 3.0


def test_progress_bar_shows_requests_and_bytes_on_a_terminal(
    bed: CacheBed, cli_env: dict[str, str], direct_config
) -> None:
    import pty
    import re
    import time

    direct_config('encodings = ["identity"]\n')
    paths = [f"/obj/bar{i}.js" for i in range(5)] + ["/stallnth/1/bar.js"]  # then answers
    pin = ("--resolve", f"{HOST}:{bed.nginx.port}:{POPS[0]}")
    args = ["submit", "-p", "direct", *pin, *(bed.nginx.url(p) for p in paths)]
    pid, fd = pty.fork()
    if pid == 0:  # the child: prewarm with its stderr on a terminal
        os.execve(sys.executable, [sys.executable, "-m", "prewarm_cli", *args], cli_env)
    ansi = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
    seen = ""
    try:
        deadline = time.monotonic() + 60
        # While the stalled URL holds the run, the bar shows what was sent so far.
        while "5 requests, 10.0 KB" not in ansi.sub("", seen):
            assert time.monotonic() < deadline, seen
            seen += os.read(fd, 65536).decode(errors="replace")
        bed.counts.release.set()
        seen += read_until_closed(fd).decode(errors="replace")
    finally:
        bed.counts.release.set()
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0, seen


def test_prune_drops_a_direct_job_s_record_even_when_its_alias_is_gone(
    bed: CacheBed, run_cli, write_config, cli_env
) -> None:
    # The record is one file for every alias of the type: a job sent through an alias the
    # config no longer has is dropped from it too, not stranded there for ever.
    write_config('[providers.cdn]\ntype = "direct"\nencodings = ["identity"]\n')
    pin = ("--resolve", f"{HOST}:{bed.nginx.port}:{POPS[0]}")
    r = run_cli("submit", "-p", "cdn", "-o", "json", *pin, bed.nginx.url("/obj/pruned.js"))
    assert r.returncode == 0, r.stderr
    job = json.loads(r.stdout)["job_id"]
    record = Path(cli_env["PREWARM_STATE_DIR"]) / "direct.sqlite3"

    def rows_of_job() -> int:
        with sqlite3.connect(record) as db:
            return sum(
                db.execute(f"SELECT COUNT(*) FROM {table} WHERE job_id = ?", (job,)).fetchone()[0]
                for table in ("requests", "warmed", "runs")
            )

    assert rows_of_job() > 0
    write_config("[providers.cdn\n")  # cdn is gone, and the file cannot even be read
    r = run_cli("jobs", "--prune", "0", "-o", "json")
    assert r.returncode == 0, r.stderr
    assert "deleted 1 job" in r.stderr and json.loads(r.stdout) == []
    assert rows_of_job() == 0
