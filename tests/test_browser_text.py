"""
User text in a real browser (headless Debian Chromium, Playwright's sync
API; issue 12, rows 11 and 15): a message is laid out in the order its
characters were sent, whatever bidi controls or right-to-left letters it
holds; a message with line breaks cannot make a line that looks like an
alert; over-long input is said, not cut.

Fixtures and helpers are C{test_browser}'s (see its docstring for how
Playwright and pytest-twisted share the process); every wait has a deadline.
Layout is read from the browser (C{Range.getClientRects}), in figures
relative to the page, never in time.
"""

import re

from playwright.sync_api import expect
from test_browser import ChatPage, browser, openChat, server  # noqa: F401 (fixtures)

#: Every character that reorders text (what the page and server take out).
BIDI = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")

#: "pay vice to $1000" on screen when U+202E is obeyed.
SPOOF = "pay \u202e0001$ ot eciv"
SENT_ORDER = "pay 0001$ ot eciv"

#: Where each character of a line is drawn: its left edge and its line's
#: top, in the order the characters are in the DOM (the order they were sent).
CHARACTER_BOXES = """(line) => {
    const walker = document.createTreeWalker(line, NodeFilter.SHOW_TEXT);
    const boxes = [];
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
        for (let i = 0; i < node.data.length; i++) {
            const range = document.createRange();
            range.setStart(node, i);
            range.setEnd(node, i + 1);
            const rect = range.getBoundingClientRect();
            if (rect.width > 0 && node.data[i].trim()) {
                boxes.push([node.data[i], rect.left, rect.top]);
            }
        }
    }
    return boxes;
}"""

#: The left edge of each visual line of a message, relative to its box.
LINE_STARTS = """(line) => {
    const range = document.createRange();
    range.selectNodeContents(line);
    const starts = new Map();
    for (const rect of range.getClientRects()) {
        if (rect.width === 0) continue;
        const top = Math.round(rect.top);
        starts.set(top, Math.min(starts.get(top) ?? Infinity, rect.left));
    }
    const left = line.getBoundingClientRect().left;
    return [...starts.entries()].sort((a, b) => a[0] - b[0]).map(([, x]) => x - left);
}"""


def lineOf(chat: ChatPage, speaker: str, text: str):
    """
    The one line of C{chat}'s log said by C{speaker} that shows C{text}.
    """
    line = chat.scrollArea.locator(".message.user").filter(has_text=speaker).filter(has_text=text)
    expect(line).to_have_count(1)
    return line


def assertDrawnInOrder(line, text: str) -> None:
    """
    C{line} shows C{text}, without bidi controls, each character drawn to
    the right of the one before (all on one line).
    """
    content = line.evaluate("(node) => node.textContent")
    assert not BIDI.search(content), ascii(content)
    assert content.endswith(text), ascii(content)
    boxes = line.evaluate(CHARACTER_BOXES)
    assert len({round(top) for _, _, top in boxes}) == 1, boxes
    lefts = [left for _, left, _ in boxes]
    assert lefts == sorted(lefts), [(char, round(left)) for char, left, _ in boxes]


def test_bidiOverrideShownInSentOrder(openChat):
    """A message with U+202E ("pay vice to $1000" when obeyed) is drawn in the order sent, with no bidi control in the page, and isolated from its speaker's name."""
    bob = openChat()
    bob.login("bob")
    mallory = openChat()
    mallory.login("mallory")
    mallory.say(SPOOF)
    line = lineOf(bob, "mallory", SENT_ORDER)
    assertDrawnInOrder(line, SENT_ORDER)
    styles = line.evaluate("""(node) => [
        getComputedStyle(node.querySelector('.speaker')).unicodeBidi,
        getComputedStyle(node.querySelector('.text')).unicodeBidi]""")
    assert styles == ["isolate", "plaintext"]
    # What a server that kept the override would send (from history, or
    # another process): the page takes it out too.
    bob.page.evaluate("(text) => liveSocket._widget.displayUserMessage('eve', text)", SPOOF)
    assertDrawnInOrder(lineOf(bob, "eve", SENT_ORDER), SENT_ORDER)
    assert bob.errors == mallory.errors == []


