"""
C{chatthing bench}: its pieces with no sockets (the load generator's
WebSocket framing, the baseline's bytes, the report), then the whole
command at tiny sizes, as a user runs it, against servers it starts (one
process, two on Redis, the baseline) and against one already running.

No figure is checked against a time: only the report's shape, that the
numbers that must be positive are, and that nothing was lost.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest
import pytest_twisted
from conftest import eventually, subprocessEnvironment
from twisted.internet.testing import StringTransport
from twisted.python import usage

from chatthing import cli
from chatthing.bench import baseline, report
from chatthing.bench.presence import Presence, countNames
from chatthing.bench.rawclient import RawPage, maskedFrame, messageText, sentTime
from chatthing.bench.storm import sourceAddress
from chatthing.live import _wire

#: The command's whole run may take this long before the test fails.
BENCH_DEADLINE = 240


def serverFrame(payload: bytes, opcode: int = 0x1) -> bytes:
    """
    One unmasked frame, as a server sends it.
    """
    size = len(payload)
    if size < 126:
        return bytes((0x80 | opcode, size)) + payload
    if size < 65536:
        return bytes((0x80 | opcode, 126)) + size.to_bytes(2, "big") + payload
    return bytes((0x80 | opcode, 127)) + size.to_bytes(8, "big") + payload


class TCPStringTransport(StringTransport):
    """
    A L{StringTransport} with TCP's C{setTcpNoDelay}.
    """

    noDelay = False

    def setTcpNoDelay(self, enabled: bool) -> None:
        self.noDelay = enabled


def openPage(probe: bool = False, presence: Presence | None = None) -> tuple[RawPage, TCPStringTransport]:
    """
    A L{RawPage} whose handshake was accepted and welcome received.
    """
    page = RawPage("127.0.0.1", 8080, probe=probe)
    page.presence = presence
    transport = TCPStringTransport()
    page.makeConnection(transport)
    page.dataReceived(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n")
    page.dataReceived(serverFrame(b'{"type":"welcome","version":1,"session":"s"}'))
    return page, transport


def clientFrames(data: bytes) -> list[tuple[int, bytes]]:
    """
    The (opcode, payload) of each masked frame the page wrote.
    """
    frames, position = [], 0
    while position < len(data):
        opcode, size = data[position] & 0x0F, data[position + 1] & 0x7F
        assert data[position + 1] & 0x80, "client frames must be masked"
        position += 2
        if size == 126:
            size, position = int.from_bytes(data[position:position + 2], "big"), position + 2
        mask, position = data[position:position + 4], position + 4
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(data[position:position + size]))
        frames.append((opcode, payload))
        position += size
    return frames


def emit(offset: int, method: str, *args) -> bytes:
    return _wire.encode(_wire.emitFrame("room", offset, method, args))


def test_rawPageHandshakeAndHello():
    """The page asks for the upgrade without an Origin, then says hello without rendering."""
    page, transport = openPage()
    request, _, frames = transport.value().partition(b"\r\n\r\n")
    assert request.startswith(b"GET /live HTTP/1.1\r\n")
    assert b"Upgrade: websocket" in request and b"Origin" not in request
    [(opcode, hello)] = clientFrames(frames)
    assert opcode == 0x1
    assert json.loads(hello) == {"type": "hello", "version": 1, "page": "/", "render": False}
    assert page.welcomed.called
    assert transport.noDelay, "calls must not wait for Nagle's algorithm"


def test_rawPageCountsOnlyUserMessages():
    """Room emits count as deliveries only when they are displayUserMessage, in any chunking."""
    page, _ = openPage()
    data = b"".join([
        serverFrame(emit(1, "messageTime", 1700000000000)),
        serverFrame(emit(2, "displayUserMessage", "alice", "hi")),
        serverFrame(emit(3, "updatePresence", ["alice", "bob"])),
        serverFrame(emit(4, "displayUserMessage", "bob", '"method":"displayUserMessage"')),
        serverFrame(emit(5, "displayUserMessage", "bob", "x" * 300)),  # 16-bit length
        serverFrame(emit(6, "displayUserMessage", "bob", "y" * 70000)),  # 64-bit length
        serverFrame(emit(7, "displayMessage", " * user carol has joined the room")),
    ])
    for start in range(0, len(data), 7):
        page.dataReceived(data[start:start + 7])
    assert page.deliveries == 4


def presenceList(names: list[str]) -> bytes:
    return _wire.encode({"type": "emit", "method": "updatePresence", "args": [names], "seq": 1})


def test_rawPageFollowsPresence():
    """A page counts the names of its presence view from every kind of presence frame, in any chunking."""
    presence = Presence(expected=4)
    page, _ = openPage(presence=presence)
    data = b"".join([
        serverFrame(presenceList(["alice", "bob"])),
        serverFrame(emit(1, "presenceJoined", "carol")),
        serverFrame(emit(2, "displayMessage", " * user carol has joined the room")),
        serverFrame(emit(3, "presenceLeft", "bob")),
        # The coalesced frame: who joined and who left in one interval.
        serverFrame(emit(4, "presenceChanged", ["dave", "erin"], [])),
    ])
    for start in range(0, len(data), 5):
        page.dataReceived(data[start:start + 5])
    assert page.present == 4 and presence.complete == 1
    page.dataReceived(serverFrame(emit(5, "presenceChanged", ["fay"], ["alice", "carol"])))
    assert page.present == 3 and presence.complete == 0, "a page that no longer sees everyone"
    assert page.frames == 7 and page.deliveries == 0  # the welcome too
    assert page.received == sum(len(frame) for frame in [
        b'{"type":"welcome","version":1,"session":"s"}', presenceList(["alice", "bob"]),
        emit(1, "presenceJoined", "carol"), emit(2, "displayMessage", " * user carol has joined the room"),
        emit(3, "presenceLeft", "bob"), emit(4, "presenceChanged", ["dave", "erin"], []),
        emit(5, "presenceChanged", ["fay"], ["alice", "carol"])])
    unfollowed, _ = openPage()
    unfollowed.dataReceived(serverFrame(presenceList(["alice"])))
    assert unfollowed.present == 0


def test_countNames():
    """Names in a JSON list are counted without decoding it: none, one, many, quotes escaped."""
    for names in ([], ["a"], ["a", "b,c", 'say "hi"', "d\\"], [f"n{i}" for i in range(20000)]):
        frame = presenceList(names)
        assert countNames(frame, frame.index(b"[[") + 1, len(frame)) == len(names), names


def test_sourceAddresses():
    """Pages connect from 127.0.0.2 on, a new loopback address for each block of pages."""
    assert [sourceAddress(index, 10000) for index in (0, 9999, 10000, 49999)] == [
        "127.0.0.2", "127.0.0.2", "127.0.0.3", "127.0.0.6"]
    assert sourceAddress(300, 1) == "127.0.1.47"
    assert all(sourceAddress(index, 1).startswith("127.") for index in range(60000))


def test_rawPageProbeTimesMessages():
    """A probe reads the send time in each message it receives and records the delay."""
    page, _ = openPage(probe=True)
    page.latencies = []
    text = messageText(1_000, "s0", 1)
    assert sentTime(text) == 1_000
    page.dataReceived(serverFrame(emit(1, "displayUserMessage", "s0", text)))
    page.dataReceived(serverFrame(emit(2, "displayUserMessage", "carol", "not timed")))
    assert page.deliveries == 2
    [latency] = page.latencies
    assert latency > 0


def test_rawPageNumbersCallsAndAcknowledges():
    """Calls carry seq 1, 2, 3...; results are matched by id and acknowledged every 16."""
    page, transport = openPage()
    transport.clear()
    calls = [page.call("say", f"m{i}") for i in range(16)]
    sent = [json.loads(payload) for _, payload in clientFrames(transport.value())]
    assert [frame["seq"] for frame in sent] == list(range(1, 17))
    transport.clear()
    for frame in sent:
        result = {"type": "result", "id": frame["id"], "value": None, "seq": frame["seq"] + 100}
        page.dataReceived(serverFrame(_wire.encode(result)))
        page.dataReceived(serverFrame(b'{"type":"ack","seq":3}'))  # the server's: not counted
    assert all(d.called for d in calls)
    assert [json.loads(p) for _, p in clientFrames(transport.value())] == [{"type": "ack", "seq": 116}]


def test_rawPageAnswersPing():
    """A ping gets a masked pong with the same payload."""
    page, transport = openPage()
    transport.clear()
    page.dataReceived(serverFrame(b"beat", opcode=0x9))
    assert clientFrames(transport.value()) == [(0xA, b"beat")]


def test_maskedFrameLengths():
    """Client frames use the 7-bit, 16-bit and 64-bit lengths at their limits."""
    assert maskedFrame(0x1, b"x" * 125)[1] == 0x80 | 125
    assert maskedFrame(0x1, b"x" * 126)[1:4] == bytes((0x80 | 126, 0, 126))
    assert maskedFrame(0x1, b"x" * 65536)[1] == 0x80 | 127


def test_baselineSendsChatthingsBytes():
    """The baseline's emit is byte for byte the frame chatthing's room stream sends."""
    ours = _wire.encode(_wire.emitFrame("room", 7, "displayUserMessage", ["alice", "héllo \"you\""]))
    theirs = baseline.encode({"type": "emit", "stream": "room", "offset": 7,
                              "method": "displayUserMessage", "args": ["alice", "héllo \"you\""]})
    assert theirs == ours


def fakeRun(deliveriesPerSecond: float, lost: int = 0, busy: float = 0.2, other: float = 0.0) -> dict:
    return {
        "processes": 1,
        "login": {"opened": 22, "failed": 0, "seconds": 0.5, "reasons": []},
        "fanout": {"deliveriesPerSecond": deliveriesPerSecond, "serverCpuMicrosPerDelivery": 10.0,
                   "lost": lost, "loadCpuFraction": busy, "otherCpuFraction": other},
        "latency": {"latencyMs": {"p50": 2.0, "p90": 3.0, "p99": 4.0, "max": 5.0}, "lost": 0},
        "idle": {"connections": 200, "connectSeconds": 1.0, "bytesPerConnection": 10240.0},
    }


def test_reportComparesToBaselineAndOneProcess():
    """Ours are divided by the baseline's, two processes by one; doubtful figures are warned of."""
    results = report.compare({
        "settings": {}, "machine": {},
        "runs": {"chatthing": fakeRun(50_000, other=0.5), "chatthing-redis": fakeRun(25_000, lost=3),
                 "baseline": fakeRun(100_000, busy=0.95)},
    })
    assert results["ratiosToBaseline"]["chatthing"]["fanout.deliveriesPerSecond"] == 0.5
    assert results["ratiosToBaseline"]["chatthing"]["fanout.lost"] is None
    assert results["twoProcessesToOne"]["fanout.deliveriesPerSecond"] == 0.5
    # Both spend 10 us a delivery: two cores deliver twice what one does.
    assert results["twoCoresToOne"] == 2.0
    settings = {"receivers": 20, "senders": 2, "fanoutMessagesPerSender": 3, "latencyRate": 5,
                "latencySeconds": 1, "idle": 200, "idleRoomSize": 20}
    assert "each on a core of its own (from CPU per delivery, Redis's included): 2.00x" in report.text(
        {**results, "settings": settings, "machine": {"pinning": "none"}, "wallSeconds": 1.0})
    assert any("chatthing-redis, fanout: 3 deliveries lost" in w for w in results["warnings"])
    assert any("baseline, fanout: the load generator was busy 95%" in w for w in results["warnings"])
    assert any("chatthing, fanout: other programs used 50% of a CPU" in w for w in results["warnings"])
    assert len(results["warnings"]) == 3
    table = report.table(results)
    assert "x baseline" in table and "x 1 process" in table
    assert "fanout: deliveries/s" in table and "50,000" in table


