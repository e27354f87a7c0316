"""Ctrl-C while waiting for a job: exactly one message on stderr, and exit 130."""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import sys
import time
from pathlib import Path

import pytest
from fakes.generic import FakeCdn
from helpers import cli_json, interrupt, invoke, popen, wait_for

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# The lines a wait prints while it runs (one per poll in a log, a progress bar on a terminal).
PROGRESS = re.compile(r"^(job \S+( started|: )|waiting|running|pending|\s*$)")


def _polls(fake_cdn: FakeCdn) -> int:
    """Status polls the fake has answered (GET /v1/tasks/ID)."""
    return sum(
        1
        for r in fake_cdn.requests
        if r.get("method") == "GET" and str(r.get("path", "")).startswith("/v1/tasks/")
    )


def _wait_args(command: str, job_id: str) -> list[str]:
    if command == "submit":
        return ["submit", "--wait", "--interval", "0.2", "https://static.example.com/b.js"]
    return ["status", "--wait", "--interval", "0.2", job_id]


@pytest.fixture
def long_job(fake_config: Path, fake_cdn: FakeCdn) -> str:
    """A job whose vendor task runs for ten minutes."""
    fake_cdn.task_seconds = 600
    r, data = cli_json(invoke, "submit", "https://static.example.com/a.js")
    assert r.returncode == 0, r.stderr
    return str(data["job_id"])


def _messages(stderr: str) -> list[str]:
    text = ANSI.sub("", stderr).replace("\r", "\n")
    return [line for line in text.splitlines() if line.strip() and not PROGRESS.match(line)]


@pytest.mark.parametrize("command", ["submit", "status"])
def test_ctrl_c_while_waiting_in_a_log(
    command: str, long_job: str, fake_cdn: FakeCdn, cli_env: dict[str, str], tmp_path: Path
) -> None:
    polls = _polls(fake_cdn)
    proc = popen(cli_env, tmp_path, *_wait_args(command, long_job))
    stopped = interrupt(proc, lambda: wait_for(lambda: _polls(fake_cdn) > polls, 30))
    assert proc.returncode == 130, stopped.err
    *_started, error, hint = _messages(stopped.err)
    if command == "status":  # named as given, with the command that waits again
        assert error == f"error: interrupted while waiting for job {long_job}", stopped.err
        assert hint == f"hint: `prewarm status --wait {long_job}` waits again"
    else:  # the job is named: with -q nothing else on stderr names it
        job = error.split()[5]
        assert error == f"error: interrupted while waiting; job {job} goes on at the vendors"
        assert hint == f"hint: `prewarm status --wait {job}` waits again"


@pytest.mark.parametrize("command", ["submit", "status"])
def test_ctrl_c_while_waiting_gives_the_error_in_json_and_ndjson(
    command: str, long_job: str, fake_cdn: FakeCdn, cli_env: dict[str, str], tmp_path: Path
) -> None:
    for fmt in ("json", "ndjson"):
        polls = _polls(fake_cdn)
        proc = popen(cli_env, tmp_path, *_wait_args(command, long_job), "-o", fmt)
        stopped = interrupt(proc, lambda n=polls: wait_for(lambda: _polls(fake_cdn) > n, 30))
        assert proc.returncode == 130, stopped.err
        lines = [json.loads(line) for line in stopped.out.splitlines()]
        assert lines[-1]["error"]["code"] == "interrupted"
        assert lines[-1]["error"]["job_id"] is not None  # the job the interrupted wait was for
        if command == "submit" and fmt == "ndjson":  # the job was named before the wait
            assert lines[0]["record"] == "submit" and lines[0]["job_id"]
        else:
            assert len(lines) == 1


@pytest.mark.parametrize("command", ["submit", "status"])
def test_ctrl_c_while_waiting_on_a_terminal(
    command: str, long_job: str, fake_cdn: FakeCdn, cli_env: dict[str, str]
) -> None:
    polls = _polls(fake_cdn)
    env = {**cli_env, "NO_COLOR": "1"}
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(
            sys.executable,
            [sys.executable, "-m", "prewarm_cli", *_wait_args(command, long_job)],
            env,
        )
    seen = b""
    try:
        wait_for(lambda: _polls(fake_cdn) > polls, 30)
        os.kill(pid, signal.SIGINT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    text = ANSI.sub("", seen.decode(errors="replace")).replace("\r", "\n")
    assert os.waitstatus_to_exitcode(status) == 130, text
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    assert lines[-2].startswith("error: interrupted while waiting"), text
    assert lines[-1].startswith("hint: `prewarm status --wait "), text
    assert text.count("interrupted") == 1 and "aborted" not in text, text


def test_wait_timeout_in_ndjson_names_the_job_first(long_job: str, run_cli) -> None:
    r = run_cli(
        "submit", "--wait", "--wait-timeout", "0.3", "-o", "ndjson", "https://a.example.com/c.js"
    )
    assert r.returncode == 6, r.stderr
    first, *_, last = [json.loads(line) for line in r.stdout.splitlines()]
    assert first["record"] == "submit" and first["job_id"]
    assert last["error"]["code"] == "wait_timeout" and first["job_id"] in last["error"]["message"]
    assert last["error"]["hint"] == f"`prewarm status --wait {first['job_id']}` waits again"
