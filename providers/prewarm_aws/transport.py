"""HTTP to the stack's API Gateway: the x-api-key header, and API Gateway's own errors.

Both API generations sit behind a REST API with an API key and a usage plan, so what API
Gateway answers before any Lambda runs (403, 429, 502, 504) is mapped here, once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlsplit

from prewarm_cli.errors import (
    AuthError,
    ConfigError,
    ProviderError,
    QuotaExhausted,
    RateLimited,
    RetryableError,
    UnknownOutcome,
)
from prewarm_cli.plugin import tls_context

if TYPE_CHECKING:
    import httpx

__all__ = ["Answer", "NoSuchRoute", "Transport", "check_endpoint", "next_utc_midnight"]

# Path segments that are routes, not stages: an endpoint ending in one was pasted whole.
_ROUTES = frozenset({"prewarm", "summary", "instances", "status"})
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
_V2_ROUTE_HINT = (
    "check that endpoint ends with the stage (e.g. /prod) and that the stack is the 2024"
    " prewarm API (POST /prewarm, GET /summary, /instances); a first-generation (2023) stack"
    " needs api_version = 1 and status_endpoint (`prewarm config check --online` tells which)"
)
# prewarm always sends every field the server reads, so a crash here is rarely the
# "missing field" of the docs' examples.
_V2_CRASH_HINT = (
    "the server crashes on a missing or malformed field (url_list, cf_domain, timeout,"
    " instance_count, header), an unknown region/country key, or when the Auto Scaling group"
    " refuses instance_count; prewarm sends every field, so check instance_count against the"
    " account's EC2 limits, and the stack's Lambda logs. Not retried: `prewarm submit --resume"
    " JOB` sends the URLs again"
)


class NoSuchRoute(ConfigError):
    """API Gateway's 403 ``Missing Authentication Token``: no such route at that base URL.

    A wrong stage path, or a stack of the other API generation: ``config check`` tells them apart
    by which route is missing.
    """


def check_endpoint(alias: str, endpoint: str, *, name: str = "endpoint") -> str:
    """The endpoint without a trailing slash; ConfigError when it is not a base URL."""
    key = f"providers.{alias}.{name}"
    parts = urlsplit(endpoint.strip())
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host:
        raise ConfigError(
            f"{key}: {endpoint!r} is not a URL with scheme and host"
            " (e.g. https://abc123.execute-api.us-east-1.amazonaws.com/prod)"
        )
    if parts.scheme == "http" and host not in _LOOPBACK:
        raise ConfigError(f"{key}: API Gateway serves HTTPS only; use https://{parts.netloc}")
    if parts.query or parts.fragment:
        raise ConfigError(f"{key}: remove the query string or fragment from {endpoint!r}")
    segments = [s for s in parts.path.split("/") if s]
    if segments and segments[-1].lower() in _ROUTES:
        base = endpoint.strip().rstrip("/").rsplit("/", 1)[0]
        raise ConfigError(
            f"{key}: ends with the route /{segments[-1]}; give the base URL with the stage"
            f" only, e.g. {base}"
        )
    if ".execute-api." in host and not segments:
        raise ConfigError(
            f"{key}: {endpoint!r} has no stage; add it, e.g. {endpoint.rstrip('/')}/prod"
        )
    return endpoint.strip().rstrip("/")


def next_utc_midnight(now: datetime | None = None) -> str:
    """When a usage plan's daily quota resets (periods start at 00:00 UTC)."""
    now = now or datetime.now(UTC)
    tomorrow = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return tomorrow.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Answer:
    """A Lambda's answer: HTTP 200 (or 400 from POST /prewarm), the body, the request id."""

    status: int
    data: Mapping[str, Any]
    request_id: str | None


