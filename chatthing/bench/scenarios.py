"""
Which servers the bench runs, and which load each gets.

Each I{system} is measured in turn, under the same load:

- C{chatthing}: one C{twistd chat-widget} process;
- C{chatthing-redis}: two of them sharing the chat through a Redis the
  bench starts, the pages spread over both;
- C{baseline}: the minimal Autobahn broadcast server
  (L{chatthing.bench.baseline});
- C{node-ws}: the same on Node's C{ws} (L{chatthing.bench.nodepeer}),
  where C{node} and C{npm} are installed;
- or C{server}: a server already running at C{--url}.

Each system is started afresh for the room scenarios (fanout, then latency,
on the same logged-in pages) and again for each other scenario (idle, the
join storm, the 20k room, and each size of the growth series), whose
memory and CPU figures must start from a server that has held no pages
yet.  The two processes on Redis run only the first three.

The two processes' fanout is measured apart, side by side with one process
(L{chatthing.bench.scaling}): both systems run at once, and the load
generator sends to each in turn, a few rounds.
"""

import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .nodepeer import PeerUnavailable, installed, startNodePeer
from .procstat import mostPages
from .report import medianRoundIndex
from .servers import (
    CHAT_OPTIONS,
    CoreLayout,
    RedisProcess,
    ServerProcess,
    StartFailed,
    redisExecutable,
    runLoadGenerator,
    startBaseline,
    startChats,
    stop,
)

ROOM_SCENARIOS = ("fanout", "latency")

#: Scenarios that each run alone on a fresh server.
STORM_SCENARIOS = ("joinstorm", "room20k", "growth")
ALL_SCENARIOS = (*ROOM_SCENARIOS, "idle", *STORM_SCENARIOS)

#: What C{chatthing bench} runs when not told (about 8 minutes here): the
#: 20k room and the growth series take minutes more each, and run when
#: asked for (C{--scenarios}).
DEFAULT_SCENARIOS = (*ROOM_SCENARIOS, "idle", "joinstorm")

#: The load generator's name for each scenario that has another.
LOAD_NAMES = {"room20k": "room", "growth": "joinstorm"}

#: Systems that run the new scenarios (the pair on Redis does not).
STORM_SYSTEMS = ("chatthing", "baseline", "node-ws", "server")

#: Seconds the load generator may take for one system's scenarios.
LOAD_DEADLINE = 900.0


@dataclass
class BenchSettings:
    """
    The load, and what is measured: the issue's sizes by default.
    """

    receivers: int = 1000
    senders: int = 10
    probes: int = 50
    fanoutMessages: int = 200
    inFlight: int = 8
    latencyRate: float = 50.0
    latencySeconds: float = 20.0
    idle: int = 10000
    idleRoomSize: int = 0
    scenarios: tuple[str, ...] = DEFAULT_SCENARIOS
    redis: bool = True
    baseline: bool = True
    node: bool = True
    stormPages: int = 2000
    roomPages: int = 20000
    roomRate: float = 1.0
    roomSeconds: float = 20.0
    growthSizes: tuple[int, ...] = (1000, 5000, 20000)
    scalingRounds: int = 3
    scalingMessages: int = 100
    url: str | None = None
    serverPids: list[int] = field(default_factory=list)
    #: Where the Node peer is installed, once it is (L{nodepeer.installed}).
    nodeFolder: Path | None = None

    def loadArguments(self, scenarios: list[str]) -> list[str]:
        arguments = [
            "--receivers", str(self.receivers), "--senders", str(self.senders),
            "--probes", str(min(self.probes, self.receivers)),
            "--fanout-messages",
            str(self.scalingMessages if "scaling" in scenarios else self.fanoutMessages),
            "--in-flight", str(self.inFlight),
            "--latency-rate", str(self.latencyRate), "--latency-seconds", str(self.latencySeconds),
            "--idle", str(self.idle), "--idle-room-size", str(self.idleRoomSize),
        ]
        arguments += ["--storm-pages", str(self.stormPages), "--room-pages", str(self.roomPages),
                      "--room-rate", str(self.roomRate), "--room-seconds", str(self.roomSeconds)]
        for name in scenarios:
            arguments += ["--scenario", LOAD_NAMES.get(name, name)]
        if "scaling" in scenarios:
            arguments += ["--rounds", str(self.scalingRounds)]
        return arguments

    def systems(self) -> list[str]:
        if self.url is not None:
            return ["server"]
        return (["chatthing"] + (["chatthing-redis"] if self.redis else [])
                + (["baseline"] if self.baseline else []) + (["node-ws"] if self.node else []))

    def sideBySide(self) -> bool:
        """
        Whether the two processes' fanout is measured side by side with one
        process's (L{chatthing.bench.scaling}) rather than in their own run.
        """
        return "chatthing-redis" in self.systems() and "fanout" in self.scenarios \
            and self.scalingRounds > 0

    def describe(self) -> dict:
        return {
            "receivers": self.receivers, "senders": self.senders, "probes": self.probes,
            "fanoutMessagesPerSender": self.fanoutMessages, "inFlightPerSender": self.inFlight,
            "latencyRate": self.latencyRate, "latencySeconds": self.latencySeconds,
            "idle": self.idle, "idleRoomSize": self.idleRoomSize,
            "stormPages": self.stormPages, "roomPages": self.roomPages, "roomRate": self.roomRate,
            "roomSeconds": self.roomSeconds, "growthSizes": list(self.growthSizes),
            "scenarios": list(self.scenarios), "systems": self.systems(),
            "scalingRounds": self.scalingRounds if self.sideBySide() else 0,
            "scalingMessagesPerSender": self.scalingMessages,
            "url": self.url, "serverPids": self.serverPids,
            "chatOptions": CHAT_OPTIONS if self.url is None else None,
        }


