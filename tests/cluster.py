"""
A harness for testing several C{twistd chat-widget} processes that share
their rooms through one Redis (C{--redis redis://host:port/db}), as real
processes with real WebSocket clients:

- L{RedisServer}: a throwaway C{redis-server} on a free loopback port, which
  a test can stop, kill and start again on the same port.
- L{FailoverProxy}: a TCP balancer in this test process (standing in for
  nginx): each connection goes to the next backend, round-robin, skipping
  backends that refuse it; bytes pass both ways, and when one side closes
  the other is closed too.
- L{Cluster} (fixture C{cluster}): starts the processes (through conftest's
  C{startTwistd}), balancers and clients of one test, and stops every one
  of them afterwards, even when the test fails.
- L{Heard}: what one L{ChatClient} was told, in order.

Every wait is for a condition, with a deadline.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from conftest import LoopbackAddress, TwistdServer, presenceShown, withDeadline
from test_admin import _request
from twisted.internet import reactor, task, threads
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    TCP4ServerEndpoint,
    connectProtocol,
)
from twisted.internet.error import ConnectError
from twisted.internet.protocol import Factory, Protocol

from chatthing.client import ChatClient, pagePath
from chatthing.live.client import Backoff
from chatthing.live.testing import LiveTestClient

#: The Redis server the tests run, if installed.
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"

#: Grace period (seconds) the cluster's processes give a page to come back.
GRACE_PERIOD = 3

#: A client's back-off between reconnection attempts: short, for tests.
FAST_BACKOFF = {"base": 0.1, "cap": 0.5}


def freePort() -> int:
    """
    A loopback TCP port nothing listens on now (it may be taken again
    before it is used: callers retry).
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pause(seconds: float) -> Deferred:
    """
    Let C{seconds} pass: for pacing simulated users, never to wait for a
    condition.
    """
    return task.deferLater(reactor, seconds, lambda: None)


# Redis


