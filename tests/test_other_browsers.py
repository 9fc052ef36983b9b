"""
The chat still works in Firefox and WebKit, not only in Chromium: two users
log in on C{twistd -n chat-widget --element=chatthing.chatterbox.chat} (the
C{startTwistd} fixture, an ephemeral loopback port), each sees both names in
the presence list, and they chat both ways.

Firefox is Debian's C{firefox-esr}, driven over WebDriver BiDi by
C{puppeteer-core} in a small node script (C{tests/browsers/twoUsersChat.mjs};
C{tests/run-all.sh} installs it with C{npm ci}, no browser downloaded).
Playwright cannot drive it: Playwright's Firefox is a patched build of its
own.  WebKit is WebKitGTK's C{MiniBrowser}, driven by C{WebKitWebDriver}
through Selenium, on an C{Xvfb} display the test starts (MiniBrowser has no
headless mode).

Every wait is for a condition with a deadline, never a sleep.  Each browser,
driver and X server runs in a process group of its own whose leader is the
process this module starts; the group is killed by that PID when its test
ends, passed or failed, and the tests check that a clean shutdown left no
process of the group behind.

These tests fail, not skip, when a browser or driver is missing: a chat that
nobody checked in Firefox or WebKit is what they exist to prevent.
"""

import glob
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

FIREFOX = "/usr/bin/firefox-esr"
WEBKIT_DRIVER = "/usr/bin/WebKitWebDriver"
#: libwebkit2gtk-4.1-0 puts MiniBrowser under the architecture's library folder.
MINIBROWSER = (sorted(glob.glob("/usr/lib/*/webkit2gtk-4.1/MiniBrowser"))
               or ["/usr/lib/x86_64-linux-gnu/webkit2gtk-4.1/MiniBrowser"])[0]
XVFB = "/usr/bin/Xvfb"

BROWSERS = Path(__file__).resolve().parent / "browsers"
CHAT_SCRIPT = BROWSERS / "twoUsersChat.mjs"

#: Seconds any one condition may take, generous for a loaded 2-core box.
DEADLINE = 20.0
#: Seconds a whole browser run may take before it is killed.
RUN_DEADLINE = 120.0

# Selenium's own WebKitGTK driver class still passes the old argument.
pytestmark = pytest.mark.filterwarnings("ignore:setting remote_server_addr:DeprecationWarning")

#: What each page shows once alice and bob have said a line each.
CONVERSATION = ["alice: hello bob", "bob: hi alice!"]


def require(path: str, what: str) -> None:
    """
    Fail, saying what installs it, when C{path} is not there.
    """
    if not os.path.exists(path):
        pytest.fail(f"{path} is missing: {what} (tests/run-all.sh installs it)")


def groupMembers(pgid: int) -> list[int]:
    """
    The live (not zombie) processes in process group C{pgid}, from C{/proc}.
    """
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses.
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def waitUntil(condition: Callable[[], Any], what: str, deadline: float = DEADLINE) -> Any:
    """
    Poll C{condition} until it is true; its value.  Fail saying C{what} was
    awaited when C{deadline} seconds pass first.
    """
    end = time.monotonic() + deadline
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"after {deadline} s, still waiting for {what}")
        time.sleep(0.05)


def killGroup(pgid: int) -> None:
    """
    Kill process group C{pgid} (a process this module started, with
    C{start_new_session}, and everything it started).
    """
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture
def server(startTwistd):
    """
    The chat, served by twistd in a subprocess.
    """
    return startTwistd()


