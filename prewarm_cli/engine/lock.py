"""One process per job: an advisory lock on a file in the state directory.

The lock is the operating system's (``flock``), so it is released when the process
ends in any way, kill -9 included: a lock file left by a dead process is simply
taken over. The file holds the pid of its holder, to name it in the refusal.
`status` asks whether anyone holds it by taking it shared for an instant (``holder``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import TracebackType

from prewarm_cli.errors import JobInUse

PEEK_GRACE = 0.5  # seconds a run waits for a `status` that peeks at the lock to let go


class JobLock:
    """Held while a process sends for a job; ``with JobLock(dir, job): ...``."""

    def __init__(self, state_dir: Path, job_id: str) -> None:
        self.path = state_dir / "locks" / f"{job_id}.lock"
        self.job_id = job_id
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no advisory locks here
            self._fd = fd
            return
        # A `status` that peeks holds it shared for an instant: that is waited out.
        deadline = time.monotonic() + PEEK_GRACE
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if time.monotonic() < deadline:
                    time.sleep(0.01)
                    continue
            holder = os.read(fd, 64).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise JobInUse(
                f"job {self.job_id} is in use by process {holder}",
                hint="wait for that process to finish (or stop it), then run the command again",
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def holder(self) -> str | None:
        """The process working on the job (its pid, as the file says), or None when nobody
        holds the lock. Taken shared and let go at once: a run starting meanwhile waits."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return None  # no run ever locked it
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
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = None

    def discard(self) -> None:
        """Releases the lock of a job that was never made, and removes its file: nobody
        else knows the job's id."""
        self.release()
        self.path.unlink(missing_ok=True)

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
