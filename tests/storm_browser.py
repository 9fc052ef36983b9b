"""
Many chat pages in one headless Chromium, driven from Playwright's sync API
with a few calls whatever their number (for C{test_browser_joinstorm}).

Each L{PageGroup} is one browser context holding one page Playwright drives
(the controller) and popups it opened with C{window.open}: real top-level
pages, each with its own WebSocket and session, sharing their opener's
renderer process.  Being of the controller's origin, the popups' documents
are within its reach: one C{evaluate} logs them all in or reads what they
all show.  Playwright still sees every popup (its console errors are kept),
but the test never waits on them one by one.

How this holds 200 pages on a 2-core machine: one browser, a few renderer
processes (C{--renderer-process-limit}, C{--disable-site-isolation-trials}),
tiny viewports, no screenshots, and no throttling of pages' timers (the
socket reconnects and acknowledges on timers).

While a sync Playwright call runs the reactor is blocked (see
C{test_browser}), so these helpers wait with C{test_other_browsers}'
C{waitUntil}, a deadline and a short poll, not C{conftest.eventually}.
"""

import os
import socket
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright
from test_browser import CHROMIUM, CHROMIUM_ARGS, FlakyProxy
from test_other_browsers import waitUntil

#: What holds a few hundred pages in a few gigabytes: few renderer
#: processes, pages of one site sharing them, and background pages kept
#: running.
STORM_ARGS = [
    *CHROMIUM_ARGS,
    "--renderer-process-limit=5",
    "--disable-site-isolation-trials",
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
    "--disable-extensions",
    "--mute-audio",
]

#: Milliseconds any one Playwright call may take, and seconds the pages may
#: take to open, on a loaded 2-core machine.
CALL_DEADLINE = 30_000
OPEN_DEADLINE = 60.0

#: The controller's pages: itself and its popups (C{window.stormPages}).
#: Opening a popup is synchronous; its document loads on its own.
OPEN_POPUPS = """([url, count]) => {
    window.stormPages = [window];
    for (let n = 0; n < count; n++) {
        window.stormPages.push(window.open(url, "_blank"));
    }
}"""

#: How many of the controller's pages are connected and drawn.
READY = """() => window.stormPages.filter((page) =>
    page.document.documentElement.dataset.liveReady === "true").length"""

#: Record every page's connection states from now on, in C{stormStates}:
#: each C{[state, names, lines]}, with how many names and lines the page
#: showed then.
WATCH = """() => window.stormPages.forEach((page) => {
    page.stormStates = [];
    page.liveSocket.onStateChange((state) => page.stormStates.push([
        state,
        page.document.querySelectorAll('[name="presence"] li').length,
        page.document.querySelector('[name="scrollArea"]').children.length,
    ]));
})"""

#: Log every page in, in one go: C{names[n]} fills the n-th page's login
#: form, which is submitted as if its button were clicked.
LOG_IN = """(names) => window.stormPages.forEach((page, n) => {
    page.document.querySelector('[name="username"]').value = names[n];
    page.document.querySelector('[name="chooseBox"]').requestSubmit();
})"""

#: How far each page is: how many names and lines it shows, and its
#: connection's state (cheap to read while the pages are busy).
PROGRESS = """() => window.stormPages.map((page) => [
    page.document.querySelectorAll('[name="presence"] li').length,
    page.document.querySelector('[name="scrollArea"]').children.length,
    page.liveSocket.state,
])"""

#: What each page shows now: its presence list, the text of each line of
#: its scroll area, its connection (session, state, states since L{WATCH})
#: and login, and the notice of a new session, if shown.
SHOWN = """() => window.stormPages.map((page) => {
    const doc = page.document;
    const notice = doc.querySelector("[data-live-notice]");
    return {
        names: [...doc.querySelectorAll('[name="presence"] li')].map((item) => item.textContent),
        lines: [...doc.querySelector('[name="scrollArea"]').children].map((line) => line.textContent),
        session: page.liveSocket.session,
        state: page.liveSocket.state,
        states: page.stormStates,
        loggedInAs: doc.querySelector('[name="loggedInAs"]').textContent,
        notice: notice.hidden ? null : notice.textContent,
    };
})"""


@pytest.fixture
def stormBrowser():
    """
    A headless Chromium set up to hold a few hundred pages; closed after the
    test, with every process it started.
    """
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=STORM_ARGS,
                                              timeout=60_000)
        try:
            yield chromium
        finally:
            chromium.close()