def fakeStorm(pages: int, cpu: float, frames: int, missed: int = 0) -> dict:
    return {"pages": pages, "connected": pages, "allInSeconds": 2.0, "serverCpuSeconds": cpu,
            "serverCpuMicrosPerConnect": cpu * 1e6 / pages, "framesPerPage": frames / pages,
            "frames": frames, "bytesPerPage": 2048.0, "bytesPerConnection": 8192.0,
            "pagesLost": missed, "missedSomeone": missed, "failed": 0}


def test_reportComparesToNodeAndMeetsTargets():
    """The join storm, big room and growth figures are reported, ours divided by the baseline's and Node ws's."""
    ours = {**fakeRun(50_000), "joinstorm": fakeStorm(100, 0.03, 700),
            "room20k": {"pages": 300, "rssBytesPerPage": 10240.0, "storm": fakeStorm(300, 0.1, 2100),
                        "chat": {"latencyMs": {"p50": 1.0, "p99": 3.0}, "lost": 0}},
            "growth": [fakeStorm(100, 0.03, 700), fakeStorm(200, 0.06, 1400, missed=2)]}
    peer = {**fakeRun(100_000), "joinstorm": fakeStorm(100, 0.01, 200),
            "room20k": {"pages": 300, "rssBytesPerPage": 20480.0, "storm": fakeStorm(300, 0.1, 600),
                        "chat": {"latencyMs": {"p50": 2.0, "p99": 6.0}, "lost": 0}}}
    node = {**peer, "idle": {**peer["idle"], "bytesPerConnection": 5120.0},
            "latency": {"latencyMs": {"p99": 8.0}}, "growth": [fakeStorm(100, 0.01, 200)]}
    results = report.compare({"settings": {}, "machine": {},
                              "runs": {"chatthing": ours, "baseline": peer, "node-ws": node}})
    assert results["ratiosToNode"]["chatthing"]["joinstorm.serverCpuMicrosPerConnect"] == 3.0
    assert results["ratiosToBaseline"]["chatthing"]["room20k.rssBytesPerPage"] == 0.5
    assert results["ratiosToNode"]["chatthing"]["room20k.chat.latencyMs.p99"] == 0.5
    assert "node-ws" not in results["ratiosToNode"]
    met = {target["figure"]: (target["peer"], target["ratio"], target["met"]) for target in results["targets"]}
    assert met == {"idle.bytesPerConnection": ("node-ws", 2.0, False),
                   "latency.latencyMs.p99": ("node-ws", 0.5, True),
                   "joinstorm.serverCpuMicrosPerConnect": ("baseline", 3.0, False),
                   "fanout.serverCpuMicrosPerDelivery": ("baseline", 1.0, False)}
    assert results["warnings"] == ["chatthing, growth at 200: 2 pages never saw everyone in their "
                                   "presence list"]
    settings = {"receivers": 20, "senders": 2, "fanoutMessagesPerSender": 3, "latencyRate": 5,
                "latencySeconds": 1, "idle": 200, "idleRoomSize": 0, "stormPages": 100,
                "roomPages": 300, "roomRate": 1.0, "roomSeconds": 2.0, "growthSizes": [100, 200]}
    printed = report.text({**results, "settings": settings, "machine": {"pinning": "none"},
                           "wallSeconds": 1.0})
    assert "200 idle pages in one room" in printed and "Join storm: 100 pages" in printed
    for label in ("join storm: all in (answered, saw everyone), s", "join storm: server CPU us/connect",
                  "join storm: frames/page", "big room: server RSS/page, KiB", "big room: chat p99 ms",
                  "x node ws", "x baseline",
                  "target: join storm: CPU per connect and login <= 1.5x raw Autobahn's: 3.00x (not met)",
                  "target: latency p99 <= Node ws's: 0.50x (met)"):
        assert label in printed, label
    rows = [line.split() for line in report.growthTable(results).splitlines()[2:]]
    assert [row[:2] for row in rows] == [["chatthing", "100"], ["chatthing", "200"], ["node-ws", "100"]]
    assert rows[1][-3:] == ["7.0", "1,400", "2"]  # frames/page, frames in all, pages lost


