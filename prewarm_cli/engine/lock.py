"""One process per job: an advisory lock on a file in the state directory.

The lock is the operating system's (``flock``), so it is released when the process
ends in any way, kill -9 included: a lock file left by a dead process is simply
taken over. The file holds the pid of its holder, to name it in the refusal.
`status` asks whether anyone holds it by taking it shared for an instant (``holder``).
The holder removes the file when it lets go, so that the state directory keeps no file
per job; whoever takes the lock then checks that the file it locked is still the one
at the path (another process may have removed it meanwhile), and opens it again if not.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from types import TracebackType

from prewarm_cli.errors import JobInUse, JournalError

PEEK_GRACE = 0.5  # seconds a run waits for a `status` that peeks at the lock to let go


class JobLock:
    """Held while a process sends for a job; ``with JobLock(dir, job): ...``."""

    def __init__(self, state_dir: Path, job_id: str) -> None:
        self.path = state_dir / "locks" / f"{job_id}.lock"
        self.job_id = job_id
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            self._acquire()
        except OSError as exc:  # the state directory cannot take the file (full, read-only)
            raise JournalError(
                f"cannot write the job lock {self.path}: {exc.strerror or exc}",
                hint=f"free some space in {self.path.parent}, or set PREWARM_STATE_DIR to a"
                " directory that can take it",
            ) from exc

    def _acquire(self) -> None:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no advisory locks here
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            return
        # A `status` that peeks holds it shared for an instant: that is waited out. So is a
        # file its holder removed as this run locked it (the path's file decides); every
        # such loss is another run's turn, so both end by the same deadline.
        deadline = time.monotonic() + PEEK_GRACE
        while True:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            except FileNotFoundError:  # the directory was removed meanwhile: made again
                if time.monotonic() >= deadline:
                    raise
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                locked = True
            except OSError:
                locked = False
            try:
                if locked and _is_at(fd, self.path):
                    os.ftruncate(fd, 0)
                    os.write(fd, str(os.getpid()).encode())
                    self._fd = fd
                    return
                in_use = not locked and time.monotonic() >= deadline
                holder = os.read(fd, 64).decode(errors="replace").strip() if in_use else ""
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
            if in_use:
                raise JobInUse(
                    f"job {self.job_id} is in use by process {holder or 'another process'}",
                    hint="wait for that process to finish (or stop it), then run the command again",
                    job_id=self.job_id,
                )
            if time.monotonic() >= deadline:  # the path's file keeps changing under this run
                raise JobInUse(
                    f"job {self.job_id} is in use by another process",
                    hint="wait for the other runs of this job to finish, then run the command"
                    " again",
                    job_id=self.job_id,
                )
            time.sleep(0.01 if not locked else 0)

    def holder(self) -> str | None:
        """The process working on the job (its pid, as the file says), or None when nobody
        holds the lock. Taken shared and let go at once: a run starting meanwhile waits."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return None  # nobody holds it: the holder removes it as it lets go
        except OSError:
            return "another process"  # cannot tell: as if one held it
        try:
            try:
                import fcntl
            except ImportError:  # pragma: no cover - Windows: no advisory locks here
                return "another process"
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                return os.read(fd, 64).decode(errors="replace").strip() or "another process"
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def release(self) -> None:
        """Removes the file while the lock is still held (after closing, another process
        could lock it and lose it to the removal), then lets go by closing it."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            import fcntl  # noqa: F401  (whether there is a lock to keep while removing)
        except ImportError:  # pragma: no cover - Windows: no lock, and no open file removed
            os.close(fd)
            with contextlib.suppress(OSError):
                self.path.unlink(missing_ok=True)
            return
        # Only the file this run locked: if something else removed it, the path's file may
        # be another run's. A file system that cannot remove it leaves it (taken over later).
        with contextlib.suppress(OSError):
            if _is_at(fd, self.path):
                self.path.unlink()
        os.close(fd)

    def __enter__(self) -> JobLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _is_at(fd: int, path: Path) -> bool:
    """Whether the open file ``fd`` is the one at ``path`` now."""
    try:
        at_path = os.stat(path)
    except OSError:  # gone (or its directory), or unreadable: not it
        return False
    mine = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (at_path.st_dev, at_path.st_ino)
