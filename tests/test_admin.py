"""
The operator's admin endpoint and the C{chatthing alert} command, against a
real C{twistd} server with real WebSocket pages connected to it.
"""

import json
import socket
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
import pytest_twisted
from conftest import subprocessEnvironment
from twisted.internet import threads

from chatthing.live.testing import LiveTestClient

TOKEN = "s3cret-Token_42"


@pytest.fixture
def tokenFile(tmp_path):
    path = tmp_path / "admin.token"
    path.write_text(TOKEN + "\n", encoding="utf-8")
    return path


@pytest.fixture
def adminServer(startTwistd, tokenFile):
    """
    A twistd chat server with its admin endpoint on an ephemeral loopback
    port, as C{.adminUrl}.
    """
    server = startTwistd("--admin-token-file", str(tokenFile),
                         "--admin-listen", "tcp:0:interface=127.0.0.1")
    match = server.waitForLog(r"admin listening on http://127\.0\.0\.1:(\d+)/")
    server.adminUrl = f"http://127.0.0.1:{match.group(1)}/"
    return server


@pytest.fixture
def pages():
    """
    Connects pages to a server; closes them after the test.
    """
    opened: list[LiveTestClient] = []

    async def connect(server, username: str | None = None) -> LiveTestClient:
        client = await LiveTestClient.connect(f"ws://127.0.0.1:{server.port}/live")
        opened.append(client)
        if username is not None:
            answer = await client.call("setUsername", username)
            assert answer["type"] == "result", answer
        return client

    yield connect
    for client in opened:
        client.close()


def _request(url: str, body: bytes | None, headers: dict, method: str) -> tuple[int, dict | str]:
    request = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, payload = response.status, response.read()
    except urllib.error.HTTPError as e:
        status, payload = e.code, e.read()
    try:
        return status, json.loads(payload)
    except ValueError:
        return status, payload.decode("utf-8", "replace")


async def post(server, body: bytes | None, token: str | None = TOKEN, scheme: str = "Bearer",
               method: str = "POST", path: str = "alert"):
    """
    Send a request to the admin endpoint (in a thread); its status and decoded body.
    """
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"{scheme} {token}"
    return await threads.deferToThread(_request, server.adminUrl + path, body, headers, method)


def alertBody(text) -> bytes:
    return json.dumps({"text": text}).encode("utf-8")


async def onlyAlert(page: LiveTestClient, text: str) -> None:
    """
    Wait for C{page} to show the alert C{text}; no other operator alert came before it.
    """
    await page.waitFor(lambda: [text] in page.calls("displayMessage"), f"the alert {text!r}")
    alerts = [m for [m] in page.calls("displayMessage") if not m.startswith(" * user ")]
    assert alerts == [text]


async def runCli(*args: str) -> subprocess.CompletedProcess:
    """
    Run C{python -m chatthing.cli ARGS} (in a thread, so pages keep receiving).
    """
    return await threads.deferToThread(
        subprocess.run, [sys.executable, "-m", "chatthing.cli", *args],
        env=subprocessEnvironment(), capture_output=True, text=True, timeout=60,
    )


# POST /alert


@pytest_twisted.ensureDeferred
async def test_alertReachesEveryPage(adminServer, pages):
    """POST /alert with the right token answers 200 {"delivered": N} and every page shows the alert."""
    alice = await pages(adminServer, "alice")
    bob = await pages(adminServer, "bob")
    lurker = await pages(adminServer)
    status, answer = await post(adminServer, alertBody("  Server restarts in 5 minutes \n"))
    assert (status, answer) == (200, {"delivered": 3})
    for page in (alice, bob, lurker):
        await onlyAlert(page, "Server restarts in 5 minutes")
    adminServer.waitForLog(r"admin alert sent to 3 pages")
    # Chat goes on after it.
    assert (await alice.call("say", "ok"))["type"] == "result"
    await bob.waitFor(lambda: ["alice", "ok"] in bob.calls("displayUserMessage"))


@pytest_twisted.ensureDeferred
async def test_alertReachesPageThatWasAway(adminServer, pages):
    """An alert sent while a page's connection is down counts it, and reaches it, once, when it resumes."""
    alice = await pages(adminServer, "alice")
    away = await pages(adminServer, "bob")
    away.drop()
    await away.closed()
    status, answer = await post(adminServer, alertBody("while you were away"))
    assert (status, answer) == (200, {"delivered": 2})
    await onlyAlert(alice, "while you were away")
    resumed = await away.resume()
    assert resumed["type"] == "resumed", resumed
    await onlyAlert(away, "while you were away")
    assert away.calls("displayMessage").count(["while you were away"]) == 1
    assert away.duplicates == 0
    assert " * user bob has left the room" not in str(alice.calls("displayMessage"))


