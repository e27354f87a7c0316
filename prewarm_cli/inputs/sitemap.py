"""Sitemaps and sitemap indexes, local or remote, plain or gzipped, streamed."""

from __future__ import annotations

import gzip
import io
import os
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Protocol
from urllib.parse import unquote, urlsplit

from prewarm_cli import __version__
from prewarm_cli.errors import InputError
from prewarm_cli.inputs.validate import InputUrl, hide_credentials_in, host_of

if TYPE_CHECKING:
    import httpx

# The sitemap protocol caps a file at 50 MB uncompressed; allow twice that for sloppy
# generators while still stopping a gzip bomb or an endless response.
MAX_SITEMAP_BYTES = 100 * 1024 * 1024

# The given sitemap is level 1; an index may nest others down to this level.
MAX_SITEMAP_DEPTH = 3
# Sitemaps an index (or several) may list in one run: one index may list 50,000 (the
# protocol's cap); an index whose children list as many again is more likely a trap.
MAX_SITEMAPS = 50_000
_DTD_MARKERS = (b"<!DOCTYPE", b"<!ENTITY")
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 64 * 1024


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


@dataclass
class _SitemapState:
    """What all the sitemaps of one run share: the visited set and the HTTP client."""

    timeout: float
    ca_bundles: tuple[str, ...] = ()  # trusted instead of the default store, when given
    visited: set[str] = field(default_factory=set)
    n_listed: int = 0  # sitemaps read because an index listed them
    _internal: dict[str, bool] = field(default_factory=dict, init=False)  # by host, looked up once
    # The sitemap being fetched: where its redirects may not lead (http after https, an
    # address of this machine or its network after a public host).
    fetching: str | None = None
    _client: httpx.Client | None = field(default=None, init=False)

    def client(self) -> httpx.Client:
        if self._client is None:
            import httpx  # only a remote sitemap needs it; keep start-up fast

            from prewarm_cli.verify.probe import ssl_context

            self._client = httpx.Client(
                timeout=self.timeout,
                follow_redirects=True,
                verify=ssl_context(self.ca_bundles),
                # gzip only: the one encoding read here, a read at a time (_open_sitemap).
                headers={"User-Agent": f"prewarm-cli/{__version__}", "Accept-Encoding": "gzip"},
                event_hooks={"request": [self._check_redirect]},
            )
        return self._client

    def internal(self, ref: str) -> bool:
        """Whether the URL's host is of this machine or its network (_internal_host), each
        host looked up once a run: an index may list 50,000 sitemaps on one host."""
        host = host_of(ref)
        if host not in self._internal:
            self._internal[host] = _internal_host(host)
        return self._internal[host]

    def _check_redirect(self, request: httpx.Request) -> None:
        """Each request of a fetch, redirects too: none leads where its sitemap may not."""
        start = self.fetching
        if start is None or str(request.url) == start:
            return
        if start[:6].lower() == "https:" and request.url.scheme != "https":
            raise InputError(f"sitemap {start} redirects to {request.url}, which is not https")
        if self.internal(str(request.url)) and not self.internal(start):
            raise InputError(
                f"sitemap {start} redirects to {request.url}, an address of this machine or"
                " its network"
            )

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def _internal_host(host: str) -> bool:
    """localhost, or a host of this machine or its network: an address (or, for a name, any
    address it resolves to) that is not global: loopback, link-local (a cloud's metadata
    service), private, shared (100.64/10), reserved. A name that does not resolve is not
    (its fetch fails on its own)."""
    import ipaddress
    import socket

    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:  # a name, or an address in another form (2852039166, 127.1)
        try:
            found = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
        except (OSError, UnicodeError):
            return False
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in found]
    return any(not address.is_global for address in addresses)


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
        # A bytearray: taking a read's bytes off its front does not copy the rest (a large
        # chunk read 16 KB at a time would otherwise be copied once per read).
        self._buffer = bytearray()

    def peek(self, size: int) -> bytes:
        while len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        return bytes(self._buffer[:size])

    def read(self, size: int = -1, /) -> bytes:
        if size < 0:
            data = bytes(self._buffer) + b"".join(self._chunks)
            self._buffer.clear()
            return data
        while not self._buffer:
            chunk = next(self._chunks, None)
            if chunk is None:
                return b""
            self._buffer += chunk
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
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
    state.fetching = ref
    try:
        with client.stream("GET", ref) as response:
            if not response.is_success:
                raise InputError(
                    f"cannot fetch sitemap {ref}: HTTP {response.status_code} "
                    f"{response.reason_phrase}".rstrip(),
                    hint=hint,
                )
            # The bytes as they came: a gzip Content-Encoding is undone below, as a .gz
            # file is, a read at a time (httpx would inflate a whole chunk at once, however
            # large it grows).
            yield _ChunkReader(response.iter_raw())
    except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError) as exc:
        raise InputError(
            f"cannot fetch sitemap {ref}: {str(exc) or type(exc).__name__}", hint=hint
        ) from exc
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise InputError(f"sitemap {ref} is not valid gzip data ({exc})") from exc
    finally:
        state.fetching = None


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
    public_index = parent is not None and _is_http(parent) and not state.internal(parent)
    if public_index and state.internal(ref):  # a cloud's metadata service, a router's
        raise InputError(
            f"sitemap index {parent} refers to {ref}, an address of this machine or its network",
            hint="pass that sitemap with --sitemap if it is meant",
        )
    state.visited.add(key)
    state.n_listed += parent is not None
    if state.n_listed > MAX_SITEMAPS:
        raise InputError(
            f"more than {MAX_SITEMAPS:,} sitemaps listed by the given ones (the last: {ref})",
            hint="pass the sitemaps meant with --sitemap directly",
        )

    children: list[str] = []
    with _open_sitemap(ref, state, parent) as raw:
        source: _Readable = raw
        if raw.peek(2) == _GZIP_MAGIC:
            # Detected by content, not by name: servers and tools disagree on '.gz'. A .gz
            # file may also be sent with a gzip Content-Encoding: gzip within gzip.
            inflated = _ChunkReader(iter(partial(gzip.GzipFile(fileobj=raw).read, _CHUNK), b""))
            source = inflated  # peek reads on until it has 2 bytes, or the end
            if inflated.peek(2) == _GZIP_MAGIC:
                source = gzip.GzipFile(fileobj=inflated, mode="rb")
        head = source.peek(64) if isinstance(source, _ChunkReader) else b""
        # A text sitemap (one URL per line, as sitemaps.org allows) is a URL list.
        as_text = head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith((b"http://", b"https://"))
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
            hint = None
            if as_text:
                where = "save it to a file and give that" if _is_http(ref) else ref
                hint = f"a sitemap of one URL per line is a URL list: -i {where}"
            raise InputError(f"malformed sitemap {ref}: {exc}", hint=hint) from exc

    if children and depth >= MAX_SITEMAP_DEPTH:
        raise InputError(
            f"sitemap index {ref} nests sitemaps deeper than {MAX_SITEMAP_DEPTH} levels",
            hint="pass the nested sitemaps with --sitemap directly",
        )
    for child in children:
        if not _is_http(ref) and not _is_http(child) and child[:7].lower() != "file://":
            # A local index's relative path is relative to the index, not to where prewarm runs.
            child = os.path.join(os.path.dirname(_local_path(ref)), child)
        yield from _iter_sitemap(child, depth + 1, state, parent=ref)


def check_sitemaps(refs: Sequence[str]) -> None:
    """InputError for a local sitemap that cannot be read; nothing is read."""
    from prewarm_cli.inputs.lines import check_readable

    for ref in refs:
        if ref == "-" and not os.path.exists(ref):
            raise InputError(
                "a sitemap is a URL or a file, not stdin",
                hint="save it to a file, or pipe a list of URLs with -i -",
            )
        if not _is_http(ref):
            check_readable(_local_path(ref), "sitemap")


def iter_sitemaps(
    refs: Sequence[str], timeout: float, ca_bundles: Sequence[str] = ()
) -> Iterator[InputUrl]:
    """The <loc> URLs of each sitemap (following indexes), streamed; one HTTP client for all,
    which trusts ``ca_bundles`` instead of the default store when given."""
    if not refs:
        return
    state = _SitemapState(timeout, tuple(ca_bundles))
    try:
        for ref in refs:
            yield from _iter_sitemap(ref, 1, state, parent=None)
    except InputError as exc:  # said back with a sitemap URL's password starred
        exc.message = hide_credentials_in(exc.message)
        exc.args = (exc.message,)
        exc.hint = hide_credentials_in(exc.hint) if exc.hint else exc.hint
        raise
    finally:
        state.close()