def fakeRound(oneMicros: float, pairMicros: float, lost: int = 0) -> dict:
    return {"one": {"deliveriesPerSecond": 100.0, "serverCpuMicrosPerDelivery": oneMicros, "lost": 0},
            "pair": {"deliveriesPerSecond": 150.0, "serverCpuMicrosPerDelivery": pairMicros,
                     "redisCpuMicrosPerDelivery": 0.0, "lost": lost}}


def test_reportTakesTheMedianRoundSideBySide():
    """Side by side, the two-process figure is the median round's, with the range; rounds are warned of."""
    runs = {"chatthing": fakeRun(50_000), "chatthing-redis": fakeRun(25_000)}
    results = report.compare({
        "settings": {}, "machine": {}, "runs": runs,
        "scaling": {"rounds": [fakeRound(2.0, 2.0), fakeRound(2.0, 4.0, lost=7), fakeRound(3.0, 1.0)]},
    })
    assert results["twoCoresToOneRounds"] == [2.0, 1.0, 6.0]
    assert results["twoCoresToOne"] == 2.0
    assert report.medianRoundIndex(results["scaling"]) == 0
    # The fanout ratios compare the two sides of that round, not the separate runs.
    assert results["twoProcessesToOne"]["fanout.deliveriesPerSecond"] == 1.5
    assert results["twoProcessesToOne"]["fanout.serverCpuMicrosPerDelivery"] == 1.0
    assert results["warnings"] == ["side by side, round 2, pair: 7 deliveries lost"]
    settings = {"receivers": 20, "senders": 2, "fanoutMessagesPerSender": 3, "latencyRate": 5,
                "latencySeconds": 1, "idle": 200, "idleRoomSize": 20, "scalingMessagesPerSender": 4}
    assert "2.00x one process's (the median of 3 rounds of 4 messages a sender side by side with " \
           "one process; " \
           "1.00x to 6.00x)" in report.text(
               {**results, "settings": settings, "machine": {"pinning": "none"}, "wallSeconds": 1.0})
    # Rounds too short for the CPU clock: the last one, and no figure.
    assert report.medianRoundIndex({"rounds": [fakeRound(0.0, 1.0), fakeRound(1.0, 0.0)]}) == 1
    assert report.medianRoundIndex({"rounds": []}) is None


