"""Direct warming against `curl --parallel`: the same URLs through the same nginx cache.

The test bed's nginx (two PoPs with proxy_cache in front of a Python origin) serves every
object from its cache: a first curl pass fills it, then curl and prewarm take turns fetching
the same URL set through one PoP with the same concurrency and the same Accept-Encoding
(identity, so both read the same bytes). What is measured is the client: what a user pays
for prewarm's journal, records and checks over the command they would write instead:

    curl --parallel --parallel-max N -K urls.curl   (url = ..., output = /dev/null each)

prewarm's time includes its start-up, reading and checking the URLs and its journal (its state
directory kept from one run to the next, as a user's is); a run of
one URL gives that fixed cost, and the rate without it is shown beside the whole-run ratio.
For reference, the same transfers from Python with nothing else: pycurl's multi interface in a
bare loop (what prewarm's Warmer drives, without the journal, the record or any check).
CPU is user + system time per request, from the kernel's accounting of each process.
Peak RSS of `prewarm submit` is read for several URL counts (it should not grow with them),
and the time, CPU and peak RSS of `status JOB --verify` of a direct job, which probes every
URL again through the PoP it was warmed at.

    .venv/bin/python benchmarks/bench_direct.py [--concurrency 8] [--small 20000]
        [--large 2000] [--rss 1000,10000] [--verify 2000,20000] [--repeat 3] [--shuffled]

With --shuffled the URLs come in random order, as a sitemap may list them. --small 0 or
--large 0 leaves that comparison out, --rss "" the peak RSS runs, --verify "" the verify runs.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from _common import Run, isolated_env, run
from cachebed import HOST, Nginx, Origin


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def curl_config(urls: list[str], path: Path) -> Path:
    path.write_text("".join(f'url = "{u}"\noutput = "/dev/null"\n' for u in urls))
    return path


def run_curl(urls: list[str], nginx: Nginx, concurrency: int, workdir: Path) -> tuple[float, float]:
    """curl's seconds and CPU seconds."""
    cfg = curl_config(urls, workdir / "urls.curl")
    cpu = children_cpu()
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
    return time.perf_counter() - start, children_cpu() - cpu


def run_pycurl(urls: list[str], nginx: Nginx, concurrency: int) -> tuple[float, float]:
    """The same transfers from a bare pycurl multi loop in this process: seconds, CPU seconds."""
    import pycurl

    multi = pycurl.CurlMulti()
    free = []
    for _ in range(concurrency):
        handle = pycurl.Curl()
        handle.setopt(pycurl.CONNECT_TO, [f"{HOST}:{nginx.port}:{nginx.pops[0]}:{nginx.port}"])
        handle.setopt(pycurl.HTTPHEADER, ["Accept-Encoding: identity"])
        handle.setopt(pycurl.WRITEFUNCTION, len)
        free.append(handle)
    todo, in_flight = iter(urls), 0
    cpu, start = time.process_time(), time.perf_counter()
    while True:
        while free and (url := next(todo, None)) is not None:
            handle = free.pop()
            handle.setopt(pycurl.URL, url)
            multi.add_handle(handle)
            in_flight += 1
        if not in_flight:
            break
        while multi.perform()[0] == pycurl.E_CALL_MULTI_PERFORM:
            pass
        n_queued = 1
        while n_queued:
            n_queued, ok, failed = multi.info_read()
            for handle in [*ok, *(f[0] for f in failed)]:
                if handle.getinfo(pycurl.RESPONSE_CODE) != 200:
                    raise SystemExit(f"pycurl: {handle.getinfo(pycurl.EFFECTIVE_URL)} failed")
                multi.remove_handle(handle)
                free.append(handle)
                in_flight -= 1
        multi.select(0.1)
    seconds, cpu_s = time.perf_counter() - start, time.process_time() - cpu
    for handle in free:
        handle.close()
    multi.close()
    return seconds, cpu_s


def prewarm_env(concurrency: int) -> tuple[dict[str, str], Path]:
    """A config for the direct provider, and a state directory that is kept from one run to
    the next, as a user's is."""
    return isolated_env(
        f'[providers.direct]\ntype = "direct"\nconcurrency = {concurrency}\n'
        'encodings = ["identity"]\n'
    )


