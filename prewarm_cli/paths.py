"""Where prewarm keeps things: the config file and the local state directory (DESIGN.md §3).

Created private (directories 0700). Imports only the standard library and errors, so that
the config loader and the plugin API can both use it without needing each other.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path

from prewarm_cli.errors import ConfigError

APP_NAME = "prewarm"
CONFIG_FILENAME = "config.toml"


def _is_windows() -> bool:
    """Whether platform-specific Windows locations apply."""
    return os.name == "nt"


def _home(env: Mapping[str, str]) -> Path:
    """The user's home directory, honouring $HOME in ``env``."""
    home = env.get("HOME")
    return Path(home) if home else Path.home()


def _xdg(env: Mapping[str, str], var: str) -> Path | None:
    """An XDG base directory variable when set to an absolute path (the spec ignores others)."""
    value = env.get(var)
    if value and os.path.isabs(value):
        return Path(value)
    return None


def config_path(
    explicit: str | None = None, env: Mapping[str, str] | None = None
) -> tuple[Path, str]:
    """Where the config file is, and how that was decided: --config, $PREWARM_CONFIG or default."""
    env = os.environ if env is None else env
    if explicit:
        return Path(explicit).expanduser(), "--config"
    if env.get("PREWARM_CONFIG"):
        return Path(env["PREWARM_CONFIG"]).expanduser(), "$PREWARM_CONFIG"
    xdg = _xdg(env, "XDG_CONFIG_HOME")
    if xdg is not None:
        return xdg / APP_NAME / CONFIG_FILENAME, "default"
    if _is_windows():
        import platformdirs

        base = Path(platformdirs.user_config_dir(APP_NAME, appauthor=False))
        return base / CONFIG_FILENAME, "default"
    return _home(env) / ".config" / APP_NAME / CONFIG_FILENAME, "default"


def state_dir(env: Mapping[str, str] | None = None, create: bool = True) -> Path:
    """The local state directory (the journal), created with mode 0700 when ``create``."""
    env = os.environ if env is None else env
    if env.get("PREWARM_STATE_DIR"):
        path = Path(env["PREWARM_STATE_DIR"]).expanduser()
    elif (xdg := _xdg(env, "XDG_STATE_HOME")) is not None:
        path = xdg / APP_NAME
    elif _is_windows():
        import platformdirs

        path = Path(platformdirs.user_state_dir(APP_NAME, appauthor=False))
    else:
        path = _home(env) / ".local" / "state" / APP_NAME
    if create:
        try:
            make_private_dirs(path)
        except OSError as exc:
            raise ConfigError(
                f"{path}: cannot create the state directory: {exc.strerror or exc} "
                "(set PREWARM_STATE_DIR to a writable directory)"
            ) from exc
    return path


def make_private_dirs(path: Path) -> None:
    """Create ``path`` and its missing parents, each with mode 0700."""
    missing: list[Path] = []
    current = path
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(directory, 0o700)
    if not path.is_dir():
        raise NotADirectoryError(20, "Not a directory", str(path))


def replace_private(path: Path, data: bytes) -> None:
    """Writes ``data`` to ``path`` at once: a reader sees the old file or the new one, never
    half of it. The file is 0600 from its creation (it may hold secrets); OSError as the
    system gives it, with nothing left behind."""
    tmp = path.parent / f".{path.name}.{os.urandom(6).hex()}.tmp"
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
        fd = os.open(tmp, flags, 0o600)
        try:
            if hasattr(os, "fchmod"):
                os.fchmod(fd, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def create_private(path: Path) -> None:
    """A state file exists with mode 0600 before SQLite opens it (its -wal/-shm follow)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return  # SQLite's own error names the problem (read-only directory, ...)
    try:
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    for suffix in ("-wal", "-shm"):
        try:
            extra = Path(f"{path}{suffix}")
            if extra.exists() and extra.stat().st_mode & 0o077:
                extra.chmod(0o600)
        except OSError:
            pass
