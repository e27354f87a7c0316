"""The direct provider: warm any CDN by GETting each URL through its edge (DESIGN §9).

No vendor API and no account: one GET per (URL, PoP target, encoding variant), the body read
to its end, never repeated once answered in the job. A batch holds several URLs; each is
accepted, rejected or failed on its own (``BatchResult.failed``: the engine retries those
alone, within its retry policy). A URL's requests run one after another in the engine's
worker thread, so ``concurrency`` bounds the requests in flight. Every answer goes to the
record in the state directory (``store``), which is what ``status``, ``report`` and a
``--resume`` read: a resumed job asks only what its earlier runs left unanswered.
"""

from __future__ import annotations

import os
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from itertools import groupby
from operator import attrgetter
from pathlib import Path
from typing import Any

from prewarm_cli import __version__
from prewarm_cli.errors import ConfigError, NotFoundError, QuotaExhausted, UsageError
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
    UrlStatus,
)
from prewarm_direct import dns
from prewarm_direct.options import SUBMIT_OPTIONS
from prewarm_direct.store import COMMIT_EVERY, Answered, Record, Store
from prewarm_direct.targets import Targets, TargetSpec, check_spec, spec_problems
from prewarm_direct.warm import (
    HIT_VALUES,
    NOT_FOUND,
    OK,
    REJECTED,
    STOPPED,
    TRANSIENT,
    Answer,
    Request,
    Warmer,
)

__all__ = ["DEFAULT_ENCODINGS", "DirectProvider"]

# What browsers send, and the uncompressed copy that clients without compression get. The
# second is sent as an explicit `identity`: an HTTP library's default header would otherwise
# warm a compressed variant a second time and leave the identity one cold.
DEFAULT_ENCODINGS = ("gzip, deflate, br", "identity")
DEFAULT_CONCURRENCY = 8
MAX_BATCH = 1024  # URLs per batch: the journal and the record write per batch, not per URL
USER_AGENT = f"prewarm-cli/{__version__}"
RECORD = "direct.sqlite3"  # the record of every request, in the state directory
# The counts of a run's details, per PoP and in all.
DETAIL_KEYS = ("requests", "bytes", "already_warm", "filled", "rejected", "failed")


@dataclass(frozen=True)
class RunPlan:
    """What this run sends per URL: the variants, the targets, the headers."""

    variants: tuple[str, ...]
    spec: TargetSpec
    headers: tuple[tuple[str, str], ...]

    def header_lines(self) -> dict[str, tuple[str, ...]]:
        """Per variant, the request's header lines: -H headers and its Accept-Encoding."""
        return {
            v: (*(f"{n}: {value}" for n, value in self.headers), f"Accept-Encoding: {v}")
            for v in self.variants
        }


