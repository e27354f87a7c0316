"""docs/recipes.md works as written: each snippet runs in a shell against the fake provider.

The config maps the recipes' aliases (cloudfront, qiniu, edgeone) to the fake provider; the
deploy tools the recipes call (aws, npm, hugo) are small stubs on PATH that leave what the
real ones leave (files, or the lines `aws s3 sync` prints).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fakes.generic import FakeCdn

ROOT = Path(__file__).resolve().parent.parent
RECIPES_MD = ROOT / "docs" / "recipes.md"
ZEROS = "0" * 40

FAKE_CONFIG = """\
[providers.cloudfront]
type = "fake"
endpoint = "{endpoint}"
api_key = "env:FAKE_API_KEY"

[providers.qiniu]
type = "fake"
endpoint = "{endpoint}"
api_key = "env:FAKE_API_KEY"

[providers.edgeone]
type = "fake"
endpoint = "{endpoint}"
api_key = "env:FAKE_API_KEY"
"""

STUBS = {
    # What `aws s3 sync SRC s3://BUCKET/ --delete` prints when every file is new.
    "aws": """#!/bin/sh
src=${3%/}; dest=${4%/}
find "$src" -type f | LC_ALL=C sort | while read -r f; do
  printf 'upload: %s to %s/%s\\n' "$f" "$dest" "${f#"$src"/}"
done
printf 'delete: %s/old.html\\n' "$dest"
""",
    "npm": """#!/bin/sh
[ "$1 $2" = "run build" ] || exit 1
mkdir -p dist/assets
echo '<!doctype html>' > dist/index.html
echo 'x' > dist/assets/index-3f2a9c.js
echo 'x' > dist/assets/index-3f2a9c.js.map
echo 'x' > dist/assets/index-3f2a9c.js.gz
echo 'x' > dist/assets/index-77aa01.css
""",
    "hugo": """#!/bin/sh
for page in index.html posts/hello/index.html tags/go/index.html categories/dev/index.html; do
  mkdir -p "public/$(dirname "$page")" && echo '<html>' > "public/$page"
