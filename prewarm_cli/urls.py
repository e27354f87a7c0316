"""URL input: arguments, files, stdin and sitemaps, streamed and validated."""

from __future__ import annotations

import gzip
import io
import os
import re
import stat
import sys
import unicodedata
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol, TextIO
from urllib.parse import quote, unquote, urlsplit

from prewarm_cli import __version__
from prewarm_cli.errors import InputError

if TYPE_CHECKING:
    import httpx

# 2048 is the de facto safe URL length: browsers, CDN cache keys and vendor APIs commonly
# cap URLs around 2 KB, and a longer one is almost always a generated mistake. It is checked
# on the percent-encoded form, since that is what providers receive.
MAX_URL_LENGTH = 2048

# The sitemap protocol caps a file at 50 MB uncompressed; allow twice that for sloppy
# generators while still stopping a gzip bomb or an endless response.
MAX_SITEMAP_BYTES = 100 * 1024 * 1024

# The given sitemap is level 1; an index may nest others down to this level.
MAX_SITEMAP_DEPTH = 3

ARGUMENT_SOURCE = "argument"
STDIN_SOURCE = "<stdin>"

# Characters quote() leaves alone: reserved (RFC 3986 gen-delims and sub-delims), unreserved
# punctuation, and '%' so existing escapes survive.
_SAFE = "/?#[]@!$&'()*+,;=:%~-._"
_USERINFO_SAFE = "!$&'()*+,;=:%~-._"

# RFC 3986 appendix B, reduced to scheme, authority and everything after it.
_URI_RE = re.compile(r"(?:([^:/?#]+):)?(?://([^/?#]*))?(.*)", re.DOTALL)
_ASCII_SPACE_OR_CONTROL = re.compile(r"[\x00-\x20\x7f]")
_BAD_HOST_CHARS = frozenset('<>"\\^`{|}')
# Joiners are legitimate inside IDNA labels of some scripts; other format characters
# (zero-width space, bidi overrides, BOM) are invisible copy-paste debris or spoofing.
_ALLOWED_FORMAT_CHARS = frozenset("\u200c\u200d")
_DTD_MARKERS = (b"<!DOCTYPE", b"<!ENTITY")
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class InputUrl:
    """One URL as read, with where it came from."""

    url: str
    source: str
    line: int | None


@dataclass(frozen=True)
class InvalidInput:
    """An input that failed validation, and why."""

    input: str
    source: str
    line: int | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "input": self.input,
            "source": self.source,
            "line": self.line,
            "reason": self.reason,
        }

    def __str__(self) -> str:
        if self.line is None:
            where = self.source
        elif self.source == ARGUMENT_SOURCE:
            where = f"argument {self.line}"
        else:
            where = f"{self.source}:{self.line}"
        return f"{where}: {_printable(self.input)}: {self.reason}"


def _printable(text: str, limit: int = 200) -> str:
    """Text safe to print on a terminal: invisible characters escaped, long text cut."""
    # Escaping keeps a hostile line from sending terminal escapes, and shows the user the
    # invisible character the reason talks about.
    out = []
    for ch in text[:limit]:
        if ch == "\\":
            out.append("\\\\")
        elif ch.isprintable() if ch.isascii() else _char_problem(ch) is None:
            out.append(ch)
        else:
            code = ord(ch)
            out.append(
                f"\\x{code:02x}"
                if code < 0x100
                else f"\\u{code:04x}"
                if code < 0x10000
                else f"\\U{code:08x}"
            )
    if len(text) > limit:
        out.append(f"… ({len(text)} characters)")
    return "".join(out)


def _char_name(ch: str) -> str:
    name = unicodedata.name(ch, "")
    return f"U+{ord(ch):04X} {name}" if name else f"U+{ord(ch):04X}"


def _char_problem(ch: str) -> str | None:
    """Why one character cannot appear in a URL, or None."""
    category = unicodedata.category(ch)
    if category == "Cc":
        return f"contains a control character ({_char_name(ch)})"
    if ch.isspace() or category in ("Zs", "Zl", "Zp"):
        return f"contains whitespace ({_char_name(ch)})"
    if category == "Cf" and ch not in _ALLOWED_FORMAT_CHARS:
        return f"contains an invisible formatting character ({_char_name(ch)})"
    if category == "Cs":
        # Lone surrogates come from undecodable bytes in argv; they cannot be encoded.
        return f"contains an undecodable character ({_char_name(ch)})"
    return None


def _chars_problem(url: str) -> str | None:
    match = _ASCII_SPACE_OR_CONTROL.search(url)
    if match:
        return _char_problem(match.group())
    if url.isascii():
        return None
    for ch in url:
        if not ch.isascii():
            problem = _char_problem(ch)
            if problem:
                return problem
    return None


