"""
The WebSocket upgrade's short way past twisted.web (chatthing.live._upgrade,
issue 14): a plain upgrade makes no twisted.web request, on a real server
on an ephemeral loopback port with real WebSocket clients; every request the
slow path would refuse or answer otherwise still takes it, with the same
answer.  Counts, not times (the CPU it saves is the bench's figure,
docs/performance.md).
"""

import pytest
import pytest_twisted
from test_hosts import EVIL, handshakeAs, rawGet, send
from test_limits import handshakeRequest

from chatthing.live import _web
from chatthing.live._upgrade import upgradeHeaders

#: Pages connected in the counted test.
PAGES = 20

#: A browser's handshake (Chromium's headers, in its order).
BROWSER = (
    b"GET /live HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nConnection: Upgrade\r\nPragma: no-cache\r\n"
    b"Cache-Control: no-cache\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\nUpgrade: websocket\r\n"
    b"Origin: http://127.0.0.1:8080\r\nSec-WebSocket-Version: 13\r\nAccept-Encoding: gzip, deflate\r\n"
    b"Accept-Language: en-US,en;q=0.9\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
)


def fast(data: bytes) -> bool:
    return upgradeHeaders(data, b"/live", 16384, 500) is not None


def test_whichRequestsTakeTheShortWay():
    """Only one whole upgrade of /live over HTTP/1.1, with well-formed headers, no body and nothing after it."""
    assert upgradeHeaders(BROWSER, b"/live", 16384, 500) is not None
    assert upgradeHeaders(BROWSER, b"/live", 16384, 500)[b"host"] == b"127.0.0.1:8080"
    assert fast(BROWSER.replace(b"GET /live ", b"GET /live?x=1 "))
    assert fast(BROWSER.replace(b"Upgrade: websocket", b"upgrade:WebSocket"))
    refused = {
        "partial": BROWSER[:-2],
        "bytes after it": BROWSER + b"\x81\x80",
        "another path": BROWSER.replace(b"GET /live ", b"GET /lively "),
        "a path below": BROWSER.replace(b"GET /live ", b"GET /live/x "),
        "POST": BROWSER.replace(b"GET ", b"POST "),
        "a control character in the query": BROWSER.replace(b"GET /live ", b"GET /live?a\tb "),
        "a non-ASCII query": BROWSER.replace(b"GET /live ", "GET /live?é ".encode()),
        "HTTP/1.0": BROWSER.replace(b"HTTP/1.1", b"HTTP/1.0"),
        "no upgrade": BROWSER.replace(b"Upgrade: websocket\r\n", b""),
        "another upgrade": BROWSER.replace(b"Upgrade: websocket", b"Upgrade: h2c"),
        "a body": BROWSER.replace(b"Pragma", b"Content-Length: 0\r\nPragma"),
        "chunked": BROWSER.replace(b"Pragma", b"Transfer-Encoding: chunked\r\nPragma"),
        "a NUL": BROWSER.replace(b"no-cache\r\nCache", b"no-\x00cache\r\nCache"),
        "an obs-fold": BROWSER.replace(b"Pragma: no-cache\r\n", b"Pragma: no-\r\n cache\r\n"),
        "a bad name": BROWSER.replace(b"Pragma:", b"Pra gma:"),
        "no colon": BROWSER.replace(b"Pragma: no-cache", b"Pragma no-cache"),
        "two hosts": BROWSER.replace(b"Pragma", b"Host: evil.example\r\nPragma"),
        "bare LF": BROWSER.replace(b"\r\nPragma", b"\nPragma"),
        "over the size": BROWSER.replace(b"Pragma: no-cache", b"X-Big: " + b"a" * 16384),
    }
    for what, data in refused.items():
        assert not fast(data), what
    assert upgradeHeaders(BROWSER, b"/live", 16384, 12) is not None  # 12 headers
    assert upgradeHeaders(BROWSER, b"/live", 16384, 11) is None


@pytest.fixture
def processed(monkeypatch) -> list:
    """
    The paths of the twisted.web requests the live site processes (a
    counter around the real L{SecureRequest.process}).
    """
    paths: list = []
    process = _web.SecureRequest.process

    def counted(self):
        paths.append(self.path)
        return process(self)

    monkeypatch.setattr(_web.SecureRequest, "process", counted)
    return paths


@pytest_twisted.ensureDeferred
async def test_anUpgradeMakesNoRequest(serve, processed):
    """N pages connect and are welcomed with no twisted.web request made for them (old: one each); the page still is."""
    server = await serve()
    for _ in range(PAGES):
        client = await server.connect()
        assert client.welcome["type"] == "welcome"
    assert len(server.connections) == PAGES
    assert processed == []
    status, _, _ = await send(server.port, rawGet(server.port, "/", f"127.0.0.1:{server.port}"))
    assert status == 200 and processed == [b"/"]
    # Nothing left waiting: no deadline, no place among the unfinished.
    assert len(server.site.unfinished) == 0


@pytest_twisted.ensureDeferred
async def test_refusalsTakeTheSlowPath(serve, processed):
    """A foreign Host (421), a plain GET /live (426), a body (413) and a bad header (400) are answered as before."""
    server = await serve()
    port = server.port
    status, _, _ = await send(port, handshakeAs(port, f"{EVIL}:{port}", None))
    assert status == 421
    status, _, _ = await send(port, rawGet(port, "/live", f"127.0.0.1:{port}"))
    assert status == 426
    big = handshakeRequest(port).replace(b"\r\n\r\n", b"\r\nContent-Length: 999999\r\n\r\n")
    status, _, _ = await send(port, big)
    assert status == 413
    bad = handshakeRequest(port).replace(b"Upgrade: websocket", b"Upgrade: websocket\r\nBad Name: x")
    status, _, _ = await send(port, bad)
    assert status == 400
    assert not server.connections
    assert processed == [b"/live", b"/live"]  # the 421 and the 426; 413 and 400 come before a request
    # A foreign Origin is Autobahn's to refuse, either way.
    status, _, _ = await send(port, handshakeRequest(port, f"http://{EVIL}"))
    assert status == 403
    assert processed == [b"/live", b"/live"]


@pytest_twisted.ensureDeferred
async def test_aTricklingUpgradeStillOpens(serve, processed):
    """An upgrade whose head comes in two reads takes twisted.web's way, and opens (101)."""
    server = await serve()
    port = server.port
    raw = handshakeRequest(port)

    def trickle() -> int:
        import socket
        import time

        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(raw[:20])
            time.sleep(0.05)  # two reads, not a timing assertion
            s.sendall(raw[20:])
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        return int(data.split(b" ", 2)[1])

    from twisted.internet import threads
    assert await threads.deferToThread(trickle) == 101
    assert processed == [b"/live"]