done
mkdir -p public/css && echo 'body{}' > public/css/main.css
""",
}


def recipes() -> dict[str, str]:
    """The snippets of docs/recipes.md by name (the `<!-- recipe: NAME -->` before a fence)."""
    text = RECIPES_MD.read_text(encoding="utf-8")
    found = re.findall(r"<!-- recipe: ([\w-]+) -->\n```\w+\n(.*?)```", text, re.DOTALL)
    return dict(found)


@dataclass
class Bed:
    """A working directory, the environment a user's shell would have, and the fake vendor."""

    work: Path
    env: dict[str, str]
    cdn: FakeCdn

    def run(
        self, script: str, shell: str = "bash", **extra: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [shell, "-c", script],
            cwd=self.work,
            env={**self.env, **extra},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


@pytest.fixture
def bed(tmp_path: Path, cli_env: dict[str, str], fake_cdn: FakeCdn) -> Bed:
    config = tmp_path / "config.toml"
    config.write_text(FAKE_CONFIG.format(endpoint=fake_cdn.url))
    config.chmod(0o600)
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    for name, body in STUBS.items():
        (stubs / name).write_text(body)
        (stubs / name).chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    venv_bin = str(Path(sys.executable).parent)  # where `prewarm` is installed
    env = {
        **cli_env,
        "PREWARM_CONFIG": str(config),
        "FAKE_API_KEY": fake_cdn.api_key,
        "PATH": os.pathsep.join([str(stubs), venv_bin, cli_env.get("PATH", os.defpath)]),
    }
    cli_env.update(env)
    return Bed(work, env, fake_cdn)


def test_every_recipe_is_tested() -> None:
    tested = {name.removeprefix("test_").replace("_", "-") for name in globals()}
    # A NAME-config snippet is the config its recipe's test runs with.
    assert {name.removesuffix("-config") for name in recipes()} <= tested


def test_s3_sync(bed: Bed) -> None:
    for rel in ("index.html", "docs/index.html", "assets/app.js"):
        (bed.work / "dist" / rel).parent.mkdir(parents=True, exist_ok=True)
        (bed.work / "dist" / rel).write_text("x")
    proc = bed.run(recipes()["s3-sync"])
    assert proc.returncode == 0, proc.stderr
    assert "upload: dist/assets/app.js to s3://www-example-com/assets/app.js" in proc.stdout
    assert bed.cdn.accepted_urls() == {
        "https://www.example.com/",
        "https://www.example.com/docs/",
        "https://www.example.com/assets/app.js",
    }


def test_vite_qiniu(bed: Bed) -> None:
    proc = bed.run(recipes()["vite-qiniu"])
    assert proc.returncode == 0, proc.stderr
    # .map and the precompressed sibling are left out; index.html is the directory URL.
    assert bed.cdn.accepted_urls() == {
        "https://static.example.com/",
        "https://static.example.com/assets/index-3f2a9c.js",
        "https://static.example.com/assets/index-77aa01.css",
    }


def test_hugo_edgeone(bed: Bed) -> None:
    proc = bed.run(recipes()["hugo-edgeone"])
    assert proc.returncode == 0, proc.stderr
    assert bed.cdn.accepted_urls() == {
        "https://blog.example.com/",
        "https://blog.example.com/css/main.css",
        "https://blog.example.com/posts/hello/",
    }


def git(cwd: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
        "GIT_CONFIG_GLOBAL": os.devnull,
    }
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture
def repo(bed: Bed) -> tuple[str, str]:
    """A site repository in bed.work: a first commit, then one changing two pages and a README.

    Returns (first, second) commit ids."""
    work = bed.work
    git(work, "init", "-q", "-b", "main")
    (work / "scripts").mkdir()
    (work / "scripts" / "changed-paths.sh").write_text(recipes()["changed-paths"])
    for rel in ("public/index.html", "public/about/index.html", "public/old.html"):
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_text("v1")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "first")
    first = git(work, "rev-parse", "HEAD")
    (work / "public" / "about" / "index.html").write_text("v2")
    (work / "public" / "café.html").write_text("new")
    (work / "public" / "old.html").unlink()
    (work / "README.md").write_text("readme")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "second")
    return first, git(work, "rev-parse", "HEAD")


