"""Tables on a real terminal 80 and 120 columns wide: nothing wider, nothing split mid-word."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import sys
import termios
import time
from pathlib import Path

import pytest
from fakes.generic import FakeCdn
from helpers import cli_json, read_until_closed

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
LONG = "https://static.example.com/assets/releases/2026/12/very/long/path/to/a/bundle"


def run_on_terminal(env: dict[str, str], columns: int, *args: str) -> tuple[int, list[str]]:
    """Runs prewarm on a pseudo-terminal ``columns`` wide; returns its exit code and lines."""
    child_env = {k: v for k, v in env.items() if k not in ("COLUMNS", "LINES")}
    child_env["NO_COLOR"] = "1"
    pid, fd = pty.fork()
    if pid == 0:  # the child: prewarm on a terminal of that size
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
        os.execve(sys.executable, [sys.executable, "-m", "prewarm_cli", *args], child_env)
    try:
        seen = read_until_closed(fd, time.monotonic() + 60)
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    text = ANSI.sub("", seen.decode()).replace("\r\n", "\n")
    return os.waitstatus_to_exitcode(status), text.splitlines()


@pytest.fixture
def finished_job(run_cli, fake_config: Path, fake_cdn: FakeCdn) -> str:
    urls = [f"{LONG}-{i}.js" for i in range(3)] + [f"{LONG}-fail.js"]
    r, data = cli_json(run_cli, "submit", "--wait", "--interval", "0.05", *urls)
    assert r.returncode == 4, r.stderr  # the "fail" URL failed at the vendor
    job_id: str = data["job_id"]
    return job_id


def assert_fits(lines: list[str], columns: int) -> None:
    too_wide = [line for line in lines if len(line) > columns]
    assert not too_wide, "\n".join(lines)


@pytest.mark.parametrize("columns", [80, 120])
def test_status_jobs_report_fit_and_keep_the_job_id_whole(
    cli_env, finished_job: str, columns: int
) -> None:
    for command in ("status", "jobs", "report"):
        args = (command,) if command == "jobs" else (command, finished_job)
        code, lines = run_on_terminal(cli_env, columns, *args)
        assert code in (0, 4), lines
        assert_fits(lines, columns)
        assert any(finished_job in line for line in lines), (command, lines)
    code, lines = run_on_terminal(cli_env, columns, "status", finished_job)
    header = next(line for line in lines if "provider" in line)
    for word in ("state", "total", "succeeded", "failed"):
        assert re.search(rf"\b{word}\b", header), lines
    # "vendor state" is the first to go on a narrow screen; what is not sent (what a resume
    # would send) the last, and a line says what went.
    assert "not sent" in header and ("vendor state" in header) == (columns >= 120), lines
    assert any("hidden for width: vendor state" in line for line in lines) == (columns < 120), lines
    code, lines = run_on_terminal(cli_env, columns, "jobs")
    header = next(line for line in lines if "job" in line and "state" in line)
    for word in ("failed", "not sent"):
        assert word in header, lines


@pytest.mark.parametrize("columns", [80, 120])
def test_report_ellipsizes_long_urls_in_the_middle(
    cli_env, finished_job: str, columns: int
) -> None:
    code, lines = run_on_terminal(cli_env, columns, "report", finished_job)
    assert code == 4, lines
    assert_fits(lines, columns)
    row = next(line for line in lines if "fail.js" in line)
    assert "https://static" in row and "…" in row, lines  # start and end kept, middle cut
    assert sum("fail.js" in line for line in lines) == 1  # one line, not folded


@pytest.mark.parametrize("columns", [80, 120])
def test_config_show_keeps_keys_whole(cli_env, fake_config: Path, columns: int) -> None:
    code, lines = run_on_terminal(cli_env, columns, "config", "show")
    assert code == 0, lines
    assert_fits(lines, columns)
    assert any("providers.fake.endpoint" in line for line in lines), lines


@pytest.mark.parametrize("columns", [80, 120])
def test_verify_fits(cli_env, fake_cdn: FakeCdn, columns: int) -> None:
    url = f"{fake_cdn.url}/assets/releases/2026/12/very/long/path/to/a/bundle-0123456789.js"
    code, lines = run_on_terminal(cli_env, columns, "verify", url, url + "?v=2")
    assert code != 0 or lines
    assert_fits(lines, columns)
    header = next(line for line in lines if "cache" in line)
    assert re.search(r"\bstatus\b", header), lines


def test_fit_columns_drops_by_priority_and_never_splits_a_header() -> None:
    from prewarm_cli.output import Column, ellipsize_middle, fit_columns

    columns = [Column("job", "id"), Column("url", "url"), Column("created", "id", drop=1)]
    rows = [("01M93NDRGJKAMD0ZXRQR6MEQ49", LONG, "2026-12-05T17:52:37")]
    wide = fit_columns(columns, rows, 200)
    assert [i for i, _ in wide] == [0, 1, 2] and wide[1][1] == len(LONG)
    narrow = fit_columns(columns, rows, 60)
    assert [i for i, _ in narrow] == [0, 1]  # "created" went first
    assert narrow[0][1] == 26 and sum(w for _, w in narrow) + 3 * 2 + 1 <= 60
    assert ellipsize_middle("https://a.example/x/y/z.js", 12) == "https:…/z.js"
    assert len(ellipsize_middle(LONG, 30)) == 30
