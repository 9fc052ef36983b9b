"""
The parts of the bench's report that issue 14 added: its targets, each
chatthing's figure against a peer's in the same run, and the growth
series' table; and how the report lines up a text table.
"""

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Column:
    """
    One column of the growth table: a figure of one join storm.
    """

    key: str
    label: str
    digits: int = 0

    def value(self, figures: dict) -> float | None:
        found: Any = figures.get(self.key)
        return found if isinstance(found, (int, float)) else None

    def show(self, value: float | None) -> str:
        return "-" if value is None else f"{value:,.{self.digits}f}"


#: The issue's targets (#14): a figure of ours, the peer it is measured
#: against in the same run, and the most the ratio may be.
TARGETS = [
    ("idle.bytesPerConnection", "node-ws", 1.0, "memory per idle logged-in page <= Node ws's"),
    ("latency.latencyMs.p99", "node-ws", 1.0, "latency p99 <= Node ws's"),
    ("joinstorm.serverCpuMicrosPerConnect", "baseline", 1.5,
     "join storm: CPU per connect and login <= 1.5x raw Autobahn's"),
    ("fanout.serverCpuMicrosPerDelivery", "baseline", 0.25,
     "fan-out: CPU per delivery <= 0.25x raw Autobahn's"),
]

#: The join storm's figures at each size of the growth series.
GROWTH = [
    Column("connected", "pages"),
    Column("allInSeconds", "all in, s", digits=1),
    Column("serverCpuSeconds", "server CPU, s", digits=2),
    Column("serverCpuMicrosPerConnect", "CPU us/connect"),
    Column("framesPerPage", "frames/page", digits=1),
    Column("frames", "frames in all"),
    Column("pagesLost", "pages lost"),
]


def targets(runs: dict, figures: list) -> list[dict]:
    """
    Each of L{TARGETS} that this run measured (C{figures}: the report's
    L{chatthing.bench.report.FIGURES}): chatthing's ratio to the peer, and
    whether it is met.
    """
    found = []
    byPath = {figure.path: figure for figure in figures}
    ours = runs.get("chatthing")
    for path, peer, most, label in TARGETS:
        if ours is None or peer not in runs:
            continue
        measured = ratio(byPath[path].value(ours), byPath[path].value(runs[peer]))
        if measured is not None:
            found.append({"figure": path, "peer": peer, "most": most, "ratio": measured,
                          "met": measured <= most, "label": label})
    return found


def ratio(ours: float | None, theirs: float | None) -> float | None:
    if ours is None or theirs is None or theirs == 0:
        return None
    return ours / theirs


def aligned(header: list[str], rows: list[list[str]]) -> str:
    """
    A text table: the first column to the left, the numbers to the right.
    """
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(row: list[str]) -> str:
        return "  ".join([row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])])

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def growthTable(results: dict) -> str:
    """
    The growth series (L{GROWTH}): a row for each system and size.
    """
    rows = [[system] + [figure.show(figure.value(figures)) for figure in GROWTH]
            for system, run in results["runs"].items() for figures in run.get("growth") or []]
    if not rows:
        return ""
    return aligned(["system"] + [figure.label for figure in GROWTH], rows)