def test_firefoxTwoUsersChat(server):
    """In Firefox (firefox-esr over WebDriver BiDi), alice and bob see each other in the presence list and each sees the other's line."""
    require(FIREFOX, "Debian's firefox-esr")
    require(str(BROWSERS / "node_modules" / "puppeteer-core"), "npm ci in tests/browsers")
    node = shutil.which("node")
    assert node, "node is missing (tests/run-all.sh installs nodejs)"
    process = subprocess.Popen(
        [node, str(CHAT_SCRIPT), server.url, "firefox", FIREFOX],
        cwd=BROWSERS, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )
    events: list[dict] = []
    errors: list[str] = []

    def readEvents() -> None:
        for line in process.stdout:
            try:
                events.append(json.loads(line))
            except ValueError:
                errors.append(line)

    readers = [
        threading.Thread(target=readEvents, daemon=True),
        threading.Thread(target=lambda: errors.extend(process.stderr), daemon=True),
    ]
    for reader in readers:
        reader.start()
    try:
        try:
            process.wait(RUN_DEADLINE)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the Firefox run took over {RUN_DEADLINE} s: {events} {errors}")
        for reader in readers:
            reader.join(DEADLINE)
        started = [event for event in events if "browserPid" in event]
        results = [event for event in events if "ok" in event]
        assert started and results, f"node said {events}, stderr {''.join(errors)}"
        assert started[0]["version"].startswith("firefox/"), started
        result = results[0]
        assert result["ok"], f"{result.get('error')}\n{''.join(errors)}\nserver log:\n{server.log()}"
        assert process.returncode == 0
        for name, seen in result["seen"].items():
            assert seen["loggedInAs"] == f"Logged in as {name}"
            assert seen["presence"] == ["alice", "bob"], (name, seen)
            assert [line for line in seen["lines"] if ": " in line] == CONVERSATION, (name, seen)
            assert " * user bob has joined the room" in seen["lines"], (name, seen)
        assert result["errors"] == []
        # browser.close() took Firefox and every process it started with it.
        waitUntil(lambda: not groupMembers(process.pid), "Firefox's processes to end")
    finally:
        if process.poll() is None:
            process.kill()
        killGroup(process.pid)
        process.wait()


