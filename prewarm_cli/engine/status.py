"""`status` and waiting: vendor task states summed per target, and polling until done.

A job some of whose targets were never sent (deferred, unsent, of unknown outcome) and that
no process is working on is `incomplete`: nothing but `submit --resume` will send them, so
waiting is for the vendor's part only, and the state the job's run recorded is kept.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from prewarm_cli import journal as jr
from prewarm_cli.engine.claims import Claims
from prewarm_cli.engine.lock import JobLock
from prewarm_cli.engine.workspace import ProviderSession, Workspace
from prewarm_cli.errors import (
    ExitCode,
    NotFoundError,
    PrewarmError,
    RetryableError,
    UsageError,
    WaitTimeout,
    exit_for,
)
from prewarm_cli.output import counted
from prewarm_cli.plugin import (
    Capability,
    State,
    TaskStatus,
    first_details,
)
from prewarm_cli.results import JobState, JobStatus, ProviderStatus

# What a job's run records while it sends, or when it stops before every target was sent:
# `status` leaves these alone while targets are left for `submit --resume`.
_RESUMABLE = frozenset(
    {
        JobState.CREATED,
        JobState.READY,
        JobState.SUBMITTING,
        JobState.INTERRUPTED,
        JobState.INCOMPLETE,
    }
)


# A job with targets left that nobody sends is incomplete (`submit --resume` sends them),
# unless its run says otherwise: cancelled by the user, or its input never read whole (a
# job --resume refuses: it failed).
_LEFT_ALONE: dict[str | None, JobState] = {
    JobState.CANCELLED: JobState.CANCELLED,
    JobState.CREATED: JobState.FAILED,
}


@dataclass
class JobRef:
    """What `status`/`report` work on: a journal job, or bare vendor tasks."""

    job_id: str | None
    tasks: dict[str, list[str]]  # alias -> task ids
    # A piped submit JSON whose job this journal does not hold: its targets per alias, as
    # the journal would count them.
    piped: dict[str, jr.Counts] | None = None


def parse_job_ref(ws: Workspace, ref: str | None, stdin_text: Callable[[], str]) -> JobRef:
    """JOB, ALIAS:task[,task...], '-' (a submit JSON on stdin) or nothing (the latest job)."""
    import json

    if ref == "-":
        text = stdin_text()
        try:
            data = json.loads(text)
        except ValueError as exc:
            ndjson = text.lstrip().startswith('{"record"')
            raise UsageError(
                f"stdin is not a prewarm submit JSON: {exc}",
                hint="pipe `prewarm submit -o json` into it"
                + (" (-o ndjson is a line per record)" if ndjson else ""),
            ) from exc
        if isinstance(data, dict) and isinstance(data.get("error"), dict):
            error = data["error"]
            job_id = error.get("job_id")
            # A wait that timed out, or a Ctrl-C, left a job to wait for: here, it is waited
            # for (its piped error would be replayed, its exit code with it).
            if error.get("code") in _WAITED_AGAIN and job_id:
                with contextlib.suppress(PrewarmError):  # not this journal's: said as it came
                    ws.journal.job(str(job_id))
                    return journal_ref(ws, str(job_id))
            raise PipedError(error)  # the submit failed: say why, not "no tasks"
        if not isinstance(data, dict) or "tasks" not in data:
            raise UsageError("stdin JSON has no `tasks`: pipe `prewarm submit -o json` into it")
        job_id = data.get("job_id")
        if job_id:
            try:
                ws.journal.job(job_id)
                return journal_ref(ws, job_id)
            except PrewarmError:
                pass
        return _piped_ref(ws, job_id, data)
    if ref and ":" in ref:
        name, _, ids = ref.partition(":")
        task_ids = [i for i in ids.split(",") if i]
        if not task_ids:
            raise UsageError(f"{ref!r} names no task id; use ALIAS:TASK_ID[,TASK_ID...]")
        return JobRef(None, {ws.alias(name): task_ids})
    job = ws.journal.job(ref) if ref else ws.journal.latest_job()
    return journal_ref(ws, job.id)


def _piped_ref(ws: Workspace, job_id: str | None, data: Mapping[str, Any]) -> JobRef:
    """The job of a submit JSON made elsewhere (CI with no local state): its vendor tasks, and
    its targets per provider as the submit counted them (`providers`), those no task holds
    (rejected, failed, deferred, unknown) included, so that its state and counts are those
    `status` gives where it was submitted. Only a provider with tasks is asked (and needs
    its alias here)."""
    tasks: dict[str, list[str]] = {}
    for t in data["tasks"]:
        alias = str(t["provider"])
        if ws.finished_in_submit(alias):  # direct: its runs' record is on that machine only
            continue
        tasks.setdefault(alias, []).append(str(t["task_id"]))
    piped: dict[str, jr.Counts] = {}
    for alias, counted_there in (data.get("providers") or {}).items():
        # The JSON's counts are named as the journal's outcomes.
        piped[alias] = jr.Counts(
            {outcome: int(counted_there.get(outcome) or 0) for outcome in _SUBMIT_COUNTS}
        )
        tasks.setdefault(alias, [])
    named = {alias: ws.alias(alias) for alias, task_ids in tasks.items() if task_ids}
    return JobRef(
        job_id,
        {named.get(alias, alias): task_ids for alias, task_ids in tasks.items()},
        {named.get(alias, alias): counts for alias, counts in piped.items()},
    )


_SUBMIT_COUNTS = (jr.ACCEPTED, jr.REJECTED, jr.FAILED, jr.DEFERRED, jr.UNKNOWN)


def journal_ref(ws: Workspace, job_id: str) -> JobRef:
    tasks: dict[str, list[str]] = {}
    for t in ws.journal.tasks(job_id):
        tasks.setdefault(t.provider, []).append(t.task_id)
    job = ws.journal.job(job_id)
    for alias in job.providers:
        tasks.setdefault(alias, [])
    return JobRef(job_id, tasks)


def combine_states(states: Iterable[State]) -> State:
    """One state for several tasks or providers."""
    found = set(states)
    if not found:
        return State.PENDING
    if found == {State.PENDING}:
        return State.PENDING
    if found & {State.PENDING, State.RUNNING}:
        return State.RUNNING
    if len(found) == 1:
        return found.pop()
    if found <= {State.FAILED, State.CANCELLED, State.TIMED_OUT}:
        return State.FAILED if State.FAILED in found else State.PARTIAL
    return State.PARTIAL


def job_status(ws: Workspace, ref: JobRef) -> JobStatus:
    """Asks each provider about its tasks and sums per target (DESIGN.md §5)."""
    return _job_status(ws, ref)[0]


def _job_status(
    ws: Workspace, ref: JobRef, *, with_claims: bool = False
) -> tuple[JobStatus, dict[str, list[TaskStatus]]]:
    """The job's status, and the task statuses it was summed from; within a journal job,
    their per-URL results only where they make a claim (``with_claims``; see url_claims)."""
    # Asked before the journal is read: a run that ends after this has recorded its
    # outcomes by then, so what it was still sending never looks abandoned.
    holder = JobLock(ws.state_dir, ref.job_id).holder() if ref.job_id else None
    counts = ws.journal.counts(ref.job_id) if ref.job_id else {}
    if not counts and ref.piped is not None:
        counts = ref.piped  # a job submitted elsewhere, as its submit JSON counted it
    elif ref.job_id and counts:  # a journal job: with the tasks a run still sending added since
        ref = journal_ref(ws, ref.job_id)
        for alias in counts:  # a provider with targets but no task or job entry yet (intake)
            ref.tasks.setdefault(alias, [])
    providers: dict[str, ProviderStatus] = {}
    seen: dict[str, list[TaskStatus]] = {}
    for alias, task_ids in ref.tasks.items():
        statuses: list[TaskStatus] = []
        recorded = None
        details: Mapping[str, Any] = {}
        if task_ids:
            try:
                session = ws.session(alias, needs=Capability.STATUS)
            except PrewarmError as exc:
                recorded = _recorded_statuses(ws, ref.job_id, alias)
                if recorded is None:
                    raise
                ws.out.warn(
                    f"{alias}: showing the state recorded when the job finished; the vendor"
                    f" was not asked ({exc})"
                )
                statuses = recorded
                details = first_details(recorded)
            else:
                journal_job = ref.job_id if ref.piped is None else None
                statuses = _vendor_statuses(
                    ws, session, alias, task_ids, journal_job, keep_urls=with_claims
                )
                details = session.provider.job_details(statuses)
        seen[alias] = statuses
        providers[alias] = _provider_status(
            alias,
            statuses,
            counts.get(alias),
            details,
            sending=holder is not None,
            # A piped job's direct warming: done when its submit returned, as it counted.
            done_in_submit=not task_ids and ref.piped is not None and ws.finished_in_submit(alias),
            # A journal job's direct warming: the journal's outcomes are final, its runs' own
            # states only say how each run went (see _accepted_done).
            states_from_journal=bool(
                statuses and recorded is None and ref.job_id and ref.piped is None
            )
            and ws.finished_in_submit(alias),
        )
        if ref.job_id and recorded is None:
            ws.journal.save_task_states(
                ref.job_id, alias, [(s.task_id, str(s.state), s.raw_state) for s in statuses]
            )
    parts = providers.values()
    raws = {p.raw_state for p in parts}
    not_sent = sum(p.not_sent for p in parts)
    job_state, changed_at = ws.journal.job_state_at(ref.job_id) if ref.job_id else (None, None)
    if job_state == JobState.CREATED and holder is None:
        state = str(JobState.FAILED)  # its input was never read to its end
    elif not_sent and holder is None:  # nobody sends the rest
        state = str(_LEFT_ALONE.get(job_state, JobState.INCOMPLETE))
    else:
        state = str(combine_states(State(p.state) for p in parts))
    result = JobStatus(
        job_id=ref.job_id,
        state=state,
        raw_state=raws.pop() if len(raws) == 1 else None,
        total=sum(p.total for p in parts),
        succeeded=sum(p.succeeded for p in parts),
        failed=sum(p.failed for p in parts),
        in_progress=sum(p.in_progress for p in parts),
        pending=sum(p.pending for p in parts),
        not_sent=not_sent,
        providers=providers,
        deferred=sum(p.deferred for p in parts),
    )
    if ref.job_id:
        _record_state(ws, ref.job_id, result, job_state, changed_at)
    return result, seen


def _record_state(
    ws: Workspace, job_id: str, status: JobStatus, was: str | None, changed_at: str | None
) -> None:
    """The vendors' combined state becomes the job's once every target was sent.

    Before that the job's state is its run's (submitting, interrupted, incomplete): a job
    with targets left for `submit --resume` never looks finished in `jobs`. ``changed_at``:
    when the job's row last changed as ``was`` was read.
    """
    if was == JobState.CREATED:
        return  # its input is still being read, or never was to its end: its run says
    if not status.not_sent:
        ws.journal.set_state(job_id, status.state)
    elif status.state == JobState.INCOMPLETE and was not in _RESUMABLE:
        ws.journal.set_state(job_id, JobState.INCOMPLETE)  # a vendor state recorded earlier
    elif (
        status.state == JobState.INCOMPLETE
        and was == JobState.SUBMITTING
        # A run that is gone (killed): no process sent the job when it was asked about. A
        # --resume may have begun since (the vendors were asked meanwhile): asked again,
        # and the row changed only if nothing wrote to it since it was read.
        and JobLock(ws.state_dir, job_id).holder() is None
    ):
        ws.journal.set_state(job_id, JobState.INCOMPLETE, unchanged_since=changed_at)


def _recorded_statuses(ws: Workspace, job_id: str | None, alias: str) -> list[TaskStatus] | None:
    """The task states a finished job's last `status` recorded, where the vendor cannot be
    asked here (no config, no secrets); None unless the job and each of its tasks finished.

    A task that ended partial counts neither as succeeded nor failed: which of its URLs
    failed is the vendor's to say.
    """
    if job_id is None:
        return None
    states = {str(s): s for s in State}
    job_state = states.get(ws.journal.job(job_id).state)
    if job_state is None or not job_state.finished:
        return None
    tasks = [t for t in ws.journal.tasks(job_id) if t.provider == alias]
    if not tasks or any(t.state not in states for t in tasks):
        return None
    statuses = []
    for task in tasks:
        task_state = states[str(task.state)]
        statuses.append(
            TaskStatus(
                task_id=task.task_id,
                state=task_state,
                raw_state=task.raw_state,
                total=task.urls,
                succeeded=task.urls if task_state == State.SUCCEEDED else 0,
                failed=task.urls if task_state in _ENDED_BADLY else 0,
                details={"source": "journal"},
            )
        )
    return statuses


_ENDED_BADLY = frozenset({State.FAILED, State.CANCELLED, State.TIMED_OUT})


def _exit_code_of(code: str) -> ExitCode:
    """The exit code of an error by its JSON `code` (the class that has it)."""
    pending: list[type[PrewarmError]] = [PrewarmError]
    while pending:
        cls = pending.pop()
        if cls.code == code:
            return cls.exit_code
        pending.extend(cls.__subclasses__())
    return ExitCode.FAILED


# The piped errors of a submit whose job this journal holds that `status -` reads the job of.
_WAITED_AGAIN = frozenset({"wait_timeout", "interrupted"})


class PipedError(PrewarmError):
    """The error of a failed submit piped into `status -`, passed on: the same message,
    code and exit code."""

    def __init__(self, error: Mapping[str, Any]) -> None:
        def text(key: str) -> str | None:
            value = error.get(key)
            return str(value) if value is not None else None

        super().__init__(
            text("message") or "the piped submit failed",
            hint=text("hint"),
            provider=text("provider"),
            request_id=text("request_id"),
            job_id=text("job_id"),
        )
        self.code = text("code") or PrewarmError.code
        self.exit_code = _exit_code_of(self.code)

    def __str__(self) -> str:
        return self.message  # as the submit printed it, request id included


def _vendor_statuses(
    ws: Workspace,
    session: ProviderSession,
    alias: str,
    task_ids: Sequence[str],
    job_id: str | None,
    *,
    keep_urls: bool,
) -> list[TaskStatus]:
    """The vendor's states of these tasks, asked ``status_tasks`` at a time.

    Within a journal job (``job_id``) each task is narrowed to the URLs the job accepted into
    it (a task none of whose URLs the job has accepted keeps none: the journal counts them,
    rejected or failed), and its per-URL results are let go once counted: all of them, or
    with ``keep_urls`` (--verify's claims) those whose state is not the task's. So, without
    --verify, a job's million per-URL results are never all held at once.
    A task not found is said as one call for all of them would say it: a vendor may name
    every task it no longer keeps.
    """
    provider = session.provider
    done_in_submit = job_id is not None and provider.finished_in_submit
    fetch = provider.fetch_counts if done_in_submit else provider.fetch_status
    statuses: list[TaskStatus] = []
    not_found: list[tuple[Sequence[str], NotFoundError]] = []
    for group in _task_groups(ws, job_id, alias, task_ids, provider.status_tasks):
        try:
            asked = session.call(fetch, group)
        except NotFoundError as exc:
            not_found.append((group, exc))  # the other groups may hold more
            continue
        if done_in_submit:
            assert job_id is not None
            n_accepted = ws.journal.accepted_counts(job_id, alias, group)
            asked = [_accepted_done(s, n_accepted.get(s.task_id, 0)) for s in asked]
        elif job_id is not None and any(s.urls for s in asked):
            listed = [s.task_id for s in asked if s.urls]
            urls = ws.journal.accepted_urls(job_id, alias, listed)
            narrowed = (_only_urls(s, urls.get(s.task_id, set())) for s in asked)
            asked = [_unlike_task(s) if keep_urls else replace(s, urls=()) for s in narrowed]
        statuses.extend(asked)
    if len(not_found) == 1:
        raise not_found[0][1]
    if not_found:  # one error naming all of them, as the vendor words it
        session.call(fetch, [t for group, _ in not_found for t in group])
        raise not_found[0][1]
    return statuses


def _accepted_done(status: TaskStatus, n_accepted: int) -> TaskStatus:
    """A task of a provider finished in submit, counted from the journal: each URL accepted
    into it was done there (direct warming: every request OK), and its others the journal
    counts (refused, failed), whichever run answered them last. Its state says how the run
    went for the job: succeeded where it accepted any URL, failed where it accepted none and
    refused or failed some, cancelled where it was stopped before any answer; the part's
    state comes from the journal (_provider_status)."""
    state = State.SUCCEEDED
    if not n_accepted and status.state in (State.FAILED, State.PARTIAL):
        state = State.FAILED
    elif not n_accepted and status.state == State.CANCELLED:
        state = State.CANCELLED  # stopped before its first answer
    return replace(
        status,
        state=state,
        total=n_accepted,
        succeeded=n_accepted,
        failed=0,
        in_progress=0,
        pending=0,
        urls=(),
    )


def _unlike_task(status: TaskStatus) -> TaskStatus:
    """The task with only the URLs whose state is not its own in ``urls`` (its counts kept);
    a URL listed twice, by its last entry (as url_claims takes it)."""
    last = {u.url: u for u in status.urls}
    return replace(status, urls=tuple(u for u in last.values() if u.state != status.state))


STATUS_URLS = 50_000  # URLs a group of tasks asked about at once may hold, as the journal counts


def _task_groups(
    ws: Workspace,
    job_id: str | None,
    alias: str,
    task_ids: Sequence[str],
    max_tasks: int | None,
) -> Iterator[Sequence[str]]:
    """The tasks in groups of at most ``max_tasks`` (None: one group) and, within a journal
    job, of at most STATUS_URLS URLs as it counts them (an AWS task may hold 10,000), a task
    larger than that in a group of its own."""
    if max_tasks is None:
        yield task_ids
        return
    tasks = ws.journal.tasks(job_id) if job_id else []
    sizes = {t.task_id: t.urls for t in tasks if t.provider == alias}
    group: list[str] = []
    n_urls = 0
    for task_id in task_ids:
        size = sizes.get(task_id, 0)
        if group and (len(group) >= max_tasks or n_urls + size > STATUS_URLS):
            yield group
            group, n_urls = [], 0
        group.append(task_id)
        n_urls += size
    if group:
        yield group


def _only_urls(status: TaskStatus, urls: set[str] | None) -> TaskStatus:
    """A vendor task narrowed to this job's URLs (a task found by lookup may hold others),
    each named as the job has it."""
    if not status.urls or urls is None or {u.url for u in status.urls} <= urls:
        return status
    from prewarm_cli.inputs import match_key

    # Vendors may list a URL in an encoded form (IDNA host, percent-encoded path).
    ours: dict[str, str] = {}
    for url in sorted(urls):  # two of the job's URLs with one key: the same one each time
        ours.setdefault(match_key(url), url)
    kept = tuple(
        replace(u, url=ours[key]) for u in status.urls if (key := match_key(u.url)) in ours
    )
    by_state = {state: sum(1 for u in kept if u.state == state) for state in State}
    failed = by_state[State.FAILED] + by_state[State.TIMED_OUT] + by_state[State.CANCELLED]
    state = status.state
    if kept and state.finished and state not in (State.CANCELLED, State.TIMED_OUT):
        if not failed:
            state = State.SUCCEEDED
        elif not by_state[State.SUCCEEDED]:
            state = State.FAILED
        else:
            state = State.PARTIAL
    return replace(
        status,
        state=state,
        total=len(kept),
        succeeded=by_state[State.SUCCEEDED],
        failed=failed,
        in_progress=by_state[State.RUNNING],
        pending=by_state[State.PENDING],
        urls=kept,
    )


def status_with_claims(
    ws: Workspace, ref: JobRef, *, with_claims: bool = True
) -> tuple[JobStatus, Claims | None]:
    """job_status(), also returning each URL's vendor state (for --verify; None unless
    ``with_claims``)."""
    status, statuses = _job_status(ws, ref, with_claims=with_claims)
    _say_resume(ws, status, ref)
    return status, url_claims(ws, ref, statuses) if with_claims else None


def url_claims(ws: Workspace, ref: JobRef, statuses: Mapping[str, list[TaskStatus]]) -> Claims:
    """What the vendors say about each URL: its own state where given, else its task's
    (within a journal job, a task lists only the URLs whose state is not its own)."""
    return Claims(ws.journal, ref.job_id, statuses)


def _provider_status(
    alias: str,
    statuses: Sequence[TaskStatus],
    counts: jr.Counts | None,
    details: Mapping[str, Any],
    *,
    sending: bool,
    done_in_submit: bool = False,
    states_from_journal: bool = False,
) -> ProviderStatus:
    """One provider's part; ``sending``: a live process is still sending the job;
    ``done_in_submit``: with no task statuses, its accepted targets are done (direct);
    ``states_from_journal``: the tasks' states are not combined, the journal's counts say how
    the part ended (direct: a run that warmed none of the job's URLs fails nothing of it)."""
    succeeded = sum(s.succeeded for s in statuses)
    failed = sum(s.failed for s in statuses)
    in_progress = sum(s.in_progress for s in statuses)
    pending = sum(s.pending for s in statuses)
    vendor_total = sum(s.total for s in statuses)
    if done_in_submit and counts is not None:
        succeeded += counts[jr.ACCEPTED]
        vendor_total += counts[jr.ACCEPTED]
    not_sent = deferred = 0
    if counts is not None:
        # Targets the vendor never took count too: rejected and failed at submit are
        # failures; deferred and unknown are not sent (yet).
        failed += counts[jr.REJECTED] + counts[jr.FAILED]
        not_sent = counts[jr.DEFERRED] + counts[jr.UNSENT] + counts[jr.UNKNOWN] + counts[jr.SENDING]
        deferred = counts[jr.DEFERRED]
        total = counts.total
    else:
        total = vendor_total
    states = [s.state for s in statuses] or ([State.SUCCEEDED] if done_in_submit else [])
    if states_from_journal:
        states = [State.SUCCEEDED]
    vendor_state = combine_states(states) if states else State.PENDING
    if counts is not None:
        # A vendor that counts fewer URLs than were accepted (not yet listed, or an estimate)
        # leaves them pending while it works or where it succeeded; where it finished
        # otherwise (cancelled, failed, timed out, partial), they failed with it: a finished
        # job has nothing pending for ever.
        shortfall = max(0, counts[jr.ACCEPTED] - vendor_total)
        if vendor_state.finished and vendor_state != State.SUCCEEDED:
            failed += shortfall
        else:
            pending += shortfall
    state = str(vendor_state)
    if not_sent:
        if vendor_state.finished or not states:
            # The vendor is done with what it got: the rest waits for the process sending
            # it or, with none, for `submit --resume`.
            if sending:
                state = str(State.RUNNING if states else State.PENDING)
            else:
                state = str(JobState.INCOMPLETE)
    elif vendor_state == State.SUCCEEDED and failed:
        # The vendor finished its part, but not every target got there; where none was
        # accepted (a direct run that warmed none), the job failed.
        none_accepted = counts is not None and not counts[jr.ACCEPTED]
        state = str(State.FAILED if none_accepted else State.PARTIAL)
    elif not statuses and counts is not None and counts.total and not counts[jr.ACCEPTED]:
        state = str(State.FAILED)
    raws = {s.raw_state for s in statuses}
    return ProviderStatus(
        provider=alias,
        state=state,
        raw_state=raws.pop() if len(raws) == 1 else None,
        total=total,
        succeeded=succeeded,
        failed=failed,
        in_progress=in_progress,
        pending=pending,
        not_sent=not_sent,
        tasks=tuple(s.to_dict() for s in statuses),
        details=dict(details),
        deferred=deferred,
    )


def settled(status: JobStatus) -> bool:
    """Whether waiting is over: the job finished, or it is incomplete and the vendors are
    done with what they got (the rest waits for `submit --resume`, not for time)."""
    if status.state == JobState.INCOMPLETE:
        return all(p.state not in (State.PENDING, State.RUNNING) for p in status.providers.values())
    return State(status.state).finished


def _say_resume(ws: Workspace, status: JobStatus, ref: JobRef) -> None:
    if status.job_id is None:
        return
    if status.state == JobState.FAILED and ws.journal.job_state(status.job_id) == JobState.CREATED:
        ws.out.info(
            f"job {status.job_id} never finished reading its input and no process is working"
            " on it: submit the URLs again"
        )
        return
    if not status.not_sent:
        return
    if status.state != JobState.INCOMPLETE:
        return
    left = [f"{status.deferred} deferred"] if status.deferred else []
    if status.not_sent > status.deferred:
        left.append(f"{status.not_sent - status.deferred} unsent or of unknown outcome")
    job = status.job_id
    # A piped job's journal is on another machine: its counts are the JSON's.
    counts = ws.journal.counts(job) if ref.piped is None else ref.piped
    forced = _unknown_without_lookup(ws, counts)
    also = (
        f"; the {forced:,} of unknown outcome only with --force, once the vendor's console"
        " shows they were not taken"
        if forced
        else ""
    )
    where = "" if ref.piped is None else f" {ELSEWHERE}"
    ws.out.info(
        f"job {job} is incomplete and no process is sending it"
        f" ({counted(status.not_sent, 'target')} not sent: {', '.join(left)}):"
        f" `prewarm submit --resume {job}` sends them{where}{also}"
    )


# A piped submit JSON's job: only the journal of the machine that submitted it can resume it.
ELSEWHERE = "on the machine that submitted it (its journal is not here)"


def _unknown_without_lookup(ws: Workspace, counts: Mapping[str, jr.Counts]) -> int:
    """Targets of unknown outcome (``counts``: the job's per alias, from the journal or a
    piped submit JSON) at providers that cannot be asked whether they took them (no
    LOOKUP): a --resume leaves those alone unless --force."""
    return sum(
        counted[jr.UNKNOWN]
        for alias, counted in counts.items()
        if counted[jr.UNKNOWN] and Capability.LOOKUP not in _capabilities(ws, alias)
    )


def _capabilities(ws: Workspace, alias: str) -> frozenset[Capability]:
    """The alias's capabilities as configured where it can be built here, else those its
    type declares."""
    try:
        return ws.session(alias).capabilities
    except PrewarmError:
        return ws.declared_capabilities(alias)


def status_exit(state: str) -> ExitCode:
    """A job's exit code from its state: 0 while it runs, else as it ended (DESIGN.md §6)."""
    return exit_for([state])


def poll_interval(ws: Workspace, ref: JobRef, wanted: float | None) -> float:
    """The wait between polls: the user's choice, never below a provider's polling budget."""
    polled = [alias for alias, task_ids in ref.tasks.items() if task_ids]
    floor = max((ws.session(a).limits().poll_interval for a in polled), default=10.0)
    configured = ws.config.defaults.get("poll_interval")
    interval = wanted if wanted is not None else (configured or floor)
    if interval < floor and not ws.force:
        ws.out.warn(
            f"--interval {interval:g}s is below the provider's polling budget; using {floor:g}s"
        )
        return floor
    return float(interval)


def wait_with_claims(
    ws: Workspace,
    ref: JobRef,
    *,
    interval: float | None,
    timeout: float | None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    with_claims: bool = True,
) -> tuple[JobStatus, Claims | None]:
    """Polls until the job is finished or --wait-timeout expires; also each URL's final state
    (with_claims, for --verify). A poll a vendor failed (5xx, no connection, a throttle; each
    request retried within the retry policy already) is tried again at the next one while the
    wait has time left, and at most _FAILED_POLLS times in a row without a --wait-timeout."""
    every = poll_interval(ws, ref, interval)
    if timeout is None:
        timeout = ws.config.defaults.get("wait_timeout")
    deadline = clock() + timeout if timeout else None
    n_failed = 0  # polls in a row that a vendor failed
    with ws.out.progress(None, "waiting") as progress:
        while True:
            try:
                status, statuses = _job_status(ws, ref, with_claims=with_claims)
            except RetryableError as exc:
                n_failed += 1
                pause = every if deadline is None else min(every, deadline - clock())
                if pause <= 0 or (deadline is None and n_failed >= _FAILED_POLLS):
                    raise
                ws.out.warn(f"a poll failed: {exc}; polling again in {round(pause, 1):g} s")
                sleep(pause)
                continue
            n_failed = 0
            progress.update(
                completed=status.succeeded + status.failed,
                total=status.total,
                description=status.state,
            )
            if settled(status):
                progress.note(_poll_line(status))
                _say_resume(ws, status, ref)
                return status, url_claims(ws, ref, statuses) if with_claims else None
            if deadline is None:
                progress.note(_poll_line(status, every))
                sleep(every)
                continue
            left = deadline - clock()
            if left <= 0:
                progress.note(_poll_line(status))
                raise _wait_timeout(ref, status, timeout)
            progress.note(_poll_line(status, min(every, left)))
            sleep(min(every, left))


_FAILED_POLLS = 5  # polls in a row a vendor may fail in a wait without --wait-timeout
_AGAIN = {"--wait": "waits again", "--verify": "verifies again"}


def wait_again(ref: JobRef, option: str = "--wait") -> tuple[str, str]:
    """The job as a user names it (its id, or its ALIAS:TASK_IDs), and the hint that waits
    for it (``--wait``), or verifies it (``--verify``), again."""
    job = ref.job_id or ",".join(f"{a}:{','.join(t)}" for a, t in ref.tasks.items() if t)
    if ref.piped is not None:
        return job, f"pipe the submit's JSON to `prewarm status {option} -` again"
    return job, f"`prewarm status {option} {job}` {_AGAIN[option]}"


def _wait_timeout(ref: JobRef, status: JobStatus, timeout: float | None) -> WaitTimeout:
    """--wait-timeout expired. Where targets are deferred too, that comes first (DESIGN §6: 5
    before 6), and the hint is the --resume that sends them."""
    job, again = wait_again(ref)
    timed_out = WaitTimeout(
        f"job {job} is still {status.state} after {timeout or 0:g}s", hint=again
    )
    timed_out.job_id = ref.job_id
    if status.deferred and ref.job_id:
        timed_out.message += f", and {status.deferred} of its targets are deferred"
        timed_out.args = (timed_out.message,)
        timed_out.hint = f"`prewarm submit --resume {ref.job_id}` sends them later" + (
            f" {ELSEWHERE}" if ref.piped is not None else ""
        )
        timed_out.exit_code = ExitCode.QUOTA
    return timed_out


def _poll_line(status: JobStatus, next_poll: float | None = None) -> str:
    """One line per poll for a log without a progress bar (CI): state, counts, next poll."""
    not_sent = f", {status.not_sent} not sent" if status.not_sent else ""
    line = (
        f"job {status.job_id or '(vendor tasks)'}: {status.state}, "
        f"{status.succeeded} succeeded, {status.failed} failed, "
        f"{status.in_progress} in progress, {status.pending} pending{not_sent} of {status.total}"
    )
    return line if next_poll is None else f"{line}; next poll in {round(next_poll, 1):g} s"
