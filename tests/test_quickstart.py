"""The README's Quickstart works as written: its commands, parsed from README.md, run in a shell.

The first block (no account, no config) warms through the nginx test bed with `direct`; the
others run against the fake provider, standing in for a CDN's API. What a reader types in
place of the placeholders is all the test changes: the site's origin (the nginx bed, pinned
with --resolve), and `prewarm config init`, whose prompts tests/test_config.py covers (here the
config it would write is written directly).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cachebed import CacheBed, cache_bed
from fakes.generic import FakeCdn
from test_recipes import STUBS, git

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # where `prewarm` is installed


def quickstart_blocks() -> list[list[str]]:
    """The indented code blocks of README.md's Quickstart, as commands (a line ending in `|`
    continues on the next)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = re.search(r"^## Quickstart.*?\n(.*?)^## ", readme, re.DOTALL | re.MULTILINE)
    assert section, "README.md has no ## Quickstart section"
    blocks: list[list[str]] = []
    for block in re.findall(r"(?:^    .*\n)+", section.group(1), re.MULTILINE):
        commands: list[str] = []
        for line in block.splitlines():
            text = line[4:]
            if commands and commands[-1].rstrip().endswith("|"):
                commands[-1] += "\n" + text
            else:
                commands.append(text)
        blocks.append(commands)
    return blocks


@pytest.fixture
def bed(tmp_path: Path) -> Iterator[CacheBed]:
    yield from cache_bed(tmp_path / "nginx")


def run(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-o", "pipefail", "-ec", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def on_the_bed(command: str, bed: CacheBed, placeholder: str) -> str:
    """The command with the README's site origin replaced by the bed's, pinned to its PoPs."""
    origin = bed.nginx.url("").rstrip("/")
    assert placeholder in command, command
    command = re.sub(r"\s+#.*$", "", command)  # the README's comment, not to swallow the pins
    pins = " ".join(shlex.quote(a) for a in bed.nginx.resolve_args())
    return command.replace(placeholder, origin) + " " + pins


@pytest.fixture
def shell_env(cli_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    (stubs / "aws").write_text(STUBS["aws"])
    (stubs / "aws").chmod(0o755)
    env = {**cli_env, "PATH": os.pathsep.join([str(stubs), str(BIN), os.environ["PATH"]])}
    return env


def test_no_account_block_warms_and_verifies_through_the_edge(
    bed: CacheBed, shell_env: dict[str, str], tmp_path: Path
) -> None:
    (command,) = quickstart_blocks()[0]
    env = dict(shell_env)
    del env["PREWARM_CONFIG"]  # a fresh machine: no config anywhere
    r = run(on_the_bed(command, bed, "https://your.site"), tmp_path, env)
    assert r.returncode == 0, r.stderr
    assert "no provider configured: warming directly" in r.stderr
    result = json.loads(r.stdout)
    assert result["accepted"] == 1
    assert result["verify"]["summary"]["hit_ratio"] == 1
    assert bed.counts.count("/app.js") > 0


def test_provider_and_deploy_blocks_run_against_the_fake(
    bed: CacheBed, fake_config: Path, fake_cdn: FakeCdn, shell_env: dict[str, str], tmp_path: Path
) -> None:
    blocks = quickstart_blocks()
    assert len(blocks) == 3, blocks
    work = tmp_path / "work"
    work.mkdir()
    (work / "urls.txt").write_text(
        "https://static.example.com/app.js\nhttps://static.example.com/list.css\n"
    )
    # warm the page the verify line checks (the first block's command, on the bed)
    env = {**shell_env, "FAKE_API_KEY": fake_cdn.api_key}
    warm = run(
        f"prewarm submit -p direct {bed.nginx.url('/app.js')} "
        + " ".join(bed.nginx.resolve_args()),
        work,
        env,
    )
    assert warm.returncode == 0, warm.stderr

    for command in blocks[1]:
        if command.startswith("prewarm config init"):
            continue  # fake_config is what it would have written
        if command.startswith("prewarm verify"):
            command = on_the_bed(command, bed, "https://static.example.com")
        r = run(command, work, env)
        assert r.returncode == 0, (command, r.stdout, r.stderr)
    assert {
        "https://static.example.com/app.js",
        "https://static.example.com/app.css",
        "https://static.example.com/list.css",
    } <= fake_cdn.accepted_urls()

    # the deploy block: a build directory, a git history with public/, an upload log
    for rel in ("dist/index.html", "dist/assets/app.js", "public/index.html"):
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_text("v1")
    git(work, "init", "-q", "-b", "main")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "first")
    (work / "public" / "about.html").write_text("new")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "second")
    r = run("\n".join(blocks[2]), work, env)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "https://static.example.com/assets/app.js" in r.stdout  # what `prewarm urls` listed
    assert {
        "https://static.example.com/",
        "https://static.example.com/assets/app.js",
        "https://www.example.com/about.html",
        "https://www.example.com/assets/app.js",
    } <= fake_cdn.accepted_urls()
