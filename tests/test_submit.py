"""The engine end to end, as a user runs it: the CLI in a subprocess against the fake CDN."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fakes.generic import FakeCdn
from helpers import invoke, peak_rss_kib, urls, wait_for

from prewarm_cli.results import JobState


def as_input(items: list[str]) -> str:
    return "\n".join(items) + "\n"


def submit_json(run_cli, *args: str, input: str | None = None):
    r = run_cli("submit", "-o", "json", *args, input=input)
    data = json.loads(r.stdout) if r.stdout.strip() else None
    return r, data


def test_batches_to_the_provider_limit(run_cli, fake_config, fake_cdn: FakeCdn) -> None:
    r, data = submit_json(run_cli, "-i", "-", input=as_input(urls(150)))
    assert r.returncode == 0, r.stderr
    assert sorted(len(s) for s in fake_cdn.submits) == [50, 50, 50]
    assert data["state"] == "submitted"
    assert data["total"] == data["accepted"] == data["urls"] == 150
    assert sum(t["urls"] for t in data["tasks"]) == 150
    assert {t["provider"] for t in data["tasks"]} == {"fake"}
    assert data["created_at"].endswith("Z")
    assert "started" in r.stderr and data["job_id"] in r.stderr


def test_config_batch_size_lowers_and_force_raises(
    run_cli, write_config, fake_config, fake_cdn: FakeCdn
) -> None:
    text = fake_config.read_text()
    write_config(text + "batch_size = 20\n")
    r, _ = submit_json(run_cli, *urls(45))
    assert r.returncode == 0, r.stderr
    assert sorted(len(s) for s in fake_cdn.submits) == [5, 20, 20]

    write_config(text + "batch_size = 80\n")
    r = run_cli("submit", *urls(3, "https://static.example.com/g"))
    assert r.returncode == 3
    assert "batch_size = 80 is above the vendor limit of 50" in r.stderr
    fake_cdn.max_batch = 100
    r, _data = submit_json(run_cli, "--force", *urls(90, "https://static.example.com/h"))
    assert r.returncode == 0, r.stderr
    assert sorted(len(s) for s in fake_cdn.submits[3:]) == [10, 80]


def test_duplicates_removed_in_order_and_rejections_exit_4(
    run_cli, fake_config, fake_cdn: FakeCdn
) -> None:
    items = [*urls(3), "https://static.example.com/reject-this.js", *urls(3)]
    r, data = submit_json(run_cli, "-i", "-", input=as_input(items))
    assert r.returncode == 4
    assert data["urls"] == 4 and data["total"] == 4 and data["accepted"] == 3
    assert data["rejected"] == [
        {
            "url": "https://static.example.com/reject-this.js",
            "provider": "fake",
            "reason": "blocked by vendor policy",
        }
    ]
    assert fake_cdn.submit_bodies[0]["urls"] == [
        *urls(3),
        "https://static.example.com/reject-this.js",
    ]


def test_invalid_input_lists_lines_and_sends_nothing(
    run_cli, fake_config, fake_cdn: FakeCdn, tmp_path: Path, cli_env
) -> None:
    f = tmp_path / "list.txt"
    f.write_text("# comment\nhttps://ok.example.com/a\nftp://bad.example.com/x\n\nnot a url\n")
    r = run_cli("submit", "-i", str(f))
    assert r.returncode == 2
    assert "list.txt:3" in r.stderr and "list.txt:5" in r.stderr
    assert "--skip-invalid" in r.stderr
    assert fake_cdn.submits == []
    assert json.loads(r.stdout)["error"]["code"] == "invalid_input"
    # nothing recorded as a job either, nor a lock file for it
    assert json.loads(run_cli("jobs", "-o", "json").stdout) == []
    assert not list((Path(cli_env["PREWARM_STATE_DIR"]) / "locks").glob("*"))

    r, data = submit_json(run_cli, "--skip-invalid", "-i", str(f))
    assert r.returncode == 0, r.stderr
    assert data["accepted"] == 1
    assert [s["line"] for s in data["skipped"]] == [3, 5]
    assert fake_cdn.submits == [["https://ok.example.com/a"]]
    # Listed on stderr whatever the format, and counted in ndjson's first line.
    for output in ("table", "ndjson"):
        r = run_cli("submit", "--skip-invalid", "-i", str(f), "-o", output)
        assert r.returncode == 0, r.stderr
        assert "2 invalid input lines; skipped (--skip-invalid):" in r.stderr
        assert "list.txt:3: ftp://bad.example.com/x:" in r.stderr and "list.txt:5" in r.stderr
    assert json.loads(r.stdout.splitlines()[0])["skipped"] == 2


def test_skipped_inputs_are_all_counted_and_the_first_thousand_kept(
    run_cli, fake_config, fake_cdn: FakeCdn, tmp_path: Path, cli_env
) -> None:
    """A million invalid lines (or failed uploads) took a gigabyte, held and journaled whole."""
    f = tmp_path / "list.txt"
    f.write_text("https://ok.example.com/a\n" + "".join(f"ftp://bad/{i}\n" for i in range(1500)))
    log = tmp_path / "sync.log"
    log.write_text(
        "upload: public/b.js to s3://site/b.js\n"
        + "".join(f"upload failed: public/{i}.js to s3://site/{i}.js denied\n" for i in range(700))
    )
    args = ("--skip-invalid", "-i", str(f), "--from-sync-log", str(log))
    args += ("--base-url", "https://ok.example.com/")
    r, data = submit_json(run_cli, *args)
    assert r.returncode == 0, r.stderr
    assert data["accepted"] == 2 and data["skipped_total"] == 2200
    kept = data["skipped"]
    assert len(kept) == 1000 and [s["line"] for s in kept[:2]] == [2, 3]
    assert kept[-1]["input"] == "ftp://bad/999"  # the invalid lines came first
    # stderr lists a screenful of each, with their counts.
    assert "1500 invalid input lines; skipped (--skip-invalid):" in r.stderr
    assert "... and 1450 more" in r.stderr and "... and 650 more" in r.stderr
    assert "700 failed uploads in the sync log; skipped:" in r.stderr
    # What the journal keeps of the job says the same, read back.
    journal = sqlite3.connect(Path(cli_env["PREWARM_STATE_DIR"]) / "journal.sqlite3")
    (row,) = journal.execute("SELECT skipped, n_skipped FROM jobs WHERE id = ?", (data["job_id"],))
    assert len(json.loads(row[0])) == 1000 and row[1] == 2200
    r = run_cli("submit", *args, "-o", "ndjson")
    assert json.loads(r.stdout.splitlines()[0])["skipped"] == 2200
    r = run_cli("submit", *args, "--dry-run", "-o", "json")
    plan = json.loads(r.stdout)
    assert plan["skipped_total"] == 2200 and len(plan["skipped"]) == 1000


def test_rate_limits_are_respected(run_cli, write_config, fake_config, fake_cdn: FakeCdn) -> None:
    # 4 requests/s and 60 URLs/s, measured by the fake on its own clock.
    fake_cdn.rps = 4
    fake_cdn.ups = 60
    write_config(fake_config.read_text() + "rps = 4\nups = 60\nmax_batch = 20\n")
    r, _data = submit_json(run_cli, "-i", "-", input=as_input(urls(140)))
    assert r.returncode == 0, r.stderr
    assert fake_cdn.violations == []
    times = [q["t"] for q in fake_cdn.requests if q["path"] == "/v1/prefetch"]
    assert len(times) == 7
    # 140 URLs at 60 URLs/s cannot take less than ~1.3 s; a client that ignored pacing
    # would send everything in well under that.
    assert times[-1] - times[0] >= 1.2


def test_retries_on_throttling_and_5xx_honouring_retry_after(
    run_cli, fake_config, fake_cdn: FakeCdn
) -> None:
    # Without Retry-After the first backoff would be 0.5-1.0 s: shorter than 1.2 s.
    fake_cdn.fail_next("429", 2, retry_after=1.2)
    fake_cdn.fail_next("503", 1)
    r, data = submit_json(run_cli, *urls(10))
    assert r.returncode == 0, r.stderr
    assert data["accepted"] == 10
    prefetches = [q for q in fake_cdn.requests if q["path"] == "/v1/prefetch"]
    assert [q["status"] for q in prefetches] == [429, 429, 503, 200]
    gap = prefetches[1]["t"] - prefetches[0]["t"]
    # honoured: at least what the vendor asked; and not far beyond it (no backoff added)
    assert 1.2 <= gap < 1.2 + 2.0
    # a 503 to a submit may have been taken: looked up before the resend
    paths = [q["path"] for q in fake_cdn.requests if q["method"] == "POST"]
    assert paths[paths.index("/v1/prefetch", 2) + 1] == "/v1/lookup"
    assert fake_cdn.accepted_counts() == {u: 1 for u in urls(10)}


def test_rate_limited_beyond_retries_defers_exit_5(run_cli, fake_config, fake_cdn: FakeCdn) -> None:
    fake_cdn.fail_next("429", -1, retry_after=0.01)
    r, data = submit_json(run_cli, *urls(5))
    assert r.returncode == 5
    assert data["deferred"] == 5 and data["accepted"] == 0
    assert data["state"] == "incomplete"
    fake_cdn.clear_faults()
    r, data = submit_json(run_cli, "--resume", data["job_id"])
    assert r.returncode == 0, r.stderr
    assert data["accepted"] == 5


@pytest.mark.parametrize("fault", ["500", "drop_after"])
def test_unknown_outcome_is_looked_up_not_resent(
    run_cli, fake_config, fake_cdn: FakeCdn, fault: str
) -> None:
    fake_cdn.fail_next(fault, 1)
    r, data = submit_json(run_cli, *urls(120))
    assert r.returncode == 0, r.stderr
    assert data["accepted"] == 120
    counts = fake_cdn.accepted_counts()
    assert set(counts) == set(urls(120))
    assert max(counts.values()) == 1  # the batch the vendor took was never sent twice
    assert any(q["path"] == "/v1/lookup" for q in fake_cdn.requests)


def test_drop_before_accept_is_found_missing_and_resent(
    run_cli, fake_config, fake_cdn: FakeCdn
) -> None:
    fake_cdn.fail_next("drop_before", 1)
    r, _data = submit_json(run_cli, *urls(10))
    assert r.returncode == 0, r.stderr
    assert fake_cdn.accepted_counts() == {u: 1 for u in urls(10)}


def test_without_lookup_unknown_stays_unknown_until_force(
    run_cli, write_config, fake_config, fake_cdn: FakeCdn
) -> None:
    write_config(fake_config.read_text() + "lookup = false\n")
    fake_cdn.fail_next("500", 1)
    r, data = submit_json(run_cli, *urls(10))
    assert r.returncode == 4
    assert data["unknown"] == 10 and data["accepted"] == 0
    # Piped to a machine without the journal, status says --force is what resends them.
    piped = run_cli(
        "status", "-", "-o", "json", input=json.dumps(data),
        env_extra={"PREWARM_STATE_DIR": str(Path(fake_config).parent / "another-machine")},
    )  # fmt: skip
    assert "the 10 of unknown outcome only with --force" in piped.stderr
    # a plain resume does not resend what may have been accepted
    r, data2 = submit_json(run_cli, "--resume", data["job_id"])
    assert r.returncode == 4 and data2["unknown"] == 10
    assert len(fake_cdn.submits) == 1
    r, data3 = submit_json(run_cli, "--resume", data["job_id"], "--force")
    assert r.returncode == 0, r.stderr
    assert data3["accepted"] == 10 and len(fake_cdn.submits) == 2


def test_read_timeout_is_unknown_then_looked_up(
    run_cli, write_config, fake_config, fake_cdn: FakeCdn
) -> None:
    write_config(fake_config.read_text() + "timeout = 0.3\n")
    fake_cdn.slow_seconds = 1.0
    fake_cdn.fail_next("slow", 1)
    r, _data = submit_json(run_cli, *urls(5))
    assert r.returncode == 0, r.stderr
    assert fake_cdn.accepted_counts() == {u: 1 for u in urls(5)}


def test_quota_exhausted_defers_and_resume_sends_exactly_the_rest(
    run_cli, fake_config, fake_cdn: FakeCdn
) -> None:
    fake_cdn.daily_quota = 100
    items = urls(170)
    r, data = submit_json(run_cli, "-i", "-", input=as_input(items))
    assert r.returncode == 5, r.stderr
    # the quota is read before sending: exactly what fits is sent, the rest deferred
    assert data["accepted"] == 100 and data["deferred"] == 70
    assert data["state"] == "incomplete"
    assert all(q["status"] == 200 for q in fake_cdn.requests)  # no request was refused
    assert "--resume" in r.stderr
    fake_cdn.daily_quota = None  # a new day
    r, data2 = submit_json(run_cli, "--resume", data["job_id"])
    assert r.returncode == 0, r.stderr
    assert data2["job_id"] == data["job_id"]
    assert data2["accepted"] == 170 and data2["deferred"] == 0
    assert fake_cdn.accepted_counts() == {u: 1 for u in items}


def test_quota_running_out_mid_run_defers_the_rest(run_cli, fake_config, fake_cdn: FakeCdn) -> None:
    # the vendor's quota drops while we send (another tool spends it): refusals defer the rest
    import threading

    fake_cdn.daily_quota = 1000
    items = urls(300)
    first = fake_cdn.hold_next(items[0].rsplit("/", 1)[1])  # the run's first request

    def spend() -> None:  # once the run has read the quota and sent: 60 left, then
        if first.holding.wait(60):
            fake_cdn.daily_quota = 60
        fake_cdn.release_holds()

    spender = threading.Thread(target=spend, daemon=True)
    spender.start()
    r, data = submit_json(run_cli, "-i", "-", input=as_input(items))
    spender.join(60)
    assert first.answered.is_set()
    assert r.returncode == 5, r.stderr
    assert data["accepted"] + data["deferred"] == 300
    assert data["deferred"] >= 50  # the requests in flight when it ran out could still land
    assert "--resume" in r.stderr
    fake_cdn.daily_quota = None
    r, _data2 = submit_json(run_cli, "--resume", data["job_id"])
    assert r.returncode == 0, r.stderr
    assert fake_cdn.accepted_counts() == {u: 1 for u in urls(300)}


def test_invalid_request_rejects_named_urls_only(run_cli, fake_config, fake_cdn: FakeCdn) -> None:
    fake_cdn.fail_next("invalid", 1)
    r, data = submit_json(run_cli, *urls(6))
    assert r.returncode == 4
    assert [x["url"] for x in data["rejected"]] == [urls(6)[0]]
    assert data["rejected"][0]["reason"] == "malformed url"
    assert data["accepted"] == 5


def test_invalid_request_unnamed_is_found_by_splitting(
    run_cli, fake_config, fake_cdn: FakeCdn
) -> None:
    fake_cdn.fail_next("invalid_unnamed", -1)
    items = urls(16)
    items[11] = "https://static.example.com/poison.js"
    r, data = submit_json(run_cli, *items)
    assert r.returncode == 4
    assert [x["url"] for x in data["rejected"]] == ["https://static.example.com/poison.js"]
    assert data["accepted"] == 15
    assert fake_cdn.accepted_counts() == {u: 1 for u in items if "poison" not in u}


def test_batch_too_large_shrinks(run_cli, write_config, fake_config, fake_cdn: FakeCdn) -> None:
    fake_cdn.max_batch = 30  # the vendor lowered its limit below what the plugin declares
    r, data = submit_json(run_cli, *urls(100))
    assert r.returncode == 0, r.stderr
    assert data["accepted"] == 100
    assert all(len(s) <= 30 for s in fake_cdn.submits)
    assert fake_cdn.accepted_counts() == {u: 1 for u in urls(100)}


def test_a_url_refused_as_too_large_even_alone_fails_once(
    run_cli, fake_config, fake_cdn: FakeCdn
) -> None:
    fake_cdn.max_batch = 0  # the vendor refuses even one URL per request
    r, data = submit_json(run_cli, *urls(3))
    assert r.returncode == 1, r.stderr  # nothing accepted: the job failed as a whole
    assert sorted(x["url"] for x in data["failed"]) == urls(3)
    assert "refused even alone" in data["failed"][0]["reason"]
    sent = [q for q in fake_cdn.requests if q["path"] == "/v1/prefetch"]
    assert len(sent) == 4  # 3 URLs, then each alone, once


def test_a_batch_given_up_after_retries_among_accepted_ones_exits_4(
    cli_env, fake_config, fake_cdn: FakeCdn, monkeypatch
) -> None:
    import prewarm_fake

    from prewarm_cli.errors import RetryableError

    real = prewarm_fake.FakeProvider.submit_batch

    def submit_batch(self, batch_urls, options):
        if any("bad" in u for u in batch_urls):
            raise RetryableError("connection refused", provider=self.alias)
        return real(self, batch_urls, options)

    monkeypatch.setattr(prewarm_fake.FakeProvider, "submit_batch", submit_batch)
    items = urls(200)
    items[120] = "https://static.example.com/bad120.css"
    r = invoke("submit", "-o", "json", *items)
    data = json.loads(r.stdout)
    assert r.returncode == 4, r.stderr  # some targets failed; not the job as a whole
    assert data["state"] == "submitted" and data["accepted"] + len(data["failed"]) == 200
    assert all("gave up: connection refused" in x["reason"] for x in data["failed"])


def test_auth_error_exit_3_and_nothing_lost(run_cli, fake_config, fake_cdn: FakeCdn) -> None:
    r = run_cli("submit", *urls(5), env_extra={"FAKE_API_KEY": "wrong"})
    assert r.returncode == 3
    assert "invalid api key" in r.stderr
    jobs = json.loads(run_cli("jobs", "-o", "json").stdout)
    # Unsent, resumable with the right key: not sent, and not deferred (no quota ran out).
    assert jobs[0]["not_sent"] == 5 and jobs[0]["deferred"] == 0
    r, data = submit_json(run_cli, "--resume", jobs[0]["job_id"])
    assert r.returncode == 0 and data["accepted"] == 5


def test_dry_run_plans_and_sends_nothing(run_cli, write_config, fake_config, fake_cdn) -> None:
    fake_cdn.daily_quota = 60
    write_config(fake_config.read_text() + "rps = 2\n")
    r = run_cli("submit", "--dry-run", "-o", "json", "-i", "-", input=as_input(urls(120)))
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert plan["dry_run"] is True and plan["total"] == 120
    p = plan["providers"]["fake"]
    assert (p["urls"], p["batches"], p["requests"]) == (120, 3, 3)
    assert p["estimated_seconds"] == 1.5
    assert p["quota"]["remaining"] == 60 and p["would_defer"] == 60
    assert fake_cdn.submits == []
    assert json.loads(run_cli("jobs", "-o", "json").stdout) == []


def test_fan_out_to_several_providers_and_routes(
    run_cli, write_config, cli_env, fake_cdn: FakeCdn
) -> None:
    cli_env["FAKE_API_KEY"] = fake_cdn.api_key
    with FakeCdn() as other:
        write_config(
            f"""
