"""The journal in-process: outcomes, per-URL task ids, resume preparation, narrowing statuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prewarm_cli import journal as jr
from prewarm_cli import journal_db
from prewarm_cli.engine.status import _only_urls, _provider_status
from prewarm_cli.plugin import BatchResult, State, TaskStatus, UrlStatus


def new_job(tmp_path: Path, urls: list[str]) -> tuple[jr.Journal, str]:
    journal = jr.Journal(tmp_path / "j.sqlite3")
    job = journal.create_job(["a"], {})
    journal.add_targets(job, ((i, u, ["a"]) for i, u in enumerate(urls)))
    journal.finish_intake(job, [])
    return journal, job


def test_duplicates_keep_their_first_position(tmp_path: Path) -> None:
    journal, job = new_job(tmp_path, ["u2", "u1", "u2", "u3", "u1"])
    rows = journal.targets(job, jr.OUTCOMES)
    assert [r["url"] for r in rows] == ["u2", "u1", "u3"]
    assert journal.job(job).urls == 3


def test_per_url_task_ids_and_left_out_urls_are_unknown(tmp_path: Path) -> None:
    journal, job = new_job(tmp_path, ["u1", "u2", "u3", "u4"])
    batch = journal.claim_batch(job, "a", 10)
    assert batch is not None and batch.urls == ("u1", "u2", "u3", "u4")
    result = BatchResult(
        task_id="t-new", accepted=("u1", "u2"), task_ids={"u2": "t-old"}, resend=("u3",)
    )
    journal.record_result(job, batch, result)  # u4 is in no list: nobody knows
    rows = {r["url"]: (r["outcome"], r["task_id"]) for r in journal.targets(job, jr.OUTCOMES)}
    assert rows == {
        "u1": ("accepted", "t-new"),
        "u2": ("accepted", "t-old"),
        "u3": ("unsent", None),
        "u4": ("unknown", None),
    }
    assert sorted((t.task_id, t.urls) for t in journal.tasks(job)) == [("t-new", 1), ("t-old", 1)]


@pytest.mark.parametrize(("keeps_all", "tasks"), [(False, []), (True, [("run-1", 0)])])
def test_a_task_that_accepted_nothing_is_recorded_only_where_it_keeps_every_url(
    tmp_path: Path, keeps_all: bool, tasks: list[tuple[str, int]]
) -> None:
    journal, job = new_job(tmp_path, ["u1", "u2"])
    batch = journal.claim_batch(job, "a", 10)
    assert batch is not None
    result = BatchResult(
        task_id="run-1",
        accepted=(),
        rejected={"u1": "HTTP 404"},
        failed={"u2": "HTTP 503"},
        task_keeps_all=keeps_all,
    )
    journal.record_result(job, batch, result)
    assert [(t.task_id, t.urls) for t in journal.tasks(job)] == tasks


def test_prepare_resume(tmp_path: Path) -> None:
    journal, job = new_job(tmp_path, ["u1", "u2", "u3", "u4", "u5"])
    b1 = journal.claim_batch(job, "a", 2)
    assert b1 is not None
    journal.record_result(job, b1, BatchResult("t1", ("u1",), rejected={"u2": "bad"}))
    b2 = journal.claim_batch(job, "a", 1)  # left "sending": the run died mid-request
    assert b2 is not None
    journal.defer_unsent(job, "a", "quota")
    journal.prepare_resume(job)
    outcomes = {r["url"]: r["outcome"] for r in journal.targets(job, jr.OUTCOMES)}
    assert outcomes == {
        "u1": "accepted",
        "u2": "rejected",  # never resent
        "u3": "unknown",  # looked up before anything is resent
        "u4": "unsent",
        "u5": "unsent",
    }
    assert [b.urls for b in journal.unknown_batches(job, "a")] == [("u3",)]


def test_defer_beyond_keeps_input_order(tmp_path: Path) -> None:
    journal, job = new_job(tmp_path, [f"u{i}" for i in range(10)])
    assert journal.defer_beyond(job, "a", 7, "quota") == 3
    deferred = [r["url"] for r in journal.targets(job, [jr.DEFERRED])]
    assert deferred == ["u7", "u8", "u9"]


def test_status_is_narrowed_to_the_jobs_urls() -> None:
    vendor = TaskStatus(
        "t1",
        State.PARTIAL,
        "DONE",
        total=3,
        succeeded=2,
        failed=1,
        urls=(
            UrlStatus("mine-1", State.SUCCEEDED),
            UrlStatus("mine-2", State.SUCCEEDED),
            UrlStatus("other-job", State.FAILED, "404"),
        ),
    )
    narrowed = _only_urls(vendor, {"mine-1", "mine-2"})
    assert (narrowed.state, narrowed.total, narrowed.succeeded, narrowed.failed) == (
        State.SUCCEEDED,
        2,
        2,
        0,
    )
    assert _only_urls(vendor, None) is vendor


@pytest.mark.parametrize(
    ("state", "failed", "pending"),
    [(State.CANCELLED, 3, 0), (State.PARTIAL, 3, 0), (State.RUNNING, 0, 1)],
)
def test_accepted_urls_a_vendor_does_not_count_failed_with_a_task_that_ended_badly(
    state: State, failed: int, pending: int
) -> None:
    # AWS estimates a job's URLs from its PoPs; a stopped job counted 2 of 3 as failed and
    # left the third pending for ever.
    n_counted = 2
    task = TaskStatus(
        "t", state, None, n_counted, failed=n_counted if state.finished else 0,
        in_progress=0 if state.finished else n_counted,
    )  # fmt: skip
    part = _provider_status("a", [task], jr.Counts({jr.ACCEPTED: 3}), {}, sending=False)
    assert (part.total, part.failed, part.pending) == (3, failed, pending)


def test_a_schema_1_journal_is_migrated_and_its_failures_stay_resendable(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "INSERT INTO meta VALUES ('schema_version', '1');"
        "CREATE TABLE targets (job_id TEXT NOT NULL, provider TEXT NOT NULL, url TEXT NOT NULL,"
        " seq INTEGER NOT NULL, outcome TEXT NOT NULL DEFAULT 'unsent', batch_id INTEGER,"
        " task_id TEXT, reason TEXT, PRIMARY KEY (job_id, provider, url)) WITHOUT ROWID;"
        "INSERT INTO targets VALUES ('j', 'a', 'u1', 0, 'failed', NULL, NULL, 'gave up');"
    )
    db.commit()
    db.close()
    journal = jr.Journal(path)
    try:
        journal.prepare_resume("j")
        assert [(r["url"], r["outcome"]) for r in journal.targets("j", jr.OUTCOMES)] == [
            ("u1", "unsent")
        ]
    finally:
        journal.close()
    assert (path.stat().st_mode & 0o777) == 0o600


def _indexes(path: Path) -> set[str]:
    import sqlite3

    db = sqlite3.connect(path)
    try:
        rows = db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'targets'"
            " AND sql IS NOT NULL"
        )
        return {name for (name,) in rows}
    finally:
        db.close()


def test_a_journal_of_before_the_skipped_count_counts_its_list(tmp_path: Path) -> None:
    import sqlite3

    journal, job = new_job(tmp_path, ["u1"])
    journal.close()
    path = tmp_path / "j.sqlite3"
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE jobs DROP COLUMN n_skipped")  # as 0.1.0 made it
    db.execute("UPDATE jobs SET skipped = ?", (json.dumps([{"line": 2}, {"line": 3}]),))
    db.commit()
    db.close()
    journal = jr.Journal(path)
    try:
        assert journal.job(job).n_skipped == 2
        other = journal.create_job(["a"], {})
        journal.add_targets(other, [(0, "u2", ("a",))])
        journal.finish_intake(other, [{"line": 1}], n_skipped=5000)
        assert journal.job(other).n_skipped == 5000
    finally:
        journal.close()


# The targets as schema 2 kept them, spelled as they were: keyed by URL.
_SCHEMA_2_TARGETS = (
    "CREATE TABLE targets (job_id TEXT NOT NULL, provider TEXT NOT NULL, url TEXT NOT NULL,"
    " seq INTEGER NOT NULL, outcome TEXT NOT NULL DEFAULT 'unsent', batch_id INTEGER,"
    " task_id TEXT, reason TEXT, transient INTEGER NOT NULL DEFAULT 1,"
    " PRIMARY KEY (job_id, provider, url)) WITHOUT ROWID;"
)


@pytest.mark.parametrize(
    "indexes",
    [
        "CREATE INDEX targets_by_state ON targets (job_id, provider, outcome, batch_id, seq);",
        # before that, an index per purpose
        "CREATE INDEX targets_by_outcome ON targets (job_id, provider, outcome, seq);"
        "CREATE INDEX targets_by_batch ON targets (batch_id);",
    ],
)
def test_a_schema_2_journal_gets_its_targets_in_input_order_and_loses_none(
    tmp_path: Path, indexes: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    journal, job = new_job(tmp_path, ["z1", "a2", "m3", "b4"])
    journal.close()
    path = tmp_path / "j.sqlite3"
    db = sqlite3.connect(path)
    columns = "job_id, provider, url, seq, outcome, batch_id, task_id, reason, transient"
    rows = db.execute(f"SELECT {columns} FROM targets").fetchall()
    db.executescript(
        "DROP TABLE targets;"
        + _SCHEMA_2_TARGETS
        + indexes
        + "UPDATE meta SET value = '2' WHERE key = 'schema_version';"
    )
    db.executemany(f"INSERT INTO targets ({columns}) VALUES ({', '.join('?' * 9)})", rows)
    # An accepted one, and an unsent one that still names a batch (a journal from before).
    db.execute(
        "UPDATE targets SET outcome = 'accepted', batch_id = 3, task_id = 't' WHERE url = 'a2'"
    )
    db.execute("UPDATE targets SET batch_id = 7 WHERE url = 'm3'")
    db.commit()
    before = sorted(db.execute(f"SELECT {columns} FROM targets"))
    db.close()

    monkeypatch.setattr(journal_db, "_MOVE_NOTED", 4)  # a long move is announced: here, 4
    notes: list[str] = []
    journal = jr.Journal(path, notes.append)
    try:
        assert len(notes) == 1 and "moves its 4 targets" in notes[0], notes
        db = journal._db
        after = sorted(tuple(r) for r in db.execute(f"SELECT {columns} FROM targets"))
        assert [r[:5] for r in after] == [r[:5] for r in before]  # no URL lost or changed
        assert dict(db.execute("SELECT url, batch_id FROM targets")) == {
            "z1": None,
            "a2": 3,
            "m3": None,  # unsent: no batch
            "b4": None,
        }
        # In the table's order, input order: the order of the rows themselves.
        assert [r[0] for r in db.execute("SELECT url FROM targets ORDER BY rowid")] == [
            "z1",
            "a2",
            "m3",
            "b4",
        ]
        assert _indexes(path) == {"targets_by_url", "targets_by_state", "accepted_by_task"}
        (version,) = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        assert version == str(journal_db.SCHEMA_VERSION) == "3"
        journal.add_targets(job, [(9, "b4", ("a",)), (10, "c5", ("a",))])  # b4 is there
        batch = journal.claim_batch(job, "a", 10)
        assert batch is not None and batch.urls == ("z1", "m3", "b4", "c5")
        journal.record_result(job, batch, BatchResult(task_id="t", accepted=batch.urls))
        assert journal.counts(job)["a"][jr.ACCEPTED] == 5
    finally:
        journal.close()
    jr.Journal(path, notes.append).close()  # opened again: nothing left to move
    assert (
        _indexes(path) == {"targets_by_url", "targets_by_state", "accepted_by_task"}
        and len(notes) == 1
    )


def _decode_crockford(text: str) -> int:
    digits = str.maketrans("ABCDEFGHJKMNPQRSTVWXYZ", "abcdefghijklmnopqrstuv")
    return int(text.translate(digits), 32)


def test_job_ids_are_ulids_of_their_time(monkeypatch) -> None:
    # The spec's example 01ARZ3NDEKTSV4RRFFQ69G5FAV has the time 1469922850259 ms.
    monkeypatch.setattr(jr.time, "time_ns", lambda: 1469922850259 * 1_000_000 + 999_999)
    monkeypatch.setattr(jr.os, "urandom", lambda n: b"\xff" * n)
    assert jr.new_job_id() == "01ARZ3NDEK" + "Z" * 16
    monkeypatch.setattr(jr.os, "urandom", lambda n: b"\x00" * n)
    assert jr.new_job_id() == "01ARZ3NDEK" + "0" * 16


def test_job_ids_sort_by_time_and_differ() -> None:
    import time

    ids = []
    for _ in range(3):
        ids.append(jr.new_job_id())
        time.sleep(0.002)
    ids += [jr.new_job_id() for _ in range(1000)]
    assert len(set(ids)) == len(ids)
    assert ids[:3] == sorted(ids[:3])
    for job_id in ids:
        assert len(job_id) == 26 and set(job_id) <= set(jr._CROCKFORD)
        assert abs((_decode_crockford(job_id) >> 80) - time.time() * 1000) < 60_000


def test_a_transaction_left_open_by_a_ctrl_c_is_rolled_back_by_the_next(tmp_path: Path) -> None:
    """A KeyboardInterrupt between a BEGIN and its end (a second Ctrl-C during the rollback)
    left the connection in a transaction: the next one said "cannot start a transaction
    within a transaction", and what the first wrote must not be committed."""
    journal = jr.Journal(tmp_path / "j.sqlite3")
    job = journal.create_job(["a"], {})
    journal._db.execute("BEGIN IMMEDIATE")  # as an interrupted transaction leaves it
    half = journal._db.execute(
        "INSERT INTO jobs (id, created_at, updated_at, state, providers, options)"
        " VALUES ('half-written', '', '', 'created', '[]', '{}')"
    )
    assert half.rowcount == 1
    journal.set_state(job, "interrupted")
    journal.close()
    reopened = jr.Journal(tmp_path / "j.sqlite3")
    assert reopened.job(job).state == "interrupted"
    assert reopened.job_state("half-written") is None  # rolled back, not committed


