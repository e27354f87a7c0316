"""The qiniu provider end to end: the real CLI against the fake Qiniu API (tests/fakes/qiniu.py)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fakes.qiniu import FAIL_DETAIL, PREFETCH, REFRESH, FakeQiniu, qbox_sign
from helpers import urls

from prewarm_cli.errors import ConfigError, NotFoundError
from prewarm_cli.plugin import State, SubmitOptions

PREFETCH_LIST = "/v2/tune/prefetch/list"
REFRESH_LIST = "/v2/tune/refresh/list"
DAY = 86_400.0


def as_input(items: list[str]) -> str:
    return "\n".join(items) + "\n"


@pytest.fixture
def fake() -> Iterator[FakeQiniu]:
    with FakeQiniu() as server:
        yield server


@pytest.fixture
def qiniu_config(
    fake: FakeQiniu, write_config: Callable[[str], Path], cli_env: dict[str, str]
) -> Callable[[str], Path]:
    """Writes a config whose default provider is qiniu at the fake; extra lines go in its table."""
    cli_env["QINIU_ACCESS_KEY"] = fake.access_key
    cli_env["QINIU_SECRET_KEY"] = fake.secret_key

    def write(extra: str = "") -> Path:
        return write_config(
            f"""\
[defaults]
provider = "qiniu"
retries = 4
retry_timeout = 10

[providers.qiniu]
type = "qiniu"
endpoint = "{fake.url}"
poll_interval = 0.05
{extra}
"""
        )

    write()
    return write


def run_json(run_cli: Any, *args: str, input: str | None = None) -> tuple[Any, Any]:
    r = run_cli(*args, "-o", "json", input=input)
    data = json.loads(r.stdout) if r.stdout.strip() else None
    return r, data


def submit(run_cli: Any, *args: str, input: str | None = None) -> tuple[Any, Any]:
    return run_json(run_cli, "submit", *args, input=input)


def no_secret(fake: FakeQiniu, *results: Any) -> None:
    for r in results:
        assert fake.secret_key not in r.stdout and fake.secret_key not in r.stderr


# --------------------------------------------------------------------------- signing


def stdlib_sign(secret_key: str, path: str) -> str:
    """The fact sheet's recipe, written out once more: HMAC-SHA1, URL-safe base64."""
    digest = hmac.new(secret_key.encode(), (path + "\n").encode(), hashlib.sha1).digest()
    return base64.urlsafe_b64encode(digest).decode()


# (access key, secret key, URL, expected token) from shared/api/qiniu.md §1.2
VECTORS = [
    (
        "MY_ACCESS_KEY",
        "MY_SECRET_KEY",
        "http://rs.qiniu.com/move/bmV3ZG9jczpmaW5kX21hbi50eHQ=/bmV3ZG9jczpmaW5kLm1hbi50eHQ=",
        "MY_ACCESS_KEY:FXsYh0wKHYPEsIAgdPD9OfjkeEM=",
    ),
    (
        "MY_ACCESS_KEY",
        "MY_SECRET_KEY",
        "http://fusion.qiniuapi.com/v2/tune/prefetch",
        "MY_ACCESS_KEY:2Rf_cSnX7tyvHpdTrYYUoxtu248=",
    ),
    (
        "MY_ACCESS_KEY",
        "MY_SECRET_KEY",
        "https://fusion.qiniuapi.com/v2/tune/prefetch/list",
        "MY_ACCESS_KEY:ciKqftzPKvcTXQBnKPYkCbHuvEc=",
    ),
    (
        "MY_ACCESS_KEY",
        "MY_SECRET_KEY",
        "https://fusion.qiniuapi.com/v2/tune/refresh",
        "MY_ACCESS_KEY:ckTB2xiIyIHZmi4O4iN3XjXr7t8=",
    ),
    (
        "MY_ACCESS_KEY",
        "MY_SECRET_KEY",
        "https://fusion.qiniuapi.com/v2/tune/refresh/list",
        "MY_ACCESS_KEY:2c4c_JGJVTwHlMLVG6URMCacei8=",
    ),
    (
        "abcdefghklmnopq",
        "1234567890",
        "http://127.0.0.1:8080/v2/tune/prefetch",
        "abcdefghklmnopq:LcOvnrE-h7E0iLzZtIMfPxGjGOk=",
    ),
    (
        "abcdefghklmnopq",
        "1234567890",
        "https://www.qiniu.com?go=1",
        "abcdefghklmnopq:cFyRVoWrE3IugPIMP5YJFTO-O-Y=",
    ),
]


@pytest.mark.parametrize(("ak", "sk", "url", "token"), VECTORS)
def test_signature_matches_the_documented_vectors(ak: str, sk: str, url: str, token: str) -> None:
    import qiniu
    from prewarm_qiniu.client import qbox_authorization

    assert qbox_authorization(qiniu.Auth(ak, sk), url) == f"QBox {token}"
    target = url.split("://", 1)[1]
    target = target[target.find("/") :] if "/" in target else target[target.find("?") :]
    signed = target.split("?")[0] + ("?" + target.split("?")[1] if "?" in target else "")
    assert f"{ak}:{stdlib_sign(sk, signed)}" == token
    assert f"{ak}:{qbox_sign(sk, signed)}" == token  # the fake's own code agrees


def test_signature_signs_the_body_only_when_form_encoded() -> None:
    import qiniu

    auth = qiniu.Auth("abcdefghklmnopq", "1234567890")
    url = "https://www.qiniu.com?go=1"
    form = "application/x-www-form-urlencoded"
    expected = "abcdefghklmnopq:svWRNcacOE-YMsc70nuIYdaa1e4="
    assert auth.token_of_request(url, "test", form) == expected
    assert "abcdefghklmnopq:" + qbox_sign("1234567890", "?go=1", b"test", form) == expected
    # JSON bodies (every fusion call) are not signed
    json_sign = qbox_sign("1234567890", "?go=1", b"test", "application/json")
    assert "abcdefghklmnopq:" + json_sign == "abcdefghklmnopq:cFyRVoWrE3IugPIMP5YJFTO-O-Y="


@pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("openssl", "base64", "tr", "sh")),
    reason="openssl, base64, tr or sh is not on PATH",
)
@pytest.mark.parametrize(
    "path", ["/v2/tune/prefetch", "/v2/tune/prefetch/list", "/v2/tune/refresh"]
)
def test_signature_matches_the_seeds_openssl_recipe(path: str) -> None:
    import qiniu
    from prewarm_qiniu.client import qbox_authorization

    sk = "a-secret/with+odd=chars"
    # the vendor doc's recipe, verbatim but for the key: echo adds the newline that is signed
    recipe = f'echo "{path}" | openssl dgst -binary -hmac "{sk}" -sha1 | base64 | tr + - | tr / _'
    out = subprocess.run(["sh", "-c", recipe], capture_output=True, text=True, check=True)
    sign = out.stdout.strip()
    assert qbox_authorization(qiniu.Auth("AK", sk), "https://fusion.qiniuapi.com" + path) == (
        f"QBox AK:{sign}"
    )
    assert stdlib_sign(sk, path) == sign


# --------------------------------------------------------------------------- the fake itself


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_fake_checks_signatures_batch_size_and_rate() -> None:
    import httpx

    clock = FakeClock()
    with FakeQiniu(clock=clock) as fake:

        def post(path: str, body: dict[str, Any], sk: str = fake.secret_key) -> dict[str, Any]:
            sign = qbox_sign(sk, path)
            r = httpx.post(
                fake.url + path,
                json=body,
                headers={"Authorization": f"QBox {fake.access_key}:{sign}"},
            )
            assert r.headers.get("X-Reqid")
            return {"http": r.status_code, **r.json()}

        refused = post(PREFETCH, {"urls": urls(1)}, sk="wrong")
        assert (refused["http"], refused["error"]) == (401, "bad token")
        assert fake.auth_failures == 1
        # an unpaced client: 5 x 60 URLs in one second is more than 240
        codes = [
            post(PREFETCH, {"urls": urls(60, f"https://static.example.com/r{i}-")})["code"]
            for i in range(5)
        ]
        assert codes == [200, 200, 200, 200, 403024]
        assert len(fake.violations) == 1
        listing = post(PREFETCH_LIST, {"urls": urls(1, "https://static.example.com/r0-")})
        assert listing["code"] == 200 and listing["total"] == 1
        assert listing["items"][0]["state"] == "processing"
        assert fake.window_violations  # no startTime/endTime: only the last 3 days searched
        clock.now += 1.0
        listing = post(PREFETCH_LIST, {"urls": urls(1, "https://static.example.com/r0-")})
        assert listing["items"][0]["state"] == "success"
        too_many = post(PREFETCH, {"urls": urls(61)})
        assert (too_many["http"], too_many["code"]) == (400, 400039)
        assert len(fake.batch_violations) == 1


# --------------------------------------------------------------------------- submit


def test_150_urls_make_three_signed_requests(run_cli, qiniu_config, fake: FakeQiniu) -> None:
    r, data = submit(run_cli, "-i", "-", input=as_input(urls(150)))
    assert r.returncode == 0, r.stderr
    calls = fake.calls(PREFETCH)
    assert sorted(c["urls"] for c in calls) == [30, 60, 60]
    assert all(c["status"] == 200 and "product" not in c["body"] for c in calls)
    assert fake.auth_failures == 0 and fake.violations == [] and fake.batch_violations == []
    assert data["state"] == "submitted" and data["accepted"] == data["total"] == 150
    assert {t["task_id"] for t in data["tasks"]} == {t.request_id for t in fake.tasks}
    assert sorted(t["urls"] for t in data["tasks"]) == [30, 60, 60]
    assert fake.accepted_counts() == {u: 1 for u in urls(150)}
    no_secret(fake, r)


def test_pacing_stays_within_240_urls_per_second(run_cli, qiniu_config, fake: FakeQiniu) -> None:
    r, data = submit(run_cli, "-i", "-", input=as_input(urls(480)))
    assert r.returncode == 0, r.stderr
    assert data["accepted"] == 480
    times = [c["t"] for c in fake.calls(PREFETCH)]
    assert len(times) == 8 and fake.violations == []
    # 480 URLs at 240/s: the first 240 at once, the other 240 a second later
    assert times[-1] - times[0] >= 0.95


def test_refresh_and_prefetch_share_the_240_per_second(
    run_cli, qiniu_config, fake: FakeQiniu
) -> None:
    fake.task_seconds = 0.0  # purges are done at once: prefetch follows right away
    r, data = submit(run_cli, "--invalidate", "-i", "-", input=as_input(urls(240)))
    assert r.returncode == 0, r.stderr
    assert data["accepted"] == 240 and fake.violations == []
    refresh_t = [c["t"] for c in fake.calls(REFRESH)]
    prefetch_t = [c["t"] for c in fake.calls(PREFETCH)]
    assert len(refresh_t) == len(prefetch_t) == 4
    # the refreshes used up this second's 240 URLs: the prefetches wait for the next one
    assert prefetch_t[0] - refresh_t[0] >= 0.9


