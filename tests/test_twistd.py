"""
The server started as users start it: twistd, in a subprocess, from a folder
that is not the checkout, so the installed package must find its own
templates and JavaScript.
"""

import socket
import subprocess
import threading
import urllib.request
from pathlib import Path

import pytest
import pytest_twisted
from conftest import TwistdServer, _collectLines, runTwistd, subprocessEnvironment, twistdScript

from chatthing.live.testing import LiveTestClient

README = Path(__file__).resolve().parent.parent / "README.md"


def fetch(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.headers, response.read().decode("utf-8")


def startedTwistd(args: list[str], cwd) -> TwistdServer:
    """
    C{twistd -n ARGS} running, its log lines gathered as they come.
    """
    process = runTwistd(args, cwd)
    lines: list[str] = []
    threading.Thread(target=_collectLines, args=(process, lines), daemon=True).start()
    return TwistdServer(process, 0, lines)


def test_readmeCommand(tmp_path):
    """README's exact command, on a free port (--port=0), serves the chat page, its JS and CSS."""
    command = "twistd -n chat-widget --element=chatthing.chatterbox.chat"
    assert command in README.read_text()
    # Never README's port 8080 itself: whoever followed README may have
    # that server running while the tests run (README's second command).
    server = startedTwistd([*command.split()[2:], "--port=0"], tmp_path)
    try:
        port = int(server.waitForLog(r"chat listening on http://0\.0\.0\.0:(\d+)/").group(1))
        assert port != 8080
        status, headers, page = fetch(f"http://127.0.0.1:{port}/")
        assert status == 200 and "/js/live/boot.js" in page
        assert "unsafe-inline" not in headers["Content-Security-Policy"]
        for path in ["/js/live/boot.js", "/js/ChatThing.js", "/css/chatterbox.css"]:
            status, headers, body = fetch(f"http://127.0.0.1:{port}" + path)
            assert status == 200 and body, path
    finally:
        server.stop()


def exitedWithOneLine(process: subprocess.Popen, deadline: float = 30.0) -> str:
    """
    Wait (at most C{deadline} seconds) for C{process} to exit on its own,
    non-zero and with no traceback; its last line of output.
    """
    try:
        output, _ = process.communicate(timeout=deadline)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        raise AssertionError(f"still running after {deadline}s; output:\n{output}") from None
    assert process.returncode != 0, output
    assert "Traceback" not in output, output
    return output.strip().splitlines()[-1]


def test_portInUseExits(tmp_path):
    """A port already in use: twistd exits at once, non-zero, with one line saying what and where."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        process = runTwistd(["chat-widget", "--element=chatthing.chatterbox.chat",
                             "--listen", f"tcp:{port}:interface=127.0.0.1"], tmp_path)
        last = exitedWithOneLine(process)
    assert f"chat cannot listen on tcp:{port}:interface=127.0.0.1: " in last, last
    assert "Address already in use" in last, last


def test_metricsPortInUseExits(tmp_path):
    """Any listener refused (here --metrics-listen's) stops start-up the same way, naming that listener."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        process = runTwistd(["chat-widget", "--element=chatthing.chatterbox.chat",
                             "--listen", "tcp:0:interface=127.0.0.1",
                             "--metrics-listen", f"tcp:{port}:interface=127.0.0.1"], tmp_path)
        last = exitedWithOneLine(process)
    assert f"metrics cannot listen on tcp:{port}:interface=127.0.0.1: " in last, last


@pytest.mark.parametrize("listen, message", [
    ("foo:1", "--listen 'foo:1' cannot be used: ValueError: Unknown endpoint type: 'foo'"),
    ("tcp:http", "--listen 'tcp:http' cannot be used: ValueError"),
    ("ssl:0:privateKey={dir}/key.pem:certKey={dir}/missing.pem",
     "cannot be used: FileNotFoundError: [Errno 2] No such file or directory: '{dir}/missing.pem'"),
    ("ssl:0:privateKey={dir}/missing.pem", "No such file or directory: '{dir}/missing.pem'"),
    # README used to show this: a key file alone, with no certificate in it.
    ("ssl:0:privateKey={dir}/key.pem", "an ssl: endpoint needs privateKey=KEY.pem:certKey=CERT.pem"),
])
def test_badEndpointExits(tmp_path, listen, message):
    """A bad --listen (unknown type, missing certificate or key) is a usage error: one line, exit != 0."""
    (tmp_path / "key.pem").write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    process = runTwistd(["chat-widget", "--element=chatthing.chatterbox.chat",
                         "--listen", listen.format(dir=tmp_path)], tmp_path)
    last = exitedWithOneLine(process)
    assert message.format(dir=tmp_path) in last, last


@pytest_twisted.ensureDeferred
async def test_chatOverTwistd(startTwistd):
    """Two WebSocket clients chat through a twistd-run server, the page drawn from the installed template."""
    server = startTwistd()
    url = f"ws://127.0.0.1:{server.port}/live"
    alice = await LiveTestClient.connect(url, hello={"render": True})
    bob = await LiveTestClient.connect(url)
    assert 'name="chooseBox"' in alice.welcome["element"]["html"]
    assert alice.welcome["element"]["module"] == "/js/ChatThing.js"
    assert bob.welcome["element"]["html"] is None
    assert (await alice.call("setUsername", "alice"))["value"] == "alice"
    assert (await bob.call("setUsername", "bob"))["value"] == "bob"
    await alice.call("say", "hi bob")
    await bob.waitFor(lambda: ["alice", "hi bob"] in bob.calls("displayUserMessage"))
    bob.close()
    await alice.waitFor(lambda: [" * user bob has left the room"] in alice.calls("displayMessage"))
    alice.close()


@pytest.mark.parametrize("element, message", [
    ("nope.nothing", "--element 'nope.nothing' cannot be imported"),
    ("chatthing.chatterbox.ChatterElement", "must be callable with no arguments"),
])
def test_badElementExits(tmp_path, element, message):
    """A bad --element makes twistd exit non-zero, naming the problem in its last line."""
    process = runTwistd(["chat-widget", f"--element={element}"], tmp_path)
    output, _ = process.communicate(timeout=30)
    assert process.returncode != 0
    assert message in output.strip().splitlines()[-1]


def test_helpDocumentsEveryOption(tmp_path):
    """twistd chat-widget --help lists every option."""
    output = subprocess.run(
        [twistdScript(), "chat-widget", "--help"],
        cwd=tmp_path, capture_output=True, text=True, timeout=30, env=subprocessEnvironment(),
    ).stdout
    for option in ["--element", "--port", "--listen", "--admin-token-file", "--admin-listen"]:
        assert option in output