def test_a_job_is_made_and_looked_up_on_an_sqlite_without_json(tmp_path: Path) -> None:
    """JSON1 is an option before SQLite 3.38: intake and lookups must not need it."""
    import sqlite3

    journal = jr.Journal(tmp_path / "j.sqlite3")
    journal._json = False  # as _has_json finds on such an SQLite

    def no_json(action: int, _a: str | None, name: str | None, *_rest: object) -> int:
        refused = action == sqlite3.SQLITE_FUNCTION and (name or "").startswith("json")
        return sqlite3.SQLITE_DENY if refused else sqlite3.SQLITE_OK

    journal._db.set_authorizer(no_json)
    job = journal.create_job([], {})
    journal.add_targets(job, ((i, u, ["a"]) for i, u in enumerate(["https://x/1", "https://x/2"])))
    journal.finish_intake(job, [], lambda alias: f"{alias} at https://cdn.example.com")
    made = journal.job(job)
    assert (made.state, made.providers, made.urls) == ("ready", ("a",), 2)
    assert made.options["vendors"] == {"a": "a at https://cdn.example.com"}
    assert journal.tasks_of_other_jobs(job, "a", {"t1"}) == set()
    assert [j.id for j in journal.jobs()] == [job]


def test_a_task_of_another_job_is_one_at_the_same_vendor(tmp_path: Path) -> None:
    """A vendor's task ids are unique there only: another job's t-1 at another vendor is not
    the t-1 a lookup found; at the same vendor (another alias of it too) it is."""
    journal = jr.Journal(tmp_path / "j.sqlite3")
    try:

        def job_with_task(alias: str, vendor: str, url: str) -> str:
            job = journal.create_job([alias], {})
            journal.add_targets(job, [(0, url, (alias,))])
            journal.finish_intake(job, [], lambda _alias: vendor)
            batch = journal.claim_batch(job, alias, 10)
            assert batch is not None
            journal.record_result(job, batch, BatchResult(task_id="t-1", accepted=batch.urls))
            return job

        job_with_task("a", "fake at http://127.0.0.1:1", "https://x/1")
        mine = job_with_task("b", "fake at http://127.0.0.1:2", "https://x/2")
        assert journal.tasks_of_other_jobs(mine, "b", {"t-1"}) == set()
        job_with_task("b2", "fake at http://127.0.0.1:2", "https://x/3")  # b's vendor
        assert journal.tasks_of_other_jobs(mine, "b", {"t-1"}) == {"t-1"}
    finally:
        journal.close()


