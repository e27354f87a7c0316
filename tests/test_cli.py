"""The command line as a user runs it: start-up, global options, config commands, exit codes."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from conftest import BROKEN_PLUGINS_DIR, PLUGINS_DIR
from fakes.generic import FakeCdn
from helpers import converse, invoke

from prewarm_cli import registry
from prewarm_cli.commands import COMMANDS
from prewarm_cli.errors import EXIT_PRIORITY, ExitCode, worst_exit

HEAVY = (
    "rich",
    "httpx",
    "pyrate_limiter",
    "stamina",
    "sqlite3",
    "qiniu",
    "tencentcloud",
    "boto3",
    # the command modules: --help lists them from the index without importing them
    *sorted({entry.target.partition(":")[0] for entry in COMMANDS.values()}),
    "prewarm_cli.commands._render",
    "prewarm_cli.commands._common",  # the root needs only commands._globals
)


SDKS = ("httpx", "rich", "sqlite3", "qiniu", "tencentcloud", "boto3", "dns")


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["-V"]])
def test_help_and_version_import_nothing_heavy(cli_env, args) -> None:
    probe = (
        "import sys\n"
        "from prewarm_cli.cli import main\n"
        f"sys.argv = ['prewarm', *{args!r}]\n"
        "try:\n"
        "    main()\n"
        "except SystemExit:\n"
        "    pass\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "plugins = [m for m in sys.modules\n"
        "           if m.startswith('prewarm_') and m.split('.')[0] != 'prewarm_cli']\n"
        "print('HEAVY', heavy, plugins, file=sys.stderr)\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", probe], env=cli_env, capture_output=True, text=True, timeout=30
    )
    assert r.returncode == 0, r.stderr
    assert "HEAVY [] []" in r.stderr
    if args == ["--help"]:
        assert "submit" in r.stdout and "Exit codes" in r.stdout
    else:
        assert r.stdout.startswith("prewarm, version ")


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_command_has_one_short_help(name: str) -> None:
    """The line `prewarm --help` lists is the command's own short help and first help line."""
    from prewarm_cli.cli import cli

    command = cli.get_command(click.Context(cli), name)
    assert command is not None and command.name == name
    line = COMMANDS[name].short_help
    assert command.short_help == line
    assert (command.help or "").splitlines()[0] == line
    listing = CliRunner().invoke(cli, ["--help"], terminal_width=200).output
    assert f"  {name} " in listing and line in " ".join(listing.split())


def test_submit_help_lists_plugin_options_without_importing_providers(cli_env) -> None:
    """Options are declared through `prewarm.submit_options`: help imports no provider or SDK."""
    env = dict(cli_env)
    env.pop("PYTHONPATH", None)  # only the built-in plugins
    probe = (
        "import sys\n"
        "from prewarm_cli.cli import main\n"
        "sys.argv = ['prewarm', 'submit', '--help']\n"
        "try:\n"
        "    main()\n"
        "except SystemExit:\n"
        "    pass\n"
        "plugins = sorted(m for m in sys.modules\n"
        "                 if m.startswith('prewarm_') and m.split('.')[0] != 'prewarm_cli'\n"
        "                 and m.split('.')[-1] != 'options' and '.' in m)\n"
        f"heavy = [m for m in {SDKS!r} if m in sys.modules]\n"
        "print('LOADED', plugins, heavy, file=sys.stderr)\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=30
    )
    assert r.returncode == 0, r.stderr
    assert "LOADED [] []" in r.stderr
    assert "[edgeone]" in r.stdout and "--mode" in r.stdout and "[direct]" in r.stdout


def test_declared_submit_options_are_the_provider_classes_own() -> None:
    from prewarm_cli import registry

    warnings: list[str] = []
    declared = registry.submit_options(warnings.append)
    assert warnings == []
    for name in ("aws", "direct", "edgeone", "qiniu"):
        assert name in registry._entry_points(registry.OPTIONS_GROUP), name
        assert declared[name] == tuple(registry.load(name).submit_options), name
    assert [o.name for o in declared["edgeone"]] == ["mode", "media-segments"]
    # a plugin that declares none is loaded to read its class (the test plugin)
    assert "fake-mode" in [o.name for o in declared["fake"]]


def test_global_options_before_and_after_the_subcommand(fake_config) -> None:
    before = invoke("-o", "json", "jobs")
    after = invoke("jobs", "-o", "json")
    short = invoke("jobs", "--json")
    assert before.returncode == after.returncode == short.returncode == 0
    assert json.loads(before.stdout) == json.loads(after.stdout) == json.loads(short.stdout) == []
    nd = invoke("--output", "ndjson", "providers")
    assert nd.returncode == 0
    lines = [json.loads(x) for x in nd.stdout.splitlines()]
    assert any(x["provider"] == "fake" and x["type"] == "fake" for x in lines)
    # --json is -o json: whichever is typed last wins.
    assert "capabilities" in invoke("--json", "providers", "-o", "table").stdout.splitlines()[1]
    assert json.loads(invoke("-o", "table", "providers", "--json").stdout)
    assert json.loads(invoke("providers", "-o", "ndjson", "--json").stdout)