def _split_hostport(authority: str) -> tuple[str, str, str | None]:
    """Userinfo (with its '@'), host, and port text (None when there is no ':')."""
    userinfo, at, hostport = authority.rpartition("@")
    if hostport.startswith("["):
        end = hostport.find("]")
        if end != -1:
            host, rest = hostport[: end + 1], hostport[end + 1 :]
            return userinfo + at, host, rest[1:] if rest.startswith(":") else None
    host, colon, port = hostport.rpartition(":")
    if not colon:
        return userinfo + at, hostport, None
    return userinfo + at, host, port


def validate_url(url: str) -> str | None:
    """None when the URL can be sent to a CDN, else a short reason."""
    if not url:
        return "empty URL"
    if len(url) > MAX_URL_LENGTH:
        return f"longer than {MAX_URL_LENGTH} characters ({len(url)})"
    problem = _chars_problem(url)
    if problem:
        return problem
    if "*" in url:
        return "contains a wildcard '*'; list URLs explicitly"
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        return f"cannot be parsed ({exc})"
    if parts.scheme not in ("http", "https"):
        return "scheme must be http or https"
    if "@" in parts.netloc:
        return "contains credentials (user:password@); remove them"
    _, host, port = _split_hostport(parts.netloc)
    if not host or host == "[]":
        return "no host"
    if any(ch in _BAD_HOST_CHARS for ch in host):
        return "host contains an invalid character"
    if port is not None and not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        return "port must be a number from 1 to 65535"
    if not url.isascii():
        encoded = len(to_ascii(url))
        if encoded > MAX_URL_LENGTH:
            return f"longer than {MAX_URL_LENGTH} characters once percent-encoded ({encoded})"
    return None


def check_inputs(inputs: Iterable[InputUrl]) -> Iterator[InputUrl | InvalidInput]:
    """Each input as is, or as an InvalidInput with the reason."""
    for item in inputs:
        reason = validate_url(item.url)
        yield item if reason is None else InvalidInput(item.url, item.source, item.line, reason)


def host_of(url: str) -> str:
    """Lower-case host without port, as given (not IDNA-encoded); '' when there is none."""
    try:
        return urlsplit(url).hostname or ""
    except ValueError:
        return ""


def is_ascii(url: str) -> bool:
    """True when the URL needs no encoding for ASCII-only providers."""
    return url.isascii()


def _idna(host: str) -> str:
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return host


def to_ascii(url: str) -> str:
    """RFC 3986 form: IDNA host, non-ASCII and spaces percent-encoded, escapes kept."""
    if url.isascii():
        # Re-encoding ASCII could change the cache key the CDN sees; send it as given.
        return url
    match = _URI_RE.fullmatch(url)
    if match is None:  # pragma: no cover - the pattern matches every string
        return quote(url, safe=_SAFE)
    scheme, authority, rest = match.groups()
    out = []
    if scheme is not None:
        out.append(quote(scheme, safe="+-.") + ":")
    if authority is not None:
        userinfo, host, port = _split_hostport(authority)
        out.append("//")
        out.append(quote(userinfo, safe=_USERINFO_SAFE + "@"))
        out.append(host if host.isascii() else _idna(host))
        if port is not None:
            out.append(":" + quote(port, safe=""))
    out.append(quote(rest, safe=_SAFE))
    return "".join(out)


def unique(items: Iterable[str]) -> Iterator[str]:
    """Items in order, each once."""
    seen: set[str] = set()
    for item in items:
        if item not in seen:
            seen.add(item)
            yield item


# --- reading ---------------------------------------------------------------------------------


def iter_inputs(
    args: Sequence[str],
    files: Sequence[str],
    sitemaps: Sequence[str],
    *,
    stdin: TextIO | None = None,
    timeout: float = 30.0,
) -> Iterator[InputUrl]:
    """Arguments, then files ('-' is stdin), then sitemaps, streamed; not validated."""
    # Local paths are checked now, so a typo fails before anything else is read; stat rather
    # than open, since opening a FIFO such as <(cmd) twice would lose its data.
    for path in files:
        if path != "-":
            _check_readable(path, "URL file")
    for ref in sitemaps:
        if not _is_http(ref):
            _check_readable(_local_path(ref), "sitemap")
    return _generate(args, files, sitemaps, stdin, timeout)


