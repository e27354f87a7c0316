"""The aws provider end to end: the real CLI in a subprocess against the fake prewarm stack."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes.aws import FakeDistribution, FakePrewarmApi, config_toml
from helpers import cli_json, urls, wait_for

SECRET_HEADER = "Authorization: Bearer s3cr3t-token-value"
POPS = ["IAD89-P1", "NRT57-P3"]
DISTRIBUTIONS = [
    FakeDistribution("E1AAAA", "d1aaaa.cloudfront.net", ["www.example.com"]),
    FakeDistribution("E2BBBB", "d2bbbb.cloudfront.net", []),
    FakeDistribution("E3CCCC", "d3cccc.cloudfront.net", ["static.example.com", "s.example.com"]),
    FakeDistribution("E4DDDD", "d4dddd.cloudfront.net", ["*.img.example.com"]),
    FakeDistribution("E5EEEE", "d5eeee.cloudfront.net", ["media.example.com"]),
]


@pytest.fixture
def api() -> Iterator[FakePrewarmApi]:
    with FakePrewarmApi(distributions=DISTRIBUTIONS) as fake:
        yield fake


@pytest.fixture
def configure(
    api: FakePrewarmApi,
    write_config: Callable[[str], Path],
    cli_env: dict[str, str],
    tmp_path: Path,
) -> Callable[..., Path]:
    """Writes a config for alias "cf" at the fake; keyword arguments replace or drop keys."""
    api.point_cli_at(cli_env, tmp_path)

    def write(**keys: Any) -> Path:
        values: dict[str, Any] = {
            "type": "aws",
            "endpoint": api.endpoint,
            "cf_domain": "d3cccc.cloudfront.net",
            "target_type": "pop",
            "pops": POPS,
            "poll_interval": 0.1,
        }
        values.update(keys)
        return write_config(config_toml(values))

    return write


def moved_clock(
    api: FakePrewarmApi, *, step_seconds: float, download_seconds: float
) -> list[float]:
    """The fake stack's clock, which the test moves on (``offset[0]`` seconds ahead) instead
    of waiting: setup steps of ``step_seconds`` each, then downloads over
    ``download_seconds``, so that a job is caught in any state however slow the machine."""
    offset = [0.0]
    api.clock = lambda: time.monotonic() + offset[0]
    api.step_seconds = step_seconds
    api.download_seconds = download_seconds
    return offset


# --------------------------------------------------------------------------- the happy path


def test_a_stack_behind_a_private_ca_is_reached_through_ca_bundle(
    run_cli, write_config, cli_env, tmp_path: Path
) -> None:
    # The stack, its report link and CloudFront's lookup over HTTPS signed by a private CA:
    # every request trusts the config's ca_bundle (report --download built a client of its own
    # that did not), and verification stays on (the lookup refused the CA it was not given).
    import ssl

    from fakes.tls import tls_files

    ca, cert, key = tls_files(tmp_path, "localhost")
    api = FakePrewarmApi(distributions=DISTRIBUTIONS)
    api.ssl_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    api.ssl_context.load_cert_chain(cert, key)
    with api:
        api.point_cli_at(cli_env, tmp_path)
        values: dict[str, Any] = {
            "type": "aws",
            "endpoint": api.endpoint,
            "target_type": "pop",  # no cf_domain: found through CloudFront
            "pops": POPS,
            "poll_interval": 0.1,
            "ca_bundle": str(ca),
        }
        write_config(config_toml(values))
        items = [*urls(2), "https://static.example.com/dlfail.js"]
        r, sub = cli_json(run_cli, "submit", *items, "--wait")
        assert r.returncode == 4, r.stderr  # one failed download
        assert sub["accepted"] == 3
        target = tmp_path / "failed.csv"
        r, rep = cli_json(run_cli, "report", "--download", str(target))
        assert r.returncode == 4, r.stderr
        assert rep["report_url"].startswith("https://localhost:")
        assert "saved" in r.stderr and "dlfail.js" in target.read_text()

        write_config(config_toml({k: v for k, v in values.items() if k != "ca_bundle"}))
        r = run_cli("submit", "-o", "json", *urls(1))
        assert r.returncode != 0 and "certificate" in r.stderr.lower(), r.stderr


def test_submit_sends_every_field_then_status_wait_and_report(
    run_cli, configure, api: FakePrewarmApi, tmp_path: Path, cli_env
) -> None:
    configure(instance_count=2, timeout_minutes=15)
    api.report_misses = 1  # the CSV is written after FINISHED: the first fetch gets a 404
    items = [
        *urls(3),
        "https://static.example.com/dlfail.js",
        "https://static.example.com/headfail.js",
        "https://static.example.com/popfail.js",
    ]
    r, sub = cli_json(run_cli, "submit", *items, "-H", SECRET_HEADER)
    assert r.returncode == 0, r.stderr
    assert sub["accepted"] == 6 and sub["state"] == "submitted"
    (task,) = sub["tasks"]
    (post,) = api.requests_to("POST", "prewarm")
    assert post["body"] == {
        "url_list": items,
        "cf_domain": "d3cccc.cloudfront.net",
        "timeout": 15,
        "target_type": "pop",
        "pops": POPS,
        "regions": [],
        "countries": [],
        "instance_count": 2,
        "header": [SECRET_HEADER],
        "need_invalidate": False,
    }
    assert task["task_id"] in api.jobs
    # the engine asked whether the stack was busy first: one GET /instances, then the POST
    assert [(q["method"], q["route"]) for q in api.requests[:2]] == [
        ("GET", "instances"),
        ("POST", "prewarm"),
    ]

    r, st = cli_json(run_cli, "status", "--wait")
    assert r.returncode == 4, r.stderr  # partial
    assert st["state"] == "partial" and st["raw_state"] == "FINISHED"
    # URL counts, not (PoP, URL) tasks: 6 URLs, 2 failed downloads, 1 failed the HEAD check
    assert (st["total"], st["succeeded"], st["failed"]) == (6, 3, 3)
    details = st["providers"]["cf"]["details"]
    assert details["tasks_total"] == 10  # 5 URLs passed the HEAD check x 2 PoPs
    assert 0 < details["percentage_complete_bytes"] < 100  # bytes, shown as such
    assert details["head_check_failed"] == 1
    assert details["timeout_at"].endswith("Z")
    # status found the job FINISHED before its CSV existed: a 404, retried, then the file
    assert api.csv_requests[:2] == [404, 200]

    target = tmp_path / "failed.csv"
    r, rep = cli_json(run_cli, "report", "--download", str(target))
    assert r.returncode == 4, r.stderr
    got = {(f["url"].rsplit("/", 1)[1], f["pop"]) for f in rep["failures"]}
    assert got == {
        ("headfail.js", None),
        ("dlfail.js", "IAD89-P1"),
        ("dlfail.js", "NRT57-P3"),
        ("popfail.js", "IAD89-P1"),
    }
    assert all(f["reason"] for f in rep["failures"])
    assert rep["report_url"].startswith(api.url + "/s3/")
    for out in (r.stdout, r.stderr):
        assert "s3cr3t" not in out  # the CSV's curl column (with the headers) is never shown
    assert "saved" in r.stderr  # --download fetched the 10-minute link at once
    rows = target.read_text().splitlines()
    assert len(rows) == 3 and sum("dlfail.js" in row for row in rows) == 2
    assert target.stat().st_mode & 0o777 == 0o600  # its curl column holds the -H headers

    # a fresh CI container, no journal: the URL count comes from total_count / PoPs
    fresh = {"PREWARM_STATE_DIR": str(Path(cli_env["PREWARM_STATE_DIR"]).parent / "fresh")}
    r, st = cli_json(run_cli, "status", f"cf:{task['task_id']}", env_extra=fresh)
    assert r.returncode == 4, r.stderr
    assert (st["state"], st["total"], st["succeeded"]) == ("partial", 6, 3)
    assert st["providers"]["cf"]["details"]["url_count"] == "estimated"
    assert api.violations == []


def test_unknown_task_id_is_not_found(run_cli, configure) -> None:
    configure()
    r = run_cli("status", "cf:0000-not-a-job")
    assert r.returncode == 2
    assert "has no job 0000-not-a-job" in r.stderr


def test_a_url_the_server_rewrites_keeps_its_outcome_in_a_later_process(
    run_cli, configure, api: FakePrewarmApi
) -> None:
    """The server writes ( ) as %28 %29: another process's status and report still match the
    job's URL (status said succeeded, exit 0, for a URL that failed, and recorded it)."""
    configure()
    url = "https://static.example.com/dlfail(2).js"
    r, sub = cli_json(run_cli, "submit", "--wait", url)
    assert r.returncode == 1, r.stderr
    r, st = cli_json(run_cli, "status", sub["job_id"])
    assert r.returncode == 1, r.stderr
    assert (st["state"], st["failed"], st["succeeded"]) == ("failed", 1, 0)
    r, rep = cli_json(run_cli, "report", sub["job_id"])
    assert {f["url"] for f in rep["failures"]} == {url}
    r, jobs = cli_json(run_cli, "jobs")
    assert jobs[0]["state"] == "failed"