def test_quota_runs_out_then_resume_sends_the_rest(run_cli, qiniu_config, fake: FakeQiniu) -> None:
    fake.quota_day = 100
    items = urls(150)
    r, data = submit(run_cli, "-i", "-", input=as_input(items))
    assert r.returncode == 5, r.stderr
    assert (data["accepted"], data["deferred"], data["state"]) == (100, 50, "incomplete")
    assert "--resume" in r.stderr and "quota" in r.stderr
    # never more URLs in flight than surplusDay allows: no batch is refused with 400033
    assert 400033 not in [c["code"] for c in fake.calls(PREFETCH)]
    assert sum(len(t) for t in fake.accepted()) == 100

    r, rows = run_json(run_cli, "quota", "-p", "qiniu")
    assert r.returncode == 0, r.stderr
    assert rows[0]["provider"] == "qiniu" and rows[0]["source"] == "last_response"
    assert (rows[0]["daily"], rows[0]["remaining"], rows[0]["batch"]) == (100, 0, 60)
    assert rows[0]["resets_at"].endswith("T16:00:00Z")  # 00:00 Beijing time

    fake.new_day()
    r, again = submit(run_cli, "--resume", data["job_id"])
    assert r.returncode == 0, r.stderr
    assert again["job_id"] == data["job_id"]
    assert (again["accepted"], again["deferred"]) == (150, 0)
    assert fake.accepted_counts() == {u: 1 for u in items}


def test_quota_used_up_before_the_run_defers_everything(
    run_cli, qiniu_config, fake: FakeQiniu
) -> None:
    fake.exhaust_quota()
    r, data = submit(run_cli, *urls(5))
    assert r.returncode == 5
    assert (data["accepted"], data["deferred"]) == (0, 5)
    assert len(fake.calls(PREFETCH)) == 1  # QuotaExhausted is not retried


def test_a_wait_that_times_out_on_a_job_with_deferred_targets_exits_5(
    run_cli, qiniu_config, fake: FakeQiniu, tmp_path
) -> None:
    fake.task_seconds = 60  # still running when the wait gives up
    fake.exhaust_quota(leave=1)
    r = run_cli("submit", *urls(3), "--wait", "--wait-timeout", "1", "-o", "json")
    assert r.returncode == 5, r.stderr  # DESIGN §6: 5 comes before 6
    error = json.loads(r.stdout)["error"]
    assert error["code"] == "wait_timeout"
    assert "and 2 of its targets are deferred" in error["message"]
    assert error["hint"] == f"`prewarm submit --resume {error['job_id']}` sends them later"
    # Where the job was piped to a machine without its journal, the hint says where it works.
    elsewhere = {"PREWARM_STATE_DIR": str(tmp_path / "another-machine")}
    fake.exhaust_quota(leave=1)
    submitted = run_cli("submit", *urls(2, "https://static.example.com/p"), "-o", "json").stdout
    r = run_cli(
        "status", "--wait", "--wait-timeout", "1", "-", "-o", "json",
        input=submitted, env_extra=elsewhere,
    )  # fmt: skip
    assert r.returncode == 5, r.stderr
    hint = json.loads(r.stdout)["error"]["hint"]
    assert hint.endswith(
        "sends them later on the machine that submitted it (its journal is not here)"
    )


def test_an_error_while_sending_names_the_job_it_leaves_in_its_json(
    run_cli, qiniu_config, fake: FakeQiniu
) -> None:
    r = run_cli("submit", *urls(3), "-o", "json", env_extra={"QINIU_SECRET_KEY": "wrong"})
    assert r.returncode == 3, r.stderr
    error = json.loads(r.stdout)["error"]
    assert error["code"] == "auth" and error["job_id"]
    # Wherever the keys come from (env:VAR, the file, the default variables): config show.
    assert error["hint"] == (
        "check access_key and secret_key: `prewarm config show` says where each comes from"
    )
    (job,) = json.loads(run_cli("jobs", "-o", "json").stdout)
    assert job["job_id"] == error["job_id"]
    # An error before any job was made names none.
    r = run_cli("submit", "not a url", "-o", "json")
    assert r.returncode == 2 and json.loads(r.stdout)["error"]["job_id"] is None


@pytest.mark.parametrize("leave", [1, 0])
def test_status_of_a_piped_submit_on_a_machine_without_its_journal_counts_what_was_deferred(
    run_cli, qiniu_config, fake: FakeQiniu, tmp_path, leave: int
) -> None:
    # A CI step with no local state: `submit -o json | status --wait -`. Its deferred
    # targets are part of the job there too (it ended succeeded with exit 0, or waited forever
    # when no task was made).
    fake.exhaust_quota(leave=leave)
    r, data = submit(run_cli, *urls(3), "https://static.example.com/fail-x.js")
    assert r.returncode == 5 and data["deferred"] == 4 - leave
    elsewhere = {"PREWARM_STATE_DIR": str(tmp_path / "another-machine")}
    r = run_cli("status", "--wait", "-", "-o", "json", input=json.dumps(data), env_extra=elsewhere)
    assert r.returncode == 5, r.stderr
    st = json.loads(r.stdout)
    assert (st["state"], st["total"]) == ("incomplete", 4)
    assert st["not_sent"] == data["deferred"]
    assert st["succeeded"] + st["failed"] + st["in_progress"] + st["pending"] == data["accepted"]
    # The --resume it gives works only where the job's journal is.
    assert f"--resume {data['job_id']}` sends them on the machine that submitted it" in r.stderr


