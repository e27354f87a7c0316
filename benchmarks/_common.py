"""Shared helpers for the benchmark scripts: an isolated environment and a CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
sys.path[:0] = [str(TESTS), str(TESTS / "plugins")]  # the fake servers and the fake plugin


def isolated_env(config: str) -> tuple[dict[str, str], Path]:
    """A temporary config and state dir, with the test plugins on PYTHONPATH."""
    tmp = Path(tempfile.mkdtemp(prefix="prewarm-bench-"))
    cfg = tmp / "config.toml"
    cfg.write_text(config)
    cfg.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREWARM_", "XDG_"))}
    # As installed: pip compiles the modules once; a checkout run without bytecode caches
    # would compile them again at every start.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(
        PREWARM_CONFIG=str(cfg),
        PREWARM_STATE_DIR=str(tmp / "state"),
        PYTHONPATH=os.pathsep.join([str(TESTS / "plugins"), str(ROOT)]),
    )
    return env, tmp


class Run(NamedTuple):
    seconds: float
    peak_kib: int  # peak RSS (0 without /usr/bin/time)
    cpu_s: float  # user + system time (0 without /usr/bin/time)
    stdout: str


def run(args: list[str], env: dict[str, str], **kw: object) -> Run:
    """Runs `python -m prewarm_cli ARGS` under /usr/bin/time: time, peak RSS, CPU, stdout."""
    timer = ["/usr/bin/time", "-f", "%M %U %S"] if Path("/usr/bin/time").exists() else []
    start = time.perf_counter()
    r = subprocess.run(
        [*timer, sys.executable, "-m", "prewarm_cli", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        **kw,  # type: ignore[arg-type]
    )
    elapsed = time.perf_counter() - start
    peak, user, system = r.stderr.strip().splitlines()[-1].split() if timer else (0, 0, 0)
    if r.returncode not in (0, 4, 5):
        raise SystemExit(f"prewarm {' '.join(args)} failed ({r.returncode}):\n{r.stderr}")
    return Run(elapsed, int(peak), float(user) + float(system), r.stdout)