def test_table_is_default_only_on_a_terminal_and_messages_go_to_stderr(fake_config) -> None:
    r = invoke("submit", "https://static.example.com/a.js")
    assert r.returncode == 0
    data = json.loads(r.stdout)  # piped: JSON by default
    assert data["accepted"] == 1
    assert "started" in r.stderr and "started" not in r.stdout
    table = invoke("jobs", "-o", "table")
    assert data["job_id"] in table.stdout and "accepted" in table.stdout
    quiet = invoke("submit", "-q", "https://static.example.com/b.js")
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_providers_but_no_default_is_one_clear_usage_error(write_config) -> None:
    # (With no provider configured at all, submit warms directly: tests/test_direct.py.)
    table = 'type = "fake"\nendpoint = "http://127.0.0.1:9"\n'
    write_config(f"[providers.one]\n{table}\n[providers.two]\n{table}")
    r = invoke("submit", "https://static.example.com/a.js")
    assert r.returncode == 2
    assert "no provider selected" in r.stderr and "--skip-invalid" not in r.stderr
    # The hint names the providers there are, and where a default goes (not config init).
    assert "pass -p NAME (one of one, two)" in r.stderr and "[defaults] provider" in r.stderr


def test_usage_errors_exit_2(fake_config, tmp_path: Path) -> None:
    r = invoke("submit", "--bogus")
    assert r.returncode == 2 and "No such option" in r.stderr
    r = invoke("submit", "-H", "no colon", "https://a.example.com/x")
    assert r.returncode == 2 and "'Name: value'" in r.stderr
    # A line break in a value would start a header of its own: refused, before any job.
    for bad in ("X-Warm: 1\nHost: evil.example", "X-Warm: 1\r\nX-Other: 2", "X-Warm: a\x00b"):
        for command in ("submit", "verify"):
            r = invoke(command, "-H", bad, "https://a.example.com/x")
            assert r.returncode == 2 and "control character" in r.stderr, (command, bad)
    r = invoke("submit", "-H", "X(Warm): 1", "https://a.example.com/x")
    assert r.returncode == 2 and "'Name: value'" in r.stderr  # not a header name
    assert json.loads(invoke("jobs", "-o", "json").stdout) == []
    r = invoke("submit", "--interval", "3", "https://a.example.com/x")
    assert r.returncode == 2 and "need --wait" in r.stderr
    r = invoke("submit")
    assert r.returncode == 2 and "no URLs" in r.stderr and "--from-dir" in r.stderr
    # Inputs that resolve to nothing: the hint is to look at what they resolve to.
    empty = tmp_path / "dist"
    empty.mkdir()
    r = invoke("submit", "--from-dir", str(empty), "--base-url", "https://a.example.com/")
    assert r.returncode == 2 and "no URLs to send" in r.stderr
    assert "`prewarm urls` with the same inputs" in r.stderr
    r = invoke("status", "nosuchjob")
    assert r.returncode == 2 and "no job 'nosuchjob'" in r.stderr
    # a capability the provider lacks: clear error, exit 2
    r = invoke("scale", "-p", "fake")
    assert r.returncode == 2 and "fake (fake) does not support scale" in r.stderr


def test_errors_in_json_mode_are_json_on_stdout_too(fake_config) -> None:
    r = invoke("status", "nosuchjob", "-o", "json")
    assert r.returncode == 2
    err = json.loads(r.stdout)["error"]
    assert err["code"] == "not_found" and "nosuchjob" in err["message"]
    assert "error: " in r.stderr


def test_extra_provider_options(fake_config, fake_cdn: FakeCdn) -> None:
    help_text = invoke("submit", "--help").stdout
    assert "--fake-mode" in help_text and "[fake]" in help_text
    r = invoke("submit", "--fake-mode", "thorough", "-H", "X-Warm: 1", "https://a.example.com/x")
    assert r.returncode == 0, r.stderr
    body = fake_cdn.submit_bodies[0]
    assert body["mode"] == "thorough" and body["headers"] == {"X-Warm": "1"}
    r = invoke("submit", "--fake-mode", "nope", "https://a.example.com/x")
    assert r.returncode == 2


def install_other_plugin(directory: Path) -> None:
    """Installs into ``directory`` (a sys.path entry) a provider type "other": the fake
    plugin's class under another name, without its extra submit options."""
    (directory / "prewarm_other").mkdir(parents=True)
    (directory / "prewarm_other" / "__init__.py").write_text(
        "from prewarm_fake import FakeProvider\n"
        "class OtherProvider(FakeProvider):\n"
        "    name = 'other'\n"
        "    submit_options = ()\n"
    )
    dist = directory / "prewarm_other-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: prewarm-other\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[prewarm.providers]\nother = prewarm_other:OtherProvider\n"
    )


_REGISTRY_NAMES = (
    "import sys; from prewarm_cli import registry; names = registry.names();"
    " registry.load('other' if 'other' in names else 'fake');"
    " print(' '.join(names)); print('importlib.metadata' in sys.modules)"
)