def test_status_wait_pages_through_and_report_lists_failures(
    run_cli, qiniu_config, fake: FakeQiniu
) -> None:
    fake.max_page_size = 7
    fake.task_seconds = 60  # still running when the first status looks
    items = [*urls(18), "https://static.example.com/fail-a.js", "https://static.example.com/fail-b"]
    r, data = submit(run_cli, *items)
    assert r.returncode == 0, r.stderr
    (task,) = data["tasks"]
    r, st = run_json(run_cli, "status", data["job_id"])
    assert r.returncode == 0 and st["state"] == "running" and st["in_progress"] == 20
    assert st["raw_state"] == "processing"
    fake.finish(task["task_id"])
    r, st = run_json(run_cli, "status", data["job_id"], "--wait", "--interval", "0.05")
    assert r.returncode == 4, r.stderr
    assert (st["state"], st["total"], st["succeeded"], st["failed"]) == ("partial", 20, 18, 2)
    assert st["raw_state"] == "failure,success"
    assert st["providers"]["qiniu"]["details"]["surplus_day"] == fake.surplus()
    pages = [c["body"]["pageNo"] for c in fake.calls(PREFETCH_LIST)][-3:]
    assert pages == [0, 1, 2]  # 20 items, 7 a page
    assert all(c["body"]["requestId"] == task["task_id"] for c in fake.calls(PREFETCH_LIST))
    assert fake.window_violations == []  # every list call names the 7-day window

    r, rep = run_json(run_cli, "report")
    assert r.returncode == 4
    assert sorted(f["url"] for f in rep["failures"]) == items[18:]
    assert {f["reason"] for f in rep["failures"]} == {FAIL_DETAIL}
    assert {f["stage"] for f in rep["failures"]} == {"vendor"}


def test_status_of_a_requestid_without_local_state(
    run_cli, qiniu_config, fake: FakeQiniu, cli_env
) -> None:
    request_id = fake.add_task(urls(3), seconds=0.2)
    fresh = {"PREWARM_STATE_DIR": str(Path(cli_env["PREWARM_STATE_DIR"]).parent / "fresh")}
    r = run_cli(
        "status",
        f"qiniu:{request_id}",
        "--wait",
        "--interval",
        "0.05",
        "-o",
        "json",
        env_extra=fresh,
    )
    assert r.returncode == 0, r.stderr
    st = json.loads(r.stdout)
    assert st["job_id"] is None and st["state"] == "succeeded" and st["succeeded"] == 3


def test_a_task_older_than_7_days_says_so(run_cli, qiniu_config, fake: FakeQiniu) -> None:
    old = fake.add_task(urls(3), age=8 * DAY)
    r, data = run_json(run_cli, "status", f"qiniu:{old}")
    assert r.returncode == 2
    assert "7 days" in r.stderr and old in r.stderr and "can no longer be queried" in r.stderr
    assert data["error"]["code"] == "not_found"
    # a malformed id is refused by Qiniu (400036)
    r = run_cli("status", "qiniu:not-a-request-id")
    assert r.returncode == 2 and "400036" in r.stderr


def test_a_request_id_qiniu_does_not_list_is_not_found_once_it_should_be(
    run_cli, qiniu_config, fake: FakeQiniu
) -> None:
    # Well formed, but never made for these keys: an hour old, it is not found (a --wait
    # waited for ever); made a moment ago, it may not be listed yet, and is pending.
    made_an_hour_ago = f"{int(time.time()) - 3600:08x}" + "0" * 16
    r, data = run_json(
        run_cli, "status", "--wait", "--wait-timeout", "30", f"qiniu:{made_an_hour_ago}"
    )
    assert r.returncode == 2, r.stderr
    assert data["error"]["code"] == "not_found"
    assert f"Qiniu lists no prefetch of request id {made_an_hour_ago}" in data["error"]["message"]
    just_made = f"{int(time.time()):08x}" + "0" * 16
    r, data = run_json(run_cli, "status", f"qiniu:{just_made}")
    assert r.returncode == 0 and data["state"] == "pending", r.stderr


def test_invalid_urls_are_rejected_with_reasons_exit_4(
    run_cli, qiniu_config, fake: FakeQiniu
) -> None:
    fake.hosts = {"static.example.com"}
    fake.errors_as_200 = True  # a 400031 in an HTTP 200 answer is still an error
    bad_url = "https://static.example.com/invalid-url.js"
    bad_host = "https://other.example.org/x.js"
    r, data = submit(run_cli, *urls(2), bad_url, bad_host)
    assert r.returncode == 4, r.stderr
    assert data["accepted"] == 2
    reasons = {x["url"]: x["reason"] for x in data["rejected"]}
    assert set(reasons) == {bad_url, bad_host}
    assert "400031" in reasons[bad_url] and "invalid url" in reasons[bad_url]
    assert "400032" in reasons[bad_host] and "domain" in reasons[bad_host]
    assert [c["code"] for c in fake.calls(PREFETCH)] == [400031, 400032, 200]
    assert fake.accepted() == [urls(2)]


def test_invalid_urls_unnamed_are_found_by_splitting(
    run_cli, qiniu_config, fake: FakeQiniu
) -> None:
    fake.name_invalid = False
    items = urls(8)
    items[5] = "https://static.example.com/invalid-url.js"
    r, data = submit(run_cli, *items)
    assert r.returncode == 4, r.stderr
    assert [x["url"] for x in data["rejected"]] == [items[5]]
    assert data["accepted"] == 7
    assert fake.accepted_counts() == {u: 1 for u in items if u != items[5]}


def test_400037_in_flight_urls_count_as_accepted_under_their_task(
    run_cli, qiniu_config, fake: FakeQiniu
) -> None:
    items = urls(12)
    first = fake.add_task(items[:3], seconds=30)
    second = fake.add_task(items[3:5], seconds=30)
    r, data = submit(run_cli, *items)
    assert r.returncode == 0, r.stderr
    assert data["accepted"] == 12 and data["rejected"] == []
    tasks = {t["task_id"]: t["urls"] for t in data["tasks"]}
    assert tasks[first] == 3 and tasks[second] == 2 and len(tasks) == 3
    assert 400037 in [c["code"] for c in fake.calls(PREFETCH)]
    assert fake.accepted_counts() == {u: 1 for u in items}  # nothing in flight sent twice
    assert any("urls" in c["body"] for c in fake.calls(PREFETCH_LIST))


