"""Tests for URL input, validation, sitemaps and encoding (prewarm_cli/inputs/)."""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import threading
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TextIO, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prewarm_cli.errors import InputError, PrewarmError
from prewarm_cli.inputs import (
    MAX_URL_LENGTH,
    DistinctUrls,
    InputSpec,
    InputUrl,
    InvalidInput,
    check_inputs,
    distinct,
    host_of,
    is_ascii,
    iter_inputs,
    sitemap,
    to_ascii,
    validate_url,
)
from prewarm_cli.inputs.distinct import IN_MEMORY
from prewarm_cli.inputs.validate import is_plain_url, url_problem

NS = "http://www.sitemaps.org/schemas/sitemap/0.9"


def urlset(*locs: str, ns: str = NS) -> bytes:
    """A <urlset> sitemap listing the given URLs."""
    entries = "".join(f"<url><loc>{loc}</loc><lastmod>2024-01-01</lastmod></url>" for loc in locs)
    xmlns = f' xmlns="{ns}"' if ns else ""
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<urlset{xmlns}>{entries}</urlset>\n'.encode()


def sitemapindex(*locs: str | Path) -> bytes:
    """A <sitemapindex> listing the given sitemaps."""
    entries = "".join(f"<sitemap><loc>{loc}</loc></sitemap>" for loc in locs)
    return f'<?xml version="1.0"?>\n<sitemapindex xmlns="{NS}">{entries}</sitemapindex>'.encode()


def write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def classic(
    args: list[str], files: list[str], sitemaps: list[str], stdin: TextIO | None = None
) -> Iterator[InputUrl]:
    """iter_inputs over the three classic sources (they never yield InvalidInput)."""
    spec = InputSpec(urls=tuple(args), files=tuple(files), sitemaps=tuple(sitemaps))
    return cast(Iterator[InputUrl], iter_inputs(spec, stdin=stdin))


def collect(
    args: list[str] | None = None,
    files: list[str] | None = None,
    sitemaps: list[str] | None = None,
    stdin: str | None = None,
    timeout: float = 5.0,
) -> list[InputUrl]:
    stream = io.StringIO(stdin) if stdin is not None else None
    spec = InputSpec(
        urls=tuple(args or ()),
        files=tuple(files or ()),
        sitemaps=tuple(sitemaps or ()),
        sitemap_timeout=timeout,
    )
    return [cast(InputUrl, item) for item in iter_inputs(spec, stdin=stream)]


def url_list(items: list[InputUrl]) -> list[str]:
    return [item.url for item in items]


# --- validate_url ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com",
        "https://example.com/",
        "HTTPS://Example.COM/Path",
        "https://example.com:8443/a/b.js?v=1&x=%20y#frag",
        "http://example.com:1/",
        "http://example.com:65535/",
        "http://[2001:db8::1]:8080/a",
        "http://192.0.2.1/a",
        "https://bücher.example/straße?q=ü",  # IRIs are fine; providers encode
        "https://例え.テスト/パス",
        "https://example.com/%E4%BD%A0%E5%A5%BD",
        "https://example.com/a;b=c,d(e)!$'+@:~",
        "https://example.com/emoji/😀",
        "https://example.com/zwj/\u200d",  # joiners are part of some scripts
        "https://example.com/" + "a" * (MAX_URL_LENGTH - len("https://example.com/")),
    ],
)
def test_valid_urls(url: str) -> None:
    assert validate_url(url) is None


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("", "empty"),
        ("ftp://example.com/a", "scheme must be http or https"),
        ("file:///etc/passwd", "scheme must be http or https"),
        ("javascript:alert(1)", "scheme must be http or https"),
        ("example.com/a", "scheme must be http or https"),
        ("//example.com/a", "scheme must be http or https"),
        ("http:///path", "no host"),
        ("http://", "no host"),
        ("http:example.com/a", "no host"),
        ("http://:8080/a", "no host"),
        ("http://[]/a", ""),  # "no host" or "cannot be parsed", by Python patch release
        ("http://[zzz]/a", "cannot be parsed"),
        ("http://example.com/a b", "whitespace (U+0020"),
        ("http://example.com/a\tb", "control character (U+0009"),
        ("http://example.com/a\nb", "control character (U+000A"),
        ("http://example.com/a\x00b", "control character (U+0000"),
        ("http://example.com/a\x1b[31m", "control character (U+001B"),
        ("http://example.com/a\x7f", "control character (U+007F"),
        ("http://example.com/a\x85", "U+0085"),
        ("http://example.com/a\u00a0b", "whitespace (U+00A0 NO-BREAK SPACE)"),
        ("http://example.com/a\u3000b", "whitespace (U+3000 IDEOGRAPHIC SPACE)"),
        ("http://example.com/a\u2028b", "whitespace (U+2028 LINE SEPARATOR)"),
        ("http://example.com/a\u2009b", "whitespace (U+2009 THIN SPACE)"),
        ("http://exam\u00a0ple.com/", "whitespace"),
        ("http://example.com/a\u200bb", "invisible formatting character (U+200B"),
        ("http://example.com/\ufeffa", "invisible formatting character (U+FEFF"),
        ("http://example.com/\u202eevil", "invisible formatting character (U+202E"),
        ("http://example.com/\udcff", "undecodable character"),
        ("http://example.com/*", "wildcard"),
        ("http://*.example.com/a", "wildcard"),
        ("https://example.com/img/*.png", "wildcard"),
        ("http://user:secret@example.com/", "credentials"),
        ("http://user@example.com/", "credentials"),
        ("http://@example.com/", "credentials"),
        ("http://example.com:0/", "port must be a number from 1 to 65535"),
        ("http://example.com:65536/", "port must be a number from 1 to 65535"),
        ("http://example.com:99999999999/", "port must be a number from 1 to 65535"),
        ("http://example.com:http/", "port must be a number from 1 to 65535"),
        ("http://example.com:-1/", "port must be a number from 1 to 65535"),
        ("http://example.com:/", "port must be a number from 1 to 65535"),
        ("http://example.com:\uff18\uff10/", "port must be a number from 1 to 65535"),
        ("http://[::1]:0/", "port must be a number from 1 to 65535"),
        ("http://[::1/", "cannot be parsed"),
        ("http://exa<mple.com/", "host contains an invalid character"),
        ("http://example.com\\evil.com/", "host contains an invalid character"),
        (
            "https://example.com/" + "a" * (MAX_URL_LENGTH - len("https://example.com/") + 1),
            f"longer than {MAX_URL_LENGTH}",
        ),
        # Short as typed, too long once percent-encoded, which is what providers get.
        ("https://example.com/" + "é" * 400, "once percent-encoded (2420)"),
    ],
)
def test_invalid_urls(url: str, reason: str) -> None:
    got = validate_url(url)
    assert got is not None
    assert reason in got


