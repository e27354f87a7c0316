"""More of the engine through the CLI: invalidation, budgets across runs and processes, cancel."""

from __future__ import annotations

import json
import subprocess
import sys

import helpers
import pytest
from fakes.generic import FakeCdn


def urls(n: int, prefix: str = "https://static.example.com/e") -> list[str]:
    return helpers.urls(n, prefix, ".css")


def test_invalidate_purges_first_and_skips_urls_whose_purge_failed(
    run_cli, fake_config, fake_cdn: FakeCdn
) -> None:
    fake_cdn.task_seconds = 0.2
    items = [*urls(4), "https://static.example.com/purgefail.css"]
    r = run_cli("submit", "--invalidate", "-o", "json", *items)
    data = json.loads(r.stdout)
    assert r.returncode == 4, r.stderr
    paths = [q["path"] for q in fake_cdn.requests]
    first_prefetch = paths.index("/v1/prefetch")
    assert paths.index("/v1/purge") < first_prefetch
    assert any(p.startswith("/v1/purges/") for p in paths[:first_prefetch])  # waited for it
    assert data["accepted"] == 4
    assert data["failed"] == [
        {
            "url": "https://static.example.com/purgefail.css",
            "provider": "fake",
            "reason": "purge failed: purge refused",
        }
    ]
    assert "https://static.example.com/purgefail.css" not in fake_cdn.accepted_urls()
    # the plan says so too
    plan = json.loads(run_cli("submit", "--dry-run", "--invalidate", *urls(3)).stdout)
    assert plan["providers"]["fake"]["invalidate"] is True
    assert plan["providers"]["fake"]["requests"] == 2


def test_a_url_a_purge_answered_as_failed_is_not_prefetched(
    cli_env, fake_config, fake_cdn: FakeCdn, monkeypatch
) -> None:
    """A provider may answer some URLs of a purge as failed (BatchResult.failed)."""
    from dataclasses import replace

    import prewarm_fake

    real = prewarm_fake.FakeProvider.invalidate_batch

    def invalidate_batch(self, batch_urls, options):
        result = real(self, batch_urls, options)
        failed = {u: "edge unreachable" for u in batch_urls if "purgeflaky" in u}
        accepted = tuple(u for u in result.accepted if u not in failed)
        return replace(result, accepted=accepted, failed=failed)

    monkeypatch.setattr(prewarm_fake.FakeProvider, "invalidate_batch", invalidate_batch)
    flaky = "https://static.example.com/purgeflaky.css"
    r = helpers.invoke("submit", "--invalidate", "-o", "json", *urls(3), flaky)
    data = json.loads(r.stdout)
    assert r.returncode == 4, r.stderr
    assert data["accepted"] == 3
    assert [x["url"] for x in data["failed"]] == [flaky]
    assert flaky not in fake_cdn.accepted_urls()  # a late purge would evict the warm copy


def test_daily_request_budget_is_counted_across_runs(
    run_cli, write_config, fake_config, fake_cdn: FakeCdn
) -> None:
    write_config(fake_config.read_text() + "per_day = 3\nmax_batch = 10\n")
    r = run_cli("submit", "-o", "json", *urls(25))
    data = json.loads(r.stdout)
    # the quota lookup is a request too: 1 lookup + 2 batches, then the budget is gone
    assert r.returncode == 5, r.stderr
    prefetches = [q for q in fake_cdn.requests if q["path"] == "/v1/prefetch"]
    assert len(prefetches) == 2  # which two of the three batches won is up to the workers
    assert data["accepted"] == sum(q["urls"] for q in prefetches)
    assert data["accepted"] + data["deferred"] == 25
    assert "daily budget of 3 requests" in r.stderr
    sent = len(fake_cdn.requests)
    # a second run the same day: nothing is sent at all
    r = run_cli("submit", "-o", "json", *urls(5, "https://static.example.com/other"))
    assert r.returncode == 5
    assert json.loads(r.stdout)["deferred"] == 5
    assert len(fake_cdn.requests) == sent


