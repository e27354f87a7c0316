"""Start-up time: `prewarm --help` and `--version` against `python -c "import click"`."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

RUNS = 15


def timed(cmd: list[str]) -> float:
    samples = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def main() -> None:
    base = timed([sys.executable, "-c", "import click"])
    rows = [
        ("python -c 'import click'", base),
        ("prewarm --version", timed([sys.executable, "-m", "prewarm_cli", "--version"])),
        ("prewarm --help", timed([sys.executable, "-m", "prewarm_cli", "--help"])),
        ("prewarm submit --help", timed([sys.executable, "-m", "prewarm_cli", "submit", "--help"])),
    ]
    print(f"median of {RUNS} runs")
    print(f"{'command':28} {'ms':>8} {'x click':>8}")
    for name, ms in rows:
        print(f"{name:28} {ms:8.1f} {ms / base:8.2f}")


if __name__ == "__main__":
    main()
