"""
What one HTTP client can make the server hold before its request is
complete (chatthing.live._http), against real servers on ephemeral loopback
ports: an overall deadline for a request's headers, not an idle one; a cap
on unfinished requests that sheds the oldest, so a newcomer is served while
1,100 sockets trickle headers at C{ulimit -n 1024}; request bodies capped
with 413; and the small HTTP leaks: a NUL in a static path, the C{Server}
banner, C{GET /live} without an upgrade, details on the public C{/healthz}.

Every wait has a deadline; the load test is bounded in sockets and time
and stops what it starts.
"""

import os
import resource
import selectors
import socket
import threading
import time

import pytest
import pytest_twisted
from bystander import Bystander
from conftest import (TwistdServer, _collectLines, eventually, logLines, subprocessEnvironment,
                      twistdScript, withDeadline)
from test_limits import _request, handshakeRequest, httpGet
from twisted.internet import threads
from twisted.internet.defer import ensureDeferred

from chatthing.listening import ListeningService
from chatthing.live import LiveSettings
from chatthing.live._health import operatorSite
from chatthing.live._metrics import MetricsResource
from chatthing.live.testing import LiveTestClient


def refusedCount(server, reason: str) -> float:
    """
    C{live_http_refused{reason=...}} of C{server}'s site.
    """
    value = server.site.metrics.registry.get_sample_value("live_http_refused_total", {"reason": reason})
    return value or 0


def connectRaw(port: int, head: bytes, timeout: float = 10.0) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if head:
        s.sendall(head)
    return s


def readAll(s: socket.socket) -> bytes:
    """
    Everything until the server closes the connection (or the socket's
    timeout).
    """
    data = b""
    try:
        while chunk := s.recv(65536):
            data += chunk
    except (socket.timeout, ConnectionResetError):
        pass
    return data


# The header deadline is overall, not idle