# --------------------------------------------------------------------------- the stack


def test_scale_shows_and_sets_desired_capacity(run_cli, configure, api: FakePrewarmApi) -> None:
    configure()
    r, data = cli_json(run_cli, "scale")
    assert r.returncode == 0, r.stderr
    assert data == {"provider": "cf", "desired_capacity": 0}
    r, data = cli_json(run_cli, "scale", "3", "--yes")
    assert r.returncode == 0, r.stderr
    assert data["desired_capacity"] == 3 and api.capacity == 3
    assert "costing money" in data["note"]
    # force_stop is acted on by its presence: it is never sent when only scaling
    assert api.requests_to("POST", "instances")[-1]["body"] == {"DesiredCapacity": 3}
    r = run_cli("scale", "301", "--yes")
    assert r.returncode == 2 and "0 to 300" in r.stderr
    assert len(api.requests_to("POST", "instances")) == 1


def test_scale_without_p_takes_the_one_alias_that_can_scale(
    run_cli, configure, api: FakePrewarmApi, tmp_path: Path
) -> None:
    path = configure()
    qiniu = '[providers.qn]\ntype = "qiniu"\naccess_key = "env:UNSET_QN_AK"\n'
    path.write_text(path.read_text().replace('provider = "cf"', 'provider = "qn"') + qiniu)
    r, data = cli_json(run_cli, "scale")
    assert r.returncode == 0, r.stderr
    assert data == {"provider": "cf", "desired_capacity": 0}
    r = run_cli("scale", "-p", "qn")
    assert r.returncode == 2 and "qn (qiniu) does not support scale" in r.stderr
    r = run_cli("scale", "-p", "qn", "3")  # said before asking for --yes
    assert r.returncode == 2 and "qn (qiniu) does not support scale" in r.stderr
    path.write_text(path.read_text() + qiniu.replace("qn", "cf2").replace("qiniu", "aws"))
    r = run_cli("scale")  # two can: the default is said to lack it, and which can
    assert r.returncode == 2 and "qn cannot scale; cf and cf2 can: pass -p NAME" in r.stderr
    assert len(api.requests_to("GET", "instances")) == 1