def run_prewarm(urls: list[str], nginx: Nginx, env: dict[str, str], workdir: Path) -> Run:
    listing = workdir / "urls.txt"
    listing.write_text("".join(u + "\n" for u in urls))
    result = run(
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
    summary = json.loads(result.stdout)
    if summary["accepted"] != len(urls):
        raise SystemExit(f"prewarm warmed {summary['accepted']} of {len(urls)}")
    return result


def compare(name: str, urls: list[str], nginx: Nginx, args: argparse.Namespace, size: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-direct-"))
    env, state = prewarm_env(args.concurrency)
    run_curl(urls, nginx, args.concurrency, work)  # fills the cache: every later pass hits
    run_prewarm(urls[:1], nginx, env, work)  # compiles prewarm's modules once
    curl, bare, prewarm = [], [], []
    for _ in range(args.repeat):
        curl.append(run_curl(urls, nginx, args.concurrency, work))
        bare.append(run_pycurl(urls, nginx, args.concurrency))
        prewarm.append(run_prewarm(urls, nginx, env, work))
    fixed_s = statistics.median(
        run_prewarm(urls[:1], nginx, env, work).seconds for _ in range(args.repeat)
    )
    n = len(urls)
    curl_s = statistics.median(s for s, _ in curl)
    bare_s = statistics.median(s for s, _ in bare)
    prewarm_s = statistics.median(r.seconds for r in prewarm)
    sending_s = max(prewarm_s - fixed_s, 1e-9)

    def cpu_us(cpu_seconds: list[float]) -> str:
        return f"{statistics.median(cpu_seconds) / n * 1e6:.0f} µs CPU/request"

    print(
        f"{name}: {n} URLs x {size} B, concurrency {args.concurrency}, median of {args.repeat}:"
        f"\n  curl      {n / curl_s:9,.0f} req/s {n * size / curl_s / 1e6:8,.1f} MB/s"
        f"  {cpu_us([c for _, c in curl])}"
        f"\n  pycurl    {n / bare_s:9,.0f} req/s {n * size / bare_s / 1e6:8,.1f} MB/s"
        f"  {cpu_us([c for _, c in bare])}  (bare multi loop, no bookkeeping)"
        f"\n  prewarm   {n / prewarm_s:9,.0f} req/s {n * size / prewarm_s / 1e6:8,.1f} MB/s"
        f"  {cpu_us([r.cpu_s for r in prewarm])}"
        f"\n  prewarm / curl {curl_s / prewarm_s:.2f};"
        f" without prewarm's fixed {fixed_s:.2f} s: {n / sending_s:,.0f} req/s,"
        f" {curl_s / sending_s:.2f}"
    )
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(state, ignore_errors=True)


def verify_job(count: int, nginx: Nginx, args: argparse.Namespace) -> None:
    """`status JOB --verify` of a direct job of ``count`` URLs, each probed through the PoP
    it was warmed at, every answer a hit: time, CPU per probe, peak RSS (flat in URLs)."""
    urls = [nginx.url(f"/obj/v{i}.js?size=2048") for i in range(count)]
    work = Path(tempfile.mkdtemp(prefix="bench-direct-"))
    env, state = prewarm_env(args.concurrency)
    run_curl(urls, nginx, args.concurrency, work)  # fills the cache
    job = json.loads(run_prewarm(urls, nginx, env, work).stdout)["job_id"]
    runs = [run(["status", job, "--verify", "-o", "ndjson"], env) for _ in range(args.repeat)]
    for r in runs:
        records = [json.loads(line) for line in r.stdout.splitlines()]
        n_hits = sum(x["record"] == "verify" and x["cache"] == "hit" for x in records)
        if n_hits != count:
            raise SystemExit(f"verify: {n_hits} hits of {count}")
    seconds = statistics.median(r.seconds for r in runs)
    print(
        f"status --verify, {count} URLs: {seconds:.2f} s ({count / seconds:,.0f} probes/s),"
        f" {statistics.median(r.cpu_s for r in runs) / count * 1e6:.0f} µs CPU/probe,"
        f" peak RSS {max(r.peak_kib for r in runs) / 1024:.1f} MiB"
    )
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(state, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--small", type=int, default=20000, help="URLs of 2 KB")
    parser.add_argument("--large", type=int, default=2000, help="URLs of 1 MB")
    parser.add_argument("--rss", default="1000,10000", help="URL counts for peak RSS")
    parser.add_argument(
        "--verify", default="2000,20000", help="URL counts for `status JOB --verify`"
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--shuffled",
        action="store_true",
        help="the URLs in random order, as a sitemap may list them",
    )
    args = parser.parse_args()
    origin = Origin().start()
    workdir = Path(tempfile.mkdtemp(prefix="bench-nginx-"))
    # Cache keys for every URL of the largest run (a MiB holds about 8,000): an edge that
    # evicts them would answer each probe a miss.
    n_urls = max([args.small, args.large, *(int(c) for c in args.verify.split(",") if c)])
    keys_mib = max(4, n_urls // 4000)
    nginx = Nginx(workdir, origin.port, log_requests=False, keys_mib=keys_mib).start()
    try:
        url = nginx.url
        small = [url(f"/obj/s{i}.js?size=2048") for i in range(args.small)]
        large = [url(f"/obj/l{i}.bin?size=1048576") for i in range(args.large)]
        if args.shuffled:  # the same shuffle every run
            random.Random(2026).shuffle(small)
            random.Random(2026).shuffle(large)
        if small:
            compare("2 KB", small, nginx, args, 2048)
        if large:
            compare("1 MB", large, nginx, args, 1048576)
        for count in (int(c) for c in args.verify.split(",") if c):
            verify_job(count, nginx, args)
        for count in (int(c) for c in args.rss.split(",") if c):
            urls = [url(f"/obj/r{i}.js?size=2048") for i in range(count)]
            work = Path(tempfile.mkdtemp(prefix="bench-direct-"))
            env, state = prewarm_env(args.concurrency)
            run_curl(urls, nginx, args.concurrency, work)
            result = run_prewarm(urls, nginx, env, work)
            print(
                f"peak RSS, {count} URLs: {result.peak_kib / 1024:.1f} MiB ({result.seconds:.1f} s)"
            )
            shutil.rmtree(work, ignore_errors=True)
            shutil.rmtree(state, ignore_errors=True)
    finally:
        nginx.stop()
        origin.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
