"""What an EdgeOne error code means for the engine: retry, defer, shrink, reject or stop."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from prewarm_cli.errors import (
    AuthError,
    BatchTooLarge,
    ConfigError,
    InvalidRequest,
    PrewarmError,
    ProviderError,
    QuotaExhausted,
    RateLimited,
    RetryableError,
    UnknownOutcome,
)
from prewarm_edgeone.client import CHECK_KEYS, ApiError

# Refusals of the request as a whole for a configuration reason: stop, exit 3.
_CONFIG_CODES = frozenset(
    {
        "ActionOffline",
        "InvalidAction",
        "NoSuchVersion",
        "UnsupportedRegion",
        "UnsupportedProtocol",
        "IpInBlacklist",
        "IpNotInWhitelist",
        "InvalidCredential",
        "ClientError",
        "ClientParamsError",
        "LimitExceeded.PackNotAllow",
    }
)
# The zone is unknown, not the account's, or not active.
_ZONE_PREFIXES = ("ResourceNotFound", "ResourceUnavailable", "OperationDenied")
_ZONE_CODES = frozenset({"InvalidParameter.ZoneNotFound", "InvalidParameterValue.ZoneNotFound"})
# Input errors that are about the URLs: reject the ones named, or split to find them.
_URL_CODES = frozenset({"InvalidParameter.Target", "InvalidParameter.DomainNotFound"})
_INPUT_PREFIXES = ("InvalidParameter", "InvalidParameterValue", "MissingParameter")
_SERVER_PREFIXES = ("InternalError", "ServiceUnavailable", "ResourceInsufficient")
# Characters after a URL in a message that end it ("... target https://a/b is invalid.").
_URL_END = re.compile(r"[\s\"'<>()\[\]{},;\uff0c\u3002\uff1b\uff1a]|\.(?:\s|$)|$")


def is_throttle(code: str) -> bool:
    return code.startswith("RequestLimitExceeded") or code == "LimitExceeded.RateLimitExceeded"


def is_auth(code: str) -> bool:
    return code.startswith(("AuthFailure", "UnauthorizedOperation"))


def is_cam_denial(code: str) -> bool:
    """The key is valid but its CAM policy does not allow this action."""
    return code.startswith("UnauthorizedOperation") or code == "AuthFailure.UnauthorizedOperation"


def is_zone(code: str) -> bool:
    return code in _ZONE_CODES or code.startswith(_ZONE_PREFIXES)


def translate(
    err: ApiError,
    *,
    alias: str,
    zone_id: str,
    submit: bool = False,
    targets: Mapping[str, str] | None = None,
) -> PrewarmError:
    """The typed error for one failed call.

    ``submit`` marks a call that creates something (a retry could create it twice);
    ``targets`` maps the URLs as sent to the user's URLs, to name refused ones.
    """
    code = err.code
    kw: dict[str, Any] = {"provider": alias, "request_id": err.request_id}
    text = f"EdgeOne {err.action}: {code}: {err.message}".rstrip(": ")
    if err.transport:
        if code == "TLSVerifyFailed":
            return ConfigError(
                f"EdgeOne {err.action}: TLS certificate verification failed: {err.message}",
                hint="set ca_bundle (or SSL_CERT_FILE) to your proxy's CA bundle",
                **kw,
            )
        text = f"EdgeOne {err.action}: no usable answer ({code}: {err.message})"
        if not err.reached:  # never sent: the message names the host and the reason
            text = f"EdgeOne {err.action}: {err.message}"
        if submit and err.reached:
            return UnknownOutcome(text, **kw)
        return RetryableError(text, **kw)
    if is_throttle(code):
        return RateLimited(text, **kw)
    if is_auth(code):
        return AuthError(text, hint=_auth_hint(code, err.action, zone_id), **kw)
    if is_zone(code):
        return ConfigError(
            f"EdgeOne does not accept zone {zone_id!r}: {code}: {err.message}",
            hint=f"check zone_id in [providers.{alias}] (the site id, zone-...)",
            **kw,
        )
    if code in _CONFIG_CODES:
        return ConfigError(text, **kw)
    if code == "LimitExceeded.DailyQuota":
        return QuotaExhausted(text, hint="resume tomorrow: prewarm submit --resume JOB", **kw)
    if code in ("LimitExceeded.BatchQuota", "RequestSizeLimitExceeded"):
        return BatchTooLarge(text, **kw)
    if code.startswith(_SERVER_PREFIXES):
        return UnknownOutcome(text, **kw) if submit else RetryableError(text, **kw)
    if code.startswith(_INPUT_PREFIXES) or code == "UnknownParameter":
        named = named_targets(err, targets or {})
        if named:
            return InvalidRequest(text, urls={u: f"{code}: {err.message}" for u in named}, **kw)
        if code in _URL_CODES and targets:
            return InvalidRequest(text, **kw)  # the engine splits the batch to find them
        return ProviderError(text, **kw)
    return ProviderError(text, **kw)


def named_targets(err: ApiError, targets: Mapping[str, str]) -> list[str]:
    """The user's URLs whose target (or, for a domain error, host) the message names."""
    message = err.message
    named = [ours for sent, ours in targets.items() if _names_url(message, sent)]
    if named or err.code != "InvalidParameter.DomainNotFound":
        return named
    hosts: dict[str, list[str]] = {}
    for sent, ours in targets.items():
        host = urlsplit(sent).hostname or ""
        if host:
            hosts.setdefault(host, []).append(ours)
    return [
        ours
        for host, urls in hosts.items()
        if re.search(rf"(?<![\w.-]){re.escape(host)}(?![\w-])(?!\.\w)", message)
        for ours in urls
    ]


def _names_url(message: str, url: str) -> bool:
    start = message.find(url)
    while start != -1:
        before = message[start - 1] if start else " "
        if not (before.isalnum() or before in "/:._-%") and _URL_END.match(
            message, start + len(url)
        ):
            return True
        start = message.find(url, start + 1)
    return False


def _auth_hint(code: str, action: str, zone_id: str) -> str:
    if code == "AuthFailure.SignatureExpire":
        return "the system clock is more than 5 minutes off: synchronise it (NTP)"
    if code == "AuthFailure.TokenFailure":
        return (
            "the session token (token, or TENCENTCLOUD_SESSION_TOKEN) is invalid or expired:"
            " get new temporary credentials"
        )
    if is_cam_denial(code):
        return f"grant the key's CAM user teo:{action} on zone {zone_id}"
    return CHECK_KEYS
