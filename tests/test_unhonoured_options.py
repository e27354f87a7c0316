"""An option a provider cannot honour is said, never dropped silently: -H on Qiniu."""

from __future__ import annotations

import json

from fakes.qiniu import FakeQiniu
from test_qiniu import fake, qiniu_config, urls

__all__ = ["fake", "qiniu_config"]  # fixtures


def test_headers_on_qiniu_are_a_warning_at_submit(run_cli, qiniu_config, fake: FakeQiniu) -> None:
    r = run_cli("submit", "-o", "json", "-H", "Authorization: Bearer s3cr3t", *urls(2))
    assert r.returncode == 0, r.stderr
    assert "warning: qiniu: qiniu cannot send request headers: -H Authorization is not sent" in (
        r.stderr
    )
    assert "s3cr3t" not in r.stderr + r.stdout
    assert json.loads(r.stdout)["accepted"] == 2  # the URLs are warmed all the same
    plain = run_cli("submit", "-o", "json", *urls(2, prefix="https://static.example.com/g"))
    assert plain.returncode == 0 and "request headers" not in plain.stderr


def test_headers_on_qiniu_are_a_note_in_the_dry_run(run_cli, qiniu_config, fake: FakeQiniu) -> None:
    r = run_cli("submit", "--dry-run", "-o", "json", "-H", "X-Warm: 1", *urls(2))
    assert r.returncode == 0, r.stderr
    notes = json.loads(r.stdout)["providers"]["qiniu"]["notes"]
    assert "qiniu cannot send request headers: -H X-Warm is not sent" in notes