class DirectProvider(Provider):
    name = "direct"
    description = "no vendor API: GET each URL through the CDN edge, optionally pinned to PoPs"
    capabilities = frozenset(
        {Capability.SUBMIT, Capability.STATUS, Capability.REPORT, Capability.LOOKUP}
    )
    # The limit is fixed, so --force cannot raise it. A batch's requests go out concurrently
    # from one engine worker (libcurl's multi interface), up to `concurrency` at once.
    default_limits = Limits(
        max_batch=MAX_BATCH,
        vendor_reported=True,
        concurrency=DEFAULT_CONCURRENCY,
        poll_interval=1.0,
        parallel_in_batch=True,
    )
    probes_keep_limits = True  # a cache that lost its objects would pass each probe's miss on
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
    finished_in_submit = True  # a URL is accepted once warmed: nothing is left to wait for
    status_tasks = None  # a request counts in the latest of the job's runs that answered it

    def __init__(self, alias: str, settings: Mapping[str, Any]) -> None:
        super().__init__(alias, settings)
        self.timeout = float(settings.get("timeout") or 30.0)
        max_bytes = settings.get("max_bytes")
        self.max_bytes = int(max_bytes) if max_bytes is not None else None
        self.run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ-") + os.urandom(4).hex()
        self._lock = threading.Lock()
        self._plan: RunPlan | None = None
        self._targets: Targets | None = None
        self._header_lines: dict[str, tuple[str, ...]] = {}  # per variant
        self.concurrency = int(settings.get("concurrency") or DEFAULT_CONCURRENCY)
        self.user_agent = str(settings.get("user_agent") or USER_AGENT)
        self._local = threading.local()  # a Warmer per thread that sends
        self._warmers: list[Warmer] = []  # every one made, to close them all
        self._store: Store | None = None
        self._earlier_runs: bool | None = None  # the job has answers from an earlier run
        self._failed_urls: set[str] = set()  # URLs that failed in this run: asked again
        self.bytes_sent = 0  # body bytes read this run, against max_bytes
        self.n_requests = 0
        self.stats: dict[str, dict[str, int]] = {}  # per target label
        # Per (URL, target label, variant), an answer the request may still replace (failed, so
        # asked again): the counts keep each request's latest answer, as the record does.
        self._replaceable: dict[tuple[str, str, str], Answer] = {}
        # Per (URL, target label, variant), a failure not worth asking again this run (an
        # edge whose certificate is not trusted): a retry of the URL does not send it again.
        self._not_again: dict[tuple[str, str, str], Answer] = {}

    @classmethod
    def config_problems(cls, alias: str, settings: Mapping[str, Any]) -> list[ConfigError]:
        key = f"providers.{alias}"
        found = []
        if any(not str(v).strip() for v in settings.get("encodings") or ()):
            found.append(ConfigError(f"{key}.encodings: an Accept-Encoding value is empty"))
        if settings.get("encodings") == []:  # not "none": the defaults would be warmed
            found.append(
                ConfigError(
                    f"{key}.encodings: the list is empty",
                    hint="leave encodings out to warm the defaults"
                    f" ({' and '.join(repr(e) for e in DEFAULT_ENCODINGS)}),"
                    " or name the variants to warm",
                )
            )
        blank_resolver = "resolver" in settings and not str(settings["resolver"]).strip()
        if blank_resolver:
            found.append(
                ConfigError(
                    f"{key}.resolver: the DNS server is empty",
                    hint=f"give IP[:PORT], or leave resolver out for {dns.DEFAULT_RESOLVER}",
                )
            )
        max_bytes = settings.get("max_bytes")
        if isinstance(max_bytes, int) and max_bytes < 1:  # every run would defer everything
            found.append(
                ConfigError(
                    f"{key}.max_bytes: {max_bytes} is not a byte budget",
                    hint="give the bytes a run may read (at least 1), or leave it out",
                )
            )
        spec = TargetSpec(
            resolve=tuple(settings.get("resolve") or ()),
            pops=tuple(settings.get("pops") or ()),
            ecs=tuple(settings.get("ecs") or ()),
            cf_domain=settings.get("cf_domain"),
            resolver=_resolver(settings),
        )
        for name, problem in spec_problems(spec):
            found.append(ConfigError(f"{key}.{name}: {problem.message}", hint=problem.hint))
        return found

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
            raise ConfigError("an Accept-Encoding value in encodings is empty (e.g. gzip, br)")
        # -H Accept-Encoding is left out (check_options says so): the variants set it.
        headers = tuple((n, v) for n, v in options.headers if n.lower() != "accept-encoding")
        spec = TargetSpec(
            resolve=pick("resolve", "resolve"),
            pops=pick("pop", "pops"),
            ecs=pick("ecs", "ecs"),
            cf_domain=self.settings.get("cf_domain"),
            resolver=_resolver(self.settings),
        )
        return RunPlan(variants, spec, headers)

    def job_settings(self, options: SubmitOptions) -> Mapping[str, Any]:
        """Where and how a job warms, as given (by its options, else the config; None where
        neither says, so that another version's defaults never stop a --resume): a --resume
        under a config that would warm other PoPs, variants or with another User-Agent is
        refused (the job would be half one, half the other, and say succeeded)."""
        extra = options.extra

        def given(option: str | None, key: str) -> Any:
            value = (extra.get(option) if option else None) or self.settings.get(key)
            return list(value) if isinstance(value, list | tuple) else value

        settings = {
            "encodings": given("accept_encoding", "encodings"),
            "resolve": given("resolve", "resolve"),
            "pops": given("pop", "pops"),
            "ecs": given("ecs", "ecs"),
            "user_agent": given(None, "user_agent"),
        }
        if settings["pops"] or settings["ecs"]:  # then these say which edges those are
            settings.update(cf_domain=given(None, "cf_domain"), resolver=given(None, "resolver"))
        return settings

    def check_options(self, options: SubmitOptions) -> None:
        """--accept-encoding, --resolve, --pop and --ecs values it cannot use are refused before
        the job starts (exit 2); the same in the config's table are configuration errors (3)."""
        extra = options.extra
        if any(name.lower() == "accept-encoding" for name, _ in options.headers):
            self.warn("-H Accept-Encoding is ignored: give variants with --accept-encoding")
        try:
            if any(not str(v).strip() for v in extra.get("accept_encoding") or ()):
                raise ConfigError("an --accept-encoding value is empty (e.g. gzip, br, identity)")
            given = TargetSpec(
                resolve=tuple(extra.get("resolve") or ()),
                pops=tuple(extra.get("pop") or ()),
                ecs=tuple(extra.get("ecs") or ()),
                cf_domain=self.settings.get("cf_domain"),
            )
            check_spec(given)
        except ConfigError as exc:
            hint = (exc.hint or "").replace(
                "the direct provider's table", f"[providers.{self.alias}]"
            )
            raise UsageError(exc.message, hint=hint or None, provider=self.alias) from exc
        check_spec(self.plan_for(options).spec)

    def _setup(self, options: SubmitOptions) -> tuple[RunPlan, Targets]:
        with self._lock:
            if self._plan is None or self._targets is None:
                self._plan = self.plan_for(options)
                self._targets = Targets(self._plan.spec, self.warn)
                self._header_lines = self._plan.header_lines()
            return self._plan, self._targets

    @property
    def store(self) -> Store:
        with self._lock:
            if self._store is None:
                self._store = Store(self.state_dir / RECORD)
            return self._store

    def _warmer(self) -> Warmer:
        warmer: Warmer | None = getattr(self._local, "warmer", None)
        if warmer is None:
            warmer = self._local.warmer = Warmer(
                concurrency=self.concurrency,
                timeout=self.timeout,
                user_agent=self.user_agent,
                ca_bundle=self.settings.get("ca_bundle"),
            )
            with self._lock:
                self._warmers.append(warmer)
        return warmer

    def limits(self) -> Limits:
        return self.default_limits

    def requests_per_url(self, url: str, options: SubmitOptions) -> int:
        """PoP targets times variants: what a URL costs, without any DNS lookup (--dry-run)."""
        plan = self.plan_for(options)
        return plan.spec.count(url) * len(plan.variants)

    # --- the engine's calls ---

    def submit_batch(self, urls: Sequence[str], options: SubmitOptions) -> BatchResult:
        plan, targets = self._setup(options)
        if self._budget_spent():
            # The engine defers the rest, and its line names the --resume to send it with.
            raise QuotaExhausted(
                f"max_bytes ({self.max_bytes}) is spent: {self.bytes_sent} bytes read"
            )
        store = self.store
        known = self._known(options.job_id, urls)
        batch = _BatchAnswers()
        answers, not_ok, fresh = batch.by_url, batch.not_ok, batch.fresh
        unstarted: list[str] = []
        next_urls = iter(urls)
        ready: deque[Request] = deque()  # a URL's further requests, once its first answered
        held: dict[str, list[Request]] = {}  # until then
        n_unanswered: dict[str, int] = {}  # per started URL: its requests not answered yet
        keeps_budget = self.max_bytes is not None
        warmer = self._warmer()

        def hand_over() -> None:
            self._hand_over(store, options.job_id, fresh)

        def take() -> Request | None:
            """The next request: a started URL's further ones first, then the next URL's
            first; none once the byte budget is spent (the next batch defers the rest)."""
            if keeps_budget and warmer.budget_spent:
                unstarted.extend(next_urls)
                return None
            while not ready:
                url = next(next_urls, None)
                if url is None:
                    return None
                pending = self._pending(
                    store, url, plan, targets, known.get(url), options, batch, hand_over
                )
                if pending:
                    ready.append(pending[0])
                    if len(pending) > 1:
                        held[url] = pending[1:]
                    n_unanswered[url] = len(pending)
            if fresh and self.pace_waits:  # a rate's wait may be long: the answers first
                hand_over()
            self.pace(meanwhile=warmer.keep_sending)  # what was taken before goes out now
            return ready.popleft()

        def on_answer(request: Request, answer: Answer) -> None:
            url, target, variant = request.url, request.target, request.variant
            fresh.append((url, target.label, target.ip, variant, answer))
            if not answer.retry:
                with self._lock:
                    self._not_again[(url, target.label, variant)] = answer
            answers[url].append(((target.label, variant), answer))
            if answer.outcome != OK:
                not_ok.add(url)
            further = held.pop(url, None)
            if url not in n_unanswered:
                return  # refused meanwhile by another of its requests, in flight with this one
            if answer.outcome == REJECTED:  # refused: the others would not change that
                del n_unanswered[url]
                return
            if answer.outcome != STOPPED:
                n_unanswered[url] -= 1
            if further:
                ready.extend(further)

        budget = None if self.max_bytes is None else max(0, self.max_bytes - self.bytes_sent)
        # The answers go to the record every COMMIT_EVERY seconds (a slow edge), and at the
        # end, stopped or not: one hand-over, and one time, for many answers.
        try:
            warmer.run(
                take,
                on_answer,
                byte_budget=budget,
                on_tick=hand_over,
                tick_every=COMMIT_EVERY,
            )
        finally:
            hand_over()
        # A URL with requests not answered (the budget ran out) is sent again later: its
        # answers are recorded, so a later run asks only the rest.
        # The run's record holds the batch's answers, those cut short too: status and report
        # read it, whether the batch's URLs were accepted or not.
        recorded = any(answers.values())
        unfinished = [url for url, n in n_unanswered.items() if n]
        for url in unfinished:
            del answers[url]
        result = self._result(batch, [*unfinished, *unstarted], recorded=recorded)
        store.flush(
            warmed_urls=set(result.accepted)
        )  # recorded before the engine's journal says so
        return result

    def _pending(
        self,
        store: Store,
        url: str,
        plan: RunPlan,
        targets: Targets,
        known: Mapping[tuple[str, str], Record] | None,
        options: SubmitOptions,
        batch: _BatchAnswers,
        hand_over: Callable[[], None],
    ) -> list[Request]:
        """A URL's requests not answered in the job yet; answers known already are noted, and
        a PoP without an address is answered at once (to be recorded). The answers so far are
        handed over before a DNS lookup of its targets, which may take seconds."""
        mine: list[tuple[tuple[str, str], Answer]] = []
        batch.by_url[url] = mine
        if known:
            carried = [r for r in known.values() if r.run_id != self.run_id]
            if carried:  # this run's record holds the whole job's answers for the URL
                store.copy(options.job_id, self.run_id, self.alias, carried)
        pending = []
        header_lines = self._header_lines
        for target in targets.for_url(url, before_lookup=hand_over):
            for variant in plan.variants:
                record = known.get((target.label, variant)) if known else None
                failed_for_good = (
                    self._not_again.get((url, target.label, variant)) if self._not_again else None
                )
                if failed_for_good is not None:  # a retry: that answer stands, not sent again
                    mine.append(((target.label, variant), failed_for_good))
                    batch.not_ok.add(url)
                elif record is not None:
                    mine.append(((target.label, variant), _answer(record)))
                    if record.outcome != OK:
                        batch.not_ok.add(url)
                elif target.error:
                    missing = Answer(NOT_FOUND, reason=target.error)
                    batch.fresh.append((url, target.label, target.ip, variant, missing))
                    mine.append(((target.label, variant), missing))
                    batch.not_ok.add(url)
                else:
                    pending.append(Request(url, target, variant, header_lines[variant]))
        if known and any(a.outcome == REJECTED for _, a in mine):
            return []  # refused in an earlier run: nothing more to ask
        return pending

    def _budget_spent(self) -> bool:
        return self.max_bytes is not None and self.bytes_sent >= self.max_bytes

    def _result(self, batch: _BatchAnswers, unstarted: list[str], *, recorded: bool) -> BatchResult:
        """Each URL's outcome from its requests' answers; ``recorded``: the record holds
        answers of the batch (the run is a task even if it accepted none of it)."""
        answers, not_ok = batch.by_url, batch.not_ok
        # A URL every answer of which is OK is accepted: told apart without reading its answers.
        accepted = [url for url in answers if url not in not_ok]
        rejected: dict[str, str] = {}
        failed: dict[str, str] = {}
        longest: tuple[float, str] | None = None  # the longest Retry-After, and its URL
        retry = False
        for url in [url for url in answers if url in not_ok]:
            url_answers = answers[url]
            refused = [(k, a) for k, a in url_answers if a.outcome == REJECTED]
            transient = [(k, a) for k, a in url_answers if a.outcome == TRANSIENT]
            missing = [(k, a) for k, a in url_answers if a.outcome == NOT_FOUND]
            if refused:
                rejected[url] = _describe(refused)
            elif transient or missing:
                failed[url] = _describe(transient + missing)
                with self._lock:
                    self._failed_urls.add(url)
                # A PoP not found, or a certificate not trusted, stays so: no retry.
                retry = retry or any(a.retry for _, a in transient)
                for _, a in transient:
                    if a.retry_after is not None and (
                        longest is None or a.retry_after > longest[0]
                    ):
                        longest = (a.retry_after, url)
            else:
                accepted.append(url)
        if longest is not None:  # named first: the engine's message quotes the first failed
            failed = {longest[1]: failed[longest[1]], **failed}
        return BatchResult(
            task_id=self.run_id,
            accepted=tuple(accepted),
            rejected=rejected,
            failed=failed,
            resend=tuple(unstarted),
            retry_after=longest[0] if longest is not None else None,
            retry=retry,
            task_keeps_all=recorded,
        )

    def _known(
        self, job_id: str | None, urls: Sequence[str]
    ) -> dict[str, dict[tuple[str, str], Record]]:
        """Final answers the job already has for these URLs: from a retry, or earlier runs."""
        known: dict[str, dict[tuple[str, str], Record]] = {}
        if job_id is None:
            return known
        store = self.store
        with self._lock:
            if self._earlier_runs is None:
                self._earlier_runs = store.has_job(job_id, self.alias)
            wanted = urls if self._earlier_runs else [u for u in urls if u in self._failed_urls]
        if not wanted:
            return known  # a first run's first try: nothing to look up
        for record in store.answered(job_id, self.alias, wanted):
            known.setdefault(record.url, {})[(record.target, record.variant)] = record
        return known

    def _hand_over(self, store: Store, job_id: str | None, fresh: list[Answered]) -> None:
        """The answers given since the last hand-over go to the record and into the run's
        counts; ``fresh`` is emptied."""
        if not fresh:
            return
        store.save(job_id, self.run_id, self.alias, fresh)
        # Counted by kind (target, outcome, verdict, size): an edge gives few kinds.
        kinds = Counter((label, a.outcome, a.cache, a.bytes) for _, label, _, _, a in fresh)
        with self._lock:
            replaceable = self._replaceable
            if replaceable:  # a request asked again (it failed): only its latest answer counts
                for url, label, _, variant, _ in fresh:
                    earlier = replaceable.pop((url, label, variant), None)
                    if earlier is not None:
                        _count(self.stats[label], earlier, -1)
            for (label, outcome, cache, n_bytes), n in kinds.items():
                _count_kind(self.stats.setdefault(label, {}), outcome, cache, n, n_bytes * n)
                self.bytes_sent += n_bytes * n
                if outcome != NOT_FOUND:
                    self.n_requests += n
            if any(outcome not in (OK, REJECTED) for _, outcome, _, _ in kinds):
                for url, label, _, variant, answer in fresh:
                    if not answer.answered:  # asked again later: that answer replaces it
                        replaceable[(url, label, variant)] = answer
        fresh.clear()

    def progress_note(self) -> str | None:
        with self._lock:
            return f"{_requests(self.n_requests)}, {_size(self.bytes_sent)}"

    def find_submitted(self, urls: Sequence[str], since: datetime) -> dict[str, str]:
        """Called at --resume for a batch a killed run left unanswered: the URLs it warmed
        whole (recorded before the journal could say so) are found, with their run.

        The others are sent again, asking only the requests the job's record holds no answer
        to (``_known``): a URL whose every request was answered makes no request at all.
        """
        job_id = self.sending_job_id
        if job_id is None:  # not sending a job: nothing of it to find
            return {}
        moment = since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # the record's format
        return self.store.warmed_since(job_id, self.alias, urls, moment)

    def started_task(self) -> str | None:
        """This run, named in the record before its first request: a run stopped before any
        batch was answered is found here, with what it recorded (nothing, at worst)."""
        self.store.name_run(self.run_id, self.sending_job_id, self.user_agent)
        return self.run_id

    def fetch_status(self, task_ids: Sequence[str]) -> list[TaskStatus]:
        """From the record alone: a run is finished when submit returns."""
        records = self.store.of_runs(task_ids)
        self._check_here(task_ids, bool(records))
        by_run: dict[str, list[Record]] = {}
        by_url: dict[str, list[Record]] = {}
        for record in records:
            by_run.setdefault(record.run_id, []).append(record)
            by_url.setdefault(record.url, []).append(record)
        # Each URL counted once, in the run that gave the latest of its answers: warm where
        # every request's latest answer is OK, refused or failed where one is not.
        order = self.store.run_order(task_ids)
        warm: dict[str, list[UrlStatus]] = {}
        refused: dict[str, list[UrlStatus]] = {}
        for url, answers in by_url.items():
            last = max(answers, key=lambda r: (r.at, -order.get(r.run_id, 0)))
            why = next((r.reason or r.outcome for r in answers if r.outcome in _NOT_WARM), None)
            if why is not None:
                refused.setdefault(last.run_id, []).append(UrlStatus(url, State.FAILED, why))
            elif all(r.outcome == OK for r in answers):
                warm.setdefault(last.run_id, []).append(UrlStatus(url, State.SUCCEEDED))
        return self._stopped_shown(
            [
                _run_status(
                    run_id,
                    len(warm.get(run_id, ())),
                    len(refused.get(run_id, ())),
                    # Each request counted in the run that gave its latest answer: the runs'
                    # details add up to the job's (job_details).
                    summarize(by_run.get(run_id, [])),
                    # Per URL: a run that was partial still vouches for each URL it warmed
                    # (status --verify holds each to its own claim).
                    urls=(*warm.get(run_id, ()), *refused.get(run_id, ())),
                )
                for run_id in task_ids
            ]
        )

    def fetch_counts(self, task_ids: Sequence[str]) -> list[TaskStatus]:
        """fetch_status's states, counts and details, counted as SQLite reads the record, a
        URL at a time: flat in the number of URLs, where fetch_status holds every one."""
        n_warm: Counter[str] = Counter()
        n_refused: Counter[str] = Counter()
        pops: dict[str, dict[str, dict[str, int]]] = {}  # per run, per target: the counts
        by_kind: Counter[tuple[str, str, str, str | None]] = Counter()
        n_bytes: Counter[tuple[str, str, str, str | None]] = Counter()
        found = False
        for _url, answers in groupby(self.store.latest_of_runs(task_ids), key=attrgetter("url")):
            found = True
            all_ok, refused, last = True, False, ("", "")  # last: (time and order, run)
            for latest in answers:
                kind = (latest.run_id, latest.target, latest.outcome, latest.cache)
                by_kind[kind] += 1
                n_bytes[kind] += latest.bytes
                all_ok = all_ok and latest.outcome == OK
                refused = refused or latest.outcome in _NOT_WARM
                last = max(last, (latest.latest[1:], latest.run_id))  # without the OK first
            # The URL counted once, in the run of its latest answer (as fetch_status does).
            n_refused[last[1]] += refused
            n_warm[last[1]] += all_ok and not refused
        self._check_here(task_ids, found)
        for (run_id, target, outcome, cache), n in by_kind.items():
            stats = pops.setdefault(run_id, {}).setdefault(target, {})
            _count_kind(stats, outcome, cache, n, n_bytes[run_id, target, outcome, cache])
        return self._stopped_shown(
            [
                _run_status(
                    run_id, n_warm[run_id], n_refused[run_id], _with_totals(pops.get(run_id, {}))
                )
                for run_id in task_ids
            ]
        )

    def _stopped_shown(self, statuses: list[TaskStatus]) -> list[TaskStatus]:
        """A run that counts nothing and holds no answer at all was stopped before its first
        (Ctrl-C, kill -9): cancelled, not a run that warmed nothing."""
        empty = [s.task_id for s in statuses if not s.total and not s.details]
        silent = self.store.silent_runs(empty) if empty else set()
        return [
            replace(s, state=State.CANCELLED, raw_state=STOPPED_EARLY) if s.task_id in silent else s
            for s in statuses
        ]

    def _check_here(self, task_ids: Sequence[str], answered: bool) -> None:
        """NotFoundError unless these runs are this machine's: answers of them were read
        (``answered``), or the record names one (stopped before its first answer)."""
        if not answered and not self.store.knows_runs(task_ids):
            raise NotFoundError(
                f"no record of {', '.join(task_ids)} in {self.store.path}",
                hint="direct warming keeps its results in that file, on the machine that ran"
                " it: ask `prewarm status` there, or put back the file if it was moved",
                provider=self.alias,
            )

    def job_details(self, statuses: Sequence[TaskStatus]) -> dict[str, Any]:
        """The runs' counts added up, per PoP and in all."""
        per_pop: dict[str, dict[str, int]] = {}
        for status in statuses:
            for label, counts in status.details.get("pops", {}).items():
                mine = per_pop.setdefault(label, dict.fromkeys(DETAIL_KEYS, 0))
                for key in DETAIL_KEYS:
                    mine[key] += counts.get(key, 0)
        return _with_totals(per_pop)

    def probe_targets(self, task_ids: Sequence[str]) -> Iterable[ProbeTarget] | None:
        """Every (URL, PoP, variant) these runs warmed, to be probed again through that PoP
        with the User-Agent its run sent (the config's may have changed since), read from the
        record each time they are iterated."""
        return _WarmedTargets(self.store, tuple(task_ids), self.user_agent)

    def report(self, task_ids: Sequence[str]) -> Report:
        """Each (URL, PoP, variant) request that was refused or failed last time it was sent."""
        records = self.store.failures_of_runs(task_ids)  # not the warm answers: a million
        self._check_here(task_ids, records is not None)  # not "no failures"
        failures = [
            Failure(
                url=r.url,
                pop=r.target,
                reason=f"{r.reason or r.outcome} (Accept-Encoding: {r.variant})",
            )
            for r in records or ()
            if r.outcome != STOPPED  # cut short by the budget: deferred, not failed
        ]
        return Report(failures=tuple(failures))

    def plan_notes(self, options: SubmitOptions) -> list[str]:
        plan = self.plan_for(options)
        # Each value quoted: one holds commas itself ("gzip, deflate, br").
        notes = [
            "GET through the edge, one request per PoP target and Accept-Encoding ("
            + ", ".join(f"'{v}'" for v in plan.variants)
            + "); warm traffic is billed as CDN egress"
        ]
        if self.max_bytes is not None:
            notes.append(f"max_bytes {self.max_bytes}: the rest is deferred once it is spent")
        return notes

    def submit_details(self) -> Mapping[str, Any]:
        """This run's requests, bytes, already_warm, filled, rejected, failed, and per PoP."""
        with self._lock:
            return _with_totals({label: dict(s) for label, s in self.stats.items()})

    def run_notes(self) -> list[str]:
        """One line per PoP target for the user (stderr), its counts adding up to its requests
        (the JSON's details keep DETAIL_KEYS only)."""
        return [_pop_line(label, s) for label, s in sorted(self.stats.items())]

    def detail_lines(self, details: Mapping[str, Any]) -> list[str]:
        """A status's counts per PoP target, one line each, as the submit said them."""
        pops = details.get("pops") or {}
        return [_pop_line(label, counts) for label, counts in sorted(pops.items())]

    @classmethod
    def forget_jobs(cls, state_dir: Path, job_ids: Sequence[str]) -> None:
        path = state_dir / RECORD
        if not path.exists():
            return  # direct warming never ran here
        store = Store(path)
        try:
            store.forget(job_ids)
        finally:
            store.close()

    def close(self) -> None:
        with self._lock:
            warmers, self._warmers = self._warmers, []
            store, self._store = self._store, None
        for warmer in warmers:
            warmer.close()
        if store is not None:
            store.close()


