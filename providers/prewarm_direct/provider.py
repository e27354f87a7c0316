"""The direct provider: warm any CDN by GETting each URL through its edge (DESIGN §9).

No vendor API and no account: one GET per (URL, PoP target, encoding variant), the body read
to its end, never repeated once answered. The engine sends one URL per batch, so a URL's
outcome (accepted, rejected, failed, deferred) is the engine's like any provider's; its
requests run in the engine's worker thread one after another, so ``concurrency`` bounds the
requests in flight. Every answer is recorded at once in the state directory (``store``), which
is what ``status``, ``report`` and a ``--resume`` after a kill read.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from prewarm_cli.errors import ExitCode, ProviderError, QuotaExhausted, RetryableError
from prewarm_cli.plugin import (
    BatchResult,
    Capability,
    ConfigField,
    Failure,
    Limits,
    ProbeTarget,
    Provider,
    Report,
    State,
    SubmitOptions,
    TaskStatus,
)
from prewarm_direct import dns
from prewarm_direct.options import SUBMIT_OPTIONS
from prewarm_direct.store import Record, Store
from prewarm_direct.targets import Target, Targets, TargetSpec, host_port
from prewarm_direct.warm import HIT_VALUES, NOT_FOUND, OK, REJECTED, TRANSIENT, Answer, warm

if TYPE_CHECKING:
    import httpx

__all__ = ["DEFAULT_ENCODINGS", "DirectProvider"]

# What browsers send, and the uncompressed copy that clients without compression get. The
# second is sent as an explicit `identity`: an HTTP library's default header would otherwise
# warm a compressed variant a second time and leave the identity one cold.
DEFAULT_ENCODINGS = ("gzip, deflate, br", "identity")
DEFAULT_CONCURRENCY = 8


class WarmFailed(RetryableError):
    """Some requests of a URL got no whole answer: retried, then the URL is failed (exit 4,
    like any target that did not warm, not 1: the run itself went on)."""

    exit_code = ExitCode.INCOMPLETE


class PopNotFound(ProviderError):
    """A PoP target has no address: its requests cannot be sent; the URL is failed."""

    exit_code = ExitCode.INCOMPLETE


@dataclass(frozen=True)
class RunPlan:
    """What this run sends per URL: the variants, the targets, the headers."""

    variants: tuple[str, ...]
    spec: TargetSpec
    headers: tuple[tuple[str, str], ...]


class DirectProvider(Provider):
    name = "direct"
    description = "no vendor API: GET each URL through the CDN edge, optionally pinned to PoPs"
    capabilities = frozenset(
        {Capability.SUBMIT, Capability.STATUS, Capability.REPORT, Capability.LOOKUP}
    )
    # One URL per batch: a URL's requests may fail while another URL's succeed, and the
    # engine records outcomes per batch. The limit is fixed, so --force cannot raise it.
    default_limits = Limits(
        max_batch=1, vendor_reported=True, concurrency=DEFAULT_CONCURRENCY, poll_interval=1.0
    )
    config_schema = (
        ConfigField(
            "encodings",
            list,
            "Accept-Encoding values: one request per value",
            default=list(DEFAULT_ENCODINGS),
            item_type=str,
        ),
        ConfigField("resolve", list, "HOST[:PORT]:IP pins, as curl's --resolve", item_type=str),
        ConfigField("pops", list, "CloudFront PoP codes (needs cf_domain)", item_type=str),
        ConfigField("cf_domain", str, "the distribution's d….cloudfront.net name, for pops"),
        ConfigField(
            "ecs", list, "client subnets (CIDR): warm the edge each is sent to", item_type=str
        ),
        ConfigField(
            "resolver", str, "DNS server IP[:PORT] for pops and ecs", default=dns.DEFAULT_RESOLVER
        ),
        ConfigField("user_agent", str, "User-Agent of the warm requests"),
        ConfigField("max_bytes", int, "byte budget of one run; the rest is deferred"),
    )
    submit_options = SUBMIT_OPTIONS

    def __init__(self, alias: str, settings: Mapping[str, Any]) -> None:
        super().__init__(alias, settings)
        self.timeout = float(settings.get("timeout") or 30.0)
        max_bytes = settings.get("max_bytes")
        self.max_bytes = int(max_bytes) if max_bytes is not None else None
        self.run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ-") + secrets.token_hex(4)
        self._lock = threading.Lock()
        self._plan: RunPlan | None = None
        self._targets: Targets | None = None
        # One client per worker thread and edge: each worker sends one request at a time, and
        # a pool shared by the workers costs them two thirds of their speed in lock contention.
        self._local = threading.local()
        self._clients: list[httpx.Client] = []  # every client made, to close them all
        self._store: Store | None = None
        # (url, target, variant) -> final answer, this run's and those carried from a killed one
        # url -> (target, variant) -> final answer, while the URL may still be sent again (a
        # retry, a resend after a kill); dropped once its outcome is final, so memory stays flat.
        self._answered: dict[str, dict[tuple[str, str], Answer]] = {}
        self._carried: dict[str, list[Record]] = {}
        self.bytes_sent = 0  # body bytes read this run, against max_bytes
        self.stats: dict[str, dict[str, int]] = {}  # per target label

    # --- what a run sends ---

    def plan_for(self, options: SubmitOptions) -> RunPlan:
        """The variants, targets and headers: submit options replace the config's lists."""
        extra = options.extra

        def pick(option: str, key: str) -> tuple[str, ...]:
            given = extra.get(option)
            return tuple(given) if given else tuple(self.settings.get(key) or ())

        variants = tuple(dict.fromkeys(v.strip() for v in pick("accept_encoding", "encodings")))
        variants = variants or DEFAULT_ENCODINGS
        if any(not v for v in variants):
            raise ProviderError("an Accept-Encoding value is empty (e.g. gzip, br, identity)")
        headers = tuple((n, v) for n, v in options.headers if n.lower() != "accept-encoding")
        if len(headers) != len(options.headers):
            self.warn("-H Accept-Encoding is ignored: give variants with --accept-encoding")
        spec = TargetSpec(
            resolve=pick("resolve", "resolve"),
            pops=pick("pop", "pops"),
            ecs=pick("ecs", "ecs"),
            cf_domain=self.settings.get("cf_domain"),
            resolver=str(self.settings.get("resolver") or dns.DEFAULT_RESOLVER),
        )
        return RunPlan(variants, spec, headers)

    def _setup(self, options: SubmitOptions) -> tuple[RunPlan, Targets]:
        with self._lock:
            if self._plan is None or self._targets is None:
                self._plan = self.plan_for(options)
                self._targets = Targets(self._plan.spec, self.warn)
            return self._plan, self._targets

    @property
    def store(self) -> Store:
        with self._lock:
            if self._store is None:
                self._store = Store(self.state_dir / "direct.sqlite3")
            return self._store

    def _client(self, url: str, target: Target) -> httpx.Client:
        host, _ = host_port(url)
        key = (host, target.ip) if target.ip else ("", None)
        mine: dict[tuple[str, str | None], httpx.Client] | None = getattr(
            self._local, "clients", None
        )
        if mine is None:
            mine = self._local.clients = {}
        client = mine.get(key)
        if client is None:
            from prewarm_cli.plugin import pinned_client

            client = pinned_client(
                [(host, None, target.ip)] if target.ip else [],
                timeout=self.timeout,
                max_connections=1,
                ca_bundle=self.settings.get("ca_bundle"),
                user_agent=self.settings.get("user_agent"),
            )
            mine[key] = client
            with self._lock:
                self._clients.append(client)
        return client

    def limits(self) -> Limits:
        return self.default_limits

    def requests_per_url(self, url: str, options: SubmitOptions) -> int:
        """PoP targets times variants: what a URL costs, without any DNS lookup (--dry-run)."""
        plan = self.plan_for(options)
        return plan.spec.count(url) * len(plan.variants)

    # --- the engine's calls ---

    def submit_batch(self, urls: Sequence[str], options: SubmitOptions) -> BatchResult:
        plan, targets = self._setup(options)
        accepted: list[str] = []
        rejected: dict[str, str] = {}
        for url in urls:
            if self.max_bytes is not None and self.bytes_sent >= self.max_bytes:
                raise QuotaExhausted(
                    f"max_bytes ({self.max_bytes}) is spent: {self.bytes_sent} bytes read",
                    hint="send the rest with `prewarm submit --resume JOB`",
                )
            answers = self._warm_url(url, plan, targets.for_url(url))
            refused = [(k, a) for k, a in answers if a.outcome == REJECTED]
            transient = [(k, a) for k, a in answers if a.outcome == TRANSIENT]
            missing = [(k, a) for k, a in answers if a.outcome == NOT_FOUND]
            if not transient:
                with self._lock:
                    self._answered.pop(url, None)  # final: never asked again in this run
            if refused:
                rejected[url] = _describe(refused)
            elif transient:
                waits = [a.retry_after for _, a in transient if a.retry_after is not None]
                raise WarmFailed(
                    _describe(transient + missing), retry_after=max(waits) if waits else None
                )
            elif missing:
                raise PopNotFound(_describe(missing))
            else:
                accepted.append(url)
        return BatchResult.from_response(self.run_id, urls, rejected)

    def _warm_url(
        self, url: str, plan: RunPlan, targets: Sequence[Target]
    ) -> list[tuple[tuple[str, str], Answer]]:
        """Each (target, variant) request of a URL not answered yet; stops at a refusal."""
        carried = self._carried.pop(url, [])
        if carried:
            self.store.copy(self.run_id, self.alias, carried)
        answers: list[tuple[tuple[str, str], Answer]] = []
        for target in targets:
            for variant in plan.variants:
                key = (url, target.label, variant)
                answer = self._answered.get(url, {}).get(key[1:])
                if answer is None:
                    answer = self._request(url, target, variant, plan)
                answers.append(((target.label, variant), answer))
                if answer.outcome == REJECTED:
                    return answers  # the URL is refused: the other requests would not change it
        return answers

    def _request(self, url: str, target: Target, variant: str, plan: RunPlan) -> Answer:
        if target.error:
            answer = Answer(NOT_FOUND, reason=target.error)
        else:
            headers = dict(plan.headers)
            headers["Accept-Encoding"] = variant
            client = self._client(url, target)
            self.pace()
            answer = warm(client, url, headers, self.timeout)
        self.store.save(self.run_id, self.alias, url, target.label, target.ip, variant, answer)
        with self._lock:
            if answer.answered:
                self._answered.setdefault(url, {})[(target.label, variant)] = answer
            self.bytes_sent += answer.bytes
            _count(self.stats.setdefault(target.label, {}), answer)
        return answer

    def find_submitted(self, urls: Sequence[str], since: datetime) -> dict[str, str]:
        """Called at --resume for a batch a killed run left unanswered: finds nothing "sent",
        but keeps every request that run answered, so that the resend asks only the rest.

        Found URLs would need the run's targets, which are known only once the resend brings
        its options; a URL whose every request was answered is resent and makes no request.
        """
        stamp = since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        records = self.store.since(self.alias, urls, stamp)
        with self._lock:
            for record in records:
                if record.outcome in (OK, REJECTED):
                    answers = self._answered.setdefault(record.url, {})
                    answers[(record.target, record.variant)] = _answer(record)
                    self._carried.setdefault(record.url, []).append(record)
        return {}

    def fetch_status(self, task_ids: Sequence[str]) -> list[TaskStatus]:
        """From the record alone: a run is finished when submit returns."""
        records = self.store.of_runs(task_ids)
        if not records:
            raise ProviderError(
                f"no record of {', '.join(task_ids)} in {self.store.path}",
                hint="direct warming keeps its results on the machine that ran it",
            )
        details = summarize(records)
        statuses = []
        for run_id in task_ids:
            mine = [r for r in records if r.run_id == run_id]
            n_warm = len(_warm_urls(mine))
            statuses.append(
                TaskStatus(
                    task_id=run_id,
                    state=State.SUCCEEDED,
                    raw_state="finished",
                    total=n_warm,
                    succeeded=n_warm,
                    details=details,
                )
            )
        return statuses

    def probe_targets(self, task_ids: Sequence[str]) -> list[ProbeTarget] | None:
        """Every (URL, PoP, variant) these runs warmed, to be probed again through that PoP."""
        return [
            ProbeTarget(url=r.url, accept_encoding=r.variant, ip=r.ip, label=r.target)
            for r in self.store.of_runs(task_ids)
            if r.outcome == OK
        ]

    def report(self, task_ids: Sequence[str]) -> Report:
        """Each (URL, PoP, variant) request that was refused or failed last time it was sent."""
        failures = [
            Failure(
                url=r.url,
                pop=r.target,
                reason=f"{r.reason or r.outcome} (Accept-Encoding: {r.variant})",
            )
            for r in self.store.of_runs(task_ids)
            if r.outcome != OK
        ]
        return Report(failures=tuple(failures))

    def plan_notes(self, options: SubmitOptions) -> list[str]:
        plan = self.plan_for(options)
        notes = [
            "GET through the edge: "
            + ", ".join(f"Accept-Encoding: {v}" for v in plan.variants)
            + "; warm traffic is billed as CDN egress"
        ]
        if self.max_bytes is not None:
            notes.append(f"max_bytes {self.max_bytes}: the rest is deferred once it is spent")
        return notes

    def submit_details(self) -> Mapping[str, Any]:
        """This run's requests, bytes, already_warm, filled, rejected, failed, and per PoP."""
        keys = ("requests", "bytes", "already_warm", "filled", "rejected", "failed")
        with self._lock:
            pops = {
                label: {k: s.get(k, 0) for k in keys} for label, s in sorted(self.stats.items())
            }
        if not pops:
            return {}
        return {**{k: sum(p[k] for p in pops.values()) for k in keys}, "pops": pops}

    def summary_lines(self) -> list[str]:
        """One line per PoP target for the user (stderr)."""
        return [
            f"{label}: {s.get('requests', 0)} requests, {_size(s.get('bytes', 0))},"
            f" {s.get('already_warm', 0)} already warm, {s.get('filled', 0)} filled"
            + "".join(f", {s[k]} {k}" for k in ("rejected", "failed") if s.get(k))
            for label, s in sorted(self.stats.items())
        ]

    def close(self) -> None:
        for line in self.summary_lines():  # after a run: one line per PoP target
            self.info(line)
        with self._lock:
            clients, self._clients = self._clients, []
            store, self._store = self._store, None
        for client in clients:
            client.close()
        if store is not None:
            store.close()


