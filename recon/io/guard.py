"""Reads that may never return, tried first in a forked child with a time limit.

Some damaged files make a library loop forever inside one call (HDF5 on a zeroed global heap,
a parser's regular expression on a corrupted text header), where no Python-level timeout can
stop it. `finishes` runs the same work in a forked child and kills it after a limit that grows
with the file's size; the parent then does the real work, knowing that it ends. An exception in
the child is left for the parent's own attempt to report (in the parent's words).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Callable

from recon.io.errors import InputError

#: Seconds a guarded read may take: a floor, plus the file's size at a slow disk's rate.
READ_FLOOR_S = 5.0
READ_RATE_BYTES_S = 50e6


def time_limit(path: str | os.PathLike[str]) -> float:
    """Seconds a guarded read of `path` may take (`READ_FLOOR_S` + size / `READ_RATE_BYTES_S`)."""
    return READ_FLOOR_S + Path(path).stat().st_size / READ_RATE_BYTES_S


def finishes(path: str | os.PathLike[str], work: Callable[[], object], what: str, why: str) -> None:
    """InputError (`reading <what> did not finish within N s; <why>`) unless `work()` returns or
    raises within `time_limit(path)` in a forked child. The child's stdout and stderr go to
    /dev/null (a library's prints are the parent's to capture). Without `os.fork` (not POSIX)
    nothing is guarded."""
    if not hasattr(os, "fork"):
        return
    limit = time_limit(path)
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1)
            os.dup2(null, 2)
            work()
        except BaseException:  # noqa: BLE001 - the parent's own attempt reports what is wrong
            code = 2
        os._exit(code)
    deadline = time.monotonic() + limit
    while True:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise InputError(path, f"reading {what} did not finish within {limit:.0f} s; {why}")
        time.sleep(0.01)
