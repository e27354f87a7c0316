"""Never twice, never stranded: the engine under combined faults, through the CLI.

Kills are synchronised on the fake server holding a request open, never on timing.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import helpers
import pytest
from fakes.generic import FakeCdn
from helpers import popen


def urls(n: int, prefix: str = "https://static.example.com/r") -> list[str]:
    return helpers.urls(n, prefix, ".css")


def marked(n: int, **marks: int) -> list[str]:
    """n URLs; URL number i of each ``name=i`` contains ``name`` (e.g. poison=30)."""
    items = urls(n)
    for name, i in marks.items():
        items[i] = f"https://static.example.com/{name}{i}.css"
    return items


def kill_while_held(proc: subprocess.Popen[str], hold: Any, fake_cdn: FakeCdn) -> None:
    """kill -9 the run while the fake holds its request open, then let the fake answer it."""
    try:
        assert hold.holding.wait(60)
        proc.kill()
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
        fake_cdn.release_holds()
    assert hold.answered.wait(30)


def latest_job(run_cli) -> str:
    jobs = json.loads(run_cli("jobs", "-o", "json").stdout)
    return str(jobs[0]["job_id"])


def journal_rows(cli_env: dict[str, str], sql: str) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(Path(cli_env["PREWARM_STATE_DIR"]) / "journal.sqlite3")
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def assert_each_accepted_once(cdn: FakeCdn) -> None:
    twice = {u: n for u, n in cdn.accepted_counts().items() if n > 1}
    assert twice == {}, f"{len(twice)} URLs accepted more than once"


def lookups(cdn: FakeCdn) -> int:
    return sum(1 for q in cdn.requests if q["path"] == "/v1/lookup")


# --- bug 1: a split part's fault must not release its sibling ---


def test_split_part_answered_500_after_accepting_sends_nothing_twice(
    run_cli, fake_config, fake_cdn: FakeCdn
) -> None:
    # The first batch holds an invalid URL the vendor does not name: it is split. Its first
    # half (with "mark") is accepted but answered 500, so it is looked up, while the other
    # half is still to be sent and three more workers are claiming batches.
    items = marked(400, mark=5, poison=30)
    fake_cdn.fail_next("invalid_unnamed", -1)
    fake_cdn.fail_next("500", 1, urls_with="mark")
    r = run_cli("submit", "-o", "json", *items)
    data = json.loads(r.stdout)
    assert r.returncode == 4, r.stderr
    assert_each_accepted_once(fake_cdn)
    assert lookups(fake_cdn) >= 1  # the unanswered part was looked up, not resent blindly
    assert data["accepted"] == 399 and data["unknown"] == 0 and data["deferred"] == 0
    assert [x["url"] for x in data["rejected"]] == [items[30]]
    assert fake_cdn.accepted_urls() == set(items) - {items[30]}


# --- bug 2: a kill while one part is in flight must leave that part resumable ---


def test_kill_mid_split_then_resume_strands_nothing(
    run_cli, fake_config, fake_cdn: FakeCdn, cli_env, tmp_path
) -> None:
    # First half of the split batch (with "poison") is split again and answered; the second
    # half (with "mark") is held open at the vendor while the process is killed.
    items = marked(100, poison=10, mark=40)
    fake_cdn.fail_next("invalid_unnamed", -1)
    hold = fake_cdn.hold_next("mark", max_urls=25)
    proc = popen(cli_env, tmp_path, "submit", "-o", "json", *items)
    try:
        assert hold.holding.wait(60), "the split part never reached the vendor"
        # the poison half was answered before the held half went out
        rejected_before = journal_rows(cli_env, "SELECT url FROM targets WHERE outcome='rejected'")
        assert rejected_before == [(items[10],)]
        proc.kill()
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
        fake_cdn.release_holds()
    assert proc.returncode == -signal.SIGKILL
    # the part in flight was recorded *sending*, in a batch of its own that is still open
    rows = journal_rows(
        cli_env,
        "SELECT t.outcome, b.state FROM targets t JOIN batches b ON b.id = t.batch_id"
        f" WHERE t.url = '{items[40]}'",
    )
    assert rows == [("sending", "sending")]
    assert hold.answered.wait(30)  # the vendor took the held request after the client died
    job_id = latest_job(run_cli)
    before = lookups(fake_cdn)
    r = run_cli("submit", "--resume", job_id, "-o", "json")
    data = json.loads(r.stdout)
    assert r.returncode == 4, r.stderr  # the poison URL is rejected
    assert lookups(fake_cdn) > before  # resume looked the open part up
    assert_each_accepted_once(fake_cdn)
    assert data["unknown"] == 0 and data["deferred"] == 0 and data["failed"] == []
    assert data["accepted"] == 99
    assert fake_cdn.accepted_urls() == set(items) - {items[10]}


def test_resume_force_resends_a_part_left_unknown_without_lookup(
    run_cli, write_config, fake_config, fake_cdn: FakeCdn, cli_env, tmp_path
) -> None:
    """AWS-like: no lookup. A part killed in flight stays unknown until --resume --force."""
    write_config(fake_config.read_text() + "lookup = false\n")
    items = marked(100, poison=10, mark=40)
    fake_cdn.fail_next("invalid_unnamed", -1)
    hold = fake_cdn.hold_next("mark", max_urls=25)
    proc = popen(cli_env, tmp_path, "submit", "-o", "json", *items)
    try:
        assert hold.holding.wait(60)
        proc.kill()
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    job_id = latest_job(run_cli)
    r = run_cli("submit", "--resume", job_id, "-o", "json")
    data = json.loads(r.stdout)
    assert r.returncode == 4, r.stderr
    assert data["unknown"] == 25  # exactly the held part, nothing of its siblings
    assert "--force" in r.stderr
    fake_cdn.release_holds()  # the vendor never saw it complete: it answers, late
    assert hold.answered.wait(30)
    fake_cdn.clear_faults()
    r = run_cli("submit", "--resume", job_id, "--force", "-o", "json")
    data = json.loads(r.stdout)
    assert data["unknown"] == 0 and data["accepted"] + len(data["rejected"]) == 100
    # --force resent the unknown part knowingly: the only URLs the vendor holds twice
    twice = {u for u, n in fake_cdn.accepted_counts().items() if n > 1}
    assert twice <= set(items[25:50])


# --- a 5xx to a submit is looked up before anything is resent ---


def test_503_to_a_submit_is_looked_up_before_any_resend(
    run_cli, fake_config, fake_cdn: FakeCdn
) -> None:
    fake_cdn.fail_next("503", 1)
    r = run_cli("submit", "-o", "json", *urls(10))
    assert r.returncode == 0, r.stderr
    paths = [(q["path"], q["status"]) for q in fake_cdn.requests if q["method"] == "POST"]
    assert paths == [("/v1/prefetch", 503), ("/v1/lookup", 200), ("/v1/prefetch", 200)]
    assert_each_accepted_once(fake_cdn)


def test_lookup_lag_is_waited_out_before_a_resend(
    run_cli, fake_config, fake_cdn: FakeCdn, cli_env
) -> None:
    """A vendor that lists a task only later: the second lookup finds it, nothing resent."""
    cli_env["FAKE_LOOKUP_SETTLE"] = "1.0"
    fake_cdn.lookup_lag = 0.4
    fake_cdn.fail_next("500", 1)  # accepted, answered 500
    r = run_cli("submit", "-o", "json", *urls(10))
    data = json.loads(r.stdout)
    assert r.returncode == 0, r.stderr
    assert data["accepted"] == 10
    assert lookups(fake_cdn) == 2
    assert_each_accepted_once(fake_cdn)


def test_lookup_lag_is_counted_from_when_the_request_left(
    run_cli, fake_config, fake_cdn: FakeCdn, cli_env
) -> None:
    """A request held back by a throttle for longer than the vendor's lag, then answered 500
    after it was accepted: the lag is waited out from its departure, not from the claim."""
    cli_env["FAKE_LOOKUP_SETTLE"] = "1.0"
    fake_cdn.lookup_lag = 0.4
    fake_cdn.fail_next("429", 1, retry_after=1.5)  # the retry leaves 1.5 s after the claim
    fake_cdn.fail_next("500", 1)  # that retry is accepted, answered 500
    r = run_cli("submit", "-o", "json", *urls(10))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["accepted"] == 10
    assert lookups(fake_cdn) == 2
    assert_each_accepted_once(fake_cdn)


# --- one process per job ---


def test_a_second_process_on_a_job_in_use_is_refused_naming_it(
    run_cli, fake_config, fake_cdn: FakeCdn, cli_env, tmp_path
) -> None:
    items = urls(60)
    fake_cdn.fail_next("429", -1, retry_after=0.01)  # the first run defers everything
    r = run_cli("submit", "-o", "json", *items)
    assert r.returncode == 5, r.stderr
    job_id = json.loads(r.stdout)["job_id"]
    fake_cdn.clear_faults()
    hold = fake_cdn.hold_next("r1.css")
    first = popen(cli_env, tmp_path, "submit", "--resume", job_id, "-o", "json")
    try:
        assert hold.holding.wait(60)
        second = run_cli("submit", "--resume", job_id, "-o", "json")
        assert second.returncode == 2, second.stderr
        assert f"job {job_id} is in use by process {first.pid}" in second.stderr
        error = json.loads(second.stdout)["error"]
        assert error["code"] == "job_in_use" and error["job_id"] == job_id
    finally:
        fake_cdn.release_holds()
    out, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    assert json.loads(out)["accepted"] == 60
    assert_each_accepted_once(fake_cdn)


def test_a_lock_of_a_killed_process_is_taken_over(
    run_cli, fake_config, fake_cdn: FakeCdn, cli_env, tmp_path
) -> None:
    hold = fake_cdn.hold_next("r3.css")
    proc = popen(cli_env, tmp_path, "submit", "-o", "json", *urls(10))
    kill_while_held(proc, hold, fake_cdn)
    job_id = latest_job(run_cli)
    r = run_cli("submit", "--resume", job_id, "-o", "json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["accepted"] == 10
    assert_each_accepted_once(fake_cdn)


# --- Ctrl-C ---


def test_ctrl_c_stops_at_once_and_leaves_the_batch_in_flight_resumable(
    run_cli, fake_config, fake_cdn: FakeCdn, cli_env, tmp_path
) -> None:
    hold = fake_cdn.hold_next("r0.css")
    proc = popen(cli_env, tmp_path, "submit", "-o", "json", *urls(10))
    try:
        stopped = helpers.interrupt(proc, lambda: hold.holding.wait(60))
    finally:
        fake_cdn.release_holds()
    out, err, took = stopped.out, stopped.err, stopped.seconds
    assert proc.returncode == 130, err
    assert took < 30  # a held request never answers: only an immediate stop gets out
    assert err.count("interrupted") == 1 and "aborted" not in err
    assert "Traceback" not in err
    job_id = json.loads(out)["error"]["message"].split()[2]
    rows = journal_rows(cli_env, "SELECT outcome, COUNT(*) FROM targets GROUP BY outcome")
    assert dict(rows) == {"sending": 10}  # the request in flight: neither lost nor resent
    assert hold.answered.wait(30)
    r = run_cli("submit", "--resume", job_id, "-o", "json")
    assert r.returncode == 0, r.stderr
    assert lookups(fake_cdn) == 1
    assert_each_accepted_once(fake_cdn)


def test_a_task_id_another_vendor_gave_another_job_does_not_make_a_found_batch_resent(
    run_cli, write_config, fake_cdn: FakeCdn, cli_env, tmp_path
) -> None:
    """Task ids are a vendor's own: vendor b's t-1, found by a --resume's lookup, is not the
    t-1 vendor a gave another job (taken for it, the batch b had accepted was sent again)."""
    with FakeCdn(api_key="key-b") as other:
        write_config(
            f'[providers.a]\ntype = "fake"\nendpoint = "{fake_cdn.url}"\n'
            f'api_key = "{fake_cdn.api_key}"\n\n'
            f'[providers.b]\ntype = "fake"\nendpoint = "{other.url}"\napi_key = "key-b"\n'
        )
        r = run_cli("submit", "-o", "json", "-p", "a", "https://static.example.com/one.css")
        assert r.returncode == 0, r.stderr
        (task_a,) = json.loads(r.stdout)["tasks"]
        hold = other.hold_next("two.css")
        proc = popen(
            cli_env,
            tmp_path,
            "submit",
            "-o",
            "json",
            "-p",
            "b",
            "https://static.example.com/two.css",
        )
        try:
            stopped = helpers.interrupt(proc, lambda: hold.holding.wait(60))
        finally:
            other.release_holds()
        assert proc.returncode == 130, stopped.err
        assert hold.answered.wait(30)
        (task_b,) = other.tasks  # the request in flight: accepted after all
        assert task_b == task_a["task_id"]  # each vendor numbers its own tasks
        job_b = json.loads(stopped.out)["error"]["job_id"]
        r = run_cli("submit", "--resume", job_b, "-o", "json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["tasks"] == [{"provider": "b", "task_id": task_b, "urls": 1}]
        assert_each_accepted_once(other)


def test_ctrl_c_during_a_long_retry_after_exits_130_within_a_second(
    run_cli, write_config, fake_config, fake_cdn: FakeCdn, cli_env, tmp_path
) -> None:
    write_config(fake_config.read_text().replace("retry_timeout = 10", "retry_timeout = 600"))
    fake_cdn.fail_next("429", -1, retry_after=300)
    proc = popen(cli_env, tmp_path, "submit", "-o", "json", *urls(3))

    def throttled() -> bool:  # or the run ended, which the exit code tells
        return proc.poll() is not None or any(q["status"] == 429 for q in fake_cdn.requests)

    stopped = helpers.interrupt(proc, lambda: helpers.wait_for(throttled, 60))
    assert proc.returncode == 130, stopped.err
    assert stopped.seconds < 30  # far less than the 300 s the vendor asked for
    rows = journal_rows(cli_env, "SELECT outcome, COUNT(*) FROM targets GROUP BY outcome")
    assert dict(rows) == {"unsent": 3}  # throttled, so clearly not sent: nothing unknown


# --- bounded Retry-After ---


def test_retry_after_beyond_the_retry_timeout_defers_at_once(
    run_cli, fake_config, fake_cdn: FakeCdn
) -> None:
    fake_cdn.fail_next("429", -1, retry_after=3600)
    started = time.monotonic()
    r = run_cli("submit", "-o", "json", *urls(5))
    took = time.monotonic() - started
    data = json.loads(r.stdout)
    assert r.returncode == 5, r.stderr
    assert data["deferred"] == 5
    assert took < 10 + 5  # retry_timeout is 10 s: never the 3600 s asked for
    prefetches = [q for q in fake_cdn.requests if q["path"] == "/v1/prefetch"]
    assert len(prefetches) == 1  # no sleep, no second try: the wait cannot fit
    assert "--resume" in r.stderr


def test_a_journal_failing_while_deferring_stops_the_run_with_its_error(
    fake_config, fake_cdn: FakeCdn, monkeypatch
) -> None:
    import pytest

    from prewarm_cli import engine
    from prewarm_cli import journal as jr
    from prewarm_cli.errors import JournalError

    def disk_full(self: jr.Journal, *args: Any) -> int:
        raise JournalError(f"cannot write the journal {self.path}: the disk is full")

    fake_cdn.fail_next("429", -1, retry_after=3600)  # defers the rest at once
    monkeypatch.setattr(jr.Journal, "defer_unsent", disk_full)
    ws = workspace(fake_config)
    try:
        with pytest.raises(JournalError, match="disk is full"):  # not lost in a worker thread
            engine.submit(ws, submit_request(urls(5)))
    finally:
        ws.close()


# --- the journal as the user's record ---


def test_state_files_are_private(
    run_cli, write_config, fake_config, fake_cdn: FakeCdn, cli_env
) -> None:
    """The journal, the rate-limit log, the daily budgets and the locks: 0600 in 0700."""
    write_config(fake_config.read_text() + "rps = 50\nper_day = 100\n")
    state = Path(cli_env["PREWARM_STATE_DIR"])
    state.mkdir(mode=0o755, exist_ok=True)
    state.chmod(0o755)
    old_umask = os.umask(0o022)  # the usual one: files would be 0644 unless made private
    try:
        r = run_cli("submit", "-H", "Authorization: Bearer s3cret", *urls(2))
    finally:
        os.umask(old_umask)
    assert r.returncode == 0, r.stderr
    assert state.stat().st_mode & 0o777 == 0o700
    names = {p.name for p in state.rglob("*")}
    assert {"journal.sqlite3", "ratelimits.sqlite3", "budgets.sqlite3"} <= names
    for path in state.rglob("*"):
        mode = path.stat().st_mode & 0o777
        assert mode == (0o700 if path.is_dir() else 0o600), (path.name, oct(mode))


def test_a_damaged_journal_is_one_line_naming_the_file(
    run_cli, fake_config, fake_cdn: FakeCdn, cli_env
) -> None:
    state = Path(cli_env["PREWARM_STATE_DIR"])
    state.mkdir(mode=0o700, exist_ok=True)
    (state / "journal.sqlite3").write_bytes(b"this is not a database at all" * 200)
    r = run_cli("jobs")
    assert r.returncode == 1
    assert str(state / "journal.sqlite3") in r.stderr and "move it aside" in r.stderr
    assert "unexpected" not in r.stderr and "Traceback" not in r.stderr
    assert fake_cdn.requests == []


def test_a_journal_of_a_newer_schema_is_refused_before_any_change(
    run_cli, fake_config, fake_cdn: FakeCdn, cli_env
) -> None:
    state = Path(cli_env["PREWARM_STATE_DIR"])
    state.mkdir(mode=0o700, exist_ok=True)
    path = state / "journal.sqlite3"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.execute("INSERT INTO meta VALUES ('schema_version', '99')")
    db.execute("CREATE TABLE jobs (id TEXT PRIMARY KEY, future TEXT)")
    db.commit()
    db.close()
    r = run_cli("submit", *urls(2))
    assert r.returncode == 3
    assert str(path) in r.stderr and "newer" in r.stderr and "upgrade" in r.stderr
    assert fake_cdn.requests == []
    db = sqlite3.connect(path)
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    db.close()
    assert tables == {"meta", "jobs"}  # no schema statement ran


def test_a_read_only_state_dir_is_a_clear_error(
    run_cli, fake_config, fake_cdn: FakeCdn, cli_env
) -> None:
    if os.geteuid() == 0:
        # root writes anywhere: make the journal itself unopenable instead
        state = Path(cli_env["PREWARM_STATE_DIR"])
        state.mkdir(mode=0o700, exist_ok=True)
        (state / "journal.sqlite3").mkdir()
    else:
        state = Path(cli_env["PREWARM_STATE_DIR"])
        state.mkdir(mode=0o500, exist_ok=True)
    r = run_cli("submit", *urls(2))
    assert r.returncode in (1, 3), r.stderr
    assert "journal" in r.stderr and str(state) in r.stderr
    assert "unexpected" not in r.stderr and "Traceback" not in r.stderr
    assert fake_cdn.requests == []


# --- in-process: failures of our own stores ---


def workspace(config_path: Path) -> Any:
    import io

    from prewarm_cli import config as config_mod
    from prewarm_cli.engine import Workspace
    from prewarm_cli.output import Output

    return Workspace(config_mod.load_config(str(config_path)), Output("json", stderr=io.StringIO()))


def submit_request(items: list[str]) -> Any:
    from prewarm_cli.engine import SubmitRequest
    from prewarm_cli.inputs.spec import InputSpec

    return SubmitRequest(inputs=InputSpec(urls=tuple(items)))


def test_a_journal_write_failing_after_the_vendor_accepted_leaves_the_batch_resumable(
    fake_config, fake_cdn: FakeCdn, monkeypatch
) -> None:
    import pytest

    from prewarm_cli import engine
    from prewarm_cli import journal as jr
    from prewarm_cli.errors import JournalError

    items = urls(10)

    def disk_full(self: jr.Journal, job_id: str, batch: jr.Batch, result: Any) -> None:
        raise JournalError(f"cannot write the journal {self.path}: the disk is full")

    with monkeypatch.context() as patched:
        patched.setattr(jr.Journal, "record_result", disk_full)
        ws = workspace(fake_config)
        try:
            with pytest.raises(JournalError, match="disk is full"):
                engine.submit(ws, submit_request(items))
            job_id = ws.journal.latest_job().id
            assert fake_cdn.accepted_urls() == set(items)  # the vendor has them
            counts = ws.journal.counts(job_id)["fake"]
            assert counts[jr.SENDING] == 10  # neither lost nor marked for a blind resend
        finally:
            ws.close()
    ws = workspace(fake_config)
    try:
        summary, code = engine.submit(ws, engine.SubmitRequest(), resume=job_id)
    finally:
        ws.close()
    assert code == 0 and summary.accepted == 10
    assert lookups(fake_cdn) == 1
    assert_each_accepted_once(fake_cdn)


def test_a_failing_rate_limit_store_before_a_send_marks_nothing_unknown(
    fake_config, fake_cdn: FakeCdn, monkeypatch
) -> None:
    import pytest

    from prewarm_cli import engine, pacing
    from prewarm_cli import journal as jr
    from prewarm_cli.errors import RateStoreError

    def broken(self: Any, n_urls: int = 0) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    # Below the Pacer's own handling of store errors, as a full disk would fail it; with a
    # rate to keep (without one, the pacer never opens its store).
    monkeypatch.setattr(pacing.Pacer, "_acquire", broken)
    fake_config.write_text(fake_config.read_text() + "rps = 1000\n")
    ws = workspace(fake_config)
    try:
        with pytest.raises(RateStoreError, match="rate-limit store"):
            engine.submit(ws, submit_request(urls(10)))
        counts = ws.journal.counts(ws.journal.latest_job().id)["fake"]
    finally:
        ws.close()
    assert counts[jr.UNKNOWN] == 0 and counts[jr.SENDING] == 0
    assert counts[jr.UNSENT] == 10
    assert not any(q["path"] == "/v1/prefetch" for q in fake_cdn.requests)


# --- retries reported once per batch with -v, never by the retry library ---


def test_retries_are_reported_once_per_batch_with_v(
    run_cli, fake_config, fake_cdn: FakeCdn
) -> None:
    fake_cdn.fail_next("429", 3, retry_after=0.01)
    r = run_cli("-v", "submit", "-o", "json", *urls(3))
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("retrying a request of 3 URLs") == 1
    assert "stamina" not in r.stderr
    fake_cdn.fail_next("429", 3, retry_after=0.01)
    r = run_cli("-q", "submit", "-o", "json", *urls(3, "https://static.example.com/q"))
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""


# --- --resume sends again only what may succeed now ---


def test_resume_does_not_resend_failures_that_are_the_vendors_verdict(
    run_cli, fake_config, fake_cdn: FakeCdn
) -> None:
    fake_cdn.task_seconds = 0.05
    items = [*urls(3), "https://static.example.com/purgefail.css"]
    r = run_cli("submit", "--invalidate", "-o", "json", *items)
    assert r.returncode == 4, r.stderr
    job_id = json.loads(r.stdout)["job_id"]
    purged = [q for q in fake_cdn.requests if q["path"] == "/v1/purge"]
    r = run_cli("submit", "--resume", job_id, "-o", "json")
    data = json.loads(r.stdout)
    assert r.returncode == 4, r.stderr
    assert [f["url"] for f in data["failed"]] == [items[3]]
    # the refused purge was not tried again, nor was its URL prefetched
    assert [q for q in fake_cdn.requests if q["path"] == "/v1/purge"] == purged
    assert items[3] not in fake_cdn.accepted_urls()


def test_kill_mid_invalidate_then_resume_purges_and_prefetches_each_once(
    run_cli, fake_config, fake_cdn: FakeCdn, cli_env, tmp_path
) -> None:
    fake_cdn.task_seconds = 0.05
    items = urls(20)
    hold = fake_cdn.hold_next("r0.css", path="/v1/purge")
    proc = popen(cli_env, tmp_path, "submit", "--invalidate", "-o", "json", *items)
    kill_while_held(proc, hold, fake_cdn)
    assert fake_cdn.accepted_urls() == set()  # killed before any prefetch
    job_id = latest_job(run_cli)
    r = run_cli("submit", "--resume", job_id, "-o", "json")
    data = json.loads(r.stdout)
    assert r.returncode == 0, r.stderr
    assert data["accepted"] == 20 and data["failed"] == []
    paths = [q["path"] for q in fake_cdn.requests]
    assert paths.index("/v1/prefetch") > max(i for i, p in enumerate(paths) if p == "/v1/purge")
    assert_each_accepted_once(fake_cdn)


def test_eight_processes_share_one_daily_budget(
    write_config, fake_config, fake_cdn: FakeCdn, cli_env, tmp_path
) -> None:
    # 8 processes x (1 quota lookup + 2 batches) = 24 requests against a budget of 20:
    # exactly 20 requests reach the vendor, and the rest of the URLs are deferred.
    write_config(fake_config.read_text() + "per_day = 20\nmax_batch = 5\n")
    procs = [
        popen(cli_env, tmp_path, "submit", "-o", "json",
              *urls(10, f"https://static.example.com/p{n}-"))
        for n in range(8)
    ]  # fmt: skip
    accepted = deferred = 0
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode in (0, 5), err
        assert "Traceback" not in err
        data = json.loads(out)
        accepted += data["accepted"]
        deferred += data["deferred"]
        assert data["unknown"] == 0 and data["failed"] == []
    assert len(fake_cdn.requests) == 20
    prefetched = sum(q["urls"] for q in fake_cdn.requests if q["path"] == "/v1/prefetch")
    assert accepted == prefetched and accepted + deferred == 80
    assert_each_accepted_once(fake_cdn)


def test_ctrl_c_while_waiting_for_status_exits_130(
    run_cli, fake_config, fake_cdn: FakeCdn, cli_env, tmp_path
) -> None:
    fake_cdn.task_seconds = 3600
    job_id = json.loads(run_cli("submit", "-o", "json", *urls(2)).stdout)["job_id"]
    proc = popen(cli_env, tmp_path, "status", job_id, "--wait", "--interval", "300")

    def polled() -> bool:  # or the run ended, which the exit code tells
        return proc.poll() is not None or any(
            q["path"].startswith("/v1/tasks/") for q in fake_cdn.requests
        )

    stopped = helpers.interrupt(proc, lambda: helpers.wait_for(polled, 60))
    assert proc.returncode == 130
    assert stopped.seconds < 30  # not the 300 s interval
    assert "Traceback" not in stopped.err


@pytest.mark.parametrize("n_read", [30, 0])  # 0: killed before its first chunk was recorded
def test_a_job_killed_while_reading_its_input_stays_unresumable_after_status(
    run_cli, fake_config, fake_cdn: FakeCdn, cli_env, n_read: int
) -> None:
    """A kill -9 during intake leaves a job `created`, with some targets and no provider
    entry yet: status says it failed and must not record a state that lets --resume send
    the part that was read as if it were the whole input."""
    from prewarm_cli import journal as jr

    state = Path(cli_env["PREWARM_STATE_DIR"])
    state.mkdir(parents=True, exist_ok=True)
    journal = jr.Journal(state / "journal.sqlite3")
    job = journal.create_job([], {})  # as intake leaves it before the providers are known
    journal.add_targets(job, ((i, u, ["fake"]) for i, u in enumerate(urls(n_read))))
    journal.close()
    r = run_cli("status", job, "-o", "json")
    assert r.returncode == 1, r.stderr
    assert json.loads(r.stdout)["state"] == "failed"
    assert json.loads(r.stdout)["total"] == n_read
    assert "never finished reading its input" in r.stderr
    assert journal_rows(cli_env, "SELECT state FROM jobs") == [("created",)]
    r = run_cli("submit", "--resume", job, "-o", "json")
    assert r.returncode == 2 and "never finished reading its input" in r.stderr
    assert not fake_cdn.requests


def test_a_job_resumes_only_at_the_vendor_it_began_with(
    run_cli, fake_config, fake_cdn: FakeCdn
) -> None:
    fake_cdn.fail_next("429", 1, retry_after=3600)  # deferred: the job waits for --resume
    r = run_cli("submit", "-o", "json", *urls(5))
    assert r.returncode == 5, r.stderr
    job = json.loads(r.stdout)["job_id"]
    text = fake_config.read_text()
    moved = text.replace(f'endpoint = "{fake_cdn.url}"', 'endpoint = "https://other.example.com"')
    fake_config.write_text(moved)
    r = run_cli("submit", "--resume", job, "-o", "json")
    assert r.returncode == 2, r.stderr
    assert f"job {job} was sent to fake as fake at {fake_cdn.url}" in r.stderr
    assert "now makes it fake at https://other.example.com" in r.stderr
    gone = text.replace("[providers.fake]", "[providers.renamed]")
    fake_config.write_text(gone)
    r = run_cli("submit", "--resume", job, "-o", "json")
    assert r.returncode == 3, r.stderr  # the config error first (DESIGN §6: 3 before 2)
    # The same endpoint written another way is the same vendor.
    fake_config.write_text(
        text.replace(f'endpoint = "{fake_cdn.url}"', f'endpoint = "{fake_cdn.url}/"')
    )
    r = run_cli("submit", "--resume", job, "-o", "json")
    assert r.returncode == 0, r.stderr
    assert_each_accepted_once(fake_cdn)