def _describe(items: Sequence[tuple[tuple[str, str], Answer]]) -> str:
    return "; ".join(
        f"{a.reason or a.outcome} at {label} (Accept-Encoding: {variant})"
        for (label, variant), a in items
    )


def _count(stats: dict[str, int], answer: Answer) -> None:
    if answer.outcome == NOT_FOUND:
        stats["failed"] = stats.get("failed", 0) + 1
        return
    stats["requests"] = stats.get("requests", 0) + 1
    stats["bytes"] = stats.get("bytes", 0) + answer.bytes
    if answer.outcome != OK:
        stats["failed" if answer.outcome == TRANSIENT else "rejected"] = (
            stats.get("failed" if answer.outcome == TRANSIENT else "rejected", 0) + 1
        )
    elif answer.cache in HIT_VALUES:
        stats["already_warm"] = stats.get("already_warm", 0) + 1
    elif answer.cache == "miss":
        stats["filled"] = stats.get("filled", 0) + 1


def _answer(record: Record) -> Answer:
    return Answer(
        record.outcome,
        record.status_code,
        record.cache,
        record.bytes,
        record.reason,
        pop=record.pop,
    )


def _warm_urls(records: Sequence[Record]) -> set[str]:
    """URLs every recorded request of which answered OK."""
    ok: dict[str, bool] = {}
    for r in records:
        ok[r.url] = ok.get(r.url, True) and r.outcome == OK
    return {u for u, good in ok.items() if good}


def summarize(records: Sequence[Record]) -> dict[str, Any]:
    """The status details: requests, bytes, already_warm, filled, failed, and per PoP."""
    pops: dict[str, dict[str, int]] = {}
    for r in records:
        _count(pops.setdefault(r.target, {}), _answer(r))
    keys = ("requests", "bytes", "already_warm", "filled", "rejected", "failed")
    per_pop = {label: {k: s.get(k, 0) for k in keys} for label, s in sorted(pops.items())}
    totals = {k: sum(s[k] for s in per_pop.values()) for k in keys}
    return {**totals, "pops": per_pop}


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"
