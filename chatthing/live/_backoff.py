"""
L{Backoff}: how long a client waits before each reconnection attempt (the
twin of C{js/live/backoff.js}).
"""

import random
from typing import Callable


class Backoff:
    """
    Exponential back-off with jitter, as the browser's: the n-th delay is
    drawn from [d/2, d] where d = min(cap, base * 2**n), so the first retry
    comes within C{base} seconds and the clients of a restarted server do
    not all knock at once.
    """

    def __init__(self, base: float = 0.5, cap: float = 15.0,
                 random: Callable[[], float] = random.random) -> None:
        self.base = base
        self.cap = cap
        self.random = random
        self.attempts = 0

    def next(self) -> float:
        """
        The delay, in seconds, before the next attempt.
        """
        ceiling = min(self.cap, self.base * 2 ** self.attempts)
        self.attempts += 1
        return ceiling / 2 + self.random() * ceiling / 2

    def reset(self) -> None:
        """
        Start again from the shortest delay (after a successful connection).
        """
        self.attempts = 0
