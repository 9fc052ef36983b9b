"""
L{TimerWheel}: the timers every page connection keeps (Autobahn's
heartbeat and handshake timeouts, the runtime's wait for a "hello") on one
reactor call per tick of time, not one each.

An idle page always has a timer armed: the next heartbeat ping.  On the
reactor that is a C{DelayedCall}, an object with a dict, three bound
methods and a dict of keywords, some 600 bytes a page with its wrapper,
and a place in the reactor's heap that every connect, ping and pong
reorders.  Here a timer is a L{WheelTimer} of two slots put in the list of
the tick its deadline falls in, rounded up; each tick with timers in it
has one C{DelayedCall}.  So ten thousand pages pinging every 15 seconds
hold ten thousand small timers and at most 15 / L{TICK} reactor calls.

A timer fires at the end of its tick, never before its deadline and at
most L{TICK} seconds after it (unlike txaio's batched timer, which floors
each deadline to a whole second, so that a timeout under a second may
fire at once).  A cancelled timer stays in its tick's list, holding
nothing, until that tick comes; a tick whose timers were all cancelled
(the wait for a "hello", say) is let go at once, with its reactor call.
"""

import math
from typing import Any, Callable

from twisted.logger import Logger

log = Logger()

#: Seconds between the deadlines a wheel tells apart.
TICK = 0.05

#: How far a deadline may be past a tick's end, in ticks, and still count
#: as that tick's (the sum of seconds in floating point is not exact).
_SLACK = 1e-6


class _Tick:
    """
    The timers of one tick, its reactor call, and how many of them are
    still to fire: once none is, the call is cancelled and the tick let go.
    """

    __slots__ = ("wheel", "index", "timers", "live", "call")

    def __init__(self, wheel: "TimerWheel", index: int) -> None:
        self.wheel = wheel
        self.index = index
        self.timers: list[WheelTimer] = []
        self.live = 0
        self.call: Any = None


class WheelTimer:
    """
    One call a L{TimerWheel} is to make, until cancelled or made.
    """

    __slots__ = ("func", "args", "tick")

    def __init__(self, func: Callable[..., Any], args: tuple, tick: _Tick) -> None:
        self.func: Callable[..., Any] | None = func
        self.args = args
        self.tick: _Tick | None = tick

    def active(self) -> bool:
        """
        Whether the call is still to be made.
        """
        return self.func is not None

    def cancel(self) -> None:
        """
        Do not make the call (nothing happens if it was made or cancelled).
        """
        tick, self.tick = self.tick, None
        self.func = None
        self.args = ()
        if tick is not None:
            tick.live -= 1
            if tick.live == 0:
                tick.wheel._drop(tick)


class TimerWheel:
    """
    Timers on C{reactor}'s clock, each fired in the first tick of C{tick}
    seconds that ends at or after its deadline; Autobahn's
    C{factory._batched_timer} (it asks only C{call_later} and C{cancel}).
    """

    def __init__(self, reactor: Any, tick: float = TICK) -> None:
        self.reactor = reactor
        self.tick = tick
        self._ticks: dict[int, _Tick] = {}

    def __len__(self) -> int:
        """
        The timers waiting, cancelled ones included.
        """
        return sum(len(tick.timers) for tick in self._ticks.values())

    def calls(self) -> int:
        """
        The reactor calls the wheel has waiting (one a tick with a timer to fire).
        """
        return len(self._ticks)

    def call_later(self, delay: float, func: Callable[..., Any], *args: Any) -> WheelTimer:
        """
        Call C{func(*args)} once C{delay} seconds have passed.
        """
        now = self.reactor.seconds()
        index = math.ceil((now + delay) / self.tick - _SLACK)
        tick = self._ticks.get(index)
        if tick is None:
            tick = self._ticks[index] = _Tick(self, index)
            # (Rounded to the nanosecond: 300 ticks of 0.05 s are 15.000000000000002 s.)
            tick.call = self.reactor.callLater(
                max(0.0, round(index * self.tick, 9) - now), self._fire, tick)
        timer = WheelTimer(func, args, tick)
        tick.timers.append(timer)
        tick.live += 1
        return timer

    def move(self, timer: WheelTimer, delay: float) -> WheelTimer:
        """
        Make C{timer}'s call C{delay} seconds from now instead: the timer
        that makes it from now on (C{timer} itself is cancelled).  Nothing
        happens to a timer that has fired or was cancelled.

        A timer moved in the turn it was made (a connection's first
        heartbeat, which Autobahn arms before the runtime can say when it
        should come) is taken out of its tick's list at once, rather than
        left there, holding nothing, for as long as that tick is away.
        """
        func, args, tick = timer.func, timer.args, timer.tick
        if func is None:
            return timer
        if tick is not None and tick.timers and tick.timers[-1] is timer:
            tick.timers.pop()
        timer.cancel()
        return self.call_later(delay, func, *args)

    def _drop(self, tick: _Tick) -> None:
        # Every timer of the tick was cancelled: nothing to fire.
        if self._ticks.get(tick.index) is tick:
            del self._ticks[tick.index]
            if tick.call is not None and tick.call.active():
                tick.call.cancel()

    def _fire(self, tick: _Tick) -> None:
        self._ticks.pop(tick.index, None)
        tick.call = None
        for timer in tick.timers:
            func, args = timer.func, timer.args
            if func is None:
                continue
            timer.tick = None  # fired, not cancelled: the tick is gone already
            timer.cancel()
            # One page's failing timer must not keep the others' from firing.
            try:
                func(*args)
            except Exception:
                log.failure("timer {func!r} raised", func=func)
