"""What one command works with: config, journal, output, and the providers it uses.

This is the only place where providers are built, and where the providers a URL goes to
are chosen (``Router``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from prewarm_cli import config as config_mod
from prewarm_cli import journal as jr
from prewarm_cli import paths
from prewarm_cli.errors import (
    ConfigError,
    PrewarmError,
    RateStoreError,
    UsageError,
)
from prewarm_cli.output import Output
from prewarm_cli.pacing import Interrupted, Pacer, RetryPolicy, call_with_retries
from prewarm_cli.plugin import (
    Capability,
    Limits,
    Provider,
)

T = TypeVar("T")

# What `submit` uses when no provider is configured at all: the one that needs no account.
IMPLICIT_PROVIDER = "direct"


def build_provider(config: config_mod.Config, alias: str, warn: Callable[[str], None]) -> Provider:
    """The provider instance behind an alias, resolving only its own secrets.

    Every command builds providers here, so that each gets its warning channel and the
    state directory.
    """
    from prewarm_cli import registry

    cls = registry.load(config.provider_type(alias))
    provider = cls(alias, config.resolve(alias, cls).values)
    provider.attach_warn(warn)
    provider.attach_state_dir(paths.state_dir())
    return provider


class Workspace:
    """What one command works with: config, journal, output and the providers it uses."""

    def __init__(self, config: config_mod.Config, output: Output, *, force: bool = False) -> None:
        self.config = config
        self.out = output
        self.force = force
        self._journal: jr.Journal | None = None
        self._sessions: dict[str, ProviderSession] = {}
        # Set on Ctrl-C: every wait in pacing, retries and polling ends within a second.
        self.stop = threading.Event()
        self.policy = RetryPolicy(
            attempts=int(config.defaults.get("retries") or 5),
            timeout=float(config.defaults.get("retry_timeout") or 120.0),
        )

    @property
    def state_dir(self) -> Path:
        return paths.state_dir()

    @property
    def journal(self) -> jr.Journal:
        if self._journal is None:
            self._journal = jr.Journal.in_state_dir(self.state_dir)
        return self._journal

    def alias(self, name: str) -> str:
        from prewarm_cli import registry

        return self.config.resolve_alias(name, registry.names())

    def session(self, alias: str) -> ProviderSession:
        """The configured provider behind an alias (resolving only its own secrets)."""
        if alias not in self._sessions:
            provider = build_provider(self.config, alias, self.out.warn)
            provider.attach_info(self.out.info)
            self._sessions[alias] = ProviderSession(
                provider, provider.settings, self.policy, self.state_dir, self.force, self.stop
            )
        return self._sessions[alias]

    def selected(self, names: Sequence[str]) -> list[str]:
        """Aliases named with -p, or the default provider."""
        if names:
            aliases = list(dict.fromkeys(self.alias(n) for n in names))
        else:
            default = self.config.default_provider()
            if default is None:
                raise UsageError(
                    "no provider selected and no default configured",
                    hint="pass -p NAME, or set defaults.provider (prewarm config init)",
                )
            aliases = [default]
        for alias in aliases:
            self.session(alias)
        return aliases

    def close(self) -> None:
        for session in self._sessions.values():
            session.close()
        if self._journal is not None:
            self._journal.close()


class ProviderSession:
    """One provider alias at work: its effective limits, pacing and retries."""

    def __init__(
        self,
        provider: Provider,
        settings: Mapping[str, Any],
        policy: RetryPolicy,
        state_dir: Path | None,
        force: bool,
        stop: threading.Event,
    ) -> None:
        self.provider = provider
        self.alias = provider.alias
        self.settings = settings
        self.policy = policy
        self.force = force
        self.stop = stop
        self._rate_store = state_dir / "ratelimits.sqlite3" if state_dir else None
        self._limits: Limits | None = None
        self._pacer: Pacer | None = None
        self._pacer_lock = threading.Lock()

    @property
    def capabilities(self) -> frozenset[Capability]:
        return self.provider.active_capabilities()

    def require(self, capability: Capability) -> None:
        self.provider.require(capability)

    def limits(self) -> Limits:
        """The vendor's limits with the config's overrides (raising one needs --force)."""
        if self._limits is None:
            vendor = self.provider.limits()
            limits = vendor
            wanted_batch = self.settings.get("batch_size")
            if wanted_batch is not None:
                if wanted_batch > vendor.max_batch and (vendor.vendor_reported or not self.force):
                    raise ConfigError(
                        f"providers.{self.alias}.batch_size = {wanted_batch} is above the vendor"
                        f" limit of {vendor.max_batch} URLs per request",
                        hint="lower it"
                        + (
                            ""
                            if vendor.vendor_reported
                            else ", or pass --force if the vendor raised your limit"
                        ),
                    )
                limits = replace(limits, max_batch=int(wanted_batch))
            wanted_rate = self.settings.get("rate")
            if wanted_rate is not None:
                vendor_rate = vendor.requests_per_second
                if vendor_rate is not None and wanted_rate > vendor_rate and not self.force:
                    raise ConfigError(
                        f"providers.{self.alias}.rate = {wanted_rate} is above the vendor"
                        f" limit of {vendor_rate} requests/s",
                        hint="lower it, or pass --force if the vendor raised your limit",
                    )
                limits = replace(limits, requests_per_second=float(wanted_rate))
            if self.settings.get("concurrency"):
                limits = replace(limits, concurrency=int(self.settings["concurrency"]))
            if self.settings.get("poll_interval"):
                limits = replace(limits, poll_interval=float(self.settings["poll_interval"]))
            self._limits = limits
        return self._limits

    @property
    def batch_size(self) -> int:
        return self.limits().max_batch

    @property
    def pacer(self) -> Pacer:
        with self._pacer_lock:  # worker threads start together: one pacer, built once
            if self._pacer is None:
                self.provider.prepare()
                self._pacer = Pacer(
                    self.limits(), self.provider.rate_key(), self._rate_store, stop=self.stop
                )
                self.provider.attach_pacer(self._pacer.acquire)
            return self._pacer

    def call(
        self,
        fn: Callable[..., T],
        *args: Any,
        n_urls: int = 0,
        on_retry: Callable[[Exception, float], None] | None = None,
    ) -> T:
        """One vendor call, paced and retried while the vendor clearly did not accept it.

        Raises pacing's ``Interrupted`` when the stop event is set during any wait, and
        RateStoreError when the rate-limit store fails: in both cases nothing was sent.
        """

        def attempt() -> T:
            with self.provider.engine_call():
                return fn(*args)

        def before_attempt() -> None:
            try:
                self.pacer.acquire(n_urls)
            except (PrewarmError, Interrupted):
                raise
            except Exception as exc:  # e.g. sqlite3.OperationalError from the shared store
                raise RateStoreError(
                    f"the rate-limit store {self._rate_store} failed: {exc}",
                    hint="check that the state directory is writable and not full",
                ) from exc

        try:
            return call_with_retries(
                self.policy, attempt, before_attempt, stop=self.stop, on_retry=on_retry
            )
        except PrewarmError as exc:
            if exc.provider is None:
                exc.provider = self.alias
            raise

    def close(self) -> None:
        if self._pacer is not None:
            self._pacer.close()
        self.provider.close()


class Router:
    """Which aliases warm a URL: -p, else [[routes]], else defaults.provider."""

    def __init__(self, ws: Workspace, selected: Sequence[str]) -> None:
        self.ws = ws
        self.selected = [ws.alias(n) for n in selected]
        self.routes = [
            (route, [ws.alias(p) for p in route.providers]) for route in ws.config.routes
        ]
        self.default = ws.config.default_provider() if not selected else None
        self._by_host: dict[str, list[str] | None] = {}
        if not (self.selected or self.routes or self.default or ws.config.aliases()):
            # A fresh machine: the built-in direct provider needs no account (DESIGN §9).
            ws.out.info(
                "no provider configured: warming directly through the CDN edge;"
                " see prewarm config init"
            )
            self.selected = [ws.alias(IMPLICIT_PROVIDER)]
        if not (self.selected or self.routes or self.default):
            raise UsageError(
                "no provider selected and none configured as the default",
                hint="pass -p NAME, or set one up with `prewarm config init`"
                " (`prewarm providers` lists the types)",
            )

    def __call__(self, url: str) -> list[str] | None:
        if self.selected:
            return self.selected
        from prewarm_cli.inputs import host_of

        host = host_of(url)
        if host not in self._by_host:
            chosen: list[str] | None = None
            for route, aliases in self.routes:
                if route.matches(host):
                    chosen = aliases
                    break
            if chosen is None and self.default:
                chosen = [self.default]
            self._by_host[host] = chosen
        return self._by_host[host]
