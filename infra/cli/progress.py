"""The command line's progress bar (rich): what `processors.progress.Progress` draws for replay, export
and import, on stderr, with events per second."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from processors.progress import Meter, silent


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        elapsed = task.elapsed or 0.0
        rate = task.fields.get("records", 0) / elapsed if elapsed > 0 else 0.0
        return Text(f"{rate:,.0f} events/s", style="progress.data.speed")


class _Bar:
    def __init__(self, progress: Progress, task: Any) -> None:
        self._progress, self._task, self.records = progress, task, 0

    def advance(self, steps: int, records: int) -> None:
        self.records += records
        self._progress.update(self._task, advance=steps, records=self.records)


@contextmanager
def bar(description: str, total: int | None) -> Iterator[Meter]:
    """A progress bar over offsets (or events) with events/s."""
    columns = [
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=Console(stderr=True), refresh_per_second=4) as progress:
        yield _Bar(progress, progress.add_task(description, total=total, records=0))


def progress_for(enabled: bool) -> Any:
    """`bar` when the user asked for one, else `processors.progress.silent`."""
    return bar if enabled else silent