class _BatchAnswers:
    """A batch's answers as they come: per URL, each one's (target label, variant) and the
    answer; the URLs with an answer other than OK (every other URL is accepted); and those
    not handed to the record yet (``Answered``)."""

    __slots__ = ("by_url", "fresh", "not_ok")

    def __init__(self) -> None:
        self.by_url: dict[str, list[tuple[tuple[str, str], Answer]]] = {}
        self.not_ok: set[str] = set()
        self.fresh: list[Answered] = []


def _describe(items: Sequence[tuple[tuple[str, str], Answer]]) -> str:
    """The answers' reasons by PoP target and variant, in that order (not the order in which
    they came, which varies from run to run)."""
    return "; ".join(
        f"{a.reason or a.outcome} at {label} (Accept-Encoding: {variant})"
        for (label, variant), a in sorted(items, key=lambda item: item[0])
    )


def _count(stats: dict[str, int], answer: Answer, by: int = 1) -> None:
    """Adds an answer to a target's counts (``by=-1`` takes a replaced answer out)."""
    _count_kind(stats, answer.outcome, answer.cache, by, answer.bytes * by)


def _count_kind(
    stats: dict[str, int], outcome: str, cache: str | None, n: int, n_bytes: int
) -> None:
    """Adds ``n`` answers of one outcome and cache verdict, of ``n_bytes`` in all."""
    if outcome == NOT_FOUND:
        stats["failed"] = stats.get("failed", 0) + n
        return
    stats["requests"] = stats.get("requests", 0) + n
    stats["bytes"] = stats.get("bytes", 0) + n_bytes
    if outcome == STOPPED:  # asked again in a later run
        key = "cut_short"
    elif outcome != OK:
        key = "failed" if outcome == TRANSIENT else "rejected"
    elif cache in HIT_VALUES:
        key = "already_warm"
    elif cache == "miss":
        key = "filled"
    else:  # warm, but the edge says it did not cache it (bypass) or says nothing
        key = "no_verdict"
    stats[key] = stats.get(key, 0) + n


