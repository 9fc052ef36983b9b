"""
Apps of one's own (chatthing.live._apps, _appcheck): an element class in a
folder outside the package finds its template, widget and stylesheet beside
its module; a missing one stops twistd at start-up in one line; a template
that fails only when drawn is shown to the page once, not retried, and
leaves no session behind.

The tutorial's chat (examples/tutorial) runs under twistd from a copy of its
folder, with the package only on PYTHONPATH, and two Chromium pages chat on
it.  Every wait has a deadline; every process is stopped by its PID.
"""

import importlib
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import pytest_twisted
from conftest import (
    TwistdServer,
    _collectLines,
    logLines,
    sourceRoot,
    subprocessEnvironment,
    twistdScript,
)
from playwright.sync_api import expect
from test_browser import DEADLINE, browser  # noqa: F401 (fixture)
from test_limits import httpGet

from chatthing.live import AppCheckFailed, checkElementModule
from chatthing.live.testing import LiveTestClient

ROOT = Path(__file__).resolve().parent.parent
TUTORIAL = ROOT / "examples" / "tutorial"

#: A module of an app of one's own, in a folder of its own; {template},
#: {jsModule} filled in per test.
APP_MODULE = '''
from chatthing.live import LiveElement


class Room:
    def __init__(self):
        self.elements = []

    def make(self):
        element = BrokenElement(self)
        self.elements.append(element)
        return element


class BrokenElement(LiveElement):
    template = {template!r}
    jsModule = {jsModule!r}
    jsClass = "Widget"

    def __init__(self, room):
        self.room = room

    def disconnected(self, reason):
        self.room.elements.remove(self)


room = Room()
make = room.make
'''

#: A template that compiles, and fails when drawn: the issue's
#: "ChatRoom has no attribute 'presence'".
FAILS_TO_RENDER = "<p>{{ element.room.presence.names }}</p>\n"

WIDGET = 'import { Widget as Base } from "/js/live/index.js";\nexport class Widget extends Base {}\n'


