"""The GitHub Action (action.yml + scripts/action.py), run as GitHub runs it: inputs as INPUT_*
variables, GITHUB_OUTPUT and GITHUB_STEP_SUMMARY files, against the fake provider."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from fakes.generic import FakeCdn

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "action.py"
ACTION_YML = ROOT / "action.yml"

INLINE_CONFIG = """\
[defaults]
provider = "fake"

[providers.fake]
type = "fake"
endpoint = "{endpoint}"
api_key = "env:FAKE_API_KEY"
"""


def run_action(
    cli_env: dict[str, str],
    tmp_path: Path,
    cwd: Path | None = None,
    stop: Callable[[subprocess.Popen[str]], None] | None = None,
    as_logged: bool = False,
    **inputs: str,
) -> tuple[subprocess.CompletedProcess[str], dict[str, str], str]:
    """Runs the step script; returns the process, the outputs it wrote, and the summary.

    Inputs are given as GitHub names them (``from_dir`` for ``from-dir``). ``as_logged``:
    stderr into stdout, in the order the step's log has them."""
    output, summary = tmp_path / "github_output", tmp_path / "step_summary"
    output.write_text("")
    summary.write_text("")
    runner_temp = tmp_path / "runner_temp"
    runner_temp.mkdir(exist_ok=True)
    env = {
        **cli_env,
        "GITHUB_OUTPUT": str(output),
        "GITHUB_STEP_SUMMARY": str(summary),
        "RUNNER_TEMP": str(runner_temp),
        **{f"INPUT_{name.upper()}": value for name, value in inputs.items()},
    }
    env.pop("PREWARM_CONFIG", None)  # the action's config input decides
    if as_logged:
        env.pop("PYTHONUNBUFFERED", None)  # as on a runner: stdout, a pipe, is buffered
    if stop is not None:  # a step stopped once ``stop`` says so (a job's time limit)
        # Through bash, as the runner runs the step (and signals bash alone), with the
        # step's own line from action.yml; its virtualenv's python is this one.
        (line,) = re.findall(
            r"^\s+run: '(.*scripts/action\.py\")'$", ACTION_YML.read_text(), re.MULTILINE
        )
        venv_bin = runner_temp / "prewarm-venv" / "bin"
        venv_bin.mkdir(parents=True)
        (venv_bin / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
        (venv_bin / "python").chmod(0o755)
        env["ACTION_PATH"] = str(ROOT)
        script = runner_temp / "prewarm-venv" / "step.sh"  # a file: `bash -c` would exec
        script.write_text(line + "\n")
        step = subprocess.Popen(
            ["bash", "--noprofile", "--norc", "-e", "-o", "pipefail", str(script)],
            env=env,
            cwd=cwd or tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            stop(step)
            out, err = step.communicate(timeout=120)
        finally:
            if step.poll() is None:
                step.kill()
        proc = subprocess.CompletedProcess(step.args, step.returncode, out, err)
        shutil.rmtree(runner_temp / "prewarm-venv")
    else:
        proc = subprocess.run(
            [sys.executable, str(SCRIPT)],
            env=env,
            cwd=cwd or tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if as_logged else subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
    written = dict(line.split("=", 1) for line in output.read_text().splitlines())
    assert list(runner_temp.iterdir()) == []  # the inline config and URL list are gone
    return proc, written, summary.read_text()


@pytest.fixture
def action_env(cli_env: dict[str, str], fake_cdn: FakeCdn) -> dict[str, str]:
    cli_env["FAKE_API_KEY"] = fake_cdn.api_key  # a secret given to the step through env
    return cli_env


def test_urls_with_inline_config(
    action_env: dict[str, str], fake_cdn: FakeCdn, tmp_path: Path
) -> None:
    proc, outputs, summary = run_action(
        action_env,
        tmp_path,
        urls="https://cdn.example.com/a.js\n\n# a comment\nhttps://cdn.example.com/b.css\n",
        config=INLINE_CONFIG.format(endpoint=fake_cdn.url),
        provider="fake",
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert outputs == {
        "job-id": result["job_id"],
        "accepted": "2",
        "failed": "0",
        "state": "submitted",
        "exit-code": "0",
    }
    assert fake_cdn.accepted_urls() == {
        "https://cdn.example.com/a.js",
        "https://cdn.example.com/b.css",
    }
    assert f"| {result['job_id']} | submitted | 2 | 2 | 0 | 0 | 0 |" in summary
    assert "exit code 0" in summary
    assert fake_cdn.api_key not in proc.stderr + proc.stdout + summary
    assert "prewarm submit -o json --config" in proc.stderr


def test_config_input_is_a_path_when_such_a_file_exists_else_inline_toml(
    action_env: dict[str, str], fake_cdn: FakeCdn, tmp_path: Path
) -> None:
    # A file whose name holds '[' is a path; TOML on one line with no '[' is inline.
    named = tmp_path / "cfg" / "[prod].toml"
    named.parent.mkdir()
    named.write_text(INLINE_CONFIG.format(endpoint=fake_cdn.url))
    one_line = (
        f'providers.fake = {{ type = "fake", endpoint = "{fake_cdn.url}",'
        ' api_key = "env:FAKE_API_KEY" }'
    )
    # TOML over several lines is inline however long a line is (never looked up as a path).
    long_lines = "# " + "x" * 300 + "\n" + INLINE_CONFIG.format(endpoint=fake_cdn.url)
    for config in ("cfg/[prod].toml", one_line, long_lines):
        proc, outputs, _ = run_action(
            action_env, tmp_path, urls="https://cdn.example.com/c.js", config=config
        )
        assert proc.returncode == 0, (config, proc.stderr)
        assert outputs["accepted"] == "1"


@pytest.mark.parametrize(("version", "exit_code"), [("Python 3.10.12", 1), ("Python 3.11.7", 0)])
def test_the_install_step_asks_for_setup_python_on_an_older_python(
    tmp_path: Path, version: str, exit_code: int
) -> None:
    import yaml

    install = yaml.safe_load((ROOT / "action.yml").read_text())["runs"]["steps"][0]["run"]
    check = install.split("python3 -m venv")[0]  # what runs before anything is installed
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # A python3 that runs the step's snippet itself, as this version would.
    numbers = tuple(int(part) for part in version.split()[1].split("."))
    fake = bin_dir / "python3"
    fake.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        f"if sys.argv[1] == '--version':\n    print({version!r})\n    sys.exit(0)\n"
        f"sys.version_info = {numbers!r}\n"
        "exec(sys.argv[2])\n"
    )
    fake.chmod(0o755)
    proc = subprocess.run(
        ["bash", "-c", check],
        env={"PATH": f"{bin_dir}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == exit_code, proc.stdout + proc.stderr
    if exit_code:
        assert f"this runner's python3 is {version}" in proc.stdout
        assert "actions/setup-python" in proc.stdout


def test_sigterm_to_the_step_stops_prewarm_as_ctrl_c_does(
    action_env: dict[str, str], fake_cdn: FakeCdn, tmp_path: Path
) -> None:
    # A job's time limit signals the step: prewarm gets it, stops, and its JSON is still the
    # step's outputs (the step died at once and left prewarm running, orphaned).
    hold = fake_cdn.hold_next("held.js")

    def time_limit(step: subprocess.Popen[str]) -> None:
        assert hold.holding.wait(60), "prewarm never sent its request"
        step.send_signal(signal.SIGTERM)  # to bash, as the runner does

    try:
        proc, outputs, _summary = run_action(
            action_env,
            tmp_path,
            stop=time_limit,
            urls="https://cdn.example.com/held.js",
            config=INLINE_CONFIG.format(endpoint=fake_cdn.url),
        )
    finally:
        fake_cdn.release_holds()  # only now: the request must not end the run first
    assert proc.returncode == 130, proc.stderr
    error = json.loads(proc.stdout)["error"]
    assert error["code"] == "interrupted" and error["job_id"]
    assert outputs["exit-code"] == "130" and outputs["job-id"] == error["job_id"]
    assert "--resume" in proc.stderr


def test_wait_with_a_failing_url_fails_the_step_with_4(
    action_env: dict[str, str], fake_cdn: FakeCdn, tmp_path: Path
) -> None:
    config = tmp_path / "prewarm.toml"
    config.write_text(INLINE_CONFIG.format(endpoint=fake_cdn.url))
    proc, outputs, summary = run_action(
        action_env,
        tmp_path,
        urls="https://cdn.example.com/ok.js\nhttps://cdn.example.com/fail.js",
        config=str(config),
        wait="true",
        extra_args="--interval 0.1 --wait-timeout 60",
    )
    assert proc.returncode == 4, proc.stderr
    assert outputs["state"] == "partial"
    assert outputs["accepted"] == "2" and outputs["failed"] == "1"
    assert outputs["exit-code"] == "4"
    assert "exit code 4: not everything warmed" in summary


def test_a_wait_that_times_out_still_says_what_the_vendors_took(
    action_env: dict[str, str], fake_cdn: FakeCdn, tmp_path: Path
) -> None:
    fake_cdn.task_seconds = 3600  # the job does not finish within the wait
    proc, outputs, _summary = run_action(
        action_env,
        tmp_path,
        urls="https://cdn.example.com/a.js\nhttps://cdn.example.com/reject-me.js",
        config=INLINE_CONFIG.format(endpoint=fake_cdn.url),
        wait="true",
        extra_args="--interval 0.1 --wait-timeout 0.5",
    )
    assert proc.returncode == 6, proc.stderr
    error = json.loads(proc.stdout)["error"]  # prewarm's JSON is the error alone
    # The journal's counts fill in what the error does not say (they said 0 and 0).
    assert outputs == {
        "job-id": error["job_id"],
        "accepted": "1",
        "failed": "1",
        "state": "error",
        "exit-code": "6",
    }


def test_rejected_urls_are_listed_in_the_summary(
    action_env: dict[str, str], fake_cdn: FakeCdn, tmp_path: Path
) -> None:
    proc, outputs, summary = run_action(
        action_env,
        tmp_path,
        urls="https://cdn.example.com/ok.js\nhttps://cdn.example.com/reject-me.js",
        config=INLINE_CONFIG.format(endpoint=fake_cdn.url),
    )
    assert proc.returncode == 4, proc.stderr
    assert outputs["failed"] == "1" and outputs["accepted"] == "1"
    assert "| https://cdn.example.com/reject-me.js | fake | blocked by vendor policy |" in summary


def test_an_error_is_the_steps_result_and_summary(
    action_env: dict[str, str], tmp_path: Path
) -> None:
    proc, outputs, summary = run_action(
        action_env,
        tmp_path,
        urls="ftp://cdn.example.com/a.js",
        config=INLINE_CONFIG.format(endpoint="http://127.0.0.1:9"),
    )
    assert proc.returncode == 2
    assert outputs == {
        "job-id": "",
        "accepted": "0",
        "failed": "0",
        "state": "error",
        "exit-code": "2",
    }
    assert "invalid input" in summary and "exit code 2: usage error or invalid input" in summary
    assert "scheme must be http or https" in proc.stderr
    # Named by its line in the input, blank lines and comments counted.
    proc, _, _ = run_action(
        action_env,
        tmp_path,
        urls="\n# warm these\nhttps://cdn.example.com/a.js\n\nhttps://cdn.example.com/a b.js\n",
        config=INLINE_CONFIG.format(endpoint="http://127.0.0.1:9"),
    )
    assert proc.returncode == 2
    assert "urls-input.txt:5: https://cdn.example.com/a b.js: contains whitespace" in proc.stderr


def test_a_bad_boolean_input_is_a_usage_error(action_env: dict[str, str], tmp_path: Path) -> None:
    proc, outputs, summary = run_action(
        action_env, tmp_path, urls="https://a.example/", wait="maybe"
    )
    assert proc.returncode == 2
    assert "input wait must be true or false" in proc.stderr
    assert outputs["state"] == "error" and outputs["exit-code"] == "2"
    assert "**input wait must be true or false, not 'maybe'**" in summary


def test_extra_args_that_set_the_output_format_are_a_usage_error(
    action_env: dict[str, str], fake_cdn: FakeCdn, tmp_path: Path
) -> None:
    """The outputs are read from prewarm's JSON: -o table made a run that succeeded say
    state=error with no job id."""
    for extra in ("-o table", "--output=ndjson", "-ondjson", "--json", "-qo table", "-vo ndjson"):
        proc, outputs, _summary = run_action(
            action_env,
            tmp_path,
            urls="https://cdn.example.com/a.js",
            config=INLINE_CONFIG.format(endpoint=fake_cdn.url),
            extra_args=extra,
        )
        assert proc.returncode == 2, proc.stderr
        assert "input extra-args sets the output format" in proc.stderr
        assert outputs["state"] == "error"
    assert fake_cdn.accepted_urls() == set()


def test_paths_naming_a_file_of_the_site_is_a_usage_error(
    action_env: dict[str, str], fake_cdn: FakeCdn, tmp_path: Path
) -> None:
    """`paths: public/index.html` read the page as a list of paths and warmed its lines."""
    (tmp_path / "public").mkdir()
    (tmp_path / "public" / "index.html").write_text("<!doctype html>\n<html><body>\n")
    proc, _outputs, _summary = run_action(
        action_env,
        tmp_path,
        paths="public/index.html",
        base_url="https://cdn.example.com/",
        config=INLINE_CONFIG.format(endpoint=fake_cdn.url),
    )
    assert proc.returncode == 2, proc.stderr
    assert "input paths names 'public/index.html', a file of the site" in proc.stderr
    assert fake_cdn.accepted_urls() == set()


def test_the_logged_command_hides_header_values_and_url_secrets(
    action_env: dict[str, str], fake_cdn: FakeCdn, tmp_path: Path
) -> None:
    """GitHub masks a secret's own value, not text made from it (a header line)."""
    proc, _outputs, _summary = run_action(
        action_env,
        tmp_path,
        urls="https://cdn.example.com/a.js",
        config=INLINE_CONFIG.format(endpoint=fake_cdn.url),
        extra_args=(
            "-H 'Authorization: Bearer TOPSECRET' --header=X-Key:k3y -H 'X-Debug: 1'"
            " https://bob:hun@ter2@cdn.example.com/b.js?sig=s1gn4ture"
        ),
    )
    (command,) = [line for line in proc.stderr.splitlines() if line.startswith("prewarm ")]
    assert "-H 'Authorization: ***' '--header=X-Key: ***'" in command
    assert "https://bob:***@cdn.example.com/b.js?***" in command
    for secret in ("TOPSECRET", "k3y", "hun@ter2", "ter2", "s1gn4ture"):
        assert secret not in command
    assert "TOPSECRET" not in proc.stderr and "ter2" not in proc.stderr
    assert "::add-mask::Bearer TOPSECRET\n" in proc.stdout and "::add-mask::k3y\n" in proc.stdout
    assert proc.stdout.count("::add-mask::") == 2  # not X-Debug's "1": every 1 would be starred


@pytest.mark.parametrize(
    ("bad_header", "masked"),
    [
        ("-H 'Authorization Bearer s3cr3t-value'", "Authorization Bearer s3cr3t-value"),
        # A token that holds a colon: nothing of it is a header's name.
        ("-H 'Authorization Basic alice:s3cr3t-value'", "Authorization Basic alice:s3cr3t-value"),
        ("'--header=Authorization Bearer s3cr3t-value'", "Authorization Bearer s3cr3t-value"),
        ("'-HAuthorization Bearer s3cr3t-value'", "Authorization Bearer s3cr3t-value"),
    ],
)
def test_header_secrets_are_masked_before_prewarm_runs_and_never_printed(
    action_env: dict[str, str], fake_cdn: FakeCdn, tmp_path: Path, bad_header: str, masked: str
) -> None:
    """The log as the runner writes it: stdout is a pipe, so the masks must leave before
    prewarm's stderr does; a header given without its colon, attached to its option or not,
    is masked whole, and prewarm's error names it by its first word."""
    proc, outputs, summary = run_action(
        action_env,
        tmp_path,
        as_logged=True,
        urls="https://cdn.example.com/a.js",
        config=INLINE_CONFIG.format(endpoint=fake_cdn.url),
        extra_args=f"-H 'X-Api-Key: k3y-value' {bad_header}",
    )
    assert proc.returncode == 2
    log = proc.stdout.splitlines()
    masks = [i for i, line in enumerate(log) if line.startswith("::add-mask::")]
    assert [log[i] for i in masks] == ["::add-mask::k3y-value", f"::add-mask::{masked}"]
    assert max(masks) < min(i for i, line in enumerate(log) if line.startswith("prewarm "))
    for i, line in enumerate(log):
        if i not in masks:
            assert "s3cr3t" not in line and "k3y" not in line and "alice" not in line, line
    assert "header 'Authorization …' is not 'Name: value'" in proc.stdout
    assert "s3cr3t" not in summary and "s3cr3t" not in outputs.get("result", "")


def test_a_dry_run_is_a_plan_in_the_outputs_and_summary(
    action_env: dict[str, str], fake_cdn: FakeCdn, tmp_path: Path
) -> None:
    proc, outputs, summary = run_action(
        action_env,
        tmp_path,
        urls="https://cdn.example.com/a.js\nhttps://cdn.example.com/b.css\n",
        config=INLINE_CONFIG.format(endpoint=fake_cdn.url),
        provider="fake",
        extra_args="--dry-run",
    )
    assert proc.returncode == 0, proc.stderr
    assert (outputs["state"], outputs["job-id"], outputs["accepted"]) == ("dry_run", "", "0")
    assert "| fake | 2 | 1 | 1 |" in summary
    assert "exit code 0: dry run: the plan, nothing was sent" in summary
    assert "every URL accepted" not in summary
    assert fake_cdn.accepted_urls() == set()


def test_action_yml_maps_every_input_to_the_script() -> None:
    import yaml

    action = yaml.safe_load((ROOT / "action.yml").read_text())
    assert action["runs"]["using"] == "composite"
    step = next(s for s in action["runs"]["steps"] if s.get("id") == "prewarm")
    script = SCRIPT.read_text()
    for name in action["inputs"]:
        if name == "version":
            continue  # used by the install step
        variable = "INPUT_" + name.upper().replace("-", "_")
        assert step["env"][variable] == "${{ inputs." + name + " }}"
        assert f'"{name}"' in script, f"scripts/action.py does not read {name}"
    for name, output in action["outputs"].items():
        assert output["value"] == "${{ steps.prewarm.outputs." + name + " }}"
    assert {"job-id", "accepted", "failed", "state"} <= set(action["outputs"])


def test_from_dir_with_base_url(
    action_env: dict[str, str], fake_cdn: FakeCdn, tmp_path: Path
) -> None:
    dist = tmp_path / "dist"
    (dist / "about").mkdir(parents=True)
    (dist / "about" / "index.html").write_text("x")
    (dist / "app.js").write_text("x")
    (dist / "app.js.map").write_text("x")
    proc, outputs, _ = run_action(
        action_env,
        tmp_path,
        from_dir="dist",
        base_url="https://www.example.com/",
        config=INLINE_CONFIG.format(endpoint=fake_cdn.url),
    )
    assert proc.returncode == 0, proc.stderr
    assert outputs["accepted"] == "2"
    assert fake_cdn.accepted_urls() == {
        "https://www.example.com/about/",
        "https://www.example.com/app.js",
    }


def test_verify_implies_wait(action_env: dict[str, str], fake_cdn: FakeCdn, tmp_path: Path) -> None:
    from fakes.cache_server import CacheServer

    with CacheServer() as edge:
        proc, outputs, summary = run_action(
            action_env,
            tmp_path,
            urls=f"{edge.url}/cloudfront/hit",
            config=INLINE_CONFIG.format(endpoint=fake_cdn.url),
            verify="true",
            extra_args="--interval 0.1",
        )
        assert edge.paths("/cloudfront/hit"), "the warmed URL was probed"
    assert proc.returncode == 0, proc.stderr
    assert "--wait --verify" in proc.stderr
    assert outputs["state"] == "succeeded"
    assert "| succeeded |" in summary