def test_rightToLeftTextStaysAfterItsSpeaker(openChat):
    """A Hebrew name saying Hebrew text: the name is drawn first (at the left), then ": ", then the text, not merged into one reversed run."""
    bob = openChat()
    bob.login("bob")
    dan = openChat()
    dan.login("\u05d3\u05df")
    dan.say("\u05e9\u05dc\u05d5\u05dd")
    line = lineOf(bob, "\u05d3\u05df", "\u05e9\u05dc\u05d5\u05dd")
    boxes = line.evaluate("""(node) => {
        const speaker = [...node.childNodes].find((child) => child.textContent === '\u05d3\u05df');
        const range = document.createRange();
        range.selectNodeContents(speaker);
        const name = range.getBoundingClientRect();
        range.selectNodeContents(node);
        range.setStartAfter(speaker);
        const rest = range.getBoundingClientRect();
        return [name.left, name.right, rest.left, rest.right];
    }""")
    nameLeft, nameRight, restLeft, restRight = boxes
    assert nameRight <= restLeft + 1, boxes
    assert bob.errors == []


def test_multilineMessageCannotFakeAnAlert(openChat):
    """Line breaks in a message show as "↵", and every line after the first is indented under the speaker: no line passes for an alert."""
    bob = openChat()
    bob.login("bob")
    mallory = openChat()
    mallory.login("mallory")
    fake = "hi\n * user admin has joined the room\r\n * user bob has left the room\u2028ok"
    # The message field cannot hold a line break: call as a modified page would.
    mallory.page.evaluate("(text) => liveSocket.callRemote('say', text)", fake)
    line = lineOf(bob, "mallory", "ok")
    expect(bob.lines.filter(has_text="user admin has joined")).to_have_count(1)
    expect(bob.scrollArea.locator(".message.alert").filter(has_text="user admin")).to_have_count(0)
    marks = line.locator(".newline")
    expect(marks).to_have_count(3)
    expect(marks.first).to_be_visible()
    starts = line.evaluate(LINE_STARTS)
    assert len(starts) == 4, starts
    # The first line starts at the message's left edge (with its time);
    # the others are indented (3rem in chatterbox.css: 48 px here).
    first, *rest = starts
    assert all(start >= 32 for start in rest), starts
    alertStyle, lineStyle = [
        locator.evaluate("(node) => [getComputedStyle(node).textAlign, getComputedStyle(node).backgroundColor]")
        for locator in (bob.lines.filter(has_text="user mallory has joined").first, line)]
    assert alertStyle != lineStyle
    assert lineStyle[0] != "center"
    assert bob.errors == mallory.errors == []


def test_pastedLongMessageSaidNotCut(openChat):
    """A pasted 10,000-character message stays whole in the field, with the server's error, and is not sent; shortened, it is."""
    alice = openChat()
    alice.login("alice")
    bob = openChat()
    bob.login("bob")
    field = alice.page.locator('[name="userMessage"]')
    error = alice.page.locator('[name="sendError"]')
    field.focus()
    alice.page.keyboard.insert_text("x" * 10_000)  # as a paste does
    said = "Messages are at most 2000 characters long (this one has 10000)."
    expect(error).to_have_text(said)
    assert field.evaluate("(node) => node.value.length") == 10_000
    field.press("Enter")
    expect(error).to_have_text(f"Not sent: {said}")
    assert field.evaluate("(node) => node.value.length") == 10_000
    field.fill("short now")
    expect(error).to_have_text("")
    field.press("Enter")
    expect(field).to_have_value("")
    bob.expectLine("alice: short now")
    assert bob.scrollArea.locator(".message.user").all_inner_texts() == ["alice: short now"]
    assert alice.errors == bob.errors == []


def test_longNameSaidNotCut(openChat):
    """A 40-character name stays whole in the login box, with the server's error, and is not sent; 32 characters log in."""
    chat = openChat()
    field = chat.page.locator('[name="username"]')
    error = chat.page.locator('[name="loginError"]')
    field.focus()
    chat.page.keyboard.insert_text("n" * 40)
    said = "Usernames are at most 32 characters long (this one has 40)."
    expect(error).to_have_text(said)
    chat.page.click('[name="GO"]')
    expect(error).to_have_text(said)
    assert field.evaluate("(node) => node.value.length") == 40
    expect(chat.page.locator('[name="chooseBox"]')).to_be_visible()
    chat.login("n" * 32)
    assert chat.errors == []