def test_cancel_in_progress_and_not(run_cli, configure, api: FakePrewarmApi) -> None:
    configure()
    # Each setup step lasts 30 s, so the job is caught before IN-PROGRESS however slow the
    # machine is; the test then moves the fake's clock on instead of waiting.
    offset = moved_clock(api, step_seconds=30, download_seconds=600)
    r, sub = cli_json(run_cli, "submit", *urls(3))
    task = sub["tasks"][0]["task_id"]
    assert api.job_status(task) in ("CREATED", "CHECK_POP")
    r = run_cli("cancel", sub["job_id"])
    assert r.returncode == 2
    assert "only while it is IN-PROGRESS" in r.stderr and "prewarm scale -p cf 0" in r.stderr
    assert api.requests_to("POST", "instances") == []
    r = run_cli("report", sub["job_id"])
    assert r.returncode == 2 and "FINISHED or STOPPED" in r.stderr

    offset[0] = 100.0  # past the three setup steps, well within the download
    assert api.job_status(task) == "IN-PROGRESS"
    r, data = cli_json(run_cli, "cancel", sub["job_id"])
    assert r.returncode == 0, r.stderr
    assert data[0]["tasks"][0]["task_id"] == task
    assert api.requests_to("POST", "instances")[-1]["body"] == {
        "DesiredCapacity": 0,
        "req_id": task,
        "force_stop": True,
    }
    assert api.job_status(task) == "STOPPED" and api.capacity == 0
    r, st = cli_json(run_cli, "status", sub["job_id"])
    assert r.returncode == 4 and st["state"] == "cancelled" and st["raw_state"] == "STOPPED"
    # Every target is in one count: none is said to be warmed by a job stopped midway.
    assert (st["total"], st["failed"], st["succeeded"]) == (3, 3, 0)
    # ...and the report lists them, as the cancel's note says it does.
    r, rep = cli_json(run_cli, "report", sub["job_id"])
    assert r.returncode == 4, r.stderr
    assert sorted(f["url"] for f in rep["failures"]) == sorted(urls(3))
    assert all("stopped before it finished" in f["reason"] for f in rep["failures"])
    r = run_cli("cancel", sub["job_id"])
    assert r.returncode == 2 and "already ended (STOPPED)" in r.stderr