def _generate(
    args: Sequence[str],
    files: Sequence[str],
    sitemaps: Sequence[str],
    stdin: TextIO | None,
    timeout: float,
) -> Iterator[InputUrl]:
    for position, arg in enumerate(args, 1):
        # Blank arguments are kept so that an unset "$URL" is reported, not silently dropped.
        yield InputUrl(arg.strip(), ARGUMENT_SOURCE, position)
    for path in files:
        yield from _iter_file(path, stdin)
    if sitemaps:
        state = _SitemapState(timeout)
        try:
            for ref in sitemaps:
                yield from _iter_sitemap(ref, 1, state, parent=None)
        finally:
            state.close()


def _check_readable(path: str, what: str) -> None:
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError as exc:
        raise InputError(f"{what} not found: {path}") from exc
    except OSError as exc:
        raise InputError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc
    if stat.S_ISDIR(mode):
        raise InputError(f"cannot read {what} {path}: it is a directory")
    if not os.access(path, os.R_OK):
        raise InputError(f"cannot read {what} {path}: permission denied")


def _iter_file(path: str, stdin: TextIO | None) -> Iterator[InputUrl]:
    if path == "-":
        if stdin is not None:
            yield from _iter_lines(stdin, STDIN_SOURCE)
            return
        if sys.stdin is None:
            raise InputError("cannot read URLs from stdin: there is none")
        buffer = getattr(sys.stdin, "buffer", None)
        if buffer is not None:
            yield from _iter_lines(_decoded_lines(buffer, STDIN_SOURCE), STDIN_SOURCE)
        else:
            yield from _iter_lines(sys.stdin, STDIN_SOURCE)
        return
    try:
        # Binary, decoded line by line, so a bad byte is reported with its exact line.
        with open(path, "rb") as handle:
            yield from _iter_lines(_decoded_lines(handle, path), path)
    except OSError as exc:
        raise InputError(f"cannot read URL file {path}: {exc.strerror or exc}") from exc


def _decoded_lines(lines: Iterable[bytes], source: str) -> Iterator[str]:
    for number, raw in enumerate(lines, 1):
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(
                f"{source}:{number}: not UTF-8 text (byte 0x{raw[exc.start]:02x})",
                hint="save the file as UTF-8",
            ) from exc


def _iter_lines(lines: Iterable[str], source: str) -> Iterator[InputUrl]:
    number = 0
    try:
        for number, raw in enumerate(lines, 1):
            # Universal newlines are not assumed: strip() drops the '\r' of CRLF files too.
            text = (raw.removeprefix("\ufeff") if number == 1 else raw).strip()
            if text and not text.startswith("#"):
                yield InputUrl(text, source, number)
    except UnicodeDecodeError as exc:
        raise InputError(f"{source}: not UTF-8 text after line {number}") from exc


# --- sitemaps --------------------------------------------------------------------------------


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


@dataclass
class _SitemapState:
    """What all the sitemaps of one run share: the visited set and the HTTP client."""

    timeout: float
    visited: set[str] = field(default_factory=set)
    _client: httpx.Client | None = field(default=None, init=False)

    def client(self) -> httpx.Client:
        if self._client is None:
            import httpx  # only a remote sitemap needs it; keep start-up fast

            self._client = httpx.Client(
                timeout=self.timeout,
                follow_redirects=True,
                verify=True,
                headers={"User-Agent": f"prewarm-cli/{__version__}"},
            )
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def _is_http(ref: str) -> bool:
    return ref[:8].lower().startswith(("http://", "https://"))


def _local_path(ref: str) -> str:
    if ref[:7].lower() == "file://":
        return unquote(urlsplit(ref).path)
    return ref


