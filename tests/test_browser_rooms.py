"""
Rooms in a real browser (headless Debian Chromium, Playwright's sync API),
against C{twistd -n chat-widget --element=chatthing.chatterbox.chat}: rooms
keep to themselves, the presence list and count follow joins, renames and
leaves, the typing indicator comes and goes, and a joining page shows the
room's history in the browser's local time.

Fixtures and helpers are C{test_browser}'s (see its docstring for how
Playwright and pytest-twisted share the process); every wait has a deadline.
"""

import time
from datetime import datetime
from zoneinfo import ZoneInfo

from playwright.sync_api import expect
from test_browser import DEADLINE, ChatPage, browser, openChat, server  # noqa: F401 (fixtures)


def roomUrl(server, name: str) -> str:
    return f"{server.url}room/{name}"


def test_roomsDoNotSeeEachOther(openChat, server):
    """Two pages in different rooms do not see each other's messages; two in the same room do."""
    alice = openChat(url=roomUrl(server, "red"))
    carol = openChat(url=roomUrl(server, "RED"))
    bob = openChat(url=roomUrl(server, "blue"))
    for chat, name in ((alice, "alice"), (carol, "carol"), (bob, "bob")):
        chat.login(name)
    expect(alice.page.locator('[name="roomName"]')).to_have_text("#red")
    expect(bob.page.locator('[name="roomName"]')).to_have_text("#blue")
    alice.say("red only")
    carol.expectLine("alice: red only")
    bob.say("blue only")
    bob.expectLine("bob: blue only")
    alice.say("red marker")
    carol.expectLine("alice: red marker")
    expect(carol.lines.filter(has_text="blue only")).to_have_count(0)
    expect(alice.lines.filter(has_text="blue only")).to_have_count(0)
    expect(bob.lines.filter(has_text="red")).to_have_count(0)
    expect(bob.lines.filter(has_text="carol")).to_have_count(0)


def presenceOf(chat: ChatPage):
    return chat.page.locator('[name="presence"] li')


def test_presenceListAndCount(openChat, server):
    """The list of who is online and its count (header and title) follow joins, /nick renames and leaves."""
    alice = openChat(url=roomUrl(server, "p"))
    alice.login("alice")
    count = alice.page.locator('[name="onlineCount"]')
    expect(count).to_have_text("1 online")
    expect(presenceOf(alice)).to_have_text(["alice"])
    bob = openChat(url=roomUrl(server, "p"))
    expect(presenceOf(bob)).to_have_text(["alice"])  # drawn with the page
    bob.login("bob")
    for chat in (alice, bob):
        expect(chat.page.locator('[name="onlineCount"]')).to_have_text("2 online")
        expect(presenceOf(chat)).to_have_text(["alice", "bob"])
    expect(alice.page).to_have_title("#p (2 online) · chatthing")
    bob.say("/nick Aaron")
    expect(presenceOf(alice)).to_have_text(["Aaron", "alice"])
    expect(bob.page.locator('[name="loggedInAs"]')).to_have_text("Logged in as Aaron")
    alice.expectLine("user bob is now known as Aaron")
    bob.page.close()
    expect(count).to_have_text("1 online")
    expect(presenceOf(alice)).to_have_text(["alice"])
    expect(alice.page).to_have_title("#p (1 online) · chatthing")


def test_typingIndicatorShowsAndClears(openChat, server):
    """Typing shows "NAME is typing…" to the others in the room, which clears after a few seconds or when the message arrives."""
    alice = openChat(url=roomUrl(server, "t"))
    bob = openChat(url=roomUrl(server, "t"))
    elsewhere = openChat(url=roomUrl(server, "elsewhere"))
    for chat, name in ((alice, "alice"), (bob, "bob"), (elsewhere, "eve")):
        chat.login(name)
    typing = alice.page.locator('[name="typingLine"]')
    field = bob.page.locator('[name="userMessage"]')
    field.press_sequentially("hel")
    expect(typing).to_have_text("bob is typing…")
    expect(bob.page.locator('[name="typingLine"]')).to_have_text("")  # not shown to the typist
    expect(typing).to_have_text("", timeout=DEADLINE)  # forgotten after ~4 s
    field.press_sequentially("lo")
    expect(typing).to_have_text("bob is typing…")
    field.press("Enter")
    # When the message shows, the indicator has gone with it.
    state = alice.page.wait_for_function("""() => {
        const line = [...document.querySelectorAll('[name="scrollArea"] .message.user')]
            .find((node) => node.textContent === "bob: hello");
        return line ? { typing: document.querySelector('[name="typingLine"]').textContent } : null;
    }""", polling="raf")
    assert state.json_value() == {"typing": ""}
    elsewhere.say("marker")
    elsewhere.expectLine("eve: marker")
    expect(elsewhere.page.locator('[name="typingLine"]')).to_have_text("")


def test_historyShownOnJoinInLocalTime(browser, server):  # noqa: F811
    """A page joining a room shows its last messages under an "Earlier messages" divider, dimmed, dated in the browser's time zone."""
    zone = "Asia/Kolkata"
    contexts = [browser.new_context(timezone_id=zone, locale="en-GB") for _ in range(2)]
    try:
        pages = []
        for context in contexts:
            context.set_default_timeout(DEADLINE)
            page = context.new_page()
            pages.append(ChatPage(page))
        alice, carol = pages
        alice.page.goto(roomUrl(server, "hist"))
        alice.page.wait_for_selector('html[data-live-ready="true"]')
        alice.login("alice")
        before = time.time()
        alice.say("first")
        alice.say("/me waves")
        alice.expectLine("* alice waves")
        after = time.time()
        carol.page.goto(roomUrl(server, "hist"))
        carol.page.wait_for_selector('html[data-live-ready="true"]')
        earlier = carol.scrollArea.locator(".message.earlier")
        expect(earlier).to_have_text(["alice: first", "* alice waves"])
        expect(carol.scrollArea.locator(".divider").first).to_have_text("Earlier messages")
        for line in earlier.all():
            utc = int(line.get_attribute("data-utc")) / 1000
            assert before - 1 <= utc <= after + 1
            local = datetime.fromtimestamp(utc, ZoneInfo(zone))
            assert line.get_attribute("data-time") == local.strftime("%H:%M")
        # Live lines are dated too, and are not "earlier".
        alice.say("now")
        carol.expectLine("alice: now")
        live = carol.scrollArea.locator(".message.user:not(.earlier)")
        expect(live).to_have_text(["alice: now"])
        utc = int(live.get_attribute("data-utc")) / 1000
        assert abs(utc - time.time()) < 60
        assert live.get_attribute("data-time") == datetime.fromtimestamp(utc, ZoneInfo(zone)).strftime("%H:%M")
    finally:
        for context in contexts:
            context.close()