@settings(max_examples=1000, deadline=None)
@given(
    st.tuples(
        st.sampled_from(["http://", "https://", "HTTP://", "ftp://", "http:/", ""]),
        st.from_regex(r"[a-zA-Z0-9][a-zA-Z0-9.@*\\[\]:-]{0,6}", fullmatch=True)
        | st.text(alphabet="aZ09.-*@[]\\ é:%<", max_size=8),
        st.sampled_from(["", ":", ":0", ":8", ":65535", ":65536", ":123456", ":x"]),
        st.from_regex(r"[/?#][!-~]{0,8}", fullmatch=True)
        | st.text(alphabet="/?#a*@ é\\%\x00[]:", max_size=8),
    ).map("".join)
)
def test_the_fast_path_accepts_only_what_every_check_accepts(url: str) -> None:
    if is_plain_url(url):
        assert url_problem(url) is None, url
    assert validate_url(url) == (None if is_plain_url(url) else url_problem(url))


def test_max_url_length_is_documented_value() -> None:
    assert MAX_URL_LENGTH == 2048


def test_length_checked_before_parsing_a_huge_input() -> None:
    reason = validate_url("https://example.com/" + "x" * 10_000_000)
    assert reason == f"longer than {MAX_URL_LENGTH} characters (10000020)"


# --- InvalidInput, check_inputs ---------------------------------------------------------------


def test_invalid_input_str_and_dict() -> None:
    item = InvalidInput("ftp://x/a", "urls.txt", 12, "scheme must be http or https")
    assert str(item) == "urls.txt:12: ftp://x/a: scheme must be http or https"
    assert item.to_dict() == {
        "input": "ftp://x/a",
        "source": "urls.txt",
        "line": 12,
        "reason": "scheme must be http or https",
    }


def test_invalid_input_str_for_arguments_and_sitemaps() -> None:
    assert str(InvalidInput("x", "argument", 2, "r")) == "argument 2: x: r"
    assert str(InvalidInput("x", "map.xml", None, "r")) == "map.xml: x: r"


def test_invalid_input_str_escapes_terminal_control_and_invisible_characters() -> None:
    text = str(InvalidInput("http://x/\x1b[2J\u00a0\u200b\U000e0001ü\\", "f", 1, "r"))
    assert "\x1b" not in text
    assert text == "f:1: http://x/\\x1b[2J\\xa0\\u200b\\U000e0001ü\\\\: r"


def test_invalid_input_str_shortens_long_input_but_dict_keeps_it() -> None:
    long = "http://x/" + "a" * 5000
    item = InvalidInput(long, "f", 1, "too long")
    assert len(str(item)) < 300
    assert "(5009 characters)" in str(item)
    assert item.to_dict()["input"] == long


def test_check_inputs_streams_in_order_without_deduplicating() -> None:
    inputs = [
        InputUrl("https://a.example/1", "argument", 1),
        InputUrl("ftp://a.example/2", "urls.txt", 3),
        InputUrl("https://a.example/1", "urls.txt", 4),
        InputUrl("https://a.example/*", "map.xml", None),
    ]
    results = list(check_inputs(inputs))
    assert results[0] is inputs[0]
    assert results[1] == InvalidInput(
        "ftp://a.example/2", "urls.txt", 3, "scheme must be http or https"
    )
    assert results[2] is inputs[2]
    assert isinstance(results[3], InvalidInput)
    assert results[3].line is None
    assert "wildcard" in results[3].reason


def test_check_inputs_is_lazy() -> None:
    def source() -> Iterator[InputUrl]:
        yield InputUrl("https://a.example/", "argument", 1)
        raise AssertionError("read past the first item")

    assert next(check_inputs(source())) == InputUrl("https://a.example/", "argument", 1)


# --- host_of, is_ascii, to_ascii, DistinctUrls----------------------------------------------------


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://Example.COM:8443/a", "example.com"),
        ("https://example.com/", "example.com"),
        ("https://BÜCHER.example/", "bücher.example"),
        ("https://xn--bcher-kva.example/", "xn--bcher-kva.example"),
        ("http://[2001:DB8::1]:80/", "2001:db8::1"),
        ("not a url", ""),
        ("http://[::1/", ""),
    ],
)
def test_host_of(url: str, host: str) -> None:
    assert host_of(url) == host


