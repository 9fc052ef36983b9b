"""
The chat over TLS (C{--listen ssl:...}), with a certificate made for the
test: WebSocket clients over C{wss:}, and Chromium over C{https:}, get every
frame after the welcome encrypted, not sent in plaintext to the raw socket
beneath the TLS layer.
"""

import socket
import subprocess
import threading
from pathlib import Path

import pytest
import pytest_twisted
from conftest import (ChatServer, TwistdServer, _collectLines, eventually, logLines, runTwistd,
                      startChatServer, stopServers)
from playwright.sync_api import expect
from test_browser import DEADLINE, browser  # noqa: F401  (the module's Chromium)
from twisted.internet.ssl import Certificate, optionsForClientTLS, trustRootFromCertificates

from chatthing.live import LiveSettings
from chatthing.live._backlog import bufferedBytes
from chatthing.live.testing import LiveTestClient

@pytest.fixture
def certificate(tmp_path) -> tuple[Path, Path]:
    """
    A throw-away self-signed key and certificate for 127.0.0.1: (key, cert).
    """
    key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert),
         "-days", "2"],
        check=True, capture_output=True, timeout=60,
    )
    return key, cert


def sslDescription(key: Path, cert: Path, port: int = 0) -> str:
    """
    The endpoint description README documents, on loopback.
    """
    return f"ssl:{port}:interface=127.0.0.1:privateKey={key}:certKey={cert}"


@pytest_twisted.async_yield_fixture
async def serveTls(certificate):
    """
    Start chat rooms served over TLS on ephemeral loopback ports:
    C{await serveTls(settings)}; all stopped after the test.
    """
    key, cert = certificate
    servers: list[ChatServer] = []

    async def start(settings: LiveSettings = LiveSettings()) -> ChatServer:
        server = await startChatServer(settings, description=sslDescription(key, cert))
        servers.append(server)
        return server

    yield start
    await stopServers(servers)


def trusting(cert: Path):
    """
    Client TLS options that trust only C{cert} and check it names 127.0.0.1.
    """
    authority = Certificate.loadPEM(cert.read_bytes())
    return optionsForClientTLS("127.0.0.1", trustRoot=trustRootFromCertificates([authority]))


@pytest_twisted.ensureDeferred
async def test_chatOverWss(serveTls, certificate):
    """Two wss: clients log in and each gets the other's five messages, over a verified TLS connection."""
    _, cert = certificate
    tlsServer = await serveTls()
    url = f"wss://127.0.0.1:{tlsServer.port}/live"
    alice = await LiveTestClient.connect(url, contextFactory=trusting(cert))
    bob = await LiveTestClient.connect(url, contextFactory=trusting(cert))
    tlsServer.clients += [alice, bob]
    assert (await alice.call("setUsername", "alice"))["value"] == "alice"
    assert (await bob.call("setUsername", "bob"))["value"] == "bob"
    for n in range(5):
        await alice.call("say", f"alice {n}")
        await bob.call("say", f"bob {n}")
    said = [[who, f"{who} {n}"] for n in range(5) for who in ("alice", "bob")]
    for page in (alice, bob):
        await page.waitFor(lambda page=page: page.calls("displayUserMessage") == said,
                           "all ten messages")
        assert not page.isClosed
    # The server writes to them through TLS, never to the socket beneath.
    assert tlsServer.connections and all(c._socket is None for c in tlsServer.connections)


