"""
The chat over TLS (C{--listen ssl:...}), with a certificate made for the
test: WebSocket clients over C{wss:}, and Chromium over C{https:}, get every
frame after the welcome encrypted, not sent in plaintext to the raw socket
beneath the TLS layer.
"""

import subprocess
import threading
from pathlib import Path

import pytest
import pytest_twisted
from conftest import ChatServer, TwistdServer, _collectLines, runTwistd
from playwright.sync_api import expect
from test_browser import DEADLINE, browser  # noqa: F401  (the module's Chromium)
from twisted.internet.ssl import Certificate, optionsForClientTLS, trustRootFromCertificates

from chatthing.chatterbox import ChatRoom
from chatthing.listening import ListeningService
from chatthing.live import LiveSite
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
async def tlsServer(certificate):
    """
    A fresh chat room served over TLS on an ephemeral loopback port.
    """
    key, cert = certificate
    room = ChatRoom()
    site = LiveSite(room.makeChatter)
    service = ListeningService(sslDescription(key, cert), site, "test chat")
    service.startService()
    await service._listening
    server = ChatServer(room, site, service, service.port.getHost().port)
    yield server
    for client in server.clients:
        client.drop()
    for connection in list(server.connections):
        connection.transport.abortConnection()
    await server.stop()


def trusting(cert: Path):
    """
    Client TLS options that trust only C{cert} and check it names 127.0.0.1.
    """
    authority = Certificate.loadPEM(cert.read_bytes())
    return optionsForClientTLS("127.0.0.1", trustRoot=trustRootFromCertificates([authority]))


@pytest_twisted.ensureDeferred
async def test_chatOverWss(tlsServer, certificate):
    """Two wss: clients log in and each gets the other's five messages, over a verified TLS connection."""
    _, cert = certificate
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
    assert tlsServer.connections and not any(c._direct for c in tlsServer.connections)


@pytest_twisted.ensureDeferred
async def test_plainTcpStillSendsDirectly(chatServer):
    """Over plain TCP the fan-out still sends straight to the socket, decided once per connection."""
    from chatthing.live._sending import canSendDirectly

    alice = await chatServer.login("alice")
    connection = chatServer.serverSide(alice)
    assert connection._direct is True
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
