"""The journal's bulk statements end exactly as the row-by-row ones they stand for.

Each property builds the same journal twice (or against a plain reference) and compares every
stored column but the clocks: record_result's one-statement answer against its by-URL path,
add_targets' JSON insert against one INSERT OR IGNORE per row in input order, claim_batch against
the first unsent targets by seq cut to max_bytes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest

from prewarm_cli import journal as jr
from prewarm_cli.plugin import BatchResult

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

POOL = [f"u{i}" for i in range(8)]
ALIASES = ("a", "b")


def dump(journal: jr.Journal) -> dict[str, list[tuple[Any, ...]]]:
    """Every row, without the timestamps."""
    db = journal._db
    return {
        "targets": [
            tuple(r)
            for r in db.execute(
                "SELECT job_id, provider, url, seq, outcome, batch_id, task_id, reason, transient"
                " FROM targets ORDER BY job_id, provider, url"
            )
        ],
        "batches": [
            tuple(r)
            for r in db.execute(
                "SELECT id, job_id, provider, kind, state, task_id, request_id, error"
                " FROM batches ORDER BY id"
            )
        ],
        "tasks": [
            tuple(r)
            for r in db.execute(
                "SELECT job_id, provider, task_id, kind, urls, state FROM tasks"
                " ORDER BY job_id, provider, task_id"
            )
        ],
        "jobs": [tuple(r) for r in db.execute("SELECT id, state, urls FROM jobs ORDER BY id")],
    }


# --- record_result ---

urls_st = st.lists(st.sampled_from([*POOL, "elsewhere"]), max_size=10)
reasons_st = st.dictionaries(st.sampled_from([*POOL, "elsewhere"]), st.sampled_from(["r1", "r2"]))
task_st = st.sampled_from([None, "", "t1", "t2"])


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "first": draw(st.integers(1, 8)),
        "second": draw(st.integers(0, 4)),
        "split": draw(st.none() | st.lists(st.sampled_from(POOL), max_size=4)),
        "answer": draw(st.sampled_from(["whole", "part", "rest", "stale", "second"])),
        "unknown": draw(st.booleans()),
        "decided": draw(st.lists(st.sampled_from(POOL), max_size=2)),
        "wrong_job": draw(st.booleans()),  # a caller's mistake: refused, nothing changes
        "results": draw(
            st.lists(
                st.fixed_dictionaries(
                    {
                        "task_id": task_st,
                        "accepted": urls_st,
                        "all": st.booleans(),  # the common answer: every URL of the batch
                        "rejected": reasons_st,
                        "resend": urls_st,
                        "failed": reasons_st,
                        "task_ids": st.dictionaries(st.sampled_from(POOL), task_st),
                        "request_id": st.none() | st.just("req"),
                    }
                ),
                min_size=1,
                max_size=2,
            )
        ),
    }


def play(scenario: dict[str, Any], whole_batch: bool) -> tuple[dict[str, Any], int]:
    """Runs the scenario; returns the journal's rows and how often the whole-batch path ran."""
    journal = jr.Journal(":memory:")
    taken = 0
    if not whole_batch:
        journal._record_whole_batch = lambda *a: False  # type: ignore[method-assign]
    else:
        real = journal._record_whole_batch

        def counting(*args: Any) -> bool:
            nonlocal taken
            done = real(*args)
            taken += done
            return done

        journal._record_whole_batch = counting  # type: ignore[method-assign]
    other = journal.create_job(["a"], {}, "job-0")
    journal.add_targets(other, [(i, u, ["a"]) for i, u in enumerate(POOL)])
    job = journal.create_job(list(ALIASES), {}, "job-1")
    journal.add_targets(job, [(i, u, list(ALIASES)) for i, u in enumerate(POOL)])
    first = journal.claim_batch(job, "a", scenario["first"])
    assert first is not None
    journal.claim_batch(job, "b", scenario["first"])  # the same URLs for another provider
    journal.claim_batch(other, "a", 8)  # and in another job
    second = journal.claim_batch(job, "a", scenario["second"])
    batch = first
    if scenario["split"] is not None:
        part, rest = journal.split_batch(job, first, scenario["split"])
        batch = {"part": part, "rest": rest, "stale": first}.get(scenario["answer"], first)
    if scenario["answer"] == "second" and second is not None:
        batch = second
    if scenario["unknown"]:
        journal.mark_unknown(batch, "timed out")
    if scenario["decided"]:
        journal.set_outcome(job, "a", scenario["decided"], jr.REJECTED, "decided elsewhere")
    for r in scenario["results"]:
        accepted = tuple(batch.urls) + tuple(r["accepted"]) if r["all"] else tuple(r["accepted"])
        result = BatchResult(
            task_id=r["task_id"],
            accepted=accepted,
            rejected=r["rejected"],
            resend=tuple(r["resend"]),
            failed=r["failed"],
            task_ids=r["task_ids"],
            request_id=r["request_id"],
        )
        if scenario["wrong_job"]:
            before = dump(journal)
            with pytest.raises(ValueError):
                journal.record_result(other, batch, result)
            assert dump(journal) == before
        else:
            journal.record_result(job, batch, result)
    return dump(journal), taken