def test_invalidate_refreshes_first_and_waits_for_the_purge(
    run_cli, qiniu_config, fake: FakeQiniu
) -> None:
    items = [*urls(129), "https://static.example.com/fail-purge.js"]
    r, data = submit(run_cli, "--invalidate", "-i", "-", input=as_input(items))
    assert r.returncode == 4, r.stderr
    refreshes = fake.calls(REFRESH)
    assert sorted(c["urls"] for c in refreshes) == [10, 60, 60]
    purged_by = max(t.created + t.seconds for t in fake.tasks if t.kind == "refresh")
    first_prefetch = min(c["t"] for c in fake.calls(PREFETCH))
    assert max(c["t"] for c in refreshes) < first_prefetch
    assert first_prefetch >= purged_by  # the purge was done before the prefetch began
    assert fake.calls(REFRESH_LIST)
    # a URL whose purge failed is reported and not prefetched
    assert data["accepted"] == 129
    assert data["failed"] == [
        {"url": items[-1], "provider": "qiniu", "reason": f"purge failed: {FAIL_DETAIL}"}
    ]
    assert items[-1] not in fake.accepted_counts()


def test_invalidate_settles_refused_and_in_flight_refreshes(
    run_cli, qiniu_config, fake: FakeQiniu
) -> None:
    items = urls(5)
    bad = "https://static.example.com/invalid-url.js"
    purging = fake.add_task(items[:2], kind="refresh", seconds=60)  # someone else's purge
    # it ends once our lookup has seen it in flight
    fake.when(
        lambda r: r["path"] == REFRESH_LIST and "urls" in r["body"], lambda: fake.finish(purging)
    )
    r, data = submit(run_cli, "--invalidate", *items, bad)
    assert r.returncode == 4, r.stderr
    # 400031 names the bad URL; the rest again: 400037 for the two in flight; the last three
    assert [c["code"] for c in fake.calls(REFRESH)] == [400031, 400037, 200]
    assert [c["urls"] for c in fake.calls(REFRESH)] == [6, 5, 3]
    assert any(c["body"].get("requestId") == purging for c in fake.calls(REFRESH_LIST))
    ((failed,),) = [data["failed"]]
    assert failed["url"] == bad and failed["reason"].startswith("purge failed: invalid url")
    assert data["accepted"] == 5
    # the prefetch began after both purges (ours and the one in flight) were done
    purged_by = max(t.created + t.seconds for t in fake.tasks if t.kind == "refresh")
    assert min(c["t"] for c in fake.calls(PREFETCH)) >= purged_by
    assert fake.accepted_counts("refresh") == {u: 1 for u in items}


def test_refresh_quota_used_up_stops_before_any_prefetch(
    run_cli, qiniu_config, fake: FakeQiniu
) -> None:
    fake.refresh_quota_day = 0
    r, data = submit(run_cli, "--invalidate", *urls(5))
    assert r.returncode == 5
    # The job's JSON, its URLs deferred (it was an error object, and the hint said "JOB").
    assert (data["state"], data["deferred"], data["accepted"]) == ("incomplete", 5, 0)
    assert "daily refresh quota" in r.stderr
    assert f"prewarm submit --resume {data['job_id']} after " in r.stderr
    assert "--resume JOB" not in r.stderr
    assert [c["code"] for c in fake.calls(REFRESH)] == [400034]
    assert fake.calls(PREFETCH) == []


def test_a_refresh_larger_than_the_quota_left_is_sent_as_large_as_it_allows(
    run_cli, qiniu_config, fake: FakeQiniu
) -> None:
    fake.refresh_quota_day = 2
    items = urls(5)
    r, data = submit(run_cli, "--invalidate", *items)
    assert r.returncode == 5, r.stderr
    # Refused whole (400034), then sent as large as what is left: those refreshed are
    # prefetched, the rest deferred for a --resume after the reset.
    assert [c["code"] for c in fake.calls(REFRESH)] == [400034, 200, 400034]
    assert fake.accepted_counts("refresh") == {u: 1 for u in items[:2]}
    assert fake.accepted_counts() == {u: 1 for u in items[:2]}
    assert (data["state"], data["deferred"], data["accepted"]) == ("incomplete", 3, 2)
    assert f"prewarm submit --resume {data['job_id']} after " in r.stderr
    # A dry run knows from the last answer that no refresh is left today: all deferred.
    r, plan = submit(run_cli, "--invalidate", "--dry-run", *urls(4, "https://cdn.example.com/n"))
    assert r.returncode == 0, r.stderr
    assert plan["providers"]["qiniu"]["would_defer"] == 4


def test_dcdn_product_is_sent_on_every_call(run_cli, qiniu_config, fake: FakeQiniu) -> None:
    fake.dcdn_hosts = {"dyn.example.com"}
    items = urls(3, "https://dyn.example.com/api")
    r, data = submit(run_cli, *items)  # product "cdn" (the default): Qiniu knows no such host
    assert r.returncode == 1  # every URL rejected: the job failed as a whole
    assert all('set product = "dcdn"' in x["reason"] for x in data["rejected"])

    qiniu_config('product = "dcdn"')
    r, data = submit(run_cli, "--invalidate", *items)
    assert r.returncode == 0, r.stderr
    assert data["accepted"] == 3
    r, st = run_json(run_cli, "status", "--wait", "--interval", "0.05")
    assert r.returncode == 0, r.stderr
    assert st["state"] == "succeeded" and st["succeeded"] == 3
    sent = fake.calls(PREFETCH)[-1:] + fake.calls(REFRESH) + fake.calls(REFRESH_LIST)
    sent += fake.calls(PREFETCH_LIST)[-1:]
    assert all(c["body"].get("product") == "dcdn" for c in sent)