class Transport:
    """One httpx client per alias; every request carries the API key."""

    def __init__(
        self,
        alias: str,
        endpoint: str,
        api_key: str,
        *,
        timeout: float,
        ca_bundle: str | None,
        key_hint: str,
        route_hint: str = _V2_ROUTE_HINT,
        unknown_hint: str | None = None,
        crash_hint: str = _V2_CRASH_HINT,
    ) -> None:
        self.alias = alias
        self.endpoint = endpoint
        self._api_key = api_key
        self._timeout = timeout
        self._ca_bundle = ca_bundle
        self._key_hint = key_hint
        self._route_hint = route_hint
        self._unknown = unknown_hint
        self._submit_crash_hint = crash_hint
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()
        # Called before every request: the provider paces all but a call's first one.
        self.before_request: Callable[[], None] | None = None

    def __repr__(self) -> str:  # never shows the key
        return f"Transport({self.alias!r}, {self.endpoint!r})"

    def client(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                import httpx

                self._client = httpx.Client(
                    base_url=self.endpoint + "/",
                    timeout=self._timeout,
                    verify=tls_context(self._ca_bundle),
                    headers={"x-api-key": self._api_key},
                )
            return self._client

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def call(
        self,
        method: str,
        route: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
        submit: bool = False,
    ) -> Answer:
        """One request; a 200 (or a 400) answer, or the typed error for the engine.

        ``submit`` marks the request that creates a job: an answer lost after sending
        leaves its outcome unknown instead of making it safe to retry.
        """
        import httpx

        what = f"{method} /{route}"
        client = self.client()
        if self.before_request is not None:
            self.before_request()
        try:
            response = client.request(method, route, params=params, json=body)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # Nothing reached the API: safe to send again.
            raise RetryableError(
                f"cannot reach the prewarm API at {self.endpoint} for {what}: {exc}",
                provider=self.alias,
            ) from exc
        except httpx.TransportError as exc:
            message = f"no answer to {what}: {type(exc).__name__}"
            if submit:
                raise UnknownOutcome(
                    message + "; the job may have been created",
                    hint=self._unknown_hint(),
                    provider=self.alias,
                ) from exc
            raise RetryableError(message, provider=self.alias) from exc
        request_id = response.headers.get("x-amzn-RequestId")
        data = _json_object(response)
        if response.status_code == 200 or (response.status_code == 400 and submit):
            return Answer(response.status_code, data, request_id)
        if not data:
            # A Lambda's exception text comes back as a plain-text body (whatever its
            # content type says): it is the only clue there is.
            data = {"message": _plain_text(response)}
        self._raise(response.status_code, data, what, submit, request_id)

    def _unknown_hint(self) -> str:
        if self._unknown is not None:
            return self._unknown
        return (
            f"see whether the stack is running a job (`prewarm scale -p {self.alias}` shows its"
            " instances); resend with `prewarm submit --resume JOB --force` only if it is not"
        )

    def _raise(
        self,
        status: int,
        data: Mapping[str, Any],
        what: str,
        submit: bool,
        request_id: str | None,
    ) -> NoReturn:
        message = str(data.get("message") or data.get("Message") or "").strip()
        text = f"{what}: HTTP {status}" + (f" {message}" if message else "")
        kw: dict[str, Any] = {"provider": self.alias, "request_id": request_id}
        if status == 403:
            if message == "Missing Authentication Token":
                raise NoSuchRoute(
                    f"{text}: API Gateway has no such route at {self.endpoint}",
                    hint=self._route_hint,
                    **kw,
                )
            if message in ("", "Forbidden"):
                raise AuthError(f"{text}: the API key was refused", hint=self._key_hint, **kw)
            raise AuthError(
                text,
                hint="the API's resource policy refused the call (a private stack is reachable"
                " only through its VPC endpoint)",
                **kw,
            )
        if status == 429:
            if message == "Limit Exceeded":
                resets = next_utc_midnight()
                raise QuotaExhausted(
                    f"{text}: the API key's daily quota is used up (resets {resets})",
                    hint="resume the job after the reset with `prewarm submit --resume JOB`"
                    if submit
                    else f"nothing is lost: ask again after the reset ({resets})",
                    resets_at=resets,
                    **kw,
                )
            raise RateLimited(text, **kw)  # no Retry-After from API Gateway: backoff
        if status == 502:
            raise ProviderError(
                f"{text}: the Lambda behind {what} crashed", hint=self._crash_hint(what), **kw
            )
        if status == 504:
            if submit:
                raise UnknownOutcome(
                    f"{text}: the API did not answer within API Gateway's 29 s;"
                    " the job may have been created",
                    hint=self._unknown_hint(),
                    **kw,
                )
            raise RetryableError(text, **kw)
        if status >= 500:
            if submit:
                raise UnknownOutcome(text, hint=self._unknown_hint(), **kw)
            raise RetryableError(text, **kw)
        raise ProviderError(text, **kw)

    def _crash_hint(self, what: str) -> str:
        if what == "POST /prewarm":
            return self._submit_crash_hint
        return "see the stack's Lambda logs in CloudWatch"


def _plain_text(response: httpx.Response, limit: int = 300) -> str:
    """The first line of a non-JSON body, shortened: enough to tell what went wrong."""
    text = " ".join(response.text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _json_object(response: httpx.Response) -> dict[str, Any]:
    """The body as a JSON object, or {}: error bodies may be plain text despite their type."""
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
