"""A bounded soak of the whole submit path: random batches, concurrency and faults, kills, resumes.

Each example draws its scenario field by field (printed, and shown by hypothesis on a
failure): batch size, concurrency 1-4, faults from the fake's full set (5xx before and
after accepting, drops before and after, read timeouts, throttling with and without
Retry-After, an invalid URL the vendor does not name, a quota edge, lookup lag), with or
without lookups, and maybe a kill -9 while a request is held open at the vendor (an
event, never a timer). Then ``--resume`` (and ``--resume --force`` where outcomes stay
unknown) until the job is done. Invariants: no URL accepted twice by the fake (except
what ``--force`` resent knowingly); in the end every URL accepted or rejected; the
outcome counts of every run add up.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fakes.generic import FakeCdn

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

# A fixed number of examples keeps the normal run bounded; raise it to soak for longer.
EXAMPLES = int(__import__("os").environ.get("PREWARM_SOAK_EXAMPLES", "8"))
FAULTS = ("429", "429_wait", "503", "500", "drop_before", "drop_after", "timeout")


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    """A scenario's every field drawn by hypothesis: faults combined freely (and shrunk to
    the smallest failing scenario), not picked from one seed."""
    n = draw(st.integers(20, 90))
    items = [f"https://static.example.com/s-{i}.css" for i in range(n)]
    poison = draw(st.booleans())
    if poison:
        items[draw(st.integers(0, n - 1))] = "https://static.example.com/poison.css"
    fault = st.tuples(st.sampled_from(FAULTS), st.integers(1, 3))
    return {
        "items": items,
        "poison": poison,
        "max_batch": draw(st.sampled_from([5, 8, 13, 20, 50])),
        "concurrency": draw(st.integers(1, 4)),
        "lookup": draw(st.booleans()),
        "lag": draw(st.sampled_from([0.0, 0.2])),
        "faults": draw(st.lists(fault, max_size=3)),
        "quota_short": draw(st.just(0) | st.integers(1, n // 2)),
        "kill_at": draw(st.none() | st.integers(0, n - 1)),
    }


def cli(env: dict[str, str], cwd: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    proc = subprocess.run(
        [sys.executable, "-m", "prewarm_cli", *args, "-o", "json"],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    data = json.loads(proc.stdout) if proc.stdout.strip() else {}
    if "total" in data:
        counted = (
            data["accepted"] + len(data["rejected"]) + len(data["failed"])
            + data["deferred"] + data["unknown"]
        )  # fmt: skip
        assert data["total"] == counted, data
    return proc.returncode, data, proc.stderr


def unknown_urls(state: Path) -> set[str]:
    db = sqlite3.connect(state / "journal.sqlite3")
    try:
        rows = db.execute("SELECT url FROM targets WHERE outcome IN ('unknown', 'sending')")
        return {r[0] for r in rows}
    finally:
        db.close()


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
    database=None,
)
@given(s=scenarios())
def test_soak(s: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> None:
    print(f"soak: {len(s['items'])} URLs, batch {s['max_batch']},"
          f" concurrency {s['concurrency']}, lookup {s['lookup']}, faults {s['faults']},"
          f" quota short {s['quota_short']}, kill at {s['kill_at']}")  # fmt: skip
    tmp = tmp_path_factory.mktemp("soak")
    state = tmp / "state"
    with FakeCdn(max_batch=50, slow_seconds=1.0) as cdn:
        cdn.lookup_lag = s["lag"]
        if s["quota_short"]:
            cdn.daily_quota = len(s["items"]) - s["quota_short"]
        config = tmp / "config.toml"
        config.write_text(
            f'[defaults]\nprovider = "fake"\nretries = 4\nretry_timeout = 10\n'
            f'[providers.fake]\ntype = "fake"\nendpoint = "{cdn.url}"\napi_key = "{cdn.api_key}"\n'
            f"max_batch = {s['max_batch']}\nconcurrency = {s['concurrency']}\n"
            f"lookup = {'true' if s['lookup'] else 'false'}\ntimeout = 0.5\n"
        )
        config.chmod(0o600)
        root = Path(__file__).resolve().parent
        env = {
            **{k: v for k, v in __import__("os").environ.items() if not k.startswith("PREWARM_")},
            "PREWARM_CONFIG": str(config),
            "PREWARM_STATE_DIR": str(state),
            "FAKE_LOOKUP_SETTLE": "0.5",
            "PYTHONPATH": f"{root / 'plugins'}:{root.parent}",
        }
        if s["poison"]:
            cdn.fail_next("invalid_unnamed", -1)
        for kind, count in s["faults"]:
            if kind == "429_wait":
                cdn.fail_next("429", count, retry_after=0.05)
            elif kind == "timeout":
                cdn.fail_next("slow", count)  # answers after the client's 0.5 s read timeout
            else:
                cdn.fail_next(kind, count)
        input_file = tmp / "urls.txt"
        input_file.write_text("\n".join(s["items"]) + "\n")

        if s["kill_at"] is not None:
            marker = s["items"][s["kill_at"]]
            # Without lookups, a request cut off by the kill never reached the vendor:
            # otherwise --force would resend it knowingly (allowed below, but not needed).
            hold = cdn.hold_next(marker, discard=not s["lookup"])
            proc = subprocess.Popen(
                [sys.executable, "-m", "prewarm_cli", "submit", "-i", str(input_file)],
                env=env, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            try:
                held = False
                while not held and proc.poll() is None:  # the marker may be deferred, never sent
                    held = hold.holding.wait(0.05)
                proc.kill()
                proc.communicate(timeout=30)
            finally:
                if proc.poll() is None:
                    proc.kill()
                cdn.release_holds()
            if held:
                assert hold.answered.wait(30)
            code, data, err = 0, {}, ""
            rows = subprocess.run(
                [sys.executable, "-m", "prewarm_cli", "jobs", "-o", "json"],
                env=env, cwd=tmp, capture_output=True, text=True, check=True,
            )  # fmt: skip
            jobs = json.loads(rows.stdout)
            if not jobs:
                return  # killed before the job was recorded: nothing sent, nothing to check
            job_id = jobs[0]["job_id"]
        else:
            code, data, err = cli(env, tmp, "submit", "-i", str(input_file))
            assert code in (0, 4, 5), err
            job_id = data["job_id"]

        forced: set[str] = set()
        for _ in range(6):
            if data and data.get("state") == "submitted" and not data["failed"]:
                break
            cdn.clear_faults()
            if s["poison"]:
                cdn.fail_next("invalid_unnamed", -1)
            cdn.daily_used = 0  # a new day: deferred URLs can go
            args = ["submit", "--resume", job_id]
            if data and data.get("unknown") and not s["lookup"]:
                forced |= unknown_urls(state)
                args.append("--force")
            code, data, err = cli(env, tmp, *args)
            assert code in (0, 4, 5), err

        assert data["state"] == "submitted", (data, err)
        assert data["unknown"] == 0 and data["deferred"] == 0 and data["failed"] == []
        rejected = {r["url"] for r in data["rejected"]}
        assert rejected == ({u for u in s["items"] if "poison" in u} if s["poison"] else set())
        assert cdn.accepted_urls() == set(s["items"]) - rejected
        twice = {u for u, k in cdn.accepted_counts().items() if k > 1}
        assert twice <= forced, sorted(twice - forced)[:5]