def test_quota_command_before_and_after_a_prefetch(run_cli, qiniu_config, fake: FakeQiniu) -> None:
    fake.quota_day = 500
    r, rows = run_json(run_cli, "quota", "-p", "qiniu")
    assert r.returncode == 0, r.stderr
    assert (rows[0]["daily"], rows[0]["remaining"], rows[0]["source"]) == (
        None,
        None,
        "last_response",
    )
    assert "no quota call" in rows[0]["details"]["note"]
    assert fake.requests == []  # no request: Qiniu has no quota call

    r, _data = submit(run_cli, *urls(10))
    assert r.returncode == 0, r.stderr
    r, rows = run_json(run_cli, "quota")
    assert (rows[0]["daily"], rows[0]["remaining"]) == (500, 490)
    r, plan = run_json(run_cli, "submit", "--dry-run", *urls(20, "https://static.example.com/g"))
    assert plan["providers"]["qiniu"]["quota"]["remaining"] == 490
    assert len(fake.calls(PREFETCH)) == 1  # the dry run sent nothing


def test_throttling_is_retried(run_cli, qiniu_config, fake: FakeQiniu) -> None:
    fake.fail_next("403024", 2, retry_after=0.05)
    r, data = submit(run_cli, *urls(10))
    assert r.returncode == 0, r.stderr
    assert [c["code"] for c in fake.calls(PREFETCH)] == [403024, 403024, 200]
    assert data["accepted"] == 10
    assert fake.accepted_counts() == {u: 1 for u in urls(10)}


def test_throttled_beyond_retries_defers_exit_5(run_cli, qiniu_config, fake: FakeQiniu) -> None:
    fake.fail_next("403022", -1, retry_after=0.01)
    r, data = submit(run_cli, *urls(5))
    assert r.returncode == 5
    assert (data["accepted"], data["deferred"]) == (0, 5)
    assert len(fake.calls(PREFETCH)) == 4  # retries = 4
    fake.clear_faults()
    r, data = submit(run_cli, "--resume", data["job_id"])
    assert r.returncode == 0 and data["accepted"] == 5


@pytest.mark.parametrize("fault", ["500000_accepted", "drop_after"])
def test_accepted_despite_500000_or_a_dropped_reply_is_not_resent(
    run_cli, qiniu_config, fake: FakeQiniu, fault: str
) -> None:
    fake.fail_next(fault)
    r, data = submit(run_cli, *urls(70))
    assert r.returncode == 0, r.stderr
    assert data["accepted"] == 70
    assert fake.accepted_counts() == {u: 1 for u in urls(70)}  # looked up, not sent again
    lookups = [c for c in fake.calls(PREFETCH_LIST) if "urls" in c["body"]]
    assert lookups and len(fake.calls(PREFETCH)) == 2
    assert {t["task_id"] for t in data["tasks"]} == {t.request_id for t in fake.tasks}


@pytest.mark.parametrize("fault", ["500000", "gateway_502"])
def test_not_accepted_after_500000_is_found_missing_and_resent(
    run_cli, qiniu_config, fake: FakeQiniu, fault: str
) -> None:
    fake.fail_next(fault)
    r, data = submit(run_cli, *urls(10))
    assert r.returncode == 0, r.stderr
    assert data["accepted"] == 10
    assert fake.accepted_counts() == {u: 1 for u in urls(10)}
    assert len(fake.calls(PREFETCH)) == 2


def test_an_unanswered_batch_is_not_settled_by_another_jobs_task(
    run_cli, qiniu_config, fake: FakeQiniu
) -> None:
    """Another job warmed the same URLs a moment ago; this one purges them first and its
    prefetch gets 500000 without being accepted: the lookup finds the other job's task, which
    is not this batch's, so the URLs are sent again (they were counted accepted, and stayed
    cold after the purge)."""
    fake.task_seconds = 0.0  # the first job's task is finished: no 400037 for a resend
    r, first = submit(run_cli, *urls(10))
    assert r.returncode == 0, r.stderr
    fake.fail_next("500000")
    r, data = submit(run_cli, "--invalidate", *urls(10))
    assert r.returncode == 0, r.stderr
    assert data["accepted"] == 10
    (task,) = data["tasks"]
    assert task["task_id"] != first["tasks"][0]["task_id"]
    assert fake.accepted_counts() == {u: 2 for u in urls(10)}  # warmed again after the purge
    assert [c["code"] for c in fake.calls(PREFETCH)] == [200, 500000, 200]


@pytest.mark.parametrize("fault", ["500000", "gateway_502"])
def test_a_vendor_that_never_answers_is_asked_within_the_retry_policy(
    run_cli, qiniu_config, fake: FakeQiniu, fault: str
) -> None:
    """Every prefetch gets a 5xx and is not accepted: each lookup finds nothing, and the URLs
    are sent again after the policy's waits, then recorded failed (they were resent at once,
    without end)."""
    qiniu_config()
    fake.fail_next(fault, -1)
    r, data = submit(run_cli, *urls(3))
    assert r.returncode == 1, r.stderr
    assert data["accepted"] == 0 and len(data["failed"]) == 3
    assert "not found at the vendor, after retries" in data["failed"][0]["reason"]
    assert len(fake.calls(PREFETCH)) == 4  # retries = 4: four tries in all
    assert fake.accepted_counts() == {}


