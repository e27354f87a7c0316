"""The aws provider in-process: validation, parsing, states, error mapping, ListDistributions."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fakes.aws import FakeDistribution, FakePrewarmApi
from helpers import wait_for
from prewarm_aws import AwsProvider
from prewarm_aws.api_v2 import (
    Progress,
    ReportRow,
    Summary,
    V2Api,
    derive_status,
    parse_report_csv,
    parse_time,
    server_rewrite,
    server_would_refuse,
)
from prewarm_aws.distributions import DistributionIndex
from prewarm_aws.tables import COUNTRY_POPS, REGION_POPS, resolve_target
from prewarm_aws.transport import NoSuchRoute, Transport, check_endpoint

from prewarm_cli.errors import (
    AuthError,
    ConfigError,
    NotFoundError,
    ProviderError,
    QuotaExhausted,
    RateLimited,
    RetryableError,
    StackBusy,
    UnknownOutcome,
    UsageError,
)
from prewarm_cli.plugin import State, SubmitOptions

ENDPOINT = "https://abc123.execute-api.us-east-1.amazonaws.com/prod"


def settings(**keys: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "type": "aws",
        "endpoint": ENDPOINT,
        "api_key": "k-123",
        "api_version": 2,
        "cf_domain": "d111111abcdef8.cloudfront.net",
        "target_type": "pop",
        "pops": ["IAD89-P1", "NRT57-P3"],
        "instance_count": 1,
        "timeout_minutes": 60,
        "timeout": 5.0,
    }
    values.update(keys)
    return {k: v for k, v in values.items() if v is not None}


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"pops": []}, "providers.cf.pops: required"),
        ({"pops": ["SIN2-P1", "nonsense"]}, "providers.cf.pops: 'NONSENSE'"),
        ({"pops": ["PVG52-E1"]}, "AWS China PoPs"),
        ({"target_type": "region", "pops": None, "regions": ["mars"]}, "unknown region key"),
        ({"target_type": "region", "pops": None, "regions": ["cn"]}, "providers.cf.regions"),
        ({"target_type": "region", "pops": None, "regions": ["all"]}, "list the regions"),
        ({"target_type": "region", "pops": None}, "providers.cf.regions: required"),
        ({"target_type": "country", "pops": None, "countries": ["atlantis"]}, "country key"),
        ({"target_type": "region"}, "providers.cf.pops is set"),
        ({"cf_domain": "www.example.com"}, "providers.cf.cf_domain"),
        ({"instance_count": 0}, "providers.cf.instance_count: 0 is outside 1-300 (with 0"),
        ({"instance_count": 301}, "301 is outside 1-300 (the stack scales to 300 at most)"),
        ({"timeout_minutes": 1}, "providers.cf.timeout_minutes"),
        ({"api_version": 1}, "providers.cf.status_endpoint: required"),
        ({"status_endpoint": ENDPOINT}, "providers.cf.status_endpoint is set, but api_version = 2"),
        ({"endpoint": "abc.execute-api.us-east-1.amazonaws.com"}, "providers.cf.endpoint"),
        ({"endpoint": "http://abc.example.com/prod"}, "HTTPS only"),
        ({"endpoint": ENDPOINT + "/prewarm"}, "ends with the route /prewarm"),
        ({"endpoint": ENDPOINT.removesuffix("/prod")}, "has no stage"),
    ],
)
def test_settings_the_server_would_choke_on_are_config_errors(
    keys: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        AwsProvider("cf", settings(**keys))
    assert message in info.value.message
    assert "k-123" not in info.value.message


def test_china_stacks_take_china_pops_and_domains() -> None:
    p = AwsProvider(
        "cf",
        settings(
            endpoint="https://abc.execute-api.cn-north-1.amazonaws.com.cn/prod",
            cf_domain="d1234.cloudfront.cn",
            target_type="region",
            pops=None,
            regions=["cn"],
        ),
    )
    assert p.stack.ctx.target.pops == REGION_POPS["cn"]


def test_target_tables_and_overlaps() -> None:
    # two keys sharing PoPs would keep the job IN-PROGRESS: sent as the PoP union instead
    t = resolve_target("cf", "region", {"regions": ["APAC", "jp"]}, china_stack=False)
    assert (t.target_type, t.pops) == ("pop", REGION_POPS["apac"]) and t.note
    assert t.body()["pops"] == list(REGION_POPS["apac"]) and t.body()["regions"] == []
    t = resolve_target(
        "cf", "country", {"countries": ["australia", "new_zealand"]}, china_stack=False
    )
    assert t.target_type == "pop" and len(t.pops) == 2
    t = resolve_target("cf", "country", {"countries": ["all"]}, china_stack=False)
    assert (t.target_type, t.keys, len(t.pops)) == ("country", ("all",), 10)
    assert COUNTRY_POPS["china"] == ("SIN2-P1", "SIN2-P2")  # the code maps China to Singapore
    t = resolve_target("cf", "region", {"regions": ["eu", "us", "eu"]}, china_stack=False)
    assert (t.target_type, t.keys, len(t.pops)) == ("region", ("eu", "us"), 16)
    t = resolve_target(
        "cf", "pop", {"pops": ["iad89-p1", "IAD89-P1", "XYZ9-P9"]}, china_stack=False
    )
    assert t.keys == ("IAD89-P1", "XYZ9-P9") and t.unknown_pops == ("XYZ9-P9",)
    assert len(REGION_POPS["all"]) == 34


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        (ENDPOINT + "/", ENDPOINT),
        ("http://127.0.0.1:8080/prod", "http://127.0.0.1:8080/prod"),
        ("https://prewarm.example.com", "https://prewarm.example.com"),  # a custom domain
    ],
)
def test_endpoints_accepted(endpoint: str, expected: str) -> None:
    assert check_endpoint("cf", endpoint) == expected


# --------------------------------------------------------------------------- parsing


def test_server_url_rewriting_and_check() -> None:
    assert server_rewrite(" https://h/a b(1).js ") == "https://h/a%20b%281%29.js"
    assert not server_would_refuse("https://static.example.com/a(1).js")
    assert server_would_refuse("https://.example.com/a.js")
    assert server_would_refuse("https:///a.js")


def test_timestamps_with_and_without_microseconds() -> None:
    assert parse_time("2024-04-16 03:12:21.046535") == "2024-04-16T03:12:21.046Z"
    assert parse_time("2024-04-16 03:12:21") == "2024-04-16T03:12:21.000Z"
    assert parse_time("") is None and parse_time(None) is None
    assert parse_time("yesterday") == "yesterday"


def test_report_csv_rows_keep_commas_in_urls_and_drop_the_command() -> None:
    text = (
        # the command column has its commas replaced by spaces; the URL column does not
        "SIN2-P1,https://h.example.com/a,b.js,curl: (6) Could not resolve,curl -H 'X-Key: sec'"
        " https://h.example.com/a b.js\n"
        "\n"
        '"NRT57-P3","https://h.example.com/q.js","timeout","curl ..."\n'
        "IAD89-P1,https://h.example.com/3.js,no body\n"
        "garbage\n"
    )
    assert parse_report_csv(text) == [
        ReportRow("SIN2-P1", "https://h.example.com/a,b.js", "curl: (6) Could not resolve"),
        ReportRow("NRT57-P3", "https://h.example.com/q.js", "timeout"),
        ReportRow("IAD89-P1", "https://h.example.com/3.js", "no body"),
    ]


# --------------------------------------------------------------------------- states


def progress(status: str, total: int = 0, done: int = 0, pct: int = 0) -> Progress:
    return Progress.from_answer(
        "r1",
        {
            "status": status,
            "total_count": total,
            "download_count": done,
            "percentage_complete": pct,
            "created_at": "2024-04-16 03:10:21",
        },
    )


def summary(
    urls: list[str] | None = None, pops: list[str] | None = None, rows: tuple[ReportRow, ...] = ()
) -> Summary:
    s = Summary.from_answer(
        "r1", {"status": "FINISHED", "failure_urls": urls or [""], "failure_pops": pops or []}
    )
    return Summary(s.request_id, s.status, s.failure_pops, s.failure_urls, None, rows)


@pytest.mark.parametrize(
    ("raw", "state"),
    [
        ("CREATED", State.PENDING),
        ("CHECK_POP", State.PENDING),
        ("INSERT_TASK", State.PENDING),
        ("IN-PROGRESS", State.RUNNING),
        ("IN_PROGRESS", State.RUNNING),
        ("STOPPED", State.CANCELLED),
        ("TIMEOUT", State.TIMED_OUT),
        ("FAILED", State.FAILED),
        ("COMPLETED", State.SUCCEEDED),
        ("SOMETHING_NEW", State.PENDING),
    ],
)
def test_raw_states_map_and_are_kept(raw: str, state: State) -> None:
    st = derive_status(progress(raw), None, url_count=3, target_pops=2, timeout_minutes=5)
    assert (st.state, st.raw_state, st.total) == (state, raw, 3)
    assert st.details["timeout_at"] == "2024-04-16T03:15:21Z"


def test_finished_counts_urls_not_tasks() -> None:
    def finished(s: Summary, total: int, url_count: int | None = None) -> Any:
        p = progress("FINISHED", total, total)
        return derive_status(p, s, url_count=url_count, target_pops=2, timeout_minutes=5)

    st = finished(summary(), 8)  # 4 URLs x 2 PoPs
    assert (st.state, st.total, st.succeeded, st.failed) == (State.SUCCEEDED, 4, 4, 0)
    assert st.details["url_count"] == "estimated"
    row = ReportRow("IAD89-P1", "https://h/x.js", "timeout")
    st = finished(summary(urls=["https://h/y.js"], rows=(row, row)), 8)
    assert (st.state, st.total, st.succeeded, st.failed) == (State.PARTIAL, 5, 3, 2)
    assert {(u.url, u.pop) for u in st.urls} == {
        ("https://h/y.js", None),
        ("https://h/x.js", "IAD89-P1"),
    }
    st = finished(summary(pops=["IAD89-P1"]), 3)  # one PoP failed: 3 URLs x 1 PoP
    assert (st.state, st.total, st.succeeded, st.failed) == (State.PARTIAL, 3, 3, 0)
    st = finished(summary(urls=["https://h/a", "https://h/b"]), 0)  # nothing passed HEAD
    assert (st.state, st.total, st.failed) == (State.FAILED, 2, 2)
    st = finished(summary(pops=["IAD89-P1", "NRT57-P3"]), 0, url_count=3)  # no PoP resolved
    assert (st.state, st.total, st.failed) == (State.FAILED, 3, 3)
    st = finished(summary(pops=["IAD89-P1", "NRT57-P3"]), 0)  # ...and the count unknown
    assert (st.state, st.total) == (State.FAILED, 0)
    st = finished(summary(), 7)  # does not divide: the count is left to the journal
    assert (st.state, st.total, st.details["url_count"]) == (State.SUCCEEDED, 0, None)


def test_running_details_are_bytes_and_tasks() -> None:
    st = derive_status(
        progress("IN-PROGRESS", 10, 4, 40), None, url_count=None, target_pops=2, timeout_minutes=5
    )
    assert (st.total, st.in_progress) == (5, 5)
    assert st.details["percentage_complete_bytes"] == 40
    assert (st.details["tasks_done"], st.details["tasks_total"]) == (4, 10)
    st = derive_status(
        progress("IN-PROGRESS", 0, 12, 130), None, url_count=2, target_pops=2, timeout_minutes=5
    )
    assert "stuck" in st.details
    assert st.details["percentage_complete_bytes"] == 100
    assert st.details["percentage_complete_raw"] == 130


# --------------------------------------------------------------------------- HTTP errors


def transport_answering(status: int, body: Any, *, exc: Exception | None = None) -> Transport:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["x-api-key"] == "k-123"
        if exc is not None:
            raise exc
        if isinstance(body, str):
            return httpx.Response(status, text=body, headers={"x-amzn-RequestId": "rid-1"})
        return httpx.Response(status, json=body, headers={"x-amzn-RequestId": "rid-1"})

    t = Transport("cf", ENDPOINT, "k-123", timeout=5.0, ca_bundle=None, key_hint="set api_key")
    t._client = httpx.Client(
        base_url=ENDPOINT + "/",
        transport=httpx.MockTransport(handler),
        headers={"x-api-key": "k-123"},
    )
    return t


@pytest.mark.parametrize(
    ("status", "body", "submit", "error"),
    [
        (403, {"message": "Forbidden"}, False, AuthError),
        (403, {"message": "Missing Authentication Token"}, False, NoSuchRoute),
        (403, {"Message": "User: anonymous is not authorized"}, False, AuthError),
        (429, {"message": "Too Many Requests"}, True, RateLimited),
        (429, {"message": "Limit Exceeded"}, False, QuotaExhausted),
        (429, {"message": "Limit Exceeded"}, True, QuotaExhausted),
        (502, {"message": "Internal server error"}, True, ProviderError),
        (504, {"message": "Endpoint request timed out"}, True, UnknownOutcome),
        (504, {"message": "Endpoint request timed out"}, False, RetryableError),
        (500, "Internal Server Error (plain text)", True, UnknownOutcome),
        (500, "Internal Server Error (plain text)", False, RetryableError),
    ],
)
def test_api_gateway_errors_map_to_typed_errors(
    status: int, body: Any, submit: bool, error: type[Exception]
) -> None:
    t = transport_answering(status, body)
    with pytest.raises(error) as info:
        t.call("POST" if submit else "GET", "prewarm", submit=submit)
    assert type(info.value) is error  # not a subclass standing in for another kind
    assert info.value.request_id == "rid-1"  # type: ignore[attr-defined]
    if error is QuotaExhausted:
        assert info.value.resets_at.endswith("T00:00:00Z")  # type: ignore[attr-defined]
        # A status poll has nothing to resume: only a submit's hint says --resume.
        assert ("--resume" in str(info.value.hint)) is submit  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("exc", "submit", "error"),
    [
        (httpx.ConnectError("refused"), True, RetryableError),
        (httpx.ReadTimeout("slow"), True, UnknownOutcome),
        (httpx.ReadTimeout("slow"), False, RetryableError),
        (httpx.RemoteProtocolError("dropped"), True, UnknownOutcome),
    ],
)
def test_transport_failures(exc: Exception, submit: bool, error: type[Exception]) -> None:
    t = transport_answering(200, {}, exc=exc)
    with pytest.raises(error) as info:
        t.call("POST", "prewarm", submit=submit)
    if isinstance(exc, httpx.ConnectError):  # where it could not get to, named
        assert f"cannot reach the prewarm API at {ENDPOINT} for POST /prewarm" in str(info.value)


@pytest.mark.parametrize(
    ("message", "error", "text"),
    [
        ("The reqeust id is invalid.", NotFoundError, "has no job r1"),
        ("Request Id is invalid.", NotFoundError, "has no job r1"),
        (
            "Job status is IN-PROGRESS,we can the get the summary when ...",
            UsageError,
            "is IN-PROGRESS",
        ),
        ("SQS https://sqs/q purge failed", ProviderError, "one queue purge per 60 s"),
        ("An error occurred (ValidationError)", ProviderError, "ValidationError"),
    ],
)
def test_failure_bodies_in_http_200(message: str, error: type[Exception], text: str) -> None:
    api = V2Api(transport_answering(200, {"status": "failure", "message": message}))
    with pytest.raises(error) as info:
        api.summary("r1")
    assert text in str(info.value)


# --------------------------------------------------------------------------- the provider


@pytest.fixture
def fake() -> Iterator[FakePrewarmApi]:
    with FakePrewarmApi() as api:
        yield api


def test_no_second_job_after_an_unknown_outcome(fake: FakePrewarmApi) -> None:
    p = AwsProvider("cf", settings(endpoint=fake.endpoint, api_key=fake.api_key))
    assert p.busy() is None
    fake.fail_next("504")
    with pytest.raises(UnknownOutcome):
        p.submit_batch(["https://h.example.com/a.js"], SubmitOptions())
    with pytest.raises(StackBusy):  # the stack may be running it: wait, do not stack
        p.submit_batch(["https://h.example.com/b.js"], SubmitOptions())
    assert len(fake.jobs) == 1
    p.close()


def test_a_resumed_run_checks_the_stack_itself(fake: FakePrewarmApi) -> None:
    fake.capacity = 2  # someone else's job
    p = AwsProvider("cf", settings(endpoint=fake.endpoint, api_key=fake.api_key))
    with pytest.raises(StackBusy) as info:
        p.submit_batch(["https://h.example.com/a.js"], SubmitOptions())
    assert "2 instances" in info.value.message
    result = p.submit_batch(["https://h.example.com/a.js"], SubmitOptions(force=True))
    assert result.task_id in fake.jobs
    p.close()


def test_urls_the_server_would_refuse_are_rejected_before_sending(fake: FakePrewarmApi) -> None:
    p = AwsProvider("cf", settings(endpoint=fake.endpoint, api_key=fake.api_key))
    p.busy()
    result = p.submit_batch(["https://.bad.example.com/x"], SubmitOptions())
    assert result.task_id is None and list(result.rejected) == ["https://.bad.example.com/x"]
    assert fake.requests_to("POST", "prewarm") == []
    p.close()


# --------------------------------------------------------------------------- ListDistributions


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_CLOUDFRONT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def _distribution_config(ref: str, aliases: list[str]) -> dict[str, Any]:
    return {
        "CallerReference": ref,
        "Comment": "",
        "Enabled": True,
        "Aliases": {"Quantity": len(aliases), "Items": aliases},
        "Origins": {
            "Quantity": 1,
            "Items": [
                {
                    "Id": "o",
                    "DomainName": "origin.example.com",
                    "CustomOriginConfig": {
                        "HTTPPort": 80,
                        "HTTPSPort": 443,
                        "OriginProtocolPolicy": "https-only",
                    },
                }
            ],
        },
        "DefaultCacheBehavior": {
            "TargetOriginId": "o",
            "ViewerProtocolPolicy": "allow-all",
            "MinTTL": 0,
            "ForwardedValues": {"QueryString": False, "Cookies": {"Forward": "none"}},
        },
    }


def test_hosts_are_matched_across_every_page_with_moto(aws_credentials: None) -> None:
    import boto3
    from moto import mock_aws

    with mock_aws():
        client = boto3.client("cloudfront")
        domains = {}
        for i, aliases in enumerate(
            [
                ["a.example.com"],
                [],
                ["b.example.com", "c.example.com"],
                ["*.img.example.com"],
                ["last.example.com"],
            ]
        ):
            made = client.create_distribution(
                DistributionConfig=_distribution_config(f"r{i}", aliases)
            )
            domains[i] = made["Distribution"]["DomainName"]
        index = DistributionIndex("cf", None, page_size=2)
        assert [d.domain for d in index.match("last.example.com")] == [domains[4]]  # page 3
        assert [d.domain for d in index.match("C.example.com.")] == [domains[2]]
        assert [d.domain for d in index.match("x.img.example.com")] == [domains[3]]
        assert index.match("img.example.com") == []  # a wildcard covers one label only
        assert index.match("nowhere.example.org") == []
        assert index.match("d999.cloudfront.net")[0].domain == "d999.cloudfront.net"
        assert len(index.distributions()) == 5


def test_pagination_and_errors_with_stubber(aws_credentials: None) -> None:
    import boto3
    from botocore.stub import Stubber

    client = boto3.client("cloudfront")
    stub = Stubber(client)

    def summary_item(domain: str, aliases: list[str]) -> dict[str, Any]:
        config = _distribution_config("ref", aliases)
        return {
            "Id": f"E{domain}",
            "ARN": "arn",
            "Status": "Deployed",
            "LastModifiedTime": "2024-01-01T00:00:00Z",
            "DomainName": domain,
            "Aliases": config["Aliases"],
            "Origins": config["Origins"],
            "DefaultCacheBehavior": {"TargetOriginId": "o", "ViewerProtocolPolicy": "allow-all"},
            "CacheBehaviors": {"Quantity": 0},
            "CustomErrorResponses": {"Quantity": 0},
            "Comment": "",
            "PriceClass": "PriceClass_All",
            "Enabled": True,
            "ViewerCertificate": {},
            "Restrictions": {"GeoRestriction": {"RestrictionType": "none", "Quantity": 0}},
            "WebACLId": "",
            "HttpVersion": "http2",
            "IsIPV6Enabled": True,
            "Staging": False,
        }

    def page(items: list[tuple[str, list[str]]], marker: str, nxt: str | None) -> dict[str, Any]:
        return {
            "DistributionList": {
                "Marker": marker,
                "MaxItems": 2,
                "IsTruncated": nxt is not None,
                "Quantity": len(items),
                **({"NextMarker": nxt} if nxt else {}),
                "Items": [summary_item(domain, aliases) for domain, aliases in items],
            }
        }

    stub.add_response(
        "list_distributions",
        page([("d1.cloudfront.net", ["a.example.com"])], "", "m2"),
        {"MaxItems": "2"},
    )
    stub.add_response(
        "list_distributions",
        page([("d2.cloudfront.net", ["b.example.com"])], "m2", None),
        {"MaxItems": "2", "Marker": "m2"},
    )
    with stub:
        index = DistributionIndex("cf", None, page_size=2)
        index._client = client
        assert index.match("b.example.com")[0].domain == "d2.cloudfront.net"
        assert index.match("a.example.com")[0].domain == "d1.cloudfront.net"  # listed once
        stub.assert_no_pending_responses()

    for code, error in [
        ("AccessDenied", AuthError),
        ("Throttling", RetryableError),
        ("InternalError", ProviderError),
    ]:
        stub = Stubber(client)
        stub.add_client_error("list_distributions", service_error_code=code, http_status_code=400)
        with stub:
            index = DistributionIndex("cf", None)
            index._client = client
            with pytest.raises(error) as info:
                index.match("a.example.com")
            assert type(info.value) is error


def test_no_aws_credentials_is_a_config_error(
    aws_credentials: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    index = DistributionIndex("cf", None)
    with pytest.raises(ConfigError) as info:
        index.match("a.example.com")
    assert "cf_domain" in (info.value.hint or "")


def test_a_refused_cancel_says_why_and_changes_nothing(fake: FakePrewarmApi) -> None:
    fake.download_seconds = 60
    p = AwsProvider("cf", settings(endpoint=fake.endpoint, api_key=fake.api_key))
    task = p.submit_batch(["https://h.example.com/a.js"], SubmitOptions(force=True)).task_id
    assert task is not None
    fake._last_purge = fake.clock()  # another stop purged the shared queue a moment ago
    wait_for(lambda: fake.job_status(task) == "IN-PROGRESS", 30)
    with pytest.raises(ProviderError) as info:
        p.cancel([task])
    assert "purge failed" in info.value.message and "60 s" in info.value.message
    assert "prewarm scale -p cf 0" in (info.value.hint or "")
    assert fake.job_status(task) == "IN-PROGRESS" and fake.capacity == 1
    p.close()


def test_a_host_served_by_several_distributions_is_a_config_error(
    fake: FakePrewarmApi, aws_credentials: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", fake.aws_access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", fake.aws_secret_access_key)
    monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDFRONT", fake.url)
    fake.distributions = [
        FakeDistribution("E1", "d1.cloudfront.net", ["www.example.com"]),
        FakeDistribution("E2", "d2.cloudfront.net", []),
        FakeDistribution("E3", "d3.cloudfront.net", ["www.example.com"]),
    ]
    p = AwsProvider("cf", settings(endpoint=fake.endpoint, api_key=fake.api_key, cf_domain=None))
    with pytest.raises(ConfigError) as info:
        p.submit_batch(["https://www.example.com/a.js"], SubmitOptions(force=True))
    assert "several CloudFront distributions serve www.example.com" in info.value.message
    assert "E1 (d1.cloudfront.net)" in info.value.message
    assert [q["status"] for q in fake.cf_requests] == [200, 200]  # signed, both pages
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    p2 = AwsProvider("cf", settings(endpoint=fake.endpoint, api_key=fake.api_key, cf_domain=None))
    with pytest.raises(AuthError):  # the fake checks the SigV4 signature itself
        p2.submit_batch(["https://www.example.com/a.js"], SubmitOptions(force=True))
    assert fake.cf_requests[-1]["status"] == 403
    assert fake.requests_to("POST", "prewarm") == []


def test_every_request_after_a_calls_first_is_paced(fake: FakePrewarmApi) -> None:
    fake.capacity = 0
    p = AwsProvider("cf", settings(endpoint=fake.endpoint, api_key=fake.api_key))
    paced: list[int] = []
    p.attach_pacer(paced.append)  # the engine paces the call itself, i.e. its first request
    with p.engine_call():
        first = p.submit_batch(["https://h.example.com/a.js"], SubmitOptions()).task_id
    assert len(paced) == 1  # a resumed run: GET /instances, then the POST waits its turn
    assert [q["route"] for q in fake.requests] == ["instances", "prewarm"]
    with p.engine_call():
        second = p.submit_batch(["https://h.example.com/b.js"], SubmitOptions(force=True)).task_id
    assert len(paced) == 1  # one request in that call
    assert first and second
    for task in (first, second):
        wait_for(lambda task=task: fake.job_status(task) == "FINISHED", 30)
    paced.clear()
    with p.engine_call():
        statuses = p.fetch_status([first, second])  # 4 requests: progress + summary, twice
    assert [s.state for s in statuses] == [State.SUCCEEDED, State.SUCCEEDED]
    assert len(paced) == 3
    p.close()


_DISTRIBUTION_LIST = b"""<?xml version="1.0" encoding="UTF-8"?>
<DistributionList xmlns="http://cloudfront.amazonaws.com/doc/2020-05-31/">
<Marker></Marker><MaxItems>100</MaxItems><IsTruncated>false</IsTruncated><Quantity>1</Quantity>
<Items><DistributionSummary><Id>E1</Id><Status>Deployed</Status>
<DomainName>d111111abcdef8.cloudfront.net</DomainName>
<Aliases><Quantity>1</Quantity><Items><CNAME>static.example.com</CNAME></Items></Aliases>
</DistributionSummary></Items></DistributionList>"""


def test_the_distribution_lookup_trusts_the_config_s_ca_bundle(
    aws_credentials: None, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # CloudFront's ListDistributions through a TLS proxy with a private CA: the config's
    # ca_bundle is trusted (boto3 reads AWS_CA_BUNDLE, not SSL_CERT_FILE), and without it the
    # certificate is refused (verification stays on).
    import http.server
    import ssl
    import threading

    from fakes.tls import tls_files

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", str(len(_DISTRIBUTION_LIST)))
            self.end_headers()
            self.wfile.write(_DISTRIBUTION_LIST)

        def log_message(self, *args: Any) -> None:
            pass

    ca, cert, key = tls_files(tmp_path, "localhost")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDFRONT", f"https://localhost:{server.server_port}")
        monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
        trusted = DistributionIndex("cf", None, ca_bundle=str(ca))
        assert [d.domain for d in trusted.match("static.example.com")] == [
            "d111111abcdef8.cloudfront.net"
        ]
        with pytest.raises(ProviderError, match=r"(?i)certificate"):
            DistributionIndex("cf", None).distributions()
    finally:
        server.shutdown()
        server.server_close()