def test_a_job_its_timeout_rule_stopped_is_timed_out_not_cancelled(
    run_cli, configure, api: FakePrewarmApi
) -> None:
    configure()
    offset = moved_clock(api, step_seconds=30, download_seconds=600)
    r, sub = cli_json(run_cli, "submit", *urls(2))
    assert r.returncode == 0, r.stderr
    task = sub["tasks"][0]["task_id"]
    offset[0] = 100.0  # IN-PROGRESS
    api.expire(task)  # the stack's timeout rule: STOPPED, as a force_stop would leave it
    assert api.job_status(task) == "STOPPED"
    r, st = cli_json(run_cli, "status", sub["job_id"])
    assert r.returncode == 4, r.stderr
    assert st["state"] == "timed_out" and st["raw_state"] == "STOPPED"
    (task_status,) = st["providers"]["cf"]["tasks"]
    assert "timeout rule" in task_status["details"]["stopped_by"]
    r, rep = cli_json(run_cli, "report", sub["job_id"])
    assert r.returncode == 4, r.stderr
    assert sorted(f["url"] for f in rep["failures"]) == sorted(urls(2))


def test_a_pop_that_does_not_resolve_wedges_the_job_and_it_is_said_and_stoppable(
    run_cli, configure, api: FakePrewarmApi
) -> None:
    # The stack's known bug: a PoP whose lookup fails mid-list leaves the job IN-PROGRESS
    # with total_count 0 while results arrive; it never finishes by itself.
    configure()
    offset = moved_clock(api, step_seconds=30, download_seconds=60)
    api.dead_pops = {POPS[1]}
    r, sub = cli_json(run_cli, "submit", *urls(2))
    assert r.returncode == 0, r.stderr
    task = sub["tasks"][0]["task_id"]
    offset[0] = 200.0  # past its setup and what the downloads would take
    assert api.job_status(task) == "IN-PROGRESS"
    r, st = cli_json(run_cli, "status", sub["job_id"])
    (task_status,) = st["providers"]["cf"]["tasks"]
    assert (
        st["state"] == "running" and "will not finish by itself" in task_status["details"]["stuck"]
    )
    # A wait ends at its limit (exit 6), naming the job; cancel then stops it.
    r = run_cli("status", sub["job_id"], "--wait", "--interval", "0.05", "--wait-timeout", "0.3")
    assert r.returncode == 6, r.stderr
    r, _ = cli_json(run_cli, "cancel", sub["job_id"])
    assert r.returncode == 0, r.stderr
    assert api.job_status(task) == "STOPPED" and api.capacity == 0
    r, st = cli_json(run_cli, "status", sub["job_id"])
    assert st["state"] == "cancelled"


