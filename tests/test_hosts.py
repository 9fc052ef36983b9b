"""
The C{Host} check against DNS rebinding (chatthing.live._hosts): a name the
server is not known by gets 421 on pages, static files and the WebSocket
handshake, in raw requests, through twistd's C{--allowed-host}, and in
Chromium with C{evil.example} resolved to 127.0.0.1.
"""

import asyncio

import pytest
import pytest_twisted
from conftest import logLines
from playwright.sync_api import sync_playwright
from test_browser import CHROMIUM, CHROMIUM_ARGS
from test_limits import _request, checkSecurityHeaders, handshakeRequest, staticSample
from twisted.internet import threads
from twisted.python import usage

from chatthing import tap
from chatthing.live._hosts import HostCheck, hostName, listenHosts, machineNames

EVIL = "evil.example"


def rawGet(port: int, path: str, host: str | None) -> bytes:
    lines = [f"GET {path} HTTP/1.1"]
    if host is not None:
        lines.append(f"Host: {host}")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def handshakeAs(port: int, host: str, origin: str | None) -> bytes:
    """
    A WebSocket handshake with C{host} as its C{Host} (and C{origin}).
    """
    return handshakeRequest(port, origin).replace(f"Host: 127.0.0.1:{port}".encode(), f"Host: {host}".encode())


async def send(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    return await threads.deferToThread(_request, port, raw)


# The check itself


def test_hostName():
    """Host headers are reduced to a lower-case name or address with no port; nonsense is None."""
    assert hostName(b"Chat.Example.COM.:8080") == "chat.example.com"
    assert hostName("[::1]:80") == "::1"
    assert hostName("127.0.0.1") == "127.0.0.1"
    assert hostName("evil.example:port") is None
    assert hostName("a b") is None and hostName("") is None and hostName("[::1") is None


def test_hostCheck():
    """localhost, the connection's own address and the given names pass; other names and addresses do not."""
    check = HostCheck(["chat.example.com", "*.example.org"])
    assert check.allows(b"localhost:8080", "127.0.0.1")
    assert check.allows(b"127.0.0.1:8080", "127.0.0.1")
    assert check.allows(b"[::1]:8080", "::1")
    assert check.allows(b"chat.example.com", "10.0.0.5")
    assert check.allows(b"a.example.org", "10.0.0.5")
    assert check.allows(None, "127.0.0.1")
    assert not check.allows(b"example.org", "10.0.0.5")
    assert not check.allows(f"{EVIL}:8080".encode(), "127.0.0.1")
    assert not check.allows(b"10.0.0.6", "10.0.0.5")
    assert not check.allows(b"127.0.0.1.evil.example", "127.0.0.1")
    assert HostCheck(["*"]).allows(EVIL.encode(), "127.0.0.1")


def test_listenHosts():
    """Listening on all interfaces adds the machine's own names; on one interface, that address only."""
    assert listenHosts(["tcp:8080:interface=127.0.0.1"]) == ("127.0.0.1",)
    assert listenHosts(["tcp6:8080:interface=\\:\\:1"]) == ("::1",)
    assert set(listenHosts(["tcp:8080"])) == machineNames()
    assert set(listenHosts(["ssl:8443:privateKey=k.pem:interface=0.0.0.0"])) == machineNames()
    assert listenHosts(["unix:/tmp/chat.sock"]) == ()


def test_allowedHostOption():
    """--allowed-host is repeatable, checked, and reaches the site's HostCheck with the listen names."""
    options = tap.Options()
    options.parseOptions(["--element=chatthing.chatterbox.chat", "--listen", "tcp:0:interface=127.0.0.1",
                          "--allowed-host", "Chat.Example.com", "--allowed-host", "*.example.org"])
    assert options["settings"].allowedHosts == ("chat.example.com", "*.example.org")
    site = next(s for s in tap.makeService(options) if getattr(s, "label", None) == "chat").factory
    assert site.hostCheck.allows(b"chat.example.com:443", "10.0.0.5")
    assert not site.hostCheck.allows(EVIL.encode(), "127.0.0.1")
    with pytest.raises(usage.UsageError) as e:
        tap.Options().parseOptions(["--element=chatthing.chatterbox.chat", "--allowed-host", "a b"])
    assert str(e.value).startswith("--allowed-host must be ")


# Raw requests


@pytest_twisted.ensureDeferred
async def test_foreignHostRefused(serve, serverLog):
    """A page, a static file and the WebSocket asked for as evil.example:PORT get 421 with the security headers."""
    server = await serve()
    port = server.port
    host = f"{EVIL}:{port}"
    for path in ("/", staticSample("js", ".js"), staticSample("css", ".css")):
        status, headers, body = await send(port, rawGet(port, path, host))
        assert status == 421, (path, status)
        checkSecurityHeaders(path, headers)
        assert b"--allowed-host" in body and b"evil.example" in body
    status, headers, _ = await send(port, handshakeAs(port, host, f"http://{host}"))
    assert status == 421
    assert not server.connections
    value = server.site.metrics.registry.get_sample_value("live_http_refused_total",
                                                        {"reason": "host_not_allowed"})
    assert value == 4
    lines = logLines(serverLog, "refused: Host", "evil.example")
    assert len(lines) == 4 and all("'evil.example:" in line for line in lines)


@pytest_twisted.ensureDeferred
async def test_ownHostsServed(serve):
    """127.0.0.1, localhost and no Host at all are served; the WebSocket opens as localhost."""
    server = await serve()
    port = server.port
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "LOCALHOST", None):
        status, _, _ = await send(port, rawGet(port, "/", host))
        assert status == 200, host
    status, _, _ = await send(port, handshakeAs(port, f"localhost:{port}", f"http://localhost:{port}"))
    assert status == 101


@pytest_twisted.ensureDeferred
async def test_healthzWhateverHost(serve):
    """/healthz answers whatever the Host: load balancers ask by address, and it tells nothing."""
    server = await serve()
    status, _, body = await send(server.port, rawGet(server.port, "/healthz", "10.9.8.7:80"))
    assert (status, body) == (200, b"ok")


def test_allowedHostThroughTwistd(startTwistd):
    """twistd's --allowed-host lets its name in; other names still get 421."""
    server = startTwistd("--allowed-host", "chat.example.com")
    port = server.port
    assert _request(port, rawGet(port, "/", f"chat.example.com:{port}"))[0] == 200
    origin = f"http://chat.example.com:{port}"
    assert _request(port, handshakeAs(port, f"chat.example.com:{port}", origin))[0] == 101
    assert _request(port, rawGet(port, "/", f"{EVIL}:{port}"))[0] == 421
    assert _request(port, handshakeAs(port, f"{EVIL}:{port}", f"http://{EVIL}:{port}"))[0] == 421


# A browser


def test_rebindingInChromium(startTwistd):
    """Chromium sent to http://evil.example:PORT/ (resolved to 127.0.0.1) gets 421: no page, no WebSocket."""
    server = startTwistd()
    url = f"http://{EVIL}:{server.port}/"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, timeout=60_000,
            args=[*CHROMIUM_ARGS, f"--host-resolver-rules=MAP {EVIL} 127.0.0.1"])
        try:
            page = browser.new_page()
            response = page.goto(url)
            assert response is not None and response.status == 421, response and response.status
            assert "--allowed-host" in page.content()
            # Its script cannot reach the chat either.
            status = page.evaluate("fetch('/js/').then(r => r.status)")
            assert status == 421
            # While the chat's own address still works in the same browser.
            own = page.goto(server.url)
            assert own is not None and own.status == 200
        finally:
            browser.close()
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    assert "joined" not in server.log()
