"""`prewarm verify` and `--verify` as a user runs them, against a local fake CDN edge."""

from __future__ import annotations

import json
import os
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest
from fakes.cache_server import CacheServer, Route
from fakes.generic import FakeCdn
from helpers import interrupt, invoke, popen, wait_for


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


def test_wait_verify_probes_send_the_job_headers(fake_config, fake_cdn: FakeCdn, edge) -> None:
    # A CDN keyed on a request header holds the copy the prefetch asked for under that
    # header: the probes must ask for the same entry, as `verify -H` would.
    url = f"{edge.url}/cloudfront/hit"
    wait = ("--wait", "--interval", "0.2", "--verify")
    r = invoke("submit", "-H", "X-Device: mobile", *wait, "-o", "json", url)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    (probe,) = edge.paths("/cloudfront/hit")
    assert probe["headers"].get("x-device") == "mobile"
    # status --verify reads the headers from the job, as the submit recorded them.
    r = invoke("status", data["job_id"], "--verify", "-o", "json")
    assert r.returncode == 0, r.stderr
    assert [p["headers"].get("x-device") for p in edge.paths("/cloudfront/hit")] == [
        "mobile",
        "mobile",
    ]


def test_wait_verify_ndjson_has_the_results_and_the_job(
    fake_config, fake_cdn: FakeCdn, edge
) -> None:
    hit, miss = f"{edge.url}/cloudfront/hit", f"{edge.url}/cloudfront/miss"
    r = invoke("submit", "--wait", "--interval", "0.2", "--verify", "-o", "ndjson", hit, miss)
    assert r.returncode == 4  # the vendor says done, but one URL is not warm
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    job_id = lines[0]["job_id"]
    assert job_id and all(line["job_id"] == job_id for line in lines)
    by_kind: dict[str, list[dict]] = {}
    for line in lines:
        by_kind.setdefault(line["record"], []).append(line)
    assert set(by_kind) == {"submit", "task", "status", "verify"}
    assert by_kind["submit"] == [
        {
            "record": "submit",
            "job_id": job_id,
            "state": "submitted",
            "urls": 2,
            "total": 2,
            "accepted": 2,
            "rejected": 0,
            "failed": 0,
            "deferred": 0,
            "unknown": 0,
            "skipped": 0,
        }
    ]
    assert by_kind["task"][0]["task_id"] and by_kind["task"][0]["provider"] == "fake"
    assert [s["state"] for s in by_kind["status"]] == ["succeeded"]
    verdicts = {v["url"]: (v["cache"], v["mismatch"]) for v in by_kind["verify"]}
    assert verdicts == {hit: ("hit", False), miss: ("miss", True)}
    # Why the exit is 4, in words, where messages go, and what to do.
    assert "1 not warm although the vendor says succeeded" in r.stderr
    assert "submit those URLs again" in r.stderr

    r = invoke("status", job_id, "--verify", "-o", "ndjson")
    assert r.returncode == 4
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert [line["record"] for line in lines] == ["status", "verify", "verify"]
    assert all(line["job_id"] == job_id for line in lines)
    assert sum(1 for line in lines if line.get("mismatch")) == 1
    # Without --wait, the task lines name their job as well.
    r = invoke("submit", "-o", "ndjson", hit)
    (submitted, task) = [json.loads(line) for line in r.stdout.splitlines()]
    assert submitted["record"] == "submit" and submitted["job_id"] == task["job_id"]
    assert task["record"] == "task" and task["job_id"] and task["task_id"]


def test_piped_status_verify_on_a_machine_without_the_job(
    fake_config, fake_cdn: FakeCdn, edge, cli_env, tmp_path, monkeypatch
) -> None:
    """`submit -o json | status --wait --verify -` where the status side has no journal of
    that job (another CI machine): the wait's result stands (it was lost to a not-found)."""
    url = f"{edge.url}/cloudfront/hit"
    r = invoke("submit", "-o", "json", url)
    assert r.returncode == 0, r.stderr
    monkeypatch.setenv("PREWARM_STATE_DIR", str(tmp_path / "other-machine"))
    wait = ("--wait", "--interval", "0.2", "--wait-timeout", "20")
    s = invoke("status", *wait, "--verify", "-", "-o", "json", input=r.stdout)
    assert s.returncode == 0, s.stderr
    data = json.loads(s.stdout)
    assert data["state"] == "succeeded" and "verify" in data