@pytest_twisted.ensureDeferred
async def test_alertWithNoPages(adminServer):
    """An alert with nobody connected is accepted and delivered to 0 pages."""
    assert await post(adminServer, alertBody("anyone?")) == (200, {"delivered": 0})


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("token, scheme", [
    (None, "Bearer"),  # no Authorization header
    ("", "Bearer"),
    (TOKEN, "Basic"),
    (TOKEN, "Token"),
])
async def test_noBearerTokenIs401(adminServer, pages, token, scheme):
    """A request without an Authorization: Bearer token is refused with 401, and sends nothing."""
    page = await pages(adminServer, "alice")
    status, answer = await post(adminServer, alertBody("sneaky"), token=token, scheme=scheme)
    assert status == 401
    assert "Bearer" in answer["error"]
    await checkNothingSent(adminServer, page)


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("token", ["wrong", TOKEN + "x", TOKEN.upper(), TOKEN[:-1], "é" + TOKEN])
async def test_wrongTokenIs403(adminServer, pages, token):
    """A request with the wrong Bearer token is refused with 403 and logged, and sends nothing."""
    page = await pages(adminServer, "alice")
    status, answer = await post(adminServer, alertBody("sneaky"), token=token)
    assert status == 403
    assert answer == {"error": "wrong token"}
    adminServer.waitForLog(r"admin alert refused: wrong token")
    await checkNothingSent(adminServer, page)


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("body, says", [
    (b"", "body must be JSON"),
    (b"not json", "body must be JSON"),
    (b"\xff\xfe", "body must be JSON"),
    (b'["text"]', "body must be JSON"),
    (b'"text"', "body must be JSON"),
    (b"null", "body must be JSON"),
    (b'{"message": "hi"}', "body must be JSON"),
    (b'{"text": 5}', "non-empty string"),
    (b'{"text": null}', "non-empty string"),
    (b'{"text": ["hi"]}', "non-empty string"),
    (b'{"text": ""}', "non-empty string"),
    (b'{"text": "  \\n "}', "non-empty string"),
    (alertBody("x" * 2001), "over 2000"),
])
async def test_badBodyIs400(adminServer, pages, body, says):
    """A malformed alert body is refused with 400 saying what is wrong, and sends nothing."""
    page = await pages(adminServer, "alice")
    status, answer = await post(adminServer, body)
    assert status == 400
    assert says in answer["error"]
    await checkNothingSent(adminServer, page)


@pytest_twisted.ensureDeferred
async def test_longestAlert(adminServer, pages):
    """An alert of exactly 2000 characters is delivered whole."""
    page = await pages(adminServer)
    text = "y" * 2000
    assert await post(adminServer, alertBody(text)) == (200, {"delivered": 1})
    await onlyAlert(page, text)


@pytest_twisted.ensureDeferred
async def test_getIsNotAnAlert(adminServer, pages):
    """GET /alert is not allowed and sends nothing; other paths are not found."""
    page = await pages(adminServer, "alice")
    status, _ = await post(adminServer, None, method="GET")
    assert status == 405
    status, _ = await post(adminServer, alertBody("hi"), path="other")
    assert status == 404
    await checkNothingSent(adminServer, page)


async def checkNothingSent(server, page: LiveTestClient) -> None:
    """
    No operator alert reached C{page}: a good alert sent now is the first it sees.
    """
    assert await post(server, alertBody("marker alert")) == (200, {"delivered": 1})
    await onlyAlert(page, "marker alert")


def test_noAdminEndpointWithoutToken(startTwistd, tmp_path):
    """Without --admin-token-file there is no admin listener: no "admin listening" line, nothing on 8081 or /alert."""
    server = startTwistd("--admin-listen", "tcp:0:interface=127.0.0.1")
    # The chat answers, so the server has finished starting.
    with urllib.request.urlopen(server.url, timeout=10) as response:
        assert response.status == 200
    assert "admin listening" not in server.log(), server.log()
    status, _ = _request(server.url + "alert", alertBody("hi"),
                         {"Authorization": f"Bearer {TOKEN}"}, "POST")
    assert status == 404
    assert server.process.poll() is None


# The chatthing alert command


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("order", ["text-first", "options-first"])
async def test_alertCommand(adminServer, pages, tokenFile, order):
    """`chatthing alert TEXT --url URL --token-file PATH` delivers the alert to every page and exits 0."""
    alice = await pages(adminServer, "alice")
    lurker = await pages(adminServer)
    options = ["--url", adminServer.adminUrl, "--token-file", str(tokenFile)]
    text = ["Server restarts in 5 minutes"]
    args = text + options if order == "text-first" else options + text
    result = await runCli("alert", *args)
    assert result.returncode == 0, result
    assert "alert sent to 2 pages" in result.stdout
    for page in (alice, lurker):
        await onlyAlert(page, "Server restarts in 5 minutes")


@pytest_twisted.ensureDeferred
async def test_alertCommandWrongToken(adminServer, pages, tmp_path):
    """`chatthing alert` with the wrong token exits non-zero, says the alert was refused, and sends nothing."""
    page = await pages(adminServer, "alice")
    wrong = tmp_path / "wrong.token"
    wrong.write_text("not-the-token\n")
    result = await runCli("alert", "sneaky", "--url", adminServer.adminUrl, "--token-file", str(wrong))
    assert result.returncode != 0
    assert "refused (403)" in result.stderr and "wrong token" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    await checkNothingSent(adminServer, page)


@pytest_twisted.ensureDeferred
async def test_alertCommandNoServer(tokenFile):
    """`chatthing alert` with nothing listening at --url exits non-zero saying it cannot reach it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/"
    result = await runCli("alert", "hello", "--url", url, "--token-file", str(tokenFile))
    assert result.returncode != 0
    assert f"cannot reach {url}" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("args, says", [
    (["alert", "hello", "--token-file", "/nonexistent/admin.token"], "cannot be read"),
    (["alert", "hello"], "--token-file is required"),
    (["alert", "--token-file", "TOKENFILE"], "give the alert's text"),
    (["alert", "--token-file", "EMPTYFILE", "hello"], "is empty"),
])
async def test_alertCommandUsageErrors(tokenFile, tmp_path, args, says):
    """`chatthing alert` with a missing or empty token file, or no text, exits 2 with a one-line reason."""
    empty = tmp_path / "empty.token"
    empty.write_text("\n")
    args = [{"TOKENFILE": str(tokenFile), "EMPTYFILE": str(empty)}.get(a, a) for a in args]
    result = await runCli(*args)
    assert result.returncode == 2, result
    assert says in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
