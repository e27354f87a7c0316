"""A fake CDN edge for `prewarm verify`: a real HTTP server on 127.0.0.1 (threads, port 0).

Each path answers with one vendor's real cache-header shapes (CloudFront, EdgeOne, Qiniu,
RFC 9211 Cache-Status, Fastly-style X-Cache lists, ...). A route can answer HEAD differently
from GET, vary by Accept-Encoding, be slow, or drop the connection. The server records every
request (method, path, Host, headers) and the most requests it had in flight at once. With an
SSL context it speaks TLS, records the SNI names it was sent, and speaks HTTP/2 when the
client offers it (ALPN), else HTTP/1.1.
"""

from __future__ import annotations

import gzip
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import urlsplit

__all__ = ["VENDOR_ROUTES", "CacheServer", "Route", "Variant"]


@dataclass
class Variant:
    """What a route answers for one Accept-Encoding value."""

    headers: dict[str, str]
    body: bytes = b""


@dataclass
class Route:
    """How one path answers."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay: float = 0.0  # seconds before answering
    head_headers: dict[str, str] | None = None  # HEAD gets these instead (CDNs that differ)
    variants: dict[str, Variant] | None = None  # by exact Accept-Encoding value
    drop: bool = False  # close the connection without any answer
    truncate: int | None = None  # send only this many body bytes (HTTP/1.1), then close
    held: threading.Event | None = None  # answer only once this is set (a minute at most)


_CF = {"Via": "1.1 5f8a.cloudfront.net (CloudFront)", "X-Amz-Cf-Id": "Jm9Hq2xRzA8b=="}

VENDOR_ROUTES: dict[str, Route] = {
    # CloudFront: X-Cache "<Result> from cloudfront", X-Amz-Cf-Pop, Age.
    "/cloudfront/hit": Route(
        headers={
            **_CF,
            "X-Cache": "Hit from cloudfront",
            "X-Amz-Cf-Pop": "SIN2-P1",
            "Age": "1520",
        }
    ),
    "/cloudfront/miss": Route(
        headers={**_CF, "X-Cache": "Miss from cloudfront", "X-Amz-Cf-Pop": "FRA56-P5"}
    ),
    "/cloudfront/refresh": Route(
        headers={**_CF, "X-Cache": "RefreshHit from cloudfront", "X-Amz-Cf-Pop": "NRT57-P2"}
    ),
    "/cloudfront/error": Route(
        status=502,
        headers={**_CF, "X-Cache": "Error from cloudfront", "X-Amz-Cf-Pop": "IAD89-C1"},
    ),
    "/cloudfront/lambda": Route(
        headers={**_CF, "X-Cache": "LambdaGeneratedResponse from cloudfront"}
    ),
    # EdgeOne: EO-Cache-Status HIT / MISS / RefreshHit, EO-LOG-UUID.
    "/edgeone/hit": Route(
        headers={
            "Server": "TencentEdgeOne",
            "EO-Cache-Status": "HIT",
            "EO-LOG-UUID": "4105283880544427145",
            "Age": "33",
        }
    ),
    "/edgeone/miss": Route(
        headers={
            "Server": "TencentEdgeOne",
            "EO-Cache-Status": "MISS",
            "EO-LOG-UUID": "4105283880544427146",
        }
    ),
    "/edgeone/refresh": Route(
        headers={"EO-Cache-Status": "RefreshHit", "EO-LOG-UUID": "4105283880544427147"}
    ),
    # Qiniu: X-Qnm-Cache Hit / Miss; X-M-Log names the node; a partner edge may add X-Cache.
    "/qiniu/hit": Route(
        headers={
            "X-Qnm-Cache": "Hit",
            "X-M-Log": "QNM:cdn-cache-dls-zjwz-wz-1;QNM3",
            "X-M-Reqid": "vwkAAJvb7J6ydyIV",
            "X-Qiniu-Zone": "0",
        }
    ),
    "/qiniu/miss": Route(
        headers={"X-Qnm-Cache": "Miss", "X-M-Log": "QNM:xs463;SRCPROXY:xs1752;SRC:39;QNM3:43"}
    ),
    "/qiniu/layered-hit": Route(
        headers={
            "X-Qnm-Cache": "Hit",
            "X-M-Log": "QNM:tj11;QNM3",
            "X-Cache": "HIT from BC12_dx-jiangsu-yancheng-3-cache-1(baishan)",
        }
    ),
    # Another CDN in front stored the origin's "X-Qnm-Cache: Miss" along with the body.
    "/qiniu/conflict": Route(
        headers={
            "X-Qnm-Cache": "Miss",
            "X-Cache": "HIT TCP_MEM_HIT dirn:11:87175746",
            "Age": "80921",
            "Via": "cache34.l2cn2600[93,200-0,M], vcache10.cn679[0,200-0,H]",
        }
    ),
    # RFC 9211: members from the origin side to the client side; the last one decides.
    "/rfc9211/edge-miss": Route(
        headers={"Cache-Status": 'OriginShield; hit; ttl=300, "Example CDN"; fwd=uri-miss; stored'}
    ),
    "/rfc9211/edge-hit": Route(
        headers={
            "Cache-Status": (
                'OriginShield; fwd=uri-miss; stored, ExampleCDN-FRA; hit; ttl=3599; key="/a,b"'
            )
        }
    ),
    "/rfc9211/stale-304": Route(
        headers={"Cache-Status": "ExampleCDN; fwd=stale; fwd-status=304; stored"}
    ),
    "/rfc9211/bypass": Route(headers={"Cache-Status": "ExampleCDN; fwd=bypass"}),
    # Generic X-Cache (Fastly with shielding: shield first, edge last).
    "/generic/hit": Route(
        headers={
            "X-Cache": "MISS, HIT",
            "X-Served-By": "cache-iad-kiad7000025-IAD, cache-lhr7380-LHR",
            "X-Cache-Hits": "0, 3",
        }
    ),
    "/generic/miss": Route(headers={"X-Cache": "HIT, MISS"}),
    # Age alone: no claim.
    "/age-only": Route(headers={"Age": "300", "Cache-Control": "max-age=3600"}),
    # A CDN nobody taught us.
    "/unknown-cdn": Route(headers={"Server": "NewCDN", "X-Proxy-Cache": "HIT", "Age": "9"}),
    # A cached 404 is a hit for the CDN, not a warm copy of the URL.
    "/404-hit": Route(status=404, headers={"X-Cache": "Hit from cloudfront"}, body=b"nope"),
    "/redirect-301": Route(
        status=301,
        headers={"Location": "/cloudfront/hit", "X-Cache": "Hit from cloudfront"},
    ),
    "/redirect-302": Route(
        status=302,
        headers={"Location": "/cloudfront/hit", "X-Cache": "Redirect from cloudfront"},
    ),
    "/big": Route(headers={"X-Cache": "HIT"}, body=bytes(range(256)) * 400),
    # Some CDNs answer HEAD from a different path than GET.
    "/head-differs": Route(
        headers={"X-Cache": "HIT"},
        head_headers={"X-Cache": "MISS"},
        body=b"x" * 1000,
    ),
    # Each encoding is its own cache entry.
    "/encodings": Route(
        variants={
            "gzip": Variant(
                {"EO-Cache-Status": "HIT", "Content-Encoding": "gzip"}, gzip.compress(b"a" * 5000)
            ),
            "br": Variant({"EO-Cache-Status": "MISS", "Content-Encoding": "br"}, b"b" * 30),
            "identity": Variant({"EO-Cache-Status": "HIT"}, b"a" * 5000),
        },
        headers={"EO-Cache-Status": "MISS"},
    ),
    "/slow": Route(headers={"X-Cache": "HIT"}, delay=3.0),
    "/drop": Route(drop=True),
    "/truncated": Route(headers={"X-Cache": "HIT"}, body=b"z" * 4000, truncate=1000),
}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128  # 16 clients connecting at once must not overflow the backlog


class CacheServer:
    """The fake edge; use as a context manager or call start() / stop()."""

    def __init__(
        self,
        routes: dict[str, Route] | None = None,
        *,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.routes: dict[str, Route] = dict(VENDOR_ROUTES if routes is None else routes)
        self.default_route = Route(headers={"X-Cache": "HIT"}, body=b"ok")
        self.requests: list[dict[str, Any]] = []
        self.sni: list[str | None] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.connections = 0  # TCP connections accepted
        self._lock = threading.Lock()
        self._ssl_context = ssl_context
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        if ssl_context is not None:
            ssl_context.set_alpn_protocols(["h2", "http/1.1"])
            ssl_context.sni_callback = self._record_sni

    # --- lifecycle ---

    def start(self) -> CacheServer:
        handler = _make_handler(self)
        self._httpd = _Server(("127.0.0.1", 0), handler)
        if self._ssl_context is not None:
            self._httpd.socket = self._ssl_context.wrap_socket(self._httpd.socket, server_side=True)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> CacheServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def paths(self, path: str) -> list[dict[str, Any]]:
        """The requests recorded for a path (query string ignored)."""
        return [r for r in self.requests if r["path"] == path]

    # --- answering ---

    def _record_sni(self, _sock: Any, name: str | None, _ctx: Any) -> None:
        with self._lock:
            self.sni.append(name)

    def begin(self, method: str, target: str, headers: dict[str, str], proto: str) -> Route:
        path = urlsplit(target).path
        with self._lock:
            self.requests.append(
                {
                    "method": method,
                    "path": path,
                    "target": target,
                    "host": headers.get("host"),
                    "headers": headers,
                    "protocol": proto,
                    "t": time.monotonic(),
                }
            )
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            route = self.routes.get(path, self.default_route)
        if route.delay:
            time.sleep(route.delay)
        if route.held is not None:
            route.held.wait(60)
        return route

    def end(self) -> None:
        with self._lock:
            self.in_flight -= 1

    @staticmethod
    def answer(route: Route, method: str, headers: dict[str, str]) -> tuple[dict[str, str], bytes]:
        out = dict(route.headers)
        body = route.body
        if route.variants is not None:
            out["Vary"] = "Accept-Encoding"
            variant = route.variants.get(headers.get("accept-encoding", "").strip())
            if variant is not None:
                out.update(variant.headers)
                body = variant.body
        if method == "HEAD" and route.head_headers is not None:
            out.update(route.head_headers)
        return out, body


def _make_handler(server: CacheServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def handle(self) -> None:
            with server._lock:
                server.connections += 1
            selected = getattr(self.request, "selected_alpn_protocol", lambda: None)()
            if selected == "h2":
                _serve_h2(server, self.request)
            else:
                super().handle()

        def _serve(self, method: str) -> None:
            headers = {k.lower(): v for k, v in self.headers.items()}
            route = server.begin(method, self.path, headers, self.request_version)
            ended = False
            try:
                if route.drop:
                    self.close_connection = True
                    return
                out, body = server.answer(route, method, headers)
                # The client may send its next request as soon as this answer reaches it:
                # the request leaves the in-flight count before the answer goes out.
                server.end()
                ended = True
                self.send_response(route.status)
                for name, value in out.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if method == "GET":
                    if route.truncate is not None:
                        body = body[: route.truncate]
                        self.close_connection = True
                    self.wfile.write(body)
            finally:
                if not ended:
                    server.end()

        def do_GET(self) -> None:
            self._serve("GET")

        def do_HEAD(self) -> None:
            self._serve("HEAD")

    return Handler


def _serve_h2(server: CacheServer, sock: Any) -> None:
    """A minimal HTTP/2 server loop on one TLS connection (small bodies only)."""
    import h2.config
    import h2.connection
    import h2.events

    conn = h2.connection.H2Connection(
        config=h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
    )
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    while True:
        try:
            data = sock.recv(65535)
        except OSError:
            return
        if not data:
            return
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.RequestReceived):
                raw = cast(dict[str, str], dict(event.headers or ()))  # header_encoding: str
                method, target = raw.pop(":method"), raw.pop(":path")
                headers = {k.lower(): v for k, v in raw.items() if not k.startswith(":")}
                headers["host"] = raw.get(":authority", "")
                route = server.begin(method, target, headers, "HTTP/2")
                ended = False
                try:
                    out, body = server.answer(route, method, headers)
                    server.end()  # before the answer goes out, as for HTTP/1.1
                    ended = True
                    response = [(":status", str(route.status))]
                    response += [(k.lower(), v) for k, v in out.items()]
                    response.append(("content-length", str(len(body))))
                    send_body = method == "GET" and bool(body)
                    conn.send_headers(event.stream_id, response, end_stream=not send_body)
                    if send_body:
                        conn.send_data(event.stream_id, body, end_stream=True)
                finally:
                    if not ended:
                        server.end()
            elif isinstance(event, h2.events.ConnectionTerminated):
                sock.sendall(conn.data_to_send())
                return
        sock.sendall(conn.data_to_send())
