"""The one error type for bad input: it names the file and the problem in one line."""

from __future__ import annotations

import os


class InputError(Exception):
    """A file that cannot be used as given. `str(err)` is `"<path>: <problem>"`."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = os.fspath(path)
        self.problem = " ".join(str(problem).split())
        super().__init__(f"{self.path}: {self.problem}")

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        """Pickle as (path, problem), so the error crosses process boundaries (Dask, DataLoader)."""
        return (type(self), (self.path, self.problem))
