"""HTTP to Qiniu's fusion API: QBox signing, the JSON envelope and typed errors.

Qiniu's own SDK signs (``qiniu.Auth``) but has no list calls, defaults to plain http and
returns ``None`` for every non-200 answer, so requests go through httpx; the SDK is used
for the signature only. Both are imported on first use.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlsplit

from prewarm_cli.errors import (
    AuthError,
    BatchTooLarge,
    ConfigError,
    NotFoundError,
    ProviderError,
    QuotaExhausted,
    RateLimited,
    RetryableError,
    UnknownOutcome,
)
from prewarm_cli.plugin import tls_context

if TYPE_CHECKING:
    import httpx

__all__ = [
    "DEFAULT_ENDPOINT",
    "QiniuClient",
    "Reply",
    "check_endpoint",
    "qbox_authorization",
]

DEFAULT_ENDPOINT = "https://fusion.qiniuapi.com"
SDK_HINT = (
    "prewarm's qiniu extra: pip install 'prewarm-cli[qiniu]'"
    " (pipx: pipx install --force 'prewarm-cli[qiniu]')"
)

# Vendor codes (https://developer.qiniu.com/fusion/api/1227 and the fact sheet).
OK = 200
INVALID_URL = 400031
INVALID_HOST = 400032
PREFETCH_QUOTA = 400033
REFRESH_URL_QUOTA = 400034
REFRESH_DIR_QUOTA = 400035
INVALID_REQUEST_ID = 400036
URL_EXISTS = 400037
DIR_REFRESH_DENIED = 400038
TOO_MANY = 400039
THROTTLED = frozenset({403022, 403024})
SERVER_ERRORS = frozenset({500000, 500005, 500016, 500017, 500018})
QUOTA_CODES = frozenset({PREFETCH_QUOTA, REFRESH_URL_QUOTA, REFRESH_DIR_QUOTA})

# Where each key comes from (env:VAR, the file, or QINIU_ACCESS_KEY / QINIU_SECRET_KEY by
# default) is what `config show` lists.
_AUTH_HINT = "check access_key and secret_key: `prewarm config show` says where each comes from"


def check_endpoint(alias: str, value: object) -> str:
    """The configured endpoint as ``scheme://host[:port]``; anything else is a ConfigError."""
    text = DEFAULT_ENDPOINT if value in (None, "") else str(value)
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            f"providers.{alias}.endpoint = {text!r} is not a URL with a scheme",
            hint=f"write it in full, e.g. {DEFAULT_ENDPOINT!r}",
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(
            f"providers.{alias}.endpoint = {text!r} has a path; Qiniu's API lives at the root",
            hint=f"use just the scheme and host, e.g. {DEFAULT_ENDPOINT!r}",
        )
    return f"{parts.scheme}://{parts.netloc}"


def qbox_authorization(auth: Any, url: str) -> str:
    """The ``Authorization`` value for a JSON request to ``url``: ``QBox <AK>:<sign>``.

    ``qiniu.Auth.token_of_request`` signs ``path[?query]`` and a newline (the body only
    for form-encoded requests, which these never are) with HMAC-SHA1, URL-safe base64.
    """
    return "QBox " + str(auth.token_of_request(url))


@dataclass(frozen=True)
class Reply:
    """One answer from Qiniu: the HTTP status, the envelope's code and text, the body."""

    status: int
    code: int
    error: str
    data: dict[str, Any] = field(default_factory=dict)
    request_id: str | None = None  # the X-Reqid header
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        # a 200 with another code in the body is still an error
        return self.status == 200 and self.code == OK


