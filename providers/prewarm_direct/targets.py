"""PoP targets: where each warm request connects (DESIGN §9).

A target is one edge a URL is warmed through: an IP from ``--resolve``, a CloudFront PoP code
resolved through ``<first label of cf_domain>.<CODE>.cloudfront.net``, the edge a client subnet
is sent to (``--ecs``), or, when none applies to the URL, the edge this machine's own DNS
gives (``nearest``). A target's label names it in results and stays the same across runs.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

from prewarm_cli.errors import ConfigError, UsageError
from prewarm_cli.plugin import (
    curl_connect_to,
    host_port,
    no_pin_for,
    parse_resolve,
    url_to_ascii,
)
from prewarm_direct import dns

# A DNS name: letters, digits and hyphens in dot-separated labels (an absolute name's dot too).
_HOST_NAME = re.compile(
    r"(?i)[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*\.?"
)
NEAREST = "nearest"  # no pinning: the edge the system resolver gives this machine
POP_NOT_FOUND = "PoP not found"


@dataclass(frozen=True)
class Target:
    """One edge for one URL: connect to ``ip`` (None: resolve as usual), or ``error``."""

    label: str
    ip: str | None = None
    error: str | None = None
    connect_to: str | None = None  # curl's --connect-to entry for the URL's host and port


@dataclass(frozen=True)
class TargetSpec:
    """What the user asked for: pins, PoP codes and client subnets (config or options)."""

    resolve: tuple[str, ...] = ()
    pops: tuple[str, ...] = ()
    ecs: tuple[str, ...] = ()
    cf_domain: str | None = None
    resolver: str = dns.DEFAULT_RESOLVER

    def count(self, url: str) -> int:
        """How many targets a URL gets, without any DNS lookup (for --dry-run): its pins'
        addresses, the PoP codes and the client subnets, each once."""
        host, port = host_port(url if url.isascii() else url_to_ascii(url))
        pins = self._pins()
        ips = {
            ip for pin_host, pin_port, ip in pins if pin_host == host and pin_port in (None, port)
        }
        n = len(ips) + len(self.distinct_pops()) + len(self.distinct_subnets())
        return n or 1

    def distinct_pops(self) -> list[str]:
        """The PoP codes, each once whatever its case (the first spelling names it)."""
        first: dict[str, str] = {}
        for code in self.pops:
            first.setdefault(code.strip().upper(), code)
        return list(first.values())

    def distinct_subnets(self) -> list[str]:
        """The client subnets, each network once (the first spelling names it)."""
        import ipaddress

        first: dict[str, str] = {}
        for cidr in self.ecs:
            try:
                key = str(ipaddress.ip_network(cidr, strict=False))
            except ValueError:
                key = cidr  # refused by check_spec before any lookup
            first.setdefault(key, cidr)
        return list(first.values())

    def _pins(self) -> list[tuple[str, int | None, str]]:
        return [parse_resolve(spec) for spec in self.resolve]


class Targets:
    """The targets of every URL of a run; DNS answers are looked up once and kept."""

    def __init__(self, spec: TargetSpec, warn: Callable[[str], None]) -> None:
        check_spec(spec)
        self._resolver = dns.parse_resolver(spec.resolver)
        self.spec = spec
        self._pins = spec._pins()
        self._warn = warn
        self._lock = threading.Lock()
        self._pops: dict[str, Target] = {}
        self._ecs: dict[tuple[str, str], Target] = {}
        self._by_origin: dict[str, list[Target]] = {}  # scheme://host:port -> its targets
        self._silent: str | None = None  # why the resolver is not asked again this run
        self._n_unanswered = 0  # lookups the resolver did not answer at all
        self._answered = False  # the resolver answered a lookup this run
        self._said_silent = False  # a client subnet's warning said the resolver is silent
        self._same: set[tuple[str, str]] = set()  # (label, label of the same edge) said

    def for_url(self, url: str, before_lookup: Callable[[], None] | None = None) -> list[Target]:
        """The URL's targets; ``before_lookup`` is called before the DNS queries a new host
        may need (PoP codes, client subnets), which can take seconds."""
        slash = url.find("/", url.find("//") + 2)  # the end of scheme://host:port
        origin = url if slash < 0 else url[:slash]
        found = self._by_origin.get(origin)
        if found is None:
            if before_lookup is not None and (self.spec.pops or self.spec.ecs):
                before_lookup()
            # The host as it is sent (an IDN host in IDNA form), which a pin must name.
            sent = origin if origin.isascii() else url_to_ascii(origin)
            host, port = host_port(sent)
            # libcurl matches a connect-to entry against the host as the URL writes it: a
            # final dot (an absolute name) is kept there, or the pin is not applied at all.
            absolute = (urlsplit(sent).hostname or "").endswith(".")
            found = self._by_origin[origin] = self._for_host(host, port, absolute=absolute)
        return found

    def _for_host(self, host: str, port: int, *, absolute: bool = False) -> list[Target]:
        found = [
            Target(label=ip, ip=ip)
            for pin_host, pin_port, ip in self._pins
            if pin_host == host and pin_port in (None, port)
        ]
        if self._pins and not found and not self.spec.pops and not self.spec.ecs:
            # Said once per host and port: a pin with a mistyped port would otherwise warm
            # the edge this machine's DNS gives, while the user thinks of the pinned one.
            pins = list(zip(self.spec.resolve, self._pins, strict=True))
            self._warn(
                f"{no_pin_for(host, port, pins)}: its URLs are warmed through the edge this"
                " machine's DNS gives"
            )
        found += [self._pop(code) for code in self.spec.distinct_pops()]
        found += [self._subnet(host, cidr) for cidr in self.spec.distinct_subnets()]
        curl_host = host + "." if absolute else host
        return [
            replace(t, connect_to=curl_connect_to(curl_host, port, t.ip)) if t.ip else t
            for t in self._one_per_edge(host, port, found) or [Target(label=NEAREST)]
        ]

    def _one_per_edge(self, host: str, port: int, found: list[Target]) -> list[Target]:
        """The targets without those that connect where an earlier one does: one address is
        one edge from this machine, and a second request there would only find the first's
        copy. Each such target is named once (overlapping client subnets, a PoP code and a pin
        to the same address); a pin given twice is dropped without a word."""
        first_at: dict[str, Target] = {}
        kept = []
        for target in found:
            first = first_at.setdefault(target.ip, target) if target.ip else target
            if first is target:
                kept.append(target)
            elif target.label != first.label and self._first_time_same(target, first):
                self._warn(
                    f"{target.label} gives the edge {first.label} gives for {host}:{port}"
                    f" ({target.ip}): warmed once, as {first.label}"
                )
        return kept

    def _first_time_same(self, target: Target, first: Target) -> bool:
        """Whether this pair is new (senders' threads look hosts up side by side)."""
        pair = (target.label, first.label)
        with self._lock:
            new = pair not in self._same
            self._same.add(pair)
        return new

    def _resolve(self, name: str, ecs: str | None = None) -> str:
        """The first address of ``name``. A resolver that never answered and let two
        lookups time out is not asked again this run (each would wait its timeout), and is
        named as the cause; one that answered before is asked for every name (one name's
        servers may be slow, or gone, while others answer at once)."""
        if self._silent is not None:
            raise dns.LookupFailed(self._silent)
        try:
            found = dns.resolve_a(name, self._resolver, ecs=ecs)[0]
        except dns.ResolverSilent as exc:
            self._n_unanswered += 1
            if self._answered or self._n_unanswered < 2:
                raise
            ip, port = self._resolver
            why = exc.__cause__ or "no answer"  # not the name: said of every name after it
            self._silent = (
                f"the resolver {ip}:{port} does not answer ({why}); check the direct"
                " provider's `resolver` setting"
            )
            raise dns.LookupFailed(self._silent) from exc
        except dns.LookupFailed:
            self._answered = True  # an answer, if not an address
            raise
        self._answered = True
        return found

    def _pop(self, code: str) -> Target:
        with self._lock:
            if code not in self._pops:
                assert self.spec.cf_domain is not None
                name = dns.pop_name(self.spec.cf_domain, code)
                try:
                    ip = self._resolve(name)
                    self._pops[code] = Target(label=code, ip=ip)
                except dns.LookupFailed as exc:
                    self._warn(f"{POP_NOT_FOUND}: {code} ({exc}); its requests fail")
                    self._pops[code] = Target(label=code, error=POP_NOT_FOUND)
            return self._pops[code]

    def _subnet(self, host: str, cidr: str) -> Target:
        key = (host, cidr)
        with self._lock:
            if key not in self._ecs:
                label = f"ecs:{cidr}"
                try:
                    ip = self._resolve(host, ecs=cidr)
                    self._ecs[key] = Target(label=label, ip=ip)
                except dns.LookupFailed as exc:
                    silent = str(exc) == self._silent
                    if not (silent and self._said_silent):  # a silent resolver is said once
                        self._warn(
                            f"no edge for client subnet {cidr} ({host}): {exc}; its requests fail"
                        )
                    self._said_silent = self._said_silent or silent
                    self._ecs[key] = Target(label=label, error=POP_NOT_FOUND)
            return self._ecs[key]


def _check_cidr(cidr: str) -> None:
    import ipaddress

    try:
        network = ipaddress.ip_network(cidr, strict=False)
    except ValueError as exc:
        raise ConfigError(
            f"client subnet {cidr!r} (ecs) is not a network such as 203.0.113.0/24"
        ) from exc
    if network.prefixlen == 0:  # ECS with no bits: the resolver's own edge, not a client's
        raise ConfigError(
            f"client subnet {cidr!r} (ecs) names no client network",
            hint="give the clients' network, such as 203.0.113.0/24 or 2001:db8::/56",
        )


def labels(targets: Sequence[Target]) -> list[str]:
    return [t.label for t in targets]


def check_spec(spec: TargetSpec) -> None:
    """The first thing wrong with a spec, without any DNS lookup (ConfigError)."""
    for _field, problem in spec_problems(spec):
        raise problem


def spec_problems(spec: TargetSpec) -> list[tuple[str, ConfigError]]:
    """Everything wrong with a spec without any DNS lookup, each with the field it is about: a
    pin, a resolver or a client subnet that cannot be read, PoP codes without cf_domain."""
    found: list[tuple[str, ConfigError]] = []
    for pin in spec.resolve:
        try:
            parse_resolve(pin)
        except UsageError as exc:
            found.append(("resolve", ConfigError(exc.message, hint=exc.hint)))
    if spec.cf_domain is not None and not _HOST_NAME.fullmatch(spec.cf_domain.strip()):
        problem = ConfigError(
            f"cf_domain {spec.cf_domain!r} is not a host name",
            hint="give the distribution's domain name alone, without https:// or a path:"
            ' cf_domain = "d111111abcdef8.cloudfront.net"',
        )
        found.append(("cf_domain", problem))
    if spec.pops and not spec.cf_domain:
        problem = ConfigError(
            "PoP codes need cf_domain (the distribution's d….cloudfront.net name)",
            hint="set cf_domain in the direct provider's table of the config file"
            ' (`prewarm config path` names it): cf_domain = "d111111abcdef8.cloudfront.net"',
        )
        found.append(("pops", problem))
    try:
        dns.parse_resolver(spec.resolver)
    except ValueError as exc:
        problem = ConfigError(f"resolver {spec.resolver!r} is not IP[:PORT]: {exc}")
        found.append(("resolver", problem))
    for cidr in spec.ecs:
        try:
            _check_cidr(cidr)
        except ConfigError as exc:
            found.append(("ecs", exc))
    return found