def test_installed_plugins_are_read_from_the_state_directory_until_one_is_installed(
    cli_env, tmp_path: Path
) -> None:
    plugins = tmp_path / "site"
    plugins.mkdir()
    cli_env["PYTHONPATH"] = f"{plugins}{os.pathsep}{cli_env['PYTHONPATH']}"
    state = Path(cli_env["PREWARM_STATE_DIR"])
    state.mkdir()

    def names() -> tuple[set[str], bool]:
        r = subprocess.run(
            [sys.executable, "-c", _REGISTRY_NAMES], env=cli_env, capture_output=True, text=True
        )
        assert r.returncode == 0, r.stderr
        listed, read_metadata = r.stdout.splitlines()
        return set(listed.split()), read_metadata == "True"

    assert names() == ({"direct", "fake", "aws", "edgeone", "qiniu"}, True)
    cache = state / registry.CACHE_FILENAME
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    # Nothing changed on sys.path: the next command does not read the metadata.
    assert names() == ({"direct", "fake", "aws", "edgeone", "qiniu"}, False)
    install_other_plugin(plugins)  # a distribution more: the metadata is read again
    assert names() == ({"direct", "fake", "aws", "edgeone", "qiniu", "other"}, True)
    (plugins / "notes.txt").write_text("not metadata")  # changes the directory, not a plugin
    assert names() == ({"direct", "fake", "aws", "edgeone", "qiniu", "other"}, False)
    # Its entry points rewritten in place (as a legacy `setup.py develop` does): read again.
    entry_points = plugins / "prewarm_other-1.0.dist-info" / "entry_points.txt"
    entry_points.write_text(entry_points.read_text() + "third = prewarm_other:OtherProvider\n")
    assert names() == ({"direct", "fake", "aws", "edgeone", "qiniu", "other", "third"}, True)
    assert names() == ({"direct", "fake", "aws", "edgeone", "qiniu", "other", "third"}, False)
    cache.write_text('{"format": 3, "path": ')  # damaged: read again and written whole
    assert names() == ({"direct", "fake", "aws", "edgeone", "qiniu", "other", "third"}, True)
    assert json.loads(cache.read_text())["groups"]["prewarm.providers"]["other"] == (
        "prewarm_other:OtherProvider"
    )


def test_a_zip_on_sys_path_is_known_by_its_file(tmp_path: Path) -> None:
    import zipfile

    archive = tmp_path / "plugins.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("a-1.0.dist-info/entry_points.txt", "[prewarm.providers]\n")
    before = registry._path_key((str(archive),))
    with zipfile.ZipFile(archive, "w") as z:  # rebuilt with another plugin
        z.writestr("a-1.0.dist-info/entry_points.txt", "[prewarm.providers]\nb = b:B\n")
    assert registry._path_key((str(archive),)) != before
    assert registry._path_key((str(tmp_path / "absent.zip"),)) == [
        [str(tmp_path / "absent.zip"), None]
    ]


def _with_the_other_plugin(cli_env: dict[str, str], tmp_path: Path, fake_cdn: FakeCdn) -> None:
    """A second plugin type without --fake-mode installed: the fake plugin under another
    name ("other"), its key that of the fake CDN."""
    other = tmp_path / "plugins2"
    install_other_plugin(other)
    cli_env["PYTHONPATH"] = f"{other}{os.pathsep}{cli_env['PYTHONPATH']}"
    cli_env["FAKE_API_KEY"] = fake_cdn.api_key


def test_extra_option_of_an_unselected_provider_is_a_usage_error(
    run_cli, write_config, cli_env, fake_cdn: FakeCdn, tmp_path: Path
) -> None:
    _with_the_other_plugin(cli_env, tmp_path, fake_cdn)
    write_config(f'[providers.o]\ntype = "other"\nendpoint = "{fake_cdn.url}"\n')
    r = run_cli("submit", "-p", "o", "--fake-mode", "fast", "https://a.example.com/x")
    assert r.returncode == 2
    assert "--fake-mode is an option of fake" in r.stderr
    assert "hint: pass -p fake to use it" in r.stderr
    providers = json.loads(run_cli("providers", "-o", "json").stdout)
    row = next(p for p in providers if p["type"] == "other")
    assert row["source"] == "prewarm-other" and row["version"] == "1.0"


def test_extra_option_of_a_configured_provider_the_default_does_not_have_is_an_error(
    run_cli, write_config, cli_env, fake_cdn: FakeCdn, tmp_path: Path
) -> None:
    # Without -p the URLs go to defaults.provider: an option only another configured alias
    # declares would be dropped without a word (it was accepted, as every alias counted).
    _with_the_other_plugin(cli_env, tmp_path, fake_cdn)
    write_config(
        '[defaults]\nprovider = "o"\n\n'
        f'[providers.o]\ntype = "other"\nendpoint = "{fake_cdn.url}"\n\n'
        f'[providers.f]\ntype = "fake"\nendpoint = "{fake_cdn.url}"\n'
    )
    r = run_cli("submit", "--fake-mode", "fast", "https://a.example.com/x")
    assert r.returncode == 2, r.stderr
    assert "--fake-mode is an option of fake, not of the selected provider o" in r.stderr
    assert "hint: pass -p f to use it" in r.stderr
    assert fake_cdn.submits == []  # nothing sent