def _trickle(port: int, every: float, limit: float) -> tuple[bytes, int, float]:
    """
    Start a request and send one more header byte every C{every} seconds
    (well inside any idle timeout) until the server answers or closes, or
    C{limit} seconds pass; what it answered, bytes sent, seconds taken.
    """
    s = connectRaw(port, f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Slow: ".encode())
    sent, start = 0, time.monotonic()
    s.setblocking(False)
    try:
        while time.monotonic() - start < limit:
            readable = selectors.DefaultSelector()
            readable.register(s, selectors.EVENT_READ)
            if readable.select(every):
                s.settimeout(2)
                return readAll(s), sent, time.monotonic() - start
            try:
                s.send(b"x")
                sent += 1
            except OSError:
                break
        return b"", sent, time.monotonic() - start
    finally:
        s.close()


@pytest_twisted.ensureDeferred
async def test_headerDeadlineIsOverall(serve, serverLog):
    """A request trickling a header byte every 0.1 s gets 408 and is closed at the header deadline."""
    server = await serve(LiveSettings(requestHeaderTimeout=1.0))
    answer, sent, _ = await threads.deferToThread(_trickle, server.port, 0.1, 8.0)
    assert answer.startswith(b"HTTP/1.1 408 "), (answer[:200], sent)
    assert b"X-Frame-Options: DENY" in answer and b"Connection: close" in answer
    assert sent >= 5, f"the server answered after only {sent} bytes"
    assert refusedCount(server, "header_timeout") == 1
    assert len(logLines(serverLog, "not complete after")) == 1
    assert not server.site.unfinished


@pytest_twisted.ensureDeferred
async def test_unfinishedRequestsShedOldest(serve, serverLog):
    """Past --max-unfinished-requests the oldest unfinished request gets 408; a newcomer is served."""
    server = await serve(LiveSettings(maxUnfinishedRequests=5))
    head = f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nX-Slow: ".encode()
    sockets = []
    try:
        for _ in range(5):
            sockets.append(await threads.deferToThread(connectRaw, server.port, head))
        await eventually(lambda: len(server.site.unfinished) == 5, "5 unfinished requests")
        status, _, body = await httpGet(server.port, "/")
        assert status == 200 and b"<html" in body.lower()
        # The newcomer shed the oldest, and only it.
        first = await threads.deferToThread(readAll, sockets[0])
        assert first.startswith(b"HTTP/1.1 408 "), first[:200]
        assert refusedCount(server, "shed") == 1
        assert len(logLines(serverLog, "shed after")) == 1
        assert len(server.site.unfinished) == 4
    finally:
        for s in sockets:
            s.close()


@pytest_twisted.ensureDeferred
async def test_keepAliveWaitsAgain(serve):
    """A kept-alive connection gets a new deadline for its next request, and is closed quietly when idle past it."""
    server = await serve(LiveSettings(requestHeaderTimeout=1.0))
    request = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode()

    def answer(s: socket.socket) -> bytes:
        data = b""
        while not data.endswith(b"\r\n\r\nok"):
            chunk = s.recv(65536)
            assert chunk, data
            data += chunk
        return data

    def twoRequestsThenIdle() -> tuple[bytes, bytes]:
        s = connectRaw(server.port, request)
        first = answer(s)
        s.sendall(request)
        second = answer(s)
        s.settimeout(8)
        return first + second, readAll(s)

    answers, afterIdle = await threads.deferToThread(twoRequestsThenIdle)
    assert answers.count(b"HTTP/1.1 200 ") == 2, answers
    assert afterIdle == b"", afterIdle
    assert refusedCount(server, "header_timeout") == 0


# Slowloris: 1,100 trickling sockets at ulimit -n 1024


TRICKLERS = 1100


class Tricklers:
    """
    C{count} sockets to C{port}, opened fifty every 50 ms, that each send
    the start of a request and then one more header byte a second, in a
    thread of their own, until C{stop()} or C{limit} seconds; they do not
    reconnect.  Counts how many
    connected and how many the server answered 408 or closed.
    """

    def __init__(self, port: int, count: int, limit: float = 25.0) -> None:
        self.port, self.count, self.limit = port, count, limit
        self.connected = self.closed = self.answered408 = self.failed = self.reset = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(10)

    @property
    def settled(self) -> int:
        return self.connected + self.failed

    def _serve(self, selector: selectors.BaseSelector, open_: set, head: bytes, wait: float) -> None:
        """
        Send the request's start on the sockets that connected; count those
        the server closed.
        """
        for key, events in selector.select(wait):
            s = key.fileobj
            if events & selectors.EVENT_WRITE:
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    self.failed += 1
                    selector.unregister(s)
                    open_.discard(s)
                    s.close()
                    continue
                self.connected += 1
                try:
                    s.send(head)
                except OSError:
                    pass
                selector.modify(s, selectors.EVENT_READ)
            else:
                try:
                    data = s.recv(4096)
                except OSError:
                    data = b""
                    self.reset += 1
                if data.startswith(b"HTTP/1.1 408"):
                    self.answered408 += 1
                self.closed += 1
                selector.unregister(s)
                open_.discard(s)
                s.close()

    def _run(self) -> None:
        head = f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nX-Slow: ".encode()
        selector = selectors.DefaultSelector()
        open_: set[socket.socket] = set()
        end = time.monotonic() + self.limit
        try:
            nextTick = time.monotonic() + 1.0
            while len(open_) + self.closed + self.failed < self.count:
                # Fifty at a time, as a paced attacker would: a burst of
                # a thousand would overflow the listen queue and be reset.
                for _ in range(min(50, self.count - len(open_) - self.closed - self.failed)):
                    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    s.setblocking(False)
                    s.connect_ex(("127.0.0.1", self.port))
                    selector.register(s, selectors.EVENT_WRITE)
                    open_.add(s)
                batchEnd = time.monotonic() + 0.05
                while (left := batchEnd - time.monotonic()) > 0:
                    self._serve(selector, open_, head, left)
            while not self._stop.is_set() and time.monotonic() < end and open_:
                self._serve(selector, open_, head, 0.2)
                if time.monotonic() >= nextTick:
                    nextTick += 1.0
                    for s in list(open_):
                        if selector.get_key(s).events & selectors.EVENT_READ:
                            try:
                                s.send(b"x")
                            except OSError:
                                pass
        finally:
            for s in open_:
                selector.unregister(s)
                s.close()
            selector.close()


def _serverFds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.fixture
def limitedTwistd(tmp_path):
    """
    Start C{twistd -n chat-widget EXTRA...} on an ephemeral loopback port
    with C{RLIMIT_NOFILE} 1024 (as C{ulimit -n 1024}); stopped after.
    """
    started = []

    def setLimit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))

    def start(*extra: str) -> TwistdServer:
        import subprocess
        process = subprocess.Popen(
            [twistdScript(), "-n", "--pidfile=", "--logfile=-", "chat-widget",
             "--element=chatthing.chatterbox.chat", "--listen", "tcp:0:interface=127.0.0.1", *extra],
            cwd=tmp_path, env=subprocessEnvironment(), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, preexec_fn=setLimit)
        lines: list[str] = []
        threading.Thread(target=_collectLines, args=(process, lines), daemon=True).start()
        server = TwistdServer(process, 0, lines)
        started.append(server)
        server.port = int(server.waitForLog(r"chat listening on http://127\.0\.0\.1:(\d+)/").group(1))
        return server

    yield start
    for server in started:
        server.stop()


