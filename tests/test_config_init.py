"""`config init`: answers checked and asked again, follow-up questions, credentials found in the
environment, an existing file edited with its comments kept, defaults.provider never changed
unasked, and a written file that passes `config check`."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT
from helpers import CliRun, converse, invoke

AWS_ENDPOINT = "https://abc123.execute-api.us-east-1.amazonaws.com/prod"

COMMENTED = """\
# Team CDN settings: reviewed by ops, keep these comments.
[defaults]
provider = "main"   # the account we warm by default
retries = 3

# Production account.
[providers.main]
type = "fake"
endpoint = "https://cdn.example.com"  # the vendor's API
max_batch = 20

[[routes]]   # images go to the main account
hosts = ["img.example.com"]
providers = ["main"]
"""


def config_file(cli_env: dict[str, str]) -> Path:
    return Path(cli_env["PREWARM_CONFIG"])


# --------------------------------------------------------------------------- on a terminal


def test_answers_are_checked_asked_again_and_required_lists_asked_for(cli_env) -> None:
    env = {**cli_env, "PREWARM_AWS_API_KEY": "key-from-the-environment"}
    code, shown = converse(
        env,
        ["config", "init"],
        [
            ("Provider type", "aws"),
            ("endpoint (", "abc123.execute-api.us-east-1.amazonaws.com/prod"),
            ("endpoint (", AWS_ENDPOINT),  # asked again: no scheme
            ("api_key (", ""),  # Enter: the env: reference offered
            ("target_type (", "everywhere"),
            ("target_type (", "region"),  # asked again: not an allowed value
            ("regions (", "apac, us"),  # what target_type = "region" requires
            ("api_version (", ""),
            ("instance_count (", "two"),
            ("instance_count (", "2"),  # asked again: not an integer
            ("timeout_minutes (", ""),
        ],
    )
    assert code == 0, shown
    assert "is not a URL with scheme and host" in shown
    assert "found PREWARM_AWS_API_KEY in the environment" in shown
    assert "'everywhere' is not allowed" in shown
    assert "providers.aws.regions: required with target_type = 'region'" in shown
    # Before its question, as what it asks: not a warning about a file not written yet.
    (said,) = [line for line in shown.splitlines() if "required with target_type" in line]
    assert said.startswith("providers.aws.regions: "), said
    assert "'two' is not an integer" in shown
    assert "key-from-the-environment" not in shown
    data = tomllib.loads(config_file(cli_env).read_text())
    assert data["providers"]["aws"] == {
        "type": "aws",
        "endpoint": AWS_ENDPOINT,
        "api_key": "env:PREWARM_AWS_API_KEY",
        "api_version": 2,
        "target_type": "region",
        "regions": ["apac", "us"],
        "instance_count": 2,
        "timeout_minutes": 60,
    }
    assert data["defaults"] == {"provider": "aws"}  # a new file: its only alias
    check = invoke("config", "check", env_extra={"PREWARM_AWS_API_KEY": "k"})
    assert check.returncode == 0, check.stderr


def test_an_unset_credential_is_offered_as_env_reference_all_the_same(cli_env) -> None:
    code, shown = converse(
        cli_env,
        ["config", "init", "--type", "qiniu"],
        [("access_key (", ""), ("secret_key (", ""), ("product (", ""), ("endpoint (", "")],
    )
    assert code == 0, shown
    assert "QINIU_ACCESS_KEY is not set" in shown and "export QINIU_ACCESS_KEY" in shown
    table = tomllib.loads(config_file(cli_env).read_text())["providers"]["qiniu"]
    assert table["access_key"] == "env:QINIU_ACCESS_KEY"
    assert table["secret_key"] == "env:QINIU_SECRET_KEY"


def test_adding_an_alias_asks_before_changing_the_default(cli_env, write_config) -> None:
    path = write_config(COMMENTED)
    script = [
        ("endpoint (", "https://backup.example.com"),
        ("max_batch (", ""),
        ("lookup (", ""),
        ("cancel (", ""),
    ]
    code, shown = converse(
        cli_env,
        ["config", "init", "--type", "fake", "--alias", "backup"],
        [*script, ("Make backup the default provider (now: main)?", "")],  # Enter: no
    )
    assert code == 0, shown
    text = path.read_text()
    assert text.startswith(COMMENTED.split("[[routes]]")[0])  # untouched, comments and all
    assert "[[routes]]   # images go to the main account" in text
    data = tomllib.loads(text)
    assert data["defaults"]["provider"] == "main"
    assert data["providers"]["backup"]["endpoint"] == "https://backup.example.com"

    code, shown = converse(
        cli_env,
        ["config", "init", "--type", "fake", "--alias", "third"],
        [*script, ("Make third the default provider (now: main)?", "y")],
    )
    assert code == 0, shown
    text = path.read_text()
    assert tomllib.loads(text)["defaults"]["provider"] == "third"
    assert 'provider = "third"   # the account we warm by default' in text


def test_an_existing_alias_is_replaced_only_when_confirmed(cli_env, write_config) -> None:
    path = write_config(COMMENTED)
    code, shown = converse(
        cli_env,
        ["config", "init", "--type", "fake", "--alias", "main"],
        [
            ("replace it?", "n"),
            ("Alias for the new provider", "main"),  # taken: asked again
            ("Alias for the new provider", "spare"),
            ("endpoint (", "https://spare.example.com"),
            ("max_batch (", ""),
            ("lookup (", ""),
            ("cancel (", ""),
            ("default provider", "n"),
        ],
    )
    assert code == 0, shown
    assert "already in the file" in shown
    data = tomllib.loads(path.read_text())
    assert data["providers"]["main"]["endpoint"] == "https://cdn.example.com"
    assert data["providers"]["spare"]["endpoint"] == "https://spare.example.com"


# --------------------------------------------------------------------------- with flags


def test_set_typo_is_exit_3_with_did_you_mean_and_writes_nothing(cli_env) -> None:
    r = invoke(
        "config", "init", "--type", "fake",
        "--set", "endpoint=https://cdn.example.com", "--set", "max_btach=20",
    )  # fmt: skip
    assert r.returncode == 3
    assert "--set max_btach: fake has no key 'max_btach' (did you mean max_batch?)" in r.stderr
    assert not config_file(cli_env).exists()


@pytest.mark.parametrize(
    ("setting", "needle"),
    [
        ("endpoint=cdn.example.com", "is not a URL with scheme and host"),
        ("endpoint=ftp://cdn.example.com", "is not a URL with scheme and host"),
        ("max_batch=many", "'many' is not an integer (e.g. "),  # typed: no quotes to remove
        ("max_batch=1.5", "expected an integer, got a number (write a whole number"),
        ("batch_size=0", "must be greater than 0"),
    ],
)
def test_set_values_are_checked(cli_env, setting: str, needle: str) -> None:
    r = invoke("config", "init", "--type", "fake", "--set", setting)
    assert r.returncode == 3 and needle in r.stderr, r.stderr
    assert not config_file(cli_env).exists()


def test_a_set_that_is_not_key_value_is_a_usage_error(cli_env) -> None:
    r = invoke("config", "init", "--type", "fake", "--set", "nokey")
    assert r.returncode == 2 and "--set 'nokey' is not KEY=VALUE" in r.stderr
    assert not config_file(cli_env).exists()


def test_a_symlinked_config_is_edited_through_its_link(cli_env, tmp_path: Path) -> None:
    """A dotfiles checkout links the config: the file it names is edited, the link kept."""
    real = tmp_path / "dotfiles" / "prewarm.toml"
    real.parent.mkdir()
    real.write_text("# my settings\n[defaults]\nretries = 3\n")
    link = tmp_path / "linked.toml"
    link.symlink_to(real)
    r = invoke("--config", str(link), "config", "init", "--type", "direct", "--alias", "edge")
    assert r.returncode == 0, r.stderr
    assert link.is_symlink() and link.resolve() == real
    assert real.read_text().startswith("# my settings\n") and "[providers.edge]" in real.read_text()


def test_a_file_of_crlf_lines_keeps_them(cli_env, tmp_path: Path) -> None:
    """Written on Windows: every line, the new ones too, ends as the file's did."""
    path = tmp_path / "crlf.toml"
    path.write_bytes(b"# mine\r\n[defaults]\r\nretries = 3\r\n")
    r = invoke("--config", str(path), "config", "init", "--type", "direct", "--alias", "edge")
    assert r.returncode == 0, r.stderr
    data = path.read_bytes()
    assert data.startswith(b"# mine\r\n[defaults]\r\nretries = 3\r\n")
    assert b"[providers.edge]\r\n" in data and data.count(b"\n") == data.count(b"\r\n")