def writeApp(folder: Path, name: str, template: str | None = "mine.html",
             jsModule: str | None = "mine.js", templateText: str | None = "<p>mine</p>\n",
             widget: str | None = WIDGET) -> Path:
    """
    A module C{name} in C{folder} with its element's template and widget
    beside it (each left out if its text is L{None}); the folder.
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.py").write_text(APP_MODULE.format(template=template, jsModule=jsModule))
    if templateText is not None and template is not None:
        (folder / "templates").mkdir(exist_ok=True)
        (folder / "templates" / template).write_text(templateText)
    if widget is not None and jsModule is not None:
        (folder / "js").mkdir(exist_ok=True)
        (folder / "js" / jsModule).write_text(widget)
    return folder


def importApp(folder: Path, name: str):
    """
    Import the module C{name} from C{folder}, as C{PYTHONPATH=.} would.
    """
    sys.path.insert(0, str(folder))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(folder))


def twistdIn(cwd: Path, element: str, *extra: str) -> subprocess.Popen:
    """
    C{twistd -n chat-widget --element=ELEMENT} run in C{cwd} with
    C{PYTHONPATH=.} and the package's root, as a user of the package would.
    """
    env = subprocessEnvironment()
    env["PYTHONPATH"] = f".:{sourceRoot()}"
    return subprocess.Popen(
        [twistdScript(), "-n", "--pidfile=", "--logfile=-", "chat-widget", f"--element={element}",
         "--listen", "tcp:0:interface=127.0.0.1", *extra],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.fixture
def startIn():
    """
    Start twistd in a folder (L{twistdIn}) and wait until it listens; each
    is stopped by its PID after the test.
    """
    started: list[TwistdServer] = []

    def start(cwd: Path, element: str, *extra: str) -> TwistdServer:
        process = twistdIn(cwd, element, *extra)
        lines: list[str] = []
        threading.Thread(target=_collectLines, args=(process, lines), daemon=True).start()
        server = TwistdServer(process, 0, lines)
        started.append(server)
        match = server.waitForLog(r"chat listening on http://127\.0\.0\.1:(\d+)/", deadline=30)
        server.port = int(match.group(1))
        return server

    yield start
    for server in started:
        server.stop()


def fetch(url: str) -> tuple[int, str]:
    """
    GET C{url}: its status and body (blocking; for a server in another
    process).
    """
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode("utf-8")
    except urllib.error.HTTPError as e:
        return e.code, ""


def metric(text: str, name: str) -> float:
    """
    The value of the sample C{name} (with its labels) in Prometheus C{text};
    0 if absent.
    """
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


# (a) The tutorial's chat, from its own folder, in a browser


def test_tutorialChatFromItsOwnFolder(tmp_path, startIn, browser):  # noqa: F811
    """The tutorial's chatterbox.py, copied outside the package, serves its own template, widget and CSS, and two pages chat."""
    folder = tmp_path / "tutorial"
    shutil.copytree(TUTORIAL, folder)
    server = startIn(folder, "chatterbox.chat")
    # Its own files beside the module; the runtime still at /js/live/.
    status, css = fetch(server.url + "apps/chatterbox/css/chatterbox.css")
    assert status == 404, "served before any page of the app was made"
    contexts = [browser.new_context() for _ in range(2)]
    try:
        pages = []
        for context in contexts:
            context.set_default_timeout(DEADLINE)
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error, errors=errors: errors.append(str(error)))
            page.on("console", lambda message, errors=errors: errors.append(message.text)
                    if message.type in ("error", "warning") else None)
            page.goto(server.url)
            page.wait_for_selector('html[data-live-ready="true"]')
            pages.append((page, errors))
        (alice, aliceErrors), (bob, bobErrors) = pages
        for page, name in ((alice, "alice"), (bob, "bob")):
            # The tutorial's own markup, not the built-in chatterbox.html.
            expect(page.locator('[name="chatBox"]')).to_be_hidden()
            page.fill('[name="username"]', name)
            page.click('[name="login"]')
            expect(page.locator('[name="chatBox"]')).to_be_visible()
        expect(alice.locator('[name="scrollArea"] div', has_text="user bob has joined the room")).to_have_count(1)
        alice.fill('[name="message"]', "hello bob")
        alice.press('[name="message"]', "Enter")
        bob.fill('[name="message"]', "hi alice")
        bob.press('[name="message"]', "Enter")
        for page in (alice, bob):
            lines = page.locator('[name="scrollArea"] div')
            expect(lines.filter(has_text="alice: hello bob")).to_have_count(1)
            expect(lines.filter(has_text="bob: hi alice")).to_have_count(1)
        # The app's stylesheet, linked as {{ app }}/css/..., was applied.
        assert alice.locator(".tutorial-scroll").evaluate("n => getComputedStyle(n).overflowY") == "auto"
        assert aliceErrors == [] and bobErrors == []
    finally:
        for context in contexts:
            context.close()
    assert fetch(server.url + "apps/chatterbox/js/ChatThing.js")[0] == 200
    assert fetch(server.url + "apps/chatterbox/css/chatterbox.css")[0] == 200
    assert "export { Widget }" in fetch(server.url + "js/live/index.js")[1]
    # Nothing else of the folder, and no other module's folder, is served.
    assert fetch(server.url + "apps/chatterbox/chatterbox.py")[0] == 404
    assert fetch(server.url + "apps/chatterbox/js/%2e%2e/chatterbox.py")[0] in (403, 404)
    assert fetch(server.url + "apps/os/js/x.js")[0] == 404


# (b) What can be known at start-up stops twistd in one line


@pytest.mark.parametrize("files, message", [
    (dict(templateText=None), "template 'mine.html' is not in"),
    (dict(widget=None), "jsModule 'mine.js' is not a file in"),
    (dict(templateText="<p>{% if %}</p>"), "template 'mine.html' does not compile"),
    (dict(jsModule="../outside.js", widget=None), "is not a file name under its js/ folder"),
])
def test_missingFileRefusesToStart(tmp_path, files, message):
    """A module whose template or widget module is missing (or broken) makes twistd exit non-zero at once, in one line."""
    app = writeApp(tmp_path / "app", "myapp", **files)
    process = twistdIn(app, "myapp.make")
    try:
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode != 0, output
    last = output.strip().splitlines()[-1]
    assert message in last and "--element 'myapp.make'" in last, output
    assert "chat listening on" not in output


def test_checkElementModuleAcceptsTheBuiltInApps(tmp_path):
    """The start-up check passes the built-in chat and echo, and an app whose files are all there."""
    checkElementModule("chatthing.chatterbox.chat")
    checkElementModule("chatthing.examples.echobox.EchoElement")
    importApp(writeApp(tmp_path / "good", "goodapp"), "goodapp")
    checkElementModule("goodapp.make")
    importApp(writeApp(tmp_path / "bad", "badapp", templateText=None), "badapp")
    with pytest.raises(AppCheckFailed, match="'mine.html' is not in"):
        checkElementModule("badapp.make")


# (c) A template that fails when drawn: said once, not retried, no session


