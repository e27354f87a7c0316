"""`cancel --wait`: an AWS job still being set up is cancelled once it can be, within a bound."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import test_aws
from fakes.aws import FakePrewarmApi
from test_aws import DISTRIBUTIONS, cli_json, urls

configure = test_aws.configure  # the fixture writing an "aws" config for alias "cf"


class StoppedClock:
    """The fake stack's clock, moved by the test: a job stays CREATED until it moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> StoppedClock:
    return StoppedClock()


@pytest.fixture
def api(clock: StoppedClock) -> Iterator[FakePrewarmApi]:
    with FakePrewarmApi(distributions=DISTRIBUTIONS, clock=clock, download_seconds=600) as fake:
        yield fake


def test_cancel_without_wait_says_how_to_wait(run_cli, configure, api: FakePrewarmApi) -> None:
    configure()
    r, sub = cli_json(run_cli, "submit", *urls(3))
    assert r.returncode == 0, r.stderr
    r, data = cli_json(run_cli, "cancel", sub["job_id"])
    assert r.returncode == 2
    assert data["error"]["code"] == "not_cancellable_yet"
    assert f"prewarm cancel --wait {sub['job_id']}" in r.stderr
    assert "prewarm scale -p cf 0" in r.stderr  # the provider's own hint stays
    assert api.requests_to("POST", "instances") == []


def test_cancel_wait_tries_again_until_the_job_can_be_stopped(
    run_cli, configure, api: FakePrewarmApi, clock: StoppedClock, cli_env, tmp_path: Path
) -> None:
    configure()
    r, sub = cli_json(run_cli, "submit", *urls(3))
    assert r.returncode == 0, r.stderr
    task = sub["tasks"][0]["task_id"]
    cancelling = subprocess.Popen(
        [sys.executable, "-m", "prewarm_cli", "cancel", "--wait", sub["job_id"], "-o", "json"],
        env=cli_env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert cancelling.stderr is not None
    try:
        first = cancelling.stderr.readline()  # refused while CREATED: it says so and waits
        assert api.job_status(task) == "CREATED"
        assert api.requests_to("POST", "instances") == []
        clock.now += 3 * api.step_seconds + 0.01  # past CHECK_POP and INSERT_TASK
        assert api.job_status(task) == "IN-PROGRESS"
        out, rest = cancelling.communicate(timeout=60)
    finally:
        if cancelling.poll() is None:
            cancelling.kill()
            cancelling.wait()
    assert cancelling.returncode == 0, first + rest
    assert first.startswith(f"cf: job {task} is CREATED") and first.endswith(
        "; trying again in 0.1 s\n"
    ), first
    assert json.loads(out)[0]["tasks"][0]["task_id"] == task
    assert api.job_status(task) == "STOPPED"
    assert [q["body"] for q in api.requests_to("POST", "instances")] == [
        {"DesiredCapacity": 0, "req_id": task, "force_stop": True}
    ]


def test_cancel_wait_gives_up_after_its_timeout(run_cli, configure, api: FakePrewarmApi) -> None:
    configure()
    r, sub = cli_json(run_cli, "submit", *urls(3))
    assert r.returncode == 0, r.stderr
    r, data = cli_json(run_cli, "cancel", "--wait", "--wait-timeout", "0.3", sub["job_id"])
    assert r.returncode == 6, r.stderr
    assert "is CREATED" in r.stderr and "(still, after 0.3s)" in r.stderr
    assert data["error"]["code"] == "wait_timeout"
    assert api.requests_to("POST", "instances") == []