class PageGroup:
    """
    The pages of one browser context: a controller Playwright drives and
    the popups it opened, each to log in as one of C{names}.

    @ivar errors: the console errors and uncaught exceptions of its pages.
    """

    def __init__(self, context: BrowserContext, controller: Page, names: list[str]) -> None:
        self.context = context
        self.controller = controller
        self.names = names
        self.errors: list[str] = []
        context.on("console", lambda message: message.type == "error"
                   and self.errors.append(f"console.error: {message.text}"))
        context.on("weberror", lambda error: self.errors.append(f"pageerror: {error.error}"))

    @property
    def size(self) -> int:
        return len(self.names)

    @staticmethod
    def shares(pages: int, groups: int) -> list[int]:
        """
        C{pages} spread as evenly as can be over C{groups}.
        """
        return [pages // groups + (1 if n < pages % groups else 0) for n in range(groups)]

    def logIn(self) -> None:
        """
        Submit every page's login form, in one go, without waiting for the
        answers.
        """
        self.controller.evaluate(LOG_IN, self.names)

    def progress(self) -> list[list]:
        """
        How far each page is (see L{PROGRESS}), the controller first.
        """
        return self.controller.evaluate(PROGRESS)

    def shown(self) -> list[dict]:
        """
        What each page shows (see L{SHOWN}), the controller first.
        """
        return self.controller.evaluate(SHOWN)


def openGroups(browser: Browser, urls: list[str], sizes: list[int]) -> list[PageGroup]:
    """
    A L{PageGroup} of C{sizes[n]} pages on C{urls[n]} each, in a context of
    its own, all loading at once; once every page is connected and drawn.
    Their names are C{storm000}, C{storm001}... in order.
    """
    groups, first = [], 0
    for url, size in zip(urls, sizes):
        context = browser.new_context(viewport={"width": 320, "height": 240})
        context.set_default_timeout(CALL_DEADLINE)
        controller = context.new_page()
        controller.goto(url)
        controller.wait_for_selector('html[data-live-ready="true"]')
        controller.evaluate(OPEN_POPUPS, [url, size - 1])
        groups.append(PageGroup(context, controller, [f"storm{n:03d}" for n in range(first, first + size)]))
        first += size
    for group in groups:
        waitUntil(lambda: group.controller.evaluate(READY) == group.size,
                  f"{group.size} pages on {group.controller.url} to be ready", OPEN_DEADLINE)
        group.controller.evaluate(WATCH)
    return groups


class TrippingProxy(FlakyProxy):
    """
    A L{FlakyProxy} that can cut its connections, and refuse new ones, by
    itself, after passing on a given number of bytes from the server: in
    the middle of a stream of frames, at a point no page's or test's
    timing can move.

    @ivar tripped: whether it has cut (and is refusing) since L{tripAfter}.
    """

    tripped = False
    _tripBytes: int | None = None

    def tripAfter(self, nbytes: int) -> None:
        """
        From now on, pass on C{nbytes} more bytes from the server, then cut
        every connection and refuse new ones (until C{block(False)}).
        """
        def arm() -> None:
            self._tripBytes, self.tripped = nbytes, False
        self._do(arm)

    def _forward(self, sock: socket.socket) -> None:
        peer = self.peers.get(sock)
        if self._tripBytes is None or peer is None or not self._fromServer(sock):
            super()._forward(sock)
            return
        try:
            data = sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            self._close(sock, peer)
            return
        passed = data[:self._tripBytes]
        self._tripBytes -= len(passed)
        try:
            peer.sendall(passed)
        except OSError:
            pass
        if self._tripBytes == 0:
            self._tripBytes, self.blocked, self.tripped = None, True, True
            self._cut()

    def _fromServer(self, sock: socket.socket) -> bool:
        try:
            return sock.getpeername()[1] == self.targetPort
        except OSError:
            return False


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            tree.setdefault(int(fields[1]), []).append(int(entry.name))
    return tree


def _field(pid: int, path: str, name: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/{path}").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _cpuSeconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def browserUse() -> str:
    """
    What the Chromium processes under this one (Playwright's driver starts
    them) hold and have used: their count, the sum of their RSS (shared
    pages counted once per process), of their PSS (shared pages split
    between their users), in MiB, and their CPU time.
    """
    tree = _children()
    chromium, todo = [], list(tree.get(os.getpid(), []))
    while todo:
        pid = todo.pop()
        todo.extend(tree.get(pid, []))
        try:
            if Path(f"/proc/{pid}/exe").resolve().name.startswith("chrom"):
                chromium.append(pid)
        except OSError:
            continue
    rss = sum(_field(pid, "status", "VmRSS") for pid in chromium)
    pss = sum(_field(pid, "smaps_rollup", "Pss") for pid in chromium)
    cpu = sum(_cpuSeconds(pid) for pid in chromium)
    return (f"browser: {len(chromium)} processes, RSS {rss / 1024:.0f} MiB, "
            f"PSS {pss / 1024:.0f} MiB, {cpu:.0f} s CPU")