def test_is_ascii() -> None:
    assert is_ascii("https://example.com/a%20b")
    assert not is_ascii("https://example.com/ü")
    assert not is_ascii("https://bücher.example/")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://example.com/straße", "https://example.com/stra%C3%9Fe"),
        (
            "https://example.com/你好?q=世界#片段",
            "https://example.com/%E4%BD%A0%E5%A5%BD?q=%E4%B8%96%E7%95%8C#%E7%89%87%E6%AE%B5",
        ),
        ("https://bücher.example/a", "https://xn--bcher-kva.example/a"),
        ("https://BÜCHER.example:8443/ü", "https://xn--bcher-kva.example:8443/%C3%BC"),
        ("https://例え.テスト/", "https://xn--r8jz45g.xn--zckzah/"),
        # Existing escapes and reserved characters survive untouched.
        (
            "https://example.com/%C3%BC/ü?a=1&b=%2F;c=(d)*,+$!'@:~",
            "https://example.com/%C3%BC/%C3%BC?a=1&b=%2F;c=(d)*,+$!'@:~",
        ),
        ("https://example.com/ü\u00a0x y", "https://example.com/%C3%BC%C2%A0x%20y"),
        ("https://[2001:db8::1]:8080/ü", "https://[2001:db8::1]:8080/%C3%BC"),
        ("https://example.com/😀", "https://example.com/%F0%9F%98%80"),
    ],
)
def test_to_ascii(url: str, expected: str) -> None:
    assert to_ascii(url) == expected
    assert is_ascii(to_ascii(url))


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/a%20b?x=%E4%BD%A0#f",
        "https://example.com/a b",  # ASCII is the user's cache key: sent exactly as given
        "https://Example.com/{x}|y",
        "http://xn--bcher-kva.example/",
    ],
)
def test_to_ascii_leaves_ascii_unchanged(url: str) -> None:
    assert to_ascii(url) is url


def test_to_ascii_falls_back_to_the_host_when_idna_fails() -> None:
    # An empty label cannot be IDNA-encoded; the host is kept, the path still encoded.
    assert to_ascii("https://bü..example/ü") == "https://bü..example/%C3%BC"


def test_distinct_urls_keep_the_first_of_each_in_order() -> None:
    with DistinctUrls(["b", "a", "b"]) as found:
        found.add(["c", "a", "d"])
        assert len(found) == 4
        assert list(found) == ["b", "a", "c", "d"]
        assert list(found) == ["b", "a", "c", "d"]  # read again
        found._spill()  # the same, once on disk
        found.add(["e", "b"])
        assert len(found) == 5
        assert list(found) == ["b", "a", "c", "d", "e"]
    with DistinctUrls() as none:
        assert not none
        assert list(none) == []


@settings(max_examples=50, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "c", "é", "a" * 300]), max_size=40), st.booleans())
def test_distinct_urls_are_the_input_without_its_repeats(items: list[str], on_disk: bool) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(distinct, "IN_MEMORY", 3 if on_disk else 1000)
        with DistinctUrls(items) as found:
            assert list(found) == list(dict.fromkeys(items))
            assert len(found) == len(set(items))


def test_distinct_urls_with_no_room_on_disk_say_where_and_what_to_do(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import sqlite3

    connect = sqlite3.connect

    def small_disk(name: str) -> sqlite3.Connection:
        db = connect(name)
        db.execute("PRAGMA max_page_count = 8")  # SQLite's own "database or disk is full"
        return db

    monkeypatch.setattr(distinct.sqlite3, "connect", small_disk)
    monkeypatch.setattr(distinct, "IN_MEMORY", 10)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setenv("SQLITE_TMPDIR", str(tmp_path / "not-a-directory"))  # passed over
    with pytest.raises(PrewarmError) as caught:
        DistinctUrls(f"https://a.example/{i:06d}" for i in range(5000))
    assert f"in {tmp_path}: database or disk is full" in str(caught.value)
    assert "TMPDIR" in (caught.value.hint or "")


def _open_files() -> dict[str, str]:
    """This process's open descriptors and what each names."""
    named = {}
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own descriptor, closed by now
            named[fd] = os.readlink(f"/proc/self/fd/{fd}")
    return named


def test_distinct_urls_are_few_in_memory_many_in_a_private_file_closed_with_them() -> None:
    before = _open_files()
    with DistinctUrls(f"https://a.example/{i:06d}" for i in range(IN_MEMORY)) as few:
        assert len(few) == IN_MEMORY
        assert set(_open_files()) <= set(before)  # no file for so few
    found = DistinctUrls(f"https://a.example/{i:06d}" for i in range(50_000))
    # SQLite's temporary file: unlinked from its directory at once, readable by its owner only.
    new = {fd: path for fd, path in _open_files().items() if fd not in before}
    deleted = [fd for fd, path in new.items() if path.endswith(" (deleted)")]
    assert len(deleted) == 1, new
    assert os.stat(f"/proc/self/fd/{deleted[0]}").st_mode & 0o777 == 0o600
    assert len(found) == 50_000
    found.close()
    assert set(_open_files()) <= set(before)


# --- arguments, files, stdin -------------------------------------------------------------------


def test_arguments_are_stripped_and_numbered_by_position() -> None:
    got = collect(args=[" https://a.example/1 ", "https://a.example/2", ""])
    assert got == [
        InputUrl("https://a.example/1", "argument", 1),
        InputUrl("https://a.example/2", "argument", 2),
        # A blank argument (an unset "$URL") is kept so validation reports it.
        InputUrl("", "argument", 3),
    ]


def test_file_comments_blanks_bom_crlf_and_line_numbers(tmp_path: Path) -> None:
    path = write(
        tmp_path / "urls.txt",
        b"\xef\xbb\xbfhttps://a.example/1\r\n"
        b"# a comment\r\n"
        b"\r\n"
        b"   \t  \r\n"
        b"  https://a.example/2  \r\n"
        b"   # indented comment\n"
        b"https://a.example/#frag\n"
        b"https://a.example/3",  # no final newline
    )
    assert collect(files=[path]) == [
        InputUrl("https://a.example/1", path, 1),
        InputUrl("https://a.example/2", path, 5),
        InputUrl("https://a.example/#frag", path, 7),
        InputUrl("https://a.example/3", path, 8),
    ]


def test_file_keeps_unicode_line_separators_inside_a_line(tmp_path: Path) -> None:
    # U+2028 is not a line break in a URL file; validation must see and reject it.
    path = write(
        tmp_path / "urls.txt", "https://a.example/x\u2028y\nhttps://b.example/ü\n".encode()
    )
    got = collect(files=[path])
    assert [(item.url, item.line) for item in got] == [
        ("https://a.example/x\u2028y", 1),
        ("https://b.example/ü", 2),
    ]
    checked = list(check_inputs(got))
    assert isinstance(checked[0], InvalidInput)
    assert (checked[1].url, checked[1].line) == ("https://b.example/%C3%BC", 2)  # as sent


def test_bom_is_only_stripped_on_line_one(tmp_path: Path) -> None:
    path = write(tmp_path / "urls.txt", "https://a.example/\n\ufeffhttps://b.example/\n".encode())
    got = collect(files=[path])
    assert got[1].url == "\ufeffhttps://b.example/"
    assert validate_url(got[1].url) is not None


def test_stdin_with_dash(tmp_path: Path) -> None:
    got = collect(files=["-"], stdin="\ufeffhttps://s.example/1\r\n# c\n\nhttps://s.example/2\n")
    assert got == [
        InputUrl("https://s.example/1", "<stdin>", 1),
        InputUrl("https://s.example/2", "<stdin>", 4),
    ]


def test_default_stdin_is_sys_stdin_read_as_utf8_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = io.BytesIO("https://s.example/ü\r\n#x\nhttps://s.example/2\n".encode())
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(raw, encoding="latin-1"))
    got = list(iter_inputs(InputSpec(files=("-",))))
    assert got == [
        InputUrl("https://s.example/ü", "<stdin>", 1),
        InputUrl("https://s.example/2", "<stdin>", 3),
    ]


