"""Helpers the test modules share: URL lists, the CLI in-process, JSON from a run, waiting."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from click.testing import CliRunner


def popen(
    cli_env: Mapping[str, str], cwd: Path, *args: str, stdin: int | None = None
) -> subprocess.Popen[str]:
    """`python -m prewarm_cli ARGS` started in the background, stdout and stderr piped."""
    return subprocess.Popen(
        [sys.executable, "-m", "prewarm_cli", *args],
        env=dict(cli_env),
        cwd=cwd,
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# The peak of this process's own memory: VmHWM starts again at exec, where ru_maxrss keeps the
# parent's peak from before it (pytest's, tens of MiB).
_PEAK_RSS = (
    "import atexit, re, sys\n"
    "from prewarm_cli.cli import main\n"
    "def peak():\n"
    "    status = open('/proc/self/status').read()\n"
    "    print(re.search(r'VmHWM:\\s+(\\d+) kB', status).group(1), file=sys.stderr)\n"
    "atexit.register(peak)\n"
    "main(sys.argv[1:])\n"
)


def peak_rss_kib(cli_env: Mapping[str, str], cwd: Path, *args: str) -> int:
    """The peak resident memory (KiB) of a `prewarm ARGS` process, its stdout thrown away;
    the run must succeed."""
    done = subprocess.run(
        [sys.executable, "-c", _PEAK_RSS, *args],
        env=dict(cli_env),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return int(done.stderr.splitlines()[-1])


@dataclass(frozen=True)
class Stopped:
    """What a process interrupted by `interrupt` wrote, and how long it took to end."""

    out: str
    err: str
    seconds: float  # from Ctrl-C to its exit


def interrupt(proc: subprocess.Popen[str], ready: Callable[[], object]) -> Stopped:
    """Ctrl-C (SIGINT) to `proc` once `ready()` returns (it waits; False fails the test), then
    its output; the process is killed if anything fails on the way."""
    import signal

    try:
        assert ready() is not False, "the process never got there"
        proc.send_signal(signal.SIGINT)
        sent = time.monotonic()
        out, err = proc.communicate(timeout=30)
        return Stopped(out, err, time.monotonic() - sent)
    finally:
        if proc.poll() is None:
            proc.kill()


def read_until_closed(fd: int, deadline: float | None = None) -> bytes:
    """What a pseudo-terminal's child writes until it closes it (or ``deadline`` passes)."""
    import os

    seen = b""
    while deadline is None or time.monotonic() < deadline:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    return seen


def urls(n: int, prefix: str = "https://static.example.com/f", ext: str = ".js") -> list[str]:
    """`n` distinct URLs: PREFIX0.js, PREFIX1.js, ..."""
    return [f"{prefix}{i}{ext}" for i in range(n)]


@dataclass(frozen=True)
class CliRun:
    """One in-process run of prewarm: the same fields as a finished subprocess."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


def invoke(
    *args: str, input: str | None = None, env_extra: Mapping[str, str | None] | None = None
) -> CliRun:
    """Runs `prewarm ARGS...` in this process, through main()'s exit ladder.

    For parsing and rendering; start-up, entry points, signals and kills need a real process
    (the `run_cli` fixture). The environment is os.environ, which the `cli_env` fixture isolates,
    plus `env_extra` (None removes a variable); stdin is `input` (never a terminal); stdout and
    stderr are captured apart.
    """
    from prewarm_cli.cli import main

    runner = CliRunner()
    with runner.isolation(input=input, env=env_extra) as (stdout, stderr, _both):
        try:
            main(list(args))
        except SystemExit as exc:
            code = exc.code
        else:  # main() always exits; reaching here is a bug in it
            raise AssertionError("main() returned instead of exiting")
        finally:  # what was written but is still buffered, as a real process's exit would
            sys.stdout.flush()
            sys.stderr.flush()
    returncode = code if isinstance(code, int) else (0 if code is None else 1)
    return CliRun(
        args=args,
        returncode=returncode,
        stdout=stdout.getvalue().decode(),
        stderr=stderr.getvalue().decode(),
    )


def cli_json(run: Callable[..., Any], *args: str, **kw: Any) -> tuple[Any, Any]:
    """Runs the CLI with `-o json` (through `invoke` or the `run_cli` fixture): the run and its
    parsed stdout (None when stdout is empty)."""
    r = run(*args, "-o", "json", **kw)
    return r, (json.loads(r.stdout) if r.stdout.strip() else None)


def wait_for(predicate: Callable[[], bool], seconds: float = 5.0) -> None:
    """Polls `predicate` until it holds; fails the test after `seconds`."""
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def converse(
    env: dict[str, str], args: Sequence[str], script: Sequence[tuple[str, str]]
) -> tuple[int, str]:
    """Runs `prewarm ARGS` on a pseudo-terminal and answers each prompt of ``script`` once its
    text appears (after what the previous answer made it print); returns the exit code and
    everything the terminal showed."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: prewarm on a terminal
        os.execve(sys.executable, [sys.executable, "-m", "prewarm_cli", *args], env)
    shown = b""
    fresh = b""
    deadline = time.monotonic() + 30

    def read_some() -> bool:
        nonlocal shown, fresh
        ready, _, _ = select.select([fd], [], [], 0.5)
        if not ready:
            return True
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the child has exited
            return False
        shown += chunk
        fresh += chunk
        return bool(chunk)

    try:
        for prompt, answer in script:
            while prompt.encode() not in fresh and time.monotonic() < deadline:
                if not read_some():
                    break
            assert prompt.encode() in fresh, (
                f"no prompt {prompt!r}; the terminal showed:\n{shown.decode(errors='replace')}"
            )
            fresh = b""
            os.write(fd, answer.encode() + b"\r")
        while time.monotonic() < deadline and read_some():
            pass
        # The terminal closed (or the time is up): the child exits, unless it still waits.
        done, status = os.waitpid(pid, os.WNOHANG)
        while not done and time.monotonic() < deadline + 10:
            time.sleep(0.05)
            done, status = os.waitpid(pid, os.WNOHANG)
        assert done, (
            f"still running after 30 s; the terminal showed:\n{shown.decode(errors='replace')}"
        )
    except BaseException:  # it may be waiting for an answer the script does not give
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    return os.waitstatus_to_exitcode(status), shown.decode(errors="replace").replace("\r\n", "\n")