def test_a_job_whose_alias_this_config_lacks_says_so(
    run_cli, write_config, cli_env, fake_cdn: FakeCdn
) -> None:
    # Sent with one config, asked about with another (CI, --config): the alias is named as
    # missing from this config, with the way to read the job, not as a plugin to install.
    cli_env["FAKE_API_KEY"] = fake_cdn.api_key
    write_config(f'[providers.q]\ntype = "fake"\nendpoint = "{fake_cdn.url}"\n')
    r = run_cli("submit", "-o", "json", "https://a.example.com/x")
    assert r.returncode == 0, r.stderr
    job = json.loads(r.stdout)["job_id"]
    path = write_config(f'[providers.other]\ntype = "fake"\nendpoint = "{fake_cdn.url}"\n')
    for command in ("status", "report"):
        r = run_cli(command, job)
        assert r.returncode == 3, r.stderr
        assert f"{path}: no provider 'q' here: no [providers.q] table" in r.stderr
        assert "install the plugin" not in r.stderr
        assert "--config FILE" in r.stderr


def test_what_was_not_accepted_is_counted_in_targets_with_several_providers(
    run_cli, write_config, cli_env, fake_cdn: FakeCdn
) -> None:
    # One URL refused by two providers is two targets, as the JSON counts: not "2 URLs".
    cli_env["FAKE_API_KEY"] = fake_cdn.api_key
    write_config(
        f'[providers.a]\ntype = "fake"\nendpoint = "{fake_cdn.url}"\n\n'
        f'[providers.b]\ntype = "fake"\nendpoint = "{fake_cdn.url}"\n'
    )
    both = ("-p", "a", "-p", "b")
    r = run_cli("submit", *both, "https://a.example.com/ok", "https://a.example.com/reject")
    assert r.returncode == 4, r.stderr
    assert "2 targets not accepted (2 rejected)" in r.stderr
    r = run_cli("submit", "-p", "a", "https://a.example.com/reject2")
    assert "1 URL not accepted (1 rejected)" in r.stderr


def test_broken_plugin_is_a_warning_not_a_crash(run_cli, cli_env, fake_config) -> None:
    cli_env["PYTHONPATH"] = f"{BROKEN_PLUGINS_DIR}{os.pathsep}{cli_env['PYTHONPATH']}"
    r = run_cli("providers", "-o", "json")
    assert r.returncode == 0
    assert "broken" in r.stderr and "simulated broken plugin" in r.stderr
    types = {p["type"] for p in json.loads(r.stdout)}
    assert "fake" in types and "broken" not in types
    r = run_cli("submit", "https://a.example.com/x")
    assert r.returncode == 0, r.stderr


def test_providers_lists_source_version_and_capabilities(fake_config) -> None:
    rows = json.loads(invoke("providers", "-o", "json").stdout)
    fake = next(p for p in rows if p["provider"] == "fake")
    assert fake["source"] == "prewarm-fake-plugin" and fake["version"] == "0.1.0"
    assert "submit" in fake["capabilities"] and "scale" not in fake["capabilities"]


# ---------------------------------------------------------------- config


def test_config_path_follows_the_search_order(cli_env, tmp_path: Path, monkeypatch) -> None:
    r = invoke("config", "path", "-o", "json")
    assert json.loads(r.stdout)["config"] == cli_env["PREWARM_CONFIG"]
    assert json.loads(r.stdout)["how"] == "$PREWARM_CONFIG"
    other = tmp_path / "other.toml"
    r = invoke("--config", str(other), "config", "path", "-o", "json")
    assert json.loads(r.stdout)["config"] == str(other)
    monkeypatch.delenv("PREWARM_CONFIG")
    r = invoke("config", "path", "-o", "table")
    assert r.stdout.strip() == str(Path(cli_env["XDG_CONFIG_HOME"]) / "prewarm" / "config.toml")


