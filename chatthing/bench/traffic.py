"""
What the load generator's pages do in each scenario, and what it measures:

- L{fanout}: every sender says its messages as fast as the server answers
  (a few calls in flight each), every page counts what it hears; how many
  deliveries a second, at what server CPU per delivery, and how many lost.
- L{latency}: the senders together say a steady number of messages a
  second; probe pages read the send time in each and record how long it
  took to arrive.
- L{idle}: pages that only connect and log in, all in one room (or spread
  over rooms of a given size); how long they took and how much server
  memory each holds.

Counting: a message said once is delivered to every page of the room, the
senders' own included, so C{expected = messages accepted × pages in the
room}; what has not arrived when the stream has drained (or stopped moving
for L{STALL_SECONDS}) is lost.
"""

import math
import time

from twisted.internet import task
from twisted.internet.defer import Deferred, DeferredList

from .bulkread import SWEEP_INTERVAL
from .crowd import Crowd, PagePlan, Target, openCrowd
from .meter import Meter, Reading, percentiles, perDelivery, residentBytes
from .progress import ProgressBar
from .rawclient import RawPage, messageText

#: Seconds in which the server sends the pages nothing after which the
#: messages not yet heard count as lost.
STALL_SECONDS = 5.0

#: The longest wait for a scenario's messages to arrive.
DRAIN_DEADLINE = 60.0

#: Seconds of silence from the server that mean it has sent everything.
QUIET_SECONDS = 0.5

#: The longest wait for that silence.
SETTLE_DEADLINE = 60.0

#: How often the load generator looks at its counters while it waits.
POLL_SECONDS = 0.01

#: Rooms the idle pages may fill (the chat's lobby keeps at most 1,000).
MAX_IDLE_ROOMS = 900


def pause(reactor, seconds: float) -> Deferred:
    return task.deferLater(reactor, seconds, lambda: None)


class Stall:
    """
    Whether the server has stopped sending a crowd's pages anything: no
    frame for L{STALL_SECONDS}, looked at as often as a wait likes.
    """

    def __init__(self, crowd: Crowd) -> None:
        self.crowd = crowd
        self._frames, self._since = crowd.frames(), time.monotonic()

    def stalled(self) -> bool:
        frames = self.crowd.frames()
        if frames != self._frames:
            self._frames, self._since = frames, time.monotonic()
            return False
        return time.monotonic() - self._since > STALL_SECONDS


def sweepEvery(crowd: Crowd, interval: float) -> None:
    """
    Read the crowd's counting pages every C{interval} seconds (see
    L{chatthing.bench.bulkread}).
    """
    if crowd.reader is not None:
        crowd.reader.sweepEvery(interval)


class Tally:
    """
    How the calls of a scenario were answered.
    """

    def __init__(self, progress: ProgressBar) -> None:
        self.progress = progress
        self.accepted = 0
        self.refused = 0
        self.reasons: dict[str, int] = {}

    def watch(self, d: Deferred) -> Deferred:
        return d.addCallbacks(self._accepted, self._refused)

    def _accepted(self, _: object) -> None:
        self.accepted += 1
        self.progress.advance()

    def _refused(self, failure) -> None:
        self.refused += 1
        reason = getattr(failure.value, "name", None) or type(failure.value).__name__
        self.reasons[reason] = self.reasons.get(reason, 0) + 1
        self.progress.advance()

    def figures(self) -> dict:
        return {"messagesSent": self.accepted, "refused": self.refused, "refusedReasons": self.reasons}


