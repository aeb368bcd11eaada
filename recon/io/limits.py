"""Checks a reader makes before trusting what a file claims: memory it would need, header vs data.

A header can claim any matrix size; allocating what it claims before comparing with the memory
the machine has turns a 2 MB file into an out-of-memory kill. `check_memory` refuses such a
file with the estimate and the limit in one line (`--max-memory` raises the limit). The header
checks turn an encodedSpace that disagrees with the stored k-space, or a reconSpace under 4x4, into
an `InputError` instead of a silently misplaced mask or an empty image.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Sequence

from recon.io.errors import InputError

#: Smallest recon matrix per axis: the centre pixel (`n // 2`, where the slice position lies)
#: needs a pixel on either side; real scans have 64 or more.
MIN_RECON_MATRIX = 4

_UNITS = {"": 1, "B": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def parse_size(text: str | int | float) -> int:
    """Bytes from `8G`, `512M`, `2.5GiB`, `1000000` (binary units); ValueError otherwise."""
    if isinstance(text, (int, float)):
        value, unit = float(text), ""
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)(?:i?B)?\s*", str(text), re.IGNORECASE)
        if match is None:
            raise ValueError(f"not a memory size: {text!r} (expected e.g. 512M, 8G, 1.5T)")
        value, unit = float(match.group(1)), match.group(2).upper()
    size = int(value * _UNITS[unit])
    if size <= 0:
        raise ValueError(f"memory size must be positive, got {text!r}")
    return size


#: cgroup v2 and v1 memory limit / usage files: inside a container MemAvailable shows the whole machine's memory.
CGROUP_FILES = (
    ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
    ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
)


def _mem_available() -> int:
    """Bytes the kernel reports as available (MemAvailable), else total physical memory."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def host_memory() -> tuple[int, str]:
    """(bytes, what limits them) this process may still allocate on the host: the smallest of the
    kernel's MemAvailable, what is left under a container's cgroup memory limit, and what is left
    under an address-space limit (`ulimit -v`)."""
    limits = [(_mem_available(), "available memory")]
    for limit_file, usage_file in CGROUP_FILES:
        try:
            limit, usage = int(Path(limit_file).read_text()), int(Path(usage_file).read_text())
        except (OSError, ValueError):
            continue
        limits.append((limit - usage, "memory left under the container's limit"))
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            status = Path("/proc/self/status").read_text()
            used = next(int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmSize:"))
            limits.append((soft - used, "address space left under ulimit -v"))
    except (ImportError, OSError, ValueError, StopIteration):
        pass
    free, where = min(limits)
    return max(free, 0), where


def available_memory() -> int:
    """Bytes this process may still allocate on the host (`host_memory`)."""
    return host_memory()[0]


def format_bytes(n: float) -> str:
    """`17179869184` -> `16.0 GiB`."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"


def check_memory(path: str | os.PathLike[str], needed: int, what: str, max_memory: int | None = None) -> None:
    """InputError when `needed` bytes exceed `max_memory` (default: the available memory)."""
    limit, source = host_memory() if max_memory is None else (int(max_memory), "--max-memory")
    if needed > limit:
        raise InputError(
            path,
            f"{what} needs about {format_bytes(needed)}, more than the {format_bytes(limit)} limit "
            f"({source}); refused before allocating (raise it with --max-memory SIZE if the file is genuine)",
        )


def check_fastmri_header(path: str | os.PathLike[str], encoded: Sequence[int], recon: Sequence[int], kspace_shape: Sequence[int]) -> None:
    """InputError when encodedSpace (x, y) differs from the k-space (rows, cols) or reconSpace is empty.

    fastMRI derives the padding columns from encodedSpace y, so a disagreement misplaces the mask
    (most acquired columns zeroed: a much darker image); a 0-sized reconSpace crops to nothing.
    """
    rows, cols = int(kspace_shape[-2]), int(kspace_shape[-1])
    if (int(encoded[0]), int(encoded[1])) != (rows, cols):
        raise InputError(
            path,
            f"header encodedSpace {encoded[0]}x{encoded[1]} disagrees with the k-space matrix {rows}x{cols}; "
            "the padding columns cannot be trusted",
        )
    if int(recon[0]) > rows or int(recon[1]) > cols:
        raise InputError(path, f"header reconSpace {recon[0]}x{recon[1]} is larger than the k-space matrix {rows}x{cols}; "
                               "the image cannot be cropped to it")
    if int(recon[0]) < MIN_RECON_MATRIX or int(recon[1]) < MIN_RECON_MATRIX:
        raise InputError(path, f"header reconSpace {recon[0]}x{recon[1]} is too small; expected at least "
                               f"{MIN_RECON_MATRIX}x{MIN_RECON_MATRIX} (fastMRI: 320x320)")