def test_config_init_with_flags_writes_0600_and_loads(cli_env) -> None:
    r = invoke(
        "config", "init", "--type", "fake", "--alias", "cdn1",
        "--set", "endpoint=https://cdn.example.com", "--set", "max_batch=20",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    path = Path(cli_env["PREWARM_CONFIG"])
    assert path.stat().st_mode & 0o777 == 0o600
    data = tomllib.loads(path.read_text())
    assert data["defaults"]["provider"] == "cdn1"
    assert data["providers"]["cdn1"] == {
        "type": "fake",
        "endpoint": "https://cdn.example.com",
        "max_batch": 20,
    }
    again = invoke(
        "config", "init", "--type", "fake", "--alias", "cdn1", "--set", "endpoint=https://x.example"
    )  # fmt: skip
    assert again.returncode == 3 and "--force" in again.stderr
    r = invoke("config", "init", "--type", "nosuch", "--set", "a=1")
    assert r.returncode == 2 and "--type: unknown provider type 'nosuch'" in r.stderr  # usage
    r = invoke("config", "init", "--type", "fak", "--set", "a=1")
    assert r.returncode == 2 and "did you mean 'fake'?" in r.stderr


def test_config_init_interactive_prompts(cli_env) -> None:
    """Answers the prompts through a real pseudo-terminal, as a person would."""
    code, shown = converse(
        cli_env,
        ["config", "init"],
        [
            ("Provider type", "fake"),
            ("endpoint", "https://cdn.example.com"),
            ("max_batch", "25"),
            ("lookup", ""),
            ("cancel", ""),
        ],
    )
    assert code == 0, shown
    data = tomllib.loads(Path(cli_env["PREWARM_CONFIG"]).read_text())
    assert data["providers"]["fake"]["endpoint"] == "https://cdn.example.com"
    assert "api_key" not in data["providers"]["fake"]  # optional: read from FAKE_API_KEY
    assert data["providers"]["fake"]["max_batch"] == 25


def test_config_show_redacts_secrets_and_names_sources(write_config, monkeypatch) -> None:
    write_config(
        '[defaults]\nprovider = "lit"\n'
        '[providers.lit]\ntype = "fake"\nendpoint = "https://x.example"\n'
        'api_key = "s3cr3t-literal-value"\n'
        '[providers.env]\ntype = "fake"\nendpoint = "https://y.example"\n'
    )
    monkeypatch.setenv("FAKE_API_KEY", "s3cr3t-from-env")
    r = invoke("config", "show", "-o", "json")
    assert r.returncode == 0, r.stderr
    assert "s3cr3t" not in r.stdout and "s3cr3t" not in r.stderr
    rows = {row["key"]: row for row in json.loads(r.stdout)["settings"]}
    assert rows["providers.lit.api_key"]["source"] == "file"
    assert "(default)" in rows["providers.env.api_key"]["source"]
    assert rows["providers.env.endpoint"]["value"] == "https://y.example"
    table = invoke("config", "show", "-o", "table")
    assert "s3cr3t" not in table.stdout and "providers.lit.api_key" in table.stdout


def test_world_readable_config_with_secrets_warns(write_config, fake_cdn) -> None:
    path = write_config(
        f'[providers.fake]\ntype = "fake"\nendpoint = "{fake_cdn.url}"\napi_key = "test-key"\n'
    )
    path.chmod(0o644)
    r = invoke("jobs")
    assert r.returncode == 0
    assert "warning:" in r.stderr and "chmod 600" in r.stderr
    path.chmod(0o600)
    assert "warning" not in invoke("jobs").stderr


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[providers.fake]\ntype = "fake"\nendpoint = "x"\nbatch_sise = 3\n', "did you mean"),
        (
            '[providers.fake]\ntype = "fake"\nendpoint = "https://x"\nmax_batch = "ten"\n',
            "max_batch",
        ),
        (
            '[providers.fake]\ntype = "fake"\nendpoint = "https://x"\n'
            'api_key = "env:NOPE_NOT_SET"\n',
            "NOPE_NOT_SET",
        ),
        ("[providers.fake\n", "line 1"),
        ('[providers.fake]\ntype = "nosuch"\n', "providers.fake.type: unknown provider type"),
    ],
)
def test_config_errors_exit_3_with_file_and_key(write_config, text, expected) -> None:
    path = write_config(text)
    r = invoke("submit", "-p", "fake", "https://a.example.com/x")
    assert r.returncode == 3, r.stderr
    assert expected in r.stderr
    assert str(path) in r.stderr  # the file, with the key, for an unknown type too
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and expected in errors[0]  # one line says it all
    check = invoke("config", "check")
    assert check.returncode == 3


def test_config_check_ok_and_online(fake_config, fake_cdn: FakeCdn) -> None:
    r = invoke("config", "check", "-o", "table")
    assert r.returncode == 0 and "ok     fake (fake)" in r.stdout
    fake_cdn.daily_quota = 500
    r = invoke("config", "check", "--online", "-o", "json")
    data = json.loads(r.stdout)
    assert r.returncode == 0 and data["ok"] is True
    assert "500" in data["providers"][0]["notes"][0]


def test_missing_secret_only_matters_for_providers_in_use(
    write_config, fake_cdn: FakeCdn, monkeypatch
) -> None:
    monkeypatch.setenv("FAKE_API_KEY", fake_cdn.api_key)
    write_config(
        f'[providers.good]\ntype = "fake"\nendpoint = "{fake_cdn.url}"\n'
        '[providers.other]\ntype = "fake"\nendpoint = "https://x.example"\n'
        'api_key = "env:UNSET_SECRET_VAR"\n'
    )
    r = invoke("submit", "-p", "good", "https://a.example.com/x")
    assert r.returncode == 0, r.stderr
    r = invoke("submit", "-p", "other", "https://a.example.com/x")
    assert r.returncode == 3 and "UNSET_SECRET_VAR" in r.stderr


# ---------------------------------------------------------------- exit codes


def test_exit_code_priority() -> None:
    assert [int(c) for c in EXIT_PRIORITY] == [3, 2, 5, 6, 1, 4]
    assert worst_exit({ExitCode.INCOMPLETE, ExitCode.QUOTA}) == ExitCode.QUOTA
    assert worst_exit({ExitCode.FAILED, ExitCode.INCOMPLETE}) == ExitCode.FAILED
    assert worst_exit(set()) == ExitCode.OK


def test_every_url_rejected_is_exit_1(fake_config) -> None:
    r = invoke("submit", "https://a.example.com/reject-1", "https://a.example.com/reject-2")
    assert r.returncode == 1
    assert json.loads(r.stdout)["state"] == "failed"


def test_unexpected_errors_are_one_line_unless_debug(write_config, fake_cdn) -> None:
    # a provider bug: the plugin returns garbage; the user sees one line, --debug the traceback
    write_config(f'[providers.fake]\ntype = "fake"\nendpoint = "{fake_cdn.url}"\n')
    r = invoke("status", "fake:t-999", env_extra={"FAKE_API_KEY": "test-key"})
    assert r.returncode == 2 and "Traceback" not in r.stderr
    r = invoke("--debug", "status", "fake:t-999", env_extra={"FAKE_API_KEY": "test-key"})
    assert "Traceback" in r.stderr


