"""A million input URLs: time and peak memory of a dry run and of a real submit (fake CDN)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from _common import isolated_env, run
from fakes.generic import FakeCdn

N = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000


def main() -> None:
    with FakeCdn(max_batch=1000, task_seconds=0.1) as cdn:
        env, tmp = isolated_env(
            f'[providers.fake]\ntype = "fake"\nendpoint = "{cdn.url}"\napi_key = "test-key"\n'
            "max_batch = 1000\n"
        )
        listing = Path(tmp) / "urls.txt"
        start = time.perf_counter()
        with listing.open("w") as fh:
            for i in range(N):
                fh.write(f"https://static.example.com/assets/2026/chunk-{i:07d}.js\n")
        print(
            f"{N} URLs, {listing.stat().st_size / 1e6:.0f} MB file"
            f" (written in {time.perf_counter() - start:.1f} s)"
        )

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


if __name__ == "__main__":
    main()
