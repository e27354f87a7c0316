"""The EdgeOne provider end to end: the CLI, through the real SDK, against a fake teo API."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT
from fakes.edgeone import FAIL_MESSAGE, REJECT_REASON, FakeEdgeOne, canonical_request, tc3_signature
from helpers import urls

from prewarm_cli.errors import (
    AuthError,
    BatchTooLarge,
    ConfigError,
    InvalidRequest,
    NotFoundError,
    ProviderError,
    QuotaExhausted,
    RateLimited,
    RetryableError,
    UnknownOutcome,
)
from prewarm_cli.plugin import State, SubmitOptions

CREATE = "CreatePrefetchTask"
DESCRIBE = "DescribePrefetchTasks"
QUOTA = "DescribeContentQuota"
_ENV_DROPPED = (
    "TENCENTCLOUD_SECRET_ID",
    "TENCENTCLOUD_SECRET_KEY",
    "TENCENTCLOUD_SESSION_TOKEN",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
)


class Clock:
    """Wall time plus an offset the test moves forward (tasks progress on it)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def fake(clock: Clock) -> Iterator[FakeEdgeOne]:
    with FakeEdgeOne(clock=clock) as api:
        yield api


@pytest.fixture
def configure(
    fake: FakeEdgeOne,
    write_config: Callable[[str], Path],
    cli_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[..., Path]:
    """Writes an edgeone config pointed at the fake (extra lines go into its table)."""
    for name in _ENV_DROPPED:
        cli_env.pop(name, None)
        monkeypatch.delenv(name, raising=False)
    cli_env["TENCENTCLOUD_SECRET_ID"] = fake.secret_id
    cli_env["TENCENTCLOUD_SECRET_KEY"] = fake.secret_key

    def write(extra: str = "", *, endpoint: str | None = None) -> Path:
        return write_config(
            f"""\
[defaults]
provider = "edgeone"
retries = 4
retry_timeout = 20

[providers.edgeone]
type = "edgeone"
zone_id = "{fake.zone_id}"
endpoint = "{endpoint or fake.url}"
poll_interval = 0.1
lookup_settle = 0.2
{extra}"""
        )

    write()
    return write


def submit(run_cli: Any, *args: str, input: str | None = None) -> tuple[Any, Any]:
    r = run_cli("submit", "-o", "json", *args, input=input)
    return r, (json.loads(r.stdout) if r.stdout.strip() else None)


def create_codes(fake: FakeEdgeOne) -> list[str | None]:
    return [c["code"] for c in fake.calls(CREATE)]


# --------------------------------------------------------------------------- submit


def test_batches_by_the_vendor_batch_read_once(run_cli, configure, fake: FakeEdgeOne) -> None:
    fake.batch = 7
    r, data = submit(run_cli, *urls(20))
    assert r.returncode == 0, r.stderr
    assert sorted(len(s) for s in fake.submits) == [6, 7, 7]
    assert data["accepted"] == data["total"] == 20 and data["state"] == "submitted"
    assert {t["task_id"] for t in data["tasks"]} == {c["job_id"] for c in fake._created}
    # limits() reads Batch once; the engine's quota check reuses that read
    assert len(fake.calls(QUOTA)) == 1
    assert fake.violations == []
    body = fake.bodies[0]
    assert body["ZoneId"] == fake.zone_id
    assert not {"Mode", "PrefetchMediaSegments", "Headers", "EncodeUrl"} & set(body)


def test_config_batch_size_only_lowers_the_vendor_batch(
    run_cli, configure, fake: FakeEdgeOne
) -> None:
    fake.batch = 7
    configure("batch_size = 5\n")
    r, _ = submit(run_cli, *urls(12))
    assert r.returncode == 0, r.stderr
    assert sorted(len(s) for s in fake.submits) == [2, 5, 5]
    configure("batch_size = 10\n")
    r = run_cli("submit", "--force", *urls(3, "https://static.example.com/g"))
    assert r.returncode == 3
    assert "above the vendor limit of 7" in r.stderr
    assert len(fake.submits) == 3  # nothing more was sent
    r = run_cli("jobs", "-o", "json")
    assert len(json.loads(r.stdout)) == 1  # and no job of it was left to resume


def test_invalidate_that_no_selected_provider_can_honour_is_refused(
    run_cli, configure, fake: FakeEdgeOne
) -> None:
    r = run_cli("submit", "-p", "direct", "--invalidate", *urls(2))
    assert r.returncode == 2, r.stderr
    assert "--invalidate: direct cannot purge" in r.stderr
    assert json.loads(run_cli("jobs", "-o", "json").stdout) == []  # nothing left behind
    r = run_cli("submit", "-p", "direct", "--invalidate", "--dry-run", *urls(2))
    assert r.returncode == 2 and "direct cannot purge" in r.stderr  # as the run would be


def test_a_batch_size_above_the_stand_in_is_kept_when_the_batch_cannot_be_read(
    run_cli, configure, fake: FakeEdgeOne
) -> None:
    # The zone's Batch cannot be read (a fault, a CAM policy without the action): 100 only
    # stands in for it, and a batch_size above it is sent (the vendor refuses what is over).
    fake.batch = 1000
    fake.fail_next(QUOTA, "InternalError", -1)
    configure("batch_size = 200\n")
    r, data = submit(run_cli, *urls(450))
    assert r.returncode == 0, r.stderr
    assert data["accepted"] == 450
    assert sorted(len(s) for s in fake.submits) == [50, 200, 200]


def test_daily_quota_defers_before_sending_and_resume_sends_the_rest(
    run_cli, configure, fake: FakeEdgeOne
) -> None:
    fake.batch = 4
    fake.daily = 10
    items = urls(25)
    r = run_cli("submit", "--dry-run", "-o", "json", *items)
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)["providers"]["edgeone"]
    assert plan["would_defer"] == 15 and plan["quota"]["remaining"] == 10
    assert (plan["batch_size"], plan["batches"]) == (4, 7)
    assert fake.submits == []

    r, data = submit(run_cli, *items)
    assert r.returncode == 5, r.stderr
    assert (data["accepted"], data["deferred"], data["state"]) == (10, 15, "incomplete")
    assert set(create_codes(fake)) == {None}  # what fits was sent; nothing refused
    assert f"--resume {data['job_id']}" in r.stderr
    assert fake.prefetch_available() == 0

    fake.daily = 100  # the next day (and a bigger plan)
    fake.new_day()
    r, again = submit(run_cli, "--resume", data["job_id"])
    assert r.returncode == 0, r.stderr
    assert again["job_id"] == data["job_id"]
    assert (again["accepted"], again["deferred"]) == (25, 0)
    assert fake.accepted_counts() == {u: 1 for u in items}


