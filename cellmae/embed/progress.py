"""A rich progress bar that counts wells and shows wells/s and images/s."""

from __future__ import annotations

import time

from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class _RateColumn(ProgressColumn):
    """wells/s from rich's own speed estimate, and images/s from the task's ``images`` field."""

    def render(self, task: Task) -> Text:
        wells = f"{task.speed:.2f} wells/s" if task.speed else "-- wells/s"
        elapsed = task.elapsed or 0.0
        images = task.fields.get("images", 0)
        ips = f"{images / elapsed:.1f} img/s" if elapsed > 0 and images else "-- img/s"
        return Text(f"{wells}  {ips}", style="progress.data.speed")


class WellProgress:
    """Context manager: ``advance(wells, images)``; a no-op when disabled (non-zero ranks, tests)."""

    def __init__(self, total_wells: float, *, enabled: bool = True, description: str = "embed"):
        self.total, self.enabled, self.description = total_wells, enabled, description
        self._progress: Progress | None = None
        self.images = 0
        self.started = time.perf_counter()

    def __enter__(self) -> WellProgress:
        if self.enabled:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TextColumn("{task.completed:.0f}/{task.total:.0f} wells"),
                _RateColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                transient=False,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task(self.description, total=self.total, images=0)
        return self

    def advance(self, wells: float, images: int) -> None:
        self.images += images
        if self._progress is not None:
            self._progress.update(self._task, advance=wells, images=self.images)

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)