def test_benchOptions(tmp_path):
    """The bench's options parse to its settings, bad ones are refused, and alert still parses."""
    options = cli.Options()
    options.parseOptions(["bench", "--receivers", "20", "--scenarios", "idle,fanout", "--no-redis"])
    settings = options.subOptions.settings()
    assert (settings.receivers, settings.senders, settings.idle) == (20, 10, 10000)
    assert settings.scenarios == ("fanout", "idle")
    assert settings.systems() == ["chatthing", "baseline", "node-ws"]
    assert not settings.sideBySide()
    options.parseOptions(["bench", "--no-node", "--no-redis", "--storm-pages", "30", "--room-pages", "40",
                          "--growth-sizes", "10,20", "--scenarios", "growth,room20k,joinstorm"])
    settings = options.subOptions.settings()
    assert settings.systems() == ["chatthing", "baseline"]
    assert (settings.stormPages, settings.roomPages, settings.growthSizes) == (30, 40, (10, 20))
    assert settings.scenarios == ("joinstorm", "room20k", "growth")
    assert settings.idleRoomSize == 0, "idle pages in one room by default"
    arguments = settings.loadArguments(["room20k"])
    assert arguments[arguments.index("--scenario") + 1] == "room"
    assert arguments[arguments.index("--room-pages") + 1] == "40"
    options.parseOptions(["bench"])
    assert options.subOptions.settings().scenarios == ("fanout", "latency", "idle", "joinstorm")
    options.parseOptions(["bench", "--scaling-rounds", "5", "--scaling-messages", "7"])
    settings = options.subOptions.settings()
    assert (settings.scalingRounds, settings.scalingMessages) == (5, 7) and settings.sideBySide()
    assert settings.loadArguments(["scaling"])[settings.loadArguments(["scaling"]).index(
        "--fanout-messages") + 1] == "7"
    options.parseOptions(["bench", "--scaling-rounds", "0"])
    assert not options.subOptions.settings().sideBySide()
    for bad in (["--scenarios", "nope"], ["--senders", "0"], ["--server-pid", "1"],
                ["--url", "http://x/"], ["--scaling-rounds", "-1"], ["--growth-sizes", "10,x"],
                ["--storm-pages", "1"], ["--room-rate", "0"], ["--idle-room-size", "-1"]):
        with pytest.raises(usage.UsageError):
            cli.Options().parseOptions(["bench", *bad])
    token = tmp_path / "admin.token"
    token.write_text("secret\n")
    alert = cli.Options()
    alert.parseOptions(["alert", "hi there", "--token-file", str(token)])
    assert (alert.subCommand, alert.subOptions["text"], alert.subOptions["token"]) == (
        "alert", "hi there", "secret")


