"""Throughput as a fraction of each vendor's rate limit, measured on the fake servers' clocks.

Each scenario submits enough URLs to keep the limiter busy for about 30 seconds and reads the
arrival times the fake server recorded: achieved rate = (requests - 1) / (last - first). Over
30 windows, the partial first and last windows weigh about 1 % either way.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from _common import isolated_env, run
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


SCENARIOS = [
    Scenario("generic, 10 requests/s", "requests/s", 10, 6000, generic(10, None, 20)),
    Scenario("generic, 240 URLs/s (Qiniu-like)", "URLs/s", 240, 7200, generic(None, 240, 60)),
    Scenario("qiniu, /v2/tune/prefetch", "URLs/s", 240, 7200, qiniu),
    Scenario("edgeone, CreatePrefetchTask", "requests/s", 20, 30000, edgeone),
]


def measure(s: Scenario) -> tuple[float, int, list[dict]]:
    server, config, arrivals, extra_env = s.setup()
    try:
        env, _tmp = isolated_env(config)
        env.update(extra_env)
        urls = "\n".join(f"https://static.example.com/t/{i}.js" for i in range(s.urls))
        run(["submit", "-o", "json", "-i", "-"], env, input=urls)
        points = sorted(arrivals())
        span = points[-1][0] - points[0][0]
        if s.limit == "requests/s":
            achieved = (len(points) - 1) / span
        else:  # URLs after the first request, over the span
            achieved = sum(n for _, n in points[1:]) / span
        return achieved, len(points), getattr(server, "violations", [])
    finally:
        server.stop()  # type: ignore[attr-defined]


def main() -> None:
    print(f"{'scenario':40} {'limit':>14} {'achieved':>10} {'fraction':>9} {'violations':>10}")
    for s in SCENARIOS:
        achieved, _requests, violations = measure(s)
        print(
            f"{s.name:40} {s.rate:>8g} {s.limit:<5} {achieved:10.1f} {achieved / s.rate:9.1%}"
            f" {len(violations):>10}"
        )
    print(json.dumps({"note": "fractions below 100% are the pacing safety margin"}))


if __name__ == "__main__":
    main()
