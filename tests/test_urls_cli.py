"""`prewarm urls` and the deploy sources on submit and verify, run in-process through main():
stdout (data) and stderr (messages) apart, and every exit code."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from fakes.cache_server import CacheServer
from fakes.generic import FakeCdn
from helpers import invoke, peak_rss_kib

BASE = "https://cdn.example.com/"

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def prewarm(cli_env: dict[str, str]) -> Run:
    """Runs `prewarm ARGS` in this process: (exit code, stdout, stderr)."""

    def run(*args: str, stdin: str = "") -> tuple[int, str, str]:
        result = invoke(*args, input=stdin)
        return result.returncode, result.stdout, result.stderr

    return run


def site(root: Path, *files: str) -> str:
    for rel in files:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(rel)
    return str(root)


# --------------------------------------------------------------------------- urls


def test_urls_prints_one_per_line_even_when_piped(prewarm: Run, tmp_path: Path) -> None:
    dist = site(tmp_path / "dist", "index.html", "about/index.html", "app.js", "app.js.map")
    code, out, err = prewarm("urls", "--from-dir", dist, "--base-url", BASE)
    assert (code, err) == (0, "")
    assert out == f"{BASE}about/\n{BASE}app.js\n{BASE}\n"
    code, out, _err = prewarm("urls", "--from-dir", dist, "--base-url", BASE, "--index", "both")
    assert out.splitlines()[:2] == [f"{BASE}about/", f"{BASE}about/index.html"]
    # and its help says so (the other commands' -o: a table on a terminal, JSON otherwise).
    code, out, _err = prewarm("urls", "--help")
    assert "(default: one URL per line, piped or not)" in " ".join(out.split())


def test_urls_json_and_ndjson(prewarm: Run, tmp_path: Path) -> None:
    dist = site(tmp_path / "dist", "a.js", "b.css")
    listed = [f"{BASE}a.js", f"{BASE}b.css"]
    code, out, err = prewarm("urls", "-o", "json", "--from-dir", dist, "--base-url", BASE)
    assert (code, err) == (0, "") and json.loads(out) == listed
    code, out, err = prewarm("--json", "urls", "--from-dir", dist, "--base-url", BASE)
    assert (code, err) == (0, "") and json.loads(out) == listed
    code, out, err = prewarm("urls", "-o", "ndjson", "--from-dir", dist, "--base-url", BASE)
    assert (code, err) == (0, "") and [json.loads(line) for line in out.splitlines()] == listed


@pytest.mark.parametrize("fmt", ["table", "json", "ndjson"])
def test_urls_memory_stays_flat_in_the_number_of_urls(
    cli_env: dict[str, str], tmp_path: Path, fmt: str
) -> None:
    def peak(n_urls: int) -> int:
        listing = tmp_path / f"{n_urls}.txt"
        with listing.open("w") as fh:
            for i in [*range(n_urls), *range(1000)]:  # and repeats, dropped
                fh.write(f"https://static.example.com/assets/chunk-{i:07d}.js\n")
        return peak_rss_kib(cli_env, tmp_path, "urls", "-o", fmt, "-i", str(listing))

    # Both beyond what is kept in memory (inputs.distinct.IN_MEMORY, 20,000 URLs).
    small, large = peak(30_000), peak(200_000)
    # 170,000 more URLs held in a list and a set, or their output, would be 20 MiB and more.
    assert large - small < 8 * 1024, f"{small} KiB for 30,000 URLs, {large} KiB for 200,000"


def test_urls_combines_every_source_de_duplicated(prewarm: Run, tmp_path: Path) -> None:
    dist = site(tmp_path / "dist", "a.js", "b.js")
    listing = tmp_path / "urls.txt"
    listing.write_text(f"{BASE}b.js\nhttps://other.example/x\n")
    code, out, err = prewarm(
        "urls",
        f"{BASE}a.js",
        "-i",
        str(listing),
        "--from-dir",
        dist,
        "--paths",
        "-",
        "--base-url",
        BASE,
        stdin="c.js\na.js\n",
    )
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        f"{BASE}a.js",
        f"{BASE}b.js",
        "https://other.example/x",
        f"{BASE}c.js",
    ]


def test_a_path_given_as_a_url_says_where_paths_go(prewarm: Run) -> None:
    code, out, err = prewarm("urls", "-i", "-", stdin="public/index.html\nftp://a.example/b\n")
    assert (code, out) == (2, "")
    hint = "scheme must be http or https (a path? give paths with --paths and --base-url)"
    assert f"<stdin>:1: public/index.html: {hint}" in err
    assert "<stdin>:2: ftp://a.example/b: scheme must be http or https\n" in err


def test_urls_notes_go_to_stderr(prewarm: Run, tmp_path: Path) -> None:
    log = tmp_path / "sync.log"
    log.write_text(
        "upload: public/a.html to s3://b/site/a.html\n"
        "upload failed: public/b.html to s3://b/site/b.html Access Denied\n"
        "upload: x to s3://b/other/c.html\n"
        "something else\n"
    )
    code, out, err = prewarm(
        "urls", "--from-sync-log", str(log), "--base-url", BASE, "--strip-prefix", "site"
    )
    assert code == 0
    assert out == f"{BASE}a.html\n"
    assert "1 path not under --strip-prefix 'site/' skipped" in err
    assert f"1 failed upload in the sync log; skipped:\n  {log}:2: upload failed" in err
    assert f"1 sync-log line not understood; ignored:\n  {log}:4: something else" in err


def test_urls_that_resolve_to_nothing_are_an_empty_list(prewarm: Run, tmp_path: Path) -> None:
    log = tmp_path / "sync.log"
    log.write_text("delete: s3://b/old.html\n")
    code, out, err = prewarm("urls", "--from-sync-log", str(log), "--base-url", BASE)
    assert (code, out) == (0, "")
    assert "resolve to no URL" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--from-dir", "dist", "--base-url", "cdn.example.com"), "not an absolute http(s) URL"),
        (("--from-dir", "nope", "--base-url", BASE), "--from-dir nope: no such directory"),
        (("--from-dir", "dist"), "need --base-url"),
        (("--paths", "missing.txt", "--base-url", BASE), "path list not found: missing.txt"),
        (("--exclude", "*.js", "x"), "--exclude and --no-default-excludes apply to --from-dir"),
        ((), "no URLs given"),
        (("--bad-opt",), "No such option '--bad-opt'"),
        (("--from-dir", "dist", "--index", "none"), "Invalid value for '--index'"),
    ],
)
def test_urls_usage_and_input_errors_exit_2(
    prewarm: Run, tmp_path: Path, monkeypatch, args: tuple[str, ...], message: str
) -> None:
    site(tmp_path / "dist", "a.js")
    monkeypatch.chdir(tmp_path)
    code, out, err = prewarm("urls", *args)
    assert code == 2
    assert out == ""  # piped or not, an error of `urls` stays off stdout
    assert message in err


def test_urls_lists_invalid_lines_with_file_and_line(prewarm: Run, tmp_path: Path) -> None:
    listing = tmp_path / "changed.txt"
    listing.write_text("".join(f"../up{n}.html\n" for n in range(60)) + "ok.html\n")
    code, out, err = prewarm("urls", "--paths", str(listing), "--base-url", BASE)
    assert code == 2 and out == ""
    assert "60 invalid input lines; nothing was listed:" in err
    assert f"{listing}:1: ../up0.html: a path with '..' would leave the base URL" in err
    assert "... and 10 more" in err


def test_a_url_refused_for_its_credentials_is_said_without_them(
    prewarm: Run, fake_config, fake_cdn: FakeCdn
) -> None:
    """Said back in errors, the skipped list and a CI log: never the password or token."""
    code, out, err = prewarm("urls", "https://bob:hunter2@a.example/x", "https://tok3n@b.example/")
    assert code == 2
    assert "argument 1: https://bob:***@a.example/x: contains credentials" in err
    assert "argument 2: https://***@b.example/: contains credentials" in err
    code, out, err = prewarm("urls", "--paths", "-", "--base-url", "https://u:pw@cdn.test/")
    assert code == 2 and "--base-url 'https://u:***@cdn.test/'" in err
    code, out, err = prewarm(
        "submit", "--skip-invalid", f"{BASE}ok.js", "https://bob:hunter2@a.example/x"
    )
    assert code == 0, err
    assert json.loads(out)["skipped"][0]["input"] == "https://bob:***@a.example/x"
    assert "hunter2" not in out + err and "tok3n" not in out + err and "pw@" not in err
    # A password holding "@"; a sitemap's URL in the error of its fetch.
    code, out, err = prewarm("urls", "https://bob:p@ss@a.example/x")
    assert code == 2 and "https://bob:***@a.example/x" in err and "ss@" not in err
    code, out, err = prewarm("urls", "--sitemap", "https://u:s3@cret@127.0.0.1:9/s.xml")
    assert code == 2 and "https://u:***@127.0.0.1:9/s.xml" in err and "cret" not in err


# --------------------------------------------------------------------------- submit, verify


def test_submit_from_a_sync_log(prewarm: Run, fake_config, fake_cdn: FakeCdn, tmp_path) -> None:
    log = tmp_path / "sync.log"
    log.write_text(
        "(dryrun) upload: dist/index.html to s3://bkt/index.html\n"
        "upload: dist/app.js to s3://bkt/app.js\n"
        "upload failed: dist/x.js to s3://bkt/x.js denied\n"
    )
    code, out, err = prewarm("submit", "--from-sync-log", str(log), "--base-url", BASE)
    assert code == 0, err
    result = json.loads(out)
    assert result["accepted"] == 2 and result["urls"] == 2
    assert fake_cdn.accepted_urls() == {BASE, f"{BASE}app.js"}
    assert f"{log}:3: upload failed: dist/x.js" in err
    # Listed as skipped in the JSON too, with its line (DESIGN §4).
    (skipped,) = result["skipped"]
    assert (skipped["source"], skipped["line"]) == (str(log), 3)
    assert skipped["input"].startswith("upload failed: dist/x.js")


def test_submit_invalid_deploy_input_sends_nothing(
    prewarm: Run, fake_config, fake_cdn: FakeCdn, tmp_path: Path
) -> None:
    code, out, err = prewarm("submit", "--paths", "-", "--base-url", BASE, stdin="a.js\n../b.js\n")
    assert code == 2
    assert json.loads(out)["error"]["code"] == "invalid_input"
    assert "1 invalid input line; nothing was sent:\n  <stdin>:2: ../b.js" in err
    assert fake_cdn.submits == []


def test_submit_dry_run_and_resume_with_deploy_sources(
    prewarm: Run, fake_config, fake_cdn: FakeCdn, tmp_path: Path
) -> None:
    dist = site(tmp_path / "dist", "a.js", "b/index.html", ".env")
    code, out, err = prewarm("submit", "--dry-run", "--from-dir", dist, "--base-url", BASE)
    assert code == 0, err
    assert json.loads(out)["total"] == 2 and fake_cdn.submits == []
    code, out, err = prewarm("submit", "--resume", "01J0", "--from-dir", dist, "--base-url", BASE)
    assert code == 2 and "--resume takes no new URLs" in err


def test_verify_from_dir(prewarm: Run, tmp_path: Path) -> None:
    with CacheServer() as edge:
        # The fake edge answers /cloudfront/hit as a CloudFront hit.
        dist = site(tmp_path / "dist", "cloudfront/hit")
        code, out, err = prewarm("verify", "--from-dir", dist, "--base-url", edge.url, "-o", "json")
        assert code == 0, err
        (result,) = json.loads(out)["results"]
        assert result["url"] == f"{edge.url}/cloudfront/hit" and result["cache"] == "hit"
        code, out, err = prewarm("verify", "--from-dir", dist, "--base-url", "127.0.0.1")
        assert code == 2 and "--base-url '127.0.0.1' is not an absolute http(s) URL" in err


def test_a_file_name_that_is_not_utf8_is_invalid_input_shown_as_text(
    run_cli, write_config, tmp_path
) -> None:
    write_config('[providers.edge]\ntype = "direct"\n')
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / "ok.js").write_text("x")
    try:
        (dist / os.fsdecode(b"\xff\xfe.js")).write_text("x")
    except (OSError, UnicodeEncodeError):
        pytest.skip("this file system refuses a file name that is not UTF-8")
    args = ("--from-dir", "dist", "--base-url", BASE)
    r = run_cli("urls", "-o", "json", *args)  # stdout decoded as strict UTF-8
    assert r.returncode == 2
    message = json.loads(r.stdout)["error"]["message"]
    assert "dist/\\xff\\xfe.js: \ufffd\ufffd.js: the file name is not UTF-8 text" in message
    r = run_cli("submit", "--dry-run", "--skip-invalid", "-o", "json", *args)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["urls"] == 1
    (skipped,) = data["skipped"]
    assert skipped["source"] == "dist/\\xff\\xfe.js" and skipped["input"] == "\ufffd\ufffd.js"
    # Under a directory whose own name is not UTF-8, the files are mapped as usual.
    odd = tmp_path / os.fsdecode(b"site\xe9")
    (odd / "dist").mkdir(parents=True)
    (odd / "dist" / "ok.js").write_text("x")
    r = run_cli("urls", "--from-dir", os.path.join(odd, "dist"), "--base-url", BASE)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [f"{BASE}ok.js"]


def test_ways_of_writing_one_request_are_one_url(prewarm: Run) -> None:
    """A fragment is never sent, a host has no case, ./ and ../ are resolved by every client:
    each pair is one request, warmed once (they were two targets, sent side by side)."""
    pairs = [
        ("https://cdn.example.com/x.js#top", "https://cdn.example.com/x.js"),
        ("https://CDN.Example.com/y.js", "https://cdn.example.com/y.js"),
        ("https://cdn.example.com/a/./z.js", "https://cdn.example.com/a/z.js"),
        ("https://cdn.example.com/a/b/../w.js?q=/../x", "https://cdn.example.com/a/w.js?q=/../x"),
        ("https://cdn.example.com/café.js?q=ü", "https://cdn.example.com/caf%C3%A9.js?q=%C3%BC"),
        ("https://cdn.example.com:443/v.js", "https://cdn.example.com/v.js"),  # default port
        ("http://cdn.example.com:80/v.js", "http://cdn.example.com/v.js"),
        ("https://www.example.com", "https://www.example.com/"),  # an empty path is /
        ("https://news.example.com?page=2", "https://news.example.com/?page=2"),
    ]
    code, out, err = prewarm("urls", *(u for pair in pairs for u in pair))
    assert code == 0, err
    assert out.splitlines() == [sent for _, sent in pairs]
    code, out, _ = prewarm("urls", "https://cdn.example.com/Q?A=B#C")  # path and query keep case
    assert out.splitlines() == ["https://cdn.example.com/Q?A=B"]
    # Another scheme's default port is a port of its own.
    code, out, _ = prewarm("urls", "https://cdn.example.com:80/p", "http://cdn.example.com:443/p")
    assert out.splitlines() == ["https://cdn.example.com:80/p", "http://cdn.example.com:443/p"]
    # Only what is not ASCII is encoded: `|` is kept as in an ASCII URL, so these are one.
    code, out, _ = prewarm("urls", f"{BASE}a|é.js", f"{BASE}a|%C3%A9.js")
    assert out.splitlines() == [f"{BASE}a|%C3%A9.js"]


def test_a_sitemap_and_a_build_directory_naming_one_unicode_file_give_one_url(
    prewarm: Run, tmp_path: Path
) -> None:
    # The sitemap writes the name as text, the directory's file is encoded as a path: the
    # same request, as a browser sends it (they were two URLs, warmed twice).
    site(tmp_path / "dist", "café.js")
    sitemap = tmp_path / "sitemap.xml"
    sitemap.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        f"<url><loc>{BASE}café.js</loc></url></urlset>\n",
        encoding="utf-8",
    )
    args = ("--sitemap", str(sitemap), "--from-dir", str(tmp_path / "dist"), "--base-url", BASE)
    code, out, err = prewarm("urls", *args)
    assert code == 0, err
    assert out.splitlines() == [f"{BASE}caf%C3%A9.js"]


def test_a_text_sitemap_or_stdin_as_sitemap_says_what_to_give(prewarm: Run, tmp_path: Path) -> None:
    """A sitemap.txt (one URL per line, as sitemaps.org allows) is a URL list: -i."""
    listing = tmp_path / "sitemap.txt"
    listing.write_text("https://a.example/x\nhttps://a.example/y\n")
    code, _out, err = prewarm("urls", "--sitemap", str(listing))
    assert code == 2 and f"hint: a sitemap of one URL per line is a URL list: -i {listing}" in err
    code, _out, err = prewarm("urls", "--sitemap", "-", stdin="<urlset/>")
    assert code == 2 and "a sitemap is a URL or a file, not stdin" in err
    assert "hint: save it to a file, or pipe a list of URLs with -i -" in err


def test_the_text_sitemap_hint_is_given_only_to_a_list_of_urls(
    prewarm: Run, tmp_path: Path
) -> None:
    """Named otherwise than .txt, a list of URLs gets it; an empty or JSON file does not."""
    listing = tmp_path / "sitemap"
    listing.write_text("\ufeffhttps://a.example/x\n")
    _code, _out, err = prewarm("urls", "--sitemap", str(listing))
    assert f"-i {listing}" in err
    for other in ('{"urls": []}', ""):
        listing.write_text(other)
        _code, _out, err = prewarm("urls", "--sitemap", str(listing))
        assert "one URL per line" not in err, err
