"""A one-line progress bar for :meth:`Job.wait`, drawn only on a terminal."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from ._models import Job

__all__ = ["ProgressBar"]

_WIDTH = 30


class ProgressBar:
    """Draws ``[=====>    ] 12/500 waiting 484 running 4 succeeded 12 dead 0 (4.1s)`` on one
    line of ``stream`` (standard error by default), rewritten in place; ``cancelled N`` joins
    it once tasks are cancelled. Draws nothing when ``stream`` is not a terminal."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = sys.stderr if stream is None else stream
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self.started = time.monotonic()
        self.drawn = False

    def line(self, job: Job) -> str:
        """The bar's text for ``job``."""
        total = max(job.task_count, 1)
        done = job.counts.finished
        filled = min(_WIDTH, done * _WIDTH // total)
        head = ">" if filled < _WIDTH and done > 0 else ""
        bar = ("=" * filled + head).ljust(_WIDTH)[:_WIDTH]
        c = job.counts
        elapsed = time.monotonic() - self.started
        cancelled = f" cancelled {c.cancelled}" if c.cancelled else ""
        return (
            f"[{bar}] {done}/{job.task_count} waiting {c.waiting} running {c.running} "
            f"succeeded {c.succeeded} dead {c.dead}{cancelled} ({elapsed:.1f}s)"
        )

    def __call__(self, job: Job) -> None:
        """Draw the bar for ``job``."""
        if not self.enabled:
            return
        self.stream.write("\r\x1b[2K" + self.line(job))
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        """Clear the bar's line."""
        if self.drawn:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
            self.drawn = False