def test_concurrent_processes_share_one_rate_limit(
    write_config, fake_config, fake_cdn: FakeCdn, cli_env, tmp_path
) -> None:
    fake_cdn.rps = 5
    write_config(fake_config.read_text() + "rps = 5\nmax_batch = 5\n")
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "prewarm_cli", "submit", "-o", "json",
             *urls(30, f"https://static.example.com/p{n}-")],
            env=cli_env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for n in range(2)
    ]  # fmt: skip
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert json.loads(out)["accepted"] == 30
    # 2 x (1 quota lookup + 6 batches) at 5/s: a limiter per process would have sent 10/s
    assert fake_cdn.violations == []
    times = sorted(q["t"] for q in fake_cdn.requests if q["path"] == "/v1/prefetch")
    assert len(times) == 12 and times[-1] - times[0] >= 1.5


def test_cancel_and_quota_commands(run_cli, fake_config, fake_cdn: FakeCdn) -> None:
    fake_cdn.task_seconds = 30
    fake_cdn.daily_quota = 1000
    data = json.loads(run_cli("submit", *urls(3)).stdout)
    r = run_cli("cancel", data["job_id"], "-o", "json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)[0]["provider"] == "fake"
    r = run_cli("status", data["job_id"], "-o", "json")
    assert r.returncode == 4 and json.loads(r.stdout)["state"] == "cancelled"
    # As a terminal shows it (a table per provider): it said "unexpected AttributeError".
    second = json.loads(run_cli("submit", *urls(3, "https://static.example.com/second")).stdout)
    r = run_cli("cancel", second["job_id"], "-o", "table")
    assert r.returncode == 0 and "unexpected" not in r.stderr, r.stderr
    assert "fake" in r.stdout and "CANCELLED" in r.stdout
    q = json.loads(run_cli("quota", "-o", "json").stdout)
    assert q == [
        {
            "provider": "fake",
            "type": "fake",
            "daily": 1000,
            "remaining": 994,
            "resets_at": None,
            "batch": None,
            "source": "api",
            "details": {},
        }
    ]


def job_of_two_aliases(
    run_cli, write_config, fake_config, fake_cdn: FakeCdn, alias: str, endpoint: str, extra=""
) -> tuple[str, str]:
    """A job of one URL sent to "fake" (a task of 30 s) and to ``alias`` at ``endpoint``
    (``extra``: more of its table): the job, and the fake's task."""
    write_config(
        fake_config.read_text()
        + f'[providers.{alias}]\ntype = "fake"\nendpoint = "{endpoint}"\n'
        + 'api_key = "env:FAKE_API_KEY"\n'
        + extra
    )
    fake_cdn.task_seconds = 30
    data = json.loads(run_cli("submit", "-p", "fake", "-p", alias, *urls(1)).stdout)
    (task,) = [t["task_id"] for t in data["tasks"] if t["provider"] == "fake"]
    return data["job_id"], task


def test_cancel_asks_every_provider_of_the_job_though_one_refuses(
    run_cli, write_config, fake_config, fake_cdn: FakeCdn
) -> None:
    """One provider's task had finished (the vendor refuses its cancel): the others' tasks
    were left running, and the answer said nothing of them."""
    with FakeCdn(api_key=fake_cdn.api_key, task_seconds=0.0) as quick:
        job, task = job_of_two_aliases(run_cli, write_config, fake_config, fake_cdn, "a-quick",
                                       quick.url)  # fmt: skip
        r = run_cli("cancel", job, "-o", "json")
        assert r.returncode == 2, r.stderr  # the refusal's code
        answers = {a["provider"]: a for a in json.loads(r.stdout)}
        assert answers.keys() == {"fake", "a-quick"}
        assert answers["a-quick"]["error"]["code"] == "usage"
        assert "already finished" in answers["a-quick"]["error"]["message"]
        assert "error" not in answers["fake"]
        assert fake_cdn.tasks[task].cancelled_at is not None
        assert "a-quick: task" in r.stderr and "already finished" in r.stderr


def test_cancel_of_a_job_one_of_whose_providers_cannot_cancel_stops_nothing(
    run_cli, write_config, fake_config, fake_cdn: FakeCdn
) -> None:
    # Routed to the fake CDN and to one that cannot cancel: refused before the fake CDN's
    # task is stopped, with the command that cancels that one alone.
    job, task = job_of_two_aliases(
        run_cli, write_config, fake_config, fake_cdn, "stuck", fake_cdn.url, "cancel = false\n"
    )
    r = run_cli("cancel", job, "-o", "json")
    assert r.returncode == 2, r.stderr
    error = json.loads(r.stdout)["error"]
    assert error["code"] == "unsupported" and "nothing was cancelled" in error["message"]
    assert f"prewarm cancel fake:{task}" in error["hint"]
    assert all(t.cancelled_at is None for t in fake_cdn.tasks.values())
    r = run_cli("cancel", f"fake:{task}", "-o", "json")
    assert r.returncode == 0, r.stderr
    assert fake_cdn.tasks[task].cancelled_at is not None


def test_cancel_of_a_job_also_warmed_directly_stops_the_vendors_tasks(
    run_cli, fake_config, fake_cdn: FakeCdn
) -> None:
    # Direct warming cannot cancel, but its part ended with the submit: nothing to stop.
    fake_cdn.task_seconds = 30
    url = f"{fake_cdn.url}/warm-me.js"
    data = json.loads(run_cli("submit", "-p", "fake", "-p", "direct", url).stdout)
    (task,) = [t["task_id"] for t in data["tasks"] if t["provider"] == "fake"]
    r = run_cli("cancel", data["job_id"], "-o", "json")
    assert r.returncode == 0, r.stderr
    assert [c["provider"] for c in json.loads(r.stdout)] == ["fake"]
    assert fake_cdn.tasks[task].cancelled_at is not None
    # A job warmed directly alone has nothing another provider can stop: direct says it
    # cannot cancel, and the job keeps its state.
    data = json.loads(run_cli("submit", "-p", "direct", url).stdout)
    (before, *_) = json.loads(run_cli("jobs", "-o", "json").stdout)
    r = run_cli("cancel", data["job_id"], "-o", "json")
    assert r.returncode == 2 and json.loads(r.stdout)["error"]["code"] == "unsupported"
    (after, *_) = json.loads(run_cli("jobs", "-o", "json").stdout)
    assert after["job_id"] == data["job_id"] and after["state"] == before["state"] != "cancelled"


def test_status_of_a_piped_submit_counts_each_providers_targets_as_the_submit_did(
    run_cli, write_config, fake_config, fake_cdn: FakeCdn, tmp_path
) -> None:
    # A CI machine with no journal and only the alias that made tasks: the other provider's
    # deferred targets are its own (they went to neither, or to the wrong one), and it is
    # not asked for anything, so its alias need not exist there.
    config = fake_config.read_text()
    write_config(
        config.replace('provider = "fake"\n', "")
        + f'[providers.other]\ntype = "fake"\nendpoint = "{fake_cdn.url}"\n'
        + 'api_key = "env:FAKE_API_KEY"\n'
        + '[[routes]]\nhosts = ["a.example.com"]\nproviders = ["fake"]\n'
        + '[[routes]]\nhosts = ["b.example.com"]\nproviders = ["other"]\n'
    )
    fake_cdn.fail_next("429", -1, retry_after=600, urls_with="b.example.com")
    items = [*urls(2, "https://a.example.com/x"), *urls(3, "https://b.example.com/y")]
    r = run_cli("submit", "-o", "json", *items)
    data = json.loads(r.stdout)
    assert r.returncode == 5, r.stderr
    assert data["providers"]["other"]["deferred"] == 3
    elsewhere = tmp_path / "ci-machine"
    elsewhere.mkdir()
    (elsewhere / "config.toml").write_text(config)  # `fake` alone
    (elsewhere / "config.toml").chmod(0o600)
    r = run_cli(
        "status", "--wait", "--interval", "0.2", "-", "-o", "json",
        input=r.stdout,
        env_extra={
            "PREWARM_STATE_DIR": str(elsewhere / "state"),
            "PREWARM_CONFIG": str(elsewhere / "config.toml"),
        },
    )  # fmt: skip
    assert r.returncode == 5, r.stderr
    st = json.loads(r.stdout)
    assert (st["state"], st["total"], st["not_sent"]) == ("incomplete", 5, 3)
    assert (st["providers"]["fake"]["succeeded"], st["providers"]["fake"]["total"]) == (2, 2)
    other = st["providers"]["other"]
    assert (other["not_sent"], other["total"], other["tasks"]) == (3, 3, [])


def test_an_error_while_waiting_names_the_job_in_its_json(
    run_cli, write_config, fake_config, fake_cdn: FakeCdn
) -> None:
    write_config(fake_config.read_text().replace("retry_timeout = 10", "retry_timeout = 1"))
    fake_cdn.fail_next("503", -1, path="/v1/tasks/")  # every status poll
    r = run_cli("submit", "--wait", "-o", "json", *urls(2))
    assert r.returncode not in (0, 6), r.stderr
    error = json.loads(r.stdout)["error"]
    (job,) = json.loads(run_cli("jobs", "-o", "json").stdout)
    assert error["job_id"] == job["job_id"]


def test_wait_timeout_0_waits_without_the_configured_limit(
    run_cli, write_config, fake_config, fake_cdn: FakeCdn, cli_env, tmp_path
) -> None:
    write_config(
        fake_config.read_text().replace("[providers.fake]", "wait_timeout = 1\n\n[providers.fake]")
    )
    fake_cdn.task_seconds = 3600  # runs until the test ends it
    job_id = json.loads(run_cli("submit", *urls(1)).stdout)["job_id"]
    r = run_cli("status", job_id, "--wait", "--interval", "0.2", "-o", "json")
    assert r.returncode == 6, r.stderr  # the config's limit

    def polls() -> int:
        return sum(1 for q in fake_cdn.requests if q["path"].startswith("/v1/tasks/"))

    before = polls()
    proc = helpers.popen(
        cli_env, tmp_path, "status", job_id, "--wait", "--interval", "0.2",
        "--wait-timeout", "0", "-o", "json",
    )  # fmt: skip
    try:
        # Waiting past the config's second: polled again after it, then the task ends.
        helpers.wait_for(lambda: polls() > before + 7 or proc.poll() is not None, 60)
        fake_cdn.task_seconds = 0
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert json.loads(out)["state"] == "succeeded"


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_a_wait_in_the_config_is_a_finite_number(
    run_cli, write_config, fake_config, value: str
) -> None:
    write_config(
        fake_config.read_text().replace("retries = 4", f"retries = 4\nwait_timeout = {value}")
    )
    r = run_cli("config", "check", "-o", "json")
    assert r.returncode == 3
    assert f"defaults.wait_timeout: must be a finite number, got {value}" in r.stderr


def test_status_of_a_piped_ndjson_submit_says_to_pipe_json(
    run_cli, fake_config, fake_cdn: FakeCdn
) -> None:
    piped = run_cli("submit", *urls(2), "-o", "ndjson").stdout
    r = run_cli("status", "-", "-o", "json", input=piped)
    assert r.returncode == 2, r.stderr
    assert "pipe `prewarm submit -o json` into it" in json.loads(r.stdout)["error"]["hint"]


def test_interval_below_the_polling_budget_is_raised(
    run_cli, write_config, fake_config, fake_cdn: FakeCdn
) -> None:
    write_config(fake_config.read_text() + "poll_interval = 0.5\n")
    data = json.loads(run_cli("submit", *urls(2)).stdout)
    r = run_cli("status", data["job_id"], "--wait", "--interval", "0.05")
    assert r.returncode == 0, r.stderr
    assert "below the provider's polling budget; using 0.5s" in r.stderr
    polls = [q for q in fake_cdn.requests if q["path"].startswith("/v1/tasks/")]
    assert len(polls) <= 3  # 0.3 s of task time at 0.5 s intervals, not 0.05 s


def test_one_job_at_a_time_refuses_a_second_job_while_the_first_runs(
    run_cli, write_config, cli_env, fake_cdn: FakeCdn, tmp_path
) -> None:
    import os

    plugin = tmp_path / "plugins-single"
    (plugin / "prewarm_single").mkdir(parents=True)
    (plugin / "prewarm_single" / "__init__.py").write_text(
        "from prewarm_fake import FakeProvider\n"
        "class SingleProvider(FakeProvider):\n"
        "    name = 'single'\n"
        "    submit_options = ()\n"
        "    one_job_at_a_time = True\n"
    )
    dist = plugin / "prewarm_single-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: prewarm-single\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[prewarm.providers]\nsingle = prewarm_single:SingleProvider\n"
    )
    cli_env["PYTHONPATH"] = f"{plugin}{os.pathsep}{cli_env['PYTHONPATH']}"
    cli_env["FAKE_API_KEY"] = fake_cdn.api_key
    write_config(f'[providers.stack]\ntype = "single"\nendpoint = "{fake_cdn.url}"\n')
    fake_cdn.task_seconds = 1.0
    first = json.loads(run_cli("submit", *urls(2)).stdout)
    r = run_cli("submit", *urls(2, "https://static.example.com/second"))
    assert r.returncode == 2
    assert f"job {first['job_id']} is still" in r.stderr and "--force" in r.stderr
    assert json.loads(r.stdout)["error"]["code"] == "busy"
    assert len(json.loads(run_cli("jobs", "-o", "json").stdout)) == 1  # nothing recorded
    forced = run_cli("submit", "--force", *urls(2, "https://static.example.com/third"))
    assert forced.returncode == 0, forced.stderr
    run_cli("status", "--wait", "--interval", "0.2", first["job_id"])
    r = run_cli("submit", *urls(2, "https://static.example.com/fourth"))
    assert r.returncode in (0, 2)  # the forced job may still run; the first one no longer blocks
    assert f"job {first['job_id']}" not in r.stderr