@pytest_twisted.ensureDeferred
async def test_slowlorisNewcomerServed(limitedTwistd):
    """At ulimit -n 1024, with 1,100 sockets trickling headers, a newcomer's page and login are served in seconds."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < TRICKLERS + 500:
        pytest.skip(f"this test needs {TRICKLERS + 500} file descriptors; the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, TRICKLERS + 500), hard))
    server = limitedTwistd("--metrics-listen", "tcp:0:interface=127.0.0.1")
    metricsPort = int(server.waitForLog(r"metrics listening on http://127\.0\.0\.1:(\d+)/").group(1))
    pid = server.process.pid
    bystander = await Bystander.start(server.wsUrl)
    calm = await bystander.probe(20)
    fdsBefore = _serverFds(pid)
    tricklers = Tricklers(server.port, TRICKLERS)
    newcomer = None
    try:
        tricklers.start()
        await eventually(lambda: tricklers.settled >= TRICKLERS - 50, "the trickling sockets to connect",
                         deadline=15.0)
        fdsDuringAttack = _serverFds(pid)
        # Well under the 15 s header deadline: only shedding can serve it.
        status, _, body = await withDeadline(httpGet(server.port, "/"), 5.0)
        assert status == 200 and b"<html" in body.lower()
        newcomer = await withDeadline(ensureDeferred(LiveTestClient.connect(server.wsUrl)), 5.0)
        answer = await withDeadline(ensureDeferred(newcomer.call("setUsername", "newcomer")), 5.0)
        assert answer["type"] == "result", answer
        during = await bystander.probe(20)
        bystander.assertUnharmed(calm, during)
        # Figures: the server holds at most the cap (256) of unfinished
        # requests and a few descriptors of its own; the rest were shed
        # with 408, and the log says so in a few lines, not one a socket.
        print(f"server descriptors: {fdsBefore} before, {fdsDuringAttack} during; tricklers: "
              f"{tricklers.connected} connected, {tricklers.closed} closed by the server, "
              f"{tricklers.answered408} of them with 408, {tricklers.reset} reset; bystander calm {calm}, during {during}")
        assert fdsDuringAttack - fdsBefore <= 256 + 100, (fdsBefore, fdsDuringAttack)
        assert tricklers.closed >= TRICKLERS - 256 - 50, vars(tricklers)
        assert tricklers.answered408 >= (TRICKLERS - 256) // 2, vars(tricklers)
        _, _, metrics = await httpGet(metricsPort, "/metrics")
        shed = float(metrics.decode().split('live_http_refused_total{reason="shed"} ')[1].split()[0])
        assert shed >= TRICKLERS - 256 - 50, shed
        shedLines = [line for line in server.logLines if "shed after" in line]
        assert 1 <= len(shedLines) <= 20, len(shedLines)
    finally:
        tricklers.stop()
        if newcomer is not None:
            newcomer.close()
        await bystander.stop()
        server.stop()


# Request bodies


def _bodyAttempt(port: int, head: bytes, chunk: bytes, total: int, quietUntil: int = 0,
                 deadline: float = 8.0) -> tuple[bytes, int]:
    """
    Send C{head}, then C{chunk} after C{chunk} (up to C{total} bytes),
    looking for an answer before each once C{quietUntil} bytes are out (up
    to half a second); the answer and how many body bytes had gone out
    before it came.
    """
    s = connectRaw(port, head)
    sent, end = 0, time.monotonic() + deadline
    try:
        selector = selectors.DefaultSelector()
        selector.register(s, selectors.EVENT_READ)
        while time.monotonic() < end:
            if selector.select(0.5 if sent >= quietUntil else 0):
                s.settimeout(5)
                return readAll(s), sent
            if sent >= total:
                continue
            try:
                s.sendall(chunk)
            except OSError:
                break
            sent += len(chunk)
        return b"", sent
    finally:
        s.close()


@pytest_twisted.ensureDeferred
async def test_bigContentLengthRefused(serve, serverLog):
    """A body announced as 300 MiB gets 413 and the connection closed before any of it is read."""
    server = await serve()
    head = (f"POST / HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
            f"Content-Length: {300 * 1024 * 1024}\r\n\r\n").encode()
    answer, sent = await threads.deferToThread(_bodyAttempt, server.port, head, b"x" * 65536, 4 << 20)
    assert answer.startswith(b"HTTP/1.1 413 "), (answer[:200], sent)
    assert b"Connection: close" in answer and b"X-Content-Type-Options: nosniff" in answer
    # The answer came right after the headers, and the connection was closed.
    assert sent <= 65536, sent
    assert refusedCount(server, "body_too_large") == 1
    assert len(logLines(serverLog, "body refused", "Content-Length 314572800")) == 1


@pytest_twisted.ensureDeferred
async def test_chunkedBodyRefused(serve):
    """A chunked body is refused with 413 once it passes --max-request-body-bytes, no further bytes read."""
    server = await serve(LiveSettings(maxRequestBodyBytes=16384))
    head = f"POST / HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    chunk = b"1000\r\n" + b"y" * 4096 + b"\r\n"
    answer, sent = await threads.deferToThread(_bodyAttempt, server.port, head, chunk, 1 << 20, 12288)
    assert answer.startswith(b"HTTP/1.1 413 "), (answer[:200], sent)
    # Refused within a few chunks of the cap (16 KiB), not after the
    # megabyte the client had to send.
    assert sent <= 16384 + 16 * len(chunk), sent
    assert refusedCount(server, "body_too_large") == 1


def _bodyFlood(port: int, seconds: float, most: int = 2000) -> list[bytes]:
    """
    Requests one after the other for C{seconds} (at most C{most} of them),
    each announcing a 300 MiB body and sending it as fast as the server
    reads; the status line of each answer.
    """
    head = (f"POST / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Length: {300 * 1024 * 1024}\r\n\r\n").encode()
    answers: list[bytes] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end and len(answers) < most:
        answers.append(_bodyAttempt(port, head, b"x" * 65536, 4 << 20)[0].split(b"\r\n", 1)[0])
    return answers


@pytest_twisted.ensureDeferred
async def test_bodyFloodLeavesOthersChatting(serve):
    """While a client keeps posting 300 MiB bodies, each is refused with 413 and a logged-in user chats unharmed."""
    server = await serve()
    bystander = await Bystander.start(server.wsUrl)
    calm = await bystander.probe(20)
    flood = threads.deferToThread(_bodyFlood, server.port, 3.0)
    during = await bystander.probe(20)
    answers = await withDeadline(flood, 60)
    print(f"\nbody flood: {len(answers)} bodies refused; bystander calm {calm}; during {during}")
    assert answers and all(a.startswith(b"HTTP/1.1 413 ") for a in answers), set(answers)
    assert refusedCount(server, "body_too_large") == len(answers)
    bystander.assertUnharmed(calm, during)
    await bystander.stop()


@pytest_twisted.ensureDeferred
async def test_smallBodyStillAnswered(serve):
    """A body under the cap is read and answered as before (405: the page takes no POST)."""
    server = await serve()
    raw = (f"POST / HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nContent-Length: 5\r\n"
           f"Connection: close\r\n\r\nhello").encode()
    status, _, _ = await threads.deferToThread(_request, server.port, raw)
    assert status == 405
    assert refusedCount(server, "body_too_large") == 0


# The small leaks


@pytest_twisted.ensureDeferred
async def test_nulInStaticPath(serve, serverLog):
    """A NUL byte in a static file's path is a 404, with no traceback logged."""
    server = await serve()
    for path in ("/js/%00", "/js/a%00b.js", "/css/%00/x"):
        status, headers, _ = await httpGet(server.port, path)
        assert status == 404, (path, status)
        assert headers.get("x-frame-options") == "DENY"
    assert not [e for e in serverLog if "log_failure" in e]


