"""Finding a URL host's distribution (its dXXXX.cloudfront.net name) through ListDistributions.

The v2 server needs ``cf_domain`` in every request and never resolves it itself, so when the
config omits it the client does what the solution's own helper does: match the host against
the distributions' aliases (CNAMEs), across every page, with the standard AWS credentials.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from prewarm_cli.errors import AuthError, ConfigError, ProviderError, RetryableError

__all__ = [
    "Distribution",
    "DistributionChooser",
    "DistributionIndex",
    "JobUrls",
    "configured_cf_domain",
    "is_cloudfront_domain",
]

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


def configured_cf_domain(alias: str, value: Any, *, china: bool) -> str | None:
    """The config's cf_domain, normalised; ConfigError when it is not a distribution's name."""
    if not value:
        return None
    domain = str(value).strip().lower().rstrip(".")
    if not is_cloudfront_domain(domain, china=china):
        raise ConfigError(
            f"providers.{alias}.cf_domain: {value!r} is not a distribution's own"
            " domain name such as d111111abcdef8.cloudfront.net; the stack builds"
            " <label>.<PoP>.cloudfront.net from it, so a CNAME warms nothing",
            hint="use the distribution's domain name, or remove cf_domain to have it"
            " found from the URLs' host",
        )
    return domain


@dataclass(frozen=True)
class Distribution:
    id: str
    domain: str  # dXXXX.cloudfront.net
    aliases: tuple[str, ...]


class DistributionIndex:
    """The account's distributions, listed once, and host → distribution matching."""

    def __init__(
        self,
        alias: str,
        profile: str | None,
        *,
        ca_bundle: str | None = None,
        page_size: int = PAGE_SIZE,
    ) -> None:
        self.alias = alias
        self._profile = profile
        self._ca_bundle = ca_bundle  # the config's; boto3 reads AWS_CA_BUNDLE, not SSL_CERT_FILE
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
                    "the aws provider needs boto3 to find cf_domain from the URLs' host,"
                    " prewarm's aws extra: pip install 'prewarm-cli[aws]'"
                    " (pipx: pipx install --force 'prewarm-cli[aws]'),"
                    f" or set providers.{self.alias}.cf_domain"
                ) from None
            from botocore.config import Config

            try:
                # A session of our own: the standard credential chain, no shared global state.
                session = boto3.Session(profile_name=self._profile)
                self._client = session.client(
                    "cloudfront",
                    verify=self._ca_bundle or None,  # None: boto3's own (AWS_CA_BUNDLE, certifi)
                    config=Config(retries={"max_attempts": 3, "mode": "standard"}),
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


@dataclass(frozen=True)
class JobUrls:
    """What one job takes: the URLs of one distribution; the others wait for a later job."""

    cf_domain: str
    chosen: list[str]
    others: list[str]  # URLs of other distributions
    unmatched: dict[str, str]  # URLs of no distribution of the account: url -> reason


class DistributionChooser:
    """Which distribution a job warms: the configured cf_domain, or the URLs' host's."""

    def __init__(
        self,
        alias: str,
        cf_domain: str | None,
        profile: str | None,
        ca_bundle: str | None = None,
    ) -> None:
        self.alias = alias
        self.cf_domain = cf_domain
        self._profile = profile
        self._ca_bundle = ca_bundle
        self._index: DistributionIndex | None = None

    def job_urls(self, urls: Sequence[str]) -> JobUrls:
        """The first URL's distribution and the URLs it serves, for one job."""
        if not urls:
            return JobUrls("", [], [], {})
        if self.cf_domain:
            return JobUrls(self.cf_domain, list(urls), [], {})
        by_host: dict[str, list[str]] = {}
        for url in urls:
            by_host.setdefault(_host(url), []).append(url)
        index = self._distributions()
        domains: dict[str, str] = {}
        unmatched: dict[str, str] = {}
        for host, host_urls in by_host.items():
            found = index.match(host)
            if len(found) > 1:
                raise ConfigError(
                    f"several CloudFront distributions serve {host}: "
                    + ", ".join(_shown(d) for d in found),
                    hint=f"set providers.{self.alias}.cf_domain to the one to warm",
                    provider=self.alias,
                )
            if not found:
                reason = (
                    f"no CloudFront distribution of this AWS account has the alias {host}"
                    f" (set providers.{self.alias}.cf_domain, or check the AWS account)"
                )
                unmatched.update(dict.fromkeys(host_urls, reason))
            else:
                domains[host] = found[0].domain
        if not domains:
            hosts = ", ".join(sorted(by_host))
            raise ConfigError(
                f"no CloudFront distribution of this AWS account has the alias {hosts}:"
                " cannot tell the prewarm API which distribution to warm",
                hint=f"set providers.{self.alias}.cf_domain, or use the AWS credentials"
                " (AWS_PROFILE or aws_profile) of the distribution's account",
                provider=self.alias,
            )
        first = next(domains[_host(u)] for u in urls if u not in unmatched)
        chosen: list[str] = []
        others: list[str] = []
        for url in urls:
            if url not in unmatched:
                (chosen if domains[_host(url)] == first else others).append(url)
        return JobUrls(first, chosen, others, unmatched)

    def describe(self) -> str:
        """A line for ``config check``."""
        if self.cf_domain:
            return f"cf_domain: {self.cf_domain}"
        return (
            "cf_domain: found from each URL's host through CloudFront ListDistributions"
            " (needs AWS credentials)"
        )

    def check_configured(self) -> str | None:
        """For ``config check --online``: whether the AWS credentials at hand list a
        configured cf_domain among their account's distributions. The stack warms through
        DNS whatever account the distribution is in, but its invalidations look it up in
        its own account: a mistyped one skips them without a word, hence the warning.
        Without a cf_domain, the distributions are listed as a submit lists them: no AWS
        credentials, or an identity denied the list, is a warning that such a submit fails
        (one of URLs on a *.cloudfront.net host needs no list)."""
        if not self.cf_domain:
            try:
                n_listed = len(self._distributions().distributions())
            except RetryableError as exc:  # not reached: the check says so, and goes on
                return f"cf_domain not checked: {exc}"
            except (ConfigError, AuthError) as exc:
                return (
                    f"warning: {exc.message}: a submit of URLs on a host other than"
                    " *.cloudfront.net fails the same way; set cf_domain, or configure AWS"
                    " credentials"
                )
            return f"cf_domain: found through the {n_listed} distributions these credentials list"
        try:
            listed = self._distributions().distributions()
        except (ConfigError, ProviderError) as exc:  # no boto3, no credentials, denied
            return f"cf_domain not checked against the AWS account's distributions: {exc}"
        if any(d.domain == self.cf_domain for d in listed):
            return f"cf_domain {self.cf_domain}: a distribution of the AWS account"
        return (
            f"warning: cf_domain {self.cf_domain} is none of the {len(listed)} distributions"
            " these AWS credentials list: if it is mistyped, or not in the stack's account,"
            " the stack skips its invalidations without a word (check it in the CloudFront"
            " console)"
        )

    def _distributions(self) -> DistributionIndex:
        if self._index is None:
            self._index = DistributionIndex(self.alias, self._profile, ca_bundle=self._ca_bundle)
        return self._index


def _host(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


def _shown(d: Distribution) -> str:
    return f"{d.id} ({d.domain})" if d.id else d.domain
