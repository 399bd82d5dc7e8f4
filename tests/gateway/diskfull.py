"""A real full disk for tests: a small tmpfs mounted for the test, filled and freed on demand.

Needs root (the test machines run as root); a mount that fails is a test failure, never a skip.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SmallFs", "small_fs"]


@dataclass
class SmallFs:
    path: Path

    @property
    def filler(self) -> Path:
        return self.path / "filler.bin"

    def fill(self) -> int:
        """Write a file until the file system refuses: nothing else fits afterwards."""
        written = 0
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for size in (1 << 20, 64 << 10, 4096, 512, 1):
                block = b"\0" * size
                while True:
                    try:
                        written += os.write(fd, block)
                    except OSError as exc:
                        if exc.errno != errno.ENOSPC:
                            raise
                        break
        finally:
            os.close(fd)
        return written

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)


@contextlib.contextmanager
def small_fs(path: Path, size_bytes: int) -> Iterator[SmallFs]:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_bytes},mode=0755", "tmpfs", str(path)],
        check=True,
    )
    try:
        yield SmallFs(path)
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)