class SenderLoop:
    """
    One fanout sender: keeps C{inFlight} of its C{quota} messages waiting
    for their answers, sending the next as each is answered.
    """

    def __init__(self, page: RawPage, name: str, quota: int, inFlight: int, tally: Tally) -> None:
        self.page = page
        self.name = name
        self.quota = quota
        self.inFlight = inFlight
        self.tally = tally
        self.sent = 0
        self.answered = 0
        self.finished: Deferred = Deferred()

    def start(self) -> Deferred:
        if not self.quota:
            self.finished.callback(None)
        for _ in range(min(self.inFlight, self.quota)):
            self._send()
        return self.finished

    def _send(self) -> None:
        self.sent += 1
        d = self.page.call("say", messageText(time.perf_counter_ns(), self.name, self.sent))
        self.tally.watch(d).addBoth(self._answered)

    def _answered(self, _: object) -> None:
        self.answered += 1
        if self.sent < self.quota:
            self._send()
        elif self.answered == self.quota:
            self.finished.callback(None)


async def drain(reactor, crowd: Crowd, expected: int, meter: Meter) -> tuple[int, Reading]:
    """
    Wait until the pages have heard C{expected} messages, or the server
    has sent them nothing at all for L{STALL_SECONDS} (what is missing then
    is lost; while it still sends, say the announcements of earlier logins,
    the messages may be queued behind them), or L{DRAIN_DEADLINE} passed:
    how many they heard, and the meter's reading when the last arrived.
    """
    sweepEvery(crowd, 0)  # count the last ones as they come
    heard, lastHeard = crowd.deliveries(), meter.read()
    stall = Stall(crowd)
    deadline = time.monotonic() + DRAIN_DEADLINE
    while heard < expected and time.monotonic() < deadline:
        await pause(reactor, POLL_SECONDS)
        now = crowd.deliveries()
        if now != heard:
            heard, lastHeard = now, meter.read()
        if stall.stalled():
            break
    return heard, lastHeard


async def settle(reactor, crowd: Crowd, label: str) -> dict:
    """
    Wait until the server has sent the pages nothing for L{QUIET_SECONDS}
    (or L{SETTLE_DEADLINE} passed), so that a scenario does not measure
    what came before it (with C{--redis}, a login is answered before the
    room hears of it, so the announcements of a storm of logins go on long
    after the last answer): how long after the call the server last sent
    something, and whether it was still sending at the deadline.
    """
    started = time.monotonic()
    frames, lastFrame = crowd.frames(), started
    progress = ProgressBar(label, 0)
    stillSending = True
    while time.monotonic() - started < SETTLE_DEADLINE:
        await pause(reactor, QUIET_SECONDS / 10)
        count = crowd.frames()
        if count != frames:
            frames, lastFrame = count, time.monotonic()
            progress.update(count)
        elif time.monotonic() - lastFrame >= QUIET_SECONDS:
            stillSending = False
            break
    seconds = lastFrame - started
    if seconds >= 1 or stillSending:
        progress.finish("frames; still coming" if stillSending else "frames")
    return {"seconds": seconds, "stillSending": stillSending}


def deliveryFigures(crowd: Crowd, tally: Tally, heard: int, window: dict) -> dict:
    """
    A scenario's counts, rates and costs, from what was said and heard.
    """
    expected = tally.accepted * len(crowd.pages)
    figures = {
        **tally.figures(),
        "recipients": len(crowd.pages),
        "expectedDeliveries": expected,
        "deliveries": heard,
        "lost": max(0, expected - heard),
        "extra": max(0, heard - expected),
        "droppedConnections": crowd.dropped(),
        **window,
        "deliveriesPerSecond": heard / window["seconds"],
    }
    perDelivery(figures, heard)
    return figures


async def fanout(reactor, crowd: Crowd, senders: list[RawPage], perSender: int, inFlight: int,
                 serverPids: list[int], helperPids: list[int], label: str = "fanout: sending") -> dict:
    """
    Every sender says C{perSender} messages, as fast as the server answers.
    """
    crowd.resetDeliveries()
    sweepEvery(crowd, SWEEP_INTERVAL)
    progress = ProgressBar(label, perSender * len(senders))
    tally = Tally(progress)
    loops = [SenderLoop(page, f"s{index}", perSender, inFlight, tally)
             for index, page in enumerate(senders)]
    meter = Meter(serverPids, helperPids)
    await DeferredList([loop.start() for loop in loops])
    progress.finish()
    heard, lastHeard = await drain(reactor, crowd, tally.accepted * len(crowd.pages), meter)
    return {**deliveryFigures(crowd, tally, heard, meter.stop(lastHeard)),
            "senders": len(senders), "messagesPerSender": perSender, "inFlightPerSender": inFlight}