def test_providers_written_inline_are_a_config_error_not_a_crash(cli_env, tmp_path: Path) -> None:
    path = tmp_path / "inline.toml"
    path.write_text("defaults = { retries = 3 }\nproviders = { }\n")
    r = invoke("--config", str(path), "config", "init", "--type", "direct", "--alias", "edge")
    assert r.returncode == 3, r.stderr
    assert f"{path}: providers is written inline" in r.stderr
    assert path.read_text() == "defaults = { retries = 3 }\nproviders = { }\n"


def test_a_rule_of_the_provider_is_exit_3_and_writes_nothing(cli_env) -> None:
    r, out = _init_json(
        "--type", "aws", "--set", f"endpoint={AWS_ENDPOINT}", "--set", "target_type=country"
    )
    assert r.returncode == 3
    assert "providers.aws.countries: required with target_type = 'country'" in r.stderr
    assert "nothing was written" in r.stderr
    assert out["error"]["code"] == "config" and "providers.aws.countries" in out["error"]["message"]
    assert not config_file(cli_env).exists()


def test_a_refused_init_says_nothing_of_the_default_it_did_not_write(cli_env, write_config) -> None:
    # "defaults.provider stays main" before "nothing was written" said something of a file
    # that was not written.
    write_config(COMMENTED)
    r = invoke("config", "init", "--type", "aws", "--alias", "b", "--set", "target_type=pop")
    assert r.returncode == 3, r.stderr
    assert "nothing was written" in r.stderr and "defaults.provider" not in r.stderr