def test_daily_quota_refused_mid_run_defers_with_request_id(
    run_cli, configure, fake: FakeEdgeOne
) -> None:
    fake.batch = 5
    configure("concurrency = 1\n")
    fake.fail_next(CREATE, "LimitExceeded.DailyQuota", 1)
    r, data = submit(run_cli, *urls(20))
    assert r.returncode == 5, r.stderr
    assert data["accepted"] == 0 and data["deferred"] == 20
    refused = fake.calls(CREATE)[0]
    assert refused["code"] == "LimitExceeded.DailyQuota"
    assert f"request id {refused['request_id']}" in r.stderr
    assert len(fake.calls(CREATE)) == 1  # deferred at once, not retried


def test_options_pass_through(run_cli, configure, fake: FakeEdgeOne) -> None:
    r, _ = submit(
        run_cli,
        "--mode",
        "edge",
        "--media-segments",
        "-H",
        "X-Warm: 1",
        "-H",
        "User-Agent: prewarm",
        "https://static.example.com/live/index.m3u8",
    )
    assert r.returncode == 0, r.stderr
    body = fake.bodies[0]
    assert body["Mode"] == "edge"
    assert body["PrefetchMediaSegments"] == "on"
    assert body["Headers"] == [
        {"Name": "X-Warm", "Value": "1"},
        {"Name": "User-Agent", "Value": "prewarm"},
    ]
    assert fake.edge_used == 1 and fake.daily_used == 0  # edge mode has its own quota

    r = run_cli("submit", "--mode", "turbo", "https://static.example.com/a")
    assert r.returncode == 2
    assert "turbo" in r.stderr


