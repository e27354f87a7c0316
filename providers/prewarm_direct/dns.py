"""DNS for PoP targets: CloudFront PoP names and EDNS Client Subnet lookups (dnspython).

dnspython is imported inside the functions, so that loading the provider stays light.
"""

from __future__ import annotations

import ipaddress

DEFAULT_RESOLVER = "8.8.8.8"  # honours EDNS Client Subnet
DNS_TIMEOUT = 5.0  # seconds for one lookup, retries included


class LookupFailed(Exception):
    """The name has no address, or the resolver did not answer."""


class ResolverSilent(LookupFailed):
    """The resolver did not answer at all (timed out, or could not be reached)."""


def parse_resolver(spec: str) -> tuple[str, int]:
    """``IP`` or ``IP:PORT`` (IPv6 in brackets with a port); ValueError when malformed."""
    text = spec.strip()
    port = 53
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            port_text = rest.removeprefix(":")
            if not port_text.isdigit():
                raise ValueError(f"port {port_text!r} is not a number")
            port = int(port_text)
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        if not port_text.isdigit():
            raise ValueError(f"port {port_text!r} is not a number")
        port = int(port_text)
    else:
        host = text
    ip = str(ipaddress.ip_address(host))
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} out of range")
    return ip, port


def pop_name(cf_domain: str, code: str) -> str:
    """``d111111abcdef8.cloudfront.net`` and ``NRT57`` → ``d111111abcdef8.nrt57.cloudfront.net``."""
    label = cf_domain.strip().lower().rstrip(".").split(".")[0]
    return f"{label}.{code.strip().lower()}.cloudfront.net"


def resolve_a(name: str, resolver: tuple[str, int], ecs: str | None = None) -> list[str]:
    """The IPv4 addresses of ``name`` asked of ``resolver``, with an ECS option when given.

    The answer's order is kept: the first address is the one a client would use.
    """
    import dns.edns
    import dns.exception
    import dns.flags
    import dns.message
    import dns.query
    import dns.rcode
    import dns.rdatatype

    options: list[dns.edns.Option] = []
    if ecs is not None:
        network = ipaddress.ip_network(ecs, strict=False)
        options.append(dns.edns.ECSOption(str(network.network_address), network.prefixlen))
    query = dns.message.make_query(
        name, dns.rdatatype.A, use_edns=0, options=options, want_dnssec=False
    )
    ip, port = resolver
    try:
        response = dns.query.udp(query, ip, port=port, timeout=DNS_TIMEOUT)
        if response.flags & dns.flags.TC:
            response = dns.query.tcp(query, ip, port=port, timeout=DNS_TIMEOUT)
    except (dns.exception.Timeout, OSError) as exc:
        raise ResolverSilent(f"{name}: no answer from {ip}:{port} ({exc})") from exc
    except dns.exception.DNSException as exc:
        raise LookupFailed(f"{name}: no answer from {ip}:{port} ({exc})") from exc
    if response.rcode() != dns.rcode.NOERROR:
        raise LookupFailed(f"{name}: {dns.rcode.to_text(response.rcode())}")
    addresses = [
        item.address
        for rrset in response.answer
        if rrset.rdtype == dns.rdatatype.A
        for item in rrset
    ]
    if not addresses:
        raise LookupFailed(f"{name}: no address")
    return addresses
