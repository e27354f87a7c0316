"""`status` of a job nobody works on any more: killed, interrupted, or deferred by a quota.

Such a job moves only with `submit --resume`: status says so (incomplete, exit 4, or 5 when
targets are deferred), `--wait` waits only for what the vendor still does, and the job's
recorded state stays resumable. A job a live process still sends is waited for.
Kills are synchronised on the fake server holding a request open, never on timing.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import helpers
import pytest
from cachebed import HOST, POPS, CacheBed, cache_bed
from fakes.generic import FakeCdn
from helpers import popen

from prewarm_cli.errors import JobInUse

pytestmark = pytest.mark.timeout(180)


def urls(n: int) -> list[str]:
    return helpers.urls(n, "https://static.example.com/s", ".css")


def outcomes(cli_env: dict[str, str]) -> dict[str, int]:
    db = sqlite3.connect(Path(cli_env["PREWARM_STATE_DIR"]) / "journal.sqlite3")
    try:
        return dict(db.execute("SELECT outcome, COUNT(*) FROM targets GROUP BY outcome"))
    finally:
        db.close()


def jobs_in(run_cli: Callable[..., Any], state: str) -> list[str]:
    r = run_cli("jobs", "--state", state, "-o", "json")
    assert r.returncode == 0, r.stderr
    return [j["job_id"] for j in json.loads(r.stdout)]


def status(run_cli: Callable[..., Any], *args: str) -> tuple[Any, dict[str, Any]]:
    r = run_cli("status", *args, "-o", "json")
    return r, json.loads(r.stdout)


def kill_after_first_batch(
    run_cli: Callable[..., Any], cli_env: dict[str, str], tmp_path: Path, fake_cdn: FakeCdn
) -> str:
    """A run of 60 URLs killed (-9) with 50 accepted and the batch of 10 still in flight."""
    hold = fake_cdn.hold_next("s55.css")
    proc = popen(cli_env, tmp_path, "submit", "-o", "json", *urls(60))
    try:
        assert hold.holding.wait(60)
        helpers.wait_for(lambda: outcomes(cli_env).get("accepted") == 50, 30)
        proc.kill()
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
        fake_cdn.release_holds()  # the vendor takes the held batch: the client never knew
    assert hold.answered.wait(30)
    assert outcomes(cli_env) == {"accepted": 50, "sending": 10}
    return str(json.loads(run_cli("jobs", "-o", "json").stdout)[0]["job_id"])


def test_status_of_a_killed_run_is_incomplete_and_keeps_its_state(
    run_cli, fake_config, fake_cdn: FakeCdn, cli_env, tmp_path
) -> None:
    job_id = kill_after_first_batch(run_cli, cli_env, tmp_path, fake_cdn)
    r, data = status(run_cli, job_id)
    assert r.returncode == 4, r.stderr  # not "pending", exit 0: nothing will send the rest
    assert data["state"] == "incomplete"
    assert data["not_sent"] == 10 and data["total"] == 60
    assert data["providers"]["fake"]["state"] in ("pending", "running", "incomplete")
    assert f"prewarm submit --resume {job_id}" in r.stderr
    # Once status finds that no process sends it, `jobs` lists it incomplete, to resume (the
    # killed run left it submitting, which looked like a run still going).
    assert jobs_in(run_cli, "incomplete") == [job_id]
    r2 = run_cli("submit", "--resume", job_id, "-o", "json")
    assert r2.returncode == 0, r2.stderr
    assert fake_cdn.accepted_counts() == {u: 1 for u in urls(60)}
    r3, data3 = status(run_cli, job_id, "--wait", "--interval", "0.2", "--wait-timeout", "30")
    assert r3.returncode == 0, r3.stderr
    assert data3["state"] == "succeeded" and data3["succeeded"] == 60


def test_status_wait_of_a_killed_run_waits_for_the_vendor_only(
    run_cli, fake_config, fake_cdn: FakeCdn, cli_env, tmp_path
) -> None:
    fake_cdn.task_seconds = 1.5  # the accepted task is still running when status starts
    job_id = kill_after_first_batch(run_cli, cli_env, tmp_path, fake_cdn)
    r, data = status(run_cli, job_id, "--wait", "--interval", "0.2", "--wait-timeout", "60")
    assert r.returncode == 4, r.stderr  # not 6 after polling a minute for targets nobody sends
    assert data["state"] == "incomplete"
    fake = data["providers"]["fake"]
    assert (fake["succeeded"], fake["in_progress"], fake["pending"]) == (50, 0, 0)
    assert fake["not_sent"] == 10
    assert f"prewarm submit --resume {job_id}" in r.stderr
    assert jobs_in(run_cli, "incomplete") == [job_id]


def test_status_of_an_interrupted_run_is_incomplete_and_stays_interrupted(
    run_cli, fake_config, fake_cdn: FakeCdn, cli_env, tmp_path
) -> None:
    hold = fake_cdn.hold_next("s0.css")
    proc = popen(cli_env, tmp_path, "submit", "-o", "json", *urls(10))
    try:
        stopped = helpers.interrupt(proc, lambda: hold.holding.wait(60))
    finally:
        fake_cdn.release_holds()
    assert proc.returncode == 130, stopped.err
    job_id = json.loads(stopped.out)["error"]["message"].split()[2]
    for args in ((), ("--wait", "--interval", "0.2", "--wait-timeout", "30")):
        r, data = status(run_cli, job_id, *args)
        assert r.returncode == 4, r.stderr
        assert data["state"] == "incomplete" and data["not_sent"] == 10
        assert f"prewarm submit --resume {job_id}" in r.stderr
        assert jobs_in(run_cli, "interrupted") == [job_id]


def test_status_of_a_job_deferred_by_quota_stays_incomplete_exit_5(
    run_cli, fake_config, fake_cdn: FakeCdn
) -> None:
    fake_cdn.daily_quota = 40
    r = run_cli("submit", "-o", "json", *urls(60))
    assert r.returncode == 5, r.stderr
    job_id = json.loads(r.stdout)["job_id"]
    for args in ((), ("--wait", "--interval", "0.2", "--wait-timeout", "30"), ()):
        r, data = status(run_cli, job_id, *args)
        assert r.returncode == 5, r.stderr  # deferred: --resume later (DESIGN.md §6)
        assert data["state"] == "incomplete"
        assert data["not_sent"] == 20
        assert f"prewarm submit --resume {job_id}" in r.stderr
        assert jobs_in(run_cli, "incomplete") == [job_id]
    assert data["succeeded"] == 40  # the waited one saw the vendor finish its part
    fake_cdn.daily_quota = None  # a new day
    r = run_cli("submit", "--resume", job_id, "-o", "json")
    assert r.returncode == 0, r.stderr
    r, data = status(run_cli, job_id, "--wait", "--interval", "0.2", "--wait-timeout", "30")
    assert r.returncode == 0, r.stderr
    assert data["state"] == "succeeded" and data["not_sent"] == 0
    assert jobs_in(run_cli, "succeeded") == [job_id]
    assert jobs_in(run_cli, "incomplete") == []


def test_status_waits_for_a_job_a_live_process_still_sends(
    run_cli, fake_config, fake_cdn: FakeCdn, cli_env, tmp_path
) -> None:
    hold = fake_cdn.hold_next("s55.css")
    proc = popen(cli_env, tmp_path, "submit", "-o", "json", *urls(60))
    waiter: subprocess.Popen[str] | None = None
    try:
        assert hold.holding.wait(60)
        helpers.wait_for(lambda: outcomes(cli_env).get("accepted") == 50, 30)
        job_id = str(json.loads(run_cli("jobs", "-o", "json").stdout)[0]["job_id"])
        r, data = status(run_cli, job_id)
        assert r.returncode == 0, r.stderr  # still being sent: neither incomplete nor partial
        assert data["state"] in ("pending", "running")
        assert "--resume" not in r.stderr
        assert jobs_in(run_cli, "submitting") == [job_id]  # the sender's to change
        args = ("status", job_id, "--wait", "--interval", "0.2", "--wait-timeout", "60")
        waiter = popen(cli_env, tmp_path, *args, "-o", "json")
        assert waiter.stderr is not None
        first = waiter.stderr.readline()  # its first poll, made while the run still holds
        assert first.startswith(f"job {job_id}: ") and "next poll in" in first, first
    finally:
        fake_cdn.release_holds()
        _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert waiter is not None
    wout, werr = waiter.communicate(timeout=60)
    assert waiter.returncode == 0, werr
    final = json.loads(wout)
    assert final["state"] == "succeeded" and final["succeeded"] == 60


# --------------------------------------------------------------------------- direct


@pytest.fixture
def bed(tmp_path: Path) -> Iterator[CacheBed]:
    yield from cache_bed(tmp_path / "bed")


def test_status_of_a_direct_job_deferred_by_max_bytes_stays_incomplete(
    bed: CacheBed, run_cli, write_config
) -> None:
    table = '[providers.direct]\ntype = "direct"\nconcurrency = 1\nencodings = ["identity"]\n'
    write_config(table + "max_bytes = 5000\n")
    paths = [f"/obj/st{i}.bin?size=2048" for i in range(5)]
    pin = ("--resolve", f"{HOST}:{bed.nginx.port}:{POPS[0]}")
    r = run_cli("submit", "-p", "direct", "-o", "json", *pin, *(bed.nginx.url(p) for p in paths))
    assert r.returncode == 5, r.stderr
    sub = json.loads(r.stdout)
    job_id = sub["job_id"]
    assert sub["accepted"] and sub["deferred"]
    for args in ((), ("--wait", "--wait-timeout", "30")):
        r, data = status(run_cli, job_id, *args)
        assert r.returncode == 5, r.stderr  # was "partial", exit 4, and the job lost its state
        assert data["state"] == "incomplete"
        assert (data["succeeded"], data["not_sent"]) == (sub["accepted"], sub["deferred"])
        assert f"prewarm submit --resume {job_id}" in r.stderr
        assert jobs_in(run_cli, "incomplete") == [job_id]
    write_config(table)  # no budget any more: the resume warms the rest
    r = run_cli("submit", "--resume", job_id, "-o", "json")
    assert r.returncode == 0, r.stderr
    r, data = status(run_cli, job_id)
    assert r.returncode == 0, r.stderr
    assert data["state"] == "succeeded" and data["succeeded"] == 5
    assert jobs_in(run_cli, "incomplete") == []


# --------------------------------------------------------------------------- aws


def test_an_incomplete_aws_job_holds_the_stack_only_while_it_runs(
    write_config, cli_env, run_cli, tmp_path
) -> None:
    from fakes.aws import FakeDistribution, FakePrewarmApi, config_toml

    now = [1000.0]  # the stack's clock: its job runs until the test moves time on
    with FakePrewarmApi(
        distributions=[
            FakeDistribution("E3CCCC", "d3cccc.cloudfront.net", ["static.example.com"]),
            FakeDistribution("E4DDDD", "d4dddd.cloudfront.net", ["*.img.example.com"]),
        ],
        clock=lambda: now[0],
    ) as api:
        api.point_cli_at(cli_env, tmp_path)
        write_config(
            config_toml(
                {
                    "type": "aws",
                    "endpoint": api.endpoint,
                    "target_type": "pop",
                    "pops": ["IAD89-P1"],
                    "poll_interval": 0.1,
                }
            )
        )
        # Two distributions: the stack takes one job at a time, the second one's URL waits.
        items = ["https://static.example.com/a.js", "https://cdn1.img.example.com/b.png"]
        r = run_cli("submit", "-o", "json", *items)
        assert r.returncode == 5, r.stderr
        sub = json.loads(r.stdout)
        task = sub["tasks"][0]["task_id"]
        assert api.job_status(task) != "FINISHED"
        other = run_cli("submit", "-o", "json", "https://static.example.com/c.js")
        assert other.returncode == 2, other.stderr  # its vendor part still runs
        assert f"job {sub['job_id']} is still" in other.stderr
        now[0] += 3600
        assert api.job_status(task) == "FINISHED"
        r, data = status(run_cli, sub["job_id"], "--wait", "--wait-timeout", "30")
        assert r.returncode == 5, r.stderr
        assert data["state"] == "incomplete" and data["not_sent"] == 1
        r = run_cli("submit", "-o", "json", "https://static.example.com/c.js")
        assert "unexpected" not in r.stderr
        assert f"job {sub['job_id']}" not in r.stderr  # done at the vendor: not in the way


def test_a_run_waits_out_a_status_peeking_at_the_job_lock(tmp_path, monkeypatch) -> None:
    """status takes the lock shared for an instant: a run starting then is not refused."""
    import fcntl

    from prewarm_cli.engine import lock as lock_mod

    peek = lock_mod.JobLock(tmp_path, "J1")
    assert peek.holder() is None  # never locked
    run = lock_mod.JobLock(tmp_path, "J1")
    run.acquire()
    assert peek.holder() == str(os.getpid())
    run.release()
    assert peek.holder() is None
    assert not run.path.exists()  # no file left per job

    fd = os.open(run.path, os.O_RDONLY | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_SH)  # a status peeking, as the run starts
    waited = []

    def status_lets_go(seconds: float) -> None:  # the run's first wait: the peek ends
        waited.append(seconds)
        os.close(fd)

    monkeypatch.setattr(lock_mod.time, "sleep", status_lets_go)
    run.acquire()
    run.release()
    assert len(waited) == 1


def test_a_run_that_locks_the_file_its_holder_removed_takes_the_new_one(
    tmp_path, monkeypatch
) -> None:
    """The file a run opened can be removed by its holder before the run locks it: the run
    then holds a file nobody else will open, and must lock the one at the path instead."""
    import fcntl

    from prewarm_cli.engine import lock as lock_mod

    first = lock_mod.JobLock(tmp_path, "J1")
    first.acquire()
    real_flock = fcntl.flock
    calls = []

    def first_lets_go_just_before(fd: int, operation: int) -> None:
        calls.append(fd)
        if len(calls) == 1:
            first.release()  # the file the second run opened is removed and let go
        real_flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", first_lets_go_just_before)
    second = lock_mod.JobLock(tmp_path, "J1")
    second.acquire()
    monkeypatch.setattr(fcntl, "flock", real_flock)
    assert len(calls) == 2  # locked the removed file, then the one at the path
    assert second.path.read_text() == str(os.getpid())
    with pytest.raises(JobInUse):  # a third run sees the second one's lock
        lock_mod.JobLock(tmp_path, "J1").acquire()
    second.release()
    assert not second.path.exists()


def test_a_run_lets_go_without_removing_another_runs_lock_file(tmp_path) -> None:
    """Something else removed the first run's file: a second run locked a new one, which the
    first must leave as it lets go, or a third would get in beside the second."""
    from prewarm_cli.engine import lock as lock_mod

    first = lock_mod.JobLock(tmp_path, "J1")
    first.acquire()
    first.path.unlink()
    second = lock_mod.JobLock(tmp_path, "J1")
    second.acquire()
    first.release()
    assert second.path.read_text() == str(os.getpid())
    with pytest.raises(JobInUse):
        lock_mod.JobLock(tmp_path, "J1").acquire()
    second.release()
    assert not second.path.exists()


def test_status_of_a_job_whose_intake_died_says_to_submit_again(
    run_cli, fake_config, cli_env
) -> None:
    """Killed while reading its input (state `created`, no lock held): `--resume` refuses
    such a job, so status does not point at it."""
    from prewarm_cli import journal as jr

    run_cli("jobs")  # the state directory
    journal = jr.Journal(Path(cli_env["PREWARM_STATE_DIR"]) / "journal.sqlite3")
    job_id = journal.create_job(["fake"], {"headers": [], "invalidate": False, "extra": {}})
    journal.add_targets(job_id, [(i, u, ["fake"]) for i, u in enumerate(helpers.urls(5))])
    journal.close()
    r = run_cli("status", job_id, "-o", "json")
    assert r.returncode == 1, r.stderr
    assert json.loads(r.stdout)["state"] == "failed"
    assert "submit the URLs again" in r.stderr and "--resume" not in r.stderr
    waited = run_cli("status", job_id, "--wait", "--interval", "0.2", "-o", "json")
    assert waited.returncode == 1  # nothing to wait for
    assert [j["state"] for j in json.loads(run_cli("jobs", "-o", "json").stdout)] == ["created"]


def test_status_keeps_a_cancelled_job_cancelled(run_cli, fake_config, fake_cdn: FakeCdn) -> None:
    fake_cdn.daily_quota = 40
    fake_cdn.task_seconds = 30  # still running when cancelled
    r = run_cli("submit", "-o", "json", *helpers.urls(60))
    assert r.returncode == 5, r.stderr
    job_id = json.loads(r.stdout)["job_id"]
    assert run_cli("cancel", job_id, "-o", "json").returncode == 0
    s = run_cli("status", job_id, "-o", "json")
    assert json.loads(s.stdout)["state"] == "cancelled" and s.returncode == 4, s.stderr
    assert "--resume" not in s.stderr  # the user stopped it
    listed = json.loads(run_cli("jobs", "--state", "cancelled", "-o", "json").stdout)
    assert [j["job_id"] for j in listed] == [job_id]


def test_an_incomplete_job_whose_vendor_failed_its_part_exits_1() -> None:
    """Where several exit codes apply, 1 (failed) comes before 4 (DESIGN.md §6)."""
    from prewarm_cli.errors import exit_for
    from prewarm_cli.results import JobStatus, ProviderStatus

    def job(vendor_state: str) -> JobStatus:
        counts = {"total": 10, "succeeded": 0, "failed": 6, "in_progress": 0, "pending": 0}
        part = ProviderStatus("fake", vendor_state, None, **counts, not_sent=4)
        return JobStatus("J", "incomplete", None, **counts, not_sent=4, providers={"fake": part})

    assert exit_for(job("failed").outcomes()) == 1
    assert exit_for(job("succeeded").outcomes()) == 4  # unsent targets, and failed ones


def test_a_job_still_reading_its_input_is_being_worked_on(
    run_cli, fake_config, cli_env, tmp_path
) -> None:
    """The submit holds the job's lock from before its intake: a status while it still reads
    a long input sees the job pending, not abandoned."""
    submit = ("submit", "-p", "fake", "-o", "json", "-i", "-")
    proc = popen(cli_env, tmp_path, *submit, stdin=subprocess.PIPE)
    try:
        assert proc.stdin is not None
        proc.stdin.write("".join(u + "\n" for u in urls(20_001)))  # one chunk is journaled
        proc.stdin.flush()  # and the input goes on: intake waits for the rest

        def journaled() -> bool:
            try:
                return sum(outcomes(cli_env).values()) >= 20_000
            except sqlite3.Error:
                return False

        helpers.wait_for(journaled, 60)
        db = sqlite3.connect(Path(cli_env["PREWARM_STATE_DIR"]) / "journal.sqlite3")
        [(job_id, state)] = db.execute("SELECT id, state FROM jobs").fetchall()
        db.close()
        assert state == "created"
        r, data = status(run_cli, job_id)
        assert r.returncode == 0 and data["state"] == "pending", r.stderr
    finally:
        proc.kill()
        proc.wait()


def test_a_job_lock_the_state_directory_cannot_take_names_the_file(tmp_path, monkeypatch) -> None:
    """A full disk (ENOSPC) when the lock is written: the file and what to do, not an
    unexpected OSError."""
    import errno

    from prewarm_cli.engine import lock as lock_mod
    from prewarm_cli.errors import JournalError

    def full(*_args: object, **_kw: object) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(lock_mod.os, "open", full)
    run = lock_mod.JobLock(tmp_path, "J1")
    with pytest.raises(JournalError) as caught:
        run.acquire()
    assert str(run.path) in str(caught.value) and "No space left on device" in str(caught.value)
    assert "free some space" in (caught.value.hint or "")


def test_journal_errors_say_what_to_do_for_each_cause() -> None:
    """A write the system refused is not a damaged file: the journal is kept."""
    from prewarm_cli.journal_db import error

    io = error("/s/journal.sqlite3", sqlite3.OperationalError("disk I/O error"))
    assert "journal is kept" in (io.hint or "") and "move" not in (io.hint or "")
    full = error("/s/journal.sqlite3", sqlite3.OperationalError("database or disk is full"))
    assert "the disk is full" in str(full) and "run the command again" in (full.hint or "")
    bad = error("/s/journal.sqlite3", sqlite3.DatabaseError("file is not a database"))
    assert "damaged" in str(bad) and "mv /s/journal.sqlite3" in (bad.hint or "")
