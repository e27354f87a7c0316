"""A million input URLs: time and peak memory of `urls`, of a dry run and of a real submit
(fake CDN).

    .venv/bin/python benchmarks/bench_million.py [N] [--shuffled] [--failing=EVERY]

The URLs come in sorted order, as a build directory lists them; with --shuffled in random
order, as a sitemap or a sync log may (the same URLs, a fixed shuffle). With --failing=EVERY,
one URL in EVERY fails at the vendor (its tasks end partial, and `report` lists them).
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

from _common import isolated_env, run
from fakes.generic import FakeCdn

ARGS = [a for a in sys.argv[1:] if not a.startswith("--")]
N = int(ARGS[0]) if ARGS else 1_000_000
SHUFFLED = "--shuffled" in sys.argv[1:]
FAILING = next((int(a.split("=", 1)[1]) for a in sys.argv[1:] if a.startswith("--failing=")), 0)


def main() -> None:
    with FakeCdn(max_batch=1000, task_seconds=0.1) as cdn:
        env, tmp = isolated_env(
            f'[providers.fake]\ntype = "fake"\nendpoint = "{cdn.url}"\napi_key = "test-key"\n'
            "max_batch = 1000\n"
        )
        listing = Path(tmp) / "urls.txt"
        start = time.perf_counter()
        order = list(range(N))
        if SHUFFLED:
            random.Random(2026).shuffle(order)
        with listing.open("w") as fh:
            for i in order:
                kind = "fail" if FAILING and i % FAILING == 0 else "chunk"  # the fake fails "fail"
                fh.write(f"https://static.example.com/assets/2026/{kind}-{i:07d}.js\n")
        print(
            f"{N} URLs{' in random order' if SHUFFLED else ''},"
            f" {listing.stat().st_size / 1e6:.0f} MB file"
            f" (written in {time.perf_counter() - start:.1f} s)"
        )

        for fmt in ("table", "json"):  # one URL per line, and a JSON list
            seconds, peak, _, out = run(["urls", "-o", fmt, "-i", str(listing)], env)
            n_listed = len(json.loads(out)) if fmt == "json" else len(out.splitlines())
            print(
                f"urls -o {fmt:5}: {seconds:6.1f} s  peak RSS {peak / 1024:6.0f} MiB"
                f"  ({n_listed} listed)"
            )
            assert n_listed == N
            del out

        seconds, peak, _, out = run(["submit", "--dry-run", "-o", "json", "-i", str(listing)], env)
        plan = json.loads(out)
        print(
            f"dry run : {seconds:6.1f} s  peak RSS {peak / 1024:6.0f} MiB"
            f"  ({plan['providers']['fake']['batches']} batches planned)"
        )

        seconds, peak, _, out = run(["submit", "-o", "json", "-i", str(listing)], env)
        result = json.loads(out)
        print(
            f"submit  : {seconds:6.1f} s  peak RSS {peak / 1024:6.0f} MiB"
            f"  ({result['accepted']} accepted in {len(cdn.submits)} requests)"
        )
        assert result["accepted"] == N

        job = result["job_id"]
        for args in (["status", job], ["report", job], ["jobs"]):
            seconds, peak, _, out = run([*args, "-o", "json"], env)
            print(f"{' '.join(args[:1]):8}: {seconds:6.1f} s  peak RSS {peak / 1024:6.0f} MiB")


if __name__ == "__main__":
    main()
