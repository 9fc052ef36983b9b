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
import subprocess
import sys

import pytest
from conftest import subprocessEnvironment
from twisted.internet.testing import StringTransport
from twisted.python import usage

from chatthing import cli
from chatthing.bench import baseline, report
from chatthing.bench.rawclient import RawPage, maskedFrame, messageText, sentTime
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


def openPage(probe: bool = False) -> tuple[RawPage, TCPStringTransport]:
    """
    A L{RawPage} whose handshake was accepted and welcome received.
    """
    page = RawPage("127.0.0.1", 8080, probe=probe)
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
    assert settings.systems() == ["chatthing", "baseline"]
    assert not settings.sideBySide()
    options.parseOptions(["bench", "--scaling-rounds", "5", "--scaling-messages", "7"])
    settings = options.subOptions.settings()
    assert (settings.scalingRounds, settings.scalingMessages) == (5, 7) and settings.sideBySide()
    assert settings.loadArguments(["scaling"])[settings.loadArguments(["scaling"]).index(
        "--fanout-messages") + 1] == "7"
    options.parseOptions(["bench", "--scaling-rounds", "0"])
    assert not options.subOptions.settings().sideBySide()
    for bad in (["--scenarios", "nope"], ["--senders", "0"], ["--server-pid", "1"],
                ["--url", "http://x/"], ["--scaling-rounds", "-1"]):
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
                      "--idle", "200",
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
