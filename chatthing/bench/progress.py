"""
L{ProgressBar}: a plain-text bar on standard error, redrawn in place with
C{\\r}, so someone running the bench sees it work through thousands of
connections and messages without a progress library.
"""

import sys
import time
from typing import TextIO


class ProgressBar:
    """
    C{label [#####.....] done/total  seconds}, or C{label done  seconds}
    when there is no total to reach.

    On a terminal it is redrawn at most ten times a second; into a file or
    a pipe (a test, a CI log) only its last state is written, once, so logs
    are not filled with redraws.
    """

    width = 30

    def __init__(self, label: str, total: int, stream: TextIO | None = None) -> None:
        self.label = label
        self.total = max(total, 0)
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self.interactive = self.stream.isatty()
        self.started = time.monotonic()
        self._drawn = 0.0
        self._finished = False

    def advance(self, count: int = 1) -> None:
        self.update(self.done + count)

    def update(self, done: int) -> None:
        self.done = done
        now = time.monotonic()
        if self.interactive and now - self._drawn >= 0.1:
            self._drawn = now
            self.stream.write("\r" + self._line(now))
            self.stream.flush()

    def finish(self, note: str = "") -> None:
        """
        Draw the final state, and end the line.
        """
        if self._finished:
            return
        self._finished = True
        line = self._line(time.monotonic()) + (f"  {note}" if note else "")
        self.stream.write(("\r" if self.interactive else "") + line + "\n")
        self.stream.flush()

    def _line(self, now: float) -> str:
        elapsed = f"{now - self.started:5.1f}s"
        if not self.total:  # nothing to fill: a count
            return f"{self.label:<28} {self.done}  {elapsed}"
        filled = min(self.width, self.width * self.done // self.total)
        bar = "#" * filled + "." * (self.width - filled)
        return f"{self.label:<28} [{bar}] {self.done}/{self.total}  {elapsed}"
