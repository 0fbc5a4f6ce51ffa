"""How long-running commands (replay, export, import) report progress, without drawing anything.

A command takes a `Progress`: called with a description and a total (offsets or events; None when
unknown), it gives a context manager whose `Meter` the command advances. The command line passes one
that draws a progress bar (`infra/cli/progress.py`); the default, `silent`, reports nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol


class Meter(Protocol):
    def advance(self, steps: int, records: int) -> None:
        """`steps` more of the total done, `records` more records read."""


class Progress(Protocol):
    def __call__(self, description: str, total: int | None) -> AbstractContextManager[Meter]: ...


class _Silent:
    def advance(self, steps: int, records: int) -> None:
        pass


@contextmanager
def silent(description: str, total: int | None) -> Iterator[Meter]:
    yield _Silent()