def runBench(*args: str) -> subprocess.CompletedProcess:
    """
    Run C{python -m chatthing.cli bench ARGS} as a user would.
    """
    return subprocess.run([sys.executable, "-m", "chatthing.cli", "bench", *args],
                          env=subprocessEnvironment(), capture_output=True, text=True, check=False,
                          timeout=BENCH_DEADLINE)


def checkRun(system: str, run: dict, scenarios: tuple[str, ...]) -> None:
    """
    One system's figures are all there, positive where they must be, and
    nothing was lost.
    """
    assert "errors" not in run, (system, run["errors"])
    if "fanout" in scenarios or "latency" in scenarios:
        assert run["login"]["failed"] == 0 and run["login"]["opened"] > 0
    for name in scenarios:
        figures = run[name]
        assert figures, (system, name)
        if name == "idle":
            assert figures["failed"] == 0
            assert figures["connections"] > 0 and figures["connectSeconds"] > 0
            assert figures["bytesPerConnection"] is not None
            continue
        assert figures["messagesSent"] > 0, (system, name, figures)
        assert figures["refused"] == 0, (system, name, figures["refusedReasons"])
        assert figures["lost"] == 0 and figures["extra"] == 0, (system, name, figures)
        assert figures["deliveries"] == figures["expectedDeliveries"] > 0
        assert figures["droppedConnections"] == 0
        assert figures["deliveriesPerSecond"] > 0 and figures["seconds"] > 0
        assert figures["serverCpuSeconds"] is not None and figures["serverCpuSeconds"] >= 0
        assert 0 <= figures["loadCpuFraction"]
        if name == "latency":
            latency = figures["latencyMs"]
            assert latency["samples"] > 0
            assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"]


