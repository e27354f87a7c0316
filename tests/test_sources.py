"""Tests for the deploy URL sources (prewarm_cli/inputs/): --base-url, --from-dir, --paths,
--from-sync-log, and the one InputSpec that carries them."""

from __future__ import annotations

import io
import os
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from prewarm_cli.errors import ExitCode, InputError, UsageError
from prewarm_cli.inputs import (
    BaseUrl,
    InputNotes,
    InputSpec,
    InputUrl,
    InvalidInput,
    InvalidList,
    iter_inputs,
    read_urls,
    unquote_git_path,
)
from prewarm_cli.inputs.tree import iter_tree

BASE = "https://cdn.example.com/"


def tree(root: Path, *files: str) -> Path:
    for rel in files:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rel)
    return root


def _listed(spec: InputSpec, **kw: Any) -> list[str]:
    """read_urls' distinct URLs as a list (they are kept on disk)."""
    with read_urls(spec, **kw) as found:
        return list(found)


def urls_of(
    spec: InputSpec, stdin: str | None = None, notes: InputNotes | None = None
) -> list[str]:
    stream = io.StringIO(stdin) if stdin is not None else None
    return _listed(spec, stdin=stream, notes=notes, nothing=None)


# --------------------------------------------------------------------------- --base-url


def test_base_url_joins_a_path_as_a_directory_and_keeps_its_query() -> None:
    assert BaseUrl.parse("https://cdn.example.com/site").url("a.js") == (
        "https://cdn.example.com/site/a.js"
    )
    assert BaseUrl.parse("https://cdn.example.com/site/").url("a.js") == (
        "https://cdn.example.com/site/a.js"
    )
    assert BaseUrl.parse("http://cdn.example.com:8080").url("a.js") == (
        "http://cdn.example.com:8080/a.js"
    )
    assert BaseUrl.parse("https://cdn.example.com/v?token=1").url("x/A.JS") == (
        "https://cdn.example.com/v/x/A.JS?token=1"
    )


@pytest.mark.parametrize(
    ("path", "url"),
    [
        ("About Us/Index.HTML", BASE + "About%20Us/Index.HTML"),  # case left alone
        ("café/naïve.png", BASE + "caf%C3%A9/na%C3%AFve.png"),
        ("100%.html", BASE + "100%25.html"),  # a file name is not a URL
        ("q?.html", BASE + "q%3F.html"),
        ("h#1.html", BASE + "h%231.html"),
        ("a+b=c,d.js", BASE + "a+b=c,d.js"),  # sub-delims stay, as browsers send them
        ("./x//y.js", BASE + "x/y.js"),
    ],
)
def test_each_path_segment_is_percent_encoded(path: str, url: str) -> None:
    assert BaseUrl.parse(BASE).url(path) == url


def test_index_rule() -> None:
    base = BaseUrl.parse(BASE)
    assert base.urls("about/index.html") == [BASE + "about/"]
    assert base.urls("index.html") == [BASE]
    assert base.urls("about/index.html", "file") == [BASE + "about/index.html"]
    assert base.urls("about/index.html", "both") == [BASE + "about/", BASE + "about/index.html"]
    assert base.urls("about/index.htm", "dir") == [BASE + "about/index.htm"]
    assert base.urls("about/myindex.html") == [BASE + "about/myindex.html"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("cdn.example.com", "not an absolute http"),
        ("ftp://cdn.example.com/", "not an absolute http"),
        ("/static/", "not an absolute http"),
        ("https://cdn.example.com/#top", "#fragment"),
        ("https://cdn example.com/", "whitespace"),
    ],
)
def test_bad_base_url_is_a_usage_error(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message) as info:
        InputSpec(base_url=text, from_dirs=(str(tmp_path),))
    assert info.value.exit_code == ExitCode.USAGE