def test_ndjson_of_a_submit_that_made_no_task_names_the_job(fake_config, fake_cdn: FakeCdn):
    fake_cdn.daily_quota = 0  # everything deferred: no vendor task at all
    r = invoke(
        "submit", "-o", "ndjson", *(f"https://static.example.com/n{i}.css" for i in range(5))
    )
    assert r.returncode == 5, r.stderr
    (line,) = [json.loads(text) for text in r.stdout.splitlines()]
    assert line["record"] == "submit" and line["deferred"] == 5
    assert f"--resume {line['job_id']}" in r.stderr


def test_verify_names_each_host_and_port_no_resolve_pin_applies_to(cli_env, edge) -> None:
    from urllib.parse import urlsplit

    hit, miss = f"{edge.url}/cloudfront/hit", f"{edge.url}/cloudfront/miss"
    parts = urlsplit(edge.url)
    host, port = parts.hostname, parts.port
    assert host and port
    mistyped = f"{host}:{port + 1}:{host}"
    r = invoke("verify", "--resolve", mistyped, hit, miss, "-o", "json")
    assert r.returncode == 0, r.stderr
    warning = (
        f"no --resolve pin for {host}:{port} (--resolve {mistyped} is for another port):"
        " probed through the edge DNS gives"
    )
    assert r.stderr.count(warning) == 1, r.stderr  # once for the two URLs of that host
    assert len(json.loads(r.stdout)["results"]) == 2
    r = invoke("verify", "--resolve", f"{host}:{port}:{host}", hit, "-o", "json")
    assert r.returncode == 0 and "no --resolve pin" not in r.stderr, r.stderr
    # Two pins for one host and port (as submit takes two PoPs): one is probed, and said so.
    first, last = f"{host}:{port}:127.0.0.9", f"{host}:{port}:{host}"
    r = invoke("verify", "--resolve", first, "--resolve", last, hit, "-o", "json")
    assert r.returncode == 0, r.stderr
    assert f"--resolve {first} is replaced by --resolve {last}" in r.stderr
    assert len(json.loads(r.stdout)["results"]) == 1


def held_last(edge: CacheServer) -> tuple[list[str], threading.Event]:
    """Five URLs the edge answers at once, then one it holds until the event is set."""
    held = threading.Event()
    edge.routes["/held"] = Route(headers={"X-Cache": "HIT"}, held=held)
    return [*(f"{edge.url}/cloudfront/hit?i={i}" for i in range(5)), f"{edge.url}/held"], held


def read_streamed(
    cli_env, tmp_path: Path, edge: CacheServer, held: threading.Event, *args: str
) -> str:
    """What `prewarm ARGS` writes to a pipe, checking that the five answers before the held
    one are out while it is still awaited; then the held one is let go, and the run must end
    well."""
    # As a user's shell runs it: stdout a pipe, block-buffered unless prewarm flushes.
    env = {k: v for k, v in cli_env.items() if k != "PYTHONUNBUFFERED"}
    proc = popen(env, tmp_path, *args)
    assert proc.stdout is not None and proc.stderr is not None
    lines: queue.Queue[str | None] = queue.Queue()

    def read(stdout: IO[str]) -> None:
        for line in stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, args=(proc.stdout,), daemon=True).start()
    try:
        seen = ""
        while seen.count("/cloudfront/hit?i=") < 5:
            seen += lines.get(timeout=30) or ""
        wait_for(lambda: edge.in_flight == 1, 30)
        assert "/held" not in seen
    finally:
        held.set()
        proc.wait(60)
    assert proc.returncode == 0, proc.stderr.read()
    return seen + "".join(iter(lambda: lines.get(timeout=30), None))


