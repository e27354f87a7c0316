"""curl's --resolve HOST[:PORT]:IP, read once for verify and the providers that pin requests
to an edge (standard library only: a provider imports it without verify's client)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from typing import NamedTuple

from prewarm_cli.errors import UsageError


class Pin(NamedTuple):
    """A --resolve entry: connect to ``ip`` for ``host`` (on ``port``, or any port)."""

    host: str
    port: int | None
    ip: str


def host_port(url: str) -> tuple[str, int]:
    """The host (lower case, no final dot) and port a URL connects to, as pins name them."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = (parts.hostname or "").lower().rstrip(".")
    return host, parts.port or (443 if parts.scheme == "https" else 80)


def no_pin_for(
    host: str, port: int, pins: Sequence[tuple[str, tuple[str, int | None, str]]]
) -> str | None:
    """None when a pin (given as the option's text and its (host, port, ip)) applies to host
    and port; else what to say of them, naming a pin for the same host and another port: a
    mistyped port leaves requests going where DNS sends them, unnoticed."""
    if any(pin[0] == host and pin[1] in (None, port) for _, pin in pins):
        return None
    same_host = [given for given, pin in pins if pin[0] == host]
    why = f" (--resolve {same_host[0]} is for another port)" if same_host else ""
    return f"no --resolve pin for {host}:{port}{why}"


def parse_resolve(spec: str) -> Pin:
    """HOST[:PORT]:IP as curl's --resolve takes it (IPv6 in brackets or bare); UsageError else."""
    usage = f"--resolve {spec!r} is not HOST[:PORT]:IP (e.g. cdn.example.com:443:203.0.113.7)"
    host, sep, rest = spec.strip().partition(":")
    host = host.strip().lower().rstrip(".")
    if not sep or not host or any(c in host for c in "/[]@ ") or not rest:
        raise UsageError(usage)
    port: int | None = None
    # As in curl, a number followed by an address is a port; so an IPv6 address without a
    # port goes in brackets: HOST:[2001:db8::1].
    match = re.fullmatch(r"(\d{1,5}):(.+)", rest)
    ip = _ip(match.group(2)) if match else None
    if match and ip is not None:
        port = int(match.group(1))
        if not 1 <= port <= 65535:
            raise UsageError(f"--resolve {spec!r}: port must be a number from 1 to 65535")
    else:
        ip = _ip(rest)
    if ip is None:
        raise UsageError(usage)
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise UsageError(usage) from exc
    return Pin(host, port, ip)


def _ip(text: str) -> str | None:
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None