def test_base_url_without_scheme_suggests_one(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as info:
        InputSpec(base_url="cdn.example.com/site", from_dirs=(str(tmp_path),))
    assert info.value.hint and "https://cdn.example.com/site" in info.value.hint


def test_a_path_leaving_the_base_is_invalid_input_with_its_line(tmp_path: Path) -> None:
    listing = tmp_path / "changed.txt"
    listing.write_text("ok.js\n../etc/passwd\n")
    with pytest.raises(InputError) as info:
        _listed(InputSpec(base_url=BASE, paths=(str(listing),)))
    assert f"{listing}:2: ../etc/passwd: a path with '..' would leave the base URL" in str(
        info.value
    )


def test_a_dot_dot_that_stays_under_the_base_is_resolved(tmp_path: Path) -> None:
    listing = tmp_path / "changed.txt"
    listing.write_text("public/x/../y.js\na/b/../../c.css\n")
    assert _listed(InputSpec(base_url=BASE, paths=(str(listing),))) == [
        BASE + "public/y.js",
        BASE + "c.css",
    ]


def test_strip_prefix_is_matched_against_the_path_its_dot_segments_name(tmp_path: Path) -> None:
    listing = tmp_path / "changed.txt"
    listing.write_text("public/../public/z.js\n./public/./a/b/../c.js\npublic/x/..\nlib/../y.js\n")
    spec = InputSpec(base_url=BASE, paths=(str(listing),), strip_prefix="public")
    assert _listed(spec) == [BASE + "z.js", BASE + "a/c.js", BASE]  # y.js: not under public/


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("a.js\0b.js", "holds a NUL character: a NUL-separated list (git diff -z)?"),
        ("https://www.example.com/a.js", "is a URL, not a path: give a URL list with -i"),
        ("M\tpublic/app.js", "holds a tab: git diff --name-status output?"),
        ("R100\tindex.html\tabout/index.html", "holds a tab: git diff --name-status"),
        (" public/app.js | 3 ++-", "git diff --stat output? give the paths alone"),
        (" public/logo.png | Bin 0 -> 1203 bytes", "git diff --stat output?"),
        (" 2 files changed, 3 insertions(+), 1 deletion(-)", "git diff --stat output?"),
        ("?? public/new.js", "git status output? give the paths alone"),
        ("M  public/staged.js", "git status output?"),
        ("R  public/old.js -> public/new.js", "git status output?"),
        ("AM public/added.js", "git status output?"),
        ("UU public/conflict.js", "git status output?"),
        ("1 .M N... 100644 100644 100644 3f2a 3f2a public/a.js", "git status output?"),
        (" public/run.sh | 0", "git diff --stat output?"),
    ],
)
def test_a_line_that_cannot_be_a_path_is_invalid_input(
    tmp_path: Path, line: str, message: str
) -> None:
    listing = tmp_path / "changed.txt"
    listing.write_text(f"ok.js\n{line}\n")
    with pytest.raises(InputError) as info:
        _listed(InputSpec(base_url=BASE, paths=(str(listing),)))
    assert f"{listing}:2: " in str(info.value) and message in str(info.value)


def test_paths_that_only_look_like_a_status_line_are_paths(tmp_path: Path) -> None:
    listing = tmp_path / "changed.txt"
    listing.write_text(
        "A note.md\nM/a.js\nreport | final.pdf\n3 files changed.txt\nSales | 2023\nd | Bin x\n"
    )
    assert _listed(InputSpec(base_url=BASE, paths=(str(listing),))) == [
        BASE + "A%20note.md",
        BASE + "M/a.js",
        BASE + "report%20%7C%20final.pdf",
        BASE + "3%20files%20changed.txt",
        BASE + "Sales%20%7C%202023",
        BASE + "d%20%7C%20Bin%20x",
    ]


def test_a_file_name_with_a_star_is_invalid_input_saying_how_to_leave_it_out(
    tmp_path: Path,
) -> None:
    root = tree(tmp_path / "dist", "app.js", "img/star*.png")
    with pytest.raises(InputError) as info:
        _listed(InputSpec(base_url=BASE, from_dirs=(str(root),)))
    assert "img/star*.png: a name with '*' cannot be warmed" in str(info.value)
    assert "--exclude" in str(info.value)