def test_the_usage_plans_1000_requests_a_day_are_kept_across_runs(
    run_cli, configure, api: FakePrewarmApi, cli_env
) -> None:
    import sqlite3

    configure()
    r, sub = cli_json(run_cli, "submit", *urls(2))
    assert r.returncode == 0, r.stderr
    wait_for(lambda: api.job_status(sub["tasks"][0]["task_id"]) == "FINISHED")
    budgets = Path(cli_env["PREWARM_STATE_DIR"]) / "budgets.sqlite3"
    with sqlite3.connect(budgets) as db:  # the rest of today's 1000, spent by other runs
        ((key, used),) = db.execute("SELECT key, COUNT(*) FROM requests GROUP BY key")
        now = time.time()
        db.executemany("INSERT INTO requests (key, t) VALUES (?, ?)", [(key, now)] * (1000 - used))
    posts = len(api.requests_to("POST", "prewarm"))
    r, plan = cli_json(run_cli, "submit", "--dry-run", *urls(2, "https://static.example.com/n"))
    assert r.returncode == 0, r.stderr
    assert plan["providers"]["cf"]["would_defer"] == 2  # the plan says what the run does
    assert any("every URL would be deferred" in n for n in plan["providers"]["cf"]["notes"])
    r, again = cli_json(run_cli, "submit", *urls(2, "https://static.example.com/next"))
    assert r.returncode == 5, r.stderr  # deferred: the usage plan would refuse request 1001
    assert again["deferred"] == 2 and "daily budget of 1000 requests" in r.stderr
    assert f"--resume {again['job_id']}" in r.stderr  # the job is kept, to resume tomorrow
    assert len(api.requests_to("POST", "prewarm")) == posts  # nothing reached the stack


def test_second_submit_refused_while_a_job_runs_unless_force(
    run_cli, configure, api: FakePrewarmApi, cli_env
) -> None:
    configure()
    api.download_seconds = 60
    r, first = cli_json(run_cli, "submit", *urls(2))
    assert r.returncode == 0, r.stderr
    posts = len(api.requests_to("POST", "prewarm"))
    # the journal knows the first job is not finished
    r = run_cli("submit", *urls(2, "https://static.example.com/g"))
    assert r.returncode == 2
    assert "one job at a time" in r.stderr and first["job_id"] in r.stderr
    r, plan = cli_json(run_cli, "submit", "--dry-run", *urls(2, "https://static.example.com/g"))
    assert r.returncode == 0, r.stderr
    assert plan["providers"]["cf"]["would_defer"] == 2  # the plan says so too
    assert any(
        "would be refused (exit 2) unless --force" in n for n in plan["providers"]["cf"]["notes"]
    )
    # no journal (another machine): the stack's running instances tell
    fresh = {"PREWARM_STATE_DIR": str(Path(cli_env["PREWARM_STATE_DIR"]).parent / "other")}
    r = run_cli("submit", *urls(2, "https://static.example.com/g"), env_extra=fresh)
    assert r.returncode == 2
    assert "Auto Scaling group runs 1 instance" in r.stderr
    assert len(api.requests_to("POST", "prewarm")) == posts
    r, _ = cli_json(run_cli, "submit", "--force", *urls(2, "https://static.example.com/g"))
    assert r.returncode == 0, r.stderr
    assert len(api.requests_to("POST", "prewarm")) == posts + 1


def test_the_plan_cuts_the_first_job_where_the_run_does_by_its_bytes(
    run_cli, configure, api: FakePrewarmApi
) -> None:
    configure(batch_size=8000)
    items = urls(8000, "https://static.example.com/" + "p" * 170 + "/f")  # 1.6 MB of JSON
    r, plan = cli_json(run_cli, "submit", "--dry-run", *items)
    assert r.returncode == 0, r.stderr
    would_defer = plan["providers"]["cf"]["would_defer"]
    assert 0 < would_defer < 8000  # one job of 1 MB of URLs, the rest deferred
    r, sub = cli_json(run_cli, "submit", *items)
    assert r.returncode == 5, r.stderr
    assert sub["deferred"] == would_defer


