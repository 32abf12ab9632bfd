"""Minimal progress reporting on stderr (stdout is reserved for data)."""

from __future__ import annotations

import sys
import time


class Progress:
    """A one-line progress bar for a phase with a known amount of work."""

    def __init__(self, label: str, total: int, enabled: bool, unit: str = "tokens"):
        self.label, self.total, self.enabled, self.unit = label, max(int(total), 1), enabled, unit
        # A redrawn bar only makes sense on a terminal; logs get one line per phase.
        self.live = enabled and sys.stderr.isatty()
        self.done = 0
        self.started = time.perf_counter()
        self._last_draw = 0.0

    def update(self, done: int) -> None:
        self.done = done
        now = time.perf_counter()
        if self.live and now - self._last_draw > 0.2:
            self._last_draw = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        frac = min(self.done / self.total, 1.0)
        width = 28
        bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
        rate = self.done / max(now - self.started, 1e-9)
        sys.stderr.write(
            f"\r{self.label:<12} [{bar}] {frac:6.1%} {self.done:,}/{self.total:,} {self.unit} ({rate:,.0f}/s)"
        )
        sys.stderr.flush()

    def close(self) -> float:
        elapsed = time.perf_counter() - self.started
        if self.enabled:
            self._draw(time.perf_counter())
            sys.stderr.write(f"  {elapsed:.1f}s\n")
            sys.stderr.flush()
        return elapsed