def test_order_is_arguments_then_files_in_order_then_sitemaps(tmp_path: Path) -> None:
    first = write(tmp_path / "first.txt", b"https://f.example/1\n")
    second = write(tmp_path / "second.txt", b"https://f.example/2\n")
    sitemap = write(tmp_path / "map.xml", urlset("https://m.example/1"))
    got = collect(
        args=["https://a.example/1"],
        files=[second, "-", first],
        sitemaps=[sitemap],
        stdin="https://s.example/1\n",
    )
    assert [(item.url, item.source) for item in got] == [
        ("https://a.example/1", "argument"),
        ("https://f.example/2", second),
        ("https://s.example/1", "<stdin>"),
        ("https://f.example/1", first),
        ("https://m.example/1", sitemap),
    ]


def test_missing_file_raises_input_error_naming_it_before_anything_is_read(
    tmp_path: Path,
) -> None:
    missing = str(tmp_path / "nope.txt")
    with pytest.raises(InputError) as info:
        # Fails on the call itself, not half-way through a run.
        iter_inputs(InputSpec(urls=("https://a.example/",), files=(missing,)))
    assert missing in str(info.value)
    assert "not found" in str(info.value)


def test_directory_as_url_file_raises_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="directory"):
        collect(files=[str(tmp_path)])


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads anything")
def test_unreadable_file_raises_input_error(tmp_path: Path) -> None:
    path = tmp_path / "secret.txt"
    path.write_text("https://a.example/\n")
    path.chmod(0)
    with pytest.raises(InputError, match="permission denied"):
        collect(files=[str(path)])


def test_file_removed_after_the_check_still_raises_input_error(tmp_path: Path) -> None:
    path = tmp_path / "gone.txt"
    path.write_text("https://a.example/\n")
    inputs = iter_inputs(InputSpec(urls=("https://a.example/",), files=(str(path),)))
    path.unlink()
    assert next(inputs).source == "argument"
    with pytest.raises(InputError, match=r"cannot read URL file .*gone\.txt"):
        next(inputs)


def test_non_utf8_file_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path / "latin1.txt", b"https://a.example/\n# ok\nhttps://a.example/\xfc\n")
    inputs = iter_inputs(InputSpec(files=(path,)))
    assert next(inputs).line == 1
    with pytest.raises(InputError) as info:
        next(inputs)
    assert f"{path}:3: not UTF-8" in str(info.value)
    assert info.value.hint


def test_stdin_decode_error_becomes_input_error() -> None:
    class BadStream:
        def __iter__(self) -> Iterator[str]:
            yield "https://a.example/\n"
            raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")

    with pytest.raises(InputError, match="<stdin>: not UTF-8 text after line 1"):
        list(classic([], ["-"], [], stdin=cast(TextIO, BadStream())))


# --- streaming ---------------------------------------------------------------------------------

LINES = 200_000