def test_non_ascii_urls_are_sent_percent_encoded(
    run_cli, configure, fake: FakeEdgeOne, clock: Clock
) -> None:
    items = ["https://例子.example.com/文件.txt?v=版本", "https://static.example.com/ok.js"]
    r, data = submit(run_cli, *items)
    assert r.returncode == 0, r.stderr
    assert data["accepted"] == 2
    assert fake.submits == [
        ["https://xn--fsqu00a.example.com/%E6%96%87%E4%BB%B6.txt?v=%E7%89%88%E6%9C%AC", items[1]]
    ]
    # EncodeUrl is deprecated (and disabled in the API definition): never sent
    assert "EncodeUrl" not in fake.bodies[0]
    assert fake.violations == []
    clock.advance(1)
    r = run_cli("status", "--wait", "-o", "json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["succeeded"] == 2


def test_vendor_refusals_become_rejections(run_cli, configure, fake: FakeEdgeOne) -> None:
    fake.domains = ("static.example.com",)
    items = [*urls(3), "https://static.example.com/reject-me.js", "https://other.example.org/x.js"]
    r, data = submit(run_cli, *items)
    assert r.returncode == 4, r.stderr
    rejected = {x["url"]: x["reason"] for x in data["rejected"]}
    assert rejected["https://static.example.com/reject-me.js"] == REJECT_REASON  # FailedList
    # InvalidParameter.DomainNotFound names the host: only its URL is rejected
    assert rejected["https://other.example.org/x.js"].startswith("InvalidParameter.DomainNotFound")
    assert data["accepted"] == 3
    assert fake.accepted_counts() == {u: 1 for u in urls(3)}


# --------------------------------------------------------------------------- errors


def test_auth_failure_exit_3_with_request_id_and_no_secret(
    run_cli, configure, fake: FakeEdgeOne
) -> None:
    wrong = "definitely-not-the-key"
    r = run_cli("submit", "-o", "json", *urls(3), env_extra={"TENCENTCLOUD_SECRET_KEY": wrong})
    assert r.returncode == 3
    assert "AuthFailure.SignatureFailure" in r.stderr
    refused = fake.log[-1]
    assert refused["code"] == "AuthFailure.SignatureFailure"
    assert f"request id {refused['request_id']}" in r.stderr
    assert "hint: check secret_id and secret_key: `prewarm config show` says where" in r.stderr
    error = json.loads(r.stdout)["error"]
    assert error["code"] == "auth" and error["request_id"] == refused["request_id"]
    assert wrong not in r.stdout + r.stderr and fake.secret_key not in r.stdout + r.stderr
    assert fake.submits == []
    # nothing is lost: the job resumes once the key is right
    jobs = json.loads(run_cli("jobs", "-o", "json").stdout)
    r, data = submit(run_cli, "--resume", jobs[0]["job_id"])
    assert r.returncode == 0 and data["accepted"] == 3

    r = run_cli("quota", env_extra={"TENCENTCLOUD_SECRET_ID": "AKIDunknown"})
    assert r.returncode == 3 and "AuthFailure.SecretIdNotFound" in r.stderr


def test_session_token_for_temporary_credentials(run_cli, configure, fake: FakeEdgeOne) -> None:
    fake.token = "sts-session-token"
    r = run_cli("quota", "-o", "json")
    assert r.returncode == 3
    assert "AuthFailure.TokenFailure" in r.stderr and "TENCENTCLOUD_SESSION_TOKEN" in r.stderr
    r = run_cli("quota", "-o", "json", env_extra={"TENCENTCLOUD_SESSION_TOKEN": fake.token})
    assert r.returncode == 0, r.stderr
    assert fake.token not in r.stdout + r.stderr


def test_error_reply_with_charset_content_type_is_still_an_error(
    run_cli, configure, fake: FakeEdgeOne
) -> None:
    # The SDK raises only for Content-Type exactly application/json; we read the envelope.
    fake.fail_next(
        CREATE, "UnauthorizedOperation.NoPermission", content_type="application/json; charset=utf-8"
    )
    r, _ = submit(run_cli, *urls(2))
    assert r.returncode == 3
    assert "UnauthorizedOperation.NoPermission" in r.stderr
    assert f"teo:CreatePrefetchTask on zone {fake.zone_id}" in r.stderr


def test_unknown_zone_is_a_config_error(
    run_cli, configure, fake: FakeEdgeOne, write_config
) -> None:
    # an InvalidParameter.* code, yet about the zone: exit 3, not a rejection of the URLs
    code = fake.zone_error_code = "InvalidParameter.ZoneNotFound"
    path = configure()
    write_config(path.read_text().replace(fake.zone_id, "zone-nosuchsite"))
    r = run_cli("submit", *urls(2))
    assert r.returncode == 3
    assert "zone 'zone-nosuchsite'" in r.stderr and code in r.stderr
    assert "hint: check zone_id in [providers.edgeone]" in r.stderr
    (job,) = json.loads(run_cli("jobs", "-o", "json").stdout)  # kept: --resume once fixed
    assert job["not_sent"] == 2 and fake.submits == []
    r = run_cli("config", "check", "--online", "-o", "table")
    assert r.returncode == 3
    (line,) = [x for x in r.stdout.splitlines() if x.startswith("error  edgeone")]
    assert "zone 'zone-nosuchsite'" in line and "?" not in line  # what is wrong, not "?"


def test_throttling_is_retried_and_sends_each_url_once(
    run_cli, configure, fake: FakeEdgeOne
) -> None:
    # teo's own throttling code (the SDK's StandardRetryer would not even retry it)
    fake.fail_next(CREATE, "LimitExceeded.RateLimitExceeded", 1)
    r, data = submit(run_cli, *urls(10))
    assert r.returncode == 0, r.stderr
    assert data["accepted"] == 10
    assert create_codes(fake) == ["LimitExceeded.RateLimitExceeded", None]
    assert fake.accepted_counts() == {u: 1 for u in urls(10)}
    # throttled not accepted: no lookup was needed
    assert fake.calls(DESCRIBE) == []


def test_throttled_beyond_retries_defers_exit_5(run_cli, configure, fake: FakeEdgeOne) -> None:
    path = configure()
    configure_text = path.read_text().replace("retries = 4", "retries = 2")
    path.write_text(configure_text)
    fake.fail_next(CREATE, "RequestLimitExceeded.UinLimitExceeded", -1)
    r, data = submit(run_cli, *urls(4))
    assert r.returncode == 5
    assert data["deferred"] == 4 and data["accepted"] == 0
    assert len(fake.calls(CREATE)) == 2  # [defaults] retries = 2
    fake.clear_faults()
    r, data = submit(run_cli, "--resume", data["job_id"])
    assert r.returncode == 0 and data["accepted"] == 4


def test_requests_are_paced_under_20_per_second(
    run_cli, configure, fake: FakeEdgeOne, clock: Clock
) -> None:
    fake.batch = 1
    items = urls(26)
    r, data = submit(run_cli, *items)
    assert r.returncode == 0, r.stderr
    assert len(data["tasks"]) == 26
    times = [c["t"] for c in fake.calls(CREATE)]
    assert len(times) == 26 and fake.violations == []
    assert times[-1] - times[0] >= 1.0  # 26 requests at 20/s: two windows
    # status asks once per task (26 listings in one engine call): paced as well
    clock.advance(1)
    r = run_cli("status", "-o", "json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["succeeded"] == 26
    describes = [c["t"] for c in fake.calls(DESCRIBE)]
    assert len(describes) == 26 and fake.violations == []
    assert describes[-1] - describes[0] >= 1.0


@pytest.mark.parametrize(
    ("kind", "after", "accepted_by_first"),
    [
        ("InternalError", True, True),
        ("drop", True, True),
        ("drop", False, False),
        ("http_502", False, False),
    ],
)
def test_unknown_outcome_is_looked_up_never_sent_twice(
    run_cli, configure, fake: FakeEdgeOne, kind: str, after: bool, accepted_by_first: bool
) -> None:
    fake.batch = 8
    items = urls(20)
    fake.fail_next(CREATE, kind, 1, after=after)
    r, data = submit(run_cli, *items)
    assert r.returncode == 0, r.stderr
    assert data["accepted"] == 20 and data["unknown"] == 0
    assert fake.accepted_counts() == {u: 1 for u in items}  # never sent twice
    lookups = [c for c in fake.calls(DESCRIBE) if "target" in c["filters"]]
    assert lookups, "the unanswered batch was looked up by target"
    for call in lookups:
        assert call["params"]["StartTime"] < call["params"]["EndTime"]
    if accepted_by_first:
        assert len(fake.calls(CREATE)) == 3  # found: not sent again
        assert any("job-id" in c["filters"] for c in fake.calls(DESCRIBE))
    else:
        assert len(fake.calls(CREATE)) == 4  # not found: sent again


def test_a_lookup_whose_probes_were_refused_lists_the_window(
    run_cli, configure, fake: FakeEdgeOne
) -> None:
    # The URLs a lookup probes by target (first, middle, last) were refused in FailedList, so
    # no task holds them; the others were taken. They must be found, not sent twice.
    items = [
        "https://cdn.example.com/reject-0.js",
        "https://cdn.example.com/ok-1.js",
        "https://cdn.example.com/reject-2.js",
        "https://cdn.example.com/ok-3.js",
        "https://cdn.example.com/reject-4.js",
    ]
    fake.fail_next(CREATE, "drop", after=True)
    r, data = submit(run_cli, *items)
    assert r.returncode == 4, r.stderr  # the refused ones: sent again, refused again
    assert data["accepted"] == 2 and len(data["rejected"]) == 3 and data["unknown"] == 0
    assert fake.accepted_counts() == {items[1]: 1, items[3]: 1}  # never sent twice
    windows = [c for c in fake.calls(DESCRIBE) if not c["filters"]]
    assert windows, "the window's tasks were listed"
    assert all(c["params"]["StartTime"] < c["params"]["EndTime"] for c in windows)
    assert len(fake.calls(CREATE)) == 2  # the refused three once more, alone


def test_an_answer_without_job_id_is_looked_up_not_failed(
    run_cli, configure, fake: FakeEdgeOne
) -> None:
    # EdgeOne made the job but its answer does not name it: looked up at once, not recorded
    # failed (a --resume would have sent it again unlooked).
    items = urls(3)
    fake.fail_next(CREATE, "no_job_id")
    r, data = submit(run_cli, *items)
    assert r.returncode == 0, r.stderr
    assert data["accepted"] == 3 and data["failed"] == [] and data["unknown"] == 0
    assert len(fake.calls(CREATE)) == 1
    assert fake.accepted_counts() == {u: 1 for u in items}
    # What the answer refused by name stays refused, and is not sent again; the rest is
    # looked up.
    refused = "https://cdn.example.com/reject-me.js"
    fake.fail_next(CREATE, "no_job_id")
    r, data = submit(run_cli, refused, "https://cdn.example.com/taken.js")
    assert r.returncode == 4, r.stderr
    assert data["accepted"] == 1 and [x["url"] for x in data["rejected"]] == [refused]
    assert len(fake.calls(CREATE)) == 2  # one more: nothing sent again


def test_batch_quota_refusal_rereads_batch_and_shrinks(
    run_cli, configure, fake: FakeEdgeOne
) -> None:
    fake.batch = 4
    fake.reported_batches.append(10)  # the plan changed after our first read
    items = urls(12)
    r, data = submit(run_cli, *items)
    assert r.returncode == 0, r.stderr
    assert data["accepted"] == 12
    assert "LimitExceeded.BatchQuota" in create_codes(fake)
    assert all(len(s) <= 4 for s in fake.submits)
    assert fake.accepted_counts() == {u: 1 for u in items}


# --------------------------------------------------------------------------- status, report


def test_status_wait_report_and_state_mapping(
    run_cli, configure, fake: FakeEdgeOne, clock: Clock
) -> None:
    items = [
        *urls(2),
        "https://static.example.com/fail.js",
        "https://static.example.com/timeout.js",
        "https://static.example.com/status-invalid.js",
    ]
    fake.task_seconds = 60  # nothing finishes until the clock is moved
    r, data = submit(run_cli, *items)
    assert r.returncode == 0, r.stderr
    r = run_cli("status", data["job_id"], "-o", "json")
    assert r.returncode == 0  # still running
    st = json.loads(r.stdout)
    assert (st["state"], st["raw_state"], st["in_progress"]) == ("running", "processing", 5)

    clock.advance(61)
    r = run_cli("status", data["job_id"], "--wait", "--interval", "0.1", "-o", "json")
    assert r.returncode == 4, r.stderr
    st = json.loads(r.stdout)
    assert st["state"] == "partial"
    assert (st["total"], st["succeeded"], st["failed"], st["in_progress"]) == (5, 2, 3, 0)
    assert st["raw_state"] == "failed,invalid,success,timeout"

    r = run_cli("report", "-o", "json")
    assert r.returncode == 4
    failures = {f["url"]: f["reason"] for f in json.loads(r.stdout)["failures"]}
    assert failures == {
        "https://static.example.com/fail.js": f"originPullFailed: {FAIL_MESSAGE}",
        "https://static.example.com/timeout.js": "timeout",
        "https://static.example.com/status-invalid.js": (
            "invalid: the origin answered with a non-2xx status"
        ),
    }


def test_status_by_task_id_without_journal_and_paging(
    run_cli, configure, fake: FakeEdgeOne, clock: Clock, cli_env
) -> None:
    fake.batch = 1500
    items = urls(1200)
    r, data = submit(run_cli, "-i", "-", input="\n".join(items) + "\n")
    assert r.returncode == 0, r.stderr
    (task,) = data["tasks"]
    clock.advance(1)
    fresh = {"PREWARM_STATE_DIR": str(Path(cli_env["PREWARM_STATE_DIR"]).parent / "fresh")}
    r = run_cli("status", f"edgeone:{task['task_id']}", "-o", "json", env_extra=fresh)
    assert r.returncode == 0, r.stderr
    st = json.loads(r.stdout)
    assert st["job_id"] is None and st["state"] == "succeeded" and st["succeeded"] == 1200
    pages = [c["params"] for c in fake.calls(DESCRIBE)]
    assert [(p["Offset"], p["Limit"]) for p in pages] == [(0, 1000), (1000, 1000)]
    assert all("StartTime" not in p for p in pages)  # a job-id needs no time window


# --------------------------------------------------------------------------- purge, quota


def test_invalidate_purges_then_prefetches(run_cli, configure, fake: FakeEdgeOne) -> None:
    fake.purge_daily = 3
    items = [*urls(2), "https://static.example.com/purgefail.js", "https://static.example.com/z.js"]
    r, plan = submit(run_cli, "--invalidate", "--dry-run", *items)
    assert r.returncode == 0, r.stderr
    assert plan["providers"]["edgeone"]["would_defer"] == 1  # as the run defers it
    assert fake.purges == []
    r, data = submit(run_cli, "--invalidate", *items)
    assert r.returncode == 5, r.stderr  # deferred: the purge quota is spent for today
    actions = [c["action"] for c in fake.log]
    assert actions.index("CreatePurgeTask") < actions.index(CREATE)
    assert "DescribePurgeTasks" in actions[: actions.index(CREATE)]
    purge = fake.calls("CreatePurgeTask")[0]["params"]
    assert purge["Type"] == "purge_url"
    # 3 purges left today: the 4th URL is not purged, so not prefetched either, but deferred
    assert fake.purges == [items[:3]]
    assert fake.submits == [items[:2]]  # a failed purge is not followed by a prefetch
    assert [f["url"] for f in data["failed"]] == [items[2]]
    assert data["accepted"] == 2 and data["deferred"] == 1
    assert "--resume" in r.stderr
    # The next day, --resume purges and prefetches the deferred URL, and only it.
    fake.new_day()
    r, again = submit(run_cli, "--resume", data["job_id"])
    assert r.returncode == 4, r.stderr  # the job still holds the URL whose purge failed
    assert "sends the failed again" not in r.stderr  # a vendor's verdict is not resent
    assert fake.purges[1:] == [[items[3]]]  # a purge the vendor failed is the vendor's verdict
    assert fake.submits[1:] == [[items[3]]] and again["deferred"] == 0


def test_invalidate_refused_hosts_and_unanswered_purges(
    run_cli, configure, fake: FakeEdgeOne
) -> None:
    fake.domains = ("static.example.com",)
    fake.fail_next("CreatePurgeTask", "InternalError")  # a purge is simply sent again
    items = [*urls(2), "https://elsewhere.example.net/a.js"]
    r, data = submit(run_cli, "--invalidate", *items)
    assert r.returncode == 4, r.stderr
    codes = [c["code"] for c in fake.calls("CreatePurgeTask")]
    assert codes == ["InternalError", "InvalidParameter.DomainNotFound", None]
    assert fake.purges == [items[:2]] and fake.submits == [items[:2]]
    assert [f["url"] for f in data["failed"]] == [items[2]]


def test_an_unanswered_purge_is_sent_once_more_not_within_the_retry_policy(
    run_cli, configure, fake: FakeEdgeOne
) -> None:
    # The purge is taken, then the reply is a server fault: each try may have spent quota.
    fake.fail_next("CreatePurgeTask", "InternalError", count=2, after=True)
    items = urls(3)
    r, data = submit(run_cli, "--invalidate", *items)
    assert r.returncode == 1, r.stderr  # nothing accepted
    assert fake.purges == [items, items]  # sent once more, then given up
    assert fake.purge_used == 6
    assert fake.submits == []  # not known purged: not prefetched
    assert {f["url"] for f in data["failed"]} == set(items)


def test_quota_command(run_cli, configure, fake: FakeEdgeOne) -> None:
    fake.batch, fake.daily, fake.daily_used = 30, 500, 120
    r = run_cli("quota", "-p", "edgeone", "-o", "json")
    assert r.returncode == 0, r.stderr
    (row,) = json.loads(r.stdout)
    assert row["provider"] == "edgeone" and row["source"] == "api"
    assert (row["daily"], row["remaining"], row["batch"]) == (500, 380, 30)
    assert row["details"]["purge"]["purge_url"] == {"batch": 50, "daily": 10000, "remaining": 10000}
    assert row["details"]["zone_id"] == fake.zone_id
    assert len(fake.calls(QUOTA)) == 1


def test_config_check_online(run_cli, configure, fake: FakeEdgeOne) -> None:
    r = run_cli("config", "check", "--online", "-o", "json")
    assert r.returncode == 0, r.stderr
    (entry,) = json.loads(r.stdout)["providers"]
    assert entry["ok"] is True
    assert entry["notes"] == [
        f"zone {fake.zone_id}: 10000 of 10000 prefetch URLs left today, 50 per request"
    ]
    r = run_cli("config", "show", "-o", "json")
    assert r.returncode == 0, r.stderr
    # Neither half of the key pair is shown: the SecretId is kept as Qiniu's AccessKey is.
    assert fake.secret_key not in r.stdout + r.stderr
    assert fake.secret_id not in r.stdout + r.stderr


def test_config_init_then_check(run_cli, configure, fake: FakeEdgeOne, tmp_path: Path) -> None:
    target = tmp_path / "init.toml"
    r = run_cli(
        "config",
        "init",
        "--config",
        str(target),
        "--type",
        "edgeone",
        "--set",
        f"zone_id={fake.zone_id}",
        "--set",
        f"endpoint={fake.url}",
    )
    assert r.returncode == 0, r.stderr
    text = target.read_text()
    assert 'secret_key = "env:TENCENTCLOUD_SECRET_KEY"' in text
    assert 'secret_id = "env:TENCENTCLOUD_SECRET_ID"' in text  # never literal in the file
    assert "token" not in text  # permanent keys need no session token
    r = run_cli("config", "check", "--online", "--config", str(target))
    assert r.returncode == 0, r.stdout + r.stderr


# --------------------------------------------------------------------------- endpoints, SDK


def _provider(**settings: Any) -> Any:
    from prewarm_edgeone import EdgeOneProvider

    base = {"secret_id": "AKIDx", "secret_key": "sk", "zone_id": "zone-1", "timeout": 5.0}
    return EdgeOneProvider("edgeone", {**base, **settings})


def _provider_of(fake: FakeEdgeOne) -> Any:
    """The provider in this process, against the fake EdgeOne."""
    return _provider(
        endpoint=fake.url,
        zone_id=fake.zone_id,
        secret_id=fake.secret_id,
        secret_key=fake.secret_key,
    )


@pytest.mark.parametrize(
    ("endpoint", "protocol", "host"),
    [
        (None, "https", "teo.tencentcloudapi.com"),
        ("https://teo.intl.tencentcloudapi.com", "https", "teo.intl.tencentcloudapi.com"),
        ("https://teo.intl.tencentcloudapi.com/", "https", "teo.intl.tencentcloudapi.com"),
        ("http://127.0.0.1:8080", "http", "127.0.0.1:8080"),
    ],
)
def test_endpoint_selects_the_sdk_protocol_and_host(
    endpoint: str | None, protocol: str, host: str
) -> None:
    provider = _provider(**({"endpoint": endpoint} if endpoint else {}))
    provider.prepare()
    client = provider._api()._client()
    profile = client.profile.httpProfile
    assert (profile.protocol, profile.endpoint) == (protocol, host)
    assert client._get_endpoint() == host  # the Host header the SDK signs
    assert client.profile.language == "en-US"
    provider.close()


@pytest.mark.parametrize(
    "endpoint",
    [
        "teo.tencentcloudapi.com",
        "https://teo.tencentcloudapi.com/v3",
        "https://teo.tencentcloudapi.com/?x=1",
        "http://teo.tencentcloudapi.com",
        "ftp://teo.tencentcloudapi.com",
    ],
)
def test_bad_endpoints_are_config_errors(endpoint: str) -> None:
    with pytest.raises(ConfigError, match=r"providers\.edgeone\.endpoint"):
        _provider(endpoint=endpoint)


def test_bad_endpoint_via_the_cli_exit_3(run_cli, configure) -> None:
    configure(endpoint="teo.intl.tencentcloudapi.com")
    r = run_cli("submit", *urls(1))
    assert r.returncode == 3 and "providers.edgeone.endpoint" in r.stderr


def test_zone_wildcard_is_refused() -> None:
    with pytest.raises(ConfigError, match="zone_id"):
        _provider(zone_id="*")


def test_a_domain_given_as_the_zone_id_is_refused_before_any_request(
    run_cli, configure, write_config
) -> None:
    # The site's name, which a newcomer types for its id.
    write_config('[providers.edgeone]\ntype = "edgeone"\nzone_id = "example.com"\n')
    r = run_cli("config", "check")
    assert r.returncode == 3
    assert "providers.edgeone.zone_id: 'example.com' is not a site id (zone-...)" in r.stderr
    assert "the EdgeOne console lists each site's id" in r.stderr


def test_missing_sdk_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(sys.modules):
        if name == "tencentcloud" or name.startswith("tencentcloud."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "tencentcloud", None)
    with pytest.raises(ConfigError) as info:
        _provider().prepare()
    assert str(info.value) == (  # DESIGN §1: the error names the extra to install
        "the edgeone provider needs the Tencent Cloud SDK, prewarm's edgeone extra:"
        " pip install 'prewarm-cli[edgeone]' (pipx: pipx install --force 'prewarm-cli[edgeone]')"
    )


def test_plugin_import_stays_light() -> None:
    code = (
        "import sys, prewarm_edgeone;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in"
        " ('tencentcloud', 'requests', 'urllib3', 'httpx')))"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, cwd=ROOT
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_quota_denied_by_cam_falls_back_to_a_small_batch(fake: FakeEdgeOne) -> None:
    provider = _provider_of(fake)
    fake.fail_next(QUOTA, "UnauthorizedOperation.NoPermission")
    limits = provider.limits()
    assert (limits.max_batch, limits.vendor_reported) == (100, False)
    result = provider.submit_batch(urls(3), SubmitOptions())
    assert result.task_id and len(result.accepted) == 3
    (status,) = provider.fetch_status([result.task_id])
    assert status.total == 3


def test_a_job_edgeone_never_lists_is_not_found_after_the_grace(fake: FakeEdgeOne) -> None:
    # Its job ids carry no time: a job unlisted for UNLISTED_GRACE seconds of this process's
    # questions is not found (a --wait on it never ended); a new job is pending meanwhile.
    from prewarm_edgeone.provider import UNLISTED_GRACE

    provider = _provider_of(fake)
    now = [1000.0]
    provider.clock = lambda: now[0]
    (status,) = provider.fetch_status(["20never0made"])
    assert status.state == State.PENDING
    now[0] += UNLISTED_GRACE
    (status,) = provider.fetch_status(["20never0made"])
    assert status.state == State.PENDING
    now[0] += 1
    with pytest.raises(NotFoundError, match="EdgeOne has listed no prefetch task of job"):
        provider.fetch_status(["20never0made"])
    result = provider.submit_batch(urls(2), SubmitOptions())  # a listed job is unaffected
    (status,) = provider.fetch_status([result.task_id])
    assert status.total == 2


def test_connection_refused_is_retryable_read_timeout_is_unknown(fake: FakeEdgeOne) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    provider = _provider(endpoint=f"http://127.0.0.1:{closed_port}", zone_id=fake.zone_id)
    with pytest.raises(RetryableError) as info:
        provider.submit_batch(urls(1), SubmitOptions())
    assert not isinstance(info.value, UnknownOutcome)  # nothing left: safe to resend
    # The host and the reason, in one line, not the SDK's chain of reprs.
    assert str(info.value) == (
        "EdgeOne CreatePrefetchTask: cannot reach 127.0.0.1: Failed to establish a new"
        " connection: [Errno 111] Connection refused"
    )

    slow = _provider(
        endpoint=fake.url,
        zone_id=fake.zone_id,
        secret_id=fake.secret_id,
        secret_key=fake.secret_key,
        timeout=0.3,
    )
    fake.slow_seconds = 1.0
    fake.fail_next(CREATE, "slow")
    with pytest.raises(UnknownOutcome, match="no usable answer"):
        slow.submit_batch(urls(1), SubmitOptions())
    fake.fail_next("DescribeContentQuota", "slow")
    with pytest.raises(RetryableError) as info:
        slow.quota()  # a read may simply be asked again
    assert not isinstance(info.value, UnknownOutcome)


# --------------------------------------------------------------------------- error mapping


@pytest.mark.parametrize(
    ("code", "submit_error", "read_error"),
    [
        ("RequestLimitExceeded", RateLimited, RateLimited),
        ("RequestLimitExceeded.IPLimitExceeded", RateLimited, RateLimited),
        ("LimitExceeded.RateLimitExceeded", RateLimited, RateLimited),
        ("LimitExceeded.BatchQuota", BatchTooLarge, BatchTooLarge),
        ("LimitExceeded.DailyQuota", QuotaExhausted, QuotaExhausted),
        ("AuthFailure.SignatureExpire", AuthError, AuthError),
        ("UnauthorizedOperation.CamUnauthorized", AuthError, AuthError),
        ("InternalError", UnknownOutcome, RetryableError),
        ("InternalError.QuotaSystem", UnknownOutcome, RetryableError),
        ("ServiceUnavailable", UnknownOutcome, RetryableError),
        ("ResourceNotFound.ZoneNotFound", ConfigError, ConfigError),
        ("OperationDenied", ConfigError, ConfigError),
        ("InvalidAction", ConfigError, ConfigError),
        ("InvalidParameter.TaskNotGenerated", ProviderError, ProviderError),
        ("FailedOperation", ProviderError, ProviderError),
    ],
)
def test_error_codes_map_to_typed_errors(
    code: str, submit_error: type[Exception], read_error: type[Exception]
) -> None:
    from prewarm_edgeone.client import ApiError
    from prewarm_edgeone.error_codes import translate

    err = ApiError(CREATE, code, "message", "req-1")
    for submit_call, expected in ((True, submit_error), (False, read_error)):
        out = translate(err, alias="eo", zone_id="zone-1", submit=submit_call)
        assert type(out) is expected, (code, submit_call, type(out))
        assert out.request_id == "req-1" and out.provider == "eo"
        assert "request id req-1" in str(out)


def test_invalid_parameter_names_targets_precisely() -> None:
    from prewarm_edgeone.client import ApiError
    from prewarm_edgeone.error_codes import translate

    targets = {
        "https://a.example.com/x": "https://a.example.com/x",
        "https://a.example.com/x2": "https://a.example.com/x2",
        "https://xn--fsqu00a.example.com/%E6%96%87": "https://例子.example.com/文",
    }
    err = ApiError(CREATE, "InvalidParameter.Target", "Target https://a.example.com/x is invalid.")
    out = translate(err, alias="eo", zone_id="z", submit=True, targets=targets)
    assert isinstance(out, InvalidRequest) and list(out.urls or {}) == ["https://a.example.com/x"]
    err = ApiError(
        CREATE, "InvalidParameter.Target", "Target https://xn--fsqu00a.example.com/%E6%96%87 bad"
    )
    out = translate(err, alias="eo", zone_id="z", submit=True, targets=targets)
    assert isinstance(out, InvalidRequest) and list(out.urls or {}) == [
        "https://例子.example.com/文"
    ]
    # a URL code naming nothing: the engine splits the batch
    err = ApiError(CREATE, "InvalidParameter.Target", "resource error")
    out = translate(err, alias="eo", zone_id="z", submit=True, targets=targets)
    assert isinstance(out, InvalidRequest) and out.urls is None
    # a parameter error about the request, not its URLs: the batch fails, no splitting
    err = ApiError(CREATE, "InvalidParameterValue", "Mode is not allow-listed")
    out = translate(err, alias="eo", zone_id="z", submit=True, targets=targets)
    assert type(out) is ProviderError


# --------------------------------------------------------------------------- the fake itself


def test_fake_signature_matches_the_published_vectors() -> None:
    body = (
        b'{"ZoneId": "zone-2o0example", "Targets": ["https://www.example.com/a.txt",'
        b' "https://www.example.com/b.txt"]}'
    )
    vectors = [
        (
            1700000000,
            "teo.tencentcloudapi.com",
            "5dff347bdebbe813ad04a3c08ce00c42d1f35db150af26ce3d4f7224f0859888",
        ),
        (
            1700000000,
            "127.0.0.1:8080",
            "e834b00ebc4aa01bc511e6ec93ed85a4702e22f7959cfe70e9bed31670a997cc",
        ),
        # 2019-02-26 00:44 in UTC+8 is still 2019-02-25 in UTC: the date is the UTC one
        (
            1551113065,
            "teo.tencentcloudapi.com",
            "d7dc0967d34f925cf258dc5b5e92d43fa3b6281b73e5849df5b150ae99a610da",
        ),
    ]
    for timestamp, host, signature in vectors:
        headers = {"content-type": "application/json", "host": host}
        canonical = canonical_request("POST", "/", "", headers, ["content-type", "host"], body)
        assert tc3_signature("SKEXAMPLE", timestamp, "teo", canonical) == signature


def test_fake_refuses_tampering_and_stale_timestamps(fake: FakeEdgeOne, clock: Clock) -> None:
    import http.client

    def post(headers: dict[str, str], body: bytes) -> dict[str, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=5)
        conn.request("POST", "/", body=body, headers=headers)
        data = json.loads(conn.getresponse().read())
        conn.close()
        return data["Response"]

    body = json.dumps({"ZoneId": fake.zone_id}).encode()
    host = f"127.0.0.1:{fake.port}"
    ts = int(clock())
    headers = {"content-type": "application/json", "host": host}
    canonical = canonical_request("POST", "/", "", headers, ["content-type", "host"], body)
    date = time.strftime("%Y-%m-%d", time.gmtime(ts))
    auth = (
        f"TC3-HMAC-SHA256 Credential={fake.secret_id}/{date}/teo/tc3_request,"
        f" SignedHeaders=content-type;host, Signature="
        + tc3_signature(fake.secret_key, ts, "teo", canonical)
    )
    sent = {
        "Content-Type": "application/json",
        "Host": host,
        "X-TC-Action": QUOTA,
        "X-TC-Version": "2022-09-01",
        "X-TC-Timestamp": str(ts),
        "Authorization": auth,
    }
    assert "PrefetchQuota" in post(sent, body)
    assert post(sent, body.replace(b"zone", b"Zone"))["Error"]["Code"] == (
        "AuthFailure.SignatureFailure"
    )
    clock.advance(400)
    assert post(sent, body)["Error"]["Code"] == "AuthFailure.SignatureExpire"
    assert re.fullmatch(r"[0-9a-f-]{36}", post(sent, body)["RequestId"])
