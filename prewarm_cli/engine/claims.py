"""What the vendors say about each URL of a job: `--verify` sets it beside what a probe saw.

Read from the journal as it is asked, a URL at a time: a job's million URLs are never all
held (only those a vendor lists in a state that is not their task's).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from itertools import groupby
from typing import TYPE_CHECKING

from prewarm_cli.plugin import State, TaskStatus

if TYPE_CHECKING:
    from prewarm_cli.journal import Journal

_SUCCEEDED = str(State.SUCCEEDED)


class Claims:
    """Each URL's claim: its own state where its task lists it, else its task's. A URL on
    several CDNs is ``succeeded`` only when every vendor says so (else the first other state,
    providers in the order of their names within a journal job).

    Within a journal job (``job_id``) the URLs are those the job's providers accepted; for a
    job known by its tasks alone (a submit's JSON from another machine), those the vendors
    list.
    """

    def __init__(
        self,
        journal: Journal,
        job_id: str | None,
        statuses: Mapping[str, Sequence[TaskStatus]],
    ) -> None:
        self._journal, self._job_id = journal, job_id
        self._task_states = {
            alias: {s.task_id: str(s.state) for s in task_statuses}
            for alias, task_statuses in statuses.items()
        }
        self._url_states = {
            alias: {u.url: str(u.state) for s in task_statuses for u in s.urls}
            for alias, task_statuses in statuses.items()
        }
        self._aliases = sorted(statuses) if job_id else list(statuses)

    def get(self, url: str) -> str | None:
        """The URL's claim; None for a URL no vendor of the job holds."""
        claim: str | None = None
        for alias in self._aliases:
            if self._job_id is None:
                state = self._url_states[alias].get(url)
            else:
                task_id = self._journal.accepted_task(self._job_id, alias, url)
                state = None if task_id is None else self._state(alias, url, task_id)
            if state is not None:
                claim = _with(claim, state)
        return claim

    def items(self, without: Collection[str] = ()) -> Iterator[tuple[str, str]]:
        """Each URL with its claim, in input order; not those a provider in ``without``
        accepted (their provider names its own probes)."""
        if self._job_id is None:  # the URLs the vendors list
            named = {u for alias in without for u in self._url_states.get(alias, ())}
            listed = dict.fromkeys(u for states in self._url_states.values() for u in states)
            for url in listed:
                claim = self.get(url)
                if claim is not None and url not in named:
                    yield url, claim
            return
        if all(alias in without for alias in self._aliases):
            return  # each provider names its own probes: none to read
        # Input order, a URL's providers side by side: one pass over the accepted targets.
        rows = self._journal.iter_accepted(self._job_id)
        for url, same in groupby(rows, key=lambda row: str(row["url"])):
            claim, named_elsewhere = None, False
            for row in same:
                alias = row["provider"]
                if alias in self._task_states:
                    named_elsewhere = named_elsewhere or alias in without
                    claim = _with(claim, self._state(alias, url, row["task_id"] or ""))
            if claim is not None and not named_elsewhere:
                yield url, claim

    def urls(self, without: Collection[str] = ()) -> Iterator[str]:
        """``items``' URLs."""
        return (url for url, _ in self.items(without))

    def _state(self, alias: str, url: str, task_id: str) -> str:
        listed = self._url_states[alias].get(url)
        return listed if listed is not None else self._task_states[alias].get(task_id, "pending")


def _with(claim: str | None, state: str) -> str:
    return state if claim is None or claim == _SUCCEEDED else claim
