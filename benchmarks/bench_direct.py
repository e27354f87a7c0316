"""Direct warming against `curl --parallel`: the same URLs through the same nginx cache.

The test bed's nginx (two PoPs with proxy_cache in front of a Python origin) serves every
object from its cache: a first curl pass fills it, then curl and prewarm take turns fetching
the same URL set through one PoP with the same concurrency and the same Accept-Encoding
(identity, so both read the same bytes). What is measured is the client: what a user pays
for prewarm's journal, records and checks over the command they would write instead:

    curl --parallel --parallel-max N -K urls.curl   (url = ..., output = /dev/null each)

prewarm's time includes its start-up, reading and checking the URLs and its journal; a run of
one URL gives that fixed cost, and the rate without it is shown beside the whole-run ratio.
Peak RSS of `prewarm submit` is read for several URL counts (it should not grow with them).

    .venv/bin/python benchmarks/bench_direct.py [--concurrency 8] [--small 20000]
        [--large 200] [--rss 1000,10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from _common import isolated_env, run
from cachebed import HOST, Nginx, Origin


def curl_config(urls: list[str], path: Path) -> Path:
    path.write_text("".join(f'url = "{u}"\noutput = "/dev/null"\n' for u in urls))
    return path


def run_curl(urls: list[str], nginx: Nginx, concurrency: int, workdir: Path) -> float:
    cfg = curl_config(urls, workdir / "urls.curl")
    start = time.perf_counter()
    subprocess.run(
        [
            "curl",
            "--parallel",
            "--parallel-max",
            str(concurrency),
            "--silent",
            "--show-error",
            "--no-progress-meter",
            "--fail",
            "--resolve",
            f"{HOST}:{nginx.port}:{nginx.pops[0]}",
            "-H",
            "Accept-Encoding: identity",
            "-K",
            str(cfg),
        ],
        check=True,
    )
    return time.perf_counter() - start


def run_prewarm(
    urls: list[str], nginx: Nginx, concurrency: int, workdir: Path
) -> tuple[float, int, dict[str, object]]:
    env, tmp = isolated_env(
        f'[providers.direct]\ntype = "direct"\nconcurrency = {concurrency}\n'
        'encodings = ["identity"]\n'
    )
    listing = workdir / "urls.txt"
    listing.write_text("".join(u + "\n" for u in urls))
    try:
        seconds, peak_kib, out = run(
            [
                "submit",
                "-p",
                "direct",
                "-o",
                "json",
                "--resolve",
                f"{HOST}:{nginx.port}:{nginx.pops[0]}",
                "-i",
                str(listing),
            ],
            env,
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    summary = json.loads(out)
    if summary["accepted"] != len(urls):
        raise SystemExit(f"prewarm warmed {summary['accepted']} of {len(urls)}")
    return seconds, peak_kib, summary


def compare(name: str, urls: list[str], nginx: Nginx, args: argparse.Namespace, size: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-direct-"))
    run_curl(urls, nginx, args.concurrency, work)  # fills the cache: every later pass hits
    curl_times, prewarm_times = [], []
    for _ in range(args.repeat):
        curl_times.append(run_curl(urls, nginx, args.concurrency, work))
        prewarm_times.append(run_prewarm(urls, nginx, args.concurrency, work)[0])
    fixed_s = statistics.median(
        run_prewarm(urls[:1], nginx, args.concurrency, work)[0] for _ in range(args.repeat)
    )
    curl_s, prewarm_s = statistics.median(curl_times), statistics.median(prewarm_times)
    n = len(urls)
    sending_s = max(prewarm_s - fixed_s, 1e-9)
    print(
        f"{name}: {n} URLs x {size} B, concurrency {args.concurrency}, median of {args.repeat}:"
        f" curl {n / curl_s:,.0f} req/s {n * size / curl_s / 1e6:,.1f} MB/s;"
        f" prewarm {n / prewarm_s:,.0f} req/s {n * size / prewarm_s / 1e6:,.1f} MB/s;"
        f" ratio {curl_s / prewarm_s:.2f};"
        f" without prewarm's fixed {fixed_s:.2f} s: {n / sending_s:,.0f} req/s,"
        f" ratio {curl_s / sending_s:.2f}"
    )
    shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--small", type=int, default=20000, help="URLs of 2 KB")
    parser.add_argument("--large", type=int, default=200, help="URLs of 1 MB")
    parser.add_argument("--rss", default="1000,10000", help="URL counts for peak RSS")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    origin = Origin().start()
    workdir = Path(tempfile.mkdtemp(prefix="bench-nginx-"))
    nginx = Nginx(workdir, origin.port, log_requests=False).start()
    try:
        url = nginx.url
        small = [url(f"/obj/s{i}.js?size=2048") for i in range(args.small)]
        large = [url(f"/obj/l{i}.bin?size=1048576") for i in range(args.large)]
        compare("2 KB", small, nginx, args, 2048)
        compare("1 MB", large, nginx, args, 1048576)
        for count in (int(c) for c in args.rss.split(",")):
            urls = [url(f"/obj/r{i}.js?size=2048") for i in range(count)]
            work = Path(tempfile.mkdtemp(prefix="bench-direct-"))
            run_curl(urls, nginx, args.concurrency, work)
            seconds, peak_kib, _ = run_prewarm(urls, nginx, args.concurrency, work)
            print(f"peak RSS, {count} URLs: {peak_kib / 1024:.1f} MiB ({seconds:.1f} s)")
            shutil.rmtree(work, ignore_errors=True)
    finally:
        nginx.stop()
        origin.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
