"""A real caching CDN edge for tests: nginx with proxy_cache in front of a counting origin.

- ``Origin``: a threaded HTTP server on 127.0.0.1 that counts requests per (path,
  Accept-Encoding as received) and, by path, answers an object (gzip-encoded when asked),
  404, a burst of 503s, a stall, a body cut short, or a gate that holds requests until N are
  in flight (to see the concurrency a client really uses).
- ``Nginx``: two PoPs, 127.0.0.2 and 127.0.0.3 on one port, each with a cache of its own,
  the cache key including Accept-Encoding (one variant per value, as CDNs keep them) and any
  request headers asked for (``cache_key_headers``: a CDN keyed on a device header), and
  ``X-Cache: HIT|MISS`` on every answer.
- ``DnsServer``: a dnspython UDP server answering A queries from a table, and for names with
  EDNS Client Subnet entries, by the client subnet in the query.

nginx comes from Debian's nginx-light. Without it the tests using it skip locally, naming the
install command, and fail under CI (``CI`` set): the proof must not silently vanish there.
"""

from __future__ import annotations

import gzip
import ipaddress
import os
import shutil
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fakes.base import LoopbackServer, QuietServer

NGINX = "/usr/sbin/nginx"
INSTALL_HINT = "apt-get install -y nginx-light"
POPS = ("127.0.0.2", "127.0.0.3")
HOST = "www.example.test"  # the site's name in URLs; --resolve pins it to a PoP


def require_nginx() -> str:
    """The nginx binary, or skip (locally) / fail (CI) naming the install command."""
    path = NGINX if os.access(NGINX, os.X_OK) else shutil.which("nginx")
    if path:
        return path
    message = f"nginx is not installed: {INSTALL_HINT}"
    if os.environ.get("CI"):
        pytest.fail(message + " (CI must run the nginx tests)")
    pytest.skip(message)