class QiniuClient:
    """Signed JSON POSTs to one Qiniu endpoint; thread-safe, built on first use."""

    def __init__(
        self,
        alias: str,
        endpoint: str,
        access_key: str,
        secret_key: str,
        *,
        timeout: float,
        ca_bundle: str | None,
        pace: Callable[[int], None],
    ) -> None:
        self.alias = alias
        self._pace = pace  # the provider's pace(): every request waits its turn
        self.endpoint = endpoint
        self._access_key = access_key
        self._secret_key = secret_key
        self._timeout = timeout
        self._ca_bundle = ca_bundle
        self._lock = threading.Lock()
        self._http: httpx.Client | None = None
        self._auth: Any = None

    def __repr__(self) -> str:
        return f"QiniuClient({self.alias!r}, {self.endpoint!r})"  # never the keys

    def open(self) -> None:
        """Imports the SDK and builds the HTTP client (a ConfigError when the SDK is missing)."""
        with self._lock:
            if self._http is not None:
                return
            try:
                import qiniu
            except ImportError as exc:
                raise ConfigError(
                    f"the qiniu provider needs the qiniu SDK: {SDK_HINT}", provider=self.alias
                ) from exc
            import httpx

            try:
                self._auth = qiniu.Auth(self._access_key, self._secret_key)
            except ValueError as exc:  # the SDK refuses empty keys
                raise ConfigError(
                    f"providers.{self.alias}: access_key and secret_key must not be empty",
                    hint=_AUTH_HINT,
                    provider=self.alias,
                ) from exc
            self._http = httpx.Client(
                timeout=self._timeout,
                verify=tls_context(self._ca_bundle),
                headers={"User-Agent": "prewarm-cli (qiniu)"},
            )

    def close(self) -> None:
        with self._lock:
            if self._http is not None:
                self._http.close()
                self._http = None

    def post(self, path: str, body: dict[str, Any], *, submit: bool, n_urls: int = 0) -> Reply:
        """One signed, paced POST; transport failures become typed errors, vendor errors a Reply.

        ``submit`` says the request changes state: then an answer lost after sending is an
        UnknownOutcome (the vendor may have acted on it), not a retry. ``n_urls`` is what the
        request counts against the URLs-per-second limit.
        """
        import httpx

        self.open()
        self._pace(n_urls)
        assert self._http is not None
        url = self.endpoint + path
        headers = {
            "Authorization": qbox_authorization(self._auth, url),
            "Content-Type": "application/json",
        }
        what = f"POST {path}"
        try:
            response = self._http.post(url, content=json.dumps(body).encode(), headers=headers)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # nothing reached Qiniu: sending again is safe
            raise RetryableError(
                f"cannot connect to {self.endpoint} for {what}: {exc}", provider=self.alias
            ) from exc
        except httpx.TransportError as exc:
            message = f"no answer to {what}: {type(exc).__name__}: {exc}".rstrip(": ")
            if submit:
                raise UnknownOutcome(message, provider=self.alias) from exc
            raise RetryableError(message, provider=self.alias) from exc
        return _reply(response)

    # --- errors ---

    def fail(self, reply: Reply, what: str, *, submit: bool) -> NoReturn:
        """Raises the typed error for a failed reply (codes with no special handling)."""
        code = reply.code
        text = f"{what}: {reply.error or 'error'} (code {code}"
        text += f", HTTP {reply.status})" if reply.status != code else ")"
        kw: dict[str, Any] = {"provider": self.alias, "request_id": _request_id(reply)}
        if reply.status == 401 or code == 401:
            raise AuthError(text, hint=_AUTH_HINT, **kw)
        if code in THROTTLED or reply.status == 429:
            raise RateLimited(text, retry_after=reply.retry_after, **kw)
        if code in QUOTA_CODES:
            raise QuotaExhausted(
                text, hint="resume after the daily reset: prewarm submit --resume JOB", **kw
            )
        if code in SERVER_ERRORS or reply.status >= 500:
            # a submit may have been carried out before the failure: look before resending
            if submit:
                raise UnknownOutcome(text, **kw)
            raise RetryableError(text, retry_after=reply.retry_after, **kw)
        if code == TOO_MANY:
            raise BatchTooLarge(text, **kw)
        if code == INVALID_REQUEST_ID:
            raise NotFoundError(text, hint="check the task id (a Qiniu requestId)", **kw)
        if code == DIR_REFRESH_DENIED:
            raise AuthError(text, hint="directory refresh must be enabled by a Qiniu ticket", **kw)
        if reply.status == 403 or str(code).startswith("403"):
            raise AuthError(text, hint=_AUTH_HINT, **kw)
        raise ProviderError(text, **kw)


def _reply(response: httpx.Response) -> Reply:
    """The envelope read from any answer: body code first, the HTTP status without one."""
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        data = {}
    raw_code = data.get("code")
    code = raw_code if isinstance(raw_code, int) and not isinstance(raw_code, bool) else None
    error = data.get("error")
    if not isinstance(error, str) or not error:
        error = response.reason_phrase or ""
        if not data and response.text.strip():
            error = _in_one_line(response.text)
    return Reply(
        status=response.status_code,
        code=code if code is not None else response.status_code,
        error=error,
        data=data,
        request_id=response.headers.get("X-Reqid"),
        retry_after=_retry_after(response.headers.get("Retry-After")),
    )


_MARKUP = re.compile(r"<(script|style)\b.*?</\1>|<[^>]*>", re.IGNORECASE | re.DOTALL)


def _in_one_line(text: str, limit: int = 160) -> str:
    """A reply that is not JSON (a gateway's or proxy's error page) as one line of its words,
    without the HTML's markup."""
    words = " ".join(_MARKUP.sub(" ", text).split())
    return words if len(words) <= limit else words[: limit - 1] + "…"


def _request_id(reply: Reply) -> str | None:
    body_id = reply.data.get("requestId")
    if isinstance(body_id, str) and body_id:
        return body_id
    return reply.request_id


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
