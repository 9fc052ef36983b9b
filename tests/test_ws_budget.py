"""
What a page's WebSocket frames may cost the server (issue 12, rows 2, 3, 4
and 9, and anything sent before C{hello}), against real servers on
ephemeral loopback ports, attacked from plain sockets with frames built by
hand, most from a process of their own (C{tests/wsflood.py}), while a
L{Bystander} keeps chatting.

Each test asserts figures (bytes held, RSS growth, frames, log bytes, the
bystander's p95 relative to its calm one), never wall-clock times; every
attacker is bounded in time and stopped by its PID.
"""

import base64
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest_twisted
from bystander import Bystander
from conftest import eventually, logLines, subprocessEnvironment
from twisted.internet import defer, reactor, task, threads
from twisted.logger import formatEvent
from wsflood import frame, parseFrames

from chatthing.live import LiveSettings
from chatthing.live._backlog import bufferedBytes

FLOODER = Path(__file__).resolve().parent / "wsflood.py"
MiB = 1024 * 1024


def startFlooder(port: int, mode: str, seconds: float, rate: float = 0,
                 connections: int = 1) -> subprocess.Popen:
    """
    Start C{tests/wsflood.py} against C{port} (loopback) in a process of
    its own; it stops by itself after C{seconds}.
    """
    return subprocess.Popen(
        [sys.executable, str(FLOODER), str(port), mode, str(seconds), str(rate), str(connections)],
        env=subprocessEnvironment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


async def flooderResult(process: subprocess.Popen, deadline: float = 30.0) -> dict:
    """
    What the flooder printed once it ended; it is killed (by its PID) if it
    has not ended within C{deadline} seconds.
    """
    try:
        out, err = await threads.deferToThread(process.communicate, timeout=deadline)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise AssertionError("the flooder did not stop by itself") from None
    assert process.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def stopped(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
        process.wait()


def rss() -> int:
    """
    This process's resident memory, in bytes (the server runs in it).
    """
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Peaks:
    """
    Samples, every few milliseconds of the reactor, the most any server
    connection holds unsent, the most held in unfinished incoming messages
    (each connection, all together), and this process's RSS.
    """

    def __init__(self, server) -> None:
        self.server = server
        self.unsent = self.heldOne = self.heldAll = 0
        self.rssStart = self.rssPeak = rss()
        self._loop = task.LoopingCall(self.sample)
        self._loop.start(0.005)

    def sample(self) -> None:
        total = 0
        for connection in list(self.server.connections):
            self.unsent = max(self.unsent, bufferedBytes(connection.transport))
            held = sum(len(b) for b in (getattr(connection, "message_data", None) or ()))
            held += sum(len(b) for b in (getattr(connection, "frame_data", None) or ()))
            self.heldOne = max(self.heldOne, held)
            total += held
        self.heldAll = max(self.heldAll, total)
        self.rssPeak = max(self.rssPeak, rss())

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()

    @property
    def rssGrowth(self) -> int:
        return self.rssPeak - self.rssStart


def metric(server, sample: str) -> float:
    """
    The value of one sample (C{name{labels}}) of the server's /metrics; 0 if absent.
    """
    for line in server.site.liveFactory.metrics.render().decode().splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[-1])
    return 0.0


def others(server, bystander: Bystander) -> list:
    """
    The server's connections that are not the bystander's.
    """
    mine = {server.serverSide(bystander.speaker), server.serverSide(bystander.listener)}
    return [c for c in server.connections if c not in mine]


# Row 2: ping floods


@pytest_twisted.ensureDeferred
async def test_pingFloodFromNonReaderCut(serve):
    """A page flooding pings and reading nothing is cut: unsent bytes bounded, RSS growth bounded, the bystander unharmed."""
    limit = 64 * 1024
    server = await serve(LiveSettings(maxOutgoingBytes=limit))
    bystander = await Bystander.start(server.wsUrl)
    calm = await bystander.probe(20)
    peaks = Peaks(server)
    flooder = startFlooder(server.port, "pingnoread", 8)
    try:
        await eventually(lambda: others(server, bystander), "the flooder to connect")
        during = await bystander.probe(20)
        await eventually(lambda: not others(server, bystander), "the flooder to be cut", deadline=8)
        result = await flooderResult(flooder)
    finally:
        stopped(flooder)
        peaks.stop()
    closes = metric(server, 'live_budget_closes_total{kind="FrameFlood"}')
    cutOffs = metric(server, "live_slow_consumer_cutoffs_total")
    print(f"\nping flood, non-reader: {result['sent']} pings sent in {result['seconds']} s; "
          f"most unsent {peaks.unsent} bytes (limit {limit}); RSS +{peaks.rssGrowth / MiB:.1f} MiB; "
          f"closed for flood {closes:g}, cut off {cutOffs:g}; bystander calm {calm}; during {during}")
    assert closes + cutOffs >= 1
    assert peaks.unsent <= 4 * limit + 4096
    assert peaks.rssGrowth < 64 * MiB
    bystander.assertUnharmed(calm, during)
    await bystander.stop()


@pytest_twisted.ensureDeferred
async def test_pongsCountAgainstBacklog(serve, serverLog):
    """Pings under the frame rate from a page that reads nothing: its pongs pile up until it is cut as a slow reader."""
    limit = 16 * 1024
    server = await serve(LiveSettings(maxOutgoingBytes=limit))
    flooder = startFlooder(server.port, "pingnoread", 10, rate=300)
    try:
        [connection] = await eventually(lambda: list(server.connections), "the flooder to connect")
        # Keep the kernel's share small, so that it is the server's own buffer that fills.
        connection.transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        peaks = Peaks(server)
        try:
            await eventually(lambda: not server.connections, "the pinging non-reader to be cut",
                             deadline=9)
        finally:
            peaks.stop()
        result = await flooderResult(flooder)
    finally:
        stopped(flooder)
    print(f"\npongs: {result['sent']} pings at 300/s before the cut; most unsent {peaks.unsent} "
          f"bytes (limit {limit})")
    assert logLines(serverLog, "cut off", "not reading")
    assert metric(server, "live_slow_consumer_cutoffs_total") == 1
    assert metric(server, 'live_budget_closes_total{kind="FrameFlood"}') == 0
    assert peaks.unsent <= 4 * limit + 4096


@pytest_twisted.ensureDeferred
async def test_pingTimeoutDespiteAcks(serve):
    """A page that answers none of the server's pings is dropped even though it keeps sending acks."""
    server = await serve(LiveSettings(pingInterval=0.5, pingTimeout=0.5))
    page = startFlooder(server.port, "ack", 8, rate=5)  # reads, acks, never pongs
    try:
        await eventually(lambda: server.connections, "the page to connect")
        await eventually(lambda: not server.connections, "the silent page to be dropped", deadline=6)
        result = await flooderResult(page)
    finally:
        stopped(page)
    assert result["ended"] and result["closeCode"] is None, result  # dropped, no close frame
    assert result["sent"] < 8 * 5, result


# Row 3: unfinished fragmented messages


@pytest_twisted.ensureDeferred
async def test_unfinishedMessagesBudget(serve):
    """40 sockets each sending 60 KB (under the frame limit) of a message never finished: what the server holds stays within the process-wide budget, the largest holders are closed with 1009."""
    budget = 512 * 1024
    server = await serve(LiveSettings(maxPartialBytes=budget))
    bystander = await Bystander.start(server.wsUrl)
    calm = await bystander.probe(20)
    peaks = Peaks(server)
    flooder = startFlooder(server.port, "fragments", 6, rate=60_000, connections=40)
    try:
        during = await bystander.probe(20)
        result = await flooderResult(flooder)
    finally:
        stopped(flooder)
        peaks.stop()
    codes = result["closeCodes"]
    print(f"\nunfinished messages: 40 sockets x {max(result['sent'])} bytes sent; server held at most "
          f"{peaks.heldAll} bytes in all (budget {budget}), {peaks.heldOne} in one; "
          f"close codes {sorted(set(map(str, codes)))} ({codes.count(1009)} x 1009); "
          f"RSS +{peaks.rssGrowth / MiB:.1f} MiB; bystander calm {calm}; during {during}")
    assert peaks.heldAll <= budget + 64 * 1024
    assert peaks.heldOne <= 64 * 1024 + 64
    assert codes.count(1009) >= 1
    assert metric(server, 'live_budget_closes_total{kind="PartialBudget"}') >= 1
    bystander.assertUnharmed(calm, during)
    await bystander.stop()


@pytest_twisted.ensureDeferred
async def test_fragmentedMessageHeldToFrameLimit(serve):
    """A message sent in fragments (160 KB before its last) is held only up to --max-frame-bytes, then answered FrameTooLarge; the connection stays usable."""
    server = await serve()
    alice = await server.login("alice")
    connection = server.serverSide(alice)
    protocol = alice.protocol
    before = connection.trafficStats.incomingOctetsWireLevel
    protocol.beginMessage()
    protocol.sendMessageFrame(b'{"type":"call","id":99,"method":"say","args":["')
    for _ in range(5):
        protocol.sendMessageFrame(b"z" * 32 * 1024)
    await eventually(lambda: connection.trafficStats.incomingOctetsWireLevel - before >= 160 * 1024,
                     "the fragments to arrive")
    held = sum(len(b) for b in connection.message_data or ()) + sum(
        len(b) for b in connection.frame_data or ())
    protocol.sendMessageFrame(b'"]}')
    protocol.endMessage()
    error = await alice.nextFrame(lambda f: f["type"] == "error", "the FrameTooLarge error")
    print(f"\nfragmented message: 160 KB received before its end; {held} bytes held")
    assert held <= 64 * 1024, held
    assert error["error"]["name"] == "FrameTooLarge", error
    assert not alice.isClosed
    assert (await alice.call("say", "still here"))["type"] == "result"


# Row 4: ack floods, and anything before hello


@pytest_twisted.ensureDeferred
async def test_ackFlood(serve):
    """An ack flood from another process is closed with 1008; acks over their rate are dropped; the bystander keeps chatting."""
    server = await serve()
    bystander = await Bystander.start(server.wsUrl)
    calm = await bystander.probe(20)
    # One page acking as fast as it can, three within the frame budget but
    # far over the ack rate (300 a second each), all for the probes' time.
    fast = startFlooder(server.port, "ack", 6)
    paced = [startFlooder(server.port, "ack", 4, rate=300) for _ in range(3)]
    try:
        during = await bystander.probe(20)
        fastResult = await flooderResult(fast)
        pacedResults = [await flooderResult(p) for p in paced]
    finally:
        for p in [fast, *paced]:
            stopped(p)
    dropped = metric(server, 'live_errors_total{kind="AckRateLimited"}')
    print(f"\nack flood: the fast flooder sent {fastResult['sent']} acks in {fastResult['seconds']} s, "
          f"closed with {fastResult['closeCode']}; the paced ones sent "
          f"{[r['sent'] for r in pacedResults]}, {dropped:g} acks dropped over the rate; "
          f"bystander calm {calm}; during {during}")
    assert fastResult["closeCode"] == 1008, fastResult
    assert metric(server, 'live_budget_closes_total{kind="FrameFlood"}') == 1
    assert all(r["closeCode"] is None for r in pacedResults), pacedResults
    assert dropped >= sum(r["sent"] for r in pacedResults) // 2
    bystander.assertUnharmed(calm, during)
    await bystander.stop()


def _preHelloAcks(port: int, count: int) -> list[dict]:
    """
    Send C{count} acks before any hello, at once; the error replies.
    """
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET /live HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(1)
    s.sendall(frame(1, b'{"type":"ack","seq":0}') * count)
    replies, buffer = [], b""
    s.settimeout(3)
    try:
        while len(replies) < count:
            frames, buffer = parseFrames(buffer + s.recv(65536))
            replies += [json.loads(payload) for opcode, payload in frames if opcode == 1]
    except socket.timeout:
        pass
    s.close()
    return replies


@pytest_twisted.ensureDeferred
async def test_preHelloAcksRateLimited(serve, serverLog):
    """Acks before hello count against the frame rate (RateLimited past the burst), and are logged in a few lines, not one each."""
    server = await serve()
    replies = await threads.deferToThread(_preHelloAcks, server.port, 200)
    names = [r["error"]["name"] for r in replies]
    limited = names.count("RateLimited")
    lines = logLines(serverLog, "refused input")
    print(f"\npre-hello acks: 200 sent, {len(replies)} answered, {limited} RateLimited; "
          f"{len(lines)} log lines")
    assert limited >= 100, names
    assert len(lines) <= 12, lines


# Row 9: log volume


@pytest_twisted.ensureDeferred
async def test_logVolume(serve, serverLog):
    """Ten in-limit pages sending refused frames with 60 KB strings: a few short, escaped log lines, and other kinds of line still logged."""
    server = await serve()
    pages = [await server.connect() for _ in range(10)]
    honest = await server.login("honest")
    bystander = await Bystander.start(server.wsUrl)
    calm = await bystander.probe(20)
    probing = defer.ensureDeferred(bystander.probe(20, interval=0.1))
    start = len(serverLog)
    # One frame with control characters first: its line must not break.
    pages[0].sendRaw(json.dumps({"type": "\x1b[31mALERT\nfake line"}).encode())
    long = "x" * 60_000
    frames = 1
    for _ in range(20):  # 10 a second each: inside the rate limit
        for page in pages:
            page.sendRaw(json.dumps({"type": long}).encode())
            frames += 1
        await task.deferLater(reactor, 0.1, lambda: None)
    answer = await honest.call("nonexistent")  # another kind of refusal, meanwhile
    assert answer["error"]["name"] == "NoSuchMethod"
    for page in pages:
        await page.waitFor(lambda page=page: sum(f["type"] == "error" for f in page.frames) >= 20,
                           "the error replies")
    during = await probing
    bystander.assertUnharmed(calm, during)
    await bystander.stop()
    lines = [formatEvent(e) or "" for e in serverLog[start:]]
    volume = sum(len(line) for line in lines)
    print(f"\nlog volume: {frames} refused frames of 60 KB from 10 pages -> {len(lines)} lines, "
          f"{volume} bytes ({volume / frames:.1f} bytes a frame); longest line {max(map(len, lines))}")
    assert volume / frames < 200
    assert max(map(len, lines)) < 1000
    assert not any("\x1b" in line or "\n" in line for line in lines)
    assert any("\\x1b[31mALERT\\nfake line" in line for line in lines)
    assert len(logLines(serverLog[start:], "NoSuchMethod")) == 1
    assert metric(server, 'live_errors_total{kind="ProtocolError"}') == frames


# Options


def test_budgetOptions():
    """--ack-rate, --ack-burst and --max-partial-bytes set the budgets; the defaults are documented ones; bad values are usage errors."""
    from twisted.python import usage

    from chatthing import tap

    def settings(*args: str) -> LiveSettings:
        options = tap.Options()
        options.parseOptions(["--element=chatthing.chatterbox.chat", *args])
        return options["settings"]

    default = settings()
    assert (default.ackRate, default.ackBurst, default.maxPartialBytes) == (20, 40, 64 * MiB)
    chosen = settings("--ack-rate", "5", "--ack-burst", "8", "--max-partial-bytes", "1048576")
    assert (chosen.ackRate, chosen.ackBurst, chosen.maxPartialBytes) == (5, 8, MiB)
    for bad in (["--ack-rate", "0"], ["--ack-burst", "x"], ["--max-partial-bytes", "100"]):
        try:
            settings(*bad)
        except usage.UsageError as e:
            assert bad[0] in str(e)
        else:
            raise AssertionError(f"{bad} was accepted")
