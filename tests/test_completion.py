"""Shell completion as README documents it: click's `_PREWARM_COMPLETE` protocol, through the
lazy command map (commands, their options and choices, plugin options)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

BIN = Path(sys.executable).parent  # where the `prewarm` script is installed


def complete(cli_env: dict[str, str], shell: str, words: str, cword: str) -> list[str]:
    env = {**cli_env, "_PREWARM_COMPLETE": f"{shell}_complete", "COMP_WORDS": words}
    env["COMP_CWORD"] = cword
    r = subprocess.run(
        [str(BIN / "prewarm")], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    return r.stdout.splitlines()


def test_bash_completes_commands_options_and_choices(cli_env: dict[str, str]) -> None:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash is not installed")
    env = {**cli_env, "PATH": os.pathsep.join([str(BIN), cli_env.get("PATH", os.defpath)])}
    script = """
eval "$(_PREWARM_COMPLETE=bash_source prewarm)"
for line in "prewarm sta" "prewarm submit --dry" "prewarm jobs --state run" "prewarm submit --med"
do
  read -r -a COMP_WORDS <<< "$line"
  COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
  COMPREPLY=()
  _prewarm_completion prewarm
  echo "${COMPREPLY[*]}"
done
"""
    r = subprocess.run([bash, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    # --media-segments is EdgeOne's: a plugin option, completed like the command's own
    assert r.stdout.splitlines() == ["status", "--dry-run", "running", "--media-segments"]


def test_zsh_and_fish_get_their_scripts_and_completions(cli_env: dict[str, str]) -> None:
    for shell in ("zsh", "fish"):
        env = {**cli_env, "_PREWARM_COMPLETE": f"{shell}_source"}
        r = subprocess.run([str(BIN / "prewarm")], env=env, capture_output=True, text=True)
        assert r.returncode == 0 and r.stderr == "", r.stderr
        assert "_prewarm_completion" in r.stdout
    assert complete(cli_env, "zsh", "prewarm ver", "1") == [
        "plain",
        "verify",
        "Check the CDNs' cache headers: is each URL warm where you stand?",
    ]
    assert complete(cli_env, "fish", "prewarm con", "con") == [
        "plain,config\tCreate, show and check the configuration file."
    ]


def test_readme_documents_completion_for_each_shell() -> None:
    readme = (ROOT / "README.md").read_text()
    for shell in ("bash", "zsh", "fish"):
        assert re.search(rf"_PREWARM_COMPLETE={shell}_source prewarm", readme), shell
