"""Batch execution over files: input expansion, per-file errors, summary, in-process or on Dask.

Every file is an independent task. A task function takes one input path and returns a
JSON-serialisable dict; it may raise (`InputError` for bad input, anything else for a bug
or a resource problem): the runner records the failure and goes on with the other files.
On Dask (`workers=N` for a local cluster of single-threaded processes, `scheduler=` for an
existing cluster) a worker's death costs only its in-flight files, which the scheduler
re-runs on another worker.
"""

from __future__ import annotations

import errno
import glob
import os
import stat
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from tqdm import tqdm

from recon.io import InputError
from recon.io.json_file import write_json

TaskFn = Callable[[Path], dict[str, Any]]


@dataclass
class FileResult:
    """Outcome of one input file: status is "ok", "failed" or "skipped"."""

    file: str
    status: str
    reason: str = ""
    seconds: float = 0.0
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status != "failed"


def not_a_file(path: Path) -> str | None:
    """Why `path` cannot be read as an input file, in the user's terms, or None for a regular file
    (or a link to one). Folders count as not a file here; callers that expand them ask first."""
    try:
        st = os.stat(path)
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "is a symbolic link loop"
        if os.path.islink(path):
            return f"is a dangling symbolic link (to {os.readlink(path)})"
        if err.errno == errno.ENOENT:
            return "no such file or folder"
        return f"cannot be read ({err.strerror or err})"
    mode = st.st_mode
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "is a folder, not a file"
    if stat.S_ISFIFO(mode):
        return "is a named pipe (FIFO), not a regular file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "is a device, not a regular file"
    if stat.S_ISSOCK(mode):
        return "is a socket, not a regular file"
    return "is not a regular file"


#: What a folder given as input contributes: HDF5 files (fastMRI, ISMRMRD) and Siemens TWIX files.
INPUT_PATTERNS = ("*.h5", "*.dat")


def expand_inputs(inputs: Sequence[str | os.PathLike[str]], pattern: str | Sequence[str] = INPUT_PATTERNS) -> tuple[list[Path], list[FileResult]]:
    """Files, folders (their entries matching `pattern`, one or several, sorted) and globs -> unique paths in order.

    Inputs that match nothing, and entries that are not regular files (folders, FIFOs, devices,
    dangling links, link loops named like inputs), come back as failed results, so a batch
    reports them instead of silently doing less work.
    """
    patterns = (pattern,) if isinstance(pattern, str) else tuple(pattern)
    found: list[Path] = []
    failed: list[FileResult] = []
    seen: set[Path] = set()

    def add(p: Path) -> None:
        problem = not_a_file(p)
        if problem is not None:
            failed.append(FileResult(str(p), "failed", problem))
            return
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            found.append(p)

    for item in inputs:
        text = os.fspath(item)
        path = Path(text)
        if path.is_dir():
            matches = sorted({q for p in patterns for q in path.glob(p)})
            if not matches:
                failed.append(FileResult(text, "failed", f"folder has no {' or '.join(patterns)} files"))
            for q in matches:
                add(q)
        elif glob.has_magic(text) and not os.path.lexists(text):
            matches = sorted(Path(q) for q in glob.glob(text))
            if not matches:
                failed.append(FileResult(text, "failed", "pattern matches no files"))
            for q in matches:
                add(q)
        else:
            add(path)
    return found, failed


def run_one(task: TaskFn, path: Path) -> FileResult:
    """Run `task(path)`, turning any exception into a failed `FileResult` with a one-line reason."""
    start = time.perf_counter()
    try:
        out = task(path) or {}
    except InputError as err:
        return FileResult(str(path), "failed", err.problem, time.perf_counter() - start)
    except Exception as err:  # noqa: BLE001 - one bad file must not stop the batch
        reason = f"{type(err).__name__}: {' '.join(str(err).split())}"
        if os.environ.get("RECON_DEBUG"):
            traceback.print_exc()
        return FileResult(str(path), "failed", reason, time.perf_counter() - start)
    status = "skipped" if out.get("skipped") else "ok"
    return FileResult(str(path), status, out.get("reason", ""), time.perf_counter() - start, out)


def _iter_local(task: TaskFn, files: Sequence[Path]) -> Iterator[FileResult]:
    for path in files:
        yield run_one(task, path)


def _iter_dask(task: TaskFn, files: Sequence[Path], workers: int | None, scheduler: str | None) -> Iterator[FileResult]:
    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler:
        client = Client(scheduler)
    else:
        cluster = LocalCluster(
            n_workers=int(workers or 1),
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
        )
        client = Client(cluster)
    try:
        futures = [client.submit(run_one, task, path, key=f"recon-{i}-{path.name}", pure=False) for i, path in enumerate(files)]
        by_key = {f.key: p for f, p in zip(futures, files)}
        for fut in as_completed(futures):
            try:
                yield fut.result()
            except Exception as err:  # noqa: BLE001 - e.g. KilledWorker after repeated deaths
                yield FileResult(str(by_key[fut.key]), "failed", f"{type(err).__name__}: {err}")
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def run_batch(
    task: TaskFn,
    files: Sequence[Path],
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool = True,
    desc: str = "files",
) -> list[FileResult]:
    """Run `task` over `files`, in-process or on Dask; results in input order.

    `workers` > 0 starts a local Dask cluster of that many single-threaded processes;
    `scheduler` ("tcp://host:8786") uses an existing cluster. Results stream back as files
    finish (the progress bar advances per file).
    """
    if scheduler or (workers and workers > 0):
        stream: Iterable[FileResult] = _iter_dask(task, files, workers, scheduler)
    else:
        stream = _iter_local(task, files)
    order = {str(p): i for i, p in enumerate(files)}
    results: list[FileResult] = []
    with tqdm(total=len(files), desc=desc, unit="file", disable=not progress) as bar:
        for res in stream:
            results.append(res)
            bar.update(1)
    results.sort(key=lambda r: order.get(r.file, len(order)))
    return results


def summary_table(results: Sequence[FileResult]) -> str:
    """Plain-text table: one row per file with status, seconds and why it was skipped (the
    reasons of failures are printed once, as `error:` lines, by the command)."""
    width = max([len(Path(r.file).name) for r in results] + [4])
    lines = [f"{'file':<{width}}  {'status':<7}  {'seconds':>8}  reason"]
    for r in results:
        lines.append(f"{Path(r.file).name:<{width}}  {r.status:<7}  {r.seconds:8.2f}  {r.reason if r.status == 'skipped' else ''}".rstrip())
    n_fail = sum(r.status == "failed" for r in results)
    n_skip = sum(r.status == "skipped" for r in results)
    lines.append(f"{len(results) - n_fail - n_skip} ok, {n_skip} skipped, {n_fail} failed")
    return "\n".join(lines)


def write_summary(results: Sequence[FileResult], path: str | os.PathLike[str], extra: dict[str, Any] | None = None) -> Path:
    """Write `summary.json` (per file: status, reason, seconds, outputs) atomically."""
    doc = {
        **(extra or {}),
        "files": [asdict(r) for r in results],
        "ok": sum(r.status == "ok" for r in results),
        "skipped": sum(r.status == "skipped" for r in results),
        "failed": sum(r.status == "failed" for r in results),
    }
    write_json(path, doc)
    return Path(path)