def _run_status(
    run_id: str,
    n_warm: int,
    n_refused: int,
    details: Mapping[str, Any],
    urls: tuple[UrlStatus, ...] = (),
) -> TaskStatus:
    """A run as a finished task: its URLs warm (every request OK) and refused or failed."""
    state = State.SUCCEEDED
    if n_refused:
        state = State.PARTIAL if n_warm else State.FAILED
    return TaskStatus(
        task_id=run_id,
        state=state,
        raw_state="finished",
        total=n_warm + n_refused,
        succeeded=n_warm,
        failed=n_refused,
        urls=urls,
        details=details,
    )


def _answer(record: Record) -> Answer:
    return Answer(
        record.outcome,
        record.status_code,
        record.cache,
        record.bytes,
        record.reason,
        pop=record.pop,
    )


_NOT_WARM = (REJECTED, TRANSIENT, NOT_FOUND)  # a URL one of whose requests so answered
STOPPED_EARLY = "stopped before any answer"  # a run's raw state


def summarize(records: Sequence[Record]) -> dict[str, Any]:
    """The status details: requests, bytes, already_warm, filled, failed, and per PoP."""
    pops: dict[str, dict[str, int]] = {}
    for r in records:
        _count(pops.setdefault(r.target, {}), _answer(r))
    return _with_totals(pops)


