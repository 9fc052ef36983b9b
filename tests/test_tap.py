"""
The chat-widget plugin's options, parsed with no reactor, as twisted.web.tap's
tests do.
"""

import pytest
from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins
from twisted.python import usage

from chatthing import tap
from chatthing.chatterbox import ChatterElement, chat
from chatthing.listening import ListeningService


def parse(*args):
    options = tap.Options()
    options.parseOptions(list(args))
    return options


def test_pluginRegistered():
    """twistd finds a chat-widget plugin that points at chatthing.tap."""
    makers = {p.tapname: p for p in getPlugins(IServiceMaker)}
    assert makers["chat-widget"].module == "chatthing.tap"


def test_defaults():
    """The tutorial's command serves the chat on port 8080, with no admin endpoint."""
    options = parse("--element=chatthing.chatterbox.chat")
    assert options["elementFactory"] is chat or options["elementFactory"] == chat
    assert options["listen"] == ["tcp:8080"]
    assert options["adminToken"] is None


def test_port():
    """--port picks the TCP port."""
    assert parse("--element=chatthing.chatterbox.chat", "--port", "0")["listen"] == ["tcp:0"]


@pytest.mark.parametrize("port", ["-1", "65536", "http", ""])
def test_badPort(port):
    """A port outside 0-65535 or not a number is a usage error naming the value."""
    with pytest.raises(usage.UsageError, match="--port must be a number from 0 to 65535"):
        parse("--element=chatthing.chatterbox.chat", "--port", port)


def test_listenRepeatableOverridesPort():
    """--listen is repeatable and overrides --port."""
    options = parse("--element=chatthing.chatterbox.chat", "--port", "9",
                    "--listen", "tcp:8000:interface=127.0.0.1", "--listen", "unix:/tmp/chat.sock")
    assert options["listen"] == ["tcp:8000:interface=127.0.0.1", "unix:/tmp/chat.sock"]


@pytest.mark.parametrize("element, message", [
    (None, "--element is required"),
    ("chatthing.nothere.chat", "cannot be imported"),
    ("chatthing.chatterbox.nothing", "cannot be imported"),
    ("not a name", "cannot be imported"),
    ("chatthing.chatterbox.MAX_MESSAGE_LENGTH", "is not callable"),
    ("chatthing.chatterbox.ChatRoom", "is a class, but not a LiveElement"),
    ("chatthing.chatterbox.ChatterElement", "must be callable with no arguments"),
])
def test_badElement(element, message):
    """A missing, unimportable or unusable --element is a one-line usage error."""
    args = [] if element is None else [f"--element={element}"]
    with pytest.raises(usage.UsageError, match=message) as e:
        parse(*args)
    assert "\n" not in str(e.value)


def test_elementClass():
    """A LiveElement subclass with a zero-argument constructor is a valid factory."""
    options = parse("--element=chatthing.live.LiveElement")
    assert options["elementFactory"].__name__ == "LiveElement"


def test_adminToken(tmp_path):
    """--admin-token-file reads the token and finds the room's wall() for alerts."""
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    options = parse("--element=chatthing.chatterbox.chat", "--admin-token-file", str(token))
    assert options["adminToken"] == "s3cret"
    assert options["alertTarget"] == chat.__self__.wall


@pytest.mark.parametrize("content, message", [(None, "cannot be read"), ("  \n", "is empty")])
def test_badAdminToken(tmp_path, content, message):
    """A missing or empty token file is a usage error."""
    token = tmp_path / "token"
    if content is not None:
        token.write_text(content)
    with pytest.raises(usage.UsageError, match=message):
        parse("--element=chatthing.chatterbox.chat", "--admin-token-file", str(token))


def test_adminNeedsWall(tmp_path):
    """Alerts need an application with a wall(): a bare LiveElement has none."""
    token = tmp_path / "token"
    token.write_text("t")
    with pytest.raises(usage.UsageError, match="no wall"):
        parse("--element=chatthing.live.LiveElement", "--admin-token-file", str(token))


def test_makeService(tmp_path):
    """makeService listens once per --listen address, plus the admin endpoint if configured."""
    token = tmp_path / "token"
    token.write_text("t")
    options = parse("--element=chatthing.chatterbox.chat", "--listen", "tcp:0", "--listen", "tcp:1",
                    "--admin-token-file", str(token), "--admin-listen", "tcp:2")
    services = list(tap.makeService(options))
    assert [(s.description, s.label) for s in services] == [
        ("tcp:0", "chat"), ("tcp:1", "chat"), ("tcp:2", "admin")]
    assert all(isinstance(s, ListeningService) for s in services)


def test_chatterElementIsLiveElement():
    """The factory makes the tutorial's ChatterElement."""
    element = chat()
    try:
        assert isinstance(element, ChatterElement)
    finally:
        chat.__self__.leave(element)