[providers.a]
type = "fake"
endpoint = "{fake_cdn.url}"
[providers.b]
type = "fake"
endpoint = "{other.url}"
[[routes]]
hosts = ["img.example.com", "*.cdn.example.com"]
providers = ["b"]
[[routes]]
hosts = ["static.example.com"]
providers = ["a", "b"]
"""
        )
        r, data = submit_json(run_cli, "-p", "a", "-p", "b", *urls(3))
        assert r.returncode == 0, r.stderr
        assert data["urls"] == 3 and data["total"] == 6
        assert set(data["providers"]) == {"a", "b"}
        assert len(fake_cdn.submits) == len(other.submits) == 1

        routed = ["https://img.example.com/1.png", "https://x.cdn.example.com/2.png", *urls(2)]
        r, data = submit_json(run_cli, *routed)
        assert r.returncode == 0, r.stderr
        assert data["providers"]["a"]["total"] == 2 and data["providers"]["b"]["total"] == 4
        assert fake_cdn.submits[-1] == urls(2)

        r = run_cli("submit", "https://nowhere.example.org/x")
        assert r.returncode == 2
        assert "no provider covers host 'nowhere.example.org'" in r.stderr

        status = run_cli("status", "--wait", "--interval", "0.2", "-o", "json")
        assert status.returncode == 0, status.stderr
        st = json.loads(status.stdout)
        assert st["state"] == "succeeded" and st["succeeded"] == st["total"] == 6
        assert set(st["providers"]) == {"a", "b"}


def test_status_wait_report_and_exit_codes(run_cli, fake_config, fake_cdn: FakeCdn) -> None:
    fake_cdn.task_seconds = 2.0  # long enough to see it running, whatever the machine's load
    items = [*urls(4), "https://static.example.com/fail-this.js"]
    r, data = submit_json(run_cli, *items)
    assert r.returncode == 0
    r = run_cli("status", data["job_id"], "-o", "json")
    assert r.returncode == 0  # still running: 0
    assert json.loads(r.stdout)["state"] in ("pending", "running")
    r = run_cli("status", data["job_id"], "--wait", "--interval", "0.1", "-o", "json")
    st = json.loads(r.stdout)
    assert r.returncode == 4 and st["state"] == "partial"
    assert (st["total"], st["succeeded"], st["failed"]) == (5, 4, 1)
    assert st["raw_state"] == "DONE"
    r = run_cli("report", "-o", "ndjson")
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert r.returncode == 4
    assert lines == [
        {
            "url": "https://static.example.com/fail-this.js",
            "pop": "FAKE-POP-1",
            "reason": "origin returned 404",
            "provider": "fake",
            "stage": "vendor",
        }
    ]
    jobs = json.loads(run_cli("jobs", "-o", "json").stdout)
    assert jobs[0]["job_id"] == data["job_id"] and jobs[0]["state"] == "partial"


def test_status_by_vendor_task_id_without_journal(run_cli, fake_config, fake_cdn, cli_env) -> None:
    r, data = submit_json(run_cli, *urls(3))
    task = data["tasks"][0]["task_id"]
    # a fresh CI container: no local state at all
    fresh = {"PREWARM_STATE_DIR": str(Path(cli_env["PREWARM_STATE_DIR"]).parent / "fresh")}
    r = run_cli(
        "status", f"fake:{task}", "--wait", "--interval", "0.1", "-o", "json", env_extra=fresh
    )
    assert r.returncode == 0, r.stderr
    st = json.loads(r.stdout)
    assert st["job_id"] is None and st["state"] == "succeeded" and st["succeeded"] == 3


def test_submit_json_piped_into_status_wait(fake_config, fake_cdn, cli_env, tmp_path) -> None:
    # the documented pipeline, through a real shell pipe
    cmd = (
        f"{sys.executable} -m prewarm_cli submit -o json {' '.join(urls(3))}"
        f" | {sys.executable} -m prewarm_cli status --wait --interval 0.1 -"
    )
    r = subprocess.run(
        cmd, shell=True, env=cli_env, capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["state"] == "succeeded"


def test_a_wait_polls_again_after_a_poll_the_vendor_failed(
    run_cli, write_config, fake_config, fake_cdn
) -> None:
    """A status endpoint answering 503 for a while (each poll retried within the policy)
    ended the wait with exit 1 after its first failed poll."""
    write_config(fake_config.read_text().replace("retries = 4", "retries = 1"))
    fake_cdn.task_seconds = 0.5
    job = json.loads(run_cli("submit", "-o", "json", *urls(2)).stdout)["job_id"]
    fake_cdn.fail_next("503", 4, path="/v1/tasks/")  # a few polls fail
    r = run_cli("status", job, "--wait", "--interval", "0.1", "--wait-timeout", "60", "-o", "json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["state"] == "succeeded"
    assert "a poll failed: GET /v1/tasks/" in r.stderr and "polling again in" in r.stderr


def test_a_submit_that_deferred_targets_exits_5_though_its_wait_then_failed(
    run_cli, write_config, fake_config, fake_cdn
) -> None:
    """DESIGN §6: 5 comes before 1. The wait's error (a status endpoint down throughout)
    took the exit code, and the --resume the deferred targets need went unsaid by it."""
    write_config(fake_config.read_text().replace("retries = 4", "retries = 1"))
    fake_cdn.daily_quota = 1
    fake_cdn.fail_next("503", -1, path="/v1/tasks/")
    r = run_cli("submit", "-o", "json", "--wait", "--wait-timeout", "1", *urls(2))
    assert r.returncode == 5, r.stderr
    assert json.loads(r.stdout)["error"]["code"] == "retryable"
    assert "1 URL deferred" in r.stderr


def test_a_submit_whose_wait_timed_out_piped_into_status_wait_is_waited_for(
    run_cli, fake_config, fake_cdn
) -> None:
    """Its piped error was replayed: the wait timed out again at once (exit 6), the job
    unwaited for; a piped error that left no job here is still said as it came."""
    fake_cdn.task_seconds = 1.0
    r = run_cli("submit", "-o", "json", "--wait", "--wait-timeout", "0.1", *urls(2))
    assert r.returncode == 6, r.stderr
    piped = r.stdout
    assert json.loads(piped)["error"]["code"] == "wait_timeout"
    r = run_cli("status", "--wait", "--interval", "0.1", "-o", "json", "-", input=piped)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["state"] == "succeeded"
    elsewhere = piped.replace(json.loads(piped)["error"]["job_id"], "01JOBOFANOTHERMACHINE00000")
    r = run_cli("status", "--wait", "-o", "json", "-", input=elsewhere)
    assert r.returncode == 6 and json.loads(r.stdout)["error"]["code"] == "wait_timeout"


@pytest.mark.skipif(
    not any(
        os.access(os.path.join(p, "jq"), os.X_OK)
        for p in os.environ.get("PATH", "").split(os.pathsep)
    ),
    reason="jq is not installed",
)
def test_json_output_works_with_jq(fake_config, fake_cdn, cli_env, tmp_path) -> None:
    cmd = f"{sys.executable} -m prewarm_cli submit {' '.join(urls(7))} | jq -r '.accepted'"
    r = subprocess.run(
        cmd, shell=True, env=cli_env, capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "7"


def test_wait_timeout_exit_6(run_cli, fake_config, fake_cdn: FakeCdn) -> None:
    fake_cdn.task_seconds = 30
    r, _data = submit_json(run_cli, *urls(2))
    r = run_cli("status", "--wait", "--interval", "0.1", "--wait-timeout", "0.4")
    assert r.returncode == 6
    assert "still" in r.stderr


def _journal_outcomes(state_dir: Path, job_id: str) -> dict[str, int]:
    db = sqlite3.connect(state_dir / "journal.sqlite3")
    rows = db.execute(
        "SELECT outcome, COUNT(*) FROM targets WHERE job_id = ? GROUP BY outcome", (job_id,)
    ).fetchall()
    db.close()
    return dict(rows)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM])
def test_killed_run_resumes_exactly_what_was_not_accepted(
    fake_config, fake_cdn: FakeCdn, cli_env, tmp_path, run_cli, sig
) -> None:
    items = urls(400)
    # The kill lands while a request is in flight: the vendor holds one, mid-run, until then.
    hold = fake_cdn.hold_next(items[150].rsplit("/", 1)[1])
    listing = tmp_path / "urls.txt"
    listing.write_text(as_input(items))
    proc = subprocess.Popen(
        [sys.executable, "-m", "prewarm_cli", "submit", "-o", "json", "-i", str(listing)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env,
        cwd=tmp_path,
    )
    try:
        assert hold.holding.wait(60), "the run never sent the held request"
        proc.send_signal(sig)
        _out, err = proc.communicate(timeout=30)
    finally:
        fake_cdn.release_holds()  # answered now, after the run stopped: taken all the same
    assert proc.returncode in (-signal.SIGKILL, 130), err
    if sig != signal.SIGKILL:  # stopped as by Ctrl-C: SIGTERM too (a CI job's time limit)
        assert "--resume" in err
    jobs = json.loads(run_cli("jobs", "-o", "json").stdout)
    job_id = jobs[0]["job_id"]
    outcomes = _journal_outcomes(Path(cli_env["PREWARM_STATE_DIR"]), job_id)
    assert sum(outcomes.values()) == 400  # every URL is in the journal, none lost
    assert outcomes.get("accepted", 0) < 400

    assert hold.answered.wait(30)  # the vendor took the held batch: --resume must find it
    r, data = submit_json(run_cli, "--resume", job_id)
    assert r.returncode == 0, r.stderr
    assert data["accepted"] == 400
    assert fake_cdn.accepted_counts() == {u: 1 for u in items}  # nothing sent twice


@pytest.mark.parametrize(
    ("ignored", "signals"),
    [
        (False, [signal.SIGTERM]),
        (True, [signal.SIGTERM]),
        (False, [signal.SIGINT, signal.SIGTERM]),  # a CI runner's cancel: both, at once
    ],
)
def test_sigterm_while_reading_stdin_leaves_no_empty_job(
    fake_config, cli_env, tmp_path, run_cli, ignored: bool, signals: list[signal.Signals]
) -> None:
    # A CI job's time limit sends SIGTERM: it stops as Ctrl-C does (exit 130, the error in
    # the JSON), and the job made before reading the input is not left behind empty. Where
    # the parent set SIGTERM aside (ignored), it stays so: the run reads on.
    journal = Path(cli_env["PREWARM_STATE_DIR"]) / "journal.sqlite3"

    def job_made() -> bool:
        if not journal.exists():
            return False
        db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
        try:
            return bool(db.execute("SELECT count(*) FROM jobs").fetchone()[0])
        except sqlite3.OperationalError:  # the schema is still being made
            return False
        finally:
            db.close()

    proc = subprocess.Popen(
        [sys.executable, "-m", "prewarm_cli", "submit", "-p", "direct", "-i", "-", "-o", "json"],
        env=cli_env,
        cwd=tmp_path,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=(lambda: signal.signal(signal.SIGTERM, signal.SIG_IGN)) if ignored else None,
    )
    try:
        wait_for(lambda: job_made() or proc.poll() is not None, 30)
        assert proc.poll() is None, proc.communicate()
        for sig in signals:
            proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)  # stdin closed: an empty input if it reads on
    finally:
        if proc.poll() is None:
            proc.kill()
    if ignored:
        assert proc.returncode == 2 and "no URLs to send" in out
        return
    assert proc.returncode == 130, err
    assert json.loads(out)["error"]["code"] == "interrupted"
    assert err.strip().splitlines() == ["interrupted"]  # one word: no second stop, no trace
    assert json.loads(run_cli("jobs", "-o", "json").stdout) == []


def test_batches_never_hold_more_urls_than_a_second_allows(
    run_cli, fake_config: Path, fake_cdn: FakeCdn
) -> None:
    """A batch larger than the per-second URL rate breaks the vendor's window by itself,
    however it is paced: batches are cut to the rate (the fake's batch is 50, its rate 20)."""
    fake_cdn.ups = 20
    fake_config.write_text(fake_config.read_text() + "ups = 20\n")
    r = run_cli("submit", "-o", "json", *(f"https://static.example.com/u{i}.js" for i in range(45)))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["accepted"] == 45
    assert "batches of 20 URLs, the vendor's rate of 20 URLs/s" in r.stderr
    sizes = [q["urls"] for q in fake_cdn.requests if q["path"] == "/v1/prefetch"]
    assert sorted(sizes) == [5, 20, 20]  # workers send side by side: in any order
    assert fake_cdn.violations == []


def test_status_reads_each_url_s_claim_only_for_verify(
    fake_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What the vendors say of each URL reads every accepted target of the job (a million):
    # only --verify needs it, not a status or a wait.
    from prewarm_cli.engine import status as engine_status

    r = invoke("submit", "-o", "json", "https://a.example.com/1", "https://a.example.com/2")
    assert r.returncode == 0, r.stderr
    job = json.loads(r.stdout)["job_id"]
    read: list[str] = []
    claims = engine_status.url_claims

    def counting(*args: object, **kwargs: object) -> dict[str, str]:
        read.append("claims")
        return claims(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(engine_status, "url_claims", counting)
    for args in (("status", job), ("status", "--wait", "--interval", "0.1", job)):
        assert invoke(*args, "-o", "json").returncode == 0
    assert read == []
    invoke("status", job, "--verify", "-o", "json")
    assert read == ["claims"]


def test_a_job_whose_run_was_killed_is_listed_incomplete_once_asked(
    fake_config: Path, cli_env: dict[str, str]
) -> None:
    # kill -9 leaves the job `submitting` in the journal; once `status` finds that no process
    # sends it, `jobs` says incomplete too (it said submitting for ever).
    journal, job = _journaled_job(cli_env, JobState.SUBMITTING)  # as a killed run leaves it
    journal.close()
    r = invoke("status", job, "-o", "json")
    assert json.loads(r.stdout)["state"] == "incomplete", r.stderr
    (listed,) = json.loads(invoke("jobs", "-o", "json").stdout)
    assert listed["state"] == "incomplete"


def test_jobs_prune_deletes_old_jobs_with_nothing_left_to_resume(
    fake_config: Path, cli_env: dict[str, str]
) -> None:
    # The journal keeps every job until pruned: a finished job unchanged for DAYS days goes,
    # a recent one and one with targets left to resume stay, whatever their age.
    from prewarm_cli import journal as jr

    old_done, recent = (
        json.loads(invoke("submit", "-o", "json", f"https://a.example.com/{n}").stdout)["job_id"]
        for n in ("old", "recent")
    )
    state_dir = Path(cli_env["PREWARM_STATE_DIR"])
    journal, left = _journaled_job(cli_env, JobState.INCOMPLETE)
    journal.close()
    with sqlite3.connect(state_dir / "journal.sqlite3") as db:
        db.execute(
            "UPDATE jobs SET updated_at = '2000-01-01T00:00:00.000000Z' WHERE id IN (?, ?)",
            (old_done, left),
        )
    r = invoke("jobs", "--prune", "30", "-o", "json")
    assert r.returncode == 0, r.stderr
    assert {j["job_id"] for j in json.loads(r.stdout)} == {recent, left}
    assert "deleted 1 job unchanged for 30 days" in r.stderr
    assert invoke("status", old_done).returncode == 2  # gone from the journal
    r = invoke("jobs", "--prune", "0", "-o", "json")  # now: only what may not be resumed
    assert {j["job_id"] for j in json.loads(r.stdout)} == {left}
    assert not (state_dir / "direct.sqlite3").exists()  # no record made where none was

    # A job whose input was never read to its end cannot be resumed: it goes; one a live
    # process holds (reading its input, sending) stays, whatever it looks like.
    from prewarm_cli.engine.lock import JobLock

    journal = jr.Journal.in_state_dir(state_dir)
    cut_short, live = (journal.create_job(["fake"], {}) for _ in range(2))
    for job in (cut_short, live):
        journal.add_targets(job, [(0, f"https://a.example.com/{job}", ["fake"])])
    journal.close()
    with JobLock(state_dir, live):
        r = invoke("jobs", "--prune", "0", "-o", "json")
    assert {j["job_id"] for j in json.loads(r.stdout)} == {left, live}


def test_a_resume_that_begins_while_status_asks_keeps_its_job_submitting(
    fake_config: Path, cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # status found no process sending the killed job; a --resume took it while the vendors
    # were asked: the job it now sends is not marked incomplete under it.
    from prewarm_cli.engine import lock

    journal, job = _journaled_job(cli_env, JobState.SUBMITTING)
    answers = iter([None, "4242"])  # nobody when status begins; the resume when it records
    monkeypatch.setattr(lock.JobLock, "holder", lambda self: next(answers, "4242"))
    r = invoke("status", job, "-o", "json")
    assert json.loads(r.stdout)["state"] == "incomplete", r.stderr
    assert journal.job(job).state == JobState.SUBMITTING

    # The resume wrote its state between status's reading of the job and its second look
    # at the lock, which it has already let go of: the row changed, so it is left alone.
    looks = iter([False, True])

    def resumed_meanwhile(self: object) -> None:
        if next(looks, False):
            journal.set_state(job, JobState.SUBMITTING)  # a --resume's first write

    monkeypatch.setattr(lock.JobLock, "holder", resumed_meanwhile)
    invoke("status", job, "-o", "json")
    assert journal.job(job).state == JobState.SUBMITTING
    journal.close()


def _journaled_job(cli_env: dict[str, str], state: str) -> tuple[Any, str]:
    """A job of one unsent URL for "fake", written to the journal as a run would leave it
    in ``state``; the journal stays open for the caller."""
    from prewarm_cli import journal as jr

    state_dir = Path(cli_env["PREWARM_STATE_DIR"])
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    journal = jr.Journal.in_state_dir(state_dir)
    job = journal.create_job(["fake"], {})
    journal.add_targets(job, [(0, f"https://a.example.com/{state}", ["fake"])])
    journal.finish_intake(job, [])
    journal.set_state(job, state)
    return journal, job


def test_a_dry_run_memory_stays_flat_in_the_number_of_urls(
    cli_env: dict[str, str], write_config: Any, tmp_path: Path
) -> None:
    write_config("")  # direct warming, with no provider configured

    def peak(n_urls: int) -> int:
        listing = tmp_path / f"{n_urls}.txt"
        listing.write_text(
            "".join(f"https://static.example.com/c-{i:07d}.js\n" for i in range(n_urls))
        )
        args = ("submit", "-p", "direct", "--dry-run", "-o", "json", "-i", str(listing))
        return peak_rss_kib(cli_env, tmp_path, *args)

    small, large = peak(10_000), peak(200_000)
    # The plan reads the first batch and counts the requests from the journal on disk: the
    # 190,000 more rows sorted in memory would be 25 MiB and more.
    assert large - small < 8 * 1024, f"{small} KiB for 10,000 URLs, {large} KiB for 200,000"


@pytest.mark.parametrize(
    ("piped", "hint"),
    [
        ("job 01ABC: submitted\n provider  targets\n", "pipe `prewarm submit -o json` into it"),
        ('{"record": "submit"}\n{"record": "task"}\n', "(-o ndjson is a line per record)"),
    ],
)
def test_status_dash_says_what_to_pipe_into_it(cli_env, piped: str, hint: str) -> None:
    r = invoke("status", "-", input=piped)
    assert r.returncode == 2
    assert "stdin is not a prewarm submit JSON" in r.stderr and hint in r.stderr, r.stderr