class _ChunkReader:
    """A read()-able view of an iterator of byte chunks, with peek."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""

    def peek(self, size: int) -> bytes:
        while len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        return self._buffer[:size]

    def read(self, size: int = -1, /) -> bytes:
        if size < 0:
            data = self._buffer + b"".join(self._chunks)
            self._buffer = b""
            return data
        while not self._buffer:
            chunk = next(self._chunks, None)
            if chunk is None:
                return b""
            self._buffer = chunk
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def seek(self, offset: int, /) -> int:
        raise io.UnsupportedOperation("a sitemap stream cannot seek")


class _SitemapGuard:
    """Passes the decoded bytes to the parser, refusing DTDs, non-UTF-8 and oversize input."""

    def __init__(self, source: _Readable, name: str) -> None:
        self._source = source
        self._name = name
        self._total = 0
        self._tail = b""

    def read(self, size: int = -1, /) -> bytes:
        data = self._source.read(size)
        if not data:
            return data
        self._total += len(data)
        if self._total > MAX_SITEMAP_BYTES:
            raise InputError(
                f"sitemap {self._name} is larger than {MAX_SITEMAP_BYTES // (1024 * 1024)} MiB"
            )
        # XML forbids NUL, so one means UTF-16/32, which sitemaps may not use; refusing it
        # also keeps the DTD scan below meaningful.
        if b"\x00" in data:
            raise InputError(f"sitemap {self._name} is not UTF-8 text")
        # Sitemaps never need a DTD; refusing one up front rules out entity expansion and
        # external entities whatever the parser would do with them. The tail catches a
        # marker split across two reads.
        window = self._tail + data
        if any(marker in window for marker in _DTD_MARKERS):
            raise InputError(
                f"sitemap {self._name} contains a DTD (<!DOCTYPE or <!ENTITY), "
                "which sitemaps never need; refused"
            )
        self._tail = window[-(max(map(len, _DTD_MARKERS)) - 1) :]
        return data


@contextmanager
def _open_sitemap(ref: str, state: _SitemapState, parent: str | None) -> Iterator[_ChunkReader]:
    hint = f"it is listed in the sitemap index {parent}" if parent else None
    if not _is_http(ref):
        path = _local_path(ref)
        try:
            with open(path, "rb") as handle:
                yield _ChunkReader(iter(partial(handle.read, _CHUNK), b""))
        except FileNotFoundError as exc:
            raise InputError(f"sitemap not found: {ref}", hint=hint) from exc
        except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
            raise InputError(f"sitemap {ref} is not valid gzip data ({exc})") from exc
        except OSError as exc:
            raise InputError(f"cannot read sitemap {ref}: {exc.strerror or exc}") from exc
        return
    import httpx

    client = state.client()
    try:
        with client.stream("GET", ref) as response:
            if not response.is_success:
                raise InputError(
                    f"cannot fetch sitemap {ref}: HTTP {response.status_code} "
                    f"{response.reason_phrase}".rstrip(),
                    hint=hint,
                )
            yield _ChunkReader(response.iter_bytes())
    except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError) as exc:
        raise InputError(
            f"cannot fetch sitemap {ref}: {str(exc) or type(exc).__name__}", hint=hint
        ) from exc
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise InputError(f"sitemap {ref} is not valid gzip data ({exc})") from exc


def _local_name(tag: str) -> str:
    # Namespace-agnostic: '{http://www.sitemaps.org/schemas/sitemap/0.9}loc' -> 'loc'.
    return tag.rpartition("}")[2]


def _iter_sitemap(
    ref: str, depth: int, state: _SitemapState, parent: str | None
) -> Iterator[InputUrl]:
    if parent is not None and _is_http(parent) and not _is_http(ref):
        # A remote index must not make us open local files.
        raise InputError(f"sitemap index {parent} refers to {ref}, which is not an http(s) URL")
    key = ref if _is_http(ref) else os.path.realpath(_local_path(ref))
    if key in state.visited:
        return
    state.visited.add(key)

    children: list[str] = []
    with _open_sitemap(ref, state, parent) as raw:
        source: _Readable = raw
        if raw.peek(2) == _GZIP_MAGIC:
            # Detected by content, not by name: servers and tools disagree on '.gz'.
            source = gzip.GzipFile(fileobj=raw, mode="rb")
        guarded = _SitemapGuard(source, ref)
        stack: list[str] = []
        root: ET.Element | None = None
        try:
            for event, elem in ET.iterparse(guarded, events=("start", "end")):
                name = _local_name(elem.tag)
                if event == "start":
                    if root is None:
                        if name not in ("urlset", "sitemapindex"):
                            raise InputError(
                                f"{ref} is not a sitemap: its root element is <{name}>, "
                                "not <urlset> or <sitemapindex>"
                            )
                        root = elem
                    stack.append(name)
                    continue
                stack.pop()
                # Only <loc> directly inside <url> or <sitemap> counts; <image:loc> and
                # other extensions nest deeper.
                if name == "loc" and len(stack) == 2:
                    text = (elem.text or "").strip()
                    if text and stack == ["urlset", "url"]:
                        yield InputUrl(text, ref, None)
                    elif text and stack == ["sitemapindex", "sitemap"]:
                        children.append(text)
                elif len(stack) == 1 and root is not None:
                    # An entry is done: drop it so memory stays flat on huge sitemaps.
                    elem.clear()
                    root.clear()
        except ET.ParseError as exc:
            raise InputError(f"malformed sitemap {ref}: {exc}") from exc

    if children and depth >= MAX_SITEMAP_DEPTH:
        raise InputError(
            f"sitemap index {ref} nests sitemaps deeper than {MAX_SITEMAP_DEPTH} levels",
            hint="pass the nested sitemaps with --sitemap directly",
        )
    for child in children:
        yield from _iter_sitemap(child, depth + 1, state, parent=ref)
