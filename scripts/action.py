"""The GitHub Action's step: turn the action's inputs into one `prewarm submit` and report it.

Run by action.yml with the Python that has prewarm installed. GitHub gives a composite
action's inputs to this script as INPUT_* variables (action.yml maps them; a hyphenated
name is read as INPUT_FROM_DIR or INPUT_FROM-DIR). It writes the outputs to $GITHUB_OUTPUT,
a table to $GITHUB_STEP_SUMMARY, and exits with prewarm's own exit code, so that the step
fails exactly when prewarm does (docs/recipes.md lists what each code means).

Standard library only: it runs before anything else could be installed.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

EXIT_MEANINGS = {
    0: "every URL accepted (or warmed, with wait)",
    1: "the job failed as a whole, or an unexpected error",
    2: "usage error or invalid input: nothing was sent",
    3: "configuration or credentials",
    4: "not everything warmed: some URLs rejected or failed",
    5: "quota exhausted or rate limited: some URLs deferred, resume later",
    6: "the wait timed out",
    130: "interrupted",
}
MAX_LISTED_FAILURES = 20
# A site's own files, which a path list never is: `paths: public/index.html` lists the files
# to warm, where the input takes files that list them.
_SITE_FILES = frozenset(
    ".html .htm .js .mjs .cjs .css .svg .png .jpg .jpeg .gif .webp .avif .ico .woff .woff2"  # noqa: SIM905
    " .ttf .otf .map .wasm .pdf .mp4 .webm .mp3".split()
)
_SHORT_O = re.compile(r"-[qv]*o")  # -o table, -otable, -qo table: short options run together
# Headers whose values are secrets, masked in the whole log: masking every value would star
# each "1" or "en" the log holds.
_SECRET_NAMES = re.compile(
    r"(?i)auth|token|key|secret|cookie|session|signature|password|credential|bearer"
)
_ATTACHED_HEADER = re.compile(r"^(-H|--header=)(.+)$", re.DOTALL)  # -HName: v, --header=...
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110's token


def read_input(env: Mapping[str, str], name: str, *, strip: bool = True) -> str:
    """An action input as GitHub passes it: INPUT_<NAME>, '-' kept or made '_'."""
    upper = name.upper()
    for key in (f"INPUT_{upper.replace('-', '_')}", f"INPUT_{upper}"):
        if key in env:
            return env[key].strip() if strip else env[key]
    return ""


def read_list(env: Mapping[str, str], name: str) -> list[str]:
    """A multiline input: one value per line, blank lines and '#' comments dropped."""
    lines = (line.strip() for line in read_input(env, name).splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def read_bool(env: Mapping[str, str], name: str) -> bool:
    value = read_input(env, name).lower()
    if value in ("", "false", "no", "0", "off"):
        return False
    if value in ("true", "yes", "1", "on"):
        return True
    raise ValueError(f"input {name} must be true or false, not {value!r}")


def is_inline_toml(config: str) -> bool:
    """Whether the ``config`` input is TOML rather than a path: a file of that name is a path
    (``cfg/[prod].toml``); otherwise TOML has a ``key = value`` or a ``[table]`` line."""
    if "\n" in config:
        return True  # a path has no newline; a long TOML line must not reach the file system
    if os.path.isfile(config):
        return False
    return "=" in config or config.startswith("[")


def build_command(env: Mapping[str, str], workdir: Path) -> list[str]:
    """The prewarm arguments (after `prewarm`) for these inputs; files go in workdir."""
    args = ["submit", "-o", "json"]
    config = read_input(env, "config")
    if config:
        if is_inline_toml(config):
            # Inline TOML: written privately (it may hold literal keys; env:VAR is better).
            path = workdir / "config-input.toml"  # an error names it: the `config` input
            path.write_text(config + "\n", encoding="utf-8")
            path.chmod(0o600)
            config = str(path)
        args += ["--config", config]
    for name in re.split(r"[\s,]+", read_input(env, "provider")):
        if name:
            args += ["-p", name]
    if read_list(env, "urls"):
        # As given, blank lines and comments too (-i skips them): an invalid URL is named by
        # its line in the input.
        path = workdir / "urls-input.txt"
        path.write_text(read_input(env, "urls", strip=False) + "\n", encoding="utf-8")
        args += ["-i", str(path)]
    for sitemap in read_list(env, "sitemap"):
        args += ["--sitemap", sitemap]
    base_url = read_input(env, "base-url")
    if base_url:
        args += ["--base-url", base_url]
    for directory in read_list(env, "from-dir"):
        args += ["--from-dir", directory]
    for listing in read_list(env, "paths"):
        if Path(listing).suffix.lower() in _SITE_FILES:
            raise ValueError(
                f"input paths names {listing!r}, a file of the site: paths takes files that"
                " list relative paths, one per line (git diff --name-only > changed.txt);"
                " to warm a build directory's files use from-dir"
            )
        args += ["--paths", listing]
    for log in read_list(env, "sync-log"):
        args += ["--from-sync-log", log]
    strip_prefix = read_input(env, "strip-prefix")
    if strip_prefix:
        args += ["--strip-prefix", strip_prefix]
    verify = read_bool(env, "verify")
    if read_bool(env, "wait") or verify:  # --verify checks what the wait reports
        args.append("--wait")
    if verify:
        args.append("--verify")
    extra = shlex.split(read_input(env, "extra-args"))
    for arg in extra:
        if arg == "--":
            break
        if arg in ("--json", "--output") or arg.startswith("--output=") or _SHORT_O.match(arg):
            raise ValueError(
                f"input extra-args sets the output format ({arg}): the action reads"
                " prewarm's JSON for its outputs and summary; leave it out"
            )
    return args + extra


def _header_options(args: Sequence[str]) -> dict[int, tuple[str, str]]:
    """The -H options' headers: per argument that holds one, what comes before it in that
    argument (`-H`, `--header=`, or nothing after a separate -H) and its `Name: value`."""
    headers: dict[int, tuple[str, str]] = {}
    for i, arg in enumerate(args):
        if arg in ("-H", "--header"):
            if i + 1 < len(args):
                headers[i + 1] = ("", args[i + 1])
        elif i not in headers and (attached := _ATTACHED_HEADER.match(arg)):
            headers[i] = (attached[1], attached[2])
    return headers


def shown(args: Sequence[str]) -> list[str]:
    """The command as the log shows it: -H values (a token, a cookie) and the passwords and
    query strings of URLs (a signed URL's signature) starred."""
    headers = _header_options(args)
    out: list[str] = []
    for i, arg in enumerate(args):
        if i in headers:
            before, text = headers[i]
            name = _name_of(text)
            out.append(f"{before}{name}: ***" if name else f"{before}***")
        else:
            out.append(_URL_SECRETS.sub(_starred, arg))
    return out


_URL_SECRETS = re.compile(r"(?i)(https?://)(?:([^/?#\s]*)@)?([^?#\s]*)(\?[^#\s]*)?")


def _starred(found: re.Match[str]) -> str:
    userinfo = f"{found[2].partition(':')[0]}:***@" if found[2] else ""
    return f"{found[1]}{userinfo}{found[3]}{'?***' if found[4] else ''}"


def _header_values(args: Sequence[str]) -> list[str]:
    """The values of -H options whose names say they are secrets, to be masked."""
    values = []
    for _before, text in _header_options(args).values():
        name, value = _name_of(text), text.partition(":")[2].strip()
        if name is None and _SECRET_NAMES.search(text):
            values.append(text.strip())  # its colon left out: "Authorization Bearer ..."
        elif name is not None and value and _SECRET_NAMES.search(name):
            values.append(value)
    return values


def _name_of(text: str) -> str | None:
    """A -H header's name, where it is "Name: value"; None otherwise (a colon left out, so
    that what precedes a colon may be part of a token: "Authorization Bearer a:b")."""
    name, colon, _value = text.partition(":")
    return name.strip() if colon and _HEADER_NAME.match(name.strip()) else None


def outputs_of(
    result: Mapping[str, Any], exit_code: int, job: Mapping[str, Any] | None = None
) -> dict[str, str]:
    """The step outputs from prewarm's JSON (submit, or submit --wait with its status);
    ``job``: the journal's counts of the job an error names (`prewarm jobs`)."""
    if "error" in result or not result:
        # An error after the job was made (interrupted, a wait's time limit) names it: a
        # later step can resume it, and what the vendors took is in the journal.
        job_id = error_job_id(result)
        job = job or {}
        accepted = job.get("accepted", 0)
        failed = job.get("rejected", 0) + job.get("failed", 0)
        return {
            "job-id": str(job_id or ""),
            "accepted": str(accepted),
            "failed": str(failed),
            "state": "error",
        }
    if result.get("dry_run"):  # extra-args: --dry-run: a plan, no job
        return {"job-id": "", "accepted": "0", "failed": "0", "state": "dry_run"}
    status = result.get("status")
    if isinstance(status, Mapping):
        state, failed = status.get("state"), status.get("failed", 0)
    else:
        state = result.get("state")
        failed = len(result.get("failed", [])) + len(result.get("rejected", []))
    return {
        "job-id": str(result.get("job_id") or ""),
        "accepted": str(result.get("accepted", 0)),
        "failed": str(failed),
        "state": str(state or ""),
    }


def error_job_id(result: Mapping[str, Any]) -> str | None:
    error = result.get("error")
    job_id = error.get("job_id") if isinstance(error, Mapping) else None
    return str(job_id) if job_id else None


def journal_counts(prewarm: list[str], args: list[str], job_id: str) -> dict[str, Any] | None:
    """The job's row of `prewarm jobs` (the journal's counts; no vendor is asked)."""
    config = args[args.index("--config") :][:2] if "--config" in args else []
    proc = subprocess.run(
        [*prewarm, "jobs", "-o", "json", "--limit", "50", *config],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    try:
        rows = json.loads(proc.stdout)
    except ValueError:
        return None
    if not isinstance(rows, list):
        return None
    return next((r for r in rows if isinstance(r, dict) and r.get("job_id") == job_id), None)


def summary_markdown(result: Mapping[str, Any], outputs: Mapping[str, str], code: int) -> str:
    """The job summary: one table row, the URLs that did not make it, what the code means."""
    meaning = EXIT_MEANINGS.get(code, "unexpected exit code")
    lines = ["### prewarm", ""]
    error = result.get("error")
    plans = result.get("providers") if result.get("dry_run") else None
    if isinstance(error, Mapping):
        lines += [f"**{_cell(str(error.get('message', 'error')))}**", ""]
    elif isinstance(plans, Mapping):
        meaning = "dry run: the plan, nothing was sent" if code == 0 else meaning
        lines += [
            "| provider | URLs | requests | batches | est. seconds | would defer |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
            *(
                f"| {_cell(alias)} | {p.get('urls', '')} | {p.get('requests', '')} "
                f"| {p.get('batches', '')} | {p.get('estimated_seconds', '')} "
                f"| {p.get('would_defer', '')} |"
                for alias, p in plans.items()
            ),
            "",
        ]
    else:
        lines += [
            "| job | state | URLs | accepted | failed | deferred | unknown |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
            "| {} | {} | {} | {} | {} | {} | {} |".format(
                _cell(outputs["job-id"]),
                _cell(outputs["state"]),
                result.get("urls", ""),
                outputs["accepted"],
                outputs["failed"],
                result.get("deferred", 0),
                result.get("unknown", 0),
            ),
            "",
        ]
        failures = [*result.get("rejected", []), *result.get("failed", [])]
        if failures:
            lines += ["| URL | provider | reason |", "| --- | --- | --- |"]
            for item in failures[:MAX_LISTED_FAILURES]:
                lines.append(
                    f"| {_cell(item.get('url', ''))} | {_cell(item.get('provider', ''))} "
                    f"| {_cell(item.get('reason', ''))} |"
                )
            if len(failures) > MAX_LISTED_FAILURES:
                lines.append(f"\n... and {len(failures) - MAX_LISTED_FAILURES} more")
            lines.append("")
    lines.append(f"exit code {code}: {meaning}")
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _append(path: str | None, text: str) -> None:
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(text)


def _report(
    env: Mapping[str, str],
    result: Mapping[str, Any],
    code: int,
    job: Mapping[str, Any] | None = None,
) -> None:
    """The step's outputs and its summary."""
    outputs = outputs_of(result, code, job)
    written = {**outputs, "exit-code": str(code)}
    _append(env.get("GITHUB_OUTPUT"), "".join(f"{k}={v}\n" for k, v in written.items()))
    _append(env.get("GITHUB_STEP_SUMMARY"), summary_markdown(result, outputs, code))


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    prewarm = list(argv) if argv else [sys.executable, "-m", "prewarm_cli"]
    with tempfile.TemporaryDirectory(prefix="prewarm-action-", dir=env.get("RUNNER_TEMP")) as tmp:
        try:
            args = build_command(env, Path(tmp))
        except ValueError as exc:
            print(f"::error title=prewarm::{exc}", file=sys.stderr)
            _report(env, {"error": {"message": str(exc)}}, 2)
            return 2
        for value in _header_values(args):
            print(f"::add-mask::{value}")  # GitHub masks it in the rest of the log
        sys.stdout.flush()  # before prewarm's stderr can say it: stdout is a pipe, buffered
        print("prewarm " + shlex.join(shown(args)), file=sys.stderr)
        # stderr (progress, warnings, errors) goes straight to the log; stdout is the JSON.
        code, stdout = _run_forwarding_signals([*prewarm, *args])
        try:
            result = json.loads(stdout) if stdout.strip() else {}
        except json.JSONDecodeError:
            result = {}
        if not isinstance(result, dict):
            result = {}
        job_id = error_job_id(result)
        job = journal_counts(prewarm, args, job_id) if job_id else None  # its config is here
    _report(env, result, code, job)
    if stdout:
        print(stdout, end="")  # the JSON stays visible in the log
    return code


def _run_forwarding_signals(command: list[str]) -> tuple[int, str]:
    """Runs prewarm, handing it the SIGTERM or SIGINT this step gets (a job's time limit, a
    cancelled workflow): it stops as on Ctrl-C, records what it sent, and its JSON still
    becomes the step's outputs. The exit code and stdout."""
    import signal

    started: list[subprocess.Popen[str]] = []
    early: list[int] = []  # a signal that came before prewarm was started: sent once it is

    def forward(signum: int, _frame: object) -> None:
        if started:
            started[0].send_signal(signum)
        else:
            early.append(signum)

    stops = (signal.SIGTERM, signal.SIGINT)
    previous = {stop: signal.signal(stop, forward) for stop in stops}
    try:
        started.append(subprocess.Popen(command, stdout=subprocess.PIPE, text=True))
        proc = started[0]
        for signum in early:
            proc.send_signal(signum)
        stdout, _ = proc.communicate()
    finally:
        for stop, handler in previous.items():
            signal.signal(stop, handler)
    return proc.returncode, stdout


if __name__ == "__main__":
    sys.exit(main())