def test_benchEndToEnd(tmp_path):
    """At tiny sizes: one process, two on Redis and the baseline, all figures reported, none lost."""
    jsonPath, plotPath = tmp_path / "bench.json", tmp_path / "bench.png"
    result = runBench("--receivers", "20", "--senders", "2", "--probes", "5",
                      "--fanout-messages", "20", "--scaling-messages", "10", "--latency-seconds", "1",
                      "--idle", "200", "--scenarios", "fanout,latency,idle", "--no-node",
                      "--json", str(jsonPath), "--plot", str(plotPath))
    assert result.returncode == 0, result.stdout + result.stderr
    figures = json.loads(jsonPath.read_text())
    assert list(figures["runs"]) == ["chatthing", "chatthing-redis", "baseline"]
    assert figures["runs"]["chatthing-redis"]["processes"] == 2
    for system, run in figures["runs"].items():
        checkRun(system, run, ("fanout", "latency", "idle"))
    assert figures["runs"]["chatthing-redis"]["fanout"]["redisCpuSeconds"] is not None
    # The two processes' fanout was measured side by side with one process's, in turn.
    rounds = figures["scaling"]["rounds"]
    assert len(rounds) == 3 and all(set(measured) == {"one", "pair"} for measured in rounds)
    for index, measured in enumerate(rounds):
        for side, window in measured.items():
            checkRun(f"round {index + 1}, {side}", {"login": figures["scaling"]["login"][side],
                                                   "fanout": window}, ("fanout",))
    assert figures["runs"]["chatthing-redis"]["fanout"] in [measured["pair"] for measured in rounds]
    assert rounds[0]["one"]["messagesSent"] == 2 * 10
    assert "round 3: pair" in result.stderr and "side by side" in result.stdout
    for system in ("chatthing", "chatthing-redis"):
        assert set(figures["ratiosToBaseline"][system]) == {f.path for f in report.FIGURES}
        assert figures["ratiosToBaseline"][system]["fanout.deliveriesPerSecond"] > 0
    assert figures["twoProcessesToOne"]["fanout.deliveriesPerSecond"] > 0
    assert "x baseline" in result.stdout and "fanout: deliveries/s" in result.stdout
    assert "--rate 100000 --burst 100000" in result.stdout
    assert "connecting and logging in" in result.stderr
    # tests/run-all.sh installs the bench extra (matplotlib): the plot is drawn.
    assert plotPath.read_bytes().startswith(b"\x89PNG")


def test_benchRunningServer(startTwistd):
    """--url measures a server already running (with its own default limits), CPU from --server-pid."""
    server = startTwistd()
    result = runBench("--url", f"ws://127.0.0.1:{server.port}/live",
                      "--server-pid", str(server.process.pid), "--scenarios", "fanout",
                      "--receivers", "10", "--senders", "2", "--fanout-messages", "10")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "server" in result.stdout and "x baseline" not in result.stdout


def test_sendFloorMeasures():
    """The send() floor runs at tiny sizes, cleans up its reader, and gives a positive cost."""
    from chatthing.bench import sendfloor

    cpus = os.sched_getaffinity(0)
    floor = sendfloor.measure(20, 3)
    assert floor["connections"] == 20 and floor["cpuMicrosPerSend"] > 0
    assert os.sched_getaffinity(0) == cpus  # this process is not left pinned


def test_joinStormFromSeveralSourceAddresses(startTwistd):
    """The load generator's join storm: every page logged in to one room, each seeing everyone, from 127.0.0.2, .3, .4."""
    server = startTwistd()
    result = subprocess.run(
        [sys.executable, "-m", "chatthing.bench.load", "--url", f"ws://127.0.0.1:{server.port}/live",
         "--server-pid", str(server.process.pid), "--scenario", "joinstorm", "--storm-pages", "30",
         "--pages-per-source", "10"],
        env=subprocessEnvironment(), capture_output=True, text=True, check=False, timeout=BENCH_DEADLINE)
    assert result.returncode == 0, result.stdout + result.stderr
    storm = json.loads(result.stdout)["scenarios"]["joinstorm"]
    assert storm["sourceAddresses"] == ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    assert (storm["connected"], storm["failed"], storm["sawEveryone"], storm["pagesLost"]) == (30, 0, 30, 0)
    assert storm["followsPresence"] and storm["allInSeconds"] >= storm["loginSeconds"] > 0
    # Each page received its welcome, its first presence list and its answer at least.
    assert storm["framesPerPage"] >= 3 and storm["bytesPerPage"] > 0
    assert storm["serverCpuMicrosPerConnect"] is not None and storm["serverCpuMicrosPerConnect"] >= 0


def nodeAvailable() -> bool:
    return shutil.which("node") is not None and shutil.which("npm") is not None


def checkStorm(system: str, storm: dict, pages: int) -> None:
    """
    A join storm's figures: every page in, nothing lost, each page seeing
    everyone where the server keeps presence.
    """
    assert (storm["connected"], storm["failed"], storm["pagesLost"]) == (pages, 0, 0), (system, storm)
    assert storm["droppedConnections"] == 0 and storm["missedSomeone"] == 0
    assert storm["followsPresence"] == (system == "chatthing"), system
    if storm["followsPresence"]:
        assert storm["sawEveryone"] == pages
    assert storm["allInSeconds"] > 0 and storm["framesPerPage"] >= 2 and storm["bytesPerPage"] > 0
    assert storm["serverCpuMicrosPerConnect"] is not None and storm["bytesPerConnection"] is not None


def systemsWithNode(*systems: str) -> list[str]:
    return [*systems, *(["node-ws"] if nodeAvailable() else [])]