def test_force_sends_an_unanswered_batch_again_within_the_retry_policy_when_lookups_fail(
    run_cli, qiniu_config, fake: FakeQiniu
) -> None:
    """Every prefetch and every lookup gets a 502: --force sends the batch again without
    knowing, but only as often as the retry policy allows (it went on without end, the hint
    of an earlier run sending users there). The outcome stays unknown: the vendor may hold
    the URLs, and a plain --resume must not send them again."""
    qiniu_config()
    fake.fail_next("gateway_502", -1)
    fake.fail_next("gateway_502", -1, path=PREFETCH_LIST)
    r, data = submit(run_cli, "--force", *urls(2))
    assert r.returncode == 4, r.stderr
    assert (data["accepted"], data["failed"], data["unknown"]) == (0, [], 2)
    # retries = 4 tries at most, fewer when the failing lookups' own retries spend the time
    n_sent = len(fake.calls(PREFETCH))
    assert 2 <= n_sent <= 4
    # Qiniu can be asked which it holds: a --resume asks again (--force is not the way).
    assert (
        f"2 URLs with an unknown outcome: `prewarm submit --resume {data['job_id']}` asks the"
        " vendor again which it holds, and sends the others" in r.stderr
    )
    assert "--force` resends them" not in r.stderr
    r, again = submit(run_cli, "--resume", data["job_id"])
    assert r.returncode == 4 and again["unknown"] == 2, r.stderr
    assert len(fake.calls(PREFETCH)) == n_sent  # nothing sent without --force
    # The gateway's HTML page is said in one line of its words.
    assert "lookup failed: Qiniu prefetch list: 502 Bad Gateway (code 502)" in r.stderr
    assert "<" not in r.stderr


def test_a_reply_that_is_not_json_is_one_line_of_its_words() -> None:
    from prewarm_qiniu.client import _in_one_line

    page = (
        "<!DOCTYPE HTML>\n<html><head><style>body { color: red }</style>\n"
        "<title>Error response</title></head>\n<body>\n<h1>Error response</h1>\n"
        "<p>Error code: 501</p>\n</body></html>\n"
    )
    assert _in_one_line(page) == "Error response Error response Error code: 501"
    assert _in_one_line("x" * 300).endswith("…") and len(_in_one_line("x" * 300)) == 160


def test_5xx_on_a_read_is_retried(run_cli, qiniu_config, fake: FakeQiniu) -> None:
    request_id = fake.add_task(urls(2), seconds=0)
    fake.fail_next("500000", 2, path=PREFETCH_LIST, retry_after=0.01)
    r, st = run_json(run_cli, "status", f"qiniu:{request_id}")
    assert r.returncode == 0, r.stderr
    assert st["state"] == "succeeded"
    assert [c["code"] for c in fake.calls(PREFETCH_LIST)] == [500000, 500000, 200]


def test_above_60_with_force_is_refused_and_shrunk(run_cli, qiniu_config, fake: FakeQiniu) -> None:
    qiniu_config("batch_size = 80")
    r = run_cli("submit", *urls(3))
    assert r.returncode == 3 and "above the vendor limit of 60" in r.stderr
    r, data = submit(run_cli, "--force", "-i", "-", input=as_input(urls(100)))
    assert r.returncode == 0, r.stderr
    assert data["accepted"] == 100
    assert len(fake.batch_violations) == 1  # the one forced batch of 80; then 60 at most
    assert all(len(t) <= 60 for t in fake.accepted())


def test_bad_credentials_exit_3_and_resume(run_cli, qiniu_config, fake: FakeQiniu, cli_env) -> None:
    r = run_cli("submit", *urls(5), env_extra={"QINIU_SECRET_KEY": "not-the-key"})
    assert r.returncode == 3
    assert (
        "bad token" in r.stderr and "`prewarm config show` says where each comes from" in r.stderr
    )
    assert "not-the-key" not in r.stderr + r.stdout
    assert fake.auth_failures == 1
    r, jobs = run_json(run_cli, "jobs")
    r, data = submit(run_cli, "--resume", jobs[0]["job_id"])
    assert r.returncode == 0 and data["accepted"] == 5
    no_secret(fake, r)


def test_config_check_online(run_cli, qiniu_config, fake: FakeQiniu) -> None:
    r, data = run_json(run_cli, "config", "check", "--online")
    assert r.returncode == 0, r.stderr
    (entry,) = data["providers"]
    assert entry["ok"] and "keys accepted" in entry["notes"][0]
    assert len(fake.requests) == 1
    r = run_cli("config", "check", "--online", env_extra={"QINIU_ACCESS_KEY": "nobody"})
    assert r.returncode == 3


def test_endpoint_must_be_a_url_at_the_root(run_cli, qiniu_config, write_config) -> None:
    path = qiniu_config()
    write_config(path.read_text().replace("http://127.0.0.1", "127.0.0.1"))
    r = run_cli("submit", *urls(1))
    assert r.returncode == 3
    assert "endpoint" in r.stderr and "not a URL with a scheme" in r.stderr


# --------------------------------------------------------------------------- in process


def provider(fake: FakeQiniu, **settings: Any) -> Any:
    from prewarm_qiniu import QiniuProvider

    base = {
        "access_key": fake.access_key,
        "secret_key": fake.secret_key,
        "endpoint": fake.url,
        "timeout": 5.0,
    }
    return QiniuProvider("qiniu", {**base, **settings})


def test_endpoint_default_is_https_and_bad_ones_are_config_errors() -> None:
    from prewarm_qiniu import QiniuProvider

    keys = {"access_key": "a", "secret_key": "s"}
    assert QiniuProvider("q", keys).endpoint == "https://fusion.qiniuapi.com"
    for bad in ("fusion.qiniuapi.com", "https://fusion.qiniuapi.com/v2", "ftp://x"):
        with pytest.raises(ConfigError, match="endpoint"):
            QiniuProvider("q", {**keys, "endpoint": bad})
    assert "s" not in repr(QiniuProvider("q", {**keys, "secret_key": "sekrit"})).replace(
        "https", ""
    ).replace("fusion", "").replace("qiniuapi", "")


def test_missing_sdk_is_a_one_line_config_error(monkeypatch, fake: FakeQiniu) -> None:
    monkeypatch.setitem(sys.modules, "qiniu", None)
    with pytest.raises(ConfigError) as info:
        provider(fake).prepare()
    assert str(info.value) == (  # DESIGN §1: the error names the extra to install
        "the qiniu provider needs the qiniu SDK: prewarm's qiniu extra:"
        " pip install 'prewarm-cli[qiniu]' (pipx: pipx install --force 'prewarm-cli[qiniu]')"
    )