def test_jobs_filters_and_limits(fake_config) -> None:
    for i in range(3):
        assert invoke("submit", f"https://a.example.com/{i}").returncode == 0
    jobs = json.loads(invoke("jobs", "--limit", "2", "-o", "json").stdout)
    assert len(jobs) == 2
    assert jobs[0]["created_at"] >= jobs[1]["created_at"]
    assert set(jobs[0]) >= {"job_id", "state", "created_at", "providers", "total", "accepted"}
    assert json.loads(invoke("jobs", "--state", "submitted", "-o", "json").stdout)
    assert json.loads(invoke("jobs", "--state", "running", "-o", "json").stdout) == []
    r = invoke("jobs", "--state", "nosuch")
    assert r.returncode == 2 and json.loads(r.stdout)["error"]["code"] == "usage"
    assert "'nosuch' is not one of" in r.stderr and "'incomplete'" in r.stderr


def test_empty_listings_say_so_instead_of_a_header_over_nothing(fake_config) -> None:
    r = invoke("jobs", "-o", "table")
    assert (r.returncode, r.stdout) == (0, "")
    assert "no jobs in the journal yet" in r.stderr and "prewarm submit" in r.stderr
    r = invoke("jobs", "--state", "failed", "-o", "table")
    assert (r.stdout, r.stderr.strip()) == ("", "no failed jobs in the journal")
    assert json.loads(invoke("jobs", "-o", "json").stdout) == []

    submitted = invoke("submit", "https://a.example.com/x.js", "-o", "json")
    job_id = json.loads(submitted.stdout)["job_id"]
    r = invoke("report", job_id, "-o", "table")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"job {job_id}: 0 failures"  # the title alone


def test_no_color_and_plain_stderr(fake_config) -> None:
    r = invoke("--no-color", "status", "nosuch")
    assert "\x1b[" not in r.stderr
    r = invoke("status", "nosuch", env_extra={"NO_COLOR": "1"})
    assert "\x1b[" not in r.stderr


def test_plugins_dir_is_on_the_path() -> None:
    assert str(PLUGINS_DIR) in sys.path


def test_every_state_has_one_exit_code() -> None:
    from prewarm_cli.errors import OUTCOME_EXIT, Outcome, exit_for
    from prewarm_cli.plugin import State
    from prewarm_cli.results import JobState

    assert set(OUTCOME_EXIT) == set(Outcome)
    assert (
        {str(s) for s in State}
        <= {str(o) for o in Outcome}
        <= {str(s) for s in JobState}
        | {
            "targets_failed",
            "targets_unknown",
            "targets_deferred",
            "nothing_accepted",
            "not_warm",
        }
    )
    # DESIGN.md §6: a finished job's state decides; a running job is 0
    expected = {"succeeded": 0, "partial": 4, "cancelled": 4, "timed_out": 4, "failed": 1}
    assert {s: int(exit_for([s])) for s in expected} == expected
    assert exit_for(["running"]) == exit_for(["pending"]) == ExitCode.OK
    assert exit_for(["targets_deferred", "targets_failed"]) == ExitCode.QUOTA


# ---------------------------------------------------------------- the JSON contract


def test_json_of_submit_status_report_jobs_and_plan_is_the_documented_one(
    fake_config, fake_cdn: FakeCdn
) -> None:
    """Key names and order of docs/json-output.md, produced through results.py."""
    r = invoke("submit", "https://a.example.com/ok", "https://a.example.com/reject-1")
    assert r.returncode == 4, r.stderr
    submit = json.loads(r.stdout)
    assert list(submit) == [
        "job_id", "state", "urls", "total", "accepted", "rejected", "failed", "deferred",
        "unknown", "skipped", "skipped_total", "tasks", "providers", "created_at",
    ]  # fmt: skip
    assert submit["state"] == "submitted" and submit["urls"] == submit["total"] == 2
    assert submit["accepted"] == 1 and submit["deferred"] == submit["unknown"] == 0
    assert submit["rejected"] == [
        {"url": "https://a.example.com/reject-1", "provider": "fake", "reason": ANY_TEXT}
    ]
    assert submit["failed"] == [] and submit["skipped"] == []
    assert [list(t) for t in submit["tasks"]] == [["provider", "task_id", "urls"]]
    assert submit["tasks"][0]["urls"] == 1
    assert submit["providers"] == {
        "fake": {"total": 2, "accepted": 1, "rejected": 1, "failed": 0, "deferred": 0, "unknown": 0}
    }

    status = json.loads(invoke("status", submit["job_id"]).stdout)
    assert list(status) == [
        "job_id", "state", "raw_state", "total", "succeeded", "failed", "in_progress",
        "pending", "not_sent", "providers",
    ]  # fmt: skip
    assert list(status["providers"]["fake"]) == [
        "provider", "state", "raw_state", "total", "succeeded", "failed", "in_progress",
        "pending", "not_sent", "tasks", "details",
    ]  # fmt: skip
    assert status["total"] == 2 and status["providers"]["fake"]["failed"] >= 1

    report = invoke("report", submit["job_id"])
    assert report.returncode == 4
    data = json.loads(report.stdout)
    assert list(data) == ["job_id", "state", "failures", "report_url", "report_urls"]
    assert data["failures"][0] == {
        "url": "https://a.example.com/reject-1",
        "provider": "fake",
        "pop": None,
        "reason": ANY_TEXT,
        "stage": "submit",
    }

    (row,) = json.loads(invoke("jobs").stdout)
    assert list(row) == [
        "job_id", "state", "created_at", "providers", "urls", "total", "accepted", "rejected",
        "deferred", "failed", "not_sent",
    ]  # fmt: skip
    assert row["providers"] == ["fake"] and (row["urls"], row["accepted"]) == (2, 1)

    plan = json.loads(invoke("submit", "--dry-run", "https://a.example.com/p").stdout)
    assert list(plan) == ["dry_run", "urls", "total", "skipped", "skipped_total", "providers"]
    assert plan["dry_run"] is True
    assert list(plan["providers"]["fake"]) == [
        "provider", "type", "urls", "batch_size", "batches", "requests", "invalidate",
        "estimated_seconds", "quota", "would_defer", "notes",
    ]  # fmt: skip
    lines = invoke("submit", "--dry-run", "-o", "ndjson", "https://a.example.com/p").stdout
    (line,) = [json.loads(text) for text in lines.splitlines()]
    assert line == {"record": "plan", **plan["providers"]["fake"]}


