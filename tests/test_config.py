"""Tests for prewarm_cli.config: search order, validation, env: secrets, writing, display."""

from __future__ import annotations

import os
import re
import shutil
import stat
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from prewarm_cli import config as cfg
from prewarm_cli import paths
from prewarm_cli.config import (
    DEFAULTS_FIELDS,
    Config,
    Route,
    load_config,
    permission_warning,
)
from prewarm_cli.config_file import provider_table, write_config_text
from prewarm_cli.config_show import show_rows
from prewarm_cli.errors import ConfigError, ExitCode, UsageError
from prewarm_cli.paths import config_path, state_dir
from prewarm_cli.plugin import (
    CORE_FIELDS,
    BatchResult,
    Capability,
    ConfigField,
    Limits,
    Provider,
    SubmitOptions,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
SECRET = "s3cr3t-VALUE-do-not-print"
posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")


class DemoProvider(Provider):
    name = "demo"
    capabilities = frozenset({Capability.SUBMIT})
    default_limits = Limits(max_batch=10)
    config_schema = (
        ConfigField("endpoint", str, "API endpoint", required=True),
        ConfigField("access_key", str, "access key", secret=True),
        ConfigField("secret_key", str, "secret key", secret=True),
        ConfigField("region", str, "region", choices=("eu", "us")),
        ConfigField("tags", list, "tags", item_type=str),
    )
    credential_env = {"access_key": "DEMO_AK", "secret_key": "DEMO_SK"}

    def submit_batch(self, urls: Sequence[str], options: SubmitOptions) -> BatchResult:
        return BatchResult.from_response("t1", urls)


class StrictProvider(Provider):
    """A provider whose credential is required (no default)."""

    name = "strict"
    capabilities = frozenset({Capability.SUBMIT})
    default_limits = Limits(max_batch=10)
    config_schema = (
        ConfigField("api_key", str, "API key", required=True, secret=True),
        ConfigField("count", int, "a count"),
        ConfigField("ratio", float, "a ratio"),
        ConfigField("flag", bool, "a flag"),
        ConfigField("ids", list, "numbers", item_type=int),
    )
    credential_env = {"api_key": "STRICT_API_KEY"}

    def submit_batch(self, urls: Sequence[str], options: SubmitOptions) -> BatchResult:
        return BatchResult.from_response("t1", urls)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in (
        "PREWARM_CONFIG",
        "PREWARM_STATE_DIR",
        "XDG_CONFIG_HOME",
        "XDG_STATE_HOME",
        "DEMO_AK",
        "DEMO_SK",
        "STRICT_API_KEY",
        "MY_SECRET",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load(tmp_path: Path, text: str) -> Config:
    return load_config(str(write(tmp_path, text)))


def config_error(tmp_path: Path, text: str) -> ConfigError:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert_one_line(info.value, path)
    return info.value


def assert_one_line(error: Exception, path: Path, keypath: str | None = None) -> str:
    message = str(error)
    assert "\n" not in message
    assert str(path) in message
    if keypath is not None:
        assert keypath in message
    return message


def resolve_error(config: Config, alias: str, cls: type[Provider], keypath: str) -> str:
    with pytest.raises(ConfigError) as info:
        config.resolve(alias, cls)
    assert info.value.exit_code == ExitCode.CONFIG
    return assert_one_line(info.value, config.path, keypath)


# --- paths ---


def test_search_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert config_path() == (home / ".config" / "prewarm" / "config.toml", "default")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert config_path() == (tmp_path / "xdg" / "prewarm" / "config.toml", "default")
    monkeypatch.setenv("PREWARM_CONFIG", str(tmp_path / "env.toml"))
    assert config_path() == (tmp_path / "env.toml", "$PREWARM_CONFIG")
    assert config_path(str(tmp_path / "cli.toml")) == (tmp_path / "cli.toml", "--config")


def test_search_order_explicit_env_mapping(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path / "h"), "XDG_CONFIG_HOME": "relative/ignored"}
    assert config_path(env=env) == (
        tmp_path / "h" / ".config" / "prewarm" / "config.toml",
        "default",
    )
    env["PREWARM_CONFIG"] = "~/x.toml"
    assert config_path(env=env)[0] == Path("~/x.toml").expanduser()


def test_windows_uses_platformdirs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import platformdirs

    monkeypatch.setattr(paths, "_is_windows", lambda: True)
    monkeypatch.setattr(platformdirs, "user_config_dir", lambda *a, **k: str(tmp_path / "cfg"))
    monkeypatch.setattr(platformdirs, "user_state_dir", lambda *a, **k: str(tmp_path / "st"))
    assert config_path() == (tmp_path / "cfg" / "config.toml", "default")
    assert state_dir(create=False) == tmp_path / "st"


def test_state_dir_order_and_mode(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert state_dir(create=False) == tmp_path / "home" / ".local" / "state" / "prewarm"
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdgstate"))
    assert state_dir(create=False) == tmp_path / "xdgstate" / "prewarm"
    target = tmp_path / "explicit" / "state"
    monkeypatch.setenv("PREWARM_STATE_DIR", str(target))
    assert not target.exists()
    assert state_dir() == target
    assert target.is_dir()
    if os.name == "posix":
        assert stat.S_IMODE(target.stat().st_mode) == 0o700
        assert stat.S_IMODE(target.parent.stat().st_mode) == 0o700
    assert state_dir() == target  # existing directory is fine


def test_missing_default_file_is_empty(tmp_path: Path) -> None:
    config = load_config()
    assert not config.exists
    assert config.how == "default"
    assert config.providers == {} and config.routes == ()
    assert config.defaults == {"retries": 5, "retry_timeout": 120.0}
    assert config.default_provider() is None


@pytest.mark.parametrize("via_env", [False, True])
def test_missing_explicit_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, via_env: bool
) -> None:
    path = tmp_path / "nope.toml"
    if via_env:
        monkeypatch.setenv("PREWARM_CONFIG", str(path))
    with pytest.raises(ConfigError) as info:
        load_config(None if via_env else str(path))
    message = assert_one_line(info.value, path)
    assert "not found" in message
    assert ("$PREWARM_CONFIG" if via_env else "--config") in message


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(str(tmp_path))
    assert_one_line(info.value, tmp_path)


# --- parsing and structure ---


def test_toml_syntax_error_names_line(tmp_path: Path) -> None:
    err = config_error(tmp_path, '[defaults]\nretries = 3\noutput = "json\n')
    assert "line 3" in str(err)
    assert "column" in str(err)


def test_minimal_valid(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
        [defaults]
        provider = "main"
        output = "json"
        retries = 3
        retry_timeout = 30
        wait_timeout = 600

        [providers.main]
        type = "demo"
        endpoint = "http://127.0.0.1:1"
        """,
    )
    assert config.exists and config.how == "--config"
    assert config.defaults == {
        "provider": "main",
        "output": "json",
        "retries": 3,
        "retry_timeout": 30.0,
        "wait_timeout": 600.0,
    }
    assert isinstance(config.defaults["retry_timeout"], float)
    assert config.aliases() == ["main"]
    assert config.provider_type("main") == "demo"
    assert config.provider_type("other") == "other"


@pytest.mark.parametrize(
    ("text", "keypath", "needle"),
    [
        ("colour = 1\n", "colour", "unknown key"),
        ("[qiniu]\naccess_key = 'x'\n", "qiniu", "providers.qiniu"),
        ('defaults = "x"\n', "defaults", "table"),
        ("[defaults]\noutputs = 'json'\n", "defaults.outputs", "did you mean output?"),
        ("[defaults]\noutput = 'yaml'\n", "defaults.output", '"table", "json", "ndjson"'),
        ("[defaults]\nretries = '3'\n", "defaults.retries", "remove the quotes"),
        ("[defaults]\nretries = true\n", "defaults.retries", "integer"),
        ("[defaults]\nretries = 2.5\n", "defaults.retries", "whole number"),
        ("[defaults]\nretries = 0\n", "defaults.retries", "greater than 0"),
        ("[defaults]\nretry_timeout = false\n", "defaults.retry_timeout", "number"),
        ("[defaults]\nprovider = 3\n", "defaults.provider", "string"),
        ('providers = "x"\n', "providers", "[providers.ALIAS]"),
        ("[providers]\nqiniu = 1\n", "providers.qiniu", "expected a table"),
        ('[providers."bad alias"]\ntype = "demo"\n', "bad alias", "invalid alias"),
        ("[providers.a]\ntype = 3\n", "providers.a.type", "type name"),
        ("[routes]\nhosts = ['a']\n", "routes", "[[routes]]"),
        ("routes = [1]\n", "routes[0]", "expected a table"),
        (
            "[providers.a]\ntype='demo'\n[[routes]]\nhosts=['x']\nprovider=['a']\n",
            "routes[0].provider",
            "did you mean providers?",
        ),
        ("[providers.a]\n[[routes]]\nproviders=['a']\n", "routes[0].hosts", "missing"),
        ("[providers.a]\n[[routes]]\nhosts=[]\nproviders=['a']\n", "routes[0].hosts", "non-empty"),
        (
            "[providers.a]\n[[routes]]\nhosts='x.com'\nproviders=['a']\n",
            "routes[0].hosts",
            "list",
        ),
        ("[providers.a]\n[[routes]]\nhosts=[1]\nproviders=['a']\n", "routes[0].hosts", "strings"),
        (
            "[providers.a]\n[[routes]]\nhosts=['https://x.com/']\nproviders=['a']\n",
            "routes[0].hosts[0]",
            "host only",
        ),
        ("[providers.a]\n[[routes]]\nhosts=['x.com']\n", "routes[0].providers", "missing"),
        ("[providers.a]\n[[routes]]\nhosts=['x']\nproviders=[]\n", "routes[0].providers", "list"),
        (
            "[providers.a]\n[[routes]]\nhosts=['x.com']\nproviders=['b']\n",
            "routes[0].providers[0]",
            "not a configured provider",
        ),
        (
            "[providers.a]\ntype='demo'\n[providers.b]\ntype='demo'\n"
            "[[routes]]\nhosts=['x.com']\nproviders=['demo']\n",
            "routes[0].providers[0]",
            "several aliases",
        ),
        (
            "[defaults]\nprovider='demo'\n[providers.a]\ntype='demo'\n[providers.b]\ntype='demo'\n",
            "defaults.provider",
            "several aliases",
        ),
    ],
)
def test_structural_errors(tmp_path: Path, text: str, keypath: str, needle: str) -> None:
    err = config_error(tmp_path, text)
    assert err.exit_code == ExitCode.CONFIG
    assert keypath in str(err)
    assert needle in str(err)


def test_routes(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
        [providers.q]
        type = "qiniu"
        [providers.e]
        type = "edgeone"
        [[routes]]
        hosts = ["static.example.com", "*.img.example.com"]
        providers = ["q", "edgeone"]
        """,
    )
    (route,) = config.routes
    assert route == Route(("static.example.com", "*.img.example.com"), ("q", "edgeone"))
    assert [config.resolve_alias(p) for p in route.providers] == ["q", "e"]


def test_route_matches_globs() -> None:
    route = Route(("static.example.com", "*.IMG.example.com", "cdn?.example.org"), ("a",))
    assert route.matches("static.example.com")
    assert route.matches("STATIC.Example.COM")
    assert route.matches("static.example.com.")
    assert route.matches("a.img.example.com")
    assert route.matches("x.y.img.example.com")
    assert route.matches("cdn1.example.org")
    assert not route.matches("img.example.com")
    assert not route.matches("cdn12.example.org")
    assert not route.matches("static.example.com.evil.net")
    assert not route.matches("other.example.com")


# --- aliases ---


ALIASES = """
[providers.q1]
type = "qiniu"
[providers.q2]
type = "qiniu"
[providers.edge]
type = "edgeone"
[providers.demo]
endpoint = "http://x"
"""


def test_resolve_alias(tmp_path: Path) -> None:
    config = load(tmp_path, ALIASES)
    assert config.resolve_alias("q1") == "q1"
    assert config.resolve_alias("edgeone") == "edge"
    assert config.resolve_alias("demo") == "demo"
    assert config.provider_type("demo") == "demo"
    assert config.resolve_alias("aws") == "aws"  # unconfigured: returned as is
    with pytest.raises(UsageError) as info:
        config.resolve_alias("qiniu")
    message = str(info.value)
    assert "q1" in message and "q2" in message and "\n" not in message


def test_default_provider(tmp_path: Path) -> None:
    assert load(tmp_path, ALIASES).default_provider() is None
    assert load(tmp_path, ALIASES + "[defaults]\nprovider = 'edgeone'\n").default_provider() == (
        "edge"
    )
    assert load(tmp_path, ALIASES + "[defaults]\nprovider = 'q2'\n").default_provider() == "q2"
    assert load(tmp_path, "[providers.only]\ntype = 'demo'\n").default_provider() == "only"
    unconfigured = load(tmp_path, "[defaults]\nprovider = 'aws'\n")
    assert unconfigured.default_provider() == "aws"


# --- resolve ---


DEMO = """
[providers.d]
type = "demo"
endpoint = "http://127.0.0.1:9"
"""


def test_resolve_defaults_and_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = load(tmp_path, DEMO + 'region = "eu"\ntags = ["a", "b"]\nbatch_size = 5\nrate = 2\n')
    settings = config.resolve("d", DemoProvider)
    assert settings.alias == "d" and settings.type == "demo"
    assert settings.values == {
        "type": "demo",
        "endpoint": "http://127.0.0.1:9",
        "region": "eu",
        "tags": ["a", "b"],
        "batch_size": 5,
        "rate": 2.0,
        "timeout": 30.0,
    }
    assert isinstance(settings.values["rate"], float)
    assert settings.sources["endpoint"] == "file"
    assert settings.sources["timeout"] == "default"
    assert settings.sources["type"] == "file"
    assert "access_key" not in settings.values  # env default absent: left unset
    assert settings.secret_keys == frozenset({"access_key", "secret_key"})


def test_unconfigured_provider_resolves_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRICT_API_KEY", SECRET)
    config = load_config()
    settings = config.resolve(config.resolve_alias("strict"), StrictProvider)
    assert settings.values["api_key"] == SECRET
    assert settings.sources["api_key"] == "env STRICT_API_KEY (default)"
    assert settings.sources["type"] == "default"


def test_env_reference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = load(tmp_path, DEMO + 'secret_key = "env:MY_SECRET"\n')
    message = resolve_error(config, "d", DemoProvider, "providers.d.secret_key")
    assert "MY_SECRET" in message and "export MY_SECRET" in message
    monkeypatch.setenv("MY_SECRET", "")
    message = resolve_error(config, "d", DemoProvider, "providers.d.secret_key")
    assert "MY_SECRET" in message and "empty" in message
    monkeypatch.setenv("MY_SECRET", SECRET)
    settings = config.resolve("d", DemoProvider)
    assert settings.values["secret_key"] == SECRET
    assert settings.sources["secret_key"] == "env:MY_SECRET"


def test_env_reference_resolved_lazily(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        DEMO + '[providers.other]\ntype = "strict"\napi_key = "env:MY_SECRET"\n',
    )
    config.resolve("d", DemoProvider)  # the other provider's missing variable does not matter
    resolve_error(config, "other", StrictProvider, "providers.other.api_key")


def test_env_reference_typed_and_malformed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = load(
        tmp_path,
        '[providers.s]\ntype = "strict"\napi_key = "k"\ncount = "env:MY_SECRET"\n',
    )
    monkeypatch.setenv("MY_SECRET", "7")
    assert config.resolve("s", StrictProvider).values["count"] == 7
    monkeypatch.setenv("MY_SECRET", "seven")
    resolve_error(config, "s", StrictProvider, "providers.s.count")
    bad = load(tmp_path, '[providers.s]\ntype = "strict"\napi_key = "env:NOT-A-VAR"\n')
    resolve_error(bad, "s", StrictProvider, "providers.s.api_key")


def test_credential_env_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = load(tmp_path, DEMO)
    monkeypatch.setenv("DEMO_AK", "ak-value")
    monkeypatch.setenv("DEMO_SK", "")  # empty counts as absent
    settings = config.resolve("d", DemoProvider)
    assert settings.values["access_key"] == "ak-value"
    assert settings.sources["access_key"] == "env DEMO_AK (default)"
    assert "secret_key" not in settings.values
    # a value in the file wins over the default variable
    config = load(tmp_path, DEMO + 'access_key = "literal"\n')
    assert config.resolve("d", DemoProvider).values["access_key"] == "literal"


def test_required_credential_missing_names_key_and_env(tmp_path: Path) -> None:
    config = load(tmp_path, '[providers.s]\ntype = "strict"\n')
    message = resolve_error(config, "s", StrictProvider, "providers.s.api_key")
    assert "STRICT_API_KEY" in message


def test_required_missing(tmp_path: Path) -> None:
    config = load(tmp_path, '[providers.d]\ntype = "demo"\n')
    message = resolve_error(config, "d", DemoProvider, "providers.d.endpoint")
    assert "required" in message and "endpoint =" in message


def test_unknown_key_suggestion(tmp_path: Path) -> None:
    config = load(tmp_path, DEMO + "batch_sise = 5\n")
    message = resolve_error(config, "d", DemoProvider, "providers.d.batch_sise")
    assert (
        message == f"{config.path}: providers.d.batch_sise: unknown key (did you mean batch_size?)"
    )
    config = load(tmp_path, DEMO + "zzzz = 5\n")
    message = resolve_error(config, "d", DemoProvider, "providers.d.zzzz")
    assert "endpoint" in message  # lists the known keys when nothing is close


@pytest.mark.parametrize(
    ("table", "meant"), [("default", "[defaults]"), ("route", "[[routes]]"), ("routes", None)]
)
def test_a_mistyped_top_level_table_is_named_as_such(
    tmp_path: Path, table: str, meant: str | None
) -> None:
    error = config_error(tmp_path, f'[{table}]\nprovider = "direct"\n')
    if meant is not None:
        assert f": {table}: unknown table (did you mean {meant}?)" in error.message
    else:  # [routes] for [[routes]]: a table where an array of tables goes
        assert ": routes:" in error.message and "did you mean" not in error.message


@pytest.mark.parametrize(
    ("line", "key", "needle"),
    [
        ("count = true", "count", "integer"),
        ("count = 1.5", "count", "whole number"),
        ('count = "3"', "count", "remove the quotes"),
        ("ratio = true", "ratio", "number"),
        ('ratio = "x"', "ratio", "number"),
        ('flag = "yes"', "flag", "true or false"),
        ("flag = 1", "flag", "true or false"),
        ("api_key = 5", "api_key", "string"),
        ('ids = "1,2"', "ids", "list"),
        ('ids = [1, "2"]', "ids[1]", "integer"),
        ("ids = [1, true]", "ids[1]", "integer"),
        ("batch_size = 0", "batch_size", "greater than 0"),
        ("rate = -1", "rate", "greater than 0"),
        ("concurrency = 2.0", "concurrency", "whole number"),
        ('timeout = "30"', "timeout", "remove the quotes"),
        ('ca_bundle = "missing.pem"', "ca_bundle", "not found"),
    ],
)
def test_wrong_types(tmp_path: Path, line: str, key: str, needle: str) -> None:
    api_key = "" if line.startswith("api_key") else 'api_key = "k"'
    config = load(tmp_path, f'[providers.s]\ntype = "strict"\n{api_key}\n{line}\n')
    message = resolve_error(config, "s", StrictProvider, f"providers.s.{key}")
    assert needle in message


def test_int_accepted_for_float_and_lists(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        '[providers.s]\ntype = "strict"\napi_key = "k"\nratio = 2\nflag = false\nids = [1, 2]\n',
    )
    values = config.resolve("s", StrictProvider).values
    assert values["ratio"] == 2.0 and isinstance(values["ratio"], float)
    assert values["flag"] is False
    assert values["ids"] == [1, 2]


def test_ca_bundle_relative_to_file(tmp_path: Path) -> None:
    import certifi

    shutil.copy(certifi.where(), tmp_path / "ca.pem")
    config = load(tmp_path, DEMO + 'ca_bundle = "ca.pem"\n')
    assert config.resolve("d", DemoProvider).values["ca_bundle"] == str(tmp_path / "ca.pem")


def test_a_ca_bundle_that_holds_no_certificate_is_a_config_error(tmp_path: Path) -> None:
    """Found, but no CA: every request failed, said as the rate-limit store's error."""
    (tmp_path / "ca.pem").write_text('[providers.d]\napi_key = "k"\n')
    config = load(tmp_path, DEMO + 'ca_bundle = "ca.pem"\n')
    message = resolve_error(config, "d", DemoProvider, "providers.d.ca_bundle")
    assert "is not a CA bundle that can be read" in message


def test_choices(tmp_path: Path) -> None:
    config = load(tmp_path, DEMO + 'region = "mars"\n')
    message = resolve_error(config, "d", DemoProvider, "providers.d.region")
    assert "'mars'" in message and '"eu", "us"' in message
    config = load(tmp_path, DEMO + 'tags = ["a", 2]\n')
    resolve_error(config, "d", DemoProvider, "providers.d.tags[1]")


def test_display_redacts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMO_SK", SECRET)
    config = load(tmp_path, DEMO + f'access_key = "{SECRET}x"\n')
    settings = config.resolve("d", DemoProvider)
    rows = {key: (shown, source) for key, shown, source in settings.display()}
    assert rows["access_key"] == ("********", "file")
    assert rows["secret_key"] == ("********", "env DEMO_SK (default)")
    assert rows["endpoint"] == ("http://127.0.0.1:9", "file")
    assert SECRET not in repr(rows) and SECRET not in repr(settings)
    assert SECRET not in repr(config)


# --- permissions ---


SECRETS_BY_TYPE = {"demo": ["access_key", "secret_key"]}


@posix_only
def test_permission_warning(tmp_path: Path) -> None:
    path = write(tmp_path, DEMO + 'secret_key = "literal-secret"\n')
    path.chmod(0o644)
    warning = permission_warning(load_config(str(path)), SECRETS_BY_TYPE)
    assert warning is not None
    assert "\n" not in warning
    assert f"chmod 600 {path}" in warning
    assert "providers.d.secret_key" in warning
    assert "literal-secret" not in warning
    path.chmod(0o600)
    assert permission_warning(load_config(str(path)), SECRETS_BY_TYPE) is None


@posix_only
def test_permission_warning_env_refs_only(tmp_path: Path) -> None:
    path = write(tmp_path, DEMO + 'secret_key = "env:MY_SECRET"\naccess_key = "env:X"\n')
    path.chmod(0o644)
    assert permission_warning(load_config(str(path)), SECRETS_BY_TYPE) is None


@posix_only
@pytest.mark.parametrize("mode", [0o666, 0o620, 0o602])
def test_a_config_others_can_change_is_warned_of_with_env_refs_only(
    tmp_path: Path, mode: int
) -> None:
    # No literal secret to read, but whoever can write the file can set an endpoint of their
    # own, which is then sent the keys from the environment.
    path = write(tmp_path, DEMO + 'secret_key = "env:MY_SECRET"\naccess_key = "env:X"\n')
    path.chmod(mode)
    warning = permission_warning(load_config(str(path)), SECRETS_BY_TYPE)
    assert warning is not None and "changed by other users" in warning
    assert f"chmod 600 {path}" in warning and "\n" not in warning


@posix_only
def test_permission_warning_unknown_type_uses_key_names(tmp_path: Path) -> None:
    path = write(tmp_path, '[providers.x]\ntype = "mystery"\napi_token = "t"\n')
    path.chmod(0o640)
    assert permission_warning(load_config(str(path)), {}) is not None
    assert permission_warning(load_config(), SECRETS_BY_TYPE) is None  # no file


# --- writing ---


def test_write_config_text(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / "config.toml"
    text = '[defaults]\nprovider = "d"\n\n[providers.d]\ntype = "demo"\nrate = 1.5\n'
    write_config_text(path, text)
    assert path.read_text() == text
    assert load_config(str(path)).providers["d"]["rate"] == 1.5
    if os.name == "posix":
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert stat.S_IMODE(path.parent.parent.stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == ["config.toml"]  # no temp file left

    with pytest.raises(ConfigError) as info:
        write_config_text(path, "[defaults]\n")
    assert "--force" in assert_one_line(info.value, path)
    assert path.read_text() == text  # untouched

    write_config_text(path, "[defaults]\nretries = 2\n", overwrite=True)
    assert tomllib.loads(path.read_text()) == {"defaults": {"retries": 2}}
    if os.name == "posix":
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_write_config_text_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[defaults]\nretries = 3\n")
    created: list[tuple[str, int]] = []
    real_open = os.open

    def spy_open(name: Any, flags: int, mode: int = 0o777, **kw: Any) -> int:
        created.append((str(name), mode))
        return real_open(name, flags, mode, **kw)

    def failing_replace(src: Any, dst: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "open", spy_open)
    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(ConfigError) as info:
        write_config_text(path, "[defaults]\nretries = 9\n", overwrite=True)
    assert_one_line(info.value, path)
    assert path.read_text() == "[defaults]\nretries = 3\n"  # old file intact
    assert [p.name for p in tmp_path.iterdir()] == ["config.toml"]  # temp file removed
    ((tmp_name, mode),) = created
    assert Path(tmp_name).parent == tmp_path and mode == 0o600


# --- config init ---


def test_provider_table() -> None:
    table = provider_table(DemoProvider, {"region": "eu", "endpoint": "http://e", "batch_size": 5})
    # optional secrets are not written: they fall back to their environment variables
    assert list(table) == ["type", "endpoint", "region", "batch_size"]
    assert table == {
        "type": "demo",
        "endpoint": "http://e",
        "region": "eu",
        "batch_size": 5,
    }
    table = provider_table(DemoProvider, {"endpoint": "http://e", "access_key": "AK"})
    assert table["access_key"] == "AK" and "secret_key" not in table
    with pytest.raises(ValueError):
        provider_table(DemoProvider, {"nope": 1})


def test_provider_table_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from prewarm_cli.config_file import ConfigDocument

    path = tmp_path / "config.toml"
    table = provider_table(DemoProvider, {"endpoint": "http://e", "tags": ("x",)})
    document = ConfigDocument.new()
    document.set_provider("demo", table)
    write_config_text(path, document.text())
    monkeypatch.setenv("DEMO_AK", "a")
    monkeypatch.setenv("DEMO_SK", "b")
    settings = load_config(str(path)).resolve("demo", DemoProvider)
    assert settings.values["tags"] == ["x"]
    assert settings.sources["secret_key"] == "env DEMO_SK (default)"


# --- config show ---


def test_show_rows_never_reveal_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMO_SK", SECRET)
    config = load(
        tmp_path,
        f"""
        [defaults]
        provider = "d"
        output = "json"

        [providers.d]
        type = "demo"
        endpoint = "http://127.0.0.1:9"
        access_key = "{SECRET}-literal"
        tags = ["t1"]

        [providers.e]
        type = "demo"
        endpoint = "http://127.0.0.1:8"
        access_key = "env:MY_SECRET"

        [providers.m]
        type = "mystery"
        password = "{SECRET}-mystery"
        api_key = "env:MYSTERY_KEY"
        region = "north"

        [[routes]]
        hosts = ["*.example.com"]
        providers = ["d", "m"]
        """,
    )
    rows = show_rows(config, {"demo": DemoProvider})
    assert SECRET not in repr(rows)
    by_key = {row["key"]: row for row in rows}
    assert by_key["defaults.provider"] == {
        "key": "defaults.provider",
        "value": "d",
        "source": "file",
    }
    assert by_key["defaults.retries"]["source"] == "default"
    assert by_key["providers.d.type"]["value"] == "demo"
    assert by_key["providers.d.access_key"] == {
        "key": "providers.d.access_key",
        "value": "********",
        "source": "file",
    }
    assert by_key["providers.d.secret_key"]["value"] == "********"
    assert by_key["providers.d.secret_key"]["source"] == "env DEMO_SK (default)"
    assert by_key["providers.d.tags"]["value"] == '["t1"]'
    assert by_key["providers.d.timeout"]["source"] == "default"
    # a missing env var does not raise in show
    assert by_key["providers.e.access_key"]["value"] == "(unset)"
    assert by_key["providers.e.access_key"]["source"] == "env:MY_SECRET (not set)"
    # unknown provider types: raw keys, secret-looking literals redacted
    assert by_key["providers.m.password"]["value"] == "********"
    assert by_key["providers.m.password"]["source"] == "file (unknown provider type)"
    assert by_key["providers.m.api_key"]["value"] == "env:MYSTERY_KEY"
    assert by_key["providers.m.region"]["value"] == "north"
    assert by_key["routes[0].hosts"]["value"] == '["*.example.com"]'
    assert by_key["routes[0].providers"]["value"] == '["d", "m"]'
    assert all(set(row) == {"key", "value", "source"} for row in rows)
    assert all(isinstance(v, str) for row in rows for v in row.values())


def test_show_rows_still_reports_bad_keys(tmp_path: Path) -> None:
    config = load(tmp_path, DEMO + "batch_sise = 1\n")
    with pytest.raises(ConfigError) as info:
        show_rows(config, {"demo": DemoProvider})
    assert_one_line(info.value, config.path, "providers.d.batch_sise")


# --- the example file ---


def test_example_config_loads_and_documents_every_key() -> None:
    example = REPO_ROOT / "config.example.toml"
    config = load_config(str(example))
    assert config.exists
    text = example.read_text(encoding="utf-8")
    for fld in (*DEFAULTS_FIELDS, *CORE_FIELDS):
        assert re.search(rf"^#?\s*{fld.name}\s*=", text, re.MULTILINE), fld.name
    assert re.search(r"^#\s*\[\[routes\]\]", text, re.MULTILINE)
    assert "env:" in text


def test_module_imports_only_light_modules() -> None:
    source = Path(cfg.__file__).read_text(encoding="utf-8")
    modules = [
        line.split()[1] for line in source.splitlines() if line.startswith(("import ", "from "))
    ]
    assert "tomlkit" not in modules and "platformdirs" not in modules
    ours = {m for m in modules if m.startswith("prewarm")}
    light = {"prewarm_cli", "prewarm_cli.errors", "prewarm_cli.paths", "prewarm_cli.plugin"}
    assert ours <= light | {"prewarm_cli.config_values"}
    values = Path(cfg.__file__).with_name("config_values.py").read_text(encoding="utf-8")
    assert {
        line.split()[1] for line in values.splitlines() if line.startswith("from prewarm")
    } <= light


def test_config_and_the_plugin_api_do_not_need_each_other() -> None:
    """Both find the state directory through prewarm_cli.paths, which needs neither."""
    import ast

    from prewarm_cli import plugin

    def imported(module: Any) -> set[str]:
        tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
        return {
            node.module
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module
        } | {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}

    assert "prewarm_cli.config" not in imported(plugin)
    assert imported(paths) & {"prewarm_cli.config", "prewarm_cli.plugin"} == set()
    assert plugin.state_dir() == state_dir()


def test_check_structure_finds_every_error_load_raises_the_first(tmp_path: Path) -> None:
    text = """
    stray = 1
    [defaults]
    retries = "x"
    [providers.d]
    type = "demo"
    [providers."bad alias"]
    type = "demo"
    [[routes]]
    hosts = ["a.example.com"]
    providers = ["nobody"]
    """
    path = write(tmp_path, text)
    config, errors = cfg.check_structure(str(path))
    keys = [str(e).split(": ")[1] for e in errors]
    assert keys == ["stray", "defaults.retries", 'providers."bad alias"', "routes[0].providers[0]"]
    assert config is not None and config.aliases() == ["d"]  # what is valid is kept
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert str(info.value) == str(errors[0])


def test_problems_lists_every_key_resolve_raises_the_first(tmp_path: Path) -> None:
    config = load(tmp_path, DEMO + 'batch_sise = 1\nregion = "mars"\nrate = 0\n')
    settings, errors = config.problems("d", DemoProvider)
    messages = [assert_one_line(e, config.path) for e in errors]
    assert [m.split(": ")[1] for m in messages] == [
        "providers.d.batch_sise",
        "providers.d.region",
        "providers.d.rate",
    ]
    assert settings.values["endpoint"] == "http://127.0.0.1:9"  # the valid keys are resolved
    with pytest.raises(ConfigError) as info:
        config.resolve("d", DemoProvider)
    assert str(info.value) == messages[0]