def test_file_is_streamed_not_loaded(tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    lines = [f"https://cdn.example.com/assets/{i:07d}.js" for i in range(LINES)]
    path.write_text("\n".join(lines) + "\n")
    size = path.stat().st_size

    tracemalloc.start()
    try:
        inputs = classic([], [str(path)], [])
        first = next(inputs)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert first == InputUrl(lines[0], str(path), 1)
    # Holding the file's lines (or its text) would take several times its size.
    assert peak < size / 10, f"peak {peak} bytes for a {size}-byte file"

    # Rewrite the last line in place: a reader that already slurped the file cannot see it.
    changed = "https://new.example.com/assets/9999999.js"
    assert len(changed) == len(lines[-1])
    with path.open("r+b") as handle:
        handle.seek(size - len(lines[-1]) - 1)
        handle.write(changed.encode())

    count, last = 1, first
    for item in inputs:
        count, last = count + 1, item
    assert count == LINES
    assert last == InputUrl(changed, str(path), LINES)


def test_stdin_is_streamed_not_loaded() -> None:
    lines_read = 0

    def stream() -> Iterator[str]:
        nonlocal lines_read
        for i in range(10_000):
            lines_read += 1
            yield f"https://s.example/{i}\n"

    inputs = classic([], ["-"], [], stdin=cast(TextIO, stream()))
    assert next(inputs).url == "https://s.example/0"
    assert lines_read == 1
    assert sum(1 for _ in inputs) == 9_999


def test_sitemap_is_streamed_and_entries_are_cleared(tmp_path: Path) -> None:
    entries = 20_000
    path = write(
        tmp_path / "big.xml",
        urlset(*(f"https://cdn.example.com/assets/{i:07d}.js" for i in range(entries))),
    )
    size = os.path.getsize(path)

    tracemalloc.start()
    try:
        inputs = classic([], [], [path])
        first = next(inputs)
        _, first_peak = tracemalloc.get_traced_memory()
        count = 1 + sum(1 for _ in inputs)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert first.url == "https://cdn.example.com/assets/0000000.js"
    assert count == entries
    assert first_peak < size / 4, f"first item cost {first_peak} bytes of a {size}-byte file"
    # Keeping every <url> element alive would need far more than the file's size.
    assert peak < size / 2, f"peak {peak} bytes for a {size}-byte sitemap"


# --- local sitemaps ---------------------------------------------------------------------------


def test_urlset_with_namespace_and_extensions(tmp_path: Path) -> None:
    path = write(
        tmp_path / "map.xml",
        f"""<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="{NS}" xmlns:image="http://www.google.com/schemas/sitemap-image/1.1"
        xmlns:xhtml="http://www.w3.org/1999/xhtml">
  <url>
    <loc>
      https://example.com/a?x=1&amp;y=2
    </loc>
    <image:image><image:loc>https://img.example.com/not-this.png</image:loc></image:image>
    <xhtml:link rel="alternate" hreflang="de" href="https://example.com/de/a"/>
  </url>
  <url><loc>https://example.com/ü</loc></url>
  <url><loc></loc></url>
  <url><loc>  </loc></url>
</urlset>""".encode(),
    )
    assert collect(sitemaps=[path]) == [
        InputUrl("https://example.com/a?x=1&y=2", path, None),
        InputUrl("https://example.com/ü", path, None),
    ]


def test_urlset_without_namespace_or_with_another_prefix(tmp_path: Path) -> None:
    plain = write(tmp_path / "plain.xml", urlset("https://example.com/1", ns=""))
    prefixed = write(
        tmp_path / "prefixed.xml",
        f'<sm:urlset xmlns:sm="{NS}"><sm:url><sm:loc>https://example.com/2</sm:loc>'
        "</sm:url></sm:urlset>".encode(),
    )
    assert url_list(collect(sitemaps=[plain, prefixed])) == [
        "https://example.com/1",
        "https://example.com/2",
    ]


def test_loc_outside_url_entries_is_ignored(tmp_path: Path) -> None:
    path = write(
        tmp_path / "odd.xml",
        b"<urlset><loc>https://example.com/stray</loc>"
        b"<url><loc>https://example.com/ok</loc><x><loc>https://example.com/deep</loc></x></url>"
        b"</urlset>",
    )
    assert url_list(collect(sitemaps=[path])) == ["https://example.com/ok"]


def test_sitemap_index_with_nested_local_files(tmp_path: Path) -> None:
    first = tmp_path / "first.xml"
    second = tmp_path / "second.xml"
    first.write_bytes(urlset("https://example.com/1", "https://example.com/2"))
    second.write_bytes(urlset("https://example.com/3"))
    index = write(tmp_path / "index.xml", sitemapindex(first, f"  {second}  "))
    assert collect(sitemaps=[index]) == [
        InputUrl("https://example.com/1", str(first), None),
        InputUrl("https://example.com/2", str(first), None),
        InputUrl("https://example.com/3", str(second), None),
    ]


def test_a_local_indexs_relative_path_is_relative_to_the_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    (site / "maps").mkdir(parents=True)
    (site / "maps" / "pages.xml").write_bytes(urlset("https://example.com/p"))
    index = write(site / "index.xml", sitemapindex("maps/pages.xml"))
    monkeypatch.chdir(tmp_path)  # not where the index is
    assert url_list(collect(sitemaps=[index])) == ["https://example.com/p"]


def test_sitemap_index_accepts_file_urls(tmp_path: Path) -> None:
    child = tmp_path / "child map.xml"
    child.write_bytes(urlset("https://example.com/1"))
    index = write(tmp_path / "index.xml", sitemapindex(child.as_uri()))
    assert url_list(collect(sitemaps=[index])) == ["https://example.com/1"]


def test_each_sitemap_is_visited_once(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.xml", tmp_path / "b.xml", tmp_path / "c.xml"
    a.write_bytes(sitemapindex(b, c, c))
    b.write_bytes(sitemapindex(a, c))  # a cycle back to a
    c.write_bytes(urlset("https://example.com/c"))
    got = collect(sitemaps=[str(a), str(c), str(tmp_path / "." / "c.xml")])
    assert got == [InputUrl("https://example.com/c", str(c), None)]


def test_nesting_depth_is_bounded(tmp_path: Path) -> None:
    leaf = tmp_path / "leaf.xml"
    leaf.write_bytes(urlset("https://example.com/leaf"))
    level3 = tmp_path / "level3.xml"
    level3.write_bytes(sitemapindex(leaf))
    level2 = tmp_path / "level2.xml"
    level2.write_bytes(sitemapindex(level3))
    level1 = tmp_path / "level1.xml"
    level1.write_bytes(sitemapindex(level2))

    # Three levels: index -> index -> urlset is fine.
    assert url_list(collect(sitemaps=[str(level2)])) == ["https://example.com/leaf"]
    # Four levels are refused, naming the index that went too deep.
    with pytest.raises(InputError) as info:
        collect(sitemaps=[str(level1)])
    assert str(level3) in str(info.value)
    assert "deeper than 3" in str(info.value)


def test_gzip_is_detected_by_content_not_name(tmp_path: Path) -> None:
    gzipped = write(tmp_path / "map.xml", gzip.compress(urlset("https://example.com/gz")))
    not_gzipped = write(tmp_path / "map.xml.gz", urlset("https://example.com/plain"))
    assert url_list(collect(sitemaps=[gzipped, not_gzipped])) == [
        "https://example.com/gz",
        "https://example.com/plain",
    ]


def test_gzipped_index_and_children(tmp_path: Path) -> None:
    child = tmp_path / "child.xml.gz"
    child.write_bytes(gzip.compress(urlset("https://example.com/1")))
    index = write(tmp_path / "index.xml.gz", gzip.compress(sitemapindex(child)))
    assert url_list(collect(sitemaps=[index])) == ["https://example.com/1"]


def test_corrupt_gzip_raises_input_error(tmp_path: Path) -> None:
    data = gzip.compress(urlset(*(f"https://example.com/{i}" for i in range(100))))
    truncated = write(tmp_path / "truncated.xml.gz", data[: len(data) // 2])
    garbage = write(tmp_path / "garbage.xml.gz", b"\x1f\x8b" + b"garbage" * 10)
    for path in (truncated, garbage):
        with pytest.raises(InputError) as info:
            collect(sitemaps=[path])
        assert path in str(info.value)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"<urlset><url><loc>https://example.com/</loc></url>",
        b"<urlset><url><loc>https://example.com/</url></urlset>",
        b"not xml at all",
        b"<urlset></urlset><urlset></urlset>",
    ],
)
def test_malformed_sitemap_raises_input_error_naming_it(tmp_path: Path, data: bytes) -> None:
    path = write(tmp_path / "broken.xml", data)
    with pytest.raises(InputError) as info:
        collect(sitemaps=[path])
    assert f"malformed sitemap {path}" in str(info.value)


def test_malformed_sitemap_after_some_entries(tmp_path: Path) -> None:
    path = write(tmp_path / "broken.xml", urlset("https://example.com/1")[:-12])
    inputs = classic([], [], [path])
    with pytest.raises(InputError, match="malformed sitemap"):
        list(inputs)


def test_non_sitemap_xml_is_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path / "page.xml", b"<html><body><loc>https://example.com/</loc></body></html>"
    )
    with pytest.raises(InputError, match=r"not a sitemap: its root element is <html>"):
        collect(sitemaps=[path])


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<urlset><url><loc>https://example.com/&lol3;</loc></url></urlset>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE urlset SYSTEM "file:///etc/passwd">
<urlset><url><loc>https://example.com/</loc></url></urlset>"""


@pytest.mark.parametrize("data", [BILLION_LAUGHS, EXTERNAL_ENTITY, b"<!ENTITY x 'y'><urlset/>"])
def test_dtd_is_refused(tmp_path: Path, data: bytes) -> None:
    path = write(tmp_path / "evil.xml", data)
    with pytest.raises(InputError) as info:
        collect(sitemaps=[path])
    assert "DTD" in str(info.value)
    assert path in str(info.value)


def test_dtd_is_refused_inside_gzip(tmp_path: Path) -> None:
    path = write(tmp_path / "evil.xml", gzip.compress(BILLION_LAUGHS))
    with pytest.raises(InputError, match="DTD"):
        collect(sitemaps=[path])


@pytest.mark.parametrize("offset", [1, 4, 8])
def test_dtd_split_across_reads_is_refused(tmp_path: Path, offset: int) -> None:
    # The parser reads 16 KiB at a time: put "<!DOCTYPE" across that boundary.
    head = b'<?xml version="1.0"?><!--'
    padding = b"x" * (16 * 1024 - offset - len(head) - 3)
    data = head + padding + b"-->" + b'<!DOCTYPE urlset SYSTEM "x"><urlset/>'
    assert data.index(b"<!DOCTYPE") == 16 * 1024 - offset
    path = write(tmp_path / "split.xml", data)
    with pytest.raises(InputError, match="DTD"):
        collect(sitemaps=[path])


def test_utf16_sitemap_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "utf16.xml", urlset("https://example.com/").decode().encode("utf-16"))
    with pytest.raises(InputError, match="not UTF-8"):
        collect(sitemaps=[path])


