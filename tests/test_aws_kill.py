"""AWS has no lookup: a request cut off by kill -9 stays unknown, never resent blindly."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from fakes.aws import FakePrewarmApi
from test_aws import api, configure, urls  # noqa: F401  (fixtures shared with the AWS tests)


def test_kill_mid_request_leaves_the_batch_unknown_and_never_resends_it(
    run_cli,
    configure,  # noqa: F811  (the fixture imported above)
    api: FakePrewarmApi,  # noqa: F811
    cli_env,
    tmp_path: Path,
) -> None:
    configure()
    holding, release, answered = api.hold_next_prewarm()
    proc = subprocess.Popen(
        [sys.executable, "-m", "prewarm_cli", "submit", "-o", "json", *urls(20)],
        env=cli_env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holding.wait(60), "the job request never reached the API"
        proc.kill()
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        release.set()
    assert proc.returncode == -signal.SIGKILL
    assert answered.wait(30)  # the API created the job after the client died
    assert len(api.requests_to("POST", "prewarm")) == 1
    job_id = json.loads(run_cli("jobs", "-o", "json").stdout)[0]["job_id"]
    r = run_cli("submit", "--resume", job_id, "-o", "json")
    data = json.loads(r.stdout)
    assert r.returncode == 4, r.stderr
    assert data["unknown"] == 20 and data["accepted"] == 0
    assert "--force" in r.stderr
    assert len(api.requests_to("POST", "prewarm")) == 1  # not resent: it may be running
    r = run_cli("status", job_id)  # says what a --resume would and would not do
    assert "the 20 of unknown outcome only with --force" in r.stderr, r.stderr
