"""Built-in providers use the core only through the plugin API (DESIGN.md §1).

A provider may import ``prewarm_cli.plugin`` (and what it offers) and ``prewarm_cli.errors``,
its own package, the standard library and its SDK: never the CLI, the engine, the config or
another provider. Checked twice: every import statement in the source (those inside
functions too), and what importing each package really loads.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PROVIDERS_DIR = Path(__file__).resolve().parent.parent / "providers"
PACKAGES = sorted(p.parent.name for p in PROVIDERS_DIR.glob("*/__init__.py"))
ALLOWED_CORE = ("prewarm_cli.plugin", "prewarm_cli.errors")
# Modules whose loading would mean a provider reaches past the plugin API.
FORBIDDEN_CORE = (
    "prewarm_cli.cli",
    "prewarm_cli.commands",
    "prewarm_cli.engine",
    "prewarm_cli.config",
)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every absolute import in a file."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.extend((node.lineno, f"{node.module}.{alias.name}") for alias in node.names)
    return found


def is_allowed(module: str, package: str) -> bool:
    top = module.split(".")[0]
    if top == "prewarm_cli":
        allowed = module in ALLOWED_CORE or module.startswith(tuple(f"{m}." for m in ALLOWED_CORE))
        return allowed or module == "prewarm_cli.__version__"
    return top == package or not top.startswith("prewarm")


def test_every_provider_package_is_found() -> None:
    assert {"prewarm_aws", "prewarm_edgeone", "prewarm_qiniu"} <= set(PACKAGES)


@pytest.mark.parametrize("package", PACKAGES)
def test_import_statements_reach_only_the_plugin_api(package: str) -> None:
    wrong = [
        f"{path.relative_to(PROVIDERS_DIR)}:{line}: {module}"
        for path in sorted((PROVIDERS_DIR / package).rglob("*.py"))
        for line, module in imported_modules(path)
        if not is_allowed(module, package)
    ]
    assert wrong == []


def test_the_import_check_catches_what_it_should() -> None:
    assert is_allowed("prewarm_cli.plugin.Provider", "prewarm_x")
    assert is_allowed("prewarm_cli.errors.ConfigError", "prewarm_x")
    assert is_allowed("prewarm_x.client.Api", "prewarm_x")
    assert is_allowed("httpx", "prewarm_x")
    assert not is_allowed("prewarm_cli.config.state_dir", "prewarm_x")
    assert not is_allowed("prewarm_cli.urls.to_ascii", "prewarm_x")
    assert not is_allowed("prewarm_cli.engine", "prewarm_x")
    assert not is_allowed("prewarm_cli.pluginator", "prewarm_x")
    assert not is_allowed("prewarm_y.provider.YProvider", "prewarm_x")


@pytest.mark.parametrize("package", PACKAGES)
def test_importing_a_provider_loads_no_other_part(package: str) -> None:
    modules = sorted(
        f"{package}.{p.stem}" if p.stem != "__init__" else package
        for p in (PROVIDERS_DIR / package).glob("*.py")
    )
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print('\\n'.join(sorted(sys.modules)))\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert r.returncode == 0, r.stderr
    loaded = r.stdout.split()
    assert package in loaded  # the check saw the import
    reached = [
        m
        for m in loaded
        if m.startswith(FORBIDDEN_CORE)
        or (
            m.split(".")[0].startswith("prewarm_")
            and m.split(".")[0] not in ("prewarm_cli", package)
        )
    ]
    assert reached == []


def test_the_engine_hands_providers_their_state_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prewarm_cli.config import load_config
    from prewarm_cli.engine.workspace import build_provider

    monkeypatch.setenv("PREWARM_STATE_DIR", str(tmp_path / "state"))
    config = tmp_path / "config.toml"
    config.write_text('[providers.q]\ntype = "qiniu"\naccess_key = "a"\nsecret_key = "b"\n')
    provider = build_provider(load_config(str(config)), "q", lambda message: None)
    assert provider.state_dir == tmp_path / "state"
    provider.attach_state_dir(tmp_path / "elsewhere")
    assert provider.state_dir == tmp_path / "elsewhere"
