"""
Two processes sharing a Redis against one, side by side.

A chat server's CPU per delivery changes from minute to minute on a shared
machine (by a fifth and more, between two runs a minute apart), and the
two-process figure divides two of them: measured one after the other, it
moved between 1.5x and 2.4x from run to run.  So the load generator holds a
room on each, and runs the fanout scenario on them in turn, a few rounds;
each round's pair of figures was taken in the same half-minute, and the
report gives the median of the rounds and their range.
"""

from dataclasses import dataclass

from . import traffic
from .crowd import Crowd
from .rawclient import RawPage


@dataclass
class Side:
    """
    One side of the comparison: its room's pages, and the processes whose
    CPU a delivery costs.
    """

    name: str
    crowd: Crowd
    senders: list[RawPage]
    serverPids: list[int]
    helperPids: list[int]


async def sideBySide(reactor, sides: list[Side], rounds: int, perSender: int,
                     inFlight: int) -> dict:
    """
    C{rounds} rounds of the fanout scenario on each of C{sides} in turn:
    each round's figures, by side.
    """
    measured = []
    for index in range(rounds):
        figures = {}
        for side in sides:
            figures[side.name] = await traffic.fanout(
                reactor, side.crowd, side.senders, perSender, inFlight, side.serverPids,
                side.helperPids, label=f"round {index + 1}: {side.name}")
            await traffic.settle(reactor, side.crowd, "settling")
        measured.append(figures)
    return {"rounds": measured, "messagesPerSender": perSender, "senders": len(sides[0].senders)}