@pytest.fixture
def xDisplay() -> Iterator[str]:
    """
    A new Xvfb X server on a free display (it picks and reports the number
    itself, C{-displayfd}); its C{DISPLAY}.  Stopped after the test.
    """
    require(XVFB, "Debian's xvfb")
    readEnd, writeEnd = os.pipe()
    process = subprocess.Popen(
        [XVFB, "-displayfd", str(writeEnd), "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
        pass_fds=[writeEnd], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        start_new_session=True,
    )
    os.close(writeEnd)
    try:
        number = b""
        with os.fdopen(readEnd, "rb", buffering=0) as reported:
            while not number.endswith(b"\n"):
                chunk = reported.read(16)
                if not chunk:
                    raise AssertionError(f"Xvfb did not start: {process.stderr.read()!r}")
                number += chunk
        yield f":{int(number)}"
    finally:
        process.terminate()
        try:
            process.wait(DEADLINE)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class WebKitPage:
    """
    One WebKitGTK MiniBrowser on the chat, driven by its own
    C{WebKitWebDriver} (a separate browser per user).
    """

    def __init__(self, display: str) -> None:
        from selenium import webdriver

        options = webdriver.WebKitGTKOptions()
        options.binary_location = MINIBROWSER
        options.add_argument("--automation")
        self.service = webdriver.WebKitGTKService(
            executable_path=WEBKIT_DRIVER, env=dict(os.environ, DISPLAY=display),
            log_output=subprocess.DEVNULL, popen_kw={"start_new_session": True},
        )
        self.driver = None
        try:
            self.driver = webdriver.WebKitGTK(options=options, service=self.service)
        except BaseException:
            self.kill()
            raise
        self.driver.set_page_load_timeout(DEADLINE)
        self.driver.set_script_timeout(DEADLINE)

    @property
    def pgid(self) -> int | None:
        process = getattr(self.service, "process", None)
        return process.pid if process is not None else None

    def script(self, source: str, *args: Any) -> Any:
        return self.driver.execute_script(source, *args)

    def until(self, source: str, what: str, *args: Any) -> Any:
        """
        Wait until the script C{source} returns something true; that.
        """
        from selenium.webdriver.support.ui import WebDriverWait

        try:
            return WebDriverWait(self.driver, DEADLINE, poll_frequency=0.05).until(
                lambda driver: driver.execute_script(source, *args))
        except Exception as e:
            raise AssertionError(f"waiting for {what}: {e!r}; the page shows {self.shown()}") from e

    def shown(self) -> dict:
        """
        What the page shows: its lines, who is present, who is logged in,
        and the errors it reported since it was opened.
        """
        return self.script("""return {
            lines: [...document.querySelectorAll('[name="scrollArea"] .message')].map((n) => n.textContent),
            presence: [...document.querySelectorAll('[name="presence"] li')].map((n) => n.textContent),
            loggedInAs: document.querySelector('[name="loggedInAs"]').textContent,
            errors: globalThis.testErrors || [],
        };""")

    def open(self, url: str) -> None:
        self.driver.get(url)
        self.until("return document.documentElement.dataset.liveReady === 'true'", "the page to be live")
        # WebKitWebDriver has no console log: collect uncaught errors here.
        self.script("""globalThis.testErrors = [];
            addEventListener('error', (e) => testErrors.push(String(e.message)));
            addEventListener('unhandledrejection', (e) => testErrors.push(String(e.reason)));""")

    def login(self, name: str) -> None:
        from selenium.webdriver.common.by import By

        self.driver.find_element(By.NAME, "username").send_keys(name)
        self.driver.find_element(By.NAME, "GO").click()
        self.until("""return document.querySelector('[name="loggedInAs"]').textContent === arguments[0]
                      && !document.querySelector('[name="sendLine"]').hidden""",
                   f"the page to say it is logged in as {name}", f"Logged in as {name}")

    def say(self, text: str) -> None:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.common.keys import Keys

        self.driver.find_element(By.NAME, "userMessage").send_keys(text + Keys.ENTER)
        # The field is cleared once the line is sent.
        self.until("return document.querySelector('[name=\"userMessage\"]').value === ''",
                   f"{text!r} to be sent")

    def waitForLine(self, text: str) -> None:
        self.until("""return [...document.querySelectorAll('[name="scrollArea"] .message')]
                          .some((n) => n.textContent.includes(arguments[0]))""",
                   f"a line saying {text!r}", text)

    def waitForPresence(self, names: list[str]) -> None:
        self.until("""return JSON.stringify([...document.querySelectorAll('[name="presence"] li')]
                          .map((n) => n.textContent)) === arguments[0]""",
                   f"the presence list to be {names}", json.dumps(names, separators=(",", ":")))

    def quit(self) -> None:
        """
        End the session as a user would close the browser: the driver and
        MiniBrowser exit.
        """
        if self.driver is not None:
            self.driver.quit()
            self.driver = None

    def kill(self) -> None:
        """
        Kill the driver's process group (the driver, MiniBrowser and its web
        processes), whatever state they are in.
        """
        pgid = self.pgid
        if pgid is not None:
            killGroup(pgid)
            self.service.process.wait()


@pytest.fixture
def openWebKit(xDisplay) -> Iterator[Callable[[], WebKitPage]]:
    """
    Start a MiniBrowser (with its own WebKitWebDriver) on the test's X
    display; each is killed after the test.
    """
    require(WEBKIT_DRIVER, "Debian's webkit2gtk-driver")
    require(MINIBROWSER, "Debian's libwebkit2gtk-4.1-0")
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.fail("selenium is missing (tests/requirements.txt brings it)")

    pages: list[WebKitPage] = []

    def open() -> WebKitPage:
        page = WebKitPage(xDisplay)
        pages.append(page)
        return page

    try:
        yield open
    finally:
        for page in pages:
            page.kill()


def test_webkitTwoUsersChat(server, openWebKit):
    """In WebKit (WebKitGTK's MiniBrowser), alice and bob see each other in the presence list and each sees the other's line."""
    alice = openWebKit()
    alice.open(server.url)
    alice.login("alice")
    bob = openWebKit()
    bob.open(server.url)
    bob.login("bob")
    for page in (alice, bob):
        page.waitForPresence(["alice", "bob"])
        page.waitForLine("user bob has joined the room")
    alice.say("hello bob")
    bob.waitForLine("alice: hello bob")
    bob.say("hi alice!")
    alice.waitForLine("bob: hi alice!")
    bob.waitForLine("bob: hi alice!")
    alice.waitForLine("alice: hello bob")
    for name, page in (("alice", alice), ("bob", bob)):
        seen = page.shown()
        assert seen["loggedInAs"] == f"Logged in as {name}"
        assert seen["presence"] == ["alice", "bob"], (name, seen)
        assert [line for line in seen["lines"] if ": " in line] == CONVERSATION, (name, seen)
        assert seen["errors"] == [], (name, seen)
    # Closing the browsers ends the driver, MiniBrowser and its web processes.
    for page in (alice, bob):
        pgid = page.pgid
        page.quit()
        waitUntil(lambda: not groupMembers(pgid), "WebKit's processes to end")
