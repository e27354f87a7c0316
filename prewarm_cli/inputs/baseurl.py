"""Mapping relative paths (files of a build, keys of a bucket) to URLs under ``--base-url``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple
from urllib.parse import quote, urlsplit

from prewarm_cli.errors import UsageError
from prewarm_cli.inputs.validate import hide_credentials, validate_url

IndexRule = Literal["dir", "file", "both"]
INDEX_RULES: tuple[IndexRule, ...] = ("dir", "file", "both")
INDEX_FILE = "index.html"

# RFC 3986 pchar minus pct-encoded: what may stay as is inside one path segment. Sub-delims
# such as '+' and '=' stay, as browsers send them; '%' is encoded, since a file name is not
# a URL ('100%.html' is served at '100%25.html'). '*' stays too, as browsers send it (a CDN
# keyed on the raw path would keep 'a%2Ab.png' apart): such a name is refused as a wildcard.
_SEGMENT_SAFE = "!$&'()*+,;=:@~-._"


class RelPath(NamedTuple):
    """A path relative to the base URL, with where it was read."""

    path: str  # '/'-separated, not encoded
    source: str  # a file name, <stdin>, or the directory walked
    line: int | None


@dataclass(frozen=True)
class BaseUrl:
    """``--base-url``: absolute http(s); its path is a directory, its query kept on every URL."""

    prefix: str  # scheme://host[:port]/path/ -- always ending with '/'
    query: str  # '' or '?...'

    @classmethod
    def parse(cls, text: str) -> BaseUrl:
        """The base URL, or UsageError saying what is wrong (exit 2)."""
        text = text.strip()
        given = f"--base-url {hide_credentials(text)!r}"
        try:
            parts = urlsplit(text)
        except ValueError as exc:
            raise UsageError(f"{given} cannot be parsed ({exc})") from exc
        if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
            example = "https://" + text.split("://", 1)[-1].lstrip("/")
            raise UsageError(
                f"{given} is not an absolute http(s) URL",
                hint=f"give the scheme and host, e.g. {example}",
            )
        if parts.fragment:
            raise UsageError(f"{given}: a base URL cannot have a #fragment")
        reason = validate_url(text)
        if reason:
            raise UsageError(f"{given}: {reason}")
        path = parts.path if parts.path.endswith("/") else parts.path + "/"
        prefix = f"{parts.scheme}://{parts.netloc}{path}"
        return cls(prefix, f"?{parts.query}" if parts.query else "")

    def url(self, path: str) -> str:
        """The URL of a relative path: each segment percent-encoded, case left alone.

        A trailing '/' is kept (a directory URL); ``a/../b`` is ``b``. Raises ValueError for
        a path that would leave the base (``../x``).
        """
        segments: list[str] = []
        for segment in path.split("/"):
            if segment == "..":
                if not segments:
                    raise ValueError("a path with '..' would leave the base URL")
                segments.pop()
            elif segment not in ("", "."):
                segments.append(segment)
        encoded = "/".join(quote(s, safe=_SEGMENT_SAFE) for s in segments)
        if encoded and path.endswith("/"):
            encoded += "/"
        return self.prefix + encoded + self.query

    def urls(self, path: str, index: IndexRule = "dir") -> list[str]:
        """The URLs for a file: with the index rule, ``about/index.html`` is ``BASE/about/``."""
        head, _, name = path.rpartition("/")
        if name != INDEX_FILE or index == "file":
            return [self.url(path)]
        directory = self.url(head + "/") if head.strip("/") else self.prefix + self.query
        return [directory] if index == "dir" else [directory, self.url(path)]