def test_the_list_of_jobs_leaves_their_skipped_inputs_unread(tmp_path: Path) -> None:
    # A job may have skipped a million inputs: `jobs` shows none of them, and sorting whole
    # rows to list the latest jobs held every such list in memory at once.
    journal = jr.Journal(tmp_path / "j.sqlite3")
    job = journal.create_job(["a"], {})
    journal.add_targets(job, [(0, "https://a.example.com/x", ["a"])])
    skipped = [{"input": f"bad {i}", "line": i, "reason": "not a URL"} for i in range(3)]
    journal.finish_intake(job, skipped)
    (listed,) = journal.jobs()
    assert listed.id == job and listed.urls == 1 and listed.skipped == ()
    assert list(journal.job(job).skipped) == skipped
    assert list(journal.latest_job().skipped) == skipped


@pytest.mark.parametrize("whole", [True, False], ids=["whole batch", "url by url"])
def test_an_answer_that_fails_part_way_leaves_nothing_of_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, whole: bool
) -> None:
    """A batch's answer is all or nothing: when writing it fails after its URLs' rows were
    updated (the disk fills before the tasks are added), none of it stays, and the batch is
    still *sending* for --resume to look up."""
    import sqlite3

    journal, job = new_job(tmp_path, ["u1", "u2", "u3"])
    batch = journal.claim_batch(job, "a", 10)
    assert batch is not None
    before = [tuple(r) for r in journal.targets(job, jr.OUTCOMES)]

    def full(*_args: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(journal, "_add_tasks", full)
    result = BatchResult(
        task_id="t-1",
        accepted=("u1", "u2", "u3") if whole else ("u1", "u2"),
        rejected={} if whole else {"u3": "refused"},
    )
    with pytest.raises(jr.JournalError):
        journal.record_result(job, batch, result)
    assert [tuple(r) for r in journal.targets(job, jr.OUTCOMES)] == before
    assert {r["outcome"] for r in journal.targets(job, jr.OUTCOMES)} == {jr.SENDING}
    assert journal.tasks(job) == []
    assert [b.id for b in journal.unknown_batches(job, "a")] == [batch.id]
    journal.close()


def test_accepted_urls_reads_a_few_tasks_through_their_index(tmp_path: Path) -> None:
    """`status` asks for a few tasks' URLs at a time: read through the index of accepted
    targets by task, not by a scan of the job's million accepted targets."""
    journal, job = new_job(tmp_path, [f"u{i}" for i in range(9)])
    try:
        for task in ("t1", "t2", "t3"):
            batch = journal.claim_batch(job, "a", 3)
            assert batch is not None
            journal.record_result(job, batch, BatchResult(task_id=task, accepted=batch.urls[:2]))
        statements: list[str] = []
        journal._db.set_trace_callback(statements.append)
        found = journal.accepted_urls(job, "a", ["t3", "t1"])
        journal._db.set_trace_callback(None)
        assert found == {"t1": {"u0", "u1"}, "t3": {"u6", "u7"}}
        (select,) = [s for s in statements if s.startswith("SELECT")]
        plan = " ".join(row[3] for row in journal._db.execute("EXPLAIN QUERY PLAN " + select))
        assert "USING INDEX accepted_by_task" in plan, plan
    finally:
        journal.close()


def test_a_job_s_settings_are_asked_for_outside_the_journal_s_write_lock(tmp_path: Path) -> None:
    """A provider's code (a plugin's, however slow) runs before the intake's transaction: a
    submit of another process could not write the journal meanwhile, and failed after 30 s."""
    import sqlite3

    path = tmp_path / "j.sqlite3"
    journal = jr.Journal(path)
    job = journal.create_job(["a"], {})
    journal.add_targets(job, [(0, "https://a.example.com/x", ["a"])])
    other = sqlite3.connect(path, timeout=0.1, isolation_level=None)

    def settings_of(alias: str) -> dict[str, str]:
        other.execute("BEGIN IMMEDIATE")  # another process writes: the lock is free
        other.execute("ROLLBACK")
        return {"variants": "identity"}

    try:
        journal.finish_intake(job, [], settings_of=settings_of)
    finally:
        other.close()
    made = journal.job(job)
    assert made.state == "ready" and made.options["settings"] == {"a": {"variants": "identity"}}