class _AnyText:
    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and bool(other)

    def __repr__(self) -> str:
        return "<any text>"


ANY_TEXT = _AnyText()


# ---------------------------------------------------------------- what a newcomer meets


def test_prewarm_alone_prints_the_help_and_succeeds() -> None:
    r = invoke()
    assert r.returncode == 0 and r.stderr == ""
    assert r.stdout.startswith("Usage: prewarm") and "Commands:" in r.stdout
    r = invoke("config")  # a group alone: its help, and success, as `prewarm` alone
    assert r.returncode == 0 and r.stderr == ""
    assert r.stdout.startswith("Usage: prewarm config") and "init" in r.stdout


def test_a_mistyped_command_gets_a_suggestion() -> None:
    r = invoke("sumbit", "https://a.example.com/x")
    assert r.returncode == 2
    assert "No such command 'sumbit'. Did you mean 'submit'?" in r.stderr
    # stdout is piped: JSON mode, where every error is also an object on stdout (DESIGN §5)
    error = json.loads(r.stdout)["error"]
    assert error["code"] == "usage" and "No such command 'sumbit'" in error["message"]
    r = invoke("-o", "table", "sumbit")
    assert r.returncode == 2 and r.stdout == ""  # not JSON mode: stderr alone
    r = invoke("config", "chek")
    assert r.returncode == 2 and "Did you mean 'check'?" in r.stderr
    r = invoke("zzz")
    assert r.returncode == 2 and "No such command 'zzz'." in r.stderr
    assert "Did you mean" not in r.stderr


def test_an_unknown_alias_is_a_usage_error_with_a_suggestion(fake_config) -> None:
    r = invoke("submit", "-p", "fak", "https://a.example.com/x")
    assert r.returncode == 2, r.stderr
    assert "error: no alias 'fak' (configured: fake); did you mean fake?" in r.stderr
    assert "install" not in r.stderr.split("hint:")[0]
    r = invoke("quota", "-p", "zzzz")
    assert r.returncode == 2 and "no alias 'zzzz' (configured: fake)" in r.stderr
    assert "did you mean" not in r.stderr
    # an installed type is still an implicit alias with default settings
    assert invoke("submit", "-p", "direct", "--dry-run", "https://a.example.com/x").returncode == 0


def test_unset_credentials_come_before_invalid_input(write_config) -> None:
    """DESIGN §6: where several apply, 3 (configuration) wins over 2 (input)."""
    write_config(
        '[providers.q]\ntype = "qiniu"\naccess_key = "env:UNSET_QK_FOR_TEST"\n'
        'secret_key = "env:UNSET_QS_FOR_TEST"\n'
    )
    r = invoke("submit", "not a url")
    assert r.returncode == 3 and "UNSET_QK_FOR_TEST is not set" in r.stderr
    r = invoke("submit", "-o", "json", "https://a.example.com/x")
    assert json.loads(r.stdout)["error"]["provider"] == "q"  # whose setting it is
    r = invoke("submit", "--dry-run", "not a url")  # a plan needs no secrets: the input's turn
    assert r.returncode == 2 and "1 invalid input line" in r.stderr


def test_quota_with_no_usable_provider_says_what_stops_it(write_config) -> None:
    write_config(
        '[providers.q]\ntype = "qiniu"\naccess_key = "env:UNSET_QK_FOR_TEST"\n'
        'secret_key = "env:UNSET_QS_FOR_TEST"\n'
    )
    r = invoke("quota")
    assert r.returncode == 3, r.stderr  # its credentials, not a usage error
    assert "UNSET_QK_FOR_TEST is not set" in r.stderr and "skipping" not in r.stderr
    write_config('[providers.edge]\ntype = "direct"\n')
    r = invoke("quota")
    assert r.returncode == 2
    assert "no configured provider reports a quota (configured: edge)" in r.stderr
    assert "prewarm providers" in r.stderr