def test_written_file_passes_config_check(cli_env) -> None:
    r, out = _init_json(
        "--type", "aws", "--alias", "cf", "--set", f"endpoint={AWS_ENDPOINT}",
        "--set", "target_type=pop", "--set", "pops=IAD89-P1,NRT57-P3",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert out == {
        "path": str(config_file(cli_env)),
        "provider": "cf",
        "type": "aws",
        "replaced": False,
        "default_provider": "cf",
        "unset_env": ["PREWARM_AWS_API_KEY"],
    }
    assert "export PREWARM_AWS_API_KEY=... before using cf" in r.stderr
    check = invoke("config", "check", "-o", "json", env_extra={"PREWARM_AWS_API_KEY": "k"})
    assert check.returncode == 0, check.stderr
    assert json.loads(check.stdout)["ok"] is True
    # The check passes once the variable is set, and the words say so (it failed before).
    assert "once PREWARM_AWS_API_KEY is set, check it with `prewarm config check`" in r.stderr


def test_the_default_goes_after_the_last_key_of_defaults_not_after_its_comments(
    cli_env, tmp_path: Path
) -> None:
    """In the shipped example, [defaults] is followed by commented-out tables: the key must
    not land under '# [[routes]]', where uncommenting a route would take it."""
    example = tmp_path / "config.toml"
    example.write_text((ROOT / "config.example.toml").read_text())
    example.chmod(0o600)
    r = invoke("--config", str(example), "config", "init", "--type", "direct", "--alias", "d1")
    assert r.returncode == 0, r.stderr
    lines = example.read_text().splitlines()
    at = lines.index('provider = "d1"')
    assert lines[at - 1].startswith("retry_timeout = ")  # the last key of [defaults]
    # Every comment kept, in its place.
    original = (ROOT / "config.example.toml").read_text().splitlines()
    assert [x for x in lines[: at + 1] if x != 'provider = "d1"'] == original[:at]


def test_a_file_named_with_config_is_the_one_to_check(cli_env, tmp_path: Path) -> None:
    named = tmp_path / "my dir" / "cdn.toml"
    r = invoke("--config", str(named), "config", "init", "--type", "direct", "--alias", "edge")
    assert r.returncode == 0, r.stderr
    assert f"check it with `prewarm --config '{named}' config check`" in r.stderr


def test_default_provider_is_kept_without_a_flag_and_set_with_one(cli_env, write_config) -> None:
    path = write_config(COMMENTED)
    r, out = _init_json("--type", "fake", "--alias", "b", "--set", "endpoint=https://b.example")
    assert r.returncode == 0, r.stderr
    assert out["default_provider"] == "main"
    assert "defaults.provider stays main (pass --default to make it b)" in r.stderr
    text = path.read_text()
    assert text.startswith(COMMENTED.split("[[routes]]")[0])
    assert text.count("[providers.b]") == 1

    r, out = _init_json(
        "--type", "fake", "--alias", "c", "--set", "endpoint=https://c.example", "--default"
    )
    assert r.returncode == 0, r.stderr
    assert tomllib.loads(path.read_text())["defaults"]["provider"] == "c"
    r, out = _init_json(
        "--type", "fake", "--alias", "d", "--set", "endpoint=https://d.example", "--no-default"
    )
    assert r.returncode == 0 and out["default_provider"] == "c"


def test_the_only_alias_stays_the_default_when_a_second_is_added(cli_env, write_config) -> None:
    path = write_config(
        '# mine\n[providers.one]\ntype = "fake"\nendpoint = "https://one.example"\n'
    )
    r, out = _init_json("--type", "fake", "--alias", "two", "--set", "endpoint=https://t.example")
    assert r.returncode == 0, r.stderr
    assert "defaults.provider = 'one' written" in r.stderr
    assert out["default_provider"] == "one"
    assert tomllib.loads(path.read_text())["defaults"]["provider"] == "one"
    assert path.read_text().startswith("# mine\n")


def test_an_existing_alias_needs_force_and_is_replaced_in_place(cli_env, write_config) -> None:
    path = write_config(COMMENTED)
    args = ("--type", "fake", "--alias", "main", "--set", "endpoint=https://new.example.com")
    r, _ = _init_json(*args)
    assert r.returncode == 3
    assert "providers.main already exists (pass --force to replace it" in r.stderr
    assert path.read_text() == COMMENTED

    r, out = _init_json(*args, "--force")
    assert r.returncode == 0, r.stderr
    assert out["replaced"] is True and out["default_provider"] == "main"
    text = path.read_text()
    assert text.startswith("# Team CDN settings") and "# Production account.\n" in text
    data = tomllib.loads(text)
    assert data["providers"]["main"] == {"type": "fake", "endpoint": "https://new.example.com"}
    assert list(data) == ["defaults", "providers", "routes"]  # the table stayed where it was


def test_bad_alias_is_a_usage_error(cli_env) -> None:
    r = invoke("config", "init", "--type", "fake", "--alias", "a b", "--set", "endpoint=https://x")
    assert r.returncode == 2 and "not a valid alias" in r.stderr


def _init_json(*args: str) -> tuple[CliRun, dict[str, Any]]:
    r = invoke("config", "init", *args, "-o", "json")
    return r, (json.loads(r.stdout) if r.stdout.strip() else {})


def test_enter_keeps_a_list_default_whose_items_hold_commas(cli_env) -> None:
    code, shown = converse(
        cli_env,
        ["config", "init"],
        [("Provider type", ""), ("encodings (", ""), ("resolver (", "")],
    )
    assert code == 0, shown
    table = tomllib.loads(config_file(cli_env).read_text())["providers"]["direct"]
    assert table["encodings"] == ["gzip, deflate, br", "identity"]


@pytest.mark.parametrize(
    "text",
    [
        '[defaults]\nretries = 3\n\n[providers.x]\ntype = "direct"\n\n[defaults.more]\na = "b"\n',
        'defaults = { retries = 3 }\n\n[providers.x]\ntype = "direct"\n',
    ],
)
def test_the_default_is_set_in_a_split_or_inline_defaults_table(text: str) -> None:
    from prewarm_cli.config_file import ConfigDocument

    doc = ConfigDocument.parse(Path("config.toml"), text)
    doc.set_default_provider("x")
    assert tomllib.loads(doc.text())["defaults"]["provider"] == "x"
    assert tomllib.loads(doc.text())["defaults"]["retries"] == 3


def test_an_answer_a_rule_refused_is_not_offered_again_as_the_default(cli_env) -> None:
    """zone_id '*' refused by the provider's rule: asked again, '*' was the default."""
    code, shown = converse(
        {**cli_env, "TENCENTCLOUD_SECRET_ID": "AKIDx", "TENCENTCLOUD_SECRET_KEY": "k"},
        ["config", "init", "--type", "edgeone"],
        [
            ("secret_id (", ""),
            ("secret_key (", ""),
            ("zone_id (", "*"),
            ("zone_id (", "zone-2abc345def67"),
            ("endpoint (", ""),
            ("lookup_settle (", ""),
        ],
    )
    assert code == 0 and "'*' is not a site id" in shown, shown
    again = shown.split("'*' is not a site id", 1)[1]
    assert "zone_id (" in again and "[*]" not in again, shown