def test_oversized_sitemap_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sitemap, "MAX_SITEMAP_BYTES", 50_000)
    data = urlset(*(f"https://example.com/{i}" for i in range(5_000)))
    path = write(tmp_path / "bomb.xml", gzip.compress(data))
    inputs = classic([], [], [path])
    with pytest.raises(InputError, match="larger than"):
        for _ in inputs:
            pass


def test_missing_sitemap_raises_input_error_on_the_call(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.xml")
    with pytest.raises(InputError, match=r"sitemap not found: .*nope\.xml"):
        classic([], [], [missing])


def test_missing_nested_sitemap_names_it_and_its_index(tmp_path: Path) -> None:
    missing = tmp_path / "nope.xml"
    index = write(tmp_path / "index.xml", sitemapindex(missing))
    with pytest.raises(InputError) as info:
        collect(sitemaps=[index])
    assert str(missing) in str(info.value)
    assert info.value.hint is not None
    assert index in info.value.hint


# --- remote sitemaps --------------------------------------------------------------------------


@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False


@dataclass
class SitemapServer:
    base: str
    routes: dict[str, Route]
    requests: list[tuple[str, dict[str, str]]]


@pytest.fixture(scope="module")
def _running_server() -> Iterator[SitemapServer]:
    routes: dict[str, Route] = {}
    requests: list[tuple[str, dict[str, str]]] = []
    release = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append((self.path, dict(self.headers)))
            route = routes.get(self.path, Route(404, b"not found"))
            if route.hang:
                release.wait(5)
                return
            self.send_response(route.status)
            for name, value in route.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(route.body)))
            self.end_headers()
            self.wfile.write(route.body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.block_on_close = False
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield SitemapServer(f"http://127.0.0.1:{httpd.server_port}", routes, requests)
    finally:
        release.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture
def server(_running_server: SitemapServer, monkeypatch: pytest.MonkeyPatch) -> SitemapServer:
    # Loopback only: a proxy from the environment must not intercept the test server.
    for name in (
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ):
        monkeypatch.delenv(name, raising=False)
    _running_server.routes.clear()
    _running_server.requests.clear()
    return _running_server


def test_remote_urlset(server: SitemapServer) -> None:
    server.routes["/sitemap.xml"] = Route(
        body=urlset("https://example.com/1", "https://example.com/2")
    )
    ref = server.base + "/sitemap.xml"
    assert collect(sitemaps=[ref]) == [
        InputUrl("https://example.com/1", ref, None),
        InputUrl("https://example.com/2", ref, None),
    ]
    path, headers = server.requests[0]
    assert path == "/sitemap.xml"
    assert headers["User-Agent"].startswith("prewarm-cli/")


def test_remote_gzipped_sitemaps(server: SitemapServer) -> None:
    data = urlset("https://example.com/gz")
    server.routes["/a.xml.gz"] = Route(
        body=gzip.compress(data), headers={"Content-Type": "application/x-gzip"}
    )
    # Gzip detected by content even when the name and type say plain XML.
    server.routes["/b.xml"] = Route(
        body=gzip.compress(data), headers={"Content-Type": "application/xml"}
    )
    # Transfer compression is undone by the client; the body underneath is plain XML.
    server.routes["/c.xml"] = Route(body=gzip.compress(data), headers={"Content-Encoding": "gzip"})
    # Both at once: a .gz file served with Content-Encoding: gzip.
    server.routes["/d.xml.gz"] = Route(
        body=gzip.compress(gzip.compress(data)), headers={"Content-Encoding": "gzip"}
    )
    refs = [server.base + p for p in ("/a.xml.gz", "/b.xml", "/c.xml", "/d.xml.gz")]
    assert url_list(collect(sitemaps=refs)) == ["https://example.com/gz"] * 4


def test_a_compressed_reply_is_inflated_a_read_at_a_time(server: SitemapServer) -> None:
    # 4 MB of sitemap in 5 KB of gzip Content-Encoding, arriving in one network chunk: it is
    # inflated a read at a time. httpx inflated the whole chunk at once, and each 16 KB read
    # then copied the rest of it (a 300 MB one took minutes of CPU).
    entry = b"<url><loc>https://example.com/x</loc></url>"
    body = gzip.compress(urlset().replace(b"</urlset>", entry * 100_000 + b"</urlset>"))
    assert len(body) < 64 * 1024
    server.routes["/big.xml"] = Route(body=body, headers={"Content-Encoding": "gzip"})
    server.routes["/small.xml"] = Route(
        body=gzip.compress(urlset()), headers=server.routes["/big.xml"].headers
    )
    assert not list(sitemap.iter_sitemaps([server.base + "/small.xml"], timeout=10))  # imports
    tracemalloc.start()
    try:
        n_urls = sum(1 for _ in sitemap.iter_sitemaps([server.base + "/big.xml"], timeout=10))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n_urls == 100_000
    assert peak < 2 * 1024 * 1024, peak


def test_remote_index_with_remote_children_and_redirects(server: SitemapServer) -> None:
    server.routes["/index.xml"] = Route(
        body=sitemapindex(server.base + "/one.xml", server.base + "/moved.xml")
    )
    server.routes["/one.xml"] = Route(body=urlset("https://example.com/1"))
    server.routes["/moved.xml"] = Route(301, headers={"Location": "/two.xml.gz"})
    server.routes["/two.xml.gz"] = Route(body=gzip.compress(urlset("https://example.com/2")))
    got = collect(sitemaps=[server.base + "/index.xml"])
    assert got == [
        InputUrl("https://example.com/1", server.base + "/one.xml", None),
        InputUrl("https://example.com/2", server.base + "/moved.xml", None),
    ]


def test_remote_index_cannot_point_at_local_files(server: SitemapServer, tmp_path: Path) -> None:
    local = tmp_path / "local.xml"
    local.write_bytes(urlset("https://example.com/secret"))
    server.routes["/index.xml"] = Route(body=sitemapindex(local))
    with pytest.raises(InputError, match="not an http"):
        collect(sitemaps=[server.base + "/index.xml"])


def test_a_public_index_cannot_lead_to_this_machine_or_its_network(
    server: SitemapServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The index is on a public name (reached through the test server as an HTTP proxy); what
    # it lists, or where it redirects, may not be an address of this machine or its network
    # (a CI runner's cloud metadata service): refused before any request is sent there.
    monkeypatch.setenv("HTTP_PROXY", server.base)
    monkeypatch.setenv("NO_PROXY", "")
    index = "http://sitemaps.example/index.xml"
    server.routes[index] = Route(body=sitemapindex("http://169.254.169.254/latest/meta-data/"))
    with pytest.raises(InputError, match="this machine or its network"):
        collect(sitemaps=[index])
    moved = "http://sitemaps.example/moved.xml"
    server.routes[moved] = Route(302, headers={"Location": server.base + "/inside.xml"})
    server.routes["/inside.xml"] = Route(body=urlset("https://example.com/1"))
    with pytest.raises(InputError, match=r"redirects to .* this machine or its network"):
        collect(sitemaps=[moved])
    assert [path for path, _ in server.requests] == [index, moved]
    # Given directly, an address of this machine is the user's choice.
    monkeypatch.delenv("HTTP_PROXY")
    assert url_list(collect(sitemaps=[server.base + "/inside.xml"])) == ["https://example.com/1"]


@pytest.mark.parametrize(
    ("host", "internal"),
    [
        ("169.254.169.254", True),  # a cloud's metadata service
        ("2852039166", True),  # the same in decimal, as getaddrinfo reads it
        ("127.1", True),
        ("100.100.100.200", True),  # shared address space (100.64/10): Alibaba's metadata
        ("10.0.0.7", True),
        ("[::1]", True),
        ("localhost", True),
        ("93.184.216.34", False),
        ("sitemaps.invalid", False),  # does not resolve: its fetch fails on its own
    ],
)
def test_what_counts_as_this_machine_or_its_network(host: str, internal: bool) -> None:
    assert sitemap._internal_host(host) is internal


def test_a_redirect_from_https_to_http_is_refused() -> None:
    import httpx

    state = sitemap._SitemapState(timeout=1.0)
    state.fetching = "https://sitemaps.example/sitemap.xml"
    with pytest.raises(InputError, match="not https"):
        state._check_redirect(httpx.Request("GET", "http://sitemaps.example/sitemap.xml"))
    state._check_redirect(httpx.Request("GET", "https://cdn.example/sitemap.xml"))


def test_sitemaps_beyond_the_cap_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sitemap, "MAX_SITEMAPS", 3)
    children = []
    for i in range(4):
        child = tmp_path / f"s{i}.xml"
        child.write_bytes(urlset(f"https://example.com/{i}"))
        children.append(child)
    (tmp_path / "three.xml").write_bytes(sitemapindex(*children[:3]))
    assert len(collect(sitemaps=[str(tmp_path / "three.xml")])) == 3  # as many as allowed
    (tmp_path / "index.xml").write_bytes(sitemapindex(*children))
    with pytest.raises(InputError, match="more than 3 sitemaps"):
        collect(sitemaps=[str(tmp_path / "index.xml")])


def test_remote_404_raises_input_error(server: SitemapServer) -> None:
    ref = server.base + "/missing.xml"
    with pytest.raises(InputError) as info:
        collect(sitemaps=[ref])
    assert ref in str(info.value)
    assert "404" in str(info.value)


def test_remote_nested_404_names_its_index(server: SitemapServer) -> None:
    server.routes["/index.xml"] = Route(body=sitemapindex(server.base + "/gone.xml"))
    with pytest.raises(InputError) as info:
        collect(sitemaps=[server.base + "/index.xml"])
    assert "/gone.xml: HTTP 404" in str(info.value)
    assert info.value.hint is not None
    assert "/index.xml" in info.value.hint


def test_remote_malformed_and_dtd(server: SitemapServer) -> None:
    server.routes["/bad.xml"] = Route(body=b"<urlset><url>")
    server.routes["/evil.xml"] = Route(body=BILLION_LAUGHS)
    with pytest.raises(InputError, match=r"malformed sitemap .*/bad\.xml"):
        collect(sitemaps=[server.base + "/bad.xml"])
    with pytest.raises(InputError, match="DTD"):
        collect(sitemaps=[server.base + "/evil.xml"])


def test_remote_timeout_raises_input_error(server: SitemapServer) -> None:
    server.routes["/slow.xml"] = Route(hang=True)
    with pytest.raises(InputError, match=r"cannot fetch sitemap .*/slow\.xml"):
        collect(sitemaps=[server.base + "/slow.xml"], timeout=0.2)


def test_remote_connection_refused_raises_input_error() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ref = f"http://127.0.0.1:{port}/sitemap.xml"
    with pytest.raises(InputError, match="cannot fetch sitemap"):
        collect(sitemaps=[ref])


def test_remote_sitemap_is_not_fetched_until_reached(server: SitemapServer) -> None:
    server.routes["/sitemap.xml"] = Route(body=urlset("https://example.com/1"))
    inputs = classic(["https://a.example/"], [], [server.base + "/sitemap.xml"])
    assert next(inputs).source == "argument"
    assert server.requests == []
    assert next(inputs).url == "https://example.com/1"
    assert list(inputs) == []


def test_match_key_joins_what_is_one_url_and_keeps_apart_what_is_not() -> None:
    from prewarm_cli.inputs import match_key

    same = [
        ("https://a.example.com/dlfail(2).js", "https://a.example.com/dlfail%282%29.js"),
        ("https://a.example.com/~u/x", "https://a.example.com/%7Eu/x"),
        ("https://a.example.com/café", "https://a.example.com/caf%c3%a9"),
    ]
    for one, other in same:
        assert match_key(one) == match_key(other), (one, other)
    apart = [  # an escaped delimiter is data, not the delimiter (RFC 3986 §2.2)
        ("https://a.example.com/s?q=a&b", "https://a.example.com/s?q=a%26b"),
        ("https://a.example.com/s?q=a+b", "https://a.example.com/s?q=a%2Bb"),
        ("https://a.example.com/a/b", "https://a.example.com/a%2Fb"),
    ]
    for one, other in apart:
        assert match_key(one) != match_key(other), (one, other)


def test_a_sitemap_error_says_its_urls_without_their_passwords(monkeypatch) -> None:
    """In the message and in the hint (a text sitemap's: -i URL, a nested one's index)."""
    from prewarm_cli.errors import InputError
    from prewarm_cli.inputs import sitemap

    def failing(ref: str, *_args: object, **_kw: object) -> Iterator[object]:
        raise InputError(f"malformed sitemap {ref}: x", hint=f"listed in {ref}")
        yield

    monkeypatch.setattr(sitemap, "_iter_sitemap", failing)
    with pytest.raises(InputError) as info:
        list(sitemap.iter_sitemaps(["https://u:p@ss@h.example/s.txt"], timeout=1))
    assert info.value.message == "malformed sitemap https://u:***@h.example/s.txt: x"
    assert info.value.hint == "listed in https://u:***@h.example/s.txt"
