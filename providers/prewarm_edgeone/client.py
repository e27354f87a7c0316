"""The SDK side of the EdgeOne provider: clients, calls and the reply envelope.

The Tencent Cloud SDK is imported here lazily (it costs about 0.3 s), one ``TeoClient`` is
built per thread (the SDK's ``requests`` session is not meant to be shared between threads),
every call waits for the provider's pacing first, and every call's reply envelope is checked
by our own code: the SDK raises on a ``Response.Error`` only when the reply's Content-Type is
exactly ``application/json``.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from prewarm_cli.errors import ConfigError

API_VERSION = "2022-09-01"
CHINA_ENDPOINT = "https://teo.tencentcloudapi.com"
INTL_ENDPOINT = "https://teo.intl.tencentcloudapi.com"
SDK_MISSING = (
    "the edgeone provider needs the Tencent Cloud SDK, prewarm's edgeone extra:"
    " pip install 'prewarm-cli[edgeone]' (pipx: pipx install --force 'prewarm-cli[edgeone]')"
)
# The documented ceiling of each of the five actions (their API pages).
VENDOR_REQUESTS_PER_SECOND = 20.0


# Where each key comes from (env:VAR, the file, or TENCENTCLOUD_SECRET_ID / _SECRET_KEY by
# default) is what `config show` lists.
CHECK_KEYS = "check secret_id and secret_key: `prewarm config show` says where each comes from"


@dataclass(frozen=True)
class Endpoint:
    """Where the API is: the SDK wants a protocol and a bare ``host[:port]``."""

    protocol: str
    host: str


def parse_endpoint(value: str, keypath: str) -> Endpoint:
    """A full URL with scheme; http only to a loopback test server."""
    fix = f"use a full URL such as {CHINA_ENDPOINT} or {INTL_ENDPOINT}"
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"{keypath}: {value!r} is not a valid URL ({exc}); {fix}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{keypath}: {value!r} is not a URL with a scheme and host; {fix}")
    if parts.path not in ("", "/") or parts.query or parts.fragment or "@" in parts.netloc:
        raise ConfigError(
            f"{keypath}: {value!r} has a path, query or credentials; the API lives at / ({fix})"
        )
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        # Signed requests carry the session token in clear: plain http only for local tests.
        raise ConfigError(f"{keypath}: {value!r} must use https (http only to 127.0.0.1)")
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    return Endpoint(parts.scheme, host if port is None else f"{host}:{port}")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ApiError(Exception):
    """One failed call, before the provider decides what it means for the engine."""

    def __init__(
        self,
        action: str,
        code: str,
        message: str,
        request_id: str | None = None,
        *,
        transport: bool = False,
        reached: bool = True,
    ) -> None:
        super().__init__(f"{action}: {code}: {message}")
        self.action = action
        self.code = code
        self.message = message
        self.request_id = request_id
        self.transport = transport  # no vendor reply envelope: network or HTTP-level fault
        self.reached = reached  # False only when the request provably never left


class TeoApi:
    """The teo 2022-09-01 API through the official SDK: signed, paced, envelope-checked."""

    def __init__(
        self,
        *,
        secret_id: str,
        secret_key: str,
        token: str | None,
        endpoint: Endpoint,
        timeout: float,
        ca_bundle: str | None,
        pace: Callable[[int], None],
    ) -> None:
        self._secret_id = secret_id
        self._secret_key = secret_key
        self._token = token
        self.endpoint = endpoint
        self._timeout = timeout
        self._ca_bundle = ca_bundle
        self._pace = pace  # the provider's pace(): the engine's limiter, for every request
        self._local = threading.local()
        self._clients: list[Any] = []
        self._lock = threading.Lock()
        self._ready = False
        self.models: Any = None
        self._teo_client: Any = None
        self._credential: Any = None
        self._sdk_exception: type[Exception] = Exception

    def __repr__(self) -> str:
        return f"TeoApi({self.endpoint.protocol}://{self.endpoint.host})"

    def prepare(self) -> None:
        """Imports the SDK and checks the credential's form (no request)."""
        with self._lock:
            if self._ready:
                return
            try:
                from tencentcloud.common.credential import Credential
                from tencentcloud.common.exception.tencent_cloud_sdk_exception import (
                    TencentCloudSDKException,
                )
                from tencentcloud.teo.v20220901 import models, teo_client
            except ImportError as exc:
                raise ConfigError(SDK_MISSING) from exc
            # The SDK signs with datetime.utcfromtimestamp, deprecated since Python 3.12:
            # a -W error run must not turn every call into an error.
            warnings.filterwarnings("ignore", category=DeprecationWarning, module="tencentcloud")
            import logging

            # Its debug log prints request headers, the session token among them.
            logging.getLogger("tencentcloud_sdk_common").setLevel(logging.WARNING)
            try:
                self._credential = Credential(self._secret_id, self._secret_key, self._token)
            except TencentCloudSDKException as exc:
                raise ConfigError(
                    f"EdgeOne credentials: {exc.message}",
                    hint=CHECK_KEYS,
                ) from None
            self.models = models
            self._teo_client = teo_client
            self._sdk_exception = TencentCloudSDKException
            self._ready = True

    def _client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            from tencentcloud.common.profile.client_profile import ClientProfile
            from tencentcloud.common.profile.http_profile import HttpProfile

            from prewarm_cli import __version__

            http = HttpProfile(
                protocol=self.endpoint.protocol,
                endpoint=self.endpoint.host,
                reqTimeout=self._timeout,
                certification=self._ca_bundle or _env_ca_bundle(),
            )
            profile = ClientProfile(
                httpProfile=http, language="en-US", request_client=f"prewarm-cli-{__version__}"
            )
            client = self._teo_client.TeoClient(self._credential, "", profile)
            conn = getattr(getattr(client, "request", None), "conn", None)
            if conn is not None and hasattr(conn, "proxy"):
                # The SDK tests NO_PROXY by substring ("host:port" in NO_PROXY); without its
                # choice, requests applies HTTPS_PROXY / NO_PROXY itself, correctly.
                conn.proxy = None
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    def call(self, action: str, request: Any) -> dict[str, Any]:
        """One call; the ``Response`` object, or ApiError."""
        self.prepare()
        client = self._client()
        params = request._serialize()
        self._pace(0)
        try:
            body = client.call(action, params)
        except self._sdk_exception as exc:
            raise self._sdk_error(action, exc) from None
        except Exception as exc:  # requests errors while reading the reply body
            raise ApiError(
                action, type(exc).__name__, str(exc), transport=True, reached=True
            ) from None
        return _envelope(action, body)

    def _sdk_error(self, action: str, exc: Any) -> ApiError:
        code = str(getattr(exc, "code", None) or "ClientError")
        message = _text(getattr(exc, "message", None))
        request_id = getattr(exc, "requestId", None)
        if code == "ClientNetworkError":
            if _tls_verify_failed(exc):
                return ApiError(action, "TLSVerifyFailed", message, transport=True, reached=False)
            if _never_sent(exc):
                return ApiError(
                    action, code, _unreachable(exc, message), transport=True, reached=False
                )
            return ApiError(action, code, message, transport=True, reached=True)
        if code == "ServerNetworkError":
            # A non-200 reply: its body may still be an envelope naming the real error.
            try:
                _envelope(action, message.encode())
            except ApiError as inner:
                if not inner.transport:
                    return inner
            return ApiError(action, code, f"HTTP error: {message[:300]}", transport=True)
        if code in ("JSONDecodeError", "KeyError", "DeprecationWarning", "AttributeError"):
            return ApiError(action, code, message, request_id, transport=True)
        return ApiError(action, code, message, request_id)

    def close(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            session = getattr(
                getattr(getattr(client, "request", None), "conn", None), "_session", None
            )
            if session is not None:
                session.close()


def _envelope(action: str, body: bytes | str) -> dict[str, Any]:
    try:
        data = json.loads(body)
        response = data["Response"]
        if not isinstance(response, dict):
            raise TypeError("Response is not an object")
    except (ValueError, KeyError, TypeError) as exc:
        raise ApiError(
            action, "InvalidReply", f"not an API reply ({exc})", transport=True
        ) from None
    error = response.get("Error")
    if isinstance(error, dict):
        raise ApiError(
            action,
            str(error.get("Code") or "UnknownError"),
            str(error.get("Message") or ""),
            _opt_str(response.get("RequestId")),
        )
    return response


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return "" if value is None else str(value)


def _env_ca_bundle() -> str | None:
    # The SDK passes certifi's bundle explicitly, which makes requests ignore these.
    for var in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
        path = os.environ.get(var)
        if path and os.path.isfile(path):
            return path
    return None


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception, its causes and contexts, and exceptions held in args or .reason."""
    seen: set[int] = set()
    out: list[BaseException] = []
    stack: list[BaseException] = [exc]
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        out.append(item)
        for nxt in (item.__cause__, item.__context__, getattr(item, "reason", None), *item.args):
            if isinstance(nxt, BaseException):
                stack.append(nxt)
    return out


def _never_sent(exc: BaseException) -> bool:
    """Whether a transport error happened before the request could leave (connect phase)."""
    from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

    return any(
        isinstance(e, ConnectTimeoutError | NewConnectionError)
        or type(e).__name__ == "ConnectTimeout"
        for e in _chain(exc)
    )


def _unreachable(exc: BaseException, message: str) -> str:
    """ "cannot reach HOST: why", from urllib3's connect error in the SDK's exception (its own
    text is the whole chain of reprs)."""
    from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

    for e in _chain(exc):
        if isinstance(e, ConnectTimeoutError | NewConnectionError):
            host = getattr(getattr(e, "conn", None), "host", None) or "the API"
            why = re.sub(r"^\S+\(host=[^)]*\): |^<[^>]*>: ", "", str(e))
            return f"cannot reach {host}: {why}"
    return message


def _tls_verify_failed(exc: BaseException) -> bool:
    return any("CERTIFICATE_VERIFY_FAILED" in str(e) for e in _chain(exc))
