"""`status` of a large job asks the vendor about a group of tasks at a time (by tasks, and by
the URLs the journal counts in them), narrows each group to the job's URLs and lets their
per-URL results go once counted: the same counts, states and --verify claims as one call for
every task, with only a group's results held at once."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from fakes.generic import FakeCdn
from helpers import wait_for

from prewarm_cli import config as config_mod
from prewarm_cli.engine import Claims, Workspace
from prewarm_cli.engine import status as status_mod
from prewarm_cli.output import Output
from prewarm_cli.plugin import Provider, State, TaskStatus

BATCH = 4


@pytest.fixture
def job(
    run_cli: Callable[..., Any],
    write_config: Callable[[str], Path],
    cli_env: dict[str, str],
    fake_cdn: FakeCdn,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[Path, str]:
    """A finished job of 8 tasks: URLs the vendor warms, URLs it fails, and URLs it refused
    at submit (which its tasks do not hold); the config that made it."""
    cli_env["FAKE_API_KEY"] = fake_cdn.api_key
    monkeypatch.setenv("FAKE_API_KEY", fake_cdn.api_key)  # for the in-process workspaces
    config = write_config(
        f'[defaults]\nprovider = "fake"\n\n[providers.fake]\ntype = "fake"\n'
        f'endpoint = "{fake_cdn.url}"\napi_key = "env:FAKE_API_KEY"\nbatch_size = {BATCH}\n'
    )
    names = [("fail" if i % 5 == 1 else "reject" if i % 7 == 3 else "ok") for i in range(34)]
    listing = "".join(f"https://static.example.com/{n}-{i:02d}.js\n" for i, n in enumerate(names))
    r = run_cli("submit", "-o", "json", "-i", "-", input=listing)
    assert r.returncode in (0, 4), r.stderr
    submitted = json.loads(r.stdout)
    task_ids = [t["task_id"] for t in submitted["tasks"]]
    assert len(task_ids) >= 8, submitted["tasks"]
    wait_for(lambda: all(fake_cdn.task_state(t) == "DONE" for t in task_ids), 30)
    return config, submitted["job_id"]


def status_of(
    config: Path, job_id: str, *, with_claims: bool = True
) -> tuple[dict[str, Any], list[tuple[str, str]], dict[str, list[TaskStatus]]]:
    """The job's status, its claims in order (for --verify), and the task statuses kept."""
    ws = Workspace(config_mod.load_config(str(config)), Output("json", stderr=io.StringIO()))
    try:
        ref = status_mod.journal_ref(ws, job_id)
        status, kept = status_mod._job_status(ws, ref, with_claims=with_claims)
        claims = status_mod.url_claims(ws, ref, kept) if with_claims else {}
    finally:
        ws.close()
    return status.to_dict(), list(claims.items()), kept


def spy(monkeypatch: pytest.MonkeyPatch, cls: type, name: str) -> list[list[str]]:
    """The task ids of each call of ``cls.name`` (its second argument)."""
    calls: list[list[str]] = []
    real = getattr(cls, name)

    def called(self: Any, *args: Any) -> Any:
        task_ids: Sequence[str] = args[-1]
        calls.append(list(task_ids))
        return real(self, *args)

    monkeypatch.setattr(cls, name, called)
    return calls


def fake_provider_class() -> type:
    from prewarm_fake import FakeProvider

    return FakeProvider