class RedisServer:
    """
    A C{redis-server} on a loopback port, with nothing saved to disk.

    @ivar port: its port, chosen on the first L{start} and kept after.
    @ivar logLines: what it printed, across restarts.
    """

    def __init__(self, directory: Path, executable: str = REDIS_SERVER,
                 appendonly: bool = False) -> None:
        self.appendonly = appendonly
        self.paused = False
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.executable = executable
        self.port: int | None = None
        self.process: subprocess.Popen | None = None
        self.logLines: list[str] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return "".join(self.logLines)

    def start(self, deadline: float = 10.0) -> None:
        """
        Start it (again), and wait until it answers C{PING}.  The first time,
        on a free port (another one if that one is taken meanwhile); after
        that, on the same port.
        """
        assert not self.running, "redis-server is already running"
        if self.port is None:
            for attempt in range(5):
                self.port = freePort()
                if self._launch(deadline):
                    return
            raise RuntimeError(f"redis-server would not start; its log:\n{self.log()}")
        # The same port: it may still be in use for a moment (TIME_WAIT is
        # fine with SO_REUSEADDR, which Redis sets; a slow exit is not).
        end = time.monotonic() + deadline
        while not self._launch(deadline):
            if time.monotonic() > end:
                raise RuntimeError(f"redis-server would not start again on {self.port}; "
                                   f"its log:\n{self.log()}")
            time.sleep(0.1)

    def _arguments(self) -> list[str]:
        """
        What C{redis-server} is started with, after its executable.
        """
        return ["--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "yes" if self.appendonly else "no",
                "--dir", str(self.directory), "--loglevel", "verbose"]

    def _launch(self, deadline: float) -> bool:
        self.process = subprocess.Popen(
            [self.executable, *self._arguments()],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        process = self.process
        threading.Thread(target=self._collect, args=(process,), daemon=True).start()
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if process.poll() is not None:
                return False  # the port was taken, most likely: see the log
            if self.ping():
                return True
            time.sleep(0.02)
        self.kill()
        return False

    def _collect(self, process: subprocess.Popen) -> None:
        for line in process.stdout:
            self.logLines.append(line)

    def ping(self) -> bool:
        """
        Whether it answers C{PING} with C{+PONG} now.
        """
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def command(self, *words: str) -> bytes:
        """
        Send one command (inline form, no quoting: plain words only); the
        first bytes of the reply.  For looking at what the servers stored.
        """
        with socket.create_connection(("127.0.0.1", self.port), timeout=2.0) as s:
            s.sendall(" ".join(words).encode("utf-8") + b"\r\n")
            return s.recv(65536)

    def stop(self, deadline: float = 10.0) -> None:
        """
        Stop it with SIGTERM (by its PID) and wait for it to exit.
        """
        self._signal(signal.SIGTERM, deadline)

    def kill(self) -> None:
        """
        Kill it with SIGKILL (by its PID) and wait for it to exit.
        """
        self._signal(signal.SIGKILL, 10.0)

    def pause(self) -> None:
        """
        Freeze it with SIGSTOP (by its PID): its connections stay open,
        nothing answers, until L{resume}.
        """
        os.kill(self.process.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        """
        Let it go on (SIGCONT) after L{pause}.
        """
        if self.paused and self.running:
            os.kill(self.process.pid, signal.SIGCONT)
        self.paused = False

    def _signal(self, signum: int, deadline: float) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.kill(self.process.pid, signum)
        self.resume()  # a paused Redis takes SIGTERM only once it goes on
        try:
            self.process.wait(deadline)
        except subprocess.TimeoutExpired:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()


def needRedis() -> None:
    if not Path(REDIS_SERVER).exists():
        pytest.fail("redis-server is not installed (Debian: apt-get install redis-server; "
                    "tests/run-all.sh installs it)")


@pytest.fixture
def redisServer(tmp_path):
    """
    A running L{RedisServer}, stopped after the test.
    """
    needRedis()
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


# The balancer


class _Inbound(Protocol):
    """
    A connection to the proxy: its bytes wait until a backend is reached.
    """

    def __init__(self, proxy: "FailoverProxy") -> None:
        self.proxy = proxy
        self.peer: _Outbound | None = None
        self.waiting: list[bytes] = []
        self.gone = False

    def connectionMade(self) -> None:
        self.proxy.connections.add(self)
        self.proxy._route(self)

    def dataReceived(self, data: bytes) -> None:
        if self.peer is not None:
            self.peer.transport.write(data)
        else:
            self.waiting.append(data)

    def connectionLost(self, reason: Any = None) -> None:
        self.gone = True
        self.proxy.connections.discard(self)
        if self.peer is not None:
            self.peer.transport.loseConnection()


class _Outbound(Protocol):
    """
    The proxy's connection to a backend for one L{_Inbound}.
    """

    def __init__(self, inbound: _Inbound) -> None:
        self.inbound = inbound

    def connectionMade(self) -> None:
        if self.inbound.gone:
            self.transport.loseConnection()
            return
        self.inbound.proxy.connections.add(self)
        self.inbound.peer = self
        waiting, self.inbound.waiting = self.inbound.waiting, []
        for data in waiting:
            self.transport.write(data)

    def dataReceived(self, data: bytes) -> None:
        self.inbound.transport.write(data)

    def connectionLost(self, reason: Any = None) -> None:
        self.inbound.proxy.connections.discard(self)
        self.inbound.transport.loseConnection()


class FailoverProxy(LoopbackAddress):
    """
    A TCP balancer on C{127.0.0.1} in front of C{backends} (C{(host, port)}
    pairs): each connection goes to the next backend, round-robin; if that
    one refuses, to the one after, and so on; if none answers, the
    connection is closed.

    @ivar backends: the backends, in order; a test may change the list.
    @ivar routes: C{(client port, backend)} for each connection made, in
        order: which backend each client was sent to.
    @ivar refused: the backends that refused a connection, in order.
    """

    def __init__(self, backends: Iterable[tuple[str, int]], connectTimeout: float = 2.0) -> None:
        self.backends = list(backends)
        self.connectTimeout = connectTimeout
        self.routes: list[tuple[int, tuple[str, int]]] = []
        self.refused: list[tuple[str, int]] = []
        self.connections: set[Protocol] = set()
        self._next = 0
        self._listening = None
        #: The port it listens on, once started.
        self.port = 0

    async def start(self) -> "FailoverProxy":
        endpoint = TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
        self._listening = await endpoint.listen(Factory.forProtocol(lambda: _Inbound(self)))
        self.port = self._listening.getHost().port
        return self

    def _route(self, inbound: _Inbound) -> None:
        count = len(self.backends)
        order = [self.backends[(self._next + i) % count] for i in range(count)] if count else []
        self._next = (self._next + 1) % max(count, 1)
        client = inbound.transport.getPeer().port
        ensureDeferred(self._connect(inbound, client, order))

    async def _connect(self, inbound: _Inbound, client: int, order: list[tuple[str, int]]) -> None:
        for backend in order:
            if inbound.gone:
                return
            endpoint = TCP4ClientEndpoint(reactor, backend[0], backend[1], timeout=self.connectTimeout)
            try:
                await connectProtocol(endpoint, _Outbound(inbound))
            except ConnectError:  # refused, timed out, no route...
                self.refused.append(backend)
                continue
            self.routes.append((client, backend))
            return
        inbound.transport.loseConnection()

    def backendOf(self, clientPort: int) -> tuple[str, int] | None:
        """
        The backend the latest connection from C{clientPort} was sent to.
        """
        for port, backend in reversed(self.routes):
            if port == clientPort:
                return backend
        return None

    def backendFor(self, client: ChatClient | LiveTestClient) -> tuple[str, int] | None:
        """
        The backend C{client}'s current connection goes to, or L{None} if it
        is not connected.
        """
        protocol = client.live.protocol if isinstance(client, ChatClient) else client.protocol
        if protocol is None or protocol.transport is None:
            return None
        return self.backendOf(protocol.transport.getHost().port)

    def cutAll(self) -> None:
        """
        Abort every connection through the proxy, both sides.
        """
        for connection in list(self.connections):
            connection.transport.abortConnection()

    async def stop(self) -> None:
        """
        Stop listening and abort every connection still open.
        """
        if self._listening is not None:
            listening, self._listening = self._listening, None
            await listening.stopListening()
        self.cutAll()


# What clients hear


class Heard:
    """
    What one L{ChatClient} was told, in order.

    @ivar messages: C{(username, text)} of each C{displayUserMessage}.
    @ivar alerts: the text of each C{displayMessage}.
    @ivar calls: C{(method, args)} of every other widget call.
    @ivar newSessions: C{welcome} frames of sessions after the first (the
        server could not resume the session; the client logged in again).
    """

    def __init__(self) -> None:
        self.messages: list[tuple[str, str]] = []
        self.alerts: list[str] = []
        self.calls: list[tuple[str, list]] = []
        self.newSessions: list[dict] = []

    def callbacks(self) -> dict:
        return {"onMessage": lambda who, text: self.messages.append((who, text)),
                "onAlert": self.alerts.append,
                "onCall": lambda method, args: self.calls.append((method, args))}

    def called(self, method: str) -> list[list]:
        return [args for m, args in self.calls if m == method]

    @property
    def presence(self) -> list[str] | None:
        """
        The latest presence list, or L{None} if none came.
        """
        return presenceShown(self.calls)

    @property
    def history(self) -> list[list] | None:
        """
        The entries of the first C{displayHistory}, or L{None}.
        """
        lists = self.called("displayHistory")
        return lists[0][0] if lists else None

    def alertsWith(self, words: str) -> list[str]:
        return [text for text in self.alerts if words in text]


def wsUrl(server: TwistdServer | FailoverProxy | str) -> str:
    """
    The WebSocket URL of a twistd server, a proxy, or a URL as it is.
    """
    if isinstance(server, str):
        return server
    if isinstance(server, FailoverProxy):
        return server.wsUrl
    return f"ws://127.0.0.1:{server.port}/live"


def backend(server: TwistdServer) -> tuple[str, int]:
    return ("127.0.0.1", server.port)


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")
    except OSError as e:
        return 0, f"unreachable: {e}"


async def health(server: TwistdServer | str) -> tuple[int, str]:
    """
    C{GET /healthz} on C{server}'s chat port, or at the root URL C{server}
    (in a thread): status and body (status 0 if unreachable).
    """
    root = server if isinstance(server, str) else server.url
    return await threads.deferToThread(_get, root + "healthz")


def _post(url: str, body: dict, token: str) -> tuple[int, Any]:
    return _request(url, json.dumps(body).encode("utf-8"),
                    {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}, "POST")


async def postAlert(server: TwistdServer, text: str, token: str) -> tuple[int, Any]:
    """
    C{POST /alert} to C{server}'s admin endpoint (started by
    L{Cluster.start} with C{admin=True}): status and decoded body.
    """
    return await threads.deferToThread(_post, server.adminUrl + "alert", {"text": text}, token)


# The cluster


class Cluster:
    """
    The processes, balancers and clients of one test, all stopped by
    L{stop}.

    @ivar redis: the L{RedisServer} they share.
    @ivar servers: every twistd process started, in order.
    """

    #: The admin endpoint's token when started with C{admin=True}.
    TOKEN = "cluster-admin-token"

    def __init__(self, redis: RedisServer, startTwistd, directory: Path) -> None:
        self.redis = redis
        self._startTwistd = startTwistd
        self.directory = Path(directory)
        self.servers: list[TwistdServer] = []
        self.proxies: list[FailoverProxy] = []
        self.chatClients: list[ChatClient] = []
        self.pages: list[LiveTestClient] = []

    @property
    def tokenFile(self) -> Path:
        path = self.directory / "admin.token"
        if not path.exists():
            path.write_text(self.TOKEN + "\n", encoding="utf-8")
        return path

    def start(self, count: int, *extra: str, admin: bool = False,
              gracePeriod: float = GRACE_PERIOD) -> list[TwistdServer]:
        """
        Start C{count} C{twistd -n chat-widget --redis URL} processes on
        ephemeral loopback ports, with C{extra} options; with C{admin}, each
        has its admin endpoint (its URL as C{.adminUrl}).
        """
        started = []
        for _ in range(count):
            options = ["--redis", self.redis.url, "--grace-period", str(gracePeriod), *extra]
            if admin:
                options += ["--admin-token-file", str(self.tokenFile),
                            "--admin-listen", "tcp:0:interface=127.0.0.1"]
            server = self._startTwistd(*options)
            self.servers.append(server)
            if admin:
                match = server.waitForLog(r"admin listening on http://127\.0\.0\.1:(\d+)/")
                server.adminUrl = f"http://127.0.0.1:{match.group(1)}/"
            started.append(server)
        return started

    async def proxy(self, servers: Iterable[TwistdServer]) -> FailoverProxy:
        """
        A started L{FailoverProxy} in front of C{servers}.
        """
        proxy = await FailoverProxy([backend(s) for s in servers]).start()
        self.proxies.append(proxy)
        return proxy

    async def chatClient(self, where: TwistdServer | FailoverProxy | str, username: str,
                         room: str | None = None, **kwargs: Any) -> ChatClient:
        """
        A L{ChatClient} logged in as C{username} (a short back-off), whose
        L{Heard} is C{.heard}; closed by L{stop}.  Fails with
        L{RemoteError} as C{ChatClient.connect} does.
        """
        heard = Heard()
        kwargs.setdefault("backoff", Backoff(**FAST_BACKOFF))
        client = await withDeadline(
            ChatClient.connect(wsUrl(where), username, room, **heard.callbacks(), **kwargs))
        client.heard = heard
        client.live.onWelcome(heard.newSessions.append)
        self.chatClients.append(client)
        return client

    async def page(self, where: TwistdServer | FailoverProxy | str, username: str | None = None,
                   room: str | None = None) -> LiveTestClient:
        """
        A low-level L{LiveTestClient} page (it never reconnects by itself),
        logged in as C{username} if given; closed by L{stop}.
        """
        page = await LiveTestClient.connect(wsUrl(where), hello={"page": pagePath(room)})
        self.pages.append(page)
        if username is not None:
            answer = await page.call("setUsername", username)
            assert answer["type"] == "result", answer
        return page

    def kill(self, server: TwistdServer) -> None:
        """
        Kill C{server} with SIGKILL (by its PID), and wait for it to exit.
        """
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait(10)

    def logs(self) -> str:
        parts = []
        for n, server in enumerate(self.servers):
            parts.append(f"----- twistd #{n} (port {server.port}, pid {server.process.pid}, "
                         f"exit {server.process.poll()}) -----\n{server.log()}")
        parts.append(f"----- redis-server (port {self.redis.port}) -----\n{self.redis.log()}")
        return "\n".join(parts)

    async def stop(self) -> None:
        """
        Close the clients (they leave), stop the proxies, then stop every
        process with SIGTERM, all at once, waiting for each (SIGKILL if one
        takes over 10 s).  Redis is the fixture's.
        """
        for client in self.chatClients:
            try:
                await withDeadline(client.close(), 5)
            except Exception:  # noqa: BLE001 (whatever went wrong, go on stopping)
                client.live.drop()
        for page in self.pages:
            page.close()
        for page in self.pages:
            if page.protocol is not None:
                try:
                    await page.closed(5)
                except Exception:  # noqa: BLE001 (whatever went wrong, go on stopping)
                    page.drop()
        for proxy in self.proxies:
            await proxy.stop()
        for server in self.servers:
            if server.process.poll() is None:
                server.process.send_signal(signal.SIGTERM)
        for server in self.servers:
            server.stop()  # waits; kills it if it takes over 10 s
        # Whatever the test saw, its logs help: pytest shows them on failure.
        print(self.logs())


@pytest_twisted.async_yield_fixture
async def cluster(redisServer, startTwistd, tmp_path):
    """
    A L{Cluster} on C{redisServer}: everything it starts is stopped after
    the test, the processes before Redis.
    """
    group = Cluster(redisServer, startTwistd, tmp_path)
    yield group
    await group.stop()