def checkNodeReported(result: subprocess.CompletedProcess, figures: dict) -> None:
    """
    With node and npm, chatthing's figures are divided by the Node peer's;
    without, the report says the peer was skipped.
    """
    if nodeAvailable():
        assert "x node ws" in result.stdout
        assert set(figures["ratiosToNode"]["chatthing"]) == {f.path for f in report.FIGURES}
    else:
        assert "the Node ws peer was skipped" in result.stdout


def test_benchJoinStormWithPeers(tmp_path):
    """The join storm at tiny size: every page in and seeing everyone, beside the baseline and Node ws."""
    jsonPath = tmp_path / "bench.json"
    result = runBench("--storm-pages", "60", "--scenarios", "joinstorm", "--no-redis",
                      "--json", str(jsonPath))
    assert result.returncode == 0, result.stdout + result.stderr
    figures = json.loads(jsonPath.read_text())
    assert list(figures["runs"]) == systemsWithNode("chatthing", "baseline")
    for system, run in figures["runs"].items():
        checkStorm(system, run["joinstorm"], 60)
    for label in ("join storm: all in (answered, saw everyone), s", "join storm: server CPU us/connect",
                  "join storm: frames/page", "join storm: KiB received/page", "join storm: pages lost",
                  "x baseline", "target: join storm: CPU per connect and login <= 1.5x raw Autobahn's"):
        assert label in result.stdout, label
    checkNodeReported(result, figures)


def test_benchIdleAndLatencyInOneRoomWithNode(tmp_path):
    """Idle and latency with every page logged in, the idle pages all in one room, beside Node ws."""
    jsonPath = tmp_path / "bench.json"
    result = runBench("--receivers", "20", "--senders", "2", "--probes", "5", "--latency-seconds", "1",
                      "--idle", "100", "--scenarios", "latency,idle", "--no-redis", "--no-baseline",
                      "--json", str(jsonPath))
    assert result.returncode == 0, result.stdout + result.stderr
    figures = json.loads(jsonPath.read_text())
    assert list(figures["runs"]) == systemsWithNode("chatthing")
    for system, run in figures["runs"].items():
        checkRun(system, run, ("latency", "idle"))
        assert run["idle"]["roomSize"] == 100, "the idle pages are all in one room"
    # In one room, each idle page hears of the logins after its own in batches
    # (presenceChanged): fewer frames than logins, where each login used to
    # cost every page two or three.
    assert figures["runs"]["chatthing"]["idle"]["framesPerConnection"] < 100
    assert "idle pages in one room" in result.stdout and "idle: frames/page" in result.stdout
    checkNodeReported(result, figures)
    if nodeAvailable():
        assert "target: latency p99 <= Node ws's" in result.stdout
        assert "target: memory per idle logged-in page <= Node ws's" in result.stdout


def test_benchBigRoom(tmp_path):
    """The big room at tiny size: a join storm, then chat, with latency, RSS per page and nothing lost, beside the baseline."""
    jsonPath = tmp_path / "bench.json"
    result = runBench("--room-pages", "80", "--room-seconds", "2", "--probes", "5",
                      "--scenarios", "room20k", "--no-redis", "--no-node", "--json", str(jsonPath))
    assert result.returncode == 0, result.stdout + result.stderr
    figures = json.loads(jsonPath.read_text())
    assert list(figures["runs"]) == ["chatthing", "baseline"]
    for system, run in figures["runs"].items():
        room = run["room20k"]
        checkStorm(system, room["storm"], 80)
        assert room["storm"]["sourceAddresses"] == ["127.0.0.2"]
        chat = room["chat"]
        assert chat["messagesSent"] == 2 and chat["lost"] == 0 and chat["extra"] == 0, (system, chat)
        assert chat["deliveries"] == 2 * 80 and chat["latencyMs"]["samples"] == 2 * 5
        assert room["rssBytesPerPage"] > 0
    for label in ("big room: all in, s", "big room: chat p99 ms", "big room: server RSS/page, KiB",
                  "big room: server CPU us/connect", "big room: chat deliveries lost"):
        assert label in result.stdout, label
    assert figures["ratiosToBaseline"]["chatthing"]["room20k.rssBytesPerPage"] > 0


def test_benchGrowth(tmp_path):
    """The growth series: a join storm of each size on a fresh server, in a table and a plot."""
    jsonPath, plotPath = tmp_path / "bench.json", tmp_path / "bench.png"
    result = runBench("--growth-sizes", "20,40", "--scenarios", "growth", "--no-redis", "--no-node",
                      "--no-baseline", "--json", str(jsonPath), "--plot", str(plotPath))
    assert result.returncode == 0, result.stdout + result.stderr
    run = json.loads(jsonPath.read_text())["runs"]["chatthing"]
    assert [storm["connected"] for storm in run["growth"]] == [20, 40]
    for storm, pages in zip(run["growth"], (20, 40)):
        checkStorm("chatthing", storm, pages)
    assert list(run["timeline"]) == ["growth 20", "growth 40"], "each size on a fresh server"
    assert "Join storms of growing size" in result.stdout and "CPU us/connect" in result.stdout
    assert plotPath.read_bytes().startswith(b"\x89PNG")