@pytest_twisted.ensureDeferred
async def test_noServerBanner(serve):
    """Neither pages nor the WebSocket handshake name the server's software and version."""
    server = await serve()
    _, pageHeaders, _ = await httpGet(server.port, "/")
    status, socketHeaders, _ = await threads.deferToThread(_request, server.port, handshakeRequest(server.port))
    assert status == 101
    assert "server" not in pageHeaders, pageHeaders
    assert "server" not in socketHeaders, socketHeaders


@pytest_twisted.ensureDeferred
async def test_liveWithoutUpgrade(serve):
    """GET /live without an upgrade is a plain 426 with the security headers, not Autobahn's HTML page."""
    server = await serve()
    status, headers, body = await httpGet(server.port, "/live")
    assert status == 426
    assert headers.get("upgrade", "").lower() == "websocket"
    assert headers.get("content-security-policy", "").startswith("default-src 'self'")
    assert headers.get("x-frame-options") == "DENY"
    assert headers.get("content-type", "").startswith("text/plain")
    assert b"<html" not in body.lower() and b"autobahn" not in body.lower()


@pytest_twisted.ensureDeferred
async def test_publicHealthzHidesDetails(serve):
    """The chat's /healthz says only "degraded"; the Redis address is only on the operator's site."""
    server = await serve()
    server.site.health.addCheck(lambda: "backplane unreachable (redis://10.1.2.3:6379/0)", critical=False)
    status, _, body = await httpGet(server.port, "/healthz")
    assert (status, body) == (200, b"degraded")
    operator = ListeningService("tcp:0:interface=127.0.0.1",
                                operatorSite(server.site.health, MetricsResource(server.site.metrics)),
                                "metrics")
    operator.startService()
    try:
        port = (await operator._listening).getHost().port
        status, _, body = await httpGet(port, "/healthz")
        assert status == 200 and b"redis://10.1.2.3:6379/0" in body, body
    finally:
        await operator.stopService()


