"""Progress lines for long downloads and unpacks, so a slow init container shows it is alive."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from marserve.archive.limits import MIB, format_size

Report = Callable[[str], None]

#: Work smaller than this finishes quickly enough to need no progress lines.
PROGRESS_THRESHOLD_BYTES = 32 * MIB
#: Without a known total, a line every this many bytes.
PROGRESS_STEP_BYTES = 256 * MIB


@dataclass
class Progress:
    """Counts bytes of one phase and reports every 10% of a known total (else every 256 MiB)."""

    label: str
    total: int | None
    report: Report | None
    done: int = 0
    _next_mark: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self._next_mark = self._step()

    def _step(self) -> int:
        return max(self.total // 10, 1) if self.total else PROGRESS_STEP_BYTES

    def add(self, count: int) -> None:
        self.done += count
        if self.report is None or self.done < self._next_mark:
            return
        if self.total is not None and self.total < PROGRESS_THRESHOLD_BYTES:
            return
        while self._next_mark <= self.done:
            self._next_mark += self._step()
        if self.total:
            percent = min(100, self.done * 100 // self.total)
            self.report(
                f"{self.label}: {percent}% ({format_size(self.done)} of {format_size(self.total)})"
            )
        else:
            self.report(f"{self.label}: {format_size(self.done)}")