@pytest.fixture
def groups_of_three(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Three tasks at a time, and at most two tasks' URLs (the journal counts them)."""
    monkeypatch.setattr(Provider, "status_tasks", 3)
    monkeypatch.setattr(status_mod, "STATUS_URLS", 2 * BATCH)
    yield


def test_groups_give_the_counts_states_and_claims_of_one_call(
    job: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config, job_id = job
    monkeypatch.setattr(Provider, "status_tasks", None)
    whole, whole_claims, _ = status_of(config, job_id)
    monkeypatch.setattr(Provider, "status_tasks", 3)
    monkeypatch.setattr(status_mod, "STATUS_URLS", 2 * BATCH)
    asked = spy(monkeypatch, fake_provider_class(), "fetch_status")
    grouped, grouped_claims, _ = status_of(config, job_id)
    assert len(asked) > 3 and all(len(group) <= 2 for group in asked), asked
    assert grouped == whole
    assert grouped_claims == whole_claims  # in input order, each URL once
    # What the job holds: failed URLs and the refused ones counted, the refused never claimed.
    assert whole["failed"] > 0 and whole["succeeded"] > 0
    claimed = dict(whole_claims)
    assert {url for url in claimed if "reject" in url} == set()
    # Each URL its own state, where its task's (partial) is not its own.
    assert {url for url, state in claimed.items() if state == "failed"} == {
        url for url in claimed if "/fail-" in url
    }
    assert {state for url, state in claimed.items() if "/fail-" not in url} == {"succeeded"}


def test_each_group_reads_only_its_tasks_urls_and_keeps_only_the_odd_ones(
    job: tuple[Path, str], monkeypatch: pytest.MonkeyPatch, groups_of_three: None
) -> None:
    from prewarm_cli.journal import Journal

    config, job_id = job
    asked = spy(monkeypatch, fake_provider_class(), "fetch_status")
    read = spy(monkeypatch, Journal, "accepted_urls")
    with_verify, claims, kept = status_of(config, job_id)
    # The journal's URLs are read a group at a time, for that group's tasks only.
    assert len(read) == len(asked) > 1
    assert all(set(r) <= set(a) for r, a in zip(read, asked, strict=True)), (read, asked)
    # Counted, a task keeps only the URLs whose state is not its own: a partial task its
    # failed ones and warmed ones (each differs from "partial"), a succeeded task none.
    tasks = kept["fake"]
    assert {s.state for s in tasks} >= {State.SUCCEEDED, State.PARTIAL}
    for task in tasks:
        assert all(u.state != task.state for u in task.urls), task
        if task.state == State.SUCCEEDED:
            assert task.urls == () and task.succeeded == task.total > 0
    assert len(claims) == sum(s.total for s in tasks)
    # Without --verify, no per-URL result is kept at all: the same counts.
    without, _, bare = status_of(config, job_id, with_claims=False)
    assert all(task.urls == () for task in bare["fake"])
    assert without == with_verify


@pytest.mark.parametrize("n_gone", [1, 2])
def test_a_task_not_found_is_said_as_one_call_for_all_would_say_it(
    job: tuple[Path, str], monkeypatch: pytest.MonkeyPatch, groups_of_three: None, n_gone: int
) -> None:
    """A vendor that names every task it no longer keeps (Qiniu, after 7 days): the error
    names those of every group. Asked again, only the tasks of the groups that had one."""
    from prewarm_cli.errors import NotFoundError

    config, job_id = job
    cls = fake_provider_class()
    real = cls.fetch_status
    gone: list[str] = []
    asked: list[list[str]] = []

    def fetch_status(self: Any, task_ids: Sequence[str]) -> list[TaskStatus]:
        asked.append(list(task_ids))
        missing = [t for t in task_ids if t in gone]
        if missing:
            raise NotFoundError("no longer kept: " + ", ".join(missing))
        return real(self, task_ids)  # type: ignore[no-any-return]

    monkeypatch.setattr(cls, "fetch_status", fetch_status)
    ws = Workspace(config_mod.load_config(str(config)), Output("json", stderr=io.StringIO()))
    try:
        ref = status_mod.journal_ref(ws, job_id)
        task_ids = ref.tasks["fake"]
        gone[:] = [task_ids[0], task_ids[-1]][:n_gone]
        with pytest.raises(NotFoundError) as caught:
            status_mod._job_status(ws, ref)
    finally:
        ws.close()
    assert str(caught.value) == "no longer kept: " + ", ".join(gone)
    groups = asked[: len(asked) - (n_gone - 1)]
    assert [t for group in groups for t in group] == task_ids  # every group asked once
    if n_gone == 2:  # then the two groups that had one, together
        assert asked[-1] == [*groups[0], *groups[-1]]


def test_a_url_listed_twice_is_claimed_by_its_last_entry() -> None:
    from prewarm_cli.plugin import UrlStatus

    running, done = (
        UrlStatus("https://a.test/x", State.RUNNING),
        UrlStatus("https://a.test/x", State.SUCCEEDED),
    )
    task = TaskStatus("t", State.RUNNING, "RUNNING", total=1, urls=(done, running))
    assert status_mod._unlike_task(task).urls == ()  # its claim: the task's, running
    task = TaskStatus("t", State.RUNNING, "RUNNING", total=1, urls=(running, done))
    assert status_mod._unlike_task(task).urls == (done,)


def test_one_task_larger_than_the_bound_is_a_group_of_its_own(
    job: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config, job_id = job
    monkeypatch.setattr(Provider, "status_tasks", 100)
    monkeypatch.setattr(status_mod, "STATUS_URLS", 1)  # every task holds more
    asked = spy(monkeypatch, fake_provider_class(), "fetch_status")
    status_of(config, job_id)
    assert asked and all(len(group) == 1 for group in asked), asked


def test_a_provider_whose_tasks_depend_on_each_other_is_asked_once(
    job: tuple[Path, str], monkeypatch: pytest.MonkeyPatch, groups_of_three: None
) -> None:
    """direct warming counts a request in the latest run that answered it: all at once."""
    from prewarm_direct.provider import DirectProvider

    assert DirectProvider.status_tasks is None
    config, job_id = job
    monkeypatch.setattr(fake_provider_class(), "status_tasks", None)
    asked = spy(monkeypatch, fake_provider_class(), "fetch_status")
    status_of(config, job_id)
    assert len(asked) == 1 and len(asked[0]) >= 8


def test_claims_are_read_from_the_journal_a_url_at_a_time(tmp_path: Path) -> None:
    """--verify's claims of a job of 60,000 URLs on two providers: each URL's as one call for
    all would give them (its own state where listed, else its task's; succeeded only where
    both say so), read as they are asked, never all held."""
    import tracemalloc

    from prewarm_cli import journal as jr
    from prewarm_cli.plugin import BatchResult, UrlStatus

    journal = jr.Journal(tmp_path / "journal.sqlite3")
    try:
        urls = [f"https://a.test/{i:05d}.js" for i in range(60_000)]
        job = journal.create_job(["a", "b"], {})
        journal.add_targets(
            job, [(i, u, ["a", "b"] if i < 3 else ["a"]) for i, u in enumerate(urls)]
        )
        for alias, task_id in (("a", "t1"), ("b", "t2")):
            batch = journal.claim_batch(job, alias, len(urls))
            assert batch is not None
            journal.record_result(job, batch, BatchResult(task_id, tuple(batch.urls)))
        statuses = {
            "a": [TaskStatus("t1", State.SUCCEEDED, "DONE", total=60_000, succeeded=60_000)],
            "b": [
                TaskStatus(
                    "t2",
                    State.RUNNING,
                    "RUNNING",
                    total=3,
                    urls=(UrlStatus(urls[1], State.FAILED),),
                )
            ],
        }
        claims = Claims(journal, job, statuses)
        assert [claims.get(u) for u in urls[:4]] == ["running", "failed", "running", "succeeded"]
        assert claims.get("https://a.test/elsewhere.js") is None
        # Those a provider that names its own probes accepted are left to it.
        assert list(claims.urls(without={"b"}))[:2] == urls[3:5]
        assert list(claims.urls(without={"a", "b"})) == []
        tracemalloc.start()
        try:
            n_claims = sum(1 for _ in claims.items())
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert n_claims == 60_000
        # Held as a dict of URLs, they took several MB.
        assert peak < 2**20, f"{peak} bytes"
    finally:
        journal.close()