@dataclass
class Running:
    """
    The processes of one system while it runs.
    """

    servers: list[ServerProcess]
    redis: RedisProcess | None = None
    #: Side by side: the one process the servers are measured against.
    one: ServerProcess | None = None

    def checkAlive(self) -> None:
        """
        @raise StartFailed: with the end of its log, if a server exited
            (which is why the load generator failed, if it did).
        """
        for server in self.servers + ([self.one] if self.one else []):
            if server.process.poll() is not None:
                raise StartFailed(f"{server.label} exited during the run (status "
                                  f"{server.process.returncode}); its log ends:\n{server.logTail()}")

    def loadArguments(self) -> list[str]:
        arguments: list[str] = []
        for server in self.servers:
            arguments += ["--url", server.url, "--server-pid", str(server.pid)]
        if self.redis is not None:
            arguments += ["--redis-pid", str(self.redis.pid)]
        if self.one is not None:
            arguments += ["--one-url", self.one.url, "--one-server-pid", str(self.one.pid)]
        return arguments


@contextmanager
def running(system: str, directory: Path, layout: CoreLayout,
            nodeFolder: Path | None = None) -> Iterator[Running]:
    """
    Start C{system}'s processes, and stop every one of them afterwards
    (C{"side-by-side"}: C{chatthing} and C{chatthing-redis} at once).
    """
    redis: RedisProcess | None = None
    servers: list[ServerProcess] = []
    one: list[ServerProcess] = []
    try:
        if system == "baseline":
            servers.append(startBaseline(directory, layout.server))
        elif system == "node-ws":
            if nodeFolder is None:
                raise StartFailed("the Node ws peer is not installed")
            servers.append(startNodePeer(directory, layout.server, nodeFolder))
        elif system == "chatthing":
            servers += startChats(directory, ["chatthing"], layout.server)
        else:
            redis = RedisProcess.start(directory, layout.server)
            if system == "side-by-side":
                one += startChats(directory, ["side-by-side-one"], layout.server)
            servers += startChats(directory, ["chatthing-redis-1", "chatthing-redis-2"],
                                  layout.server, redis.url)
        yield Running(servers, redis, one[0] if one else None)
    finally:
        stop(*(server.process for server in servers + one))
        if redis is not None:
            redis.stop()


def measure(settings: BenchSettings, system: str, scenarios: list[str], directory: Path,
            layout: CoreLayout, extra: list[str] | None = None) -> dict:
    """
    Run the load generator's C{scenarios} against C{system} (with the
    load generator's C{extra} arguments): what it measured.
    """
    arguments = settings.loadArguments(scenarios) + (extra or [])
    if system in ("baseline", "node-ws"):
        arguments.append("--no-presence")
    if system == "server":
        if settings.url is None:
            raise ValueError("the system under test is a running server, but no --url names it")
        arguments += ["--url", settings.url]
        for pid in settings.serverPids:
            arguments += ["--server-pid", str(pid)]
        return json.loads(runLoadGenerator(arguments, None, LOAD_DEADLINE))
    started = time.monotonic()
    with running(system, directory, layout, settings.nodeFolder) as processes:
        loadStarted = time.monotonic()
        try:
            output = runLoadGenerator(arguments + processes.loadArguments(), layout.load,
                                      LOAD_DEADLINE)
        finally:
            processes.checkAlive()
        measured = json.loads(output)
        stopping = time.monotonic()
    measured["timeline"] = {"start": loadStarted - started, "load": stopping - loadStarted,
                            "stop": time.monotonic() - stopping}
    return measured


def measureSystem(settings: BenchSettings, system: str, directory: Path, layout: CoreLayout) -> dict:
    """
    Every scenario asked for, on C{system}: its figures by scenario, and
    how long its pages took to log in.
    """
    figures: dict = {"processes": 2 if system == "chatthing-redis" else 1}
    room = [name for name in settings.scenarios if name in ROOM_SCENARIOS
            and not (name == "fanout" and system == "chatthing-redis" and settings.sideBySide())]
    groups = [room] if room else []
    if "idle" in settings.scenarios:
        groups.append(["idle"])
    if system in STORM_SYSTEMS:
        groups += [[name] for name in ("joinstorm", "room20k") if name in settings.scenarios]
    for group in groups:
        measured = measureGroup(settings, system, group, directory, layout, figures)
        if measured is None:
            continue
        scenarios = measured["scenarios"]
        if "room" in scenarios:
            scenarios["room20k"] = scenarios.pop("room")
        figures.update(scenarios)
        if "login" in measured:
            figures["login"] = measured["login"]
    if system in STORM_SYSTEMS and "growth" in settings.scenarios:
        figures["growth"] = []
        for size in settings.growthSizes:
            measured = measureGroup(settings, system, ["growth"], directory, layout, figures,
                                    ["--storm-pages", str(size)], f"growth {size}")
            if measured is not None:
                figures["growth"].append(measured["scenarios"]["joinstorm"])
    return figures


