"""
L{TokenBucket}: how fast one connection may send frames.
"""

from typing import Callable


class TokenBucket:
    """
    Holds up to C{burst} tokens, refilled at C{rate} tokens a second; each
    frame takes one.  A page may send a short burst at any speed, and keep
    up C{rate} frames a second for ever; past that its frames are refused
    until tokens come back.
    """

    __slots__ = ("rate", "burst", "clock", "tokens", "_updated")

    def __init__(self, rate: float, burst: int, clock: Callable[[], float]) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.tokens = float(burst)
        self._updated = clock()

    def take(self) -> bool:
        """
        Take a token if there is one; whether there was.
        """
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self._updated) * self.rate)
        self._updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False