@settings(max_examples=400, deadline=None)
@given(scenarios())
def test_record_result_in_one_statement_ends_as_url_by_url(scenario: dict[str, Any]) -> None:
    assert play(scenario, whole_batch=True)[0] == play(scenario, whole_batch=False)[0]


def test_the_common_answers_take_the_one_statement_path() -> None:
    common = {
        "first": 8,
        "second": 0,
        "split": None,
        "answer": "whole",
        "unknown": False,
        "decided": [],
        "wrong_job": False,
    }
    answer = {"accepted": [], "rejected": {}, "resend": [], "failed": {}, "task_ids": {}}
    every = {**answer, "task_id": "t1", "all": True, "request_id": None}
    # all accepted but a few named elsewhere, one of them also accepted (accepted decides)
    most = {**every, "rejected": {"u1": "bad", "u2": "bad"}, "resend": ["u3"], "failed": {}}
    # a URL the vendor filed under an older task that is this one's too
    same_task = {**every, "task_ids": {"u4": "t1"}}
    for result in (every, most, same_task):
        rows, taken = play({**common, "results": [result]}, whole_batch=True)
        assert taken == 1
        assert rows == play({**common, "results": [result]}, whole_batch=False)[0]
    left_out = {**answer, "task_id": "t1", "all": False, "accepted": POOL[:7], "request_id": None}
    assert play({**common, "results": [left_out]}, whole_batch=True)[1] == 0
    two_tasks = {**every, "task_ids": {"u4": "t-old"}}
    assert play({**common, "results": [two_tasks]}, whole_batch=True)[1] == 0


# --- add_targets ---

url_st = st.sampled_from(
    ["u1", "u2", "u3", 'q"uote', "back\\slash", "caf\u00e9", "\U0001f600", "n\x00ul", "\\u0000"]
)
items_st = st.lists(
    st.tuples(st.integers(0, 3), url_st, st.lists(st.sampled_from(["a", "b", "c"]), max_size=3)),
    max_size=25,
)


def reference_add(
    journal: jr.Journal, job: str, items: Sequence[tuple[int, str, Sequence[str]]]
) -> None:
    """add_targets as it was: one INSERT OR IGNORE per (URL, alias), in input order."""
    with journal.transaction() as db:
        for seq, url, aliases in items:
            for alias in aliases:
                db.execute(
                    "INSERT OR IGNORE INTO targets (job_id, provider, url, seq) VALUES (?,?,?,?)",
                    (job, alias, url, seq),
                )


@settings(max_examples=300, deadline=None)
@given(items_st, items_st, st.integers(1, 6), st.booleans())
def test_add_targets_stores_what_one_insert_per_row_would(
    earlier: list[tuple[int, str, list[str]]],
    gaps: list[tuple[int, str, list[str]]],
    chunk: int,
    with_json: bool,
) -> None:
    # seqs increase with gaps (an invalid line takes a number too); a second call adds more
    items = []
    seq = 0
    for step, url, aliases in gaps:
        seq += step
        items.append((seq, url, aliases))
    stores = []
    for add in ("journal", "reference"):
        journal = jr.Journal(":memory:")
        journal._json = with_json and journal._json
        job = journal.create_job(["a"], {}, "job")
        for batch in ([(i, u, a) for i, (_, u, a) in enumerate(earlier)], items):
            if add == "journal":
                journal.add_targets(job, iter(batch), chunk=chunk)
            else:
                reference_add(journal, job, batch)
        journal.finish_intake(job, [])
        stores.append(dump(journal))
    assert stores[0] == stores[1]