def measureGroup(settings: BenchSettings, system: str, group: list[str], directory: Path,
                 layout: CoreLayout, figures: dict, extra: list[str] | None = None,
                 label: str | None = None) -> dict | None:
    """
    L{measure} C{group} on a fresh C{system}: what it measured, or
    L{None}, its error added to C{figures}.
    """
    try:
        measured = measure(settings, system, group, directory, layout, extra)
    except StartFailed as e:
        figures.setdefault("errors", []).append(str(e))
        return None
    figures.setdefault("timeline", {})[label or "+".join(group)] = measured.get("timeline")
    return measured


def measureSideBySide(settings: BenchSettings, directory: Path, layout: CoreLayout) -> dict:
    """
    The fanout scenario on one process and on two sharing a Redis, in
    turn (L{chatthing.bench.scaling}): each round's figures.
    """
    started = time.monotonic()
    try:
        measured = measure(settings, "side-by-side", ["scaling"], directory, layout)
    except StartFailed as e:
        return {"rounds": [], "errors": [str(e)]}
    return {**measured["scenarios"]["scaling"], "login": measured.get("login"),
            "wallSeconds": time.monotonic() - started}


def medianRound(scaling: dict, side: str) -> dict | None:
    """
    C{side}'s figures in the round whose two-process figure is the median
    (see L{chatthing.bench.report.twoCoresToOne}).
    """
    index = medianRoundIndex(scaling)
    return scaling["rounds"][index][side] if index is not None else None


def fitToFileLimit(settings: BenchSettings, most: int | None) -> list[str]:
    """
    Make the room, storm and growth sizes fit in one process's file limit
    (each page is a socket in the server and in the load generator): what
    was cut, as notes for the report.
    """
    if most is None:
        return []
    notes = []
    for name, label, scenario in (("stormPages", "the join storm", "joinstorm"),
                                  ("roomPages", "the big room", "room20k"),
                                  ("idle", "the idle scenario", "idle")):
        if getattr(settings, name) > most:
            if scenario in settings.scenarios:
                notes.append(f"{label} asked for {getattr(settings, name):,} pages, but this machine's "
                             f"file limit lets one process hold {most:,}: it ran with {most:,}")
            setattr(settings, name, most)
    if max(settings.growthSizes) > most:
        if "growth" in settings.scenarios:
            notes.append(f"the growth series' sizes were cut to the file limit's {most:,} pages")
        settings.growthSizes = tuple(sorted({min(size, most) for size in settings.growthSizes}))
    return notes


def announce(text: str) -> None:
    """
    Say which system is being measured, among the progress bars.
    """
    print(text, file=sys.stderr, flush=True)


def runBench(settings: BenchSettings) -> dict:
    """
    Measure every system under the same load: the report's figures, before
    comparison (see L{chatthing.bench.report}).
    """
    started = time.monotonic()
    layout = CoreLayout.forThisMachine() if settings.url is None else CoreLayout(None, None)
    notes = fitToFileLimit(settings, mostPages())
    results: dict = {"settings": settings.describe(), "runs": {}, "notes": notes}
    results["machine"] = {"pinning": layout.describe(), "cpus": os.cpu_count(),
                          "loadAverageBefore": os.getloadavg()[0]}
    if settings.url is None and settings.node:
        try:
            settings.nodeFolder = installed()
        except PeerUnavailable as e:
            settings.node = False
            results["notes"].append(str(e))
            results["settings"]["systems"] = settings.systems()
    if settings.url is None and settings.redis and redisExecutable() is None:
        settings.redis = False
        results["notes"].append("redis-server is not installed: the two-process run on Redis "
                                "was skipped (apt-get install redis-server)")
        results["settings"]["systems"] = settings.systems()
    with tempfile.TemporaryDirectory(prefix="chatthing-bench-") as directory:
        for system in settings.systems():
            announce(f"== {system}")
            systemStarted = time.monotonic()
            results["runs"][system] = measureSystem(settings, system, Path(directory), layout)
            results["runs"][system]["wallSeconds"] = time.monotonic() - systemStarted
        if settings.sideBySide():
            announce("== chatthing and chatthing-redis, side by side")
            results["scaling"] = measureSideBySide(settings, Path(directory), layout)
            results["runs"]["chatthing-redis"]["fanout"] = medianRound(results["scaling"], "pair")
    results["wallSeconds"] = time.monotonic() - started
    results["machine"]["loadAverageAfter"] = os.getloadavg()[0]
    return results