def _with_totals(pops: Mapping[str, Mapping[str, int]]) -> dict[str, Any]:
    """Details from counts per PoP: each count in all, and per PoP in PoP order ({} for none)."""
    if not pops:
        return {}
    per_pop = {label: {k: s.get(k, 0) for k in DETAIL_KEYS} for label, s in sorted(pops.items())}
    totals = {k: sum(s[k] for s in per_pop.values()) for k in DETAIL_KEYS}
    return {**totals, "pops": per_pop}


def _resolver(settings: Mapping[str, Any]) -> str:
    """The DNS server for PoP codes and client subnets; the default where none is given (an
    empty one is a configuration error: config_problems)."""
    return str(settings.get("resolver") or "").strip() or dns.DEFAULT_RESOLVER


def _pop_line(label: str, counts: Mapping[str, int]) -> str:
    """``127.0.0.2: 20,000 requests, 39.1 MB, 19,800 already warm, 200 filled``, with what
    else its requests came to."""
    more = (
        ("no_verdict", "with no cache verdict (bypass, or no cache header)"),
        ("cut_short", "cut short by max_bytes"),
        ("rejected", "rejected"),
        ("failed", "failed"),
    )
    return (
        f"{label}: {_requests(counts.get('requests', 0))}, {_size(counts.get('bytes', 0))},"
        f" {counts.get('already_warm', 0):,} already warm, {counts.get('filled', 0):,} filled"
        + "".join(f", {counts[k]:,} {words}" for k, words in more if counts.get(k))
    )


def _requests(n: int) -> str:
    return f"{n:,} request" if n == 1 else f"{n:,} requests"


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


class _WarmedTargets:
    """The probe targets of some runs, read from the record as they are iterated (a million
    are never all held), a PoP's with one variant side by side."""

    def __init__(self, store: Store, run_ids: Sequence[str], user_agent: str) -> None:
        self._store, self._run_ids = store, run_ids
        self._user_agent = user_agent  # where the record does not say: the config's

    def __iter__(self) -> Iterator[ProbeTarget]:
        for r in self._store.warmed_targets(self._run_ids):
            agent = r.user_agent or self._user_agent
            yield ProbeTarget(r.url, r.variant, r.ip, r.target, user_agent=agent)