def test_finish_intake_counts_distinct_urls_over_providers() -> None:
    journal = jr.Journal(":memory:")
    one = journal.create_job(["a"], {})
    journal.add_targets(one, [(0, "u1", ["a"]), (1, "u2", ["a"]), (2, "u1", ["a"])])
    journal.finish_intake(one, [])
    two = journal.create_job(["a", "b"], {})
    journal.add_targets(two, [(0, "u1", ["a", "b"]), (1, "u2", ["b"]), (2, "u3", ["a"])])
    journal.finish_intake(two, [])
    empty = journal.create_job(["a"], {})
    journal.finish_intake(empty, [])
    assert [journal.job(j).urls for j in (one, two, empty)] == [2, 3, 0]


# --- claim_batch ---


def old_fit_bytes(urls: list[str], max_bytes: int) -> list[str]:
    total = 2
    for i, url in enumerate(urls):
        total += len(json.dumps(url).encode()) + 1
        if total > max_bytes and i > 0:
            return urls[:i]
    return urls


@given(st.lists(st.text(max_size=6), max_size=8), st.integers(0, 40))
def test_fit_bytes_counts_the_json_encoding(urls: list[str], max_bytes: int) -> None:
    assert jr.fit_bytes(list(urls), max_bytes) == old_fit_bytes(list(urls), max_bytes)


@given(st.lists(st.text(max_size=6), max_size=12), st.integers(1, 5), st.integers(0, 40))
def test_the_plan_counts_the_batches_the_claims_make(
    urls: list[str], batch_size: int, max_bytes: int
) -> None:
    """`submit --dry-run` counts batches as claim_batch cuts them: by count, then bytes."""
    from prewarm_cli.engine.plan import _n_batches

    claimed, rest = 0, list(urls)
    while rest:
        batch = jr.fit_bytes(rest[:batch_size], max_bytes)
        rest, claimed = rest[len(batch) :], claimed + 1
    assert _n_batches(iter(urls), batch_size, max_bytes) == claimed


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 20), st.sampled_from(jr.OUTCOMES)),
        min_size=1,
        max_size=20,
        unique_by=lambda t: t[0],
    ),
    st.integers(-1, 12),
    st.none() | st.integers(0, 60),
    st.integers(0, 2),
)
def test_claim_batch_takes_the_first_unsent_by_seq(
    targets: list[tuple[int, str]], size: int, max_bytes: int | None, claims: int
) -> None:
    journal = jr.Journal(":memory:")
    job = journal.create_job(["a"], {})
    other = journal.create_job(["a"], {})
    names = {n: f"https://h/{'x' * (n % 5)}{n}" for n, _ in targets}
    # seq order differs from URL order; the other job and provider have the same URLs unsent
    journal.add_targets(job, [(100 - n, names[n], ["a", "b"]) for n, _ in targets])
    journal.add_targets(other, [(n, names[n], ["a"]) for n, _ in targets])
    for n, outcome in targets:
        journal.set_outcome(job, "a", [names[n]], outcome, None)
    for _ in range(claims + 1):
        before = dump(journal)
        unsent = sorted(
            (t[3], t[2]) for t in before["targets"] if t[:2] == (job, "a") and t[4] == jr.UNSENT
        )
        wanted = [url for _, url in (unsent[:size] if size >= 0 else unsent)]  # LIMIT -1: all
        if max_bytes is not None:
            wanted = old_fit_bytes(wanted, max_bytes)
        batch = journal.claim_batch(job, "a", size, max_bytes)
        if not wanted:
            assert batch is None
            assert dump(journal) == before
            continue
        assert batch is not None and list(batch.urls) == wanted
        after = dump(journal)
        changed = [t for t in after["targets"] if t not in before["targets"]]
        assert sorted(t[2] for t in changed) == sorted(wanted)
        assert all(t[4] == jr.SENDING and t[5] == batch.id for t in changed)
        assert len(after["targets"]) == len(before["targets"])
