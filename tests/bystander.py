"""
L{Bystander}: an honest logged-in user who keeps chatting while another
client attacks the server, so that a test can say what the attack did to
everyone else: each probe message's delivery time to a second honest page,
and whether any probe was lost.

    bystander = await Bystander.start(server.wsUrl)
    calm = await bystander.probe(20)          # before the attack
    ...start the attack...
    during = await bystander.probe(20)        # while it runs
    bystander.assertUnharmed(calm, during)
    await bystander.stop()

It runs in the test's own process, on the test's reactor: against a server
in the same process (the C{serve} fixture) that is fair for attacks sent
from elsewhere (a subprocess or raw sockets); for CPU floods, attack from
another process, as a real attacker would.
"""

import itertools
import statistics
from dataclasses import dataclass, field

from twisted.internet import reactor, task

from chatthing.live.testing import LiveTestClient

_names = itertools.count()


@dataclass
class Probes:
    """
    What one round of probes measured: each delivered probe's latency in
    seconds, and how many were never delivered within the deadline.
    """

    latencies: list[float] = field(default_factory=list)
    lost: int = 0

    @property
    def p95(self) -> float:
        if not self.latencies:
            return float("inf")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]

    @property
    def median(self) -> float:
        return statistics.median(self.latencies) if self.latencies else float("inf")

    def __str__(self) -> str:
        return (f"{len(self.latencies)} delivered, {self.lost} lost, "
                f"median {self.median * 1000:.1f} ms, p95 {self.p95 * 1000:.1f} ms")


class Bystander:
    """
    Two logged-in pages of the same room: a speaker and a listener.  Each
    probe is one message said by the speaker; its latency is the time until
    the listener's page receives it.
    """

    def __init__(self, speaker: LiveTestClient, listener: LiveTestClient) -> None:
        self.speaker = speaker
        self.listener = listener
        self._count = itertools.count()

    @classmethod
    async def start(cls, wsUrl: str, origin: str | None = None) -> "Bystander":
        """
        Log in a speaker and a listener at C{wsUrl}.
        """
        pages = []
        for role in ("speaker", "listener"):
            page = await LiveTestClient.connect(wsUrl, origin=origin)
            answer = await page.call("setUsername", f"{role}{next(_names)}")
            assert answer["type"] == "result", answer
            pages.append(page)
        return cls(*pages)

    def _heard(self, text: str) -> bool:
        return any(
            f.get("type") in ("call", "emit") and f.get("method") == "displayUserMessage"
            and text in f.get("args", [])
            for f in self.listener.frames
        )

    async def probe(self, count: int = 20, interval: float = 0.05, deadline: float = 20.0) -> Probes:
        """
        Say C{count} probe messages, one every C{interval} seconds (well
        inside the rate limit), and time each one's arrival at the listener.
        A probe not heard within C{deadline} seconds of being said is lost.
        """
        result = Probes()
        for _ in range(count):
            text = f"probe {next(self._count)}"
            said = reactor.seconds()
            self.speaker.startCall("say", text)
            try:
                await self.listener.waitFor(lambda: self._heard(text), f"probe {text!r}", deadline)
            except TimeoutError:
                result.lost += 1
            else:
                result.latencies.append(reactor.seconds() - said)
            await task.deferLater(reactor, interval, lambda: None)
        return result

    def assertUnharmed(self, calm: Probes, during: Probes, factor: float = 5.0,
                       floor: float = 0.1) -> None:
        """
        Nothing was lost while the attack ran, and the p95 latency stayed
        within C{factor} times the calm one (or C{floor} seconds, whichever is
        more: on a loaded 2-core machine a few milliseconds are noise).
        """
        assert calm.lost == 0, f"probes lost before the attack: {calm}"
        assert during.lost == 0, f"probes lost during the attack: {during}"
        limit = max(factor * calm.p95, floor)
        assert during.p95 <= limit, (
            f"another user's p95 went from {calm.p95 * 1000:.1f} ms to "
            f"{during.p95 * 1000:.1f} ms (limit {limit * 1000:.1f} ms): calm {calm}; during {during}"
        )

    async def stop(self) -> None:
        for page in (self.speaker, self.listener):
            if not page.isClosed:
                page.close()
                await page.closed()
