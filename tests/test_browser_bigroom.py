"""
A big room in a real browser (headless Debian Chromium, Playwright's sync
API), against C{twistd -n chat-widget --presence-list-max 3}: past three
names the page lists the room's window (its first names by join order, the
same on every page), the page's own name, the count and "and N more"; and
the log reads its height once per frame of lines, not once per line.

Fixtures and helpers are C{test_browser}'s (see its docstring for how
Playwright and pytest-twisted share the process); every wait has a deadline.
"""

import pytest
from playwright.sync_api import expect
from test_browser import ChatPage, browser, openChat  # noqa: F401 (fixtures)

#: The window's size the server is started with.
LIST_MAX = 3


@pytest.fixture
def server(startTwistd):
    """
    The tutorial's chat, listing at most L{LIST_MAX} names a room.
    """
    return startTwistd("--presence-list-max", str(LIST_MAX))


def listed(chat: ChatPage):
    return chat.page.locator('[name="presence"] li')


def test_aBigRoomShowsItsWindowAndCount(openChat):
    """Five users in a room listing three: a new page shows the first three by join order, "5 online"
    and "and 2 more"; logged in, its own name too; when one of the three leaves, the next by join
    order comes in on every page; /who NAME finds a name outside the list."""
    names = ["zoe", "yann", "xena", "walt", "vera"]  # joining order, not alphabetical
    chats = []
    for name in names:
        chat = openChat()
        chat.login(name)
        chats.append(chat)
    newcomer = openChat()
    expect(listed(newcomer)).to_have_text(["xena", "yann", "zoe"])
    expect(newcomer.page.locator('[name="onlineCount"]')).to_have_text("5 online")
    more = newcomer.page.locator('[name="presenceMore"]')
    expect(more).to_have_text("and 2 more")
    newcomer.login("ann")
    expect(listed(newcomer)).to_have_text(["xena", "yann", "zoe", "ann"])
    expect(newcomer.page.locator('[name="presence"] li.me')).to_have_text("ann")
    expect(newcomer.page.locator('[name="onlineCount"]')).to_have_text("6 online")
    expect(more).to_have_text("and 2 more")
    chats[0].page.close()  # zoe, who joined first
    for chat in (newcomer, chats[1], chats[4]):
        expect(chat.page.locator('[name="onlineCount"]')).to_have_text("5 online")
    expect(listed(newcomer)).to_have_text(["walt", "xena", "yann", "ann"])
    expect(listed(chats[1])).to_have_text(["walt", "xena", "yann"])  # yann is in it already
    expect(listed(chats[4])).to_have_text(["walt", "xena", "yann", "vera"])
    expect(chats[4].page.locator('[name="presenceMore"]')).to_have_text("and 1 more")
    newcomer.say("/who VERA")
    newcomer.expectLine("vera is in #lobby.")
    assert newcomer.errors == [] and chats[4].errors == []


#: Counts the reads of the scroll area's height, from before any script of
#: the page runs.
COUNT_HEIGHT_READS = """
const height = Object.getOwnPropertyDescriptor(Element.prototype, "scrollHeight");
globalThis.scrollAreaHeightReads = 0;
Object.defineProperty(Element.prototype, "scrollHeight", {
  get() {
    if (this.getAttribute("name") === "scrollArea") globalThis.scrollAreaHeightReads += 1;
    return height.get.call(this);
  },
});
"""


def test_theLogIsLaidOutOncePerFrameOfLines(openChat):
    """A page shown 16 lines of history at once reads the log's height a few times, not once per
    line (which lays the page out per line), and still ends scrolled to the newest line."""
    alice = openChat(height=300)
    alice.login("alice")
    for number in range(16):
        alice.say(f"line {number}")
    alice.expectLine("alice: line 15")
    reader = openChat(height=300)
    reader.page.add_init_script(COUNT_HEIGHT_READS)
    reader.page.reload()
    reader.page.wait_for_selector('html[data-live-ready="true"]')
    expect(reader.lines.filter(has_text="alice: line")).to_have_count(16)
    reader.page.wait_for_function("""() => {
        const area = document.querySelector('[name="scrollArea"]');
        return area.scrollTop + area.clientHeight >= area.scrollHeight - 2;
    }""")
    reads = reader.page.evaluate("globalThis.scrollAreaHeightReads")
    assert 1 <= reads <= 6, reads