@pytest_twisted.ensureDeferred
async def test_renderFailureClosesFinally(tmp_path, serve, serverLog):
    """A template failing to render closes the page with 4010 and a clear error, logs one line, and leaves no session or element."""
    module = importApp(writeApp(tmp_path / "app", "rendersbadly", templateText=FAILS_TO_RENDER),
                       "rendersbadly")
    server = await serve(elementFactory=module.make)
    client = await LiveTestClient.connect(server.wsUrl, hello=False)
    client.send({"type": "hello", "version": 1, "render": True})
    assert await client.closed() == 4010
    [error] = client.errors()
    assert error["error"]["name"] == "ElementUnavailable"
    assert "UndefinedError" in error["error"]["message"]
    assert server.site.liveFactory.sessions == {}
    assert module.room.elements == [], "the element was not detached"
    lines = logLines(serverLog, "cannot be shown", "rendersbadly.BrokenElement", "UndefinedError")
    assert len(lines) == 1, lines
    assert "\n" not in lines[0]
    metrics = server.site.metrics.render().decode()
    assert metric(metrics, 'live_errors_total{kind="ElementUnavailable"}') == 1


@pytest_twisted.ensureDeferred
async def test_ownFilesServedOnlyOnceMade(tmp_path, serve):
    """/apps/<module>/js/ serves an app's own widget once one of its elements is made, and never a path out of its js/ folder."""
    module = importApp(writeApp(tmp_path / "app", "servedapp"), "servedapp")
    server = await serve(elementFactory=module.make)
    status, _, _ = await httpGet(server.port, "/apps/servedapp/js/mine.js")
    assert status == 404
    client = await LiveTestClient.connect(server.wsUrl, hello={"render": True})
    element = client.welcome["element"]
    assert element == {"html": "<p>mine</p>", "module": "/apps/servedapp/js/mine.js",
                       "widget": "Widget"}
    status, headers, body = await httpGet(server.port, "/apps/servedapp/js/mine.js")
    assert status == 200 and body.decode() == WIDGET
    assert headers["content-type"].startswith("text/javascript")
    for path in ("/apps/servedapp/js/../servedapp.py", "/apps/servedapp/js/%2e%2e/servedapp.py",
                 "/apps/servedapp/servedapp.py", "/apps/servedapp/templates/mine.html",
                 "/apps/sys/js/x.js"):
        status, _, body = await httpGet(server.port, path)
        assert status in (403, 404), path
        assert b"LiveElement" not in body and b"<p>mine" not in body
    client.close()


def test_renderFailureShownNotRetried(tmp_path, startIn, browser):  # noqa: F811
    """In a browser, a template failing at run time is shown on the page once; the page does not reconnect, and no session is left."""
    app = writeApp(tmp_path / "app", "rendersbadly", templateText=FAILS_TO_RENDER)
    server = startIn(app, "rendersbadly.make", "--metrics-public")
    context = browser.new_context()
    try:
        context.set_default_timeout(DEADLINE)
        page = context.new_page()
        page.goto(server.url)
        expect(page.locator("[data-live-notice]")).to_contain_text("cannot be shown")
        expect(page.locator("[data-live-notice]")).to_contain_text("UndefinedError")
        expect(page.locator("div[data-live-status]")).to_have_text("Disconnected.")
        # Watch the server for a few seconds: a page that retried would have
        # come back within the back-off's first 0.5 s, then every few.
        refused = 'live_errors_total{kind="ElementUnavailable"}'
        end = time.monotonic() + 4
        counts = []
        while time.monotonic() < end:
            status, text = fetch(server.url + "metrics")
            assert status == 200
            counts.append(metric(text, refused))
            assert counts[-1] <= 1, f"the page connected again: {counts}"
            time.sleep(0.2)
        assert counts[-1] == 1
        assert metric(text, "live_sessions") == 0
        assert metric(text, "live_connections") == 0
    finally:
        context.close()
    lines = [line for line in server.logLines if "cannot be shown" in line]
    assert len(lines) == 1 and "UndefinedError" in lines[0], lines
    assert not re.search(r"Traceback|Unhandled", server.log()), server.log()


def test_missingWidgetShownAndLeft(tmp_path, startIn, browser):  # noqa: F811
    """A widget module gone after start-up is shown on the page as such; the page leaves its session instead of hanging on."""
    app = writeApp(tmp_path / "app", "losesitswidget")
    server = startIn(app, "losesitswidget.make", "--metrics-public")
    (app / "js" / "mine.js").unlink()
    context = browser.new_context()
    try:
        context.set_default_timeout(DEADLINE)
        page = context.new_page()
        page.goto(server.url)
        expect(page.locator("[data-live-notice]")).to_contain_text("the widget could not be loaded")
        expect(page.locator("div[data-live-status]")).to_have_text("Disconnected.")
        end = time.monotonic() + 15
        while True:
            text = fetch(server.url + "metrics")[1]
            if metric(text, "live_sessions") == 0:
                break
            assert time.monotonic() < end, "the session was left behind"
            time.sleep(0.1)
        assert page.evaluate("document.documentElement.dataset.liveReady") is None
    finally:
        context.close()
