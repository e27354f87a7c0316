"""Streamed JSON (prewarm_cli/output.py write_json): the text json.dumps gives, written as it
comes, and a document cut short closed as valid JSON with its error."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prewarm_cli.errors import UsageError
from prewarm_cli.output import said_on_stdout, write_json

LEAVES = st.none() | st.booleans() | st.integers() | st.text(max_size=8)
VALUES = st.recursive(
    LEAVES,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=12,
)


def written(value: Any) -> str:
    out = io.StringIO()
    write_json(out, value)
    return out.getvalue()


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=5), VALUES, max_size=4), st.lists(VALUES, max_size=5))
def test_a_streamed_document_is_the_text_json_dumps_gives(
    head: dict[str, Any], items: list[Any]
) -> None:
    expected = json.dumps({**head, "results": items}, indent=2, ensure_ascii=False)
    streamed = {**head, "results": iter(items)}
    assert written(streamed) == expected
    assert written(iter(items)) == json.dumps(items, indent=2, ensure_ascii=False)
    summary = {"total": len(items)}
    assert written({"results": iter(items), "summary": lambda: summary}) == json.dumps(
        {"results": items, "summary": summary}, indent=2, ensure_ascii=False
    )
    # Deeper, as status --verify nests them: {..., "verify": {"results": ..., "summary": ...}}
    nested = {**head, "verify": {"results": iter(items), "summary": lambda: summary}}
    assert written(nested) == json.dumps(
        {**head, "verify": {"results": items, "summary": summary}}, indent=2, ensure_ascii=False
    )


def answers(n: int, cut: BaseException) -> Iterator[dict[str, int]]:
    for i in range(n):
        yield {"i": i}
    raise cut


@pytest.mark.parametrize("n_given", [0, 2])
@pytest.mark.parametrize("cut", [KeyboardInterrupt(), UsageError("bad bundle")])
def test_a_document_cut_short_is_closed_with_its_error(n_given: int, cut: BaseException) -> None:
    out = io.StringIO()
    with pytest.raises(type(cut)) as caught:
        write_json(out, {"results": answers(n_given, cut), "summary": dict})
    data = json.loads(out.getvalue())
    assert data["results"] == [{"i": i} for i in range(n_given)] and "summary" not in data
    assert data["error"]["code"] == (
        "interrupted" if isinstance(cut, KeyboardInterrupt) else "usage"
    )
    assert out.getvalue().endswith("}\n")
    assert said_on_stdout(caught.value)  # the exit path writes no second object


@pytest.mark.parametrize("n_given", [0, 2])
def test_a_nested_document_cut_short_is_closed_with_its_error_at_the_top(n_given: int) -> None:
    out = io.StringIO()
    verify = {"results": answers(n_given, KeyboardInterrupt()), "summary": dict}
    with pytest.raises(KeyboardInterrupt) as caught:
        write_json(out, {"state": "succeeded", "verify": verify})
    data = json.loads(out.getvalue())
    assert data["state"] == "succeeded" and data["error"]["code"] == "interrupted"
    assert data["verify"] == {"results": [{"i": i} for i in range(n_given)]}
    assert said_on_stdout(caught.value)


class Unsayable:
    """An item whose encoding is cut short by Ctrl-C (json's default=str calls str())."""

    def __str__(self) -> str:
        raise KeyboardInterrupt


class SignalledAfterWrite(io.StringIO):
    """A stream whose ``n``-th write is followed by Ctrl-C: its handler runs once the write's
    call returned, the text out whole."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n_left = n

    def write(self, text: str) -> int:
        written = super().write(text)
        self.n_left -= 1
        if self.n_left == 0:
            raise KeyboardInterrupt
        return written


@pytest.mark.parametrize(
    ("where", "kept"),
    [
        ("encoding the second", [{"i": 0}]),
        ("after the second written", [{"i": 0}, {"i": 1}]),
        ("after the key written", None),
    ],
)
def test_ctrl_c_while_an_item_is_written_still_closes_one_document(where: str, kept: Any) -> None:
    """Not only while an answer is awaited: an item being encoded, or just written, too."""
    results = [{"i": 0}, Unsayable() if where.startswith("encoding") else {"i": 1}, {"i": 2}]
    # The writes: the state, the verify key, the results key, then an item each.
    out = SignalledAfterWrite(
        {"after the second written": 5, "after the key written": 3}.get(where, 0)
    )
    with pytest.raises(KeyboardInterrupt) as caught:
        write_json(out, {"state": "ok", "verify": {"results": iter(results), "summary": dict}})
    data = json.loads(out.getvalue())
    assert data["verify"] == {"results": kept} and data["error"]["code"] == "interrupted"
    assert said_on_stdout(caught.value)


def test_ctrl_c_is_said_in_the_document_as_the_run_names_it() -> None:
    from prewarm_cli.errors import UserInterrupt
    from prewarm_cli.output import interrupted_as

    stopped = UserInterrupt("interrupted while verifying job J1", hint="again", job_id="J1")
    out = io.StringIO()
    with pytest.raises(KeyboardInterrupt), interrupted_as(stopped):
        write_json(out, {"results": iter([{"i": 0}, Unsayable()])})
    error = json.loads(out.getvalue())["error"]
    assert error["message"] == "interrupted while verifying job J1" and error["job_id"] == "J1"
    assert said_on_stdout(stopped)  # raised in the KeyboardInterrupt's place: no second object


def test_ctrl_c_while_writing_under_two_namings_raises_the_outer_one_marked_said() -> None:
    """status --verify names the job around its answers' reading and around their writing:
    Ctrl-C while a result is written (the inner naming still set) is said once."""
    from prewarm_cli.commands._common import naming_the_job
    from prewarm_cli.errors import UserInterrupt

    out = io.StringIO()

    def answers() -> Iterator[Any]:
        with naming_the_job("J1", "interrupted while verifying job J1", "again"):
            yield {"i": 0}
            yield Unsayable()

    outer = naming_the_job("J1", "interrupted while verifying job J1", "again")
    with pytest.raises(UserInterrupt) as caught, outer:
        results = answers()
        try:
            write_json(out, {"results": results})
        finally:
            results.close()
    assert json.loads(out.getvalue())["error"]["job_id"] == "J1"
    assert said_on_stdout(caught.value)  # the exit writes no second object


def test_what_is_not_prewarm_s_to_say_leaves_the_document_cut() -> None:
    out = io.StringIO()
    with pytest.raises(ValueError) as caught:
        write_json(out, {"results": answers(2, ValueError("a bug")), "summary": dict})
    with pytest.raises(json.JSONDecodeError):  # as truncated output, jq fails loudly
        json.loads(out.getvalue())
    assert not said_on_stdout(caught.value)


def test_a_cut_before_anything_is_written_writes_nothing() -> None:
    out = io.StringIO()
    with pytest.raises(KeyboardInterrupt) as caught:
        write_json(out, answers(0, KeyboardInterrupt()))
    assert out.getvalue() == "" and not said_on_stdout(caught.value)


def test_each_message_reaches_stderr_whole_whichever_thread_says_it() -> None:
    """Workers say their lines side by side: each is written at once, with its newline, and
    none begins inside another (print wrote a line's text and its newline apart, and two
    workers' lines ran into each other: "…found at the vendoredgeone: 2 URLs…")."""
    import threading

    from prewarm_cli.output import Output

    class Writes(io.StringIO):
        def __init__(self) -> None:
            super().__init__()
            self.calls: list[str] = []

        def write(self, text: str) -> int:
            self.calls.append(text)
            return super().write(text)

    stderr = Writes()
    out = Output("json", color=False, verbose=1, stdout=io.StringIO(), stderr=stderr)
    lines = [f"worker {w}: line {i}" for w in range(4) for i in range(200)]
    workers = [
        threading.Thread(target=lambda w=w: [out.detail(t) for t in lines if t[7] == str(w)])
        for w in range(4)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert sorted(stderr.calls) == sorted(f"{t}\n" for t in lines)  # one write per line
