"""Finding a URL host's distribution (its dXXXX.cloudfront.net name) through ListDistributions.

The v2 server needs ``cf_domain`` in every request and never resolves it itself, so when the
config omits it the client does what the solution's own helper does: match the host against
the distributions' aliases (CNAMEs), across every page, with the standard AWS credentials.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from prewarm_cli.errors import AuthError, ConfigError, ProviderError, RetryableError

__all__ = ["Distribution", "DistributionIndex", "is_cloudfront_domain"]

_CF_DOMAIN = re.compile(r"^[a-z0-9][a-z0-9-]*\.cloudfront\.(net|cn)$")
_THROTTLING = frozenset({"Throttling", "ThrottlingException", "TooManyRequestsException"})
_DENIED = frozenset(
    {"AccessDenied", "AccessDeniedException", "InvalidClientTokenId", "SignatureDoesNotMatch"}
)
_EXPIRED = frozenset({"ExpiredToken", "ExpiredTokenException", "RequestExpired"})
PAGE_SIZE = 100


def is_cloudfront_domain(name: str, *, china: bool = False) -> bool:
    """Whether ``name`` is a distribution's own domain name (dXXXX.cloudfront.net)."""
    match = _CF_DOMAIN.match(name.lower())
    return match is not None and (match.group(1) == "net" or china)


@dataclass(frozen=True)
class Distribution:
    id: str
    domain: str  # dXXXX.cloudfront.net
    aliases: tuple[str, ...]


class DistributionIndex:
    """The account's distributions, listed once, and host → distribution matching."""

    def __init__(self, alias: str, profile: str | None, *, page_size: int = PAGE_SIZE) -> None:
        self.alias = alias
        self._profile = profile
        self._page_size = page_size
        self._lock = threading.Lock()
        self._items: tuple[Distribution, ...] | None = None
        self._client: Any = None

    def distributions(self) -> tuple[Distribution, ...]:
        with self._lock:
            if self._items is None:
                self._items = tuple(self._list())
            return self._items

    def match(self, host: str) -> list[Distribution]:
        """The distributions serving ``host``: exact aliases first, then wildcard aliases."""
        host = host.lower().rstrip(".")
        if is_cloudfront_domain(host, china=True):
            return [Distribution("", host, ())]
        items = self.distributions()
        exact = [d for d in items if host in d.aliases]
        if exact:
            return exact
        parent = host.split(".", 1)[1] if "." in host else ""
        return [d for d in items if parent and f"*.{parent}" in d.aliases]

    def _boto_client(self) -> Any:
        if self._client is None:
            try:
                import boto3
            except ImportError:
                raise ConfigError(
                    f"the aws provider needs boto3 to find cf_domain from the URLs' host:"
                    f" pip install 'prewarm-cli[aws]' (or set providers.{self.alias}.cf_domain)"
                ) from None
            from botocore.config import Config

            try:
                # A session of our own: the standard credential chain, no shared global state.
                session = boto3.Session(profile_name=self._profile)
                self._client = session.client(
                    "cloudfront", config=Config(retries={"max_attempts": 3, "mode": "standard"})
                )
            except Exception as exc:  # ProfileNotFound, a bad config file: one clear line
                raise ConfigError(
                    f"cannot set up AWS access to list CloudFront distributions: {exc}",
                    hint=f"set providers.{self.alias}.cf_domain to skip the lookup",
                ) from None
        return self._client

    def _list(self) -> Iterable[Distribution]:
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            EndpointConnectionError,
            NoCredentialsError,
        )

        client = self._boto_client()
        found: list[Distribution] = []
        try:
            paginator = client.get_paginator("list_distributions")
            pages = paginator.paginate(PaginationConfig={"PageSize": self._page_size})
            for page in pages:
                for item in (page.get("DistributionList") or {}).get("Items") or []:
                    found.append(_distribution(item))
        except NoCredentialsError:
            raise ConfigError(
                "no AWS credentials to list CloudFront distributions (needed to find cf_domain"
                " from the URLs' host)",
                hint=f"set providers.{self.alias}.cf_domain, or configure AWS credentials"
                " (AWS_PROFILE, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or an instance role)",
            ) from None
        except EndpointConnectionError as exc:
            raise RetryableError(f"cannot reach CloudFront to list distributions: {exc}") from exc
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            message = f"CloudFront ListDistributions: {code}: {error.get('Message', '')}"
            request_id = exc.response.get("ResponseMetadata", {}).get("RequestId")
            if code in _THROTTLING:
                raise RetryableError(message, request_id=request_id) from None
            if code in _DENIED or code in _EXPIRED:
                raise AuthError(
                    message,
                    hint="the AWS identity needs cloudfront:ListDistributions, or set"
                    f" providers.{self.alias}.cf_domain",
                    request_id=request_id,
                ) from None
            raise ProviderError(message, request_id=request_id) from None
        except BotoCoreError as exc:
            raise ProviderError(f"CloudFront ListDistributions failed: {exc}") from exc
        return found


def _distribution(item: Mapping[str, Any]) -> Distribution:
    aliases = (item.get("Aliases") or {}).get("Items") or []
    return Distribution(
        id=str(item.get("Id", "")),
        domain=str(item.get("DomainName", "")).lower(),
        aliases=tuple(str(a).lower().rstrip(".") for a in aliases),
    )
