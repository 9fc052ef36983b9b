"""
The server started as users start it: twistd, in a subprocess, from a folder
that is not the checkout, so the installed package must find its own
templates and JavaScript.
"""

import subprocess
import urllib.request
from pathlib import Path

import pytest
import pytest_twisted
from conftest import runTwistd, subprocessEnvironment, twistdScript

from chatthing.live.testing import LiveTestClient

README = Path(__file__).resolve().parent.parent / "README.md"


def fetch(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.headers, response.read().decode("utf-8")


def test_readmeCommand(tmp_path):
    """README's exact command serves the chat page, its JS and CSS on port 8080."""
    command = "twistd -n chat-widget --element=chatthing.chatterbox.chat"
    assert command in README.read_text()
    process = runTwistd(command.split()[2:], tmp_path)
    try:
        lines = []
        for line in process.stdout:
            lines.append(line)
            if "chat listening on" in line or len(lines) > 200:
                break
        assert "chat listening on http://0.0.0.0:8080/" in "".join(lines), "".join(lines)
        status, headers, page = fetch("http://127.0.0.1:8080/")
        assert status == 200 and "/js/live/boot.js" in page
        assert "unsafe-inline" not in headers["Content-Security-Policy"]
        for path in ["/js/live/boot.js", "/js/ChatThing.js", "/css/chatterbox.css"]:
            status, headers, body = fetch("http://127.0.0.1:8080" + path)
            assert status == 200 and body, path
    finally:
        process.terminate()
        process.wait(10)


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

