"""Shared fixtures: the fake CDN server, an isolated CLI environment, config helpers."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
ROOT = TESTS_DIR.parent
PLUGINS_DIR = TESTS_DIR / "plugins"  # holds the "fake" provider and its dist-info
BROKEN_PLUGINS_DIR = TESTS_DIR / "plugins_broken"  # a plugin that fails to import

# The fake provider plugin is found through the real entry-point mechanism.
if str(PLUGINS_DIR) not in sys.path:
    sys.path.insert(0, str(PLUGINS_DIR))
for _path in (TESTS_DIR, ROOT):  # `fakes.*` and (when not installed) `prewarm_cli`
    if str(_path) not in sys.path:
        sys.path.append(str(_path))

from fakes.cache_server import CacheServer  # noqa: E402
from fakes.generic import FakeCdn  # noqa: E402
from fakes.tls import tls_files  # noqa: E402

_DROPPED_PREFIXES = ("PREWARM_", "XDG_")
_DROPPED_NAMES = ("NO_COLOR", "FAKE_API_KEY", "FAKE_LOOKUP_SETTLE")

RunCli = Callable[..., "subprocess.CompletedProcess[str]"]


@pytest.fixture
def fake_cdn() -> Iterator[FakeCdn]:
    """A started generic fake CDN server (stopped after the test)."""
    with FakeCdn() as cdn:
        yield cdn


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment for running the CLI isolated; also applied to os.environ for in-process tests.

    Fixtures and tests may add to the returned dict (e.g. FAKE_API_KEY); run_cli reads it at
    call time.
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(_DROPPED_PREFIXES) and k not in _DROPPED_NAMES
    }
    for name in os.environ:
        if name.startswith(_DROPPED_PREFIXES) or name in _DROPPED_NAMES:
            monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    python_path = [str(PLUGINS_DIR), str(ROOT)]
    if os.environ.get("PYTHONPATH"):
        python_path.append(os.environ["PYTHONPATH"])
    isolated = {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg-config"),
        "XDG_STATE_HOME": str(tmp_path / "xdg-state"),
        "PREWARM_STATE_DIR": str(tmp_path / "state"),
        "PREWARM_CONFIG": str(tmp_path / "config.toml"),
        "PYTHONPATH": os.pathsep.join(python_path),
        "COLUMNS": "200",
    }
    env.update(isolated)
    for name, value in isolated.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def write_config(cli_env: dict[str, str]) -> Callable[[str], Path]:
    """A function writing TOML text to the PREWARM_CONFIG path (mode 0o600); returns the path."""

    def write(text: str) -> Path:
        path = Path(cli_env["PREWARM_CONFIG"])
        path.write_text(text, encoding="utf-8")
        path.chmod(0o600)
        return path

    return write


@pytest.fixture
def run_cli(cli_env: dict[str, str], tmp_path: Path) -> RunCli:
    """A function running `python -m prewarm_cli ARGS...` isolated, stdout and stderr apart."""

    def run(
        *args: str,
        input: str | None = None,
        timeout: float = 60,
        env_extra: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        env = dict(cli_env)
        if env_extra:
            env.update(env_extra)
        return subprocess.run(
            [sys.executable, "-m", "prewarm_cli", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=tmp_path,
            check=False,
        )

    return run


@pytest.fixture
def fake_config(
    fake_cdn: FakeCdn,
    write_config: Callable[[str], Path],
    cli_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> Path:
    """A config whose default provider is "fake", pointed at the fake_cdn server."""
    cli_env["FAKE_API_KEY"] = fake_cdn.api_key
    monkeypatch.setenv("FAKE_API_KEY", fake_cdn.api_key)
    return write_config(
        f"""\
[defaults]
provider = "fake"
retries = 4
retry_timeout = 10

[providers.fake]
type = "fake"
endpoint = "{fake_cdn.url}"
api_key = "env:FAKE_API_KEY"
"""
    )


@pytest.fixture
def tls_edge(tmp_path: Path) -> Iterator[tuple[CacheServer, Path]]:
    """A cache-like HTTPS server for pinned.test on 127.0.0.1, and the CA that signed it."""
    ca, cert, key = tls_files(tmp_path, "pinned.test")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with CacheServer(ssl_context=context) as server:
        yield server, ca
