"""What one command works with: config, journal, output, and the providers it uses.

This is the only place where providers are built, and where the providers a URL goes to
are chosen (``Router``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from prewarm_cli import config as config_mod
from prewarm_cli import journal as jr
from prewarm_cli import paths
from prewarm_cli.config_check import limit_problems
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

    try:
        cls = registry.load_for(config, alias)
        values = config.resolve(alias, cls).values
    except ConfigError as exc:  # with the file, as check says, and the provider in the JSON
        exc.provider = exc.provider or alias
        raise config_mod.in_file(config.path if config.exists else None, exc, alias) from None
    provider = config.build(cls, alias, values)
    provider.attach_warn(warn)
    provider.attach_state_dir(paths.state_dir())
    return provider


def build_provider_without_secrets(
    config: config_mod.Config, alias: str, warn: Callable[[str], None], missing: ConfigError
) -> Provider:
    """The provider behind an alias whose secrets are not set here, for work that sends
    nothing (a dry-run plan, a capability check).

    Any request it would send stops at its pacer with ``missing``, the error that names the
    variables to set; so does a setting other than a secret that cannot be resolved.
    """
    from prewarm_cli import registry

    try:
        cls = registry.load_for(config, alias)
    except ConfigError:
        raise missing from None  # build_provider's error, naming the file
    settings, unset = config.resolve_partly(alias, cls)  # unset secrets left out
    if not unset or set(unset) - settings.secret_keys:
        raise missing  # not (only) a secret unset: a ca_bundle not found, say
    try:
        provider = config.build(cls, alias, settings.values)
    except PrewarmError:
        raise missing from None

    def refuse(_urls: int, _meanwhile: object = None) -> None:
        raise missing

    provider.attach_warn(warn)
    provider.attach_state_dir(paths.state_dir())
    provider.attach_pacer(refuse)
    return provider


def load_config_leniently(
    explicit: str | None, warn: Callable[[str], None]
) -> tuple[config_mod.Config, ConfigError | None]:
    """The config, or the empty one and why (with a warning naming the file) when the file
    cannot be read or is invalid: for commands that need no provider settings, or not
    always (`jobs`, `providers`, `status` of a finished job)."""
    try:
        return config_mod.load_config(explicit), None
    except ConfigError as exc:
        path, how = paths.config_path(explicit)
        warn(f"{exc}; going on without the config file")
        return config_mod.Config(path, how, False, {}, {}, ()), exc


class Workspace:
    """What one command works with: config, journal, output and the providers it uses."""

    def __init__(
        self,
        config: config_mod.Config,
        output: Output,
        *,
        force: bool = False,
        sends_nothing: bool = False,
        config_problem: ConfigError | None = None,
    ) -> None:
        self.config = config
        # Why the config file was set aside (see load_config_leniently): a provider is then
        # not built from defaults that might point elsewhere than the file says.
        self.config_problem = config_problem
        self.out = output
        self.force = force
        # A dry run: a provider whose secrets are not set is built without them, and only
        # a request it would need (a vendor-reported limit) asks for them.
        self.sends_nothing = sends_nothing
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
            self._journal = jr.Journal.in_state_dir(self.state_dir, self.out.info)
        return self._journal

    def alias(self, name: str) -> str:
        from prewarm_cli import registry

        return self.config.resolve_alias(name, registry.names())

    def default_alias(self) -> str | None:
        """defaults.provider resolved (a name that is neither an alias nor an installed type
        is a configuration error naming the key), or the only alias."""
        from prewarm_cli import registry

        problem = self.config.default_problem(registry.names())
        if problem is not None:
            raise problem
        return self.config.default_provider()

    def declared_capabilities(self, alias: str) -> frozenset[Capability]:
        """What the alias's type declares, without building it (no secrets needed); none when
        the type is not installed (said when the alias is used)."""
        provider_class = self._provider_class(alias)
        return frozenset() if provider_class is None else provider_class.capabilities

    def finished_in_submit(self, alias: str) -> bool:
        """Whether the alias's type is done with a URL when `submit` returns (direct warming),
        without building it."""
        provider_class = self._provider_class(alias)
        return provider_class is not None and provider_class.finished_in_submit

    def _provider_class(self, alias: str) -> type[Provider] | None:
        from prewarm_cli import registry

        try:
            return registry.load(self.config.provider_type(alias))
        except PrewarmError:
            return None

    def session(
        self, alias: str, needs: Capability | tuple[Capability, ...] = ()
    ) -> ProviderSession:
        """The configured provider behind an alias (resolving only its own secrets).

        ``needs``: capabilities of which the provider must have one; one it lacks is said
        before its secrets are asked for (`cancel` on Qiniu is unsupported, not a missing key).
        """
        wanted = (needs,) if isinstance(needs, Capability) else needs
        if alias not in self._sessions:
            if self.config_problem is not None:
                raise self.config_problem
            missing: ConfigError | None = None
            try:
                provider = build_provider(self.config, alias, self.out.warn)
            except ConfigError as exc:
                if not (wanted or self.sends_nothing):
                    raise
                provider = build_provider_without_secrets(self.config, alias, self.out.warn, exc)
                missing = exc
            if missing is not None and not self.sends_nothing:
                try:
                    _require_one(provider, wanted)
                finally:
                    provider.close()
                raise missing
            if missing is not None:
                self.out.info(
                    f"{alias}: planning without its secrets, which are not set here"
                    " (nothing is sent; a submit needs them)"
                )
            provider.attach_info(self.out.info)
            self._sessions[alias] = ProviderSession(
                provider,
                provider.settings,
                self.policy,
                self.state_dir,
                self.force,
                self.stop,
                missing_secrets=missing,
                config_file=self.config.path if self.config.exists else None,
            )
        session = self._sessions[alias]
        _require_one(session.provider, wanted)
        return session

    def selected(self, names: Sequence[str]) -> list[str]:
        """Aliases named with -p, or the default provider."""
        if names:
            aliases = list(dict.fromkeys(self.alias(n) for n in names))
        else:
            default = self.default_alias()
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


def _require_one(provider: Provider, capabilities: tuple[Capability, ...]) -> None:
    """Unsupported (naming the first) unless the provider has one of ``capabilities``."""
    if capabilities and not set(capabilities) & provider.active_capabilities():
        provider.require(capabilities[0])


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
        *,
        missing_secrets: ConfigError | None = None,
        config_file: Path | None = None,
    ) -> None:
        self.provider = provider
        self.config_file = config_file  # where the settings come from, for their errors
        # Built without its secrets (a dry run): every request it would send raises this.
        self.missing_secrets = missing_secrets
        self.alias = provider.alias
        self.settings = settings
        self.policy = policy
        self.force = force
        self.stop = stop
        self._rate_store = state_dir / "ratelimits.sqlite3" if state_dir else None
        self._limits: Limits | None = None
        # The error of a batch_size or rate above the vendor's limits, once limits() found it.
        self.over_limit: ConfigError | None = None
        self.limits_unread = False  # the vendor's limits need the secrets: the declared ones
        self._pacer: Pacer | None = None
        self._pacer_lock = threading.Lock()

    @property
    def ca_bundle(self) -> str | None:
        """The CA bundle the provider's requests trust instead of the default store."""
        return self.settings.get("ca_bundle") or None

    @property
    def capabilities(self) -> frozenset[Capability]:
        return self.provider.active_capabilities()

    def require(self, capability: Capability) -> None:
        self.provider.require(capability)

    def limits(self) -> Limits:
        """The vendor's limits with the config's overrides (raising one needs --force)."""
        if self._limits is None:
            vendor = self._vendor_limits()
            # A batch size not read from the vendor (a dry run without the secrets) bounds
            # nothing: the config's is planned as given.
            checked = self.settings
            stand_in = vendor.batch_from_vendor and not vendor.vendor_reported  # not read
            if self.limits_unread or stand_in:
                checked = {k: v for k, v in self.settings.items() if k != "batch_size"}
            problems = limit_problems(self.alias, checked, vendor, force=self.force)
            if problems:
                self.over_limit = config_mod.in_file(self.config_file, problems[0])
                raise self.over_limit
            limits = vendor
            if self.settings.get("batch_size") is not None:
                limits = replace(limits, max_batch=int(self.settings["batch_size"]))
            if self.settings.get("rate") is not None:
                limits = replace(limits, requests_per_second=float(self.settings["rate"]))
            if self.settings.get("concurrency"):
                limits = replace(limits, concurrency=int(self.settings["concurrency"]))
            if self.settings.get("poll_interval"):
                limits = replace(limits, poll_interval=float(self.settings["poll_interval"]))
            per_second = limits.urls_per_second
            if per_second and limits.max_batch > max(1, int(per_second)):
                # A request of more URLs than a second allows breaks a per-second URL limit
                # by itself, however it is paced.
                limits = replace(limits, max_batch=max(1, int(per_second)))
                self.provider.warn(
                    f"{self.alias}: batches of {limits.max_batch} URLs, the vendor's rate of"
                    f" {per_second:g} URLs/s (batch_size is larger)"
                )
            self._limits = limits
        return self._limits

    @property
    def batch_size(self) -> int:
        return self.limits().max_batch

    @property
    def pacer(self) -> Pacer:
        with self._pacer_lock:  # worker threads start together: one pacer, built once
            if self._pacer is None:
                if self.missing_secrets is not None:
                    raise self.missing_secrets
                self.provider.prepare()
                self._pacer = Pacer(
                    self.limits(), self.provider.rate_key, self._rate_store, stop=self.stop
                )
                self.provider.attach_pacer(self._pacer.acquire, waits=self._pacer.waits)
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

        if self.missing_secrets is not None:
            # No pacing and no retries: the provider's own pacer refuses any request.
            return self._without_secrets(fn, *args)

        def attempt() -> T:
            with self.provider.engine_call():
                return fn(*args)

        def before_attempt() -> None:
            pacer = self.pacer  # what its making raises is the provider's (prepare())
            try:
                pacer.acquire(n_urls)
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

    def _vendor_limits(self) -> Limits:
        """The provider's limits; for a dry run without the secrets, where they need a
        request (EdgeOne's batch size), those it declares (``limits_unread`` says so)."""
        try:
            return self._without_secrets(self.provider.limits)
        except ConfigError as exc:
            if exc is not self.missing_secrets:
                raise
            self.limits_unread = True
            return self.provider.default_limits

    def _without_secrets(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)``; for a provider built without its secrets, a failure that is not
        the refusal of a request is reported as the missing secrets (its likely cause)."""
        if self.missing_secrets is None:
            return fn(*args)
        try:
            return fn(*args)
        except Exception as exc:
            if exc is self.missing_secrets:  # its pacer refused the request
                raise
            # Anything else, the SDK's "no key given" too, comes of the missing secrets.
            raise self.missing_secrets from exc

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
        self.default = ws.default_alias() if not selected else None
        self._by_host: dict[str, list[str] | None] = {}
        if not (self.selected or self.routes or self.default or ws.config.aliases()):
            # A fresh machine: the built-in direct provider needs no account (DESIGN §9).
            ws.out.info(
                "no provider configured: warming directly through the CDN edge;"
                " see prewarm config init"
            )
            self.selected = [ws.alias(IMPLICIT_PROVIDER)]
        if not (self.selected or self.routes or self.default):
            configured = ws.config.aliases()
            raise UsageError(
                "no provider selected and none configured as the default",
                hint=f"pass -p NAME (one of {', '.join(configured)}), or name one in the"
                " config's [defaults] provider or [[routes]] (`prewarm config path`)"
                if configured
                else "pass -p NAME, or set one up with `prewarm config init`"
                " (`prewarm providers` lists the types)",
            )

    def ca_bundles(self) -> tuple[str, ...]:
        """The ca_bundle of each provider a URL may go to, once each."""
        aliases = [*self.selected, *(a for _, route in self.routes for a in route), self.default]
        bundles = []
        for alias in filter(None, aliases):
            with suppress(PrewarmError):  # said when the provider is used
                bundles.append(self.ws.session(alias).ca_bundle)
        return tuple(dict.fromkeys(filter(None, bundles)))

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
