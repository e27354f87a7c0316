"""The fake CDN server and the "fake" provider plugin behave as documented.

Tests of the engine and the CLI are built on these two, so they get their own checks.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import BROKEN_PLUGINS_DIR, PLUGINS_DIR
from fakes.generic import FakeCdn
from prewarm_fake import FakeProvider

from prewarm_cli.errors import (
    AuthError,
    BatchTooLarge,
    InvalidRequest,
    NotFoundError,
    QuotaExhausted,
    RateLimited,
    RetryableError,
    UnknownOutcome,
    UsageError,
)
from prewarm_cli.plugin import Capability, State, SubmitOptions

NO_OPTIONS = SubmitOptions()
SINCE = datetime(2024, 1, 1, tzinfo=UTC)


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_provider(cdn: FakeCdn, **settings: Any) -> FakeProvider:
    base: dict[str, Any] = {
        "endpoint": cdn.url,
        "api_key": "test-key",
        "timeout": 0.5,
        "max_batch": 50,
        "lookup": True,
    }
    base.update(settings)
    return FakeProvider("fake", base)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def cdn(clock: FakeClock) -> Iterator[FakeCdn]:
    with FakeCdn(clock=clock) as server:
        yield server


@pytest.fixture
def provider(cdn: FakeCdn) -> Iterator[FakeProvider]:
    p = make_provider(cdn)
    yield p
    p.close()


def urls(*names: str) -> list[str]:
    return [f"https://cdn.example.com/{n}" for n in names]


# --- server basics, over raw HTTP ---


def test_auth_required(cdn: FakeCdn) -> None:
    with httpx.Client(base_url=cdn.url) as client:
        missing = client.post("/v1/prefetch", json={"urls": urls("a")})
        wrong = client.get("/v1/quota", headers={"X-Api-Key": "nope"})
        right = client.get("/v1/quota", headers={"X-Api-Key": "test-key"})
    assert missing.status_code == 401
    assert missing.json() == {"error": "auth", "message": "invalid api key"}
    assert wrong.status_code == 401
    assert right.status_code == 200
    assert cdn.accepted_counts() == {}
    assert [r["status"] for r in cdn.requests] == [401, 401, 200]
    assert cdn.requests[0]["urls"] == 1
    assert cdn.requests[0]["path"] == "/v1/prefetch"


def test_wrong_key_is_auth_error(cdn: FakeCdn) -> None:
    p = make_provider(cdn, api_key="wrong")
    with pytest.raises(AuthError) as info:
        p.submit_batch(urls("a"), NO_OPTIONS)
    assert info.value.provider == "fake"
    assert info.value.request_id == "r-1"
    assert cdn.submits == []


def test_unknown_task_and_path_are_404(cdn: FakeCdn, provider: FakeProvider) -> None:
    with httpx.Client(base_url=cdn.url, headers={"X-Api-Key": "test-key"}) as client:
        assert client.get("/v1/tasks/t-99").json() == {"error": "not_found"}
        assert client.get("/v1/nothing").status_code == 404
    with pytest.raises(NotFoundError):
        provider.fetch_status(["t-99"])


def test_submit_accepts_and_reports_task(cdn: FakeCdn, provider: FakeProvider) -> None:
    batch = urls("a", "b", "c")
    result = provider.submit_batch(batch, NO_OPTIONS)
    assert result.task_id == "t-1"
    assert result.accepted == tuple(batch)
    assert result.rejected == {}
    assert result.quota is None  # no daily quota: remaining is null
    assert cdn.submits == [batch]
    assert cdn.tasks["t-1"].urls == batch
    assert provider.submit_batch(urls("d"), NO_OPTIONS).task_id == "t-2"


def test_submit_passes_headers_and_mode(cdn: FakeCdn, provider: FakeProvider) -> None:
    options = SubmitOptions(headers=(("Accept-Encoding", "gzip"),), extra={"fake_mode": "fast"})
    provider.submit_batch(urls("a"), options)
    body = cdn.submit_bodies[0]
    assert body["headers"] == {"Accept-Encoding": "gzip"}
    assert body["mode"] == "fast"
    assert cdn.tasks["t-1"].mode == "fast"


def test_batch_limit(cdn: FakeCdn, provider: FakeProvider) -> None:
    cdn.max_batch = 3
    with pytest.raises(BatchTooLarge) as info:
        provider.submit_batch(urls("a", "b", "c", "d"), NO_OPTIONS)
    assert info.value.limit == 3
    assert cdn.accepted_counts() == {}
    assert provider.submit_batch(urls("a", "b", "c"), NO_OPTIONS).task_id == "t-1"


def test_rejected_urls_are_listed_and_the_rest_accepted(
    cdn: FakeCdn, provider: FakeProvider
) -> None:
    batch = urls("a", "reject-me", "b")
    result = provider.submit_batch(batch, NO_OPTIONS)
    assert result.rejected == {batch[1]: "blocked by vendor policy"}
    assert result.accepted == (batch[0], batch[2])
    assert cdn.accepted_urls() == {batch[0], batch[2]}


def test_all_rejected_creates_no_task(cdn: FakeCdn, provider: FakeProvider) -> None:
    result = provider.submit_batch(urls("reject-1", "reject-2"), NO_OPTIONS)
    assert result.task_id is None
    assert result.accepted == ()
    assert len(result.rejected) == 2
    assert cdn.tasks == {}


def test_quota_exhaustion_accepts_nothing(cdn: FakeCdn, provider: FakeProvider) -> None:
    cdn.daily_quota = 5
    first = provider.submit_batch(urls("a", "b", "c"), NO_OPTIONS)
    assert first.quota is not None
    assert first.quota.remaining == 2
    assert first.quota.source == "last_response"
    with pytest.raises(QuotaExhausted):
        provider.submit_batch(urls("d", "e", "f"), NO_OPTIONS)
    assert cdn.accepted_urls() == set(urls("a", "b", "c"))
    quota = provider.quota()
    assert (quota.daily, quota.remaining, quota.source) == (5, 2, "api")
    assert provider.submit_batch(urls("d", "e"), NO_OPTIONS).quota.remaining == 0  # type: ignore[union-attr]


def test_quota_without_daily_limit(provider: FakeProvider) -> None:
    quota = provider.quota()
    assert (quota.daily, quota.remaining) == (None, None)


# --- fault injection, seen through the provider's error mapping ---


@pytest.mark.parametrize(
    ("kind", "error", "accepted"),
    [
        ("503", UnknownOutcome, False),  # a 5xx to a submit: the outcome is unknown
        ("500", UnknownOutcome, True),
        ("drop_before", UnknownOutcome, False),
        ("drop_after", UnknownOutcome, True),
    ],
)
def test_submit_faults(
    cdn: FakeCdn, provider: FakeProvider, kind: str, error: type[Exception], accepted: bool
) -> None:
    cdn.fail_next(kind)
    batch = urls("a", "b")
    with pytest.raises(error) as info:
        provider.submit_batch(batch, NO_OPTIONS)
    assert type(info.value) is error  # e.g. a 503 is not reported as rate limiting
    assert info.value.provider == "fake"  # type: ignore[attr-defined]
    assert cdn.accepted_urls() == (set(batch) if accepted else set())
    # the fault is used up: the next request goes through
    provider.submit_batch(urls("c"), NO_OPTIONS)
    assert urls("c")[0] in cdn.accepted_urls()
    assert cdn.pending_faults == []


def test_429_with_retry_after(cdn: FakeCdn, provider: FakeProvider) -> None:
    cdn.fail_next("429", retry_after=1.5)
    cdn.fail_next("429")
    for expected in (1.5, None):
        with pytest.raises(RateLimited) as info:
            provider.submit_batch(urls("a"), NO_OPTIONS)
        assert info.value.retry_after == expected
    assert cdn.accepted_counts() == {}
    assert [r["status"] for r in cdn.requests] == [429, 429]


def test_fault_count(cdn: FakeCdn, provider: FakeProvider) -> None:
    cdn.fail_next("503", 2)
    for _ in range(2):
        with pytest.raises(UnknownOutcome):
            provider.submit_batch(urls("a"), NO_OPTIONS)
    provider.submit_batch(urls("a"), NO_OPTIONS)
    assert cdn.accepted_counts() == {urls("a")[0]: 1}
    assert [r["status"] for r in cdn.requests] == [503, 503, 200]


def test_faults_match_their_path(cdn: FakeCdn, provider: FakeProvider) -> None:
    cdn.fail_next("500", path="/v1/tasks/")
    task_id = provider.submit_batch(urls("a"), NO_OPTIONS).task_id  # not affected
    assert task_id is not None
    with pytest.raises(RetryableError) as info:  # 500 outside submit: safe to retry
        provider.fetch_status([task_id])
    assert type(info.value) is RetryableError
    assert provider.fetch_status([task_id])[0].task_id == task_id


def test_dropped_status_is_retryable(cdn: FakeCdn, provider: FakeProvider) -> None:
    task_id = provider.submit_batch(urls("a"), NO_OPTIONS).task_id
    assert task_id is not None
    cdn.fail_next("drop_after", path=f"/v1/tasks/{task_id}")
    with pytest.raises(RetryableError) as info:
        provider.fetch_status([task_id])
    assert type(info.value) is RetryableError


def test_slow_reply_is_a_read_timeout_after_acceptance(
    cdn: FakeCdn, provider: FakeProvider
) -> None:
    cdn.slow_seconds = 1.0  # the provider's timeout is 0.5 s
    cdn.fail_next("slow")
    batch = urls("a", "b")
    with pytest.raises(UnknownOutcome, match="ReadTimeout"):  # before the reply came
        provider.submit_batch(batch, NO_OPTIONS)
    assert cdn.accepted_urls() == set(batch)  # accepted before the client gave up


def test_latency_delays_submits(cdn: FakeCdn, provider: FakeProvider) -> None:
    cdn.latency = 0.2
    started = time.monotonic()
    provider.submit_batch(urls("a"), NO_OPTIONS)
    assert time.monotonic() - started >= 0.2


def test_invalid_names_one_url(cdn: FakeCdn, provider: FakeProvider) -> None:
    cdn.fail_next("invalid")
    batch = urls("a", "b")
    with pytest.raises(InvalidRequest) as info:
        provider.submit_batch(batch, NO_OPTIONS)
    assert info.value.urls == {batch[0]: "malformed url"}
    assert cdn.accepted_counts() == {}


def test_invalid_unnamed_only_hits_batches_with_poison(
    cdn: FakeCdn, provider: FakeProvider
) -> None:
    cdn.fail_next("invalid_unnamed", -1)
    clean = urls("a", "b")
    poisoned = urls("c", "poison", "d")
    assert provider.submit_batch(clean, NO_OPTIONS).accepted == tuple(clean)
    with pytest.raises(InvalidRequest) as info:
        provider.submit_batch(poisoned, NO_OPTIONS)
    assert info.value.urls is None
    # splitting isolates the poisoned URL
    assert provider.submit_batch(poisoned[:1], NO_OPTIONS).task_id is not None
    with pytest.raises(InvalidRequest):
        provider.submit_batch(poisoned[1:], NO_OPTIONS)
    with pytest.raises(InvalidRequest):
        provider.submit_batch(poisoned[1:2], NO_OPTIONS)
    provider.submit_batch(poisoned[2:], NO_OPTIONS)
    assert cdn.accepted_urls() == {*clean, poisoned[0], poisoned[2]}


def test_invalid_unnamed_count_is_used_only_by_poison(cdn: FakeCdn, provider: FakeProvider) -> None:
    cdn.fail_next("invalid_unnamed", 1)
    provider.submit_batch(urls("a"), NO_OPTIONS)
    provider.submit_batch(urls("b"), NO_OPTIONS)
    with pytest.raises(InvalidRequest):
        provider.submit_batch(urls("poison"), NO_OPTIONS)
    assert provider.submit_batch(urls("poison"), NO_OPTIONS).task_id is not None


def test_unknown_fault_kind_is_refused(cdn: FakeCdn) -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        cdn.fail_next("418")


def test_connection_refused_is_retryable() -> None:
    with FakeCdn() as cdn:
        p = make_provider(cdn)
    with pytest.raises(RetryableError, match="cannot connect") as info:  # the server is gone
        p.submit_batch(urls("a"), NO_OPTIONS)
    assert type(info.value) is RetryableError


# --- rate violation detector ---


def test_rate_window_with_injected_clock(cdn: FakeCdn, clock: FakeClock) -> None:
    cdn.rps = 2
    cdn.rate_slack = 0.0
    p = make_provider(cdn)
    for step in (0.0, 0.5, 0.4):  # the third request is within 1 s of the first
        clock.advance(step)
        p.submit_batch(urls(f"x{clock.now}"), NO_OPTIONS)
    assert [v["kind"] for v in cdn.violations] == ["rps"]
    assert cdn.violations[0]["count"] == 3
    clock.advance(1.2)  # 2.1: the window holds this one only
    p.submit_batch(urls("y"), NO_OPTIONS)
    clock.advance(0.5)
    p.submit_batch(urls("z"), NO_OPTIONS)
    assert len(cdn.violations) == 1


def test_rate_window_is_half_open(cdn: FakeCdn, clock: FakeClock) -> None:
    cdn.rps = 2
    cdn.rate_slack = 0.0
    p = make_provider(cdn)
    for step in (0.0, 0.5, 0.5, 0.5):  # exactly rps per second, evenly spaced
        clock.advance(step)
        p.submit_batch(urls(f"x{clock.now}"), NO_OPTIONS)
    assert cdn.violations == []


def test_rate_slack_tolerates_jitter(cdn: FakeCdn, clock: FakeClock) -> None:
    cdn.rps = 1
    p = make_provider(cdn)
    p.submit_batch(urls("a"), NO_OPTIONS)
    clock.advance(0.97)  # within the default 0.05 s slack
    p.submit_batch(urls("b"), NO_OPTIONS)
    assert cdn.violations == []
    clock.advance(0.9)
    p.submit_batch(urls("c"), NO_OPTIONS)
    assert [v["kind"] for v in cdn.violations] == ["rps"]


def test_url_rate_window(cdn: FakeCdn, clock: FakeClock) -> None:
    cdn.ups = 10
    p = make_provider(cdn)
    p.submit_batch(urls(*"abcdef"), NO_OPTIONS)
    clock.advance(0.5)
    p.submit_batch(urls(*"ghij"), NO_OPTIONS)  # 10 URLs: at the limit
    assert cdn.violations == []
    clock.advance(0.2)
    p.submit_batch(urls("k"), NO_OPTIONS)
    assert [(v["kind"], v["count"]) for v in cdn.violations] == [("ups", 11)]


def test_refused_requests_count_towards_the_rate(cdn: FakeCdn, clock: FakeClock) -> None:
    cdn.rps = 1
    cdn.fail_next("429")
    p = make_provider(cdn)
    with pytest.raises(RateLimited):
        p.submit_batch(urls("a"), NO_OPTIONS)
    p.submit_batch(urls("a"), NO_OPTIONS)  # an immediate retry is still too fast
    assert len(cdn.violations) == 1


def test_rate_detector_in_real_time() -> None:
    # Its default clock is the real one, in seconds: a window's time slept is a new window.
    with FakeCdn(rps=1) as cdn:
        p = make_provider(cdn)
        p.submit_batch(urls("first"), NO_OPTIONS)
        time.sleep(cdn.rate_window)  # at least a window later, however loaded the machine
        p.submit_batch(urls("next-window"), NO_OPTIONS)
        assert cdn.violations == []
        p.submit_batch(urls("at-once"), NO_OPTIONS)  # the second in that window
        assert [v["kind"] for v in cdn.violations] == ["rps"]


# --- tasks ---


def test_task_state_progression(cdn: FakeCdn, clock: FakeClock, provider: FakeProvider) -> None:
    batch = urls("a", "fail-1", "b")
    task_id = provider.submit_batch(batch, NO_OPTIONS).task_id
    assert task_id == "t-1"

    (status,) = provider.fetch_status([task_id])
    assert (status.state, status.raw_state, status.pending, status.total) == (
        State.PENDING,
        "QUEUED",
        3,
        3,
    )
    clock.advance(0.1)
    (status,) = provider.fetch_status([task_id])
    assert (status.state, status.raw_state, status.in_progress) == (State.RUNNING, "RUNNING", 3)
    clock.advance(0.2)
    (status,) = provider.fetch_status([task_id])
    assert (status.state, status.raw_state) == (State.PARTIAL, "DONE")
    assert (status.succeeded, status.failed, status.pending, status.in_progress) == (2, 1, 0, 0)
    failed = [u for u in status.urls if u.state is State.FAILED]
    assert [(u.url, u.reason, u.pop) for u in failed] == [
        (batch[1], "origin returned 404", "FAKE-POP-1")
    ]
    report = provider.report([task_id])
    assert [(f.url, f.pop, f.reason) for f in report.failures] == [
        (batch[1], "FAKE-POP-1", "origin returned 404")
    ]


def test_task_final_states(cdn: FakeCdn, clock: FakeClock, provider: FakeProvider) -> None:
    ok = provider.submit_batch(urls("a", "b"), NO_OPTIONS).task_id
    bad = provider.submit_batch(urls("fail-1", "fail-2"), NO_OPTIONS).task_id
    assert ok and bad
    clock.advance(cdn.task_seconds)
    states = {s.task_id: s.state for s in provider.fetch_status([ok, bad])}
    assert states == {ok: State.SUCCEEDED, bad: State.FAILED}
    assert cdn.task_state(ok) == "DONE"


def test_task_seconds_is_mutable(cdn: FakeCdn, clock: FakeClock, provider: FakeProvider) -> None:
    cdn.task_seconds = 3.0
    task_id = provider.submit_batch(urls("a"), NO_OPTIONS).task_id
    assert task_id
    clock.advance(0.5)
    assert cdn.task_state(task_id) == "QUEUED"
    clock.advance(0.5)
    assert cdn.task_state(task_id) == "RUNNING"
    clock.advance(2.0)
    assert cdn.task_state(task_id) == "DONE"


def test_lookup(cdn: FakeCdn, provider: FakeProvider) -> None:
    a, b, c = urls("a", "b", "c")
    provider.submit_batch([a], NO_OPTIONS)
    provider.submit_batch([b, "https://cdn.example.com/reject"], NO_OPTIONS)
    found = provider.find_submitted([a, b, c, "https://cdn.example.com/reject"], SINCE)
    assert found == {a: "t-1", b: "t-2"}
    assert Capability.LOOKUP in provider.active_capabilities()
    assert Capability.LOOKUP not in make_provider(cdn, lookup=False).active_capabilities()


def test_cancel(cdn: FakeCdn, clock: FakeClock, provider: FakeProvider) -> None:
    running = provider.submit_batch(urls("a", "b"), NO_OPTIONS).task_id
    assert running
    clock.advance(0.15)
    answer = provider.cancel([running])
    assert answer["tasks"] == [{"task_id": running, "state": "CANCELLED"}]
    clock.advance(1.0)  # a cancelled task never finishes
    (status,) = provider.fetch_status([running])
    assert (status.state, status.raw_state, status.failed) == (State.CANCELLED, "CANCELLED", 2)
    assert {u.state for u in status.urls} == {State.CANCELLED}

    done = provider.submit_batch(urls("c"), NO_OPTIONS).task_id
    assert done
    clock.advance(1.0)
    with pytest.raises(UsageError, match=f"task {done} already finished"):
        provider.cancel([done])


def test_invalidate(cdn: FakeCdn, clock: FakeClock, provider: FakeProvider) -> None:
    batch = urls("a", "b")
    result = provider.invalidate_batch(batch, NO_OPTIONS)
    assert result.task_id == "p-1"
    assert result.accepted == tuple(batch)
    (status,) = provider.fetch_status(["p-1"])
    assert (status.state, status.raw_state) == (State.RUNNING, "RUNNING")
    clock.advance(cdn.task_seconds)
    (status,) = provider.fetch_status(["p-1"])
    assert (status.state, status.raw_state, status.succeeded) == (State.SUCCEEDED, "DONE", 2)
    assert cdn.submits == []  # a purge is not a prefetch


def test_concurrent_submits_are_counted_exactly(cdn: FakeCdn, provider: FakeProvider) -> None:
    batches = [urls(*(f"{i}-{j}" for j in range(5))) for i in range(24)]
    threads = [
        threading.Thread(target=provider.submit_batch, args=(b, NO_OPTIONS)) for b in batches
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    counts = cdn.accepted_counts()
    assert len(counts) == 120
    assert set(counts.values()) == {1}
    assert len(cdn.tasks) == 24


# --- the provider plugin itself ---


def test_provider_declares_its_facts(cdn: FakeCdn) -> None:
    p = make_provider(cdn, max_batch=7, rps=3.0, ups=30.0, per_day=100)
    limits = p.limits()
    assert (limits.max_batch, limits.requests_per_second, limits.urls_per_second) == (7, 3.0, 30.0)
    assert (limits.requests_per_day, limits.concurrency, limits.poll_interval) == (100, 4, 0.2)
    assert FakeProvider.name == "fake"
    assert FakeProvider.credential_env == {"api_key": "FAKE_API_KEY"}
    assert [o.key for o in FakeProvider.submit_options] == ["fake_mode", "fake_flag"]
    assert {f.name for f in FakeProvider.config_schema if f.secret} == {"api_key"}
    assert Capability.SCALE not in p.active_capabilities()


def test_entry_point_is_discoverable() -> None:
    (ep,) = [e for e in entry_points(group="prewarm.providers") if e.name == "fake"]
    assert ep.value == "prewarm_fake:FakeProvider"
    assert ep.load() is FakeProvider
    assert ep.dist is not None
    assert (ep.dist.metadata["Name"], ep.dist.version) == ("prewarm-fake-plugin", "0.1.0")
    assert "broken" not in entry_points(group="prewarm.providers").names


def test_entry_point_through_pythonpath(cli_env: dict[str, str]) -> None:
    code = (
        "from importlib.metadata import entry_points\n"
        "ep = entry_points(group='prewarm.providers')['fake']\n"
        "print(ep.load().__name__)\n"
        "import prewarm_cli\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=cli_env,
        cwd=Path(cli_env["HOME"]),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "FakeProvider"


def test_broken_plugin_fails_to_import(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BROKEN_PLUGINS_DIR))
    (ep,) = [e for e in entry_points(group="prewarm.providers") if e.name == "broken"]
    with pytest.raises(ImportError, match="simulated broken plugin"):
        ep.load()


def test_cli_env_is_isolated(cli_env: dict[str, str], tmp_path: Path) -> None:
    assert cli_env["PREWARM_CONFIG"] == str(tmp_path / "config.toml")
    assert os.environ["PREWARM_STATE_DIR"] == str(tmp_path / "state")
    assert cli_env["PYTHONPATH"].split(os.pathsep)[0] == str(PLUGINS_DIR)
    assert "FAKE_API_KEY" not in os.environ
    assert "NO_COLOR" not in cli_env


def test_fake_config(fake_config: Path, fake_cdn: FakeCdn, cli_env: dict[str, str]) -> None:
    import tomllib

    assert fake_config.stat().st_mode & 0o777 == 0o600
    config = tomllib.loads(fake_config.read_text())
    assert config["defaults"]["provider"] == "fake"
    assert config["providers"]["fake"]["endpoint"] == fake_cdn.url
    assert config["providers"]["fake"]["api_key"] == "env:FAKE_API_KEY"
    assert cli_env["FAKE_API_KEY"] == os.environ["FAKE_API_KEY"] == "test-key"


def test_the_default_report_asks_a_hundred_tasks_at_a_time(
    cdn: FakeCdn, clock: FakeClock, provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prewarm_cli.plugin import STATUS_TASKS

    task_ids = [
        provider.submit_batch(urls(f"ok-{i}", f"fail-{i}"), NO_OPTIONS).task_id or ""
        for i in range(STATUS_TASKS * 2 + 5)
    ]
    clock.advance(cdn.task_seconds)
    asked: list[int] = []
    fetch = provider.fetch_status
    monkeypatch.setattr(provider, "fetch_status", lambda ids: asked.append(len(ids)) or fetch(ids))
    report = provider.report(task_ids)
    # Only the failures of each hundred are kept: a job's million results are never all held.
    assert asked == [STATUS_TASKS, STATUS_TASKS, 5]
    assert sorted(f.url for f in report.failures) == sorted(
        urls(*(f"fail-{i}" for i in range(len(task_ids))))
    )


def test_the_default_report_names_every_task_not_found_as_status_does(
    cdn: FakeCdn, clock: FakeClock, provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A vendor that names every task it no longer keeps (Qiniu, after 7 days): the report's
    error names those of every hundred, not only those of the first."""
    from prewarm_cli.errors import NotFoundError
    from prewarm_cli.plugin import STATUS_TASKS

    ok = provider.submit_batch(urls("a"), NO_OPTIONS).task_id or ""
    clock.advance(cdn.task_seconds)
    fetch = provider.fetch_status

    def fetch_status(ids: list[str]) -> list[Any]:
        gone = [i for i in ids if i.startswith("gone-")]
        if gone:
            raise NotFoundError("no longer kept: " + ", ".join(gone))
        return fetch(ids)

    monkeypatch.setattr(provider, "fetch_status", fetch_status)
    with pytest.raises(NotFoundError) as caught:
        provider.report(["gone-1", *[ok] * STATUS_TASKS, "gone-2"])
    assert str(caught.value) == "no longer kept: gone-1, gone-2"
