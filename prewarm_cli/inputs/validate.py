"""URL validation, encoding, de-duplication, and the one way invalid input is listed."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

from prewarm_cli.errors import InputError

# 2048 is the de facto safe URL length: browsers, CDN cache keys and vendor APIs commonly
# cap URLs around 2 KB, and a longer one is almost always a generated mistake. It is checked
# on the percent-encoded form, since that is what providers receive.
MAX_URL_LENGTH = 2048

# Invalid input lines listed in an error before "... and N more": a screenful, so that the
# count above the list stays in view; the user fixes a pattern, rarely a thousand lines.
MAX_LISTED_INVALID = 50
# Skipped inputs a job keeps (its JSON lists them): all are counted, but a million invalid
# lines or failed uploads would take a gigabyte to hold, in memory and in the journal.
MAX_KEPT_SKIPPED = 1000

ARGUMENT_SOURCE = "argument"
STDIN_SOURCE = "<stdin>"

# Characters quote() leaves alone: reserved (RFC 3986 gen-delims and sub-delims), unreserved
# punctuation, and '%' so existing escapes survive.
_SAFE = "/?#[]@!$&'()*+,;=:%~-._"
_NON_ASCII = re.compile(r"[^\x00-\x7f]+")
_USERINFO_SAFE = "!$&'()*+,;=:%~-._"

# RFC 3986 appendix B, reduced to scheme, authority and everything after it.
_URI_RE = re.compile(r"(?:([^:/?#]+):)?(?://([^/?#]*))?(.*)", re.DOTALL)
_ASCII_SPACE_OR_CONTROL = re.compile(r"[\x00-\x20\x7f]")
_BAD_HOST_CHARS = frozenset('<>"\\^`{|}')
# What nearly every URL looks like: printable ASCII, a plain host, an optional port, no '*'.
# Such a URL passes every check below; anything else takes the long way.
_PLAIN_URL = re.compile(r"https?://[A-Za-z0-9][A-Za-z0-9.-]*(?::([0-9]{1,5}))?(?:[/?#][!-)+-~]*)?")
# Joiners are legitimate inside IDNA labels of some scripts; other format characters
# (zero-width space, bidi overrides, BOM) are invisible copy-paste debris or spoofing.
_ALLOWED_FORMAT_CHARS = frozenset("\u200c\u200d")


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
            "input": hide_credentials(self.input),
            "source": hide_credentials_in(self.source),  # a sitemap's URL
            "line": self.line,
            "reason": self.reason,
        }

    def __str__(self) -> str:
        if self.line is None:
            where = hide_credentials_in(self.source)
        elif self.source == ARGUMENT_SOURCE:
            where = f"argument {self.line}"
        else:
            where = f"{self.source}:{self.line}"
        return f"{where}: {_printable(hide_credentials(self.input))}: {self.reason}"


_USERINFO = re.compile(r"(?i)^([a-z][a-z0-9+.-]*://)([^/?#]*)@")  # to the authority's last @


def hide_credentials(text: str) -> str:
    """A URL as it may be shown: a password in it starred (``user:***@``), a token alone
    (``***@``) too. Refused URLs are said back to the user, in errors, logs and CI summaries."""
    if "@" not in text:
        return text

    def starred(found: re.Match[str]) -> str:
        user, colon, _ = found[2].partition(":")
        return f"{found[1]}{user}:***@" if colon else f"{found[1]}***@"

    return _USERINFO.sub(starred, text, count=1)


_URL_USERINFO = re.compile(r"(?i)\b(https?://)([^/?#\s]*)@")


def hide_credentials_in(text: str) -> str:
    """``text`` with the password of every http(s) URL in it starred (an error message)."""
    if "@" not in text:
        return text
    return _URL_USERINFO.sub(lambda m: hide_credentials(m[0]), text)


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
    return None if is_plain_url(url) else url_problem(url)


def is_plain_url(url: str) -> bool:
    """The common case, in one regular expression: url_problem would find nothing."""
    plain = _PLAIN_URL.fullmatch(url)
    if plain is None or len(url) > MAX_URL_LENGTH:
        return False
    return 0 < int(plain[1] or 80) <= 65535


def url_problem(url: str) -> str | None:
    """Every check, one by one: None, or the first problem found."""
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
        if not parts.scheme:  # www.example.com/app.js, or a path: public/app.js
            return "scheme must be http or https (a path? give paths with --paths and --base-url)"
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


def check_inputs(
    inputs: Iterable[InputUrl | InvalidInput],
) -> Iterator[InputUrl | InvalidInput]:
    """Each input in the form a client sends (as_sent), or as an InvalidInput with the reason
    (found invalid earlier, or now)."""
    for item in inputs:
        if isinstance(item, InvalidInput):
            yield item
            continue
        reason = validate_url(item.url)
        if reason is not None:
            yield InvalidInput(item.url, item.source, item.line, reason)
            continue
        sent = as_sent(item.url)
        yield item if sent is item.url else InputUrl(sent, item.source, item.line)


_AUTHORITY_END = re.compile(r"[/?#]")


def as_sent(url: str) -> str:
    """A valid URL as a client puts it on the wire, so that two ways of writing one request
    are one input: no fragment (never sent), scheme and host in lower case, no default port
    (``:80`` for http, ``:443`` for https), ``/`` for an empty path, no ``.`` or ``..`` path
    segment (RFC 3986 §5.2.4, as curl and browsers do), and the path and query in ASCII:
    ``café.js`` is ``caf%C3%A9.js``, as a browser sends it and as a build directory's file
    gives it (the host keeps its form, which routes name). The same string when it is
    already so (the common case costs a few string searches)."""
    if "#" not in url and "/." not in url and url.isascii():  # the common case: only the case
        start = url.find("//") + 2
        end = url.find("/", start)
        head = url[:end]
        if (
            end >= 0
            and "?" not in head
            and head == head.lower()
            and not head.endswith(_DEFAULT_PORTS)
        ):
            return url
    cut = url.find("#")
    start = url.find("//") + 2
    match = _AUTHORITY_END.search(url, start)
    authority_end = match.start() if match else len(url)
    head = url[:authority_end]
    text = url[:cut] if cut >= 0 else url
    rest = text[authority_end:]
    dotted = "/." in rest
    userinfo, at, hostport = head[start:].rpartition("@")
    scheme = head[:start].lower()
    default_port = _DEFAULT_PORTS[scheme == "https://"]
    if hostport.endswith(default_port) and scheme in ("http://", "https://"):
        hostport = hostport[: -len(default_port)]
    if not rest.startswith("/"):
        rest = "/" + rest  # an empty path, with a query or not
    if dotted:
        path, mark, query = rest.partition("?")
        rest = _without_dot_segments(path) + mark + query
    if not rest.isascii():  # only what is not ASCII: `a|b` is the same input either way
        rest = _NON_ASCII.sub(lambda run: quote(run[0], safe=""), rest)
    sent = scheme + userinfo + at + hostport.lower() + rest
    return url if sent == url else sent


_DEFAULT_PORTS = (":80", ":443")  # http's, https's


def _without_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4 remove_dot_segments, for an absolute path."""
    out: list[str] = []
    segments = path.split("/")
    for i, segment in enumerate(segments[1:], 1):
        last = i == len(segments) - 1
        if segment == ".":
            if last:
                out.append("")
        elif segment == "..":
            if out:
                out.pop()
            if last:
                out.append("")
        else:
            out.append(segment)
    return "/" + "/".join(out)


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