# --------------------------------------------------------------------------- usage


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"from_dirs": ("dist",)}, "need --base-url"),
        ({"paths": ("-",)}, "need --base-url"),
        ({"sync_logs": ("s.log",)}, "need --base-url"),
        ({"base_url": BASE}, "none given"),
        ({"urls": ("https://a.example/",), "strip_prefix": "public"}, "--strip-prefix"),
        ({"urls": ("https://a.example/",), "excludes": ("*.txt",)}, "--exclude"),
        ({"urls": ("https://a.example/",), "default_excludes": False}, "--no-default-excludes"),
        ({"base_url": BASE, "from_dirs": ("d",), "index": "folder"}, "--index"),
        ({"urls": ("https://a.example/",), "index": "file"}, "--index applies to --from-dir"),
        ({"files": ("-",), "base_url": BASE, "paths": ("-",)}, "stdin"),
    ],
)
def test_usage_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        InputSpec(**kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- --from-dir


def test_from_dir_walks_sorted_with_the_index_rule(tmp_path: Path) -> None:
    root = tree(tmp_path / "dist", "index.html", "a/index.html", "a.txt", "a/b.css", "B.js")
    spec = InputSpec(base_url=BASE, from_dirs=(str(root),))
    # Sorted by relative path: 'B.js' < 'a.txt' < 'a/...' < 'index.html'.
    assert urls_of(spec) == [BASE + "B.js", BASE + "a.txt", BASE + "a/b.css", BASE + "a/", BASE]


def test_from_dir_default_excludes(tmp_path: Path) -> None:
    root = tree(
        tmp_path / "dist",
        ".env",
        ".well-known/security.txt",
        "assets/.cache/x.js",
        "app.js",
        "app.js.gz",
        "app.js.br",
        "app.js.zst",
        "app.js.map",
        "lonely.css.gz",  # no plain sibling: a file of its own
        "data.tar.gz",
    )
    got = list(iter_tree(str(root)))
    assert got == ["app.js", "data.tar.gz", "lonely.css.gz"]
    everything = list(iter_tree(str(root), default_excludes=False))
    assert len(everything) == 10
    assert ".well-known/security.txt" in everything and "app.js.map" in everything


def test_from_dir_exclude_globs_match_the_relative_path(tmp_path: Path) -> None:
    root = tree(tmp_path / "d", "a.html", "drafts/x.html", "img/p.png", "img/sub/q.png", "b.txt")
    assert list(iter_tree(str(root), excludes=("drafts",))) == [
        "a.html",
        "b.txt",
        "img/p.png",
        "img/sub/q.png",
    ]
    assert list(iter_tree(str(root), excludes=("drafts/",))) == list(
        iter_tree(str(root), excludes=("drafts",))
    )
    assert list(iter_tree(str(root), excludes=("*.png", "*.txt"))) == ["a.html", "drafts/x.html"]
    assert list(iter_tree(str(root), excludes=("img/sub/*",))) == [
        "a.html",
        "b.txt",
        "drafts/x.html",
        "img/p.png",
    ]


def test_from_dir_excludes_read_as_gitignore_and_globstar_do(tmp_path: Path) -> None:
    """`**/*.html` left the top level's pages in, and `/drafts/*` matched nothing."""
    root = tree(tmp_path / "d", "a.html", "drafts/x.html", "img/p.png", "b.txt")
    assert list(iter_tree(str(root), excludes=("**/*.html",))) == ["b.txt", "img/p.png"]
    assert list(iter_tree(str(root), excludes=("/drafts/*", "./img/**"))) == ["a.html", "b.txt"]
    # Anchored, a '*' stays within the top directory: the top level's pages only.
    assert list(iter_tree(str(root), excludes=("/*.html",))) == [
        "b.txt",
        "drafts/x.html",
        "img/p.png",
    ]
    assert list(iter_tree(str(root), excludes=("/img/?.png", "/[ab].*"))) == ["drafts/x.html"]


def test_from_dir_follows_symlinked_files_not_directories(tmp_path: Path) -> None:
    outside = tree(tmp_path / "outside", "secret.txt")
    root = tree(tmp_path / "site", "real.html", "sub/page.html")
    (root / "linked.html").symlink_to(root / "real.html")
    (root / "loop").symlink_to(root, target_is_directory=True)
    (root / "elsewhere").symlink_to(outside, target_is_directory=True)
    (root / "broken.html").symlink_to(tmp_path / "missing.html")
    assert list(iter_tree(str(root))) == ["linked.html", "real.html", "sub/page.html"]


def test_from_dir_missing_or_not_a_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(InputError, match=f"--from-dir {missing}: no such directory") as info:
        iter_inputs(InputSpec(base_url=BASE, from_dirs=(str(missing),)))
    assert info.value.exit_code == ExitCode.USAGE
    afile = tmp_path / "f.txt"
    afile.write_text("x")
    with pytest.raises(InputError, match="not a directory"):
        iter_inputs(InputSpec(base_url=BASE, from_dirs=(str(afile),)))


def test_from_dir_is_streamed_not_held_in_memory(tmp_path: Path) -> None:
    root = tmp_path / "big"
    for i in range(40):
        sub = root / f"d{i:02}"
        sub.mkdir(parents=True)
        for j in range(250):
            (sub / f"page-{j:04}.html").touch()
    spec = InputSpec(base_url=BASE, from_dirs=(str(root),))
    tracemalloc.start()
    try:
        n_urls = sum(1 for _ in iter_inputs(spec))
        _, peak_streamed = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        held = list(iter_inputs(spec))
        _, peak_held = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n_urls == len(held) == 10_000
    # One directory's 250 names at a time, not the 10,000 URLs the list holds.
    assert peak_streamed < peak_held / 5


def test_from_dir_is_lazy_a_later_directory_is_listed_when_reached(tmp_path: Path) -> None:
    root = tree(tmp_path / "d", "a/1.html", "b/2.html")
    walk = iter_tree(str(root))
    assert next(walk) == "a/1.html"
    (root / "b" / "2.html").unlink()
    (root / "b" / "3.html").write_text("")
    assert list(walk) == ["b/3.html"]


# --------------------------------------------------------------------------- --paths


@pytest.mark.parametrize(
    ("quoted", "path"),
    [
        ('"caf\\303\\251.png"', "café.png"),
        ('"tab\\there.txt"', "tab\there.txt"),
        ('"quote\\"d.txt"', 'quote"d.txt'),
        ('"back\\\\slash.txt"', "back\\slash.txt"),
        ("plain.txt", "plain.txt"),
        ('"\\346\\226\\207.md"', "文.md"),
    ],
)
def test_unquote_git_path(quoted: str, path: str) -> None:
    assert unquote_git_path(quoted) == path


def test_unquote_git_path_rejects_broken_quoting() -> None:
    with pytest.raises(ValueError, match="escape"):
        unquote_git_path('"bad\\q.txt"')
    with pytest.raises(ValueError, match="UTF-8"):
        unquote_git_path('"\\377.txt"')


def test_paths_from_stdin_with_strip_prefix_and_one_note(tmp_path: Path) -> None:
    diff = (
        "# git diff --name-only --diff-filter=d HEAD~1 HEAD\n"
        "public/index.html\n"
        "\n"
        '"public/caf\\303\\251 2.png"\n'
        "README.md\n"
        "src/main.go\n"
        "public/blog/index.html\n"
    )
    notes = InputNotes()
    spec = InputSpec(base_url=BASE, paths=("-",), strip_prefix="public/")
    got = urls_of(spec, stdin=diff, notes=notes)
    assert got == [BASE, BASE + "caf%C3%A9%202.png", BASE + "blog/"]
    assert notes.outside_prefix == 2
    assert notes.messages() == ["2 paths not under --strip-prefix 'public/' skipped"]


@pytest.mark.parametrize("prefix", ["public", "public/", "./public/", "/public/"])
def test_strip_prefix_is_a_directory_however_it_is_written(prefix: str) -> None:
    spec = InputSpec(base_url=BASE, paths=("-",), strip_prefix=prefix)
    got = urls_of(spec, stdin="./public/a.css\npublic/b/c.js\n", notes=InputNotes())
    assert got == [BASE + "a.css", BASE + "b/c.js"]


def test_paths_index_rule_applies(tmp_path: Path) -> None:
    listing = tmp_path / "changed.txt"
    listing.write_text("docs/index.html\n/abs/x.css\n./rel/y.css\n")
    spec = InputSpec(base_url=BASE, paths=(str(listing),), index="both")
    assert urls_of(spec) == [
        BASE + "docs/",
        BASE + "docs/index.html",
        BASE + "abs/x.css",
        BASE + "rel/y.css",
    ]


def test_missing_path_list_fails_before_reading(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="path list not found"):
        iter_inputs(InputSpec(base_url=BASE, paths=(str(tmp_path / "nope"),)))


# --------------------------------------------------------------------------- --from-sync-log

AWS_LOG = (
    "Completed 1.2 KiB/4.5 KiB (2.3 KiB/s) with 3 file(s) remaining\r"
    "upload: dist/index.html to s3://my-bucket/index.html\n"
    "upload: dist/assets/app.3f2a.js to s3://my-bucket/assets/app.3f2a.js\n"
    "delete: s3://my-bucket/old.html\n"
    "upload failed: dist/big.bin to s3://my-bucket/big.bin An error occurred (AccessDenied) "
    "when calling the PutObject operation: Access Denied\n"
    "(dryrun) upload: dist/a b.html to s3://my-bucket/a b.html\n"
    "copy: s3://staging/x.css to s3://my-bucket/x.css\n"
    "download: s3://my-bucket/y to y\n"
    "Completed 4.5 KiB/4.5 KiB (2.3 KiB/s) with 0 file(s) remaining\n"
)


def test_aws_s3_sync_log(tmp_path: Path) -> None:
    log = tmp_path / "sync.log"
    log.write_text(AWS_LOG)
    notes = InputNotes()
    got = urls_of(InputSpec(base_url=BASE, sync_logs=(str(log),)), notes=notes)
    assert got == [BASE, BASE + "assets/app.3f2a.js", BASE + "a%20b.html", BASE + "x.css"]
    assert notes.failed.count == 1 and notes.failed.listed[0].line == 4
    (message,) = notes.messages()
    assert message.startswith("1 failed upload in the sync log; skipped:\n  ")
    assert f"{log}:4: upload failed: dist/big.bin" in message


def test_rclone_combined_log_with_strip_prefix() -> None:
    log = (
        "= same.css\n+ site/new.html\n* site/changed/index.html\n- site/gone.html\n! site/bad.js\n"
    )
    notes = InputNotes()
    spec = InputSpec(base_url=BASE, sync_logs=("-",), strip_prefix="site")
    assert urls_of(spec, stdin=log, notes=notes) == [BASE + "new.html", BASE + "changed/"]
    assert notes.failed.count == 1 and notes.failed.listed[0].line == 5


def test_gsutil_and_gcloud_rsync_logs() -> None:
    log = (
        "Building synchronization state...\n"
        "Starting synchronization...\n"
        "Copying file://public/index.html [Content-Type=text/html]...\n"
        "Copying file://public/a.css to gs://www-bucket/a.css [Content-Type=text/css]...\n"
        "Copying file://public/b.js to gs://www-bucket/js/b.js\n"
        "Would copy file://public/c.png to gs://www-bucket/img/c.png\n"
        "Would remove gs://www-bucket/old.png\n"
        "/ [3 files][  1.2 KiB/  1.2 KiB]\n"
        "Operation completed over 3 objects/1.2 KiB.\n"
        "Completed files 3/3 | 1.2kiB/1.2kiB\n"
    )
    # gsutil's own "Copying" line names only the local file: without the synced directory
    # to take off, it is invalid input, not a guess.
    with pytest.raises(InputError) as info:
        _listed(InputSpec(base_url=BASE, sync_logs=("-",)), stdin=io.StringIO(log))
    assert "<stdin>:3:" in str(info.value) and "--strip-prefix" in str(info.value)
    # With it, the local path under it is the key.
    spec = InputSpec(base_url=BASE, sync_logs=("-",), strip_prefix="public/")
    got = urls_of(spec, stdin=log.replace("gs://www-bucket/", "gs://www-bucket/public/"))
    assert got == [BASE, BASE + "a.css", BASE + "js/b.js", BASE + "img/c.png"]


@pytest.mark.parametrize("prefix", [".", "./"])
def test_gsutil_run_in_the_synced_directory_takes_strip_prefix_dot(prefix: str) -> None:
    log = "Copying file://./app.js [Content-Type=application/javascript]...\n"
    log += "Copying file://./css/site.css [Content-Type=text/css]...\n"
    spec = InputSpec(base_url=BASE, sync_logs=("-",), strip_prefix=prefix)
    assert urls_of(spec, stdin=log) == [BASE + "app.js", BASE + "css/site.css"]


def test_gsutil_local_paths_are_not_keys_with_an_empty_strip_prefix() -> None:
    log = "Copying file://app.js [Content-Type=application/javascript]...\n"
    with pytest.raises(InputError) as info:
        urls_of(InputSpec(base_url=BASE, sync_logs=("-",), strip_prefix=""), stdin=log)
    assert "--strip-prefix" in str(info.value)


def test_an_s3_access_point_destination_gives_the_key_under_it() -> None:
    arn = "arn:aws:s3:us-east-1:123456789012:accesspoint/my-ap"
    log = f"upload: dist/a.js to s3://{arn}/assets/a.js\n"
    log += "upload: dist/b.js to s3://my-bucket/b.js\n"
    outpost = "arn:aws:s3-outposts:us-west-2:123456789012:outpost/op-01ac5d28a6a232904"
    log += f"upload: dist/c.js to s3://{outpost}/accesspoint/my-ap/c.js\n"
    spec = InputSpec(base_url=BASE, sync_logs=("-",))
    assert urls_of(spec, stdin=log) == [BASE + "assets/a.js", BASE + "b.js", BASE + "c.js"]


def test_a_log_in_no_known_format_is_an_input_error(tmp_path: Path) -> None:
    log = tmp_path / "deploy.log"
    log.write_text("Deploying site...\nDone in 3s\n")
    with pytest.raises(InputError) as info:
        _listed(InputSpec(base_url=BASE, sync_logs=(str(log),)))
    assert f"{log} is not the output of aws s3 sync/cp" in str(info.value)
    assert f"{log}:1: Deploying site..." in str(info.value)
    assert info.value.exit_code == ExitCode.USAGE


def test_an_empty_sync_log_gives_no_urls(tmp_path: Path) -> None:
    log = tmp_path / "sync.log"
    log.write_text("")
    spec = InputSpec(base_url=BASE, sync_logs=(str(log),))
    assert urls_of(spec) == []
    with pytest.raises(InputError, match="no URLs given"):
        _listed(spec)


# --------------------------------------------------------------------------- together


def test_all_sources_in_order_de_duplicated(tmp_path: Path) -> None:
    root = tree(tmp_path / "dist", "index.html", "a.js")
    url_file = tmp_path / "urls.txt"
    url_file.write_text(f"{BASE}a.js\nhttps://other.example/x\n")
    log = tmp_path / "sync.log"
    log.write_text("upload: dist/b.js to s3://bkt/b.js\nupload: dist/a.js to s3://bkt/a.js\n")
    spec = InputSpec(
        urls=(BASE,),
        files=(str(url_file),),
        base_url=BASE,
        from_dirs=(str(root),),
        paths=("-",),
        sync_logs=(str(log),),
    )
    got = urls_of(spec, stdin="c.js\n")
    assert got == [BASE, BASE + "a.js", "https://other.example/x", BASE + "c.js", BASE + "b.js"]


def test_sources_keep_file_and_line_for_errors(tmp_path: Path) -> None:
    log = tmp_path / "sync.log"
    long_key = "x" * 3000
    log.write_text(f"upload: a to s3://b/ok.js\nupload: b to s3://b/{long_key}\n")
    items = list(iter_inputs(InputSpec(base_url=BASE, sync_logs=(str(log),))))
    assert items[1] == InputUrl(BASE + long_key, str(log), 2)
    with pytest.raises(InputError, match=f"{log}:2: "):
        _listed(InputSpec(base_url=BASE, sync_logs=(str(log),)))


def test_invalid_list_counts_all_and_lists_the_first() -> None:
    invalid = InvalidList(limit=2)
    for n in range(5):
        invalid.add(InvalidInput(f"bad{n}", "f.txt", n + 1, "scheme must be http or https"))
    assert len(invalid) == 5
    assert invalid.lines() == [
        "f.txt:1: bad0: scheme must be http or https",
        "f.txt:2: bad1: scheme must be http or https",
        "... and 3 more",
    ]
    error = invalid.error("nothing was sent", hint="fix them")
    assert str(error).startswith("5 invalid input lines; nothing was sent:\n  f.txt:1: bad0")
    assert error.hint == "fix them" and error.exit_code == ExitCode.USAGE


def test_file_names_with_spaces_stay_one_source(tmp_path: Path) -> None:
    root = tree(tmp_path / "my site", "a b/c d.html")
    (item,) = list(iter_inputs(InputSpec(base_url=BASE, from_dirs=(str(root),))))
    assert isinstance(item, InputUrl)
    assert item.url == BASE + "a%20b/c%20d.html"
    assert item.source == os.path.join(str(root), "a b/c d.html") and item.line is None