def test_version_names_python_the_platform_and_each_plugin_with_its_sdk() -> None:
    import platform
    from importlib.metadata import version

    r = invoke("--version")
    assert r.returncode == 0 and r.stderr == ""
    lines = r.stdout.splitlines()
    assert lines[0].startswith("prewarm, version ")
    assert f"Python {platform.python_version()}" in lines[1] and platform.system() in lines[1]
    plugins = {line.split()[0]: line for line in lines[3:]}
    assert plugins["qiniu"].split(None, 1)[1] == f"built-in; qiniu {version('qiniu')}"
    assert plugins["direct"].split(None, 1)[1] == f"built-in; pycurl {version('pycurl')}"
    assert f"boto3 {version('boto3')}" in plugins["aws"]
    assert plugins["fake"].split(None, 1)[1] == "prewarm-fake-plugin 0.1.0"


def test_counts_name_their_noun_in_the_right_number(fake_config) -> None:
    r = invoke("submit", "https://a.example.com/one")
    assert r.returncode == 0 and "started (1 URL, fake)" in r.stderr
    r = invoke("submit", "--dry-run", "-o", "table", "https://a.example.com/x")
    assert "dry run: 1 URL, nothing sent" in r.stdout
    r = invoke(
        "submit", "--dry-run", "-o", "table", "https://a.example.com/x", "https://a.example.com/y"
    )
    assert "dry run: 2 URLs, nothing sent" in r.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("submit", "--wait", "--wait-timeout", "-1"),
        ("submit", "--wait", "--interval", "nan"),
        ("status", "--wait-timeout", "inf"),
        ("cancel", "JOB", "--wait-timeout", "0"),
        ("verify", "--timeout", "1e12"),
    ],
)
def test_seconds_are_above_0_and_at_most_a_year(run_cli, args: tuple[str, ...]) -> None:
    # A negative wait ended at once with exit 6; verify --timeout inf was an OverflowError.
    r = run_cli(*args, "https://cdn.example.com/a.js", "-o", "json")
    assert r.returncode == 2, r.stderr
    assert "is not a number of seconds" in r.stderr and "and at most a year" in r.stderr


def test_every_example_in_the_help_parses() -> None:
    """Each `prewarm ...` line at the end of a command's --help is a valid command line, and
    each command's --help ends with examples of that command (urls had none)."""
    import shlex

    from prewarm_cli.cli import cli

    ctx = click.Context(cli)
    n_examples = 0
    for name in cli.list_commands(ctx):
        command = cli.get_command(ctx, name)
        assert command is not None
        shown = set()
        for line in (command.epilog or "").replace("\\\n", " ").splitlines():
            words = shlex.split(line.split("#")[0])
            while words:  # each command of a pipeline
                part = words[: words.index("|")] if "|" in words else words
                words = words[len(part) + 1 :]
                if part[0] != "prewarm":
                    continue
                used = cli.get_command(ctx, part[1])
                assert used is not None, line
                used.make_context(part[1], part[2:])  # a usage error raises
                shown.add(part[1])
                n_examples += 1
        if not isinstance(command, click.Group):  # `config`: its subcommands have them
            assert command.epilog and name in shown, f"{name}: its --help shows no example"
    assert n_examples >= 20


@pytest.mark.parametrize("order", ["option first", "bad option first"])
def test_an_output_format_typed_after_a_bad_option_is_kept(cli_env, order: str) -> None:
    """Click stops reading at a bad option: an -o table typed after it was ignored, and the
    error went to stdout as JSON (stdout is not a terminal here)."""
    bad, fmt = ("--timeout", "-1"), ("-o", "table")
    args = (*fmt, *bad) if order == "option first" else (*bad, *fmt)
    r = invoke("verify", "http://a.example.com/x", *args)
    assert r.returncode == 2 and "is not a number of seconds" in r.stderr, r.stderr
    assert r.stdout == ""
    r = invoke("verify", "http://a.example.com/x", "--bogus", "--output=json")
    assert r.returncode == 2 and json.loads(r.stdout)["error"]["code"] == "usage"


def test_the_output_format_as_typed_is_read_as_click_would() -> None:
    from prewarm_cli.commands._globals import output_as_typed

    assert output_as_typed(["-o", "table", "-H", "-origin: x"]) == "table"  # a value, not -o
    assert output_as_typed(["-o", "json", "--json", "-o", "ndjson"]) == "ndjson"  # the last
    assert output_as_typed(["--output=ndjson"]) == "ndjson"
    assert output_as_typed(["-ojson"]) == "json"
    assert output_as_typed(["-o"]) is None
    assert output_as_typed(["--", "-o", "table"]) is None  # arguments, not options


@pytest.mark.parametrize("args", [("providers",), ("config", "show")])
def test_the_config_s_default_output_is_used_on_a_terminal(cli_env, write_config, args) -> None:
    """`defaults.output` names the format on a terminal without -o, for every command that
    reads the config (providers and config show printed tables)."""
    write_config('[defaults]\noutput = "json"\n\n[providers.d]\ntype = "direct"\n')
    code, shown = converse(cli_env, args, [])
    assert code == 0, shown
    text = shown.replace("\r\n", "\n").strip()
    assert text.startswith(("[", "{")), text
    json.loads(text)