def test_sizesFitTheFileLimit():
    """Sizes past what one process's file limit holds are cut to it, and the report says so."""
    from chatthing.bench.scenarios import BenchSettings, fitToFileLimit

    settings = BenchSettings(stormPages=2000, roomPages=50000, idle=10000, growthSizes=(1000, 5000, 20000),
                             scenarios=("idle", "room20k", "growth"))
    notes = fitToFileLimit(settings, 19900)
    assert (settings.stormPages, settings.roomPages, settings.idle) == (2000, 19900, 10000)
    assert settings.growthSizes == (1000, 5000, 19900)
    assert len(notes) == 2 and "asked for 50,000 pages" in notes[0] and "19,900" in notes[0]
    assert fitToFileLimit(settings, None) == []
    quiet = BenchSettings(roomPages=50000, scenarios=("idle",))
    assert fitToFileLimit(quiet, 19900) == [] and quiet.roomPages == 19900, "cut, but not worth a note"



def test_probeReaderTellsWhenBytesArrivedNotWhenRead():
    """A stamped reader gives a probe the kernel's arrival time of what it reads: a time before the read, not the read's."""
    import select
    import socket
    import time

    from twisted.internet import reactor

    from chatthing.bench import bulkread

    if not bulkread.available():
        pytest.skip("no epoll here")
    with socket.create_server(("127.0.0.1", 0)) as server:
        near = socket.create_connection(server.getsockname())
        far, _ = server.accept()
    near.setblocking(False)
    arrivals = []

    class Transport:
        socket = near
        fileno = near.fileno

        def stopReading(self):
            pass

    class Page:
        transport = Transport()
        arrived = None
        isOpen = False
        whenLost = None

        def dataReceived(self, data):
            arrivals.append((self.arrived, time.perf_counter_ns(), data))

    page = Page()
    reader = bulkread.BulkReader(reactor, stamped=True)
    # Linux turns stamping on for the first socket that asks a moment later (a deferred
    # work item): frames read before that are not stamped, so send until one is, for 5 s.
    deadline = time.monotonic() + 5
    try:
        reader.take(page)
        while time.monotonic() < deadline and not (arrivals and arrivals[-1][0] is not None):
            far.sendall(b"frame")
            select.select([near], [], [], 5)  # the bytes are in the socket, not read yet
            readable = time.perf_counter_ns()
            reader.doRead()
    finally:
        reader.close()
        near.close()
        far.close()
    arrived, read, data = arrivals[-1]
    assert data and data == b"frame" * (len(data) // 5)
    assert arrived is not None, f"the kernel stamped none of {len(arrivals)} reads"
    assert arrived <= readable <= read
    assert page.arrived is None  # told only while the bytes are handed over


@pytest_twisted.ensureDeferred
async def test_rawPageWritesItsCallsStraightToTheSocket():
    """A page's call is in its socket when call() returns, not on the reactor's next turn (its send time is in it)."""
    import select
    import socket

    from twisted.internet import reactor
    from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        page = RawPage("127.0.0.1", port)
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), page)
        far, _ = server.accept()
    with far:
        far.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n")
        await eventually(lambda: page._upgraded, "the page to read the upgrade")
        await eventually(lambda: select.select([far], [], [], 0)[0], "the page's hello")
        far.setblocking(False)
        while True:  # the request and the hello
            try:
                far.recv(65536)
            except BlockingIOError:
                break
        page.call("say", "now")
        # No reactor turn since: the frame is in the socket already.
        select.select([far], [], [], 5)
        [(opcode, payload)] = clientFrames(far.recv(65536))
        assert opcode == 0x1 and json.loads(payload)["args"] == ["now"]
        page.transport.abortConnection()


def test_latencyProbesAreSpreadAmongTheReceivers():
    """The probes that time the room's messages are spread evenly over the receivers, in the order they connect, not
    the first ones: a server that serves its pages in connection order would reach those first."""
    from chatthing.bench.load import roomPlans

    plans = roomPlans({"receivers": 1000, "probes": 50, "senders": 10}, ["target"], "p")
    receivers = plans[:1000]
    probed = [index for index, plan in enumerate(receivers) if plan.probe]
    assert len(probed) == 50
    assert probed == list(range(0, 1000, 20))
    assert all(plan.bulk != plan.probe for plan in receivers)
    assert not any(plan.probe for plan in plans[1000:])
