"""Docs that must not go stale: the CLI reference, the JSON page, the README's commands."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT
from helpers import invoke


def test_cli_reference_is_current(cli_env) -> None:
    env = dict(cli_env)
    env.pop("PYTHONPATH", None)  # only the plugins a user has: no test plugins in the page
    r = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_cli_docs.py"), "--check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr


def test_json_page_documents_every_submit_and_status_key(fake_config) -> None:
    import json

    page = (ROOT / "docs" / "json-output.md").read_text()
    submit = json.loads(invoke("submit", "https://a.example.com/x").stdout)
    status = json.loads(invoke("status", submit["job_id"]).stdout)
    for key in [*submit, *status]:
        assert f"`{key}`" in page, key


def test_readme_has_the_setup_and_test_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    assert 'python3 -m venv .venv && .venv/bin/pip install -e ".[all,dev]"' in readme
    assert ".venv/bin/pytest" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    assert '.venv/bin/pip install -q -e ".[all,dev]"' in ci and ".venv/bin/pytest" in ci


def test_docs_links_resolve() -> None:
    import re

    for page in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        for target in re.findall(r"\]\(([^)#]+)\)", page.read_text()):
            if "://" in target:
                continue
            assert (page.parent / target).exists(), f"{page.name}: broken link {target}"


def test_example_config_documents_every_provider_key() -> None:
    from prewarm_cli import registry

    text = (ROOT / "config.example.toml").read_text()
    for name in ("aws", "direct", "edgeone", "qiniu"):
        for field in registry.load(name).config_schema:
            assert f"# {field.name} = " in text, f"{name}.{field.name}"


def test_man_page_has_every_command_of_the_cli_reference() -> None:
    import re

    reference = (ROOT / "docs" / "cli.md").read_text()
    man = (ROOT / "docs" / "prewarm.1").read_text()
    commands = re.findall(r"^## `prewarm (.+)`$", reference, re.MULTILINE)
    assert "submit" in commands and "config init" in commands
    assert re.findall(r'^\.SS "prewarm (.+)"$', man, re.MULTILINE) == commands
    assert man.startswith(".TH PREWARM 1 ")
    # groff reads its input as Latin-1 unless man's preprocessor runs: "café" as escapes.
    assert man.isascii() and "caf\\[u00E9]" in man


def test_messages_point_to_files_the_repository_has(write_config) -> None:
    """A wheel ships neither config.example.toml nor docs/: messages link to the repository."""
    import re

    from prewarm_cli import DOCS_URL

    write_config("[defaults\n")
    r = invoke("config", "check")
    sources = "".join(p.read_text() for p in (ROOT / "prewarm_cli").rglob("*.py"))
    link = "(?:" + re.escape(DOCS_URL) + "|{DOCS_URL})" + r"/([\w./-]+\w)"
    links = set(re.findall(link, r.stdout + r.stderr + sources))
    assert f"{DOCS_URL}/config.example.toml" in r.stdout + r.stderr, r.stderr
    assert {"config.example.toml", "docs/configuration.md", "docs/verify.md"} <= links, links
    for path in links:
        assert (ROOT / path).is_file(), path


def test_the_layout_example_of_the_configuration_page_passes_config_check(
    run_cli, write_config, cli_env
) -> None:
    # Copied as it is, with its variables set: a reader's first config must not be an error.
    page = (ROOT / "docs" / "configuration.md").read_text()
    layout = page.split("## Layout", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    write_config(layout)
    cli_env.update(
        QINIU_ACCESS_KEY="ak",
        QINIU_SECRET_KEY="sk",
        TENCENTCLOUD_SECRET_ID="AKIDexample",
        TENCENTCLOUD_SECRET_KEY="secret",
    )
    r = run_cli("config", "check")
    assert r.returncode == 0, r.stdout + r.stderr