def body_of(path: str, size: int) -> bytes:
    """The object's bytes: deterministic, distinct per path, compressible."""
    seed = (path.encode() + b"|") * (size // (len(path) + 1) + 1)
    return seed[:size]


# --------------------------------------------------------------------------- origin


@dataclass
class OriginState:
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    per_path: Counter[str] = field(default_factory=Counter)  # requests per path, any encoding
    headers: dict[str, dict[str, str]] = field(default_factory=dict)  # path -> the last request's
    seen: list[tuple[str, dict[str, str]]] = field(default_factory=list)  # (path, headers) each
    in_flight: int = 0
    max_in_flight: int = 0
    # /gate/ requests wait until this many are in flight at once, then the gate stays open
    # (or until 30 s have passed: the client never had that many in flight).
    gate_size: int = 0
    gate_open: bool = False
    release: threading.Event = field(default_factory=threading.Event)  # ends /stall/ waits
    lock: threading.Lock = field(default_factory=threading.Lock)
    cond: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self.cond = threading.Condition(self.lock)

    def count(self, path: str, encoding: str | None = None) -> int:
        """Requests seen for a path, with one Accept-Encoding value or with any."""
        with self.lock:
            if encoding is not None:
                return self.counts[(path, encoding)]
            return self.per_path[path]

    def count_with(self, path: str, name: str, value: str | None) -> int:
        """Requests seen for a path whose header ``name`` had ``value`` (None: absent)."""
        with self.lock:
            return sum(1 for p, h in self.seen if p == path and h.get(name.lower()) == value)

    def total(self) -> int:
        with self.lock:
            return sum(self.counts.values())


class _OriginHandler(BaseHTTPRequestHandler):
    _in_flight = False  # counted in the origin's in_flight

    protocol_version = "HTTP/1.1"
    server: Any

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        state: OriginState = self.server.state
        parts = urlsplit(self.path)
        path = parts.path
        encoding = self.headers.get("Accept-Encoding", "")
        with state.cond:
            state.counts[(path, encoding)] += 1
            state.per_path[path] += 1
            state.headers[path] = {k.lower(): v for k, v in self.headers.items()}
            state.seen.append((path, state.headers[path]))
            n_seen = state.counts[(path, encoding)]
            n_path = state.per_path[path]  # a sum over every path's count: quadratic
            state.in_flight += 1
            state.max_in_flight = max(state.max_in_flight, state.in_flight)
            state.cond.notify_all()
        self._in_flight = True
        try:
            self._answer(state, path, parse_qs(parts.query), encoding, n_seen, n_path)
        finally:
            self._answered(state)

    def _answered(self, state: OriginState) -> None:
        """The request no longer counts as in flight: once, before its answer's bytes leave
        (counted after them, the client's next request could arrive before this thread ran
        again, and two requests a client sent one after the other read as concurrent)."""
        if self._in_flight:
            self._in_flight = False
            with state.cond:
                state.in_flight -= 1
                state.cond.notify_all()

    def _answer(
        self,
        state: OriginState,
        path: str,
        query: dict[str, list[str]],
        encoding: str,
        n: int,
        n_path: int,
    ) -> None:
        size = int(query.get("size", ["2048"])[0])
        kind = path.split("/")[1] if path.count("/") > 1 else "obj"
        if kind == "missing":
            return self._send(404, b"not found\n")
        if kind == "moved":  # /moved/X: a permanent redirect to /obj/X, cached as it is
            target = "/obj/" + path.split("/", 2)[2]
            return self._send(301, b"moved\n", {"Location": target, "Cache-Control": "max-age=600"})
        # /flaky/N/...: N answers of 503 per variant (Retry-After: ?retry_after=S, else 0),
        # then the object
        if kind == "flaky" and n <= int(path.split("/")[2]):
            retry_after = query.get("retry_after", ["0"])[0]
            return self._send(503, b"busy\n", {"Retry-After": retry_after})
        if kind == "stall":
            state.release.wait(60)
            return self._send(504, b"released\n")
        if kind == "hold":  # /hold/...: held until released, then the object
            state.release.wait(60)
        if kind == "close":  # headers promise more than is sent, then the connection drops
            self.send_response(200)
            self.send_header("Content-Length", str(size))
            self.send_header("Cache-Control", "max-age=600")
            self.end_headers()
            self.wfile.write(body_of(path, size)[: size // 4])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return None
        # /stallnth/N/...: the N-th request of the path stalls
        if kind == "stallnth" and n_path == int(path.split("/")[2]):
            state.release.wait(60)
            return self._send(504, b"released\n")
        if kind == "gate":
            with state.cond:
                state.cond.wait_for(
                    lambda: state.gate_open or state.in_flight >= state.gate_size, timeout=30
                )
                state.gate_open = True
                state.cond.notify_all()
        body = body_of(path, size)
        headers = {"Cache-Control": "max-age=600", "Vary": "Accept-Encoding"}
        if "gzip" in encoding:
            body = gzip.compress(body, mtime=0)
            headers["Content-Encoding"] = "gzip"
        return self._send(200, body, headers)

    def _send(self, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self._answered(self.server.state)
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


class Origin(LoopbackServer):
    thread_name = "cachebed-origin"

    def __init__(self) -> None:
        self.state = OriginState()

    def make_server(self) -> QuietServer:
        server = QuietServer(("127.0.0.1", 0), _OriginHandler)
        server.state = self.state  # type: ignore[attr-defined]
        return server

    def stop(self) -> None:
        self.state.release.set()
        super().stop()


# --------------------------------------------------------------------------- nginx

_NGINX_CONF = """
worker_processes 1;
daemon off;
master_process on;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
{user}
events {{ worker_connections 1024; }}
http {{
    log_format edge '$server_addr|$uri|$http_accept_encoding|$status';
    {access_log}
    client_body_temp_path {dir}/tmp/body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
    keepalive_requests 100000;
{caches}
{servers}
}}
"""

_SERVER = """
    server {{
        listen {ip}:{port};
        location / {{
            proxy_pass http://127.0.0.1:{origin};
            proxy_cache {zone};
            # One copy per Accept-Encoding value, as CDNs keep variants.
            proxy_cache_key "$request_uri|$http_accept_encoding{key_headers}";
            proxy_cache_valid 200 301 302 10m;
            proxy_read_timeout 60s;
            add_header X-Cache $upstream_cache_status always;
            add_header X-Pop {ip} always;
        }}
    }}
"""


class Nginx:
    """nginx with one proxy cache per PoP address, all on one port."""

    def __init__(
        self,
        workdir: Path,
        origin_port: int,
        pops: tuple[str, ...] = POPS,
        *,
        log_requests: bool = True,
        cache_key_headers: tuple[str, ...] = (),
        keys_mib: int = 4,
    ) -> None:
        self.dir = workdir
        self.keys_mib = keys_mib  # each PoP's cache keys: a MiB holds about 8,000
        self.cache_key_headers = cache_key_headers  # request headers in the cache key
        self.log_requests = log_requests  # every request the edges get (off for benchmarks)
        self.origin_port = origin_port
        self.pops = pops
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Nginx:
        binary = require_nginx()
        for sub in ("tmp", "cache"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        self.port = _free_port(self.pops)
        caches = "\n".join(
            f"    proxy_cache_path {self.dir}/cache/{i} levels=1:2"
            f" keys_zone=pop{i}:{self.keys_mib}m"
            " max_size=2g inactive=1h use_temp_path=off;"
            for i in range(len(self.pops))
        )
        key_headers = "".join(
            f"|$http_{name.lower().replace('-', '_')}" for name in self.cache_key_headers
        )
        servers = "\n".join(
            _SERVER.format(
                ip=ip,
                port=self.port,
                origin=self.origin_port,
                zone=f"pop{i}",
                key_headers=key_headers,
            )
            for i, ip in enumerate(self.pops)
        )
        conf = self.dir / "nginx.conf"
        # As root the workers would run as nobody, who cannot enter a private test directory.
        user = "user root;" if os.geteuid() == 0 else ""
        access_log = (
            f"access_log {self.dir}/access.log edge;" if self.log_requests else "access_log off;"
        )
        conf.write_text(
            _NGINX_CONF.format(
                dir=self.dir, user=user, caches=caches, servers=servers, access_log=access_log
            )
        )
        self._proc = subprocess.Popen(
            [binary, "-p", str(self.dir), "-c", str(conf), "-e", str(self.dir / "error.log")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 20
        for ip in self.pops:
            while not _accepts(ip, self.port):
                if self._proc.poll() is not None:
                    err = self._proc.stderr.read().decode() if self._proc.stderr else ""
                    raise RuntimeError(f"nginx did not start: {err}{self.error_log()}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"nginx did not listen on {ip}:{self.port}")
                time.sleep(0.02)
        return self

    def error_log(self) -> str:
        path = self.dir / "error.log"
        return path.read_text() if path.exists() else ""

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            if self._proc.stderr:
                self._proc.stderr.close()
            self._proc = None

    def edge_requests(self, path: str) -> Counter[tuple[str, str]]:
        """How many requests for ``path`` each (PoP, Accept-Encoding) got, answered or not:
        what the clients sent, whether the cache or the origin answered it."""
        log = self.dir / "access.log"
        seen: Counter[tuple[str, str]] = Counter()
        for line in log.read_text().splitlines() if log.exists() else ():
            pop, uri, encoding, _status = line.split("|")
            if uri == path:
                seen[(pop, encoding)] += 1
        return seen

    def url(self, path: str, host: str = HOST) -> str:
        return f"http://{host}:{self.port}{path}"

    def resolve_args(self, host: str = HOST) -> list[str]:
        """--resolve options pinning ``host`` to every PoP."""
        return [arg for ip in self.pops for arg in ("--resolve", f"{host}:{self.port}:{ip}")]

    def probe(
        self,
        pop: str,
        path: str,
        encoding: str,
        host: str = HOST,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, str, str]:
        """(status, X-Cache, Content-Encoding) of a GET through one PoP, with raw sockets so that
        no client library adds headers of its own; ``headers`` are sent as well."""
        extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        with socket.create_connection((pop, self.port), timeout=10) as sock:
            request = (
                f"GET {path} HTTP/1.1\r\nHost: {host}:{self.port}\r\n"
                f"Accept-Encoding: {encoding}\r\n{extra}Connection: close\r\n\r\n"
            )
            sock.sendall(request.encode())
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
        answer = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            answer[name.strip().lower()] = value.strip()
        return (
            int(head[0].split()[1]),
            answer.get("x-cache", ""),
            answer.get("content-encoding", ""),
        )


def _accepts(ip: str, port: int) -> bool:
    try:
        with socket.create_connection((ip, port), timeout=0.5):
            return True
    except OSError:
        return False


def _free_port(ips: tuple[str, ...]) -> int:
    """A port free on every address (the kernel picks it for the first)."""
    for _ in range(50):
        with socket.socket() as first:
            first.bind((ips[0], 0))
            port = int(first.getsockname()[1])
        ok = True
        for ip in ips:
            with socket.socket() as probe:
                try:
                    probe.bind((ip, port))
                except OSError:
                    ok = False
        if ok:
            return port
    raise RuntimeError("no port free on every PoP address")


# --------------------------------------------------------------------------- DNS


class DnsServer:
    """A UDP DNS server (dnspython) on 127.0.0.1: A records from ``names``; for names in
    ``subnets``, the address of the first network that holds the query's client subnet; no
    answer at all for names in ``silent``."""

    def __init__(self) -> None:
        self.names: dict[str, list[str]] = {}
        self.subnets: dict[str, list[tuple[str, str]]] = {}  # name -> [(cidr, ip)]
        self.silent: set[str] = set()  # names whose queries get no answer at all
        self.queries: list[tuple[str, str | None]] = []  # (name, client subnet or None)
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def address(self) -> str:
        assert self._sock is not None
        return f"127.0.0.1:{self._sock.getsockname()[1]}"

    def start(self) -> DnsServer:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.1)
        self._thread = threading.Thread(target=self._serve, name="cachebed-dns", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._sock is not None:
            self._sock.close()

    def _serve(self) -> None:
        import dns.edns
        import dns.message
        import dns.rcode
        import dns.rrset

        assert self._sock is not None
        while not self._stop.is_set():
            try:
                wire, peer = self._sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            query = dns.message.from_wire(wire)
            question = query.question[0]
            name = question.name.to_text().rstrip(".").lower()
            ecs = next((o for o in query.options if isinstance(o, dns.edns.ECSOption)), None)
            subnet = f"{ecs.address}/{ecs.srclen}" if ecs else None
            self.queries.append((name, subnet))
            if name in self.silent:
                continue
            response = dns.message.make_response(query)
            ips = self._lookup(name, subnet)
            if ips:
                response.answer.append(dns.rrset.from_text_list(name + ".", 60, "IN", "A", ips))
            else:
                response.set_rcode(dns.rcode.NXDOMAIN)
            self._sock.sendto(response.to_wire(), peer)

    def _lookup(self, name: str, subnet: str | None) -> list[str]:
        if subnet is not None and name in self.subnets:
            network = ipaddress.ip_network(subnet, strict=False)
            for cidr, ip in self.subnets[name]:
                served = ipaddress.ip_network(cidr)
                if network.version == served.version and network.subnet_of(served):  # type: ignore[arg-type]
                    return [ip]
            return []
        return self.names.get(name, [])


# --------------------------------------------------------------------------- the bed


@dataclass
class CacheBed:
    origin: Origin
    nginx: Nginx

    @property
    def counts(self) -> OriginState:
        return self.origin.state


def cache_bed(workdir: Path, *, cache_key_headers: tuple[str, ...] = ()) -> Iterator[CacheBed]:
    """Origin and nginx, started; stopped when the generator is closed (a fixture body).

    ``cache_key_headers``: request headers nginx adds to its cache key (e.g. ``X-Device``).
    """
    require_nginx()
    origin = Origin().start()
    nginx = Nginx(workdir, origin.port, cache_key_headers=cache_key_headers)
    try:
        nginx.start()
        yield CacheBed(origin, nginx)
    finally:
        nginx.stop()
        origin.stop()
