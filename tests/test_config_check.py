"""`config check`: every check loading runs, every error at once with its key path and fix, on
stderr and in the JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers import CliRun, invoke

AWS_ENDPOINT = "https://abc123.execute-api.us-east-1.amazonaws.com/prod"

MANY_ERRORS = f"""\
colour = "blue"

[defaults]
retries = "five"
provder = "main"

[providers.main]
type = "fake"
endpoint = "https://cdn.example.com"
max_btach = 20
lookup = "yes"

[providers.cf]
type = "aws"
endpoint = "{AWS_ENDPOINT}"
api_key = "env:UNSET_AWS_KEY_FOR_TEST"
target_type = "region"

[providers.v1]
type = "aws"
endpoint = "{AWS_ENDPOINT}"
api_key = "literal"
api_version = 1
target_type = "pop"
pops = ["IAD89-P1"]

[providers.big]
type = "fake"
endpoint = "https://big.example.com"
batch_size = 100

[providers.odd]
type = "nosuch"

[[routes]]
hosts = ["img.example.com/path"]
providers = ["mian"]
"""

# Every error of MANY_ERRORS, by key path: what the user has to fix, all in one run.
EXPECTED_KEYS = {
    "colour": "unknown key",
    "defaults.retries": "expected an integer",
    "defaults.provder": "did you mean provider?",
    "routes[0].hosts[0]": "is not a host pattern",
    "routes[0].providers[0]": "'mian' is not a configured provider",
    "providers.odd.type": "unknown provider type 'nosuch'",
    "providers.main.max_btach": "did you mean max_batch?",
    "providers.main.lookup": "expected true or false",
    "providers.cf.api_key": "environment variable UNSET_AWS_KEY_FOR_TEST is not set",
    "providers.cf.regions": "required with target_type = 'region'",  # beside the unset secret
    "providers.v1.status_endpoint": "required with api_version = 1",
    "providers.big.batch_size": "is above the vendor limit of 50 URLs per request",
}


def check_json(*args: str) -> tuple[CliRun, dict[str, Any]]:
    r = invoke("config", "check", *args, "-o", "json")
    return r, json.loads(r.stdout)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


def test_every_error_at_once_with_key_path_on_stderr_and_in_json(write_config) -> None:
    path = write_config(MANY_ERRORS)
    r, data = check_json()
    assert r.returncode == 3
    assert data["ok"] is False
    found = {e["key"]: e for e in data["errors"]}
    assert set(found) == set(EXPECTED_KEYS), sorted(found)
    for key, needle in EXPECTED_KEYS.items():
        assert needle in found[key]["message"], (key, found[key])
        assert key in found[key]["message"]
    assert "--force" in found["providers.big.batch_size"]["hint"]
    assert str(path) in found["providers.main.lookup"]["message"]
    # the same errors on stderr, one line each (with the hint on the next line where there is one)
    lines = error_lines(r.stderr)
    assert len(lines) == len(EXPECTED_KEYS)
    for error in data["errors"]:
        assert f"error: {error['message']}" in lines
    # per alias as well; a valid alias next to broken ones is ok
    by_alias = {p["provider"]: p for p in data["providers"]}
    assert [e["key"] for e in by_alias["main"]["errors"]] == [
        "providers.main.max_btach",
        "providers.main.lookup",
    ]
    assert by_alias["main"]["error"] == by_alias["main"]["errors"][0]["message"]
    assert {e["provider"] for e in data["errors"]} == {None, "main", "cf", "v1", "big"}


def test_table_lists_each_alias_and_the_keys_to_fix(write_config) -> None:
    write_config(MANY_ERRORS.replace('[providers.odd]\ntype = "nosuch"\n', ""))
    r = invoke("config", "check", "-o", "table")
    assert r.returncode == 3
    assert "error  main (fake): providers.main.max_btach, providers.main.lookup" in r.stdout
    assert "error  big (fake): providers.big.batch_size" in r.stdout
    assert f": {len(EXPECTED_KEYS) - 1} errors" in r.stderr
    assert len(error_lines(r.stderr)) == len(EXPECTED_KEYS) - 1


def test_unreadable_toml_is_one_error_with_its_line(write_config) -> None:
    write_config('[defaults]\nretries = 3\n[providers.main\ntype = "fake"\n')
    r, data = check_json()
    assert r.returncode == 3
    (error,) = data["errors"]
    assert "line 3" in error["message"] and "invalid TOML" in error["message"]
    assert error_lines(r.stderr) == [f"error: {error['message']}"]


def test_a_mistyped_default_provider_is_caught_by_check_and_named_by_submit(
    write_config,
) -> None:
    write_config(
        '[defaults]\nprovider = "mian"\n\n[providers.main]\ntype = "fake"\n'
        'endpoint = "https://cdn.example.com"\n'
    )
    r, data = check_json()
    assert r.returncode == 3
    (error,) = data["errors"]
    assert error["key"] == "defaults.provider" and "did you mean main?" in error["message"]
    r = invoke("submit", "--dry-run", "https://a.example.com/x")
    assert r.returncode == 3
    assert "defaults.provider: no alias 'mian'" in r.stderr and "did you mean main?" in r.stderr
    # A type name is a default too: the alias of that type, or the built-in one.
    write_config('[defaults]\nprovider = "direct"\n')
    assert check_json()[0].returncode == 0


def test_a_route_to_an_alias_with_none_configured_names_no_list(write_config) -> None:
    write_config('[[routes]]\nhosts = ["img.example.com"]\nproviders = ["cdn"]\n')
    r, data = check_json()
    assert r.returncode == 3
    (error,) = data["errors"]
    assert error["message"].endswith(
        "'cdn' is not a configured provider (add a [providers.cdn] table)"
    )


def test_a_route_may_name_the_built_in_direct_provider_without_a_table(write_config) -> None:
    # DESIGN §9: direct is always there, as -p direct and defaults.provider have it.
    write_config('[[routes]]\nhosts = ["img.example.com"]\nproviders = ["direct"]\n')
    r, data = check_json()
    assert r.returncode == 0 and data["ok"], r.stdout
    assert [p["provider"] for p in data["providers"]] == ["direct"]  # checked as submit builds it
    r = invoke("submit", "--dry-run", "-o", "json", "https://img.example.com/a.js")
    assert r.returncode == 0, r.stderr
    assert list(json.loads(r.stdout)["providers"]) == ["direct"]


def test_a_default_naming_a_type_without_a_table_is_checked_as_submit_builds_it(
    write_config, monkeypatch: pytest.MonkeyPatch
) -> None:
    # submit builds the implicit alias from the environment: its missing secrets fail it.
    monkeypatch.delenv("QINIU_ACCESS_KEY", raising=False)
    monkeypatch.delenv("QINIU_SECRET_KEY", raising=False)
    write_config('[defaults]\nprovider = "qiniu"\n')
    r, data = check_json()
    assert r.returncode == 3, r.stderr
    assert [p["provider"] for p in data["providers"]] == ["qiniu"]
    (qiniu,) = data["providers"]
    assert any("QINIU_ACCESS_KEY is not set" in e["message"] for e in qiniu["errors"])


def test_several_providers_and_no_default_is_a_warning_that_submit_needs_p(
    write_config, fake_cdn
) -> None:
    table = f'type = "fake"\nendpoint = "{fake_cdn.url}"\napi_key = "k"\n'
    write_config(f"[providers.one]\n{table}[providers.two]\n{table}")
    r, data = check_json()
    assert r.returncode == 0, r.stderr
    assert data["warnings"] == [
        "no default provider and no [[routes]]: a submit without -p NAME is refused"
        " (set [defaults] provider, or add [[routes]])"
    ]


def test_a_valid_file_is_ok_and_lists_no_errors(fake_config: Path) -> None:
    r, data = check_json()
    assert r.returncode == 0, r.stderr
    assert data["ok"] is True and data["errors"] == [] and data["warnings"] == []
    assert data["providers"][0]["errors"] == [] and "error" not in data["providers"][0]
    assert "error" not in r.stderr


def test_permission_warning(write_config) -> None:
    path = write_config(
        '[providers.main]\ntype = "fake"\nendpoint = "https://cdn.example.com"\n'
        'api_key = "literal-secret-value"\n'
    )
    path.chmod(0o644)
    r, data = check_json()
    assert r.returncode == 0, r.stderr
    (warning,) = data["warnings"]
    assert "providers.main.api_key" in warning and "chmod 600" in warning
    assert f"warning: {warning}" in r.stderr
    shown = invoke("config", "show")  # every command that reads the file says so
    assert f"warning: {warning}" in shown.stderr and "literal-secret-value" not in shown.stdout
    path.chmod(0o600)
    r, data = check_json()
    assert data["warnings"] == [] and "warning" not in r.stderr
    assert "warning" not in invoke("config", "show").stderr


@pytest.mark.parametrize(
    ("setting", "needle"),
    [
        ("batch_size = 51", "batch_size = 51 is above the vendor limit of 50 URLs per request"),
        ("rate = 100.0", "rate = 100.0 is above the vendor limit of 20.0 requests/s"),
    ],
)
def test_limits_above_the_vendors(
    write_config, monkeypatch: pytest.MonkeyPatch, setting: str, needle: str
) -> None:
    monkeypatch.setenv("TENCENTCLOUD_SECRET_ID", "AKIDexample")
    monkeypatch.setenv("TENCENTCLOUD_SECRET_KEY", "example")
    path = write_config(
        '[providers.teo]\ntype = "edgeone"\nzone_id = "zone-2o0example"\n'
        f"{setting}\n"
        '[providers.fake]\ntype = "fake"\nendpoint = "https://cdn.example.com"\n'
        f"{setting}\n"
    )
    r, data = check_json()
    messages = [e["message"] for e in data["errors"]]
    assert r.returncode == 3
    if setting.startswith("batch_size"):  # the fake's vendor limit is 50 URLs, EdgeOne's 100
        assert messages == [f"{path}: providers.fake.{needle}"]
    else:  # the fake declares no request rate
        assert messages == [f"{path}: providers.teo.{needle}"]


def test_lower_limits_are_fine(write_config, monkeypatch: pytest.MonkeyPatch) -> None:
    write_config(
        '[providers.fake]\ntype = "fake"\nendpoint = "https://cdn.example.com"\n'
        "batch_size = 50\nrate = 2.0\n"
    )
    r, data = check_json()
    assert r.returncode == 0 and data["ok"], r.stderr


def test_a_batch_size_the_vendor_reports_at_run_time_is_not_judged_offline(
    write_config, monkeypatch: pytest.MonkeyPatch
) -> None:
    # EdgeOne's Batch is read from the zone (1000 on some plans): 100 is only a stand-in.
    monkeypatch.setenv("TENCENTCLOUD_SECRET_ID", "AKIDexample")
    monkeypatch.setenv("TENCENTCLOUD_SECRET_KEY", "example")
    write_config(
        '[providers.teo]\ntype = "edgeone"\nzone_id = "zone-2o0example"\nbatch_size = 200\n'
    )
    r, data = check_json()
    assert r.returncode == 0 and data["ok"], r.stdout


def test_a_rule_a_provider_checks_as_it_is_made_names_the_file(write_config) -> None:
    path = write_config(
        '[providers.eo]\ntype = "edgeone"\nzone_id = "*"\nsecret_id = "a"\nsecret_key = "b"\n'
    )
    r, data = check_json()
    assert r.returncode == 3
    (error,) = data["errors"]
    assert error["message"] == f"{path}: providers.eo.zone_id: '*' is not a site id"
    assert error["key"] == "providers.eo.zone_id"
    r = invoke("submit", "-p", "eo", "https://a.example.com/x")
    assert r.returncode == 3
    error = json.loads(r.stdout)["error"]
    assert error["message"] == f"{path}: providers.eo.zone_id: '*' is not a site id"
    assert error["provider"] == "eo" and "zone id" in error["hint"]


def test_every_rule_a_provider_checks_is_listed_at_once(write_config) -> None:
    path = write_config(
        '[providers.a2]\ntype = "aws"\n'
        'endpoint = "https://abc.execute-api.us-east-1.amazonaws.com"\napi_key = "k"\n'
        'target_type = "pop"\npops = []\ncf_domain = "static.example.com"\n\n'
        '[providers.q1]\ntype = "qiniu"\naccess_key = "a"\nsecret_key = "b"\n'
        'product = "x"\nbatch_size = 61\n\n'
        '[providers.e1]\ntype = "edgeone"\nzone_id = "*"\nendpoint = "http://teo.example.com"\n'
        'secret_id = "a"\nsecret_key = "b"\n\n'
        '[providers.d]\ntype = "direct"\npops = ["IAD89"]\nresolver = "notanip"\necs = ["nope"]\n'
        "encodings = []\nmax_bytes = 0\n"
    )
    r, data = check_json()
    assert r.returncode == 3
    keys = [(e["provider"], e["key"]) for e in data["errors"]]
    assert keys == [
        ("a2", "providers.a2.endpoint"),
        ("a2", "providers.a2.pops"),
        ("a2", "providers.a2.cf_domain"),
        ("q1", "providers.q1.product"),
        ("q1", "providers.q1.batch_size"),
        ("e1", "providers.e1.zone_id"),
        ("e1", "providers.e1.endpoint"),
        ("d", "providers.d.encodings"),  # empty: not "none", the defaults would be warmed
        ("d", "providers.d.max_bytes"),  # every run would defer everything
        ("d", "providers.d.pops"),
        ("d", "providers.d.resolver"),
        ("d", "providers.d.ecs"),
    ]
    assert all(e["message"].startswith(f"{path}: ") for e in data["errors"])
    # What check finds, a command stops at (the first of the alias's), before sending.
    r = invoke("submit", "-p", "d", "https://a.example.com/x")
    assert r.returncode == 3
    assert json.loads(r.stdout)["error"]["message"].startswith(f"{path}: providers.d.encodings: ")
    r = invoke("config", "init", "--type", "direct", "--alias", "d2", "--set", "resolver=x")
    assert r.returncode == 3 and "providers.d2.resolver: resolver 'x' is not IP" in r.stderr


def test_a_secret_that_looks_like_a_variable_is_warned_of(write_config) -> None:
    """TOML expands nothing: "${QAK}" was sent to the vendor as the key, and only its
    refusal said so."""
    path = write_config(
        '[providers.q]\ntype = "qiniu"\naccess_key = "ENV:QAK"\nsecret_key = "${QSK}"\n'
    )
    r, data = check_json()
    assert r.returncode == 0, r.stderr
    assert data["warnings"] == [
        f"{path}: providers.q.access_key looks like a reference to the variable QAK,"
        ' but is taken as the secret itself: write "env:QAK"',
        f"{path}: providers.q.secret_key looks like a reference to the variable QSK,"
        ' but is taken as the secret itself: write "env:QSK"',
    ]
    # A password that starts with "$" is not one, and is never said.
    write_config('[providers.q]\ntype = "qiniu"\naccess_key = "a"\nsecret_key = "$Tr0ub4dor_x"\n')
    r, data = check_json()
    assert r.returncode == 0 and data["warnings"] == [], r.stderr
    assert "Tr0ub4dor" not in r.stdout + r.stderr


def test_a_provider_whose_sdk_is_missing_fails_the_check(write_config, monkeypatch) -> None:
    """Offline too: it said ok, and every submit then stopped on the missing SDK."""
    import sys

    path = write_config('[providers.q]\ntype = "qiniu"\naccess_key = "a"\nsecret_key = "b"\n')
    monkeypatch.setitem(sys.modules, "qiniu", None)
    r, data = check_json()
    assert r.returncode == 3, r.stderr
    (error,) = data["errors"]
    assert error["message"] == (
        f"{path}: the qiniu provider needs the qiniu SDK: prewarm's qiniu extra:"
        " pip install 'prewarm-cli[qiniu]' (pipx: pipx install --force 'prewarm-cli[qiniu]')"
    )


def test_a_setting_the_provider_s_client_cannot_take_is_an_error_not_a_crash(
    write_config,
) -> None:
    """A key pasted with typographic quotes: its client cannot send it in a header."""
    path = write_config(
        '[providers.a]\ntype = "aws"\n'
        'endpoint = "https://abc.execute-api.us-east-1.amazonaws.com/prod"\n'
        'target_type = "pop"\npops = ["IAD89-P1"]\ncf_domain = "d1.cloudfront.net"\n'
        'api_key = "\u201ck\u201d"\n'
    )
    r, data = check_json()
    assert r.returncode == 3, r.stderr
    (error,) = data["errors"]
    assert error["message"].startswith(
        f"{path}: providers.a: its client cannot be made from these settings (UnicodeEncodeError"
    )