def test_urls_of_two_distributions_make_one_job_and_defer_the_rest(
    run_cli, configure, api: FakePrewarmApi
) -> None:
    configure(cf_domain=None)  # resolved from the hosts through ListDistributions
    items = [
        "https://static.example.com/a.js",
        "https://cdn1.img.example.com/b.png",  # *.img.example.com: another distribution
        "https://s.example.com/c.js",  # a second alias of the first one
        "https://nowhere.example.org/d.js",
    ]
    # The plan says what the run does: one distribution's URLs, one rejected, one deferred.
    r, plan = cli_json(run_cli, "submit", "--dry-run", *items)
    assert r.returncode == 0, r.stderr
    planned = plan["providers"]["cf"]
    assert planned["would_defer"] == 1
    assert any(
        "1 URL would be rejected (https://nowhere.example.org" in n for n in planned["notes"]
    )
    assert api.requests_to("POST", "prewarm") == []
    n_listed = len(api.cf_requests)
    r, sub = cli_json(run_cli, "submit", *items)
    assert r.returncode == 5, r.stderr  # deferred: the stack runs one job at a time
    assert sub["accepted"] == 2 and sub["deferred"] == 1
    assert sub["rejected"][0]["url"] == "https://nowhere.example.org/d.js"
    assert "no CloudFront distribution" in sub["rejected"][0]["reason"]
    (post,) = api.requests_to("POST", "prewarm")
    assert post["body"]["cf_domain"] == "d3cccc.cloudfront.net"
    assert post["body"]["url_list"] == ["https://static.example.com/a.js", items[2]]
    assert "--resume" in r.stderr
    # every page of ListDistributions was read (2 per page), once, signed with SigV4
    assert [q["status"] for q in api.cf_requests[n_listed:]] == [200, 200, 200]
    assert [q["params"].get("Marker") for q in api.cf_requests[n_listed:]] == [None, "2", "4"]

    task = sub["tasks"][0]["task_id"]
    wait_for(lambda: api.job_status(task) == "FINISHED")
    r, st = cli_json(run_cli, "status", "--wait")
    assert st["not_sent"] == 1
    r, sub2 = cli_json(run_cli, "submit", "--resume", sub["job_id"])
    assert r.returncode == 4, r.stderr  # the rejected URL stays rejected
    assert sub2["accepted"] == 3 and sub2["deferred"] == 0
    assert api.requests_to("POST", "prewarm")[-1]["body"]["cf_domain"] == "d4dddd.cloudfront.net"


def test_a_host_of_no_distribution_is_a_config_error(
    run_cli, configure, api: FakePrewarmApi
) -> None:
    configure(cf_domain=None)
    r = run_cli("submit", "https://nowhere.example.org/a.js")
    assert r.returncode == 3
    assert "no CloudFront distribution" in r.stderr and "cf_domain" in r.stderr
    assert api.requests_to("POST", "prewarm") == []


def test_overlapping_region_keys_are_sent_as_their_pops(
    run_cli, configure, api: FakePrewarmApi
) -> None:
    configure(target_type="region", pops=None, regions=["apac", "jp"])
    r, sub = cli_json(run_cli, "submit", *urls(2))
    assert r.returncode == 0, r.stderr
    assert "share PoPs" in r.stderr
    body = api.requests_to("POST", "prewarm")[0]["body"]
    assert body["target_type"] == "pop" and body["regions"] == []
    assert len(body["pops"]) == len(set(body["pops"])) == 8
    task = sub["tasks"][0]["task_id"]
    wait_for(lambda: api.job_status(task) == "FINISHED")  # as given, it would never finish


def test_regions_are_sent_as_regions(run_cli, configure, api: FakePrewarmApi) -> None:
    configure(target_type="region", pops=None, regions=["EU", "us"])
    r, _ = cli_json(run_cli, "submit", "--invalidate", *urls(2))
    assert r.returncode == 0, r.stderr
    body = api.requests_to("POST", "prewarm")[0]["body"]
    assert (body["target_type"], body["regions"], body["pops"]) == ("region", ["eu", "us"], [])
    assert body["need_invalidate"] is True  # the API invalidates in the same request


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"target_type": "region", "pops": None, "regions": ["mars"]}, "unknown region key"),
        ({"cf_domain": "www.example.com"}, "providers.cf.cf_domain"),
    ],
)
def test_client_side_validation_exit_3_naming_the_key(
    run_cli, configure, api: FakePrewarmApi, keys: dict[str, Any], message: str
) -> None:
    # (every other check is covered in-process by test_aws_units.py)
    configure(**keys)
    r = run_cli("submit", *urls(1))
    assert r.returncode == 3, r.stderr
    assert message in r.stderr
    assert api.requests == []


