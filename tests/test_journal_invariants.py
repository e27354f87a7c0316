"""The journal driven by random sequences of every call the engine makes on it.

After each step: no URL is lost (every target is still there) and no unsent target names a
batch (the claim finds unsent targets by their NULL batch: one that named a batch would never be
sent). An accepted target stays accepted (no URL accepted twice). After a resume: every
target sent and not answered is in a batch the engine looks up again, so nothing is left
stranded.
"""

from __future__ import annotations

from typing import Any

import pytest

from prewarm_cli import journal as jr
from prewarm_cli.plugin import BatchResult

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

POOL = [f"u{i}" for i in range(6)]
JOBS = ("job-0", "job-1")
ALIASES = ("a", "b")
KEYS = {(job, alias, url) for job in JOBS for alias in ALIASES for url in POOL}

url_st = st.sampled_from([*POOL, "elsewhere"])
reasons_st = st.dictionaries(url_st, st.sampled_from(["r1", "r2"]), max_size=4)
task_st = st.sampled_from([None, "t1", "t2"])
job_st, alias_st, batch_st = st.integers(0, 1), st.integers(0, 1), st.integers(0, 30)
results_st = st.fixed_dictionaries(
    {
        "task_id": task_st,
        "all": st.booleans(),  # the common answer: every URL of the batch
        "accepted": st.lists(url_st, max_size=5),
        "rejected": reasons_st,
        "resend": st.lists(url_st, max_size=5),
        "failed": reasons_st,
        "task_ids": st.dictionaries(url_st, task_st, max_size=3),
    }
)
OUTCOMES_SET = st.sampled_from([jr.REJECTED, jr.FAILED, jr.DEFERRED, jr.ACCEPTED, jr.UNSENT])
op_st = st.one_of(
    st.tuples(
        st.just("claim"), job_st, alias_st, st.integers(0, 5), st.none() | st.integers(0, 20)
    ),
    st.tuples(st.just("record"), batch_st, results_st),
    st.tuples(
        st.just("release"),
        batch_st,
        st.sampled_from([jr.UNSENT, jr.DEFERRED, jr.FAILED, jr.UNKNOWN]),
        st.booleans(),
    ),
    st.tuples(st.just("unknown"), batch_st),
    st.tuples(st.just("split"), batch_st, st.lists(st.integers(0, 7), max_size=4)),
    st.tuples(
        st.just("found"),
        batch_st,
        st.dictionaries(url_st, st.sampled_from(["t1", "t3"]), max_size=4),
    ),
    st.tuples(st.just("resume"), job_st),
    st.tuples(st.just("defer_unsent"), job_st, alias_st),
    st.tuples(st.just("defer_beyond"), job_st, alias_st, st.integers(-1, 5)),
    st.tuples(st.just("set_outcome"), job_st, alias_st, st.lists(url_st, max_size=3), OUTCOMES_SET),
    st.tuples(st.just("unknown_batches"), job_st, alias_st),
)


class Driver:
    """A journal with two jobs of two providers each, and every batch handed out so far
    (also those a later split or answer made stale, as a slow worker would hold them)."""

    def __init__(self) -> None:
        self.journal = jr.Journal(":memory:")
        self.batches: list[tuple[str, jr.Batch]] = []
        for job in JOBS:
            self.journal.create_job(list(ALIASES), {}, job)
            # input order is not URL order
            self.journal.add_targets(job, [(10 - i, u, list(ALIASES)) for i, u in enumerate(POOL)])

    def pick(self, i: int) -> tuple[str, jr.Batch] | None:
        return self.batches[i % len(self.batches)] if self.batches else None

    def step(self, op: tuple[Any, ...]) -> None:
        j, kind = self.journal, op[0]
        if kind == "claim":
            job = JOBS[op[1]]
            batch = j.claim_batch(job, ALIASES[op[2]], op[3], op[4])
            if batch is not None:
                self.batches.append((job, batch))
        elif kind in ("record", "release", "unknown", "split", "found"):
            picked = self.pick(op[1])
            if picked is None:
                return
            job, batch = picked
            if kind == "record":
                r = op[2]
                accepted = tuple(batch.urls) + tuple(r["accepted"]) if r["all"] else r["accepted"]
                j.record_result(
                    job,
                    batch,
                    BatchResult(
                        task_id=r["task_id"],
                        accepted=tuple(accepted),
                        rejected=r["rejected"],
                        resend=tuple(r["resend"]),
                        failed=r["failed"],
                        task_ids=r["task_ids"],
                    ),
                )
            elif kind == "release":
                j.release_batch(job, batch, op[2], "why", transient=op[3])
            elif kind == "unknown":
                j.mark_unknown(batch, "timed out")
            elif kind == "split" and batch.urls:
                part = sorted({batch.urls[k % len(batch.urls)] for k in op[2]})
                self.batches += [(job, b) for b in j.split_batch(job, batch, part)]
            elif kind == "found":
                j.record_found(job, batch, op[2])
        elif kind == "resume":
            j.prepare_resume(JOBS[op[1]])
        elif kind == "defer_unsent":
            j.defer_unsent(JOBS[op[1]], ALIASES[op[2]], "quota")
        elif kind == "defer_beyond":
            j.defer_beyond(JOBS[op[1]], ALIASES[op[2]], op[3], "budget")
        elif kind == "set_outcome":
            j.set_outcome(JOBS[op[1]], ALIASES[op[2]], op[3], op[4], "set")
        elif kind == "unknown_batches":
            job, alias = JOBS[op[1]], ALIASES[op[2]]
            self.batches += [(job, b) for b in j.unknown_batches(job, alias)]

    def targets(self) -> list[tuple[Any, ...]]:
        return [
            tuple(r)
            for r in self.journal._db.execute(
                "SELECT job_id, provider, url, outcome, batch_id FROM targets"
            )
        ]


@settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(op_st, max_size=30))
def test_no_url_is_lost_and_no_unsent_target_names_a_batch(ops: list[tuple[Any, ...]]) -> None:
    driver = Driver()
    for op in ops:
        driver.step(op)
        rows = driver.targets()
        assert {r[:3] for r in rows} == KEYS and len(rows) == len(KEYS), op
        assert not [r for r in rows if r[3] == jr.UNSENT and r[4] is not None], op


@settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(op_st, max_size=30))
def test_an_accepted_target_stays_accepted(ops: list[tuple[Any, ...]]) -> None:
    """No URL accepted twice: whatever answers, releases, splits or resumes come after (a
    slow worker's stale batch among them), an accepted target is never sent again. Only
    set_outcome, which the engine calls on targets not sent, may set one otherwise."""
    driver = Driver()
    for op in ops:
        before = {r[:3] for r in driver.targets() if r[3] == jr.ACCEPTED}
        driver.step(op)
        if op[0] == "set_outcome":
            continue
        after = {r[:3] for r in driver.targets() if r[3] == jr.ACCEPTED}
        assert before <= after, (op, before - after)
    for job in JOBS:  # and a resume sends none of them
        for alias in ALIASES:
            accepted = {
                r[2] for r in driver.targets() if r[:2] == (job, alias) and r[3] == jr.ACCEPTED
            }
            driver.journal.prepare_resume(job)
            claimed = driver.journal.claim_batch(job, alias, 100)
            assert not (set(claimed.urls) & accepted if claimed else set())


@settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(op_st, max_size=30))
def test_after_a_resume_every_target_sent_unanswered_is_looked_up(
    ops: list[tuple[Any, ...]],
) -> None:
    driver = Driver()
    for op in ops:
        driver.step(op)
    for job in JOBS:
        driver.journal.prepare_resume(job)
        for alias in ALIASES:
            listed = {u for b in driver.journal.unknown_batches(job, alias) for u in b.urls}
            for row in driver.targets():
                if row[:2] == (job, alias) and row[3] in (jr.UNKNOWN, jr.SENDING):
                    assert row[2] in listed, row


def test_a_target_set_back_to_unsent_is_claimed_again() -> None:
    journal = jr.Journal(":memory:")
    journal.create_job(["a"], {}, "job")
    journal.add_targets("job", [(0, "u0", ["a"])])
    assert journal.claim_batch("job", "a", 10) is not None
    journal.set_outcome("job", "a", ["u0"], jr.UNSENT, None)
    again = journal.claim_batch("job", "a", 10)
    assert again is not None and again.urls == ("u0",)


def test_an_answer_for_a_batch_the_journal_does_not_hold_is_refused() -> None:
    journal = jr.Journal(":memory:")
    journal.create_job(["a"], {}, "job")
    journal.add_targets("job", [(0, "u0", ["a"])])
    before = journal.counts("job")
    with pytest.raises(ValueError, match="no batch"):
        journal.record_result(
            "job", jr.Batch(999, "a", ("u0",), "2026-12-06T00:00:00Z"), BatchResult("t", ("u0",))
        )
    assert journal.counts("job") == before and journal.tasks("job") == []
