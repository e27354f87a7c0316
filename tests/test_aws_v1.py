"""The aws provider with api_version = 1: first-generation (2023) stacks, against their fake.

End to end through the real CLI (a subprocess) against two real HTTP servers that play the
stack's two APIs (tests/fakes/aws_v1.py), plus in-process checks of the state mapping and the
request body.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fakes.aws import FakeDistribution, FakePrewarmApi, config_toml
from fakes.aws_v1 import INVALIDATOR_FAILED, NOT_FOUND, STATUS_EXCEPTION, FakeV1Stack
from helpers import cli_json, urls, wait_for
from prewarm_aws import AwsProvider
from prewarm_aws.api_v1 import FAILED_AT_POPS, JobStatus, derive_status, request_body
from prewarm_aws.stack_v1 import StackV1
from prewarm_aws.stack_v2 import StackV2
from prewarm_aws.tables import resolve_target

from prewarm_cli.errors import ConfigError, UnsupportedError
from prewarm_cli.plugin import Capability, State, SubmitOptions

POPS = ["IAD89-P1", "NRT57-P3"]
DISTRIBUTIONS = [
    FakeDistribution("E1AAAA", "d1aaaa.cloudfront.net", ["www.example.com"]),
    FakeDistribution("E3CCCC", "d3cccc.cloudfront.net", ["static.example.com"]),
    FakeDistribution("E4DDDD", "d4dddd.cloudfront.net", ["*.img.example.com"]),
]


@pytest.fixture
def stack() -> Iterator[FakeV1Stack]:
    with FakeV1Stack(distributions=DISTRIBUTIONS) as fake:
        yield fake


@pytest.fixture
def configure(
    stack: FakeV1Stack,
    write_config: Callable[[str], Path],
    cli_env: dict[str, str],
) -> Callable[..., Path]:
    """Writes a config for alias "cf" at the fake stack; keyword arguments replace or drop keys."""
    cli_env["PREWARM_AWS_API_KEY"] = stack.api_key

    def write(**keys: Any) -> Path:
        values: dict[str, Any] = {
            "type": "aws",
            "api_version": 1,
            "endpoint": stack.endpoint,
            "status_endpoint": stack.status_endpoint,
            "cf_domain": "d3cccc.cloudfront.net",
            "target_type": "pop",
            "pops": POPS,
            "poll_interval": 0.1,
        }
        values.update(keys)
        return write_config(config_toml(values))

    return write


# --------------------------------------------------------------------------- the happy path


@pytest.mark.parametrize(
    ("field", "show_success"),
    [("target_type", False), ("region_type", True)],  # after and before the March 2023 rename
)
def test_submit_then_status_wait_then_report(
    run_cli, configure, stack: FakeV1Stack, cli_env, field: str, show_success: bool
) -> None:
    stack.field = field
    stack.show_success_urls = show_success
    configure()
    items = [
        *urls(2),
        "https://static.example.com/dlfail.js",  # fails at both PoPs
        "https://static.example.com/popfail.js",  # fails at IAD89-P1; NRT is another site
        "https://static.example.com/q.js?v=1",
    ]
    r, sub = cli_json(run_cli, "submit", *items)
    assert r.returncode == 0, r.stderr
    assert (sub["accepted"], sub["state"]) == (5, "submitted")
    assert "invalidates every URL before warming it" in r.stderr  # with or without --invalidate
    assert "drops the '?'" in r.stderr
    (task,) = sub["tasks"]
    (post,) = stack.requests_to("POST", "prewarm")
    assert post["api"] == "prewarm"
    assert post["body"] == {
        "url_list": items,
        "target_type": "pop",
        "region_type": "pop",
        "region": POPS,
        "cf_domain": "d3cccc.cloudfront.net",
        "protocol": "https",
    }
    assert task["task_id"] in stack.jobs
    assert len(stack.requests) == 1  # jobs may run side by side: no busy check first
    assert len(stack.invalidations) == 5 and ("E3CCCC", "/q.jsv=1") in stack.invalidations

    r, st = cli_json(run_cli, "status", "--wait")
    assert r.returncode == 4, r.stderr  # partial
    assert (st["state"], st["raw_state"]) == ("partial", "FAILED")
    assert (st["total"], st["succeeded"], st["failed"], st["in_progress"]) == (5, 3, 2, 0)
    details = st["providers"]["cf"]["details"]
    assert details["success_urls"] == ("listed" if show_success else "derived")
    gets = stack.requests_to("GET", "status")
    assert gets and all(q["api"] == "status" for q in gets)
    assert all(q["params"] == {"requestID": task["task_id"]} for q in gets)  # query string

    r, rep = cli_json(run_cli, "report")
    assert r.returncode == 4, r.stderr
    assert sorted((f["url"].rsplit("/", 1)[1], f["reason"], f["pop"]) for f in rep["failures"]) == [
        ("dlfail.js", FAILED_AT_POPS, None),
        ("popfail.js", FAILED_AT_POPS, None),
    ]
    assert rep["report_url"] is None

    # a CI container with no journal: the API counts URLs itself
    fresh = {"PREWARM_STATE_DIR": str(Path(cli_env["PREWARM_STATE_DIR"]).parent / "fresh")}
    r, st = cli_json(run_cli, "status", f"cf:{task['task_id']}", env_extra=fresh)
    assert r.returncode == 4, r.stderr
    assert (st["state"], st["total"], st["succeeded"], st["failed"]) == ("partial", 5, 3, 2)
    assert stack.violations == []


def test_the_fake_crashes_like_each_scheduler_without_its_own_key(stack: FakeV1Stack) -> None:
    # what makes the test above fail if prewarm sent only one of the two keys
    body = {"url_list": ["https://static.example.com/a.js"], "region": "all", "protocol": "https"}
    headers = {"x-api-key": stack.api_key}
    for field, other in (("target_type", "region_type"), ("region_type", "target_type")):
        stack.field = field
        r = httpx.post(f"{stack.endpoint}/prewarm", json={**body, other: "region"}, headers=headers)
        assert r.status_code == 502
        r = httpx.post(f"{stack.endpoint}/prewarm", json={**body, field: "region"}, headers=headers)
        assert r.status_code == 200 and "requestID" in r.json()
    # the status API takes requestID from the query string only (its request validator)
    r = httpx.request(
        "GET", f"{stack.status_endpoint}/status", json={"requestID": "x"}, headers=headers
    )
    assert r.status_code == 400


def test_everything_fails_and_completed_both_map(run_cli, configure, stack: FakeV1Stack) -> None:
    configure()
    failing = ["https://static.example.com/dlfail1.js", "https://static.example.com/dlfail2.js"]
    r, _ = cli_json(run_cli, "submit", *failing)
    assert r.returncode == 0, r.stderr
    r, st = cli_json(run_cli, "status", "--wait")
    assert r.returncode == 1 and (st["state"], st["raw_state"]) == ("failed", "FAILED")
    r, rep = cli_json(run_cli, "report")
    assert sorted(f["url"] for f in rep["failures"]) == failing
    configure(pops=["IAD89-P1", "IAD89-P2"])  # popfail fails at IAD89-P1, IAD89-P2 warms it
    r, _ = cli_json(run_cli, "submit", "https://static.example.com/popfail.js")
    assert r.returncode == 0, r.stderr
    r, st = cli_json(run_cli, "status", "--wait")
    assert r.returncode == 0 and (st["state"], st["raw_state"]) == ("succeeded", "COMPLETED")


def test_unknown_task_id_is_not_found(run_cli, configure, stack: FakeV1Stack) -> None:
    configure()
    r, data = cli_json(run_cli, "status", "cf:0000-not-a-job")
    assert r.returncode == 2
    assert "has no job 0000-not-a-job" in r.stderr and NOT_FOUND in r.stderr
    assert data["error"]["code"] == "not_found"
    assert [q["status"] for q in stack.requests] == [200]  # an answer, not retried


# --------------------------------------------------------------------------- protocols


def test_mixed_http_and_https_become_two_jobs(run_cli, configure, stack: FakeV1Stack) -> None:
    configure()
    items = [
        "https://static.example.com/a.js",
        "http://static.example.com/b.js",
        "https://static.example.com/c.js",
        "http://static.example.com/404.js",  # the agent's http download fails on a 404
    ]
    r, sub = cli_json(run_cli, "submit", *items)
    assert r.returncode == 0, r.stderr
    assert "separate jobs" in r.stderr
    assert sub["accepted"] == 4 and len(sub["tasks"]) == 2
    bodies = [q["body"] for q in stack.requests_to("POST", "prewarm")]
    assert [(b["protocol"], b["url_list"]) for b in bodies] == [
        ("https", [items[0], items[2]]),
        ("http", [items[1], items[3]]),
    ]
    r, st = cli_json(run_cli, "status", "--wait")
    assert r.returncode == 4, r.stderr
    assert (st["total"], st["succeeded"], st["failed"]) == (4, 3, 1)
    assert {t["raw_state"] for t in st["providers"]["cf"]["tasks"]} == {"COMPLETED", "FAILED"}


def test_headers_are_said_to_be_ignored_at_submit_and_in_the_plan(
    run_cli, configure, stack: FakeV1Stack
) -> None:
    configure()
    r, plan = cli_json(run_cli, "submit", "--dry-run", "-H", "X-Warm: 1", *urls(1))
    assert r.returncode == 0, r.stderr
    assert (
        "aws cannot send request headers: -H X-Warm is not sent" in plan["providers"]["cf"]["notes"]
    )
    r = run_cli("submit", "-H", "X-Warm: 1", *urls(1))
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("aws cannot send request headers: -H X-Warm is not sent") == 1


# --------------------------------------------------------------------------- capabilities


def test_scale_and_cancel_are_not_capabilities(run_cli, configure, stack: FakeV1Stack) -> None:
    configure()
    r = run_cli("scale")
    assert r.returncode == 2
    assert "does not support scale" in r.stderr and "queue's depth" in r.stderr
    r, sub = cli_json(run_cli, "submit", *urls(1))
    assert r.returncode == 0, r.stderr
    r, data = cli_json(run_cli, "cancel", sub["job_id"])
    assert r.returncode == 2
    assert data["error"]["code"] == "unsupported" and "cancel" in data["error"]["message"]
    r = run_cli("quota")  # no stack has a quota: not the reason a first-generation one lacks
    assert r.returncode == 2 and "queue's depth" not in r.stderr, r.stderr
    assert [q["route"] for q in stack.requests] == ["prewarm"]
    r, providers = cli_json(run_cli, "providers")
    caps = next(p["capabilities"] for p in providers if p["provider"])
    assert "scale" not in caps and "cancel" not in caps and "submit" in caps
    r, plan = cli_json(run_cli, "submit", "--dry-run", *urls(2))
    assert any("invalidates every URL" in n for n in plan["providers"]["cf"]["notes"])


def test_dry_run_sends_nothing_and_batches_by_500(run_cli, configure, stack: FakeV1Stack) -> None:
    configure()
    r, plan = cli_json(run_cli, "submit", "--dry-run", "--invalidate", *urls(600))
    assert r.returncode == 0, r.stderr
    p = plan["providers"]["cf"]
    assert (p["batch_size"], p["batches"], p["requests"], p["invalidate"]) == (500, 2, 2, True)
    assert any("purges each URL within its prefetch request" in n for n in p["notes"])
    assert stack.requests == []


# --------------------------------------------------------------------------- config check


def test_config_check_online_on_a_first_generation_stack(
    run_cli, configure, stack: FakeV1Stack
) -> None:
    configure(instance_count=3)
    r, check = cli_json(run_cli, "config", "check", "--online")
    assert r.returncode == 0, r.stderr
    notes = check["providers"][0]["notes"]
    assert any("status API reachable, key accepted" in n for n in notes)
    assert any("instance_count: not used" in n for n in notes)
    (probe,) = stack.requests  # one cheap request, creating nothing
    assert (probe["route"], probe["status"]) == ("status", 200)
    assert stack.jobs == {}


def test_a_v2_config_pointed_at_a_first_generation_stack(
    run_cli, configure, stack: FakeV1Stack
) -> None:
    configure(api_version=None, status_endpoint=None)  # the default: api_version = 2
    r, check = cli_json(run_cli, "config", "check", "--online")
    assert r.returncode == 3
    error = check["providers"][0]["error"]
    assert "GET /instances" in error and "providers.cf.api_version = 1" in error
    assert "status_endpoint" in error
    assert [(q["route"], q["status"]) for q in stack.requests] == [("instances", 403)]


def test_a_v1_config_pointed_at_a_2024_stack(
    run_cli, configure, stack: FakeV1Stack, cli_env
) -> None:
    with FakePrewarmApi() as v2:
        cli_env["PREWARM_AWS_API_KEY"] = v2.api_key
        # the 2024 stack's one API given as the status API, another stage as endpoint
        configure(endpoint=v2.url + "/stage2", status_endpoint=v2.endpoint)
        r, check = cli_json(run_cli, "config", "check", "--online")
        assert r.returncode == 3
        error = check["providers"][0]["error"]
        assert "not a first-generation status API" in error
        assert "providers.cf.api_version = 2" in error
        assert [(q["route"], q["status"]) for q in v2.requests] == [("status", 403)]
        # the same URL for both: two APIs cannot share one, so no request is needed to tell
        configure(endpoint=v2.endpoint, status_endpoint=v2.endpoint)
        r, check = cli_json(run_cli, "config", "check", "--online")
        assert r.returncode == 3
        assert "api_version = 2" in check["providers"][0]["hint"]
        assert len(v2.requests) == 1
    assert stack.requests == []


def test_status_endpoint_is_required(run_cli, configure) -> None:
    configure(status_endpoint=None)
    r = run_cli("config", "check")
    assert r.returncode == 3
    assert "providers.cf.status_endpoint: required with api_version = 1" in r.stdout + r.stderr
    r = run_cli("submit", *urls(1))
    assert r.returncode == 3 and "providers.cf.status_endpoint" in r.stderr


# --------------------------------------------------------------------------- errors


def test_400_message_is_shown_as_is_and_resumable(run_cli, configure, stack: FakeV1Stack) -> None:
    configure()
    message = "Invalid region, please specify a valid region or PoP list or all"
    stack.fail_next("400", message=message)
    r, sub = cli_json(run_cli, "submit", *urls(3))
    assert r.returncode == 1
    assert message in r.stderr
    assert len(sub["failed"]) == 3 and all(message in f["reason"] for f in sub["failed"])
    assert len(stack.requests_to("POST", "prewarm")) == 1  # neither retried nor split
    r, again = cli_json(run_cli, "submit", "--resume", sub["job_id"])
    assert r.returncode == 0, r.stderr
    assert again["accepted"] == 3 and len(stack.jobs) == 1


def test_status_500_plain_text_is_retried_then_given_up(
    run_cli, configure, stack: FakeV1Stack
) -> None:
    configure()
    r, sub = cli_json(run_cli, "submit", *urls(2))
    task = sub["tasks"][0]["task_id"]
    stack.fail_next("500", route="GET /status")
    r, st = cli_json(run_cli, "status", sub["job_id"])
    assert r.returncode == 0, r.stderr  # one 500, then an answer
    assert st["state"] in ("running", "succeeded")
    stack.fail_next("500", 3, route="GET /status")  # as many as the configured retries
    before = len(stack.requests_to("GET", "status"))
    r, data = cli_json(run_cli, "status", f"cf:{task}")
    assert r.returncode == 1
    assert STATUS_EXCEPTION[:60] in r.stderr  # the plain-text body, not a JSON parse error
    assert data["error"]["code"] == "retryable"
    assert len(stack.requests_to("GET", "status")) == before + 3
    assert "Traceback" not in r.stderr


def test_500_on_submit_leaves_the_outcome_unknown(run_cli, configure, stack: FakeV1Stack) -> None:
    configure()
    stack.fail_next("500")  # the job row is written, its invalidation never starts
    r, sub = cli_json(run_cli, "submit", *urls(2))
    assert r.returncode == 4
    assert sub["unknown"] == 2 and sub["accepted"] == 0
    assert INVALIDATOR_FAILED in r.stderr and "never finishes" in r.stderr
    (job,) = stack.jobs.values()
    ahead = stack.step_seconds + stack.download_seconds  # past when it would have finished
    stack.clock = lambda: time.monotonic() + ahead
    assert stack.job_status(job.req_id) == "IN_PROGRESS"  # and so it stays
    r, again = cli_json(run_cli, "submit", "--resume", sub["job_id"])
    assert again["unknown"] == 2 and len(stack.requests_to("POST", "prewarm")) == 1
    r, again = cli_json(run_cli, "submit", "--resume", sub["job_id"], "--force")
    assert r.returncode == 0 and again["accepted"] == 2


def test_502_on_submit_is_not_retried(run_cli, configure, stack: FakeV1Stack) -> None:
    configure()
    stack.fail_next("502")
    r, sub = cli_json(run_cli, "submit", *urls(2))
    assert r.returncode == 1
    assert "POST /prewarm: HTTP 502 Internal server error" in r.stderr and "crashed" in r.stderr
    assert "both target_type and region_type" in r.stderr  # the explanation, as a warning
    assert len(stack.requests_to("POST", "prewarm")) == 1 and len(sub["failed"]) == 2


def test_wrong_api_key_is_refused_by_both_apis(run_cli, configure, stack: FakeV1Stack) -> None:
    configure()
    r, sub = cli_json(run_cli, "submit", *urls(1))
    task = sub["tasks"][0]["task_id"]
    wrong = {"PREWARM_AWS_API_KEY": "wrong-key-value"}
    r = run_cli("submit", *urls(1, "https://static.example.com/g"), env_extra=wrong)
    assert r.returncode == 3 and "API key was refused" in r.stderr
    assert "'Prewarm API key'" in r.stderr  # where the key's id comes from on this stack
    r = run_cli("status", f"cf:{task}", env_extra=wrong)
    assert r.returncode == 3 and "API key was refused" in r.stderr
    assert "wrong-key-value" not in r.stdout + r.stderr
    assert [(q["api"], q["status"]) for q in stack.requests[1:]] == [
        ("prewarm", 403),
        ("status", 403),
    ]
    assert len(stack.jobs) == 1


def test_usage_plan_429s_are_retried_and_polling_stays_below_the_rate(
    run_cli, configure, stack: FakeV1Stack
) -> None:
    configure(poll_interval=0.01)  # the config allows hammering; the usage plan does not
    stack.download_seconds = 1.2
    stack.fail_next("429")
    r, _sub = cli_json(run_cli, "submit", *urls(2))
    assert r.returncode == 0, r.stderr
    assert [q["status"] for q in stack.requests_to("POST", "prewarm")] == [429, 200]
    r, st = cli_json(run_cli, "status", "--wait")
    assert r.returncode == 0, r.stderr and st["state"] == "succeeded"
    assert len(stack.requests_to("GET", "status")) >= 10  # polled as fast as allowed...
    assert stack.violations == []  # ...across both APIs, never throttled
    stack.fail_next("limit", route="GET /status")
    r, data = cli_json(run_cli, "status")
    assert r.returncode == 5 and data["error"]["code"] == "quota_exhausted"


def test_cf_domain_found_from_the_hosts_one_job_per_distribution(
    run_cli, configure, stack: FakeV1Stack, cli_env, tmp_path: Path
) -> None:
    with FakePrewarmApi(distributions=DISTRIBUTIONS) as cloudfront:  # ListDistributions, SigV4
        cli_env.update(cloudfront.boto3_env(tmp_path))  # its API key stays the v1 stack's
        configure(cf_domain=None, target_type="country", pops=None, countries=["all"])
        items = [
            "https://static.example.com/a.js",
            "https://x.img.example.com/b.png",  # a wildcard alias: the stack could not find it
            "https://nowhere.example.org/c.js",
        ]
        r, sub = cli_json(run_cli, "submit", *items)
    assert r.returncode == 4, r.stderr  # one rejected
    assert sub["accepted"] == 2 and sub["deferred"] == 0 and len(sub["tasks"]) == 2
    assert sub["rejected"][0]["url"] == items[2]
    bodies = [q["body"] for q in stack.requests_to("POST", "prewarm")]
    assert [(b["cf_domain"], b["url_list"]) for b in bodies] == [
        ("d3cccc.cloudfront.net", [items[0]]),
        ("d4dddd.cloudfront.net", [items[1]]),
    ]
    assert all((b["target_type"], b["region"]) == ("country", "all") for b in bodies)
    for job in stack.jobs.values():
        wait_for(lambda job=job: stack.job_status(job.req_id) == "COMPLETED")


# --------------------------------------------------------------------------- in-process


def v1_settings(stack: FakeV1Stack, **keys: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "type": "aws",
        "api_version": 1,
        "endpoint": stack.endpoint,
        "status_endpoint": stack.status_endpoint,
        "api_key": stack.api_key,
        "cf_domain": "d3cccc.cloudfront.net",
        "target_type": "pop",
        "pops": POPS,
        "timeout": 5.0,
    }
    values.update(keys)
    return {k: v for k, v in values.items() if v is not None}


def test_the_alias_gets_the_first_generation_stack(stack: FakeV1Stack) -> None:
    p = AwsProvider("cf", v1_settings(stack))
    assert isinstance(p.stack, StackV1) and p.one_job_at_a_time is False
    assert p.active_capabilities() == {Capability.SUBMIT, Capability.STATUS, Capability.REPORT}
    assert p.invalidates_in_submit and p.limits().max_batch == 500
    with pytest.raises(UnsupportedError):
        p.require(Capability.SCALE)
    p.close()
    p = AwsProvider("cf", v1_settings(stack, api_version=2, status_endpoint=None))
    assert isinstance(p.stack, StackV2) and p.one_job_at_a_time is True
    assert Capability.SCALE in p.active_capabilities()
    p.close()


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"status_endpoint": None}, "providers.cf.status_endpoint: required"),
        ({"status_endpoint": "abc.example.com/prod"}, "providers.cf.status_endpoint: 'abc"),
        ({"status_endpoint": "https://a.execute-api.x.amazonaws.com/prod/status"}, "/status"),
        ({"regions": ["mars"], "target_type": "region", "pops": None}, "unknown region key"),
    ],
)
def test_v1_settings_errors(stack: FakeV1Stack, keys: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        AwsProvider("cf", v1_settings(stack, **keys))
    assert message in info.value.message


def test_every_status_request_after_a_calls_first_is_paced(stack: FakeV1Stack) -> None:
    p = AwsProvider("cf", v1_settings(stack))
    paced: list[int] = []
    p.attach_pacer(paced.append)
    with p.engine_call():
        first = p.submit_batch(urls(1), SubmitOptions()).task_id
    with p.engine_call():
        second = p.submit_batch(urls(1, "https://static.example.com/g"), SubmitOptions()).task_id
    assert first and second and paced == []  # one request per call: the engine paced it
    with p.engine_call():
        statuses = p.fetch_status([first, second])
    assert [s.task_id for s in statuses] == [first, second] and len(paced) == 1
    p.close()


def job(status: str, **kw: Any) -> JobStatus:
    data: dict[str, Any] = {"status": status, "total": 4, "completed": 4, "inProgress": 0}
    data.update(kw)
    return JobStatus.from_answer("r1", data)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (job("IN_PROGRESS", completed=1, inProgress=3, failedUrl=["u1"]), (State.RUNNING, 0, 1, 3)),
        (job("COMPLETED"), (State.SUCCEEDED, 4, 0, 0)),
        (job("FAILED", failedUrl=["u1"]), (State.PARTIAL, 3, 1, 0)),  # FAILED at the 1st failure
        (job("FAILED", failedUrl=["u1", "u2", "u3", "u4"]), (State.FAILED, 0, 4, 0)),
        (job("FAILED", failedUrl=["u1"], successUrl=["u2"]), (State.PARTIAL, 1, 1, 0)),
        (
            job("TIMEOUT", completed=3, inProgress=1, inProgressUrl=["u4"]),
            (State.TIMED_OUT, 3, 1, 0),
        ),
        (job("SOMETHING"), (State.PENDING, 4, 0, 0)),
    ],
)
def test_states_and_counts(answer: JobStatus, expected: tuple[State, int, int, int]) -> None:
    st = derive_status(answer)
    assert (st.state, st.succeeded, st.failed, st.in_progress) == expected
    assert st.raw_state == answer.status and st.total == 4
    failed = [u for u in st.urls if u.state in (State.FAILED, State.TIMED_OUT)]
    assert len(failed) == len(answer.failed_urls) + (1 if answer.status == "TIMEOUT" else 0)


def test_request_body_region_forms() -> None:
    country_all = resolve_target("cf", "country", {"countries": ["all"]}, china_stack=False)
    body = request_body(["https://h/a"], country_all, "d1.cloudfront.net", "https")
    assert (body["region"], body["target_type"], body["region_type"]) == (
        "all",
        "country",
        "country",
    )
    regions = resolve_target("cf", "region", {"regions": ["eu", "us"]}, china_stack=False)
    assert request_body(["https://h/a"], regions, "d1.cloudfront.net", "http")["region"] == [
        "eu",
        "us",
    ]
    overlap = resolve_target("cf", "region", {"regions": ["apac", "jp"]}, china_stack=False)
    body = request_body(["https://h/a"], overlap, "d1.cloudfront.net", "http")
    assert body["target_type"] == "pop" and len(body["region"]) == 8
