"""
L{Meter}: what one measuring window cost, read by the load generator itself
at the window's edges, so the numbers cover the sending and nothing else
(not the logins before it, nor the servers' start-up).

The servers' CPU time comes from their own accounting in C{/proc}, so
neither the load generator nor anything else on the machine is counted in
it; the load generator's from its own C{process_time}, to tell when it, not
the server, was the bottleneck.
"""

import time
from dataclasses import dataclass, field

from . import procstat


@dataclass(frozen=True)
class Reading:
    """
    The clocks at one moment: wall, the load generator's CPU, the servers'
    CPU and their helpers' (L{None} where they cannot be read).
    """

    wall: float
    own: float
    server: float | None
    helper: float | None
    machine: float | None


@dataclass
class Meter:
    """
    Started at a window's start; L{stop} gives the figures.

    @ivar serverPids: the chat servers' processes (none, when the bench
        targets a server it did not start and was given no C{--server-pid}).
    @ivar helperPids: other processes the servers need (Redis), counted
        apart.
    """

    serverPids: list[int] = field(default_factory=list)
    helperPids: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._measurable = procstat.available()
        self.started = self.read()

    def _cpu(self, pids: list[int]) -> float | None:
        if not pids or not self._measurable:
            return None
        return procstat.totalCpuSeconds(pids)

    def read(self) -> Reading:
        return Reading(time.monotonic(), time.process_time(), self._cpu(self.serverPids),
                       self._cpu(self.helperPids),
                       procstat.machineBusySeconds() if self._measurable else None)

    def stop(self, end: Reading | None = None) -> dict:
        """
        The window's figures, up to now, or up to the reading C{end} (taken
        when the last delivery arrived).
        """
        end = end or self.read()
        start = self.started
        wall = max(end.wall - start.wall, 1e-9)
        own = end.own - start.own

        def spent(before: float | None, after: float | None) -> float | None:
            return after - before if before is not None and after is not None else None

        server = spent(start.server, end.server)
        helper = spent(start.helper, end.helper)
        machine = spent(start.machine, end.machine)
        # What the machine's CPUs did besides the load generator and the
        # servers (and the kernel's work for them that no process is
        # charged with): another program competing for the CPUs makes every
        # figure of the window doubtful.
        other = (machine - own - (server or 0) - (helper or 0)
                 if machine is not None and server is not None else None)
        return {
            "seconds": wall,
            "loadCpuSeconds": own,
            "loadCpuFraction": own / wall,
            "serverCpuSeconds": server,
            "redisCpuSeconds": helper,
            "otherCpuFraction": max(0.0, other) / wall if other is not None else None,
        }


def residentBytes(pids: list[int]) -> int | None:
    """
    The servers' resident memory together, if it can be read.
    """
    if not pids or not procstat.available():
        return None
    return procstat.totalResidentBytes(pids)


def perDelivery(figures: dict, deliveries: int) -> None:
    """
    Add the CPU microseconds per delivery to a window's C{figures}.
    """
    for name in ("server", "redis"):
        seconds = figures.get(f"{name}CpuSeconds")
        figures[f"{name}CpuMicrosPerDelivery"] = (
            seconds * 1e6 / deliveries if seconds is not None and deliveries else None
        )


def percentiles(samples: list[float], points: int = 200) -> dict:
    """
    p50, p90, p99 and max of C{samples}, and C{points} + 1 evenly spaced
    quantiles (0 to 1) for drawing the distribution.
    """
    if not samples:
        return {"samples": 0, "p50": None, "p90": None, "p99": None, "max": None, "quantiles": []}
    ordered = sorted(samples)
    last = len(ordered) - 1

    def at(q: float) -> float:
        return ordered[min(last, round(q * last))]

    return {
        "samples": len(ordered),
        "p50": at(0.50), "p90": at(0.90), "p99": at(0.99), "max": ordered[-1],
        "quantiles": [at(i / points) for i in range(points + 1)],
    }