@pytest.mark.parametrize(
    ("other", "said", "code"),
    [
        # Its secret's variable is not set here: it cannot be configured.
        ('endpoint = "https://x.example"\napi_key = "env:UNSET_SECRET_VAR"\n', "UNSET", "config"),
        # Its vendor refuses its key: that hid every other alias's row.
        ('endpoint = "{fake}"\napi_key = "not-the-key"\n', "invalid api key", "auth"),
    ],
)
def test_quota_without_p_skips_an_alias_it_cannot_ask_and_shows_the_others(
    run_cli, write_config, fake_cdn: FakeCdn, cli_env, other: str, said: str, code: str
) -> None:
    cli_env["FAKE_API_KEY"] = fake_cdn.api_key
    fake_cdn.daily_quota = 50
    write_config(
        f'[providers.good]\ntype = "fake"\nendpoint = "{fake_cdn.url}"\n'
        '[providers.other]\ntype = "fake"\n' + other.format(fake=fake_cdn.url)
    )
    r = run_cli("quota", "-o", "json")
    assert r.returncode == 0, r.stderr
    assert [q["provider"] for q in json.loads(r.stdout)] == ["good"]
    assert "skipping other" in r.stderr and said in r.stderr, r.stderr
    r = run_cli("quota", "-p", "other", "-o", "json")  # named: its error is the answer
    assert r.returncode == 3 and json.loads(r.stdout)["error"]["code"] == code, r.stderr


def test_report_download_with_two_report_files_names_the_command_for_each() -> None:
    """It said "use -p to pick one": report has no -p."""
    from prewarm_cli.engine.actions import download_report
    from prewarm_cli.engine.status import JobRef
    from prewarm_cli.errors import UsageError
    from prewarm_cli.results import JobReport

    ref = JobRef("job", {"cf0": ["t-1"], "cf1": ["t-2", "t-3"], "fake": ["t-9"]})
    links = {"cf0": "https://s3.example/r0", "cf1": "https://s3.example/r1"}
    result = JobReport("job", "partial", (), links)
    with pytest.raises(UsageError) as info:
        download_report(None, ref, result, "r.csv")  # type: ignore[arg-type]
    assert "several providers offer a report file (cf0, cf1)" in info.value.message
    assert info.value.hint == (
        "`prewarm report cf0:t-1 --download FILE`; `prewarm report cf1:t-2,t-3 --download FILE`"
    )