async def latency(reactor, crowd: Crowd, senders: list[RawPage], probes: list[RawPage],
                  rate: float, seconds: float, serverPids: list[int], helperPids: list[int]) -> dict:
    """
    The senders, in turn, say C{rate} messages a second in all for
    C{seconds}; the probes time each one's journey.
    """
    crowd.resetDeliveries()
    for probe in probes:
        probe.latencies = []
    total = max(1, round(rate * seconds))
    sweepEvery(crowd, SWEEP_INTERVAL)
    progress = ProgressBar("latency: sending", total)
    tally = Tally(progress)
    answers: list[Deferred] = []
    meter = Meter(serverPids, helperPids)
    started = time.monotonic()
    while len(answers) < total:
        due = min(total, 1 + int((time.monotonic() - started) * rate))
        while len(answers) < due:
            number = len(answers)
            page = senders[number % len(senders)]
            text = messageText(time.perf_counter_ns(), f"s{number % len(senders)}", number)
            answers.append(tally.watch(page.call("say", text)))
        await pause(reactor, max(0.0, started + len(answers) / rate - time.monotonic()))
    await DeferredList(answers)
    progress.finish()
    heard, lastHeard = await drain(reactor, crowd, tally.accepted * len(crowd.pages), meter)
    samples = [sample / 1e6 for probe in probes for sample in (probe.latencies or [])]
    for probe in probes:
        probe.latencies = None
    return {**deliveryFigures(crowd, tally, heard, meter.stop(lastHeard)),
            "ratePerSecond": rate, "probes": len(probes),
            "latencyMs": percentiles(samples)}


async def idle(reactor, targets: list[Target], count: int, roomSize: int, concurrency: int,
               prefix: str, serverPids: list[int], helperPids: list[int]) -> dict:
    """
    Open C{count} pages that log in and stay quiet, C{roomSize} to a room
    (0: all in one, as a busy room's pages are), wait until the server has
    sent them everything: how long that took, and the servers' memory and
    CPU for each.
    """
    roomSize = count if roomSize <= 0 else max(roomSize, math.ceil(count / MAX_IDLE_ROOMS))
    plans = [PagePlan(targets[index % len(targets)], f"/room/{prefix}-idle-{index // roomSize}",
                      f"{prefix}i{index}", bulk=True) for index in range(count)]
    before = residentBytes(serverPids)
    meter = Meter(serverPids, helperPids)
    crowd = await openCrowd(reactor, plans, concurrency, "idle: connecting")
    # The logins' announcements go out: they are part of what a page costs.
    settled = await settle(reactor, crowd, "idle: settling")
    window = meter.stop()
    after = residentBytes(serverPids)
    opened = len(crowd.pages)
    figures = {
        "connections": opened,
        "failed": crowd.failed,
        "failedReasons": crowd.reasons,
        "roomSize": roomSize,
        "connectSeconds": crowd.seconds,
        "connectionsPerSecond": opened / crowd.seconds if crowd.seconds else None,
        "rssBeforeBytes": before,
        "rssAfterBytes": after,
        "bytesPerConnection": ((after - before) / opened
                               if before is not None and after is not None and opened else None),
        "serverCpuSeconds": window["serverCpuSeconds"],
        "serverCpuMicrosPerConnection": (window["serverCpuSeconds"] * 1e6 / opened
                                         if window["serverCpuSeconds"] is not None and opened
                                         else None),
        "loadCpuFraction": window["loadCpuFraction"],
        "otherCpuFraction": window["otherCpuFraction"],
        "droppedConnections": crowd.dropped(),
        "settleSeconds": settled["seconds"],
        "framesPerConnection": crowd.frames() / opened if opened else None,
    }
    await crowd.close(reactor, deadline=0.5)
    return figures