@pytest_twisted.ensureDeferred
async def test_slowReaderOverTlsCutOff(serveTls, certificate, serverLog):
    """A wss: page that stops reading is cut off once its backlog passes --max-outgoing-bytes; the other page gets everything."""
    _, cert = certificate
    maxOutgoing = 64 * 1024
    server = await serveTls(LiveSettings(maxOutgoingBytes=maxOutgoing, frameRate=1000, frameBurst=1000))
    url = f"wss://127.0.0.1:{server.port}/live"
    alice = await LiveTestClient.connect(url, contextFactory=trusting(cert))
    laggard = await LiveTestClient.connect(url, contextFactory=trusting(cert))
    server.clients += [alice, laggard]
    assert (await alice.call("setUsername", "alice"))["type"] == "result"
    assert (await laggard.call("setUsername", "laggard"))["type"] == "result"
    serverSide = next(c for c in server.connections
                      if c.transport.getPeer().port == laggard.protocol.transport.getHost().port)
    # Under TLS, the backlog counted is the TCP connection's beneath.
    serverSide.transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    laggard.protocol.transport.pauseProducing()  # reads nothing more
    peak = 0
    check = serverSide._checkBacklog

    def recording():
        nonlocal peak
        peak = max(peak, bufferedBytes(serverSide.transport))
        check()

    serverSide._checkBacklog = recording
    count, filler = 200, "m" * 1800
    for n in range(count):
        assert (await alice.call("say", f"{n} {filler}"))["type"] == "result"
    await eventually(lambda: serverSide not in server.connections, "the laggard to be cut off")
    assert logLines(serverLog, "cut off")
    await alice.waitFor(lambda: len(alice.calls("displayUserMessage")) == count, "alice's transcript")
    assert [int(text.split()[0]) for _, text in alice.calls("displayUserMessage")] == list(range(count))
    assert not alice.isClosed
    print(f"\nTLS slow reader: server-side backlog peaked at {peak} bytes "
          f"(limit {maxOutgoing}) before the cut")
    assert maxOutgoing < peak <= 4 * maxOutgoing + 4096, peak


@pytest_twisted.ensureDeferred
async def test_plainTcpStillSendsDirectly(chatServer):
    """Over plain TCP the fan-out still sends straight to the socket, decided once per connection."""
    from chatthing.live._sending import canSendDirectly

    alice = await chatServer.login("alice")
    connection = chatServer.serverSide(alice)
    assert connection._socket is connection.transport.socket
    assert canSendDirectly(connection.transport)
    await alice.call("say", "hi")
    await alice.waitFor(lambda: ["alice", "hi"] in alice.calls("displayUserMessage"))


def test_chatOverHttpsInChromium(tmp_path, certificate, browser):
    """Two Chromium pages on https:// (twistd --listen ssl:...) log in and see each other's messages."""
    key, cert = certificate
    process = runTwistd(["chat-widget", "--element=chatthing.chatterbox.chat",
                         "--listen", sslDescription(key, cert)], tmp_path)
    lines: list[str] = []
    threading.Thread(target=_collectLines, args=(process, lines), daemon=True).start()
    server = TwistdServer(process, 0, lines)
    contexts = []
    try:
        port = int(server.waitForLog(r"chat listening on https://127\.0\.0\.1:(\d+)/").group(1))
        pages = {}
        errors: list[str] = []
        for name in ("alice", "bob"):
            context = browser.new_context(ignore_https_errors=True)
            contexts.append(context)
            context.set_default_timeout(DEADLINE)
            page = context.new_page()
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"https://127.0.0.1:{port}/")
            page.wait_for_selector('html[data-live-ready="true"]')
            page.fill('[name="username"]', name)
            page.click('[name="GO"]')
            expect(page.locator('[name="loggedInAs"]')).to_have_text(f"Logged in as {name}")
            pages[name] = page
        said = []
        for n in range(3):
            for name, page in pages.items():
                box = page.locator('[name="userMessage"]')
                box.fill(f"{name} says {n}")
                box.press("Enter")
                expect(box).to_have_value("")
                said.append(f"{name}: {name} says {n}")
        for page in pages.values():
            expect(page.locator('[name="scrollArea"] .message.user')).to_have_text(said)
        assert errors == []
        # Delivered on the first connections, not after a reconnect.
        assert "resume" not in server.log(), server.log()
    finally:
        for context in contexts:
            context.close()
        server.stop()