def test_changed_paths(bed: Bed, repo: tuple[str, str], tmp_path: Path) -> None:
    first, second = repo
    script = "sh scripts/changed-paths.sh"
    diff = bed.run(f"{script} {first} {second} public/", shell="sh")
    assert diff.returncode == 0, diff.stderr
    # Deleted files are not listed; git quotes the non-ASCII name (and --paths unquotes it).
    assert diff.stdout.splitlines() == ["public/about/index.html", '"public/caf\\303\\251.html"']
    everything = ["public/about/index.html", '"public/caf\\303\\251.html"', "public/index.html"]
    first_push = bed.run(f"{script} {ZEROS} {second} public/", shell="sh")
    assert first_push.stdout.splitlines() == everything
    # A depth-1 clone does not have the previous commit: everything, not an error.
    shallow = tmp_path / "shallow"
    git(tmp_path, "clone", "-q", "--depth", "1", f"file://{bed.work}", str(shallow))
    proc = subprocess.run(
        ["sh", "-c", f"{script} {first} HEAD public/"],
        cwd=shallow,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == everything


def _workflow_step(steps: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(s for s in steps if s.get("name") == name)


def test_github_actions(bed: Bed, repo: tuple[str, str], tmp_path: Path) -> None:
    import test_action
    import yaml

    first, _ = repo
    workflow = yaml.safe_load(recipes()["github-actions"])
    steps = workflow["jobs"]["deploy"]["steps"]
    assert steps[0]["with"]["fetch-depth"] == 0
    listing = _workflow_step(steps, "List the changed files")
    github_output = tmp_path / "list_output"
    proc = bed.run(
        "set -e\n" + listing["run"],
        BEFORE=listing["env"]["BEFORE"].replace("${{ github.event.before }}", first),
        GITHUB_OUTPUT=str(github_output),
    )
    assert proc.returncode == 0, proc.stderr
    assert github_output.read_text() == "count=2\n"

    warm = _workflow_step(steps, "Warm the CDN")
    assert warm["if"] == "steps.changed.outputs.count != '0'"
    assert warm["uses"].startswith("prewarm/prewarm-cli@")
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    assert set(warm["with"]) <= set(action["inputs"])
    inputs = {
        k.replace("-", "_"): str(v).lower() if isinstance(v, bool) else str(v)
        for k, v in warm["with"].items()
    }
    # The inline config names the real vendor; the test's config sends to the fake one.
    assert 'type = "qiniu"' in inputs.pop("config")
    config = Path(bed.env["PREWARM_CONFIG"])
    proc, outputs, summary = test_action.run_action(
        bed.env, tmp_path, cwd=bed.work, config=str(config), **inputs
    )
    assert proc.returncode == 0, proc.stderr
    assert outputs["state"] == "succeeded" and outputs["accepted"] == "2"
    assert bed.cdn.accepted_urls() == {
        "https://www.example.com/about/",
        "https://www.example.com/caf%C3%A9.html",
    }
    assert "| succeeded | 2 | 2 | 0 |" in summary


def _gitlab_script(job: dict[str, Any]) -> str:
    lines = [line for line in job["script"] if not line.startswith("pip install")]
    return "set -e\n" + "\n".join(lines)


def test_gitlab_ci(bed: Bed, repo: tuple[str, str]) -> None:
    import yaml

    first, second = repo
    job = yaml.safe_load(recipes()["gitlab-ci"])["prewarm"]
    assert job["variables"]["GIT_DEPTH"] == 0
    proc = bed.run(_gitlab_script(job), CI_COMMIT_BEFORE_SHA=first, CI_COMMIT_SHA=second)
    assert proc.returncode == 0, proc.stderr
    assert bed.cdn.accepted_urls() == {
        "https://www.example.com/about/",
        "https://www.example.com/caf%C3%A9.html",
    }
    # A push that changed nothing under public/ passes without sending anything.
    (bed.work / "README.md").write_text("again")
    git(bed.work, "commit", "-q", "-am", "docs only")
    n_submits = len(bed.cdn.submits)
    third = git(bed.work, "rev-parse", "HEAD")
    proc = bed.run(_gitlab_script(job), CI_COMMIT_BEFORE_SHA=second, CI_COMMIT_SHA=third)
    assert proc.returncode == 0, proc.stderr
    assert "nothing under public/ changed" in proc.stdout
    assert len(bed.cdn.submits) == n_submits


@pytest.fixture
def sitemap_site(tmp_path: Path) -> Iterator[str]:
    """An HTTP server on 127.0.0.1 serving a sitemap; yields its URL."""
    root = tmp_path / "www"
    root.mkdir()
    locs = "".join(
        f"<url><loc>https://www.example.com/{p}</loc></url>" for p in ("", "a/", "b.html")
    )
    (root / "sitemap.xml").write_text(
        '<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        + locs
        + "</urlset>"
    )

    class Quiet(SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/sitemap.xml"
    finally:
        server.shutdown()
        server.server_close()


def test_cron(bed: Bed, sitemap_site: str) -> None:
    lines = [x for x in recipes()["cron"].splitlines() if x and not x.startswith("#")]
    *settings, line = lines
    crontab_env = dict(x.split("=", 1) for x in settings)
    assert set(crontab_env) == {"TENCENTCLOUD_SECRET_ID", "TENCENTCLOUD_SECRET_KEY"}
    fields = line.split(None, 5)
    assert len(fields) == 6 and fields[:5] == ["17", "3", "*", "*", "*"]
    home = Path(bed.env["HOME"])
    (home / ".local" / "bin").mkdir(parents=True)
    (home / ".local" / "bin" / "prewarm").symlink_to(Path(sys.executable).parent / "prewarm")
    # cron's environment: a short PATH, HOME, and what the crontab sets (the bed's own
    # secrets, in place of the example's).
    env = {k: v for k, v in bed.env.items() if k != "PATH"}

    def cron(sitemap: str) -> subprocess.CompletedProcess[str]:
        command = fields[5].replace("https://www.example.com/sitemap.xml", sitemap)
        return subprocess.run(
            ["sh", "-c", command],
            env={**env, "PATH": "/usr/bin:/bin"},
            cwd=home,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    proc = cron(sitemap_site)
    assert proc.returncode == 0, (home / "prewarm.log").read_text()
    assert proc.stdout == proc.stderr == ""  # cron mails nothing on success
    assert json.loads((home / "prewarm.log").read_text())["accepted"] == 3  # the log has it
    assert bed.cdn.accepted_urls() == {
        "https://www.example.com/",
        "https://www.example.com/a/",
        "https://www.example.com/b.html",
    }
    proc = cron(sitemap_site.replace("sitemap.xml", "gone.xml"))
    assert proc.returncode != 0
    assert proc.stdout == "" and "error" in proc.stderr  # what cron mails


def test_pipefail(bed: Bed) -> None:
    script = recipes()["pipefail"]
    (bed.work / "urls.txt").write_text("https://www.example.com/a.js\n")
    proc = bed.run(script)
    assert proc.returncode == 0, proc.stderr
    assert re.fullmatch(r"warmed: \S+\n", proc.stdout)
    # A failed submit stops the script: no job called "null", no status call.
    (bed.work / "urls.txt").write_text("ftp://www.example.com/a.js\n")
    proc = bed.run(script)
    assert proc.returncode != 0
    assert "warmed" not in proc.stdout and "null" not in proc.stdout + proc.stderr
    assert "scheme must be http or https" in proc.stderr
    # Without pipefail and -e the same pipeline would have gone on with "null".
    unsafe = bed.run("prewarm submit -p qiniu -i urls.txt -o json | jq -r .job_id")
    assert unsafe.returncode == 0 and unsafe.stdout == "null\n"


def test_exit_codes(bed: Bed) -> None:
    script = recipes()["exit-codes"]
    (bed.work / "urls.txt").write_text(
        "https://www.example.com/a.js\nhttps://www.example.com/reject-me.js\n"
    )
    proc = bed.run(script)
    assert proc.returncode == 0, proc.stderr
    assert "some URLs were not warmed" in proc.stderr
    (bed.work / "urls.txt").write_text("not a url\n")
    assert bed.run(script).returncode == 2


def test_s3_direct(bed: Bed, tmp_path: Path) -> None:
    """The sync log warmed through two CloudFront PoPs by `direct`: a real caching proxy
    (nginx, one cache per PoP address) and a DNS server answering the PoP names."""
    from cachebed import HOST, POPS, DnsServer, cache_bed

    edge_bed = cache_bed(tmp_path / "edge")
    edge = next(edge_bed)
    dns = DnsServer().start()
    try:
        dns.names["d111111abcdef8.iad89.cloudfront.net"] = [POPS[0]]
        dns.names["d111111abcdef8.nrt57.cloudfront.net"] = [POPS[1]]
        config = Path(bed.env["PREWARM_CONFIG"])
        # The recipe's table, with the test's DNS server as the resolver.
        config.write_text(recipes()["s3-direct-config"] + f'resolver = "{dns.address}"\n')
        (bed.work / "sync.log").write_text(
            "upload: dist/index.html to s3://www-example-com/index.html\n"
            "upload: dist/app.js to s3://www-example-com/app.js\n"
        )
        # The site's name and port are the test edge's.
        base = f"http://{HOST}:{edge.nginx.port}/"
        script = recipes()["s3-direct"].replace("https://www.example.com/", base)
        proc = bed.run(script)
        assert proc.returncode == 0, proc.stderr
        for path in ("/", "/app.js"):
            for pop in POPS:
                for encoding in ("gzip, deflate, br", "identity"):
                    assert edge.nginx.probe(pop, path, encoding)[1] == "HIT", (pop, path)
            assert edge.counts.count(path) == 4  # 2 PoPs x 2 variants, each filled once
    finally:
        dns.stop()
        edge_bed.close()