def test_module_import_is_light() -> None:
    code = (
        "import sys, prewarm_qiniu; "
        "print(sorted(m for m in ('qiniu', 'httpx', 'requests') if m in sys.modules))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]"


def test_find_submitted_counts_recent_or_in_flight_tasks(
    fake: FakeQiniu, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("PREWARM_STATE_DIR", str(tmp_path))
    p = provider(fake)
    done_long_ago = fake.add_task(urls(2), age=3600, seconds=0)
    in_flight = fake.add_task(urls(1, "https://static.example.com/g"), age=3600, seconds=7200)
    recent = fake.add_task(urls(1, "https://static.example.com/h"), seconds=0)
    since = datetime.now(UTC) - timedelta(minutes=5)
    wanted = [
        *urls(2),
        *urls(1, "https://static.example.com/g"),
        *urls(1, "https://static.example.com/h"),
    ]
    found = p.find_submitted(wanted, since)
    assert done_long_ago not in found.values()  # finished before `since`: a resend is due
    assert found == {wanted[2]: in_flight, wanted[3]: recent}
    p.close()


def test_status_maps_states_and_keeps_state_detail(fake: FakeQiniu, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PREWARM_STATE_DIR", str(tmp_path))
    p = provider(fake)
    fake.task_seconds = 60  # until finish()
    result = p.submit_batch(
        ["https://static.example.com/ok", "https://static.example.com/fail"], SubmitOptions()
    )
    (running,) = p.fetch_status([result.task_id])
    assert (running.state, running.raw_state, running.in_progress) == (
        State.RUNNING,
        "processing",
        2,
    )
    fake.finish(result.task_id)
    (done,) = p.fetch_status([result.task_id])
    assert (done.state, done.succeeded, done.failed) == (State.PARTIAL, 1, 1)
    assert {u.url: u.reason for u in done.urls if u.state is State.FAILED} == {
        "https://static.example.com/fail": FAIL_DETAIL
    }
    assert done.details["created_at"].endswith("Z")
    old = fake.add_task(urls(1), age=8 * DAY)
    with pytest.raises(NotFoundError, match="7 days"):
        p.fetch_status([old])
    p.close()


def test_remembered_quota_is_marked_stale_after_the_daily_reset(
    fake: FakeQiniu, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("PREWARM_STATE_DIR", str(tmp_path))
    fake.quota_day = 100
    p = provider(fake)
    result = p.submit_batch(urls(10), SubmitOptions())
    assert result.quota is not None
    assert (result.quota.daily, result.quota.remaining, result.quota.source) == (
        100,
        90,
        "last_response",
    )
    assert (p.quota().daily, p.quota().remaining) == (100, 90)
    refresh = p.invalidate_batch(urls(3), SubmitOptions())
    assert refresh.task_id and len(refresh.accepted) == 3
    assert (p.quota().details["refresh_daily"], p.quota().details["refresh_remaining"]) == (
        500,
        497,
    )
    later = datetime.now(UTC) + timedelta(days=1)
    p.now = lambda: later
    q = p.quota()
    assert (q.daily, q.remaining) == (100, None) and "reset" in q.details["note"]
    assert (tmp_path / "qiniu-quota.json").stat().st_mode & 0o077 == 0
    p.close()


def test_extra_requests_wait_for_the_engines_limiter(
    fake: FakeQiniu, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("PREWARM_STATE_DIR", str(tmp_path))
    fake.max_page_size = 2
    first = fake.add_task(urls(5), seconds=0)  # 3 pages
    second = fake.add_task(urls(1, "https://static.example.com/g"), seconds=0)  # 1 page
    p = provider(fake)
    paced: list[int] = []
    p.attach_pacer(paced.append)
    with p.engine_call():  # as the engine calls it: it paced the first request already
        statuses = p.fetch_status([first, second])
    assert [s.total for s in statuses] == [5, 1]
    # the engine paced the call (its first request); the 3 others wait here
    assert len(fake.calls(PREFETCH_LIST)) == 4 and paced == [0, 0, 0]
    # outside an engine call (e.g. config check) every request waits its turn
    paced.clear()
    p.fetch_status([second])
    assert paced == [0]
    p.close()


def test_a_list_time_is_beijing_time_unless_it_names_its_offset() -> None:
    from prewarm_qiniu.clock import BEIJING, parse_vendor_time

    beijing = datetime(2024, 5, 1, 10, 0, tzinfo=BEIJING)
    assert parse_vendor_time("2024-05-01 10:00:00") == beijing
    assert parse_vendor_time("2024-05-01T10:00:00") == beijing
    assert parse_vendor_time("2024-05-01T02:00:00Z") == beijing  # it was 02:00 Beijing
    assert parse_vendor_time("2024-05-01T10:00:00+08:00") == beijing
    assert parse_vendor_time("yesterday") is None


def test_a_missing_sdk_stops_a_submit_before_its_job_is_made(
    monkeypatch, qiniu_config, fake: FakeQiniu
) -> None:
    """Each such submit left an incomplete job for `jobs` to list, and --resume to fail on."""
    from helpers import invoke

    monkeypatch.setenv("QINIU_ACCESS_KEY", fake.access_key)  # as the fixture's processes get
    monkeypatch.setenv("QINIU_SECRET_KEY", fake.secret_key)
    monkeypatch.setitem(sys.modules, "qiniu", None)
    r = invoke("submit", "-o", "json", "https://static.example.com/a.js")
    assert r.returncode == 3, r.stderr
    assert "prewarm's qiniu extra" in json.loads(r.stdout)["error"]["message"]
    assert json.loads(invoke("jobs", "-o", "json").stdout) == []