@pytest.mark.parametrize("fmt", ["ndjson", "json"])
def test_piped_verify_writes_each_answer_as_it_comes(
    cli_env: dict[str, str], tmp_path: Path, edge: CacheServer, fmt: str
) -> None:
    urls, held = held_last(edge)
    args = ("verify", "-o", fmt, "--concurrency", "1", *urls)
    text = read_streamed(cli_env, tmp_path, edge, held, *args)
    if fmt == "json":
        data = json.loads(text)
        assert [r["url"] for r in data["results"]] == urls
        assert data["summary"]["total"] == 6 and data["summary"]["hit"] == 6
    else:
        assert [json.loads(line)["url"] for line in text.splitlines()] == urls


def test_piped_verify_json_cut_short_by_ctrl_c_is_still_one_json_document(
    cli_env: dict[str, str], tmp_path: Path, edge: CacheServer
) -> None:
    held = threading.Event()
    edge.routes["/held"] = Route(headers={"X-Cache": "HIT"}, held=held)
    urls = [f"{edge.url}/cloudfront/hit", f"{edge.url}/held"]
    proc = popen(cli_env, tmp_path, "verify", "-o", "json", "--concurrency", "1", *urls)
    try:
        stopped = interrupt(proc, lambda: wait_for(lambda: edge.in_flight == 1, 30))
    finally:
        held.set()
    assert proc.returncode == 130, stopped.err
    # The results so far, closed where they stood, and the error in the same document.
    data = json.loads(stopped.out)
    # The first answer, unless the signal came before it was written (it is probed first).
    assert [r["url"] for r in data["results"]] in ([], urls[:1])
    assert data["error"]["code"] == "interrupted" and "summary" not in data


def finished_job(fake_cdn: FakeCdn, urls: list[str]) -> str:
    """A job of these URLs at the fake vendor, every task of it done."""
    r = invoke("submit", "-o", "json", *urls)
    assert r.returncode == 0, r.stderr
    submitted = json.loads(r.stdout)
    tasks = [t["task_id"] for t in submitted["tasks"]]
    wait_for(lambda: all(fake_cdn.task_state(t) == "DONE" for t in tasks), 30)
    return str(submitted["job_id"])


@pytest.mark.parametrize("fmt", ["ndjson", "json"])
def test_piped_status_verify_writes_each_answer_as_it_comes(
    fake_config, fake_cdn: FakeCdn, cli_env, tmp_path: Path, edge: CacheServer, fmt: str
) -> None:
    """A job's --verify results are not all held: piped, each is written as it comes, in
    the order of the job's URLs, after the status."""
    urls, held = held_last(edge)
    job = finished_job(fake_cdn, urls)
    text = read_streamed(cli_env, tmp_path, edge, held, "status", job, "--verify", "-o", fmt)
    if fmt == "json":
        data = json.loads(text)
        assert data["state"] == "succeeded" and data["job_id"] == job
        assert [r["url"] for r in data["verify"]["results"]] == urls
        assert {r["vendor"] for r in data["verify"]["results"]} == {"succeeded"}
        assert data["verify"]["summary"]["total"] == 6
        assert data["verify"]["summary"]["mismatches"] == 0
    else:
        records = [json.loads(line) for line in text.splitlines()]
        assert [r["record"] for r in records] == ["status"] + ["verify"] * 6
        assert [r["url"] for r in records[1:]] == urls


