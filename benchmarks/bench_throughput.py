"""Throughput as a fraction of each vendor's rate limit, measured on the fake servers' clocks.

Each scenario keeps the limiter busy for about 30 seconds and reads the arrival times the fake
server recorded. The achieved rate is what the vendor's window sees: a window's worth of units
(``rate`` requests, or ``rate`` URLs in full batches) after any request, the window has turned
over once, so rate = units per window / the mean time from each request to the one a window's
worth later. Unlike (requests - 1) / (last - first), this does not count a final burst as if
it had taken no time (which read up to 3 % high with bursts over 30 windows).

    .venv/bin/python benchmarks/bench_throughput.py [--repeat N] [--only NAME]  # median of N
"""

from __future__ import annotations

import argparse
import json
import statistics
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from _common import isolated_env, run
from fakes.aws import FakeJob, FakePrewarmApi
from fakes.edgeone import FakeEdgeOne
from fakes.generic import FakeCdn
from fakes.qiniu import FakeQiniu

Setup = tuple[object, str, Callable[[], list[tuple[float, int]]], dict[str, str]]


@dataclass
class Scenario:
    name: str
    limit: str  # what the vendor limits: "requests/s" or "URLs/s"
    rate: float
    urls: int
    setup: Callable[[], Setup]


def generic(rps: float | None, ups: float | None, batch: int) -> Callable[[], Setup]:
    def setup() -> Setup:
        cdn = FakeCdn(max_batch=batch, rps=rps, ups=ups).start()
        limits = "".join(f"{k} = {v}\n" for k, v in (("rps", rps), ("ups", ups)) if v is not None)
        config = (
            f'[providers.fake]\ntype = "fake"\nendpoint = "{cdn.url}"\napi_key = "test-key"\n'
            f"max_batch = {batch}\n{limits}"
        )

        def arrivals() -> list[tuple[float, int]]:
            return [(q["t"], q["urls"]) for q in cdn.requests if q["path"] == "/v1/prefetch"]

        return cdn, config, arrivals, {}

    return setup


def qiniu() -> Setup:
    fake = FakeQiniu().start()
    config = f'[providers.qiniu]\ntype = "qiniu"\nendpoint = "{fake.url}"\n'

    def arrivals() -> list[tuple[float, int]]:
        return [(q["t"], q["urls"]) for q in fake.requests if q["path"] == "/v2/tune/prefetch"]

    env = {"QINIU_ACCESS_KEY": fake.access_key, "QINIU_SECRET_KEY": fake.secret_key}
    return fake, config, arrivals, env


def edgeone() -> Setup:
    fake = FakeEdgeOne().start()
    config = (
        f'[providers.edgeone]\ntype = "edgeone"\nzone_id = "{fake.zone_id}"\n'
        f'endpoint = "{fake.url}"\n'
    )

    def arrivals() -> list[tuple[float, int]]:
        return [(q["t"], 1) for q in fake.log if q["action"] == "CreatePrefetchTask"]

    env = {"TENCENTCLOUD_SECRET_ID": fake.secret_id, "TENCENTCLOUD_SECRET_KEY": fake.secret_key}
    return fake, config, arrivals, env


def aws(n_jobs: int) -> Callable[[], Setup]:
    """`prewarm status` of finished jobs: two GETs each (progress, summary) at 10 requests/s."""

    def setup() -> Setup:
        fake = FakePrewarmApi().start()
        stamp = datetime.now(UTC) - timedelta(hours=1)
        ids = []
        for _ in range(n_jobs):
            job = FakeJob(
                req_id=str(uuid.uuid4()),
                body={"target_type": "pop", "pops": ["IAD89-P1"]},
                urls=["https://static.example.com/a.js"],
                head_failed=[],
                pops=["IAD89-P1"],
                dead_pops=[],
                created=fake.clock() - 3600,
                created_at=stamp,
                timeout_at=stamp + timedelta(minutes=60),
            )
            fake._jobs[job.req_id] = job  # finished an hour ago
            ids.append(job.req_id)
        config = (
            f'[providers.cloudfront]\ntype = "aws"\nendpoint = "{fake.endpoint}"\n'
            'cf_domain = "d3cccc.cloudfront.net"\ntarget_type = "pop"\npops = ["IAD89-P1"]\n'
        )

        def arrivals() -> list[tuple[float, int]]:
            return [(q["t"], 1) for q in fake.requests if q["route"] in ("prewarm", "summary")]

        env = {"PREWARM_AWS_API_KEY": fake.api_key, "BENCH_ARGS": f"cloudfront:{','.join(ids)}"}
        return fake, config, arrivals, env

    return setup


SCENARIOS = [
    Scenario("generic, 10 requests/s", "requests/s", 10, 6000, generic(10, None, 20)),
    Scenario("generic, 240 URLs/s (Qiniu-like)", "URLs/s", 240, 7200, generic(None, 240, 60)),
    Scenario("qiniu, /v2/tune/prefetch", "URLs/s", 240, 7200, qiniu),
    Scenario("edgeone, CreatePrefetchTask", "requests/s", 20, 30000, edgeone),
    Scenario("aws, GET /prewarm + /summary", "requests/s", 10, 0, aws(150)),
]


def measure(s: Scenario) -> tuple[float, int, list[dict]]:
    server, config, arrivals, extra_env = s.setup()
    try:
        env, _tmp = isolated_env(config)
        env.update(extra_env)
        if "BENCH_ARGS" in env:  # a status run over existing tasks
            run(["status", "-o", "json", env.pop("BENCH_ARGS")], env)
        else:
            urls = "\n".join(f"https://static.example.com/t/{i}.js" for i in range(s.urls))
            run(["submit", "-o", "json", "-i", "-"], env, input=urls)
        points = sorted(arrivals())
        if s.limit == "requests/s":  # the vendor counts requests, whatever they carry
            points = [(t, 1) for t, _ in points]
        return turnover_rate(points, s.rate), len(points), list(getattr(server, "violations", []))
    finally:
        server.stop()  # type: ignore[attr-defined]


def turnover_rate(points: list[tuple[float, int]], rate: float) -> float:
    """Units per second as the vendor's window sees them, over the full-size requests."""
    size = Counter(n for _, n in points).most_common(1)[0][0]
    full = [t for t, n in points if n == size]
    per_window = max(1, int(rate) // size)
    turns = [b - a for a, b in zip(full, full[per_window:], strict=False)]
    return per_window * size / statistics.fmean(turns)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1, help="runs per scenario (median)")
    parser.add_argument("--only", default="", help="scenarios whose name starts with this")
    args = parser.parse_args()
    print(f"{'scenario':40} {'limit':>14} {'achieved':>10} {'fraction':>9} {'violations':>10}")
    results = []
    for s in (s for s in SCENARIOS if s.name.startswith(args.only)):
        runs = [measure(s) for _ in range(args.repeat)]
        achieved = statistics.median(r[0] for r in runs)
        violations = sum(len(r[2]) for r in runs)
        fractions = [round(r[0] / s.rate, 4) for r in runs]
        print(
            f"{s.name:40} {s.rate:>8g} {s.limit:<5} {achieved:10.1f} {achieved / s.rate:9.1%}"
            f" {violations:>10}"
        )
        results.append({"scenario": s.name, "fractions": fractions, "violations": violations})
    print(json.dumps({"runs": args.repeat, "results": results}))


if __name__ == "__main__":
    main()
