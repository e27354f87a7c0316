"""Commands that need no config work without one (or past an unusable one), and a dry run or
a missing capability needs no secrets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import ROOT
from fakes.edgeone import FakeEdgeOne
from fakes.generic import FakeCdn
from fakes.qiniu import FakeQiniu
from helpers import cli_json, invoke

WriteConfig = Callable[[str], Path]


def _invalid_toml(path: Path) -> None:
    path.write_text("[providers.qiniu\ntype = 'qiniu'\n")


def _directory(path: Path) -> None:
    path.mkdir()


def _missing(path: Path) -> None:
    """$PREWARM_CONFIG names a file that does not exist."""


def _unreadable(path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads a file of mode 000; the directory variant covers unreadable")
    path.write_text("[defaults]\n")
    path.chmod(0)


UNUSABLE = {
    "invalid-toml": _invalid_toml,
    "directory": _directory,
    "missing": _missing,
    "unreadable": _unreadable,
}


@pytest.fixture(params=sorted(UNUSABLE))
def unusable_config(request: pytest.FixtureRequest, cli_env: dict[str, str]) -> Iterator[Path]:
    """$PREWARM_CONFIG names a config file that cannot be used, in one of several ways."""
    path = Path(cli_env["PREWARM_CONFIG"])
    UNUSABLE[request.param](path)
    yield path
    if path.exists() and not path.is_dir():
        path.chmod(0o600)


def _warned_about(stderr: str, path: Path) -> bool:
    return f"warning: {path}" in stderr and "going on without the config file" in stderr


def test_providers_and_jobs_go_on_past_an_unusable_config(unusable_config: Path) -> None:
    r, rows = cli_json(invoke, "providers")
    assert r.returncode == 0, r.stderr
    assert {"aws", "direct", "edgeone", "qiniu"} <= {row["type"] for row in rows}
    assert all(row["provider"] is None for row in rows)  # the file's aliases are not known
    assert _warned_about(r.stderr, unusable_config)

    r, jobs = cli_json(invoke, "jobs")
    assert r.returncode == 0, r.stderr
    assert jobs == []
    assert _warned_about(r.stderr, unusable_config)


def test_urls_and_verify_need_no_config(unusable_config: Path, fake_cdn: FakeCdn) -> None:
    r, listed = cli_json(invoke, "urls", "https://a.example/x", "https://a.example/x")
    assert (r.returncode, listed) == (0, ["https://a.example/x"]), r.stderr

    r, data = cli_json(invoke, "verify", f"{fake_cdn.url}/anything")
    assert r.returncode == 0, r.stderr
    assert data["summary"]["total"] == 1
    assert data["results"][0]["status_code"] is not None  # it did reach the server


def test_no_config_file_at_all_is_no_warning(cli_env: dict[str, str]) -> None:
    del os.environ["PREWARM_CONFIG"]  # the default path, which does not exist: not an error
    for command in ("providers", "jobs"):
        r, _ = cli_json(invoke, command)
        assert r.returncode == 0, r.stderr
        assert "warning" not in r.stderr


def test_config_check_on_a_fresh_machine_is_ok_and_says_submit_warms_directly(
    cli_env: dict[str, str],
) -> None:
    del os.environ["PREWARM_CONFIG"]  # no file where none was named: exit 3 before
    r, data = cli_json(invoke, "config", "check")
    assert r.returncode == 0, r.stderr
    assert data["ok"] is True and data["errors"] == [] and data["providers"] == []
    (warning,) = data["warnings"]
    assert warning.startswith("no config file at ") and "submit warms directly" in warning


def test_a_vendor_named_by_its_type_on_a_fresh_machine_says_what_sets_it_up(
    cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # No file to add a key to: the messages named one, and a table in it.
    del os.environ["PREWARM_CONFIG"]
    monkeypatch.delenv("QINIU_ACCESS_KEY", raising=False)
    r, error = cli_json(invoke, "submit", "-p", "qiniu", "https://a.example.com/x.js")
    assert r.returncode == 3
    message = error["error"]["message"]
    assert message.startswith("providers.qiniu.access_key: required")
    assert "export QINIU_ACCESS_KEY=...; there is no config file" in message
    r, error = cli_json(invoke, "submit", "-p", "aws", "https://a.example.com/x.js")
    assert r.returncode == 3
    assert "`prewarm config init --type aws` writes one" in error["error"]["message"]


def _finished_job(fake_config: Path, *urls: str) -> tuple[str, dict[str, object]]:
    r, data = cli_json(invoke, "submit", "--wait", "--interval", "0.2", *urls)
    assert data is not None, r.stderr
    return data["job_id"], data["status"]


@pytest.mark.parametrize("spoil", sorted(UNUSABLE))
def test_status_of_a_finished_job_reads_the_journal_without_the_config(
    spoil: str, fake_config: Path, fake_cdn: FakeCdn
) -> None:
    ok_urls = ["https://static.example.com/a.js", "https://static.example.com/b.js"]
    job_id, live = _finished_job(fake_config, *ok_urls)
    assert live["state"] == "succeeded"
    fake_config.unlink()
    UNUSABLE[spoil](fake_config)
    asked = len(fake_cdn.requests)

    r, data = cli_json(invoke, "status", job_id)
    assert r.returncode == 0, r.stderr
    assert (data["state"], data["total"], data["succeeded"]) == ("succeeded", 2, 2)
    assert data["providers"]["fake"]["tasks"][0]["details"] == {"source": "journal"}
    assert _warned_about(r.stderr, fake_config)
    assert "fake: showing the state recorded when the job finished" in r.stderr
    assert len(fake_cdn.requests) == asked  # the vendor was not asked


def test_status_of_a_finished_partial_job_keeps_its_exit_code(
    fake_config: Path, cli_env: dict[str, str]
) -> None:
    job_id, live = _finished_job(
        fake_config, "https://static.example.com/ok.js", "https://static.example.com/fail.js"
    )
    assert live["state"] == "partial"
    _invalid_toml(fake_config)

    r, data = cli_json(invoke, "status", job_id)
    assert r.returncode == 4, r.stderr
    assert data["state"] == "partial"


def test_status_of_an_unfinished_job_still_needs_the_config(
    fake_config: Path, fake_cdn: FakeCdn
) -> None:
    r, data = cli_json(invoke, "submit", "https://static.example.com/a.js")
    assert r.returncode == 0, r.stderr
    _invalid_toml(fake_config)

    r, error = cli_json(invoke, "status", data["job_id"])
    assert r.returncode == 3
    assert error["error"]["code"] == "config"
    assert "invalid TOML" in error["error"]["message"]


# --------------------------------------------------------------------------- secrets


@pytest.fixture
def qiniu() -> Iterator[FakeQiniu]:
    with FakeQiniu() as server:
        yield server


def test_dry_run_plans_qiniu_without_its_secrets(
    qiniu: FakeQiniu, write_config: WriteConfig
) -> None:
    write_config(f'[providers.qiniu]\ntype = "qiniu"\nendpoint = "{qiniu.url}"\n')
    url = "https://static.example.com/x.js"

    r, plan = cli_json(invoke, "submit", "-p", "qiniu", "--dry-run", url)
    assert r.returncode == 0, r.stderr
    assert plan["dry_run"] is True
    assert (plan["providers"]["qiniu"]["urls"], plan["providers"]["qiniu"]["requests"]) == (1, 1)
    assert "qiniu: planning without its secrets" in r.stderr
    assert qiniu.requests == []

    r, error = cli_json(invoke, "submit", "-p", "qiniu", url)  # a real submit still asks
    assert r.returncode == 3
    assert "QINIU_ACCESS_KEY is not set" in error["error"]["message"]
    assert qiniu.requests == []


@pytest.mark.parametrize(
    ("given", "unset"),
    [
        ({}, "TENCENTCLOUD_SECRET_ID"),
        ({"TENCENTCLOUD_SECRET_ID": "AKIDx"}, "TENCENTCLOUD_SECRET_KEY"),
    ],
)
def test_dry_run_of_a_plan_whose_batch_size_the_vendor_gives_uses_the_default_and_says_so(
    write_config: WriteConfig, given: dict[str, str], unset: str
) -> None:
    with FakeEdgeOne() as teo:
        write_config(
            f'[providers.eo]\ntype = "edgeone"\nzone_id = "zone-1"\nendpoint = "{teo.url}"\n'
        )
        # EdgeOne's batch size is what DescribeContentQuota says, which needs the secrets:
        # the plan is made with the declared default, and says so (it said "planning
        # without its secrets", then ended with exit 3). The variable not set is named, not
        # the SDK's words for an empty key.
        r, plan = cli_json(
            invoke, "submit", "-p", "eo", "--dry-run", "https://a.example/x", env_extra=given
        )
        assert r.returncode == 0, r.stderr
        eo = plan["providers"]["eo"]
        assert eo["batch_size"] == 100
        note = "batches of 100, edgeone's default: the vendor's own limit is read with the secrets"
        assert note in eo["notes"]
        assert any(f"{unset} is not set" in note for note in eo["notes"])
        # A batch_size of the config's is planned as given, not checked against a default.
        write_config(
            f'[providers.eo]\ntype = "edgeone"\nzone_id = "zone-1"\nendpoint = "{teo.url}"\n'
            "batch_size = 200\n"
        )
        r, plan = cli_json(
            invoke, "submit", "-p", "eo", "--dry-run", "https://a.example/x", env_extra=given
        )
        assert r.returncode == 0, r.stderr
        note = "batches of 200 (batch_size): the vendor's own limit is read with the secrets"
        assert note in plan["providers"]["eo"]["notes"]
        assert teo.log == []


AWS_V1 = """\
[providers.legacy]
type = "aws"
endpoint = "https://x.execute-api.us-east-1.amazonaws.com/prod"
api_version = {version}
status_endpoint = "https://y.execute-api.us-east-1.amazonaws.com/prod"
target_type = "region"
regions = ["us"]
"""


@pytest.mark.parametrize(
    ("config", "ref"),
    [
        ('[providers.qiniu]\ntype = "qiniu"\n', "qiniu:task1"),
        # capabilities that depend on config: a first-generation stack cannot cancel
        (AWS_V1.format(version=1), "legacy:job1"),
    ],
)
def test_cancel_says_unsupported_before_asking_for_secrets(
    write_config: WriteConfig, config: str, ref: str
) -> None:
    write_config(config)
    r, error = cli_json(invoke, "cancel", ref)
    assert r.returncode == 2, r.stderr
    assert error["error"]["code"] == "unsupported"
    assert "does not support cancel" in r.stderr
    assert "not set" not in r.stderr


@pytest.mark.parametrize(
    ("command", "config", "ref", "variable"),
    [
        ("cancel", AWS_V1.format(version=2), "legacy:job1", "PREWARM_AWS_API_KEY"),
        ("report", '[providers.qiniu]\ntype = "qiniu"\n', "qiniu:task1", "QINIU_ACCESS_KEY"),
    ],
)
def test_a_capable_provider_still_asks_for_its_secrets(
    write_config: WriteConfig, command: str, config: str, ref: str, variable: str
) -> None:
    write_config(config)
    r, error = cli_json(invoke, command, ref)
    assert r.returncode == 3, r.stderr
    assert f"{variable} is not set" in error["error"]["message"]


# --------------------------------------------------------------------------- status -


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["submit", "-p", "direct", "not a url"], 2),  # a provider without credentials
        (["submit", "-p", "qiniu", "https://a.example/x"], 3),
    ],
)
def test_status_dash_passes_a_failed_submits_error_on(
    write_config: WriteConfig, args: list[str], code: int
) -> None:
    write_config('[providers.qiniu]\ntype = "qiniu"\n')
    submitted = invoke(*args, "-o", "json")
    assert submitted.returncode == code, submitted.stderr

    r = invoke("status", "--wait", "-", "-o", "json", input=submitted.stdout)
    assert r.returncode == code
    assert json.loads(r.stdout) == json.loads(submitted.stdout)
    first_line = submitted.stderr.splitlines()[0]
    assert first_line.startswith("error: ")
    assert r.stderr.splitlines()[0] == first_line
    assert "not a prewarm submit JSON" not in r.stderr and "no `tasks`" not in r.stderr


# --------------------------------------------------------------------------- packaging


def test_the_test_fakes_are_not_shipped(cli_env: dict[str, str]) -> None:
    import tomllib
    from importlib.metadata import distribution

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    shipped = project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    assert not [p for p in shipped if p.startswith("tests")]
    entry_points = distribution("prewarm-cli").entry_points
    assert entry_points, "prewarm-cli is not installed"
    for ep in entry_points:
        module = ep.value.split(":")[0]
        assert "fake" not in ep.name and "fake" not in module, ep
        assert module.split(".")[0] in {Path(p).name for p in shipped}, ep

    env = dict(cli_env)
    env.pop("PYTHONPATH")  # the test plugin comes only from tests/conftest and this variable
    r = subprocess.run(
        [sys.executable, "-m", "prewarm_cli", "providers", "-o", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=cli_env["HOME"],
    )
    assert r.returncode == 0, r.stderr
    assert "fake" not in {row["type"] for row in json.loads(r.stdout)}


def test_scale_on_a_fresh_machine_says_what_can_scale(cli_env, run_cli) -> None:
    # It said "no provider selected", with a hint to set a default that could not scale.
    del cli_env["PREWARM_CONFIG"]  # a fresh machine: no config file anywhere
    r = run_cli("scale", "-o", "json")
    assert r.returncode == 2, r.stderr
    error = json.loads(r.stdout)["error"]
    assert error["message"] == "no configured provider can scale (configured: none)"
    assert "prewarm config init --type aws" in error["hint"]
    # One provider that cannot scale, the default by being alone: the same words.
    cli_env["PREWARM_CONFIG"] = str(Path(cli_env["PREWARM_STATE_DIR"]).parent / "q.toml")
    Path(cli_env["PREWARM_CONFIG"]).write_text('[providers.q]\ntype = "qiniu"\n')
    Path(cli_env["PREWARM_CONFIG"]).chmod(0o600)
    r = run_cli("scale", "-o", "json")
    assert r.returncode == 2, r.stderr
    assert json.loads(r.stdout)["error"]["message"] == (
        "no configured provider can scale (configured: q)"
    )