def test_targets_a_provider_names_are_probed_as_it_reads_them_and_say_their_target(
    fake_config, fake_cdn: FakeCdn, edge: CacheServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A provider's probe targets (as direct warming names its PoPs and variants), read from
    an iterable that reads them anew each time (as a record of a million does): each group
    probed with its own Accept-Encoding, and each result says its target, none when unnamed."""
    from prewarm_fake import FakeProvider

    from prewarm_cli.plugin import ProbeTarget

    urls = [f"{edge.url}/cloudfront/hit?i={i}" for i in range(3)]
    job = finished_job(fake_cdn, urls)
    reads: list[int] = []

    class Targets:
        def __iter__(self) -> Iterator[ProbeTarget]:
            reads.append(0)
            for encoding in ("gzip", "identity"):
                for url in urls:
                    yield ProbeTarget(url, encoding)

    monkeypatch.setattr(FakeProvider, "probe_targets", lambda self, task_ids: Targets())
    r = invoke("status", job, "--verify", "-o", "json")
    assert r.returncode == 0, r.stderr
    results = json.loads(r.stdout)["verify"]["results"]
    assert [x["url"] for x in results] == urls * 2
    assert all("target" in x and x["target"] is None for x in results)
    sent = [p["headers"].get("accept-encoding") for p in edge.requests]
    assert sent == ["gzip"] * 3 + ["identity"] * 3
    assert len(reads) == 2  # counted, then probed


def test_probe_targets_given_as_a_generator_are_all_probed(
    fake_config, fake_cdn: FakeCdn, edge: CacheServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The targets are read twice (to count, then to probe): a generator, empty the second
    time, probed none of them."""
    from prewarm_fake import FakeProvider

    from prewarm_cli.plugin import ProbeTarget

    urls = [f"{edge.url}/cloudfront/hit?i={i}" for i in range(3)]
    job = finished_job(fake_cdn, urls)
    monkeypatch.setattr(
        FakeProvider, "probe_targets", lambda self, task_ids: (ProbeTarget(u, "gzip") for u in urls)
    )
    r = invoke("status", job, "--verify", "-o", "json")
    assert r.returncode == 0, r.stderr
    assert [x["url"] for x in json.loads(r.stdout)["verify"]["results"]] == urls


@pytest.mark.parametrize("command", ["status", "submit"])
def test_piped_verify_of_a_job_cut_short_by_ctrl_c_is_one_json_document_naming_the_job(
    fake_config, fake_cdn: FakeCdn, cli_env, tmp_path: Path, edge: CacheServer, command: str
) -> None:
    held = threading.Event()
    edge.routes["/held"] = Route(headers={"X-Cache": "HIT"}, held=held)
    urls = [f"{edge.url}/cloudfront/hit", f"{edge.url}/held"]
    if command == "status":
        job = finished_job(fake_cdn, urls)
        args = ["status", job, "--verify"]
    else:
        args = ["submit", "--wait", "--interval", "0.1", "--verify", *urls]
    proc = popen(cli_env, tmp_path, *args, "-o", "json")
    try:
        stopped = interrupt(proc, lambda: wait_for(lambda: edge.in_flight == 1, 30))
    finally:
        held.set()
    assert proc.returncode == 130, stopped.err
    data = json.loads(stopped.out)  # one document: the results so far, and the error in it
    job = data["job_id"]
    assert [r["url"] for r in data["verify"]["results"]] in ([], urls[:1])
    assert "summary" not in data["verify"]
    error = data["error"]
    assert error["code"] == "interrupted" and error["job_id"] == job
    assert error["message"] == f"interrupted while verifying job {job}"
    assert f"`prewarm status --verify {job}` verifies again" in error["hint"]


@pytest.mark.parametrize("command", ["urls", "verify"])
def test_a_reader_that_goes_away_ends_the_run_as_sigpipe_would_silently(
    cli_env, tmp_path: Path, edge: CacheServer, command: str
) -> None:
    """`prewarm ... | head -1`: 141, as a process SIGPIPE ended, and nothing on stderr (it
    was a silent 1, "failed", which broke `set -o pipefail` scripts for a wrong reason)."""
    n_urls = 50_000 if command == "urls" else 200  # more than a pipe's buffer holds
    listing = tmp_path / "urls.txt"
    listing.write_text("".join(f"{edge.url}/cloudfront/hit?i={i}\n" for i in range(n_urls)))
    proc = popen(cli_env, tmp_path, command, "-o", "ndjson", "-i", str(listing))
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()  # the reader goes away
    err = proc.stderr.read()
    proc.wait(60)
    assert first.strip() and proc.returncode == 141, (proc.returncode, err)
    assert err == "", err


@pytest.mark.parametrize("stdout", ["pipe", "socket"])
@pytest.mark.parametrize(
    ("args", "code", "said"),
    [
        (["urls", "-o", "json", "https://a.example.com/x", "notaurl"], 2, "notaurl: scheme"),
        (["urls", "https://a.example.com/x"], 141, ""),
        (["--version"], 141, ""),
    ],
)
def test_stdout_with_no_reader_from_the_start(
    cli_env, tmp_path: Path, stdout: str, args: list[str], code: int, said: str
) -> None:
    """Nobody reads stdout (a pipe whose reader is gone, a socket whose peer closed, as ssh
    runs commands): what was to be written is dropped, an error is still said on stderr
    with its own exit code, anything else ends as SIGPIPE would, silently (141)."""
    import socket
    import subprocess
    import sys

    if stdout == "pipe":
        read_end, write_end = os.pipe()
        os.close(read_end)
    else:
        ours, theirs = socket.socketpair()
        theirs.close()
        write_end = os.dup(ours.fileno())
        ours.close()
    try:
        r = subprocess.run(
            [sys.executable, "-m", "prewarm_cli", *args],
            env=cli_env,
            cwd=tmp_path,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert r.returncode == code, r.stderr
    assert (said in r.stderr) if said else r.stderr == ""
    assert "Traceback" not in r.stderr


def test_an_ssl_cert_file_that_cannot_be_read_is_a_config_error_naming_it(
    cli_env, tmp_path: Path, edge: CacheServer
) -> None:
    """It was "unexpected FileNotFoundError", exit 1, even for an http URL."""
    missing = str(tmp_path / "nowhere.pem")
    r = invoke("verify", f"{edge.url}/cloudfront/hit", env_extra={"SSL_CERT_FILE": missing})
    assert r.returncode == 3, r.stderr
    assert f"cannot load the CA certificates of SSL_CERT_FILE={missing}" in r.stderr
    assert "unexpected" not in r.stderr and "--ca-bundle" in r.stderr


def test_status_verify_with_a_trust_store_it_cannot_read_says_so_before_any_result(
    fake_config, fake_cdn: FakeCdn, edge: CacheServer, tmp_path: Path
) -> None:
    """The probes' parts are made as they are reached: their trust store is checked before
    the first result is written, not when the first part's turn comes."""
    job = finished_job(fake_cdn, [f"{edge.url}/cloudfront/hit"])
    missing = str(tmp_path / "nowhere.pem")
    r = invoke("status", job, "--verify", "-o", "json", env_extra={"SSL_CERT_FILE": missing})
    assert r.returncode == 3, r.stderr
    data = json.loads(r.stdout)  # one document
    assert data["error"]["code"] == "config" and "verify" not in data
    assert edge.requests == []


def test_verify_with_a_ca_bundle_it_cannot_read_says_so_before_any_result(
    cli_env: dict[str, str], tmp_path: Path, edge: CacheServer
) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    r = invoke("verify", "-o", "json", "--ca-bundle", str(bad), f"{edge.url}/cloudfront/hit")
    assert r.returncode == 2
    assert json.loads(r.stdout)["error"]["code"] == "usage"  # one document: the error alone
    assert "cannot load CA bundle" in r.stderr and edge.requests == []


def test_ctrl_c_ends_verify_at_once_with_a_probe_still_in_flight(
    cli_env: dict[str, str], tmp_path: Path, edge: CacheServer
) -> None:
    held = threading.Event()
    edge.routes["/held"] = Route(headers={"X-Cache": "HIT"}, held=held)
    proc = popen(cli_env, tmp_path, "verify", "--timeout", "120", f"{edge.url}/held")
    try:
        # Not when the probe in flight times out (120 s): its thread is not waited for.
        stopped = interrupt(proc, lambda: wait_for(lambda: edge.in_flight == 1, 30))
    finally:
        held.set()
    assert proc.returncode == 130, stopped.err
    assert stopped.seconds < 30