@pytest.mark.parametrize(
    ("suffix", "message"),
    [("/prewarm", "ends with the route /prewarm"), ("/dev", "no such route")],
)
def test_endpoint_mistakes_exit_3(
    run_cli, configure, api: FakePrewarmApi, suffix: str, message: str
) -> None:
    configure(endpoint=(api.endpoint if suffix == "/prewarm" else api.url) + suffix)
    r = run_cli("submit", *urls(1))
    assert r.returncode == 3
    assert message in r.stderr


def test_wrong_api_key_exit_3_with_a_hint(run_cli, configure, api: FakePrewarmApi) -> None:
    configure()
    r = run_cli("submit", *urls(2), env_extra={"PREWARM_AWS_API_KEY": "wrong-key-value"})
    assert r.returncode == 3
    assert "API key was refused" in r.stderr and "PREWARM_AWS_API_KEY" in r.stderr
    assert "wrong-key-value" not in r.stdout + r.stderr
    assert api.requests[0]["status"] == 403
    assert api.jobs == {}


def test_throttling_429_is_retried(run_cli, configure, api: FakePrewarmApi) -> None:
    configure()
    api.fail_next("429")
    r, _ = cli_json(run_cli, "submit", *urls(3))
    assert r.returncode == 0, r.stderr
    assert [q["status"] for q in api.requests_to("POST", "prewarm")] == [429, 200]
    assert len(api.jobs) == 1


def test_daily_quota_exhausted_exit_5_and_resume_later(
    run_cli, configure, api: FakePrewarmApi
) -> None:
    configure()
    api.fail_next("limit", route="POST /prewarm")  # the quota runs out just before the job
    r, sub = cli_json(run_cli, "submit", *urls(3))
    assert r.returncode == 5, r.stderr
    assert "daily quota" in r.stderr and "--resume" in r.stderr
    assert sub["deferred"] == 3 and sub["accepted"] == 0
    r, sub2 = cli_json(run_cli, "submit", "--resume", sub["job_id"])  # the next day
    assert r.returncode == 0, r.stderr
    assert sub2["accepted"] == 3 and len(api.jobs) == 1
    api.daily_used = api.daily_quota
    r, data = cli_json(run_cli, "status", sub["job_id"])
    assert r.returncode == 5 and "Limit Exceeded" in r.stderr
    assert data["error"]["code"] == "quota_exhausted"
    assert api.requests_to("GET", "prewarm")[-1]["status"] == 429
    assert len(api.requests_to("GET", "prewarm")) == 1  # the daily quota is not retried


def test_502_on_submit_is_explained_and_not_retried(
    run_cli, configure, api: FakePrewarmApi
) -> None:
    configure()
    api.fail_next("502")
    r, sub = cli_json(run_cli, "submit", *urls(2))
    assert r.returncode == 1
    assert "crashed" in r.stderr
    assert len(api.requests_to("POST", "prewarm")) == 1
    assert len(sub["failed"]) == 2


def test_504_on_submit_leaves_the_outcome_unknown(run_cli, configure, api: FakePrewarmApi) -> None:
    configure()
    api.fail_next("504")
    r, sub = cli_json(run_cli, "submit", *urls(2))
    assert r.returncode == 4
    assert sub["unknown"] == 2 and sub["accepted"] == 0
    assert len(api.jobs) == 1  # the job was in fact created
    r, again = cli_json(run_cli, "submit", "--resume", sub["job_id"])
    assert again["unknown"] == 2 and len(api.requests_to("POST", "prewarm")) == 1
    # No lookup, no --force: nothing is sent, and the resume says so (it said "2 of 2").
    assert f"job {sub['job_id']}: resumed, nothing to send (2 URLs, cf)" in r.stderr
    assert "--force` resends them" in r.stderr


