"""--wait in a CI log (stderr not a terminal): one line per poll, then the final state."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from fakes.generic import FakeCdn
from helpers import cli_json

URLS = [f"https://static.example.com/app-{i}.js" for i in range(3)]


class StoppedClock:
    """The fake vendor's clock, moved by the test: a task stays queued until it moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_status_wait_logs_each_poll_and_the_final_state(
    run_cli, cli_env, fake_config: Path, fake_cdn: FakeCdn, tmp_path: Path
) -> None:
    clock = StoppedClock()
    fake_cdn.clock = clock
    r, submitted = cli_json(run_cli, "submit", *URLS)
    assert r.returncode == 0, r.stderr
    job_id = submitted["job_id"]
    waiting = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "prewarm_cli",
            "status",
            "--wait",
            "--interval",
            "0.2",
            "--wait-timeout",
            "60",
            job_id,
        ],
        env={**cli_env, "COLUMNS": "80"},
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert waiting.stderr is not None
    try:
        polls = []
        for _ in range(2):  # two polls while the task is queued, then let it finish
            polls.append(waiting.stderr.readline())
        clock.now += fake_cdn.task_seconds
        out, rest = waiting.communicate(timeout=60)
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.wait()
    assert waiting.returncode == 0, [*polls, rest]
    for line in polls:
        assert line == (
            f"job {job_id}: pending, 0 succeeded, 0 failed, 0 in progress, 3 pending of 3;"
            " next poll in 0.2 s\n"
        ), polls
    final = rest.splitlines()[-1]
    assert final == f"job {job_id}: succeeded, 3 succeeded, 0 failed, 0 in progress, 0 pending of 3"
    assert all(line.startswith(f"job {job_id}: ") for line in rest.splitlines()), rest
    assert json.loads(out)["state"] == "succeeded"  # stdout holds the data only


def test_submit_wait_logs_the_final_state_and_quiet_silences_it(
    run_cli, fake_config: Path, fake_cdn: FakeCdn
) -> None:
    r, data = cli_json(run_cli, "submit", "--wait", "--interval", "0.2", *URLS)
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    job_id = data["job_id"]
    assert lines[-1] == (
        f"job {job_id}: succeeded, 3 succeeded, 0 failed, 0 in progress, 0 pending of 3"
    ), r.stderr
    for line in lines:
        if line.startswith(f"job {job_id}: ") and "next poll" in line:
            assert line.endswith("; next poll in 0.2 s"), line
    assert "next poll" not in r.stdout and " pending of " not in r.stdout
    quiet = run_cli("submit", "-q", "--wait", "--interval", "0.2", "-o", "json", *URLS[:1])
    assert quiet.returncode == 0 and "next poll" not in quiet.stderr and "job " not in quiet.stderr


def test_a_poll_line_counts_what_is_not_sent_yet_too() -> None:
    """While another process still sends the job, its counts add up to the total."""
    from prewarm_cli.engine.status import _poll_line
    from prewarm_cli.results import JobStatus

    status = JobStatus("J1", "running", None, 10, 3, 1, 2, 0, not_sent=4, providers={})
    line = _poll_line(status, 5.0)
    assert line == (
        "job J1: running, 3 succeeded, 1 failed, 2 in progress, 0 pending, 4 not sent of 10;"
        " next poll in 5 s"
    )