_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
# What an escape may stand for in the key: the unreserved characters (RFC 3986 §6.2.2.2: the
# same URL either way), and ( ), which AWS's prewarm API escapes and which delimit nothing in
# practice. Escapes of the other reserved characters (& = + ; , / ? #) mean something else
# than the character does, and stay.
_SAME_EITHER_WAY = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~()")


def match_key(url: str) -> str:
    """A URL as compared with the form a vendor lists it in: RFC 3986 form (to_ascii), the
    escapes of characters that are the same URL either way decoded, the others in upper case.
    Vendors encode what the client sent (AWS's prewarm API writes ( ) as %28 %29), and a
    listing must still be matched to the job's URL."""

    def decode(match: re.Match[str]) -> str:
        char = chr(int(match.group(1), 16))
        return char if char in _SAME_EITHER_WAY else match.group(0).upper()

    return _ESCAPE.sub(decode, to_ascii(url))


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


@dataclass
class InvalidList:
    """Invalid (or skipped) inputs as they are found: all counted, the first ``limit`` kept.

    The one way invalid input is listed, by submit's intake, verify and urls alike.
    """

    limit: int = MAX_LISTED_INVALID
    count: int = 0
    listed: list[InvalidInput] = field(default_factory=list)

    def add(self, item: InvalidInput) -> None:
        self.count += 1
        if len(self.listed) < self.limit:
            self.listed.append(item)

    def __len__(self) -> int:
        return self.count

    def merge(self, other: InvalidList) -> None:
        """``other``'s inputs after this list's: all counted, kept up to this one's limit."""
        self.count += other.count
        self.listed += other.listed[: max(0, self.limit - len(self.listed))]

    def trimmed(self, limit: int = MAX_LISTED_INVALID) -> InvalidList:
        """The same count, the first ``limit`` kept: what stderr lists."""
        return InvalidList(limit, self.count, self.listed[:limit])

    def lines(self) -> list[str]:
        """One line per listed input, then "... and N more" when some were not kept."""
        lines = [str(item) for item in self.listed]
        if self.count > len(self.listed):
            lines.append(f"... and {self.count - len(self.listed)} more")
        return lines

    def message(
        self,
        consequence: str,
        what: tuple[str, str] = ("invalid input line", "invalid input lines"),
    ) -> str:
        """``N invalid input lines; <consequence>:`` and the indented list; ``what`` is the
        noun (singular, plural)."""
        noun = what[0] if self.count == 1 else what[1]
        return f"{self.count} {noun}; {consequence}:\n  " + "\n  ".join(self.lines())

    def error(self, consequence: str, hint: str | None = None) -> InputError:
        """The InputError (exit 2) listing them, e.g. ``error("nothing was sent")``."""
        return InputError(self.message(consequence), hint=hint)
