"""
The server's limits, its defences against abuse, and its graceful shutdown,
against real servers on ephemeral loopback ports: the WebSocket Origin
check, security headers and static-file confinement, the per-page rate
limit, oversize input, the pending-calls limit, the connection limit, the
slow-consumer cut, the heartbeat, and SIGTERM.

Every wait has a deadline; nothing sleeps for a fixed time to let the
server catch up.
"""

import base64
import json
import os
import resource
import signal
import socket
import statistics
import struct
import subprocess
import time
from pathlib import Path

import pytest
import pytest_twisted
from conftest import eventually, logLines
from twisted.internet import reactor, task, threads
from twisted.internet.defer import Deferred, DeferredList, ensureDeferred

from chatthing.chat import RESTART_ALERT
from chatthing.live import assetFolder
from chatthing.chatterbox import MAX_MESSAGE_LENGTH
from chatthing.live import LiveElement, LiveSettings, expose
from chatthing.live._backlog import bufferedBytes
from chatthing.live.testing import LiveTestClient

EVIL = "http://evil.example"


# Helpers


def _request(port: int, raw: bytes, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """
    Send C{raw} to the server and read the whole response (blocking: run it
    in a thread); its status, headers (lower-cased names) and body.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(raw)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
            if raw.startswith(b"GET /live") and b"\r\n\r\n" in data:
                break  # a WebSocket handshake's answer: no body to wait for
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


def httpGet(port: int, path: str) -> Deferred:
    """
    GET C{path} exactly as given (no normalisation of C{..} or escapes).
    """
    raw = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n").encode()
    return threads.deferToThread(_request, port, raw)


def handshakeRequest(port: int, origin: str | None = None) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        "GET /live HTTP/1.1", f"Host: 127.0.0.1:{port}", "Upgrade: websocket",
        "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13",
    ]
    if origin is not None:
        lines.append(f"Origin: {origin}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def handshakeStatus(port: int, origin: str | None = None) -> int:
    """
    The HTTP status of a raw WebSocket handshake (101: switched to WebSocket).
    """
    status, _, _ = await threads.deferToThread(_request, port, handshakeRequest(port, origin))
    return status


def maskedTextFrame(payload: bytes) -> bytes:
    """
    One masked WebSocket text frame, as a client must send it.
    """
    mask = os.urandom(4)
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x81, 0x80 | length)
    elif length < 65536:
        header = struct.pack("!BBH", 0x81, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", 0x81, 0x80 | 127, length)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return header + mask + masked


def openNonReader(port: int) -> socket.socket:
    """
    A page that does the handshake, says hello, and then never reads again;
    its receive buffer is made small, so the server's fills up soon.
    """
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    s.sendall(handshakeRequest(port))
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(1)  # byte by byte: read nothing after the handshake's answer
        assert chunk, "the server closed the connection during the handshake"
        data += chunk
    assert data.startswith(b"HTTP/1.1 101"), data
    s.sendall(maskedTextFrame(json.dumps({"type": "hello", "version": 1, "render": False}).encode()))
    return s


@pytest_twisted.ensureDeferred
async def test_foreignOriginRefused(serve):
    """A handshake from another site's page gets HTTP 403, and no connection is made."""
    server = await serve()
    assert await handshakeStatus(server.port, EVIL) == 403
    assert await handshakeStatus(server.port, f"http://127.0.0.1:{server.port + 1}") == 403
    # A sandboxed or file: page says "null": Autobahn refuses it first, with 400.
    assert await handshakeStatus(server.port, "null") in (400, 403)
    with pytest.raises(ConnectionError):
        await LiveTestClient.connect(server.wsUrl, origin=EVIL)
    assert not server.connections and not server.site.liveFactory.sessions


@pytest_twisted.ensureDeferred
async def test_sameOriginAllowed(serve):
    """A page of the server's own origin (same host and port as Host) may connect."""
    server = await serve()
    assert await handshakeStatus(server.port, f"http://127.0.0.1:{server.port}") == 101
    client = await server.connect(origin=f"http://127.0.0.1:{server.port}")
    assert (await client.call("setUsername", "alice"))["type"] == "result"


@pytest_twisted.ensureDeferred
async def test_noOriginAllowed(serve):
    """A client that sends no Origin (not a browser, so no cookies to abuse) may connect."""
    server = await serve()
    assert await handshakeStatus(server.port, None) == 101
    client = await server.connect()
    assert (await client.call("setUsername", "bot"))["type"] == "result"


@pytest_twisted.ensureDeferred
async def test_allowedOrigin(serve):
    """An origin listed in allowedOrigins may connect; other foreign ones still may not."""
    server = await serve(LiveSettings(allowedOrigins=("https://chat.example.com",)))
    assert await handshakeStatus(server.port, "https://chat.example.com") == 101
    client = await server.connect(origin="https://chat.example.com")
    assert (await client.call("setUsername", "alice"))["type"] == "result"
    assert await handshakeStatus(server.port, EVIL) == 403


@pytest_twisted.ensureDeferred
async def test_allowedOriginOption(startTwistd):
    """twistd's --allowed-origin reaches the server: that origin connects, others get 403."""
    server = startTwistd("--allowed-origin", "https://chat.example.com")
    assert await handshakeStatus(server.port, "https://chat.example.com") == 101
    assert await handshakeStatus(server.port, EVIL) == 403
    assert await handshakeStatus(server.port, None) == 101
    server.waitForLog(r"refused WebSocket from .*origin 'http://evil\.example' not allowed")


# Security headers and static files


def staticSample(folder: str, suffix: str) -> str:
    """
    The path under C{/folder/} of one served file ending in C{suffix}.
    """
    root = assetFolder("js") if folder == "js" else assetFolder("templates") / "css"
    found = sorted(p for p in Path(root).rglob(f"*{suffix}") if p.is_file())
    assert found, f"no {suffix} file under {root}"
    return f"/{folder}/" + found[0].relative_to(root).as_posix()


def checkSecurityHeaders(path: str, headers: dict[str, str]) -> None:
    csp = headers.get("content-security-policy", "")
    assert csp, f"{path}: no Content-Security-Policy"
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, (path, csp)
    assert "frame-ancestors 'none'" in csp, (path, csp)
    assert "script-src 'self'" in csp or "default-src 'self'" in csp, (path, csp)
    assert headers.get("x-content-type-options") == "nosniff", path
    assert headers.get("referrer-policy"), path


@pytest_twisted.ensureDeferred
async def test_securityHeaders(serve):
    """The page, a JS file, a CSS file, a 404 and a 403 all carry CSP, nosniff and Referrer-Policy."""
    server = await serve()
    cases = [("/", 200), (staticSample("js", ".js"), 200), (staticSample("css", ".css"), 200),
             ("/no-such-page", 404), ("/js/no-such.js", 404), ("/js/", 403)]
    for path, expected in cases:
        status, headers, body = await httpGet(server.port, path)
        assert status == expected, (path, status)
        checkSecurityHeaders(path, headers)
        if path.endswith(".js") and status == 200:
            assert headers["content-type"].startswith("text/javascript"), headers
        if path.endswith(".css") and status == 200:
            assert headers["content-type"].startswith("text/css"), headers


@pytest_twisted.ensureDeferred
async def test_noDirectoryListings(serve):
    """/js/, /js/live/ and /css/ are 403, listing no file names."""
    server = await serve()
    for path in ["/js/", "/js/live/", "/css/"]:
        status, headers, body = await httpGet(server.port, path)
        assert status == 403, (path, status)
        assert b".js" not in body and b".css" not in body, (path, body[:300])
        checkSecurityHeaders(path, headers)


@pytest.mark.parametrize("path, secret", [
    ("/js/../setup.py", b"setup("),
    ("/js/%2e%2e/setup.py", b"setup("),
    ("/js/%2e%2e/chatthing/tap.py", b"def makeService"),
    ("/js/..%2fchatthing%2ftap.py", b"def makeService"),
    ("/css/..%2f..%2fsetup.py", b"setup("),
    ("/css/%2e%2e/%2e%2e/setup.py", b"setup("),
    ("/js/live/..%5c..%5c..%5csetup.py", b"setup("),
    ("/js//etc/passwd", b"root:"),
    ("/js/%2fetc%2fpasswd", b"root:"),
])
@pytest_twisted.ensureDeferred
async def test_noPathTraversal(serve, path, secret):
    """A path that climbs out of the static folders gets 404 or 403, never the file."""
    server = await serve()
    status, headers, body = await httpGet(server.port, path)
    assert status in (403, 404), (path, status, body[:200])
    assert secret not in body
    checkSecurityHeaders(path, headers)


# Rate limit


@pytest_twisted.ensureDeferred
async def test_rateLimit(serve, serverLog):
    """A burst is served; a sustained flood gets RateLimited (logged once per flood) on an open connection; calls work after the refill."""
    rate, burst = 20, 10
    server = await serve(LiveSettings(frameRate=rate, frameBurst=burst))
    client = await server.login("flooder")
    connection = server.serverSide(client)
    bucket = connection._bucket

    def bucketFull() -> bool:
        # The frame bucket, and the far larger one for frames of every kind
        # (this flood, with the acks of its replies, is 30 times the rate:
        # kept up for long, it would be cut as a flood; see test_ws_budget).
        return all(b.tokens + (b.clock() - b._updated) * b.rate >= b.burst
                   for b in (bucket, connection._wireBucket))

    # A burst of `burst` calls at once: all served.
    await eventually(bucketFull, "the token bucket to refill")
    ids = [client.startCall("say", f"burst {i}") for i in range(burst)]
    answers = [await client.answerTo(i) for i in ids]
    assert [a["type"] for a in answers] == ["result"] * burst, answers
    assert not client.isClosed

    # A sustained flood: 300 calls over about half a second, 10 every 15 ms.
    async def flood(count: int = 300) -> list[dict]:
        ids = []
        for _ in range(count // 10):
            ids += [client.startCall("say", f"flood {len(ids) + i}") for i in range(10)]
            await task.deferLater(reactor, 0.015, lambda: None)  # the flood's pace
        return [await client.answerTo(i) for i in ids]

    await eventually(bucketFull, "the token bucket to refill")
    answers = await flood()
    limited = [a for a in answers if a["type"] == "error"]
    assert len(limited) >= len(answers) // 2, f"only {len(limited)} of {len(answers)} refused"
    assert {a["error"]["name"] for a in limited} == {"RateLimited"}
    assert all("slow down" in a["error"]["message"] for a in limited), limited[0]
    assert not client.isClosed
    assert len(logLines(serverLog, "refused input", "RateLimited")) == 1, \
        logLines(serverLog, "refused input", "RateLimited")

    # Once the tokens are back, calls are served again.
    await eventually(bucketFull, "the token bucket to refill")
    assert (await client.call("say", "calm again"))["type"] == "result"

    # A second flood is a second log line, not one per frame.
    await flood()
    assert len(logLines(serverLog, "refused input", "RateLimited")) == 2
    assert not client.isClosed
    print(f"\nrate limit: {len(limited)} of {len(answers)} flood frames refused; "
          f"{len(logLines(serverLog, 'RateLimited'))} log lines for 2 floods")


# Oversize input


@pytest_twisted.ensureDeferred
async def test_oversizeMessage(serve):
    """A message over 2000 characters gets InvalidMessage; 2000 exactly is said."""
    server = await serve()
    alice = await server.login("alice")
    answer = await alice.call("say", "x" * (MAX_MESSAGE_LENGTH + 1))
    assert answer["type"] == "error" and answer["error"]["name"] == "InvalidMessage", answer
    assert str(MAX_MESSAGE_LENGTH) in answer["error"]["message"]
    assert (await alice.call("say", "y" * MAX_MESSAGE_LENGTH))["type"] == "result"
    await alice.waitFor(lambda: ["alice", "y" * MAX_MESSAGE_LENGTH] in alice.calls("displayUserMessage"))
    assert not [c for c in alice.calls("displayUserMessage") if c[1].startswith("x")]


@pytest_twisted.ensureDeferred
async def test_oversizeFrame(serve):
    """A frame over 64 KiB gets FrameTooLarge, and the connection stays open and usable."""
    server = await serve()
    alice = await server.login("alice")
    frame = {"type": "call", "id": 99, "method": "say", "args": ["z" * (70 * 1024)], "seq": 1000}
    alice.sendRaw(json.dumps(frame).encode())
    error = await alice.nextFrame(lambda f: f["type"] == "error", "an error")
    assert error["error"]["name"] == "FrameTooLarge", error
    assert not alice.isClosed
    assert (await alice.call("say", "still here"))["type"] == "result"
    assert not [c for c in alice.calls("displayUserMessage") if c[1].startswith("z")]


# Pending calls


class Hanging(LiveElement):
    """
    An element whose C{hang()} never answers.
    """

    @expose
    def hang(self) -> Deferred:
        return Deferred()

    @expose
    def echo(self, value: str) -> str:
        return value


@pytest_twisted.ensureDeferred
async def test_tooManyPendingCalls(serve):
    """With 16 calls still running, the 17th gets TooManyPendingCalls; the connection stays."""
    server = await serve(LiveSettings(maxPendingCalls=16), elementFactory=Hanging)
    client = await server.connect()
    ids = [client.startCall("hang") for _ in range(17)]
    answer = await client.answerTo(ids[16])
    assert answer["type"] == "error" and answer["error"]["name"] == "TooManyPendingCalls", answer
    answered = {f.get("id") for f in client.frames if f["type"] in ("result", "error")}
    assert not answered & set(ids[:16]), "a hanging call was answered"
    assert not client.isClosed
    answer = await client.call("echo", "hi")
    assert answer["error"]["name"] == "TooManyPendingCalls"


# Connections


@pytest_twisted.ensureDeferred
async def test_maxConnections(serve):
    """With maxConnections=3, the 4th handshake gets 503; the first 3 keep working, and a freed place is reused."""
    server = await serve(LiveSettings(maxConnections=3))
    clients = [await server.login(name) for name in ("alice", "bob", "carol")]
    assert await handshakeStatus(server.port) == 503
    with pytest.raises(ConnectionError):
        await LiveTestClient.connect(server.wsUrl)
    for client in clients:
        assert not client.isClosed
        assert (await client.call("say", "still here"))["type"] == "result"
    await clients[0].waitFor(lambda: len(clients[0].calls("displayUserMessage")) == 3)
    clients[2].close()
    await eventually(lambda: server.site.liveFactory.getConnectionCount() == 2,
                     "carol's connection to be released")
    dave = await server.login("dave")
    assert not dave.isClosed


@pytest_twisted.ensureDeferred
async def test_slowConsumerCutOff(serve, serverLog):
    """A page that stops reading is cut off with bounded buffering; the others' chat stays complete, ordered and prompt."""
    maxOutgoing = 64 * 1024
    server = await serve(LiveSettings(maxOutgoingBytes=maxOutgoing, frameRate=1000, frameBurst=1000))
    talkers = {name: await server.login(name) for name in ("alice", "bob", "carol")}

    nonReader = await threads.deferToThread(openNonReader, server.port)
    try:
        localPort = nonReader.getsockname()[1]
        laggard = await eventually(
            lambda: next((c for c in server.connections
                          if c.transport.getPeer().port == localPort and c.session), None),
            "the non-reader's session")
        # Keep the kernel's share of the backlog small, so that it is the
        # server's own buffer that fills.
        laggard.transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)

        peaks: dict = {}
        frameSizes = []

        def watch(connection):
            check = connection._checkBacklog

            def recording():
                peaks[connection] = max(peaks.get(connection, 0), bufferedBytes(connection.transport))
                check()

            connection._checkBacklog = recording

        for connection in server.connections:
            watch(connection)

        sent: dict[tuple[str, int], float] = {}
        arrived: dict[str, dict[tuple[str, int], float]] = {name: {} for name in talkers}
        for name, client in talkers.items():
            received = client._received

            def timing(payload, isBinary, name=name, received=received):
                frame = json.loads(payload)
                if frame.get("method") == "displayUserMessage":
                    who, text = frame["args"]
                    arrived[name].setdefault((who, int(text.split()[1])), time.monotonic())
                    frameSizes.append(len(payload))
                received(payload, isBinary)

            client._received = timing

        perTalker = 150
        filler = "m" * 1800

        async def talk(name: str, client: LiveTestClient) -> None:
            for i in range(perTalker):
                sent[(name, i)] = time.monotonic()
                answer = await client.call("say", f"{name} {i:04d} {filler}")
                assert answer["type"] == "result", answer

        results = await DeferredList(
            [ensureDeferred(talk(name, client)) for name, client in talkers.items()],
            fireOnOneErrback=True, consumeErrors=True,
        )
        assert all(ok for ok, _ in results)

        await eventually(lambda: laggard not in server.connections, "the non-reader to be cut off")
        assert logLines(serverLog, "cut off"), "no 'cut off' log line"
        total = len(talkers) * perTalker
        for name, client in talkers.items():
            await client.waitFor(lambda client=client: len(client.calls("displayUserMessage")) >= total,
                                 f"{name}'s transcript", deadline=20)

        # Every transcript complete, each talker's messages in order, all in the same order.
        transcripts = {name: [(who, text.split()[1]) for who, text in c.calls("displayUserMessage")]
                       for name, c in talkers.items()}
        first = transcripts["alice"]
        assert len(first) == total and len(set(first)) == total
        for name, transcript in transcripts.items():
            assert transcript == first, f"{name}'s transcript differs"
            assert not talkers[name].isClosed and talkers[name].duplicates == 0
        for who in talkers:
            assert [i for w, i in first if w == who] == [f"{i:04d}" for i in range(perTalker)]

        biggestFrame = max(frameSizes) + 16
        laggardPeak = peaks.get(laggard, 0)
        # (Only a connection written over the limit is checked; readers may never be.)
        othersPeak = max((peaks[c] for c in peaks if c is not laggard), default=0)
        assert laggardPeak > maxOutgoing  # it was the buffer that cut it
        # Bounded: over the limit, a page is cut as soon as the kernel refuses
        # its bytes, or a second later, and never holds four times the limit.
        assert laggardPeak <= 4 * maxOutgoing + biggestFrame, (laggardPeak, maxOutgoing, biggestFrame)

        latencies = [at - sent[key] for name in talkers for key, at in arrived[name].items()]
        worst, median = max(latencies), statistics.median(latencies)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(f"\nslow consumer: {total} messages of {biggestFrame} bytes to 3 readers and 1 non-reader; "
              f"non-reader's server buffer peaked at {laggardPeak} bytes "
              f"(limit {maxOutgoing}, frames of {biggestFrame}) and was cut off; "
              f"readers' buffers peaked at {othersPeak} bytes; "
              f"send-to-receive latency median {median * 1000:.1f} ms, max {worst * 1000:.1f} ms; "
              f"test process max RSS {rss // 1024} MiB")
        assert worst < 2.0, f"worst latency {worst:.3f}s"
    finally:
        nonReader.close()


@pytest_twisted.ensureDeferred
async def test_heartbeatDropsDeadPeer(serve, serverLog):
    """A page that stops answering pings is dropped within a bounded time; a live one stays."""
    server = await serve(LiveSettings(pingInterval=0.5, pingTimeout=0.5))
    dead = await server.login("dead")
    alive = await server.login("alive")
    deadSide, aliveSide = server.serverSide(dead), server.serverSide(alive)
    started = time.monotonic()
    dead.protocol.transport.pauseProducing()  # reads nothing more, so sends no pong
    await eventually(lambda: deadSide not in server.connections, "the dead page to be dropped",
                     deadline=5)
    took = time.monotonic() - started
    assert aliveSide in server.connections and not alive.isClosed
    assert (await alive.call("say", "still here"))["type"] == "result"
    print(f"\nheartbeat: a silent page was dropped after {took:.2f}s (interval 0.5s, timeout 0.5s)")


# Graceful shutdown


@pytest_twisted.ensureDeferred
async def test_gracefulShutdown(startTwistd):
    """On SIGTERM each page gets the restart notice and a 1012 close, and twistd exits 0 after logging it."""
    server = startTwistd()
    url = f"ws://127.0.0.1:{server.port}/live"
    clients = []
    for name in ("alice", "bob"):
        client = await LiveTestClient.connect(url)
        assert (await client.call("setUsername", name))["type"] == "result"
        clients.append(client)
    server.process.send_signal(signal.SIGTERM)
    for client in clients:
        await client.waitFor(lambda client=client: [RESTART_ALERT] in client.calls("displayMessage"),
                             "the restart alert")
        assert await client.closed() == 1012
        assert client.calls("displayMessage")[-1] == [RESTART_ALERT]
        assert client.calls("displayMessage").count([RESTART_ALERT]) == 1
    try:
        code = await threads.deferToThread(server.process.wait, 15)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"twistd did not exit; log:\n{server.log()}") from None
    # twistd ends by re-raising the signal that stopped it (so a supervisor
    # sees "terminated by SIGTERM", a clean stop), after a clean shutdown.
    assert code in (0, -signal.SIGTERM), server.log()
    server.waitForLog(r"shutting down: telling 2 page\(s\) and closing their WebSocket connections with 1012")


@pytest_twisted.ensureDeferred
async def test_frameLimitConfigurable(serve):
    """maxFrameBytes sets the frame limit: a frame over it gets FrameTooLarge, the welcome says the limit, the connection stays."""
    server = await serve(LiveSettings(maxFrameBytes=2048))
    alice = await server.login("alice")
    assert alice.welcome["limits"]["maxFrameBytes"] == 2048
    alice.sendRaw(json.dumps({"type": "call", "id": 99, "method": "say", "args": ["x" * 3000]}).encode())
    error = await alice.nextFrame(lambda f: f["type"] == "error", "the FrameTooLarge error")
    assert error["error"]["name"] == "FrameTooLarge" and "2048" in error["error"]["message"]
    assert (await alice.call("say", "y" * 1000))["type"] == "result"
