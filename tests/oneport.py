"""
A twistd process stopped and started again on the same loopback port, as
the tests of a restart need (the pages know that port): the port is a free
one picked at the first start, and if another program takes it in the
moment between a stop and the next start, the start is retried for a few
seconds, then fails saying so -- never a fixed port.
"""

import signal
import threading
import time
from pathlib import Path

import pytest
from cluster import FAST_BACKOFF, Heard, freePort
from conftest import TwistdServer, _collectLines, runTwistd, withDeadline
from twisted.internet import threads

from chatthing.client import ChatClient
from chatthing.live.client import Backoff


class PortTaken(Exception):
    """
    Another program listens on the port the restarted process needs.
    """


class OnePort:
    """
    C{twistd -n chat-widget} on one loopback port, stopped and started again
    on it; every process it starts is stopped by its PID at the end
    (L{stopAll}).
    """

    def __init__(self, directory: Path, port: int = 0) -> None:
        self.directory = directory
        self.port = port
        self.servers: list[TwistdServer] = []

    def start(self, *extra: str) -> TwistdServer:
        """
        Start on this port (a free one, the first time), with C{extra}
        options: retried while the port is taken, for up to 10 s.
        """
        end = time.monotonic() + 10
        while True:
            first = not self.port
            if first:
                self.port = freePort()
            try:
                return self._start(extra)
            except PortTaken:
                if time.monotonic() > end:
                    raise AssertionError(f"port {self.port} stayed taken by another program") from None
                if first:
                    self.port = 0  # the first start: any free port will do
                time.sleep(0.2)

    def _start(self, extra: tuple[str, ...]) -> TwistdServer:
        process = runTwistd(["chat-widget", "--element=chatthing.chatterbox.chat",
                             "--listen", f"tcp:{self.port}:interface=127.0.0.1", *extra], self.directory)
        lines: list[str] = []
        threading.Thread(target=_collectLines, args=(process, lines), daemon=True).start()
        server = TwistdServer(process, self.port, lines)
        self.servers.append(server)
        end = time.monotonic() + 15
        while time.monotonic() < end:
            if any("chat listening on" in line for line in lines):
                return server
            if process.poll() is not None:
                time.sleep(0.1)  # its last lines
                if "Address already in use" in server.log():
                    raise PortTaken()
                raise AssertionError(f"twistd exited with {process.returncode}:\n{server.log()}")
            time.sleep(0.05)
        raise AssertionError(f"twistd did not listen:\n{server.log()}")

    async def sigterm(self, server: TwistdServer) -> None:
        """
        Stop C{server} with SIGTERM (by its PID) and wait for it, in a thread.
        """
        server.process.send_signal(signal.SIGTERM)
        code = await threads.deferToThread(server.process.wait, 20)
        assert code in (0, -signal.SIGTERM), server.log()

    def stopAll(self) -> None:
        for server in self.servers:
            server.stop()


@pytest.fixture
def onePort(tmp_path):
    """
    An L{OnePort} in the test's folder, its processes stopped at the end.
    """
    ports = OnePort(tmp_path)
    yield ports
    ports.stopAll()


async def chatClient(server: TwistdServer | str, name: str, clients: list) -> ChatClient:
    """
    A L{ChatClient} logged in as C{name} at C{server} (or a WebSocket URL),
    with a short back-off, what it hears in C{.heard}; added to C{clients}.
    """
    heard = Heard()
    url = server if isinstance(server, str) else server.wsUrl
    client = await withDeadline(ChatClient.connect(url, name, backoff=Backoff(**FAST_BACKOFF),
                                                   **heard.callbacks()))
    client.heard = heard
    client.live.onWelcome(heard.newSessions.append)
    clients.append(client)
    return client