def test_operatorAndAdminSitesBounded(startTwistd, tmp_path):
    """The operator's and the admin's ports get the same header deadline, and a 64 KiB body cap."""
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    server = startTwistd("--request-header-timeout", "1", "--metrics-listen", "tcp:0:interface=127.0.0.1",
                         "--admin-token-file", str(token), "--admin-listen", "tcp:0:interface=127.0.0.1")
    metricsPort = int(server.waitForLog(r"metrics listening on http://127\.0\.0\.1:(\d+)/").group(1))
    adminPort = int(server.waitForLog(r"admin listening on http://127\.0\.0\.1:(\d+)/").group(1))
    answer, sent, _ = _trickle(metricsPort, 0.1, 8.0)
    assert answer.startswith(b"HTTP/1.1 408 ") and sent >= 5, (answer[:100], sent)
    head = (f"POST /alert HTTP/1.1\r\nHost: 127.0.0.1:{adminPort}\r\nAuthorization: Bearer s3cret\r\n"
            f"Content-Length: {300 * 1024 * 1024}\r\n\r\n").encode()
    answer, sent = _bodyAttempt(adminPort, head, b"x" * 65536, 4 << 20)
    assert answer.startswith(b"HTTP/1.1 413 ") and sent <= 65536, (answer[:100], sent)
    # An alert of the right size still goes through.
    body = b'{"text": "maintenance at noon"}'
    raw = (f"POST /alert HTTP/1.1\r\nHost: 127.0.0.1:{adminPort}\r\nAuthorization: Bearer s3cret\r\n"
           f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body
    assert _request(adminPort, raw)[0] == 200
    metrics = _request(metricsPort, b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")[2]
    assert b'operator_http_refused_total{reason="header_timeout"} 1.0' in metrics
    assert b'admin_http_refused_total{reason="body_too_large"} 1.0' in metrics