def test_400_invalid_urls_are_mapped_back_through_the_rewriting(
    run_cli, configure, api: FakePrewarmApi
) -> None:
    configure()
    odd = "https://static.example.com/a(1).js"  # the server names it as ...a%281%29.js
    api.fail_next("429")  # first a throttle; then the real check sees the fake's rule below
    original = api._post_prewarm

    def refuse_parens(body: Any, now: float) -> Any:
        if any("(" in u for u in body["url_list"]):
            from fakes.base import Reply

            return Reply(
                400,
                {
                    "status": "Failed",
                    "error_message": "Invalid URLs",
                    "error_urls": ["https://static.example.com/a%281%29.js"],
                },
            )
        return original(body, now)

    api._post_prewarm = refuse_parens  # type: ignore[method-assign]
    r, sub = cli_json(run_cli, "submit", odd, *urls(2))
    assert r.returncode == 4, r.stderr
    assert [x["url"] for x in sub["rejected"]] == [odd]
    assert "Invalid URLs" in sub["rejected"][0]["reason"]
    assert sub["accepted"] == 2


def test_fast_polling_is_paced_below_the_usage_plan(
    run_cli, configure, api: FakePrewarmApi
) -> None:
    configure(poll_interval=0.01)  # the config allows hammering; the usage plan does not
    api.download_seconds = 1.2
    _r, _sub = cli_json(run_cli, "submit", *urls(2))
    r, st = cli_json(run_cli, "status", "--wait")
    assert r.returncode == 0, r.stderr
    assert st["state"] == "succeeded"
    assert len(api.requests_to("GET", "prewarm")) >= 10  # polled as fast as allowed...
    assert api.violations == []  # ...and never throttled
    assert all(q["status"] == 200 for q in api.requests)


def test_dry_run_and_config_check(
    run_cli, configure, api: FakePrewarmApi, cli_env: dict[str, str], tmp_path: Path
) -> None:
    configure()
    r, plan = cli_json(run_cli, "submit", "--dry-run", *urls(50))
    assert r.returncode == 0, r.stderr
    p = plan["providers"]["cf"]
    assert (p["batches"], p["requests"]) == (1, 1)  # one job, not batches of 60
    r, check = cli_json(run_cli, "config", "check", "--online")
    assert r.returncode == 0, r.stderr
    notes = check["providers"][0]["notes"]
    assert any("pop IAD89-P1, NRT57-P3 (2 PoPs)" in n for n in notes)
    assert any("key accepted" in n for n in notes)
    assert "cf_domain d3cccc.cloudfront.net: a distribution of the AWS account" in notes
    assert api.jobs == {}
    # A cf_domain none of the account's distributions has: its invalidations would be
    # skipped silently, so it is said online (a distribution of another account is fine).
    configure(cf_domain="d9zzzz.cloudfront.net")
    r, check = cli_json(run_cli, "config", "check", "--online")
    assert r.returncode == 0, r.stderr
    notes = check["providers"][0]["notes"]
    assert any(n.startswith("warning: cf_domain d9zzzz.cloudfront.net is none of") for n in notes)
    # No cf_domain: a submit finds it through ListDistributions, and so does the check, which
    # warns where the submit would fail (no AWS credentials: it said nothing). A URL on the
    # distribution's own host needs no list: the check does not fail.
    configure(cf_domain=None)
    r, check = cli_json(run_cli, "config", "check", "--online")
    assert r.returncode == 0, r.stderr
    notes = check["providers"][0]["notes"]
    assert "cf_domain: found through the 5 distributions these credentials list" in notes
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        cli_env.pop(name)
    r, check = cli_json(run_cli, "config", "check", "--online")
    assert r.returncode == 0, r.stderr
    (warned,) = [n for n in check["providers"][0]["notes"] if n.startswith("warning:")]
    assert "no AWS credentials to list CloudFront" in warned and "set cf_domain" in warned
    r = run_cli("submit", *urls(1))
    assert r.returncode == 3 and "no AWS credentials to list CloudFront" in r.stderr, r.stderr
    api.point_cli_at(cli_env, tmp_path)
    configure()
    configure(batch_size=2)  # more URLs than one job takes: the rest is deferred, as a run does
    r, plan = cli_json(run_cli, "submit", "--dry-run", *urls(5))
    p = plan["providers"]["cf"]
    assert (p["batches"], p["would_defer"]) == (3, 3)
    assert any("2 URLs become its job, the other 3 are deferred" in n for n in p["notes"])
    r, sub = cli_json(run_cli, "submit", *urls(5))
    assert r.returncode == 5 and (sub["accepted"], sub["deferred"]) == (2, 3)
