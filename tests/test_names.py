"""
Names nobody can fake and text nobody can spoof, on the server side
(issue 12, rows 10, 11 and 15): lookalike names are the same name, in one
process and across processes over Redis; names that hold invisible
characters, odd spaces, stacks of marks or two alphabets are refused with a
clear reason; bidi controls are taken out of messages; over-long input is
refused with the words the page says too.

The key itself (L{chatthing.chat.names.nameKey}) is tested directly, with
hypothesis for the properties it must have; everything else through a real
server on an ephemeral loopback port and real WebSocket clients.
"""

import unicodedata

import cluster as harness
import pytest
import pytest_twisted
from conftest import eventually, logLines, withDeadline
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from chatthing.live import RemoteError
from chatthing.chat.names import _prototypes, nameKey, nameProblem, skeleton

#: The cluster harness's fixtures, for the test across processes.
cluster = harness.cluster
redisServer = harness.redisServer

#: What the issue measured: each was accepted while alice and zoé were online.
LOOKALIKES = [
    ("\u0430lice", "InvalidUsername", "mix alphabets"),  # Cyrillic а
    ("\uff41\uff4c\uff49\uff43\uff45", "UsernameTaken", "looks too much like"),  # fullwidth
    ("zoe\u0301", "UsernameTaken", "looks too much like"),  # e + combining acute
    ("ALICE", "UsernameTaken", "taken"),
    ("a1ice", "UsernameTaken", "looks too much like"),
    ("Zo\u00c9", "UsernameTaken", "taken"),
    ("\u0251lice", "UsernameTaken", "looks too much like"),  # Latin alpha: one script
]

#: Names that show nothing, or not what they hold.
INVISIBLE = [
    "\u3164",  # HANGUL FILLER alone: a blank name
    "\u2800",  # BRAILLE PATTERN BLANK
    "alice\u3164",
    "ali\u200bce",  # zero-width space
    "alice\u200d",  # zero-width joiner
    "\u115falice",  # HANGUL CHOSEONG FILLER
    "alice\ufe0f",  # variation selector
    "alice\u2060",  # word joiner
    "\u202ealice",  # right-to-left override
    "alice\U000e0041",  # a tag character
]


def refusals(chatServer, kind: str) -> float:
    """
    How many refusals of class C{kind} the server has counted in its metrics.
    """
    text = chatServer.site.metrics.render().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "live_errors_total" and sample.labels.get("kind") == kind:
                return sample.value
    return 0.0


async def refusedWith(client, method: str, *args) -> dict:
    """
    Call C{method(*args)} and return the error it was refused with.
    """
    answer = await client.call(method, *args)
    assert answer["type"] == "error", (method, args, answer)
    return answer["error"]


# The key


def test_lookalikesShareAKey():
    """Case, width, accents written apart, digits like letters and Cyrillic lookalikes all give alice's or zoé's key."""
    assert {nameKey(n) for n in ["alice", "ALICE", "Alice", "\u0430lice", "\uff41\uff4c\uff49\uff43\uff45",
                                 "a1ice", "\u0251lice", "\U0001d41a\U0001d425\U0001d422\U0001d41c\U0001d41e"]} \
        == {"alice"}
    assert nameKey("zoé") == nameKey("zoe\u0301") == nameKey("ZOÉ") == nameKey("Zoe\u0301")
    assert nameKey("b0b") == nameKey("bob") == nameKey("BOB")
    assert nameKey("rn") == nameKey("m")


def test_differentNamesKeepDifferentKeys():
    """Names that do not look alike keep apart: zoe and zoé, alice and alicia, al ice and alice, José and Jose."""
    names = ["zoe", "zoé", "alice", "alicia", "al ice", "bob", "漢字", "さくら", "Дмитрий", "José", "Jose",
             "alice2", "a.lice"]
    assert len({nameKey(name) for name in names}) == len(names)


def test_confusablesDataReadTheRightWayRound():
    """The prototypes read from the package's data map Cyrillic а to a, 1 to l, and are never mapped further (UTS #39)."""
    prototypes = _prototypes()
    assert prototypes["\u0430"] == "a"
    assert prototypes["1"] == "l"
    assert prototypes["\u03bf"] == "o"
    assert "a" not in prototypes and "l" not in prototypes
    assert len(prototypes) > 6000
    for target in set(prototypes.values()):
        assert not any(char in prototypes for char in target), target
    # The skeleton is stable: a skeleton's skeleton is itself.
    for name in ["\u0430lice", "paypal", "\u0440\u0430\u0443\u0440\u0430l", "zoe\u0301"]:
        assert skeleton(skeleton(name)) == skeleton(name)


ASCII_NAMES = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"),
                      min_size=1, max_size=32)


@given(ASCII_NAMES)
def test_keyIgnoresCaseAndWidth(name):
    """For any ASCII name, its other case and its fullwidth form have its key."""
    fullwidth = "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in name)
    assert nameKey(name.swapcase()) == nameKey(name) == nameKey(fullwidth)


@given(st.text(min_size=1, max_size=32))
def test_keyIsStable(name):
    """Any text's key is its own key, and its NFC and NFD forms share it."""
    key = nameKey(name)
    assert nameKey(key) == key
    assert nameKey(unicodedata.normalize("NFD", name)) == key == nameKey(unicodedata.normalize("NFC", name))


@pytest.mark.parametrize("name", INVISIBLE)
def test_invisibleCharactersMakeAProblem(name):
    """A name holding a character that draws nothing is refused, naming the character."""
    problem = nameProblem(name)
    assert problem is not None and "invisible characters" in problem and "U+" in problem


@pytest.mark.parametrize("name, says", [
    ("a\u00a0b", "single ordinary spaces"),
    ("a\u3000b", "single ordinary spaces"),
    ("a\u2028b", "single ordinary spaces"),
    ("a  b", "single spaces"),
    ("ze\u0301\u0302\u0303d", "at most 2 accents"),
    ("Z\u0335\u0321\u0358a\u0336lgo", "at most 2 accents"),
    ("p\u0430ypal", "mix alphabets (Cyrillic and Latin here)"),
    ("\u03b1lice", "mix alphabets (Greek and Latin here)"),
])
def test_oddNamesMakeAProblem(name, says):
    """Spaces other than single ASCII ones, stacks of marks and mixed alphabets are refused, saying which."""
    assert says in (nameProblem(name) or "")


@pytest.mark.parametrize("name", ["alice", "zoé", "Ngọc Ánh", "José María", "Дмитрий", "Ελένη",
                                  "漢字", "山田Taro", "さくらSakura", "김민준 Kim", "O'Brien", "anne-marie",
                                  "\U0001f600 smiley", "R2-D2"])
def test_ordinaryNamesAreFine(name):
    """Ordinary names of many languages, with accents, spaces and kana beside Latin, are accepted."""
    assert nameProblem(name) is None


# Over real WebSockets


@pytest_twisted.ensureDeferred
async def test_lookalikeNamesRefused(chatServer, serverLog):
    """While alice and zoé are online, each lookalike of the issue is refused with a clear reason, counted, logged; presence keeps two real names."""
    alice = await chatServer.login("alice")
    await chatServer.login("zoé")
    faker = await chatServer.connect()
    for name, kind, says in LOOKALIKES:
        error = await refusedWith(faker, "setUsername", name)
        assert error["name"] == kind, (name, error)
        assert says in error["message"], (name, error)
    for name in INVISIBLE:
        error = await refusedWith(faker, "setUsername", name)
        assert error["name"] == "InvalidUsername", (name, error)
        assert "invisible characters" in error["message"], (name, error)
    assert sorted(chatServer.room.online()) == ["alice", "zoé"]
    # The list changes with the room's presence batches (one per 250 ms).
    await eventually(lambda: sorted(chatServer.room.presence()) == ["alice", "zoé"], "zoé listed")
    taken = sum(1 for _, kind, _ in LOOKALIKES if kind == "UsernameTaken")
    assert refusals(chatServer, "UsernameTaken") == taken
    assert refusals(chatServer, "InvalidUsername") == len(LOOKALIKES) - taken + len(INVISIBLE)
    assert logLines(serverLog, "UsernameTaken", "looks too much like")
    # The faker can still log in as someone of its own, and not rename to alice.
    assert (await faker.call("setUsername", "mallory"))["type"] == "result"
    error = await refusedWith(faker, "say", "/nick \uff21\uff2c\uff29\uff23\uff25")
    assert error["name"] == "UsernameTaken"
    # The display name is what its user typed; only the key is folded.
    assert (await alice.call("say", "/nick Alice"))["value"] == "Alice"
    await eventually(lambda: sorted(chatServer.room.presence()) == ["Alice", "mallory", "zoé"],
                     "the new names listed")


@pytest_twisted.ensureDeferred
async def test_lookalikeFreeOnceTheNameIsFree(chatServer):
    """Once alice has left, ａｌｉｃｅ may have the name: a lookalike is refused only while it would fool someone."""
    alice = await chatServer.login("alice")
    other = await chatServer.connect()
    assert (await refusedWith(other, "setUsername", "a1ice"))["name"] == "UsernameTaken"
    alice.close()
    await other.waitFor(lambda: [" * user alice has left the room"] in other.calls("displayMessage"))
    answer = await other.call("setUsername", "a1ice")
    assert answer == {**answer, "type": "result", "value": "a1ice"}


@pytest_twisted.ensureDeferred
async def test_bidiControlsTakenOutOfMessages(chatServer):
    """A message's bidi overrides, embeddings, isolates and marks are taken out: every page gets its characters in the order sent."""
    alice = await chatServer.login("alice")
    bob = await chatServer.login("bob")
    spoof = "pay \u202e0001$ ot eciv\u202c please \u2067x\u2069 \u200f\u200e\u061cok"
    assert (await alice.call("say", spoof))["type"] == "result"
    assert (await alice.call("say", "/me \u202enoitca"))["type"] == "result"
    await bob.waitFor(lambda: bob.calls("displayAction"), "the action")
    assert bob.calls("displayUserMessage") == [["alice", "pay 0001$ ot eciv please x ok"]]
    assert bob.calls("displayAction") == [["alice", "noitca"]]
    # Only controls is nothing: refused as empty, not said.
    error = await refusedWith(alice, "say", "\u202e\u202c\u200f")
    assert error["name"] == "InvalidMessage" and "empty" in error["message"]


@pytest_twisted.ensureDeferred
async def test_overLongInputRefusedWithItsLength(chatServer):
    """A 10,000-character message and a 40-character name are refused, saying the limit and their length (the words the page uses)."""
    page = await chatServer.connect()
    error = await refusedWith(page, "setUsername", "n" * 40)
    assert error["message"] == "Usernames are at most 32 characters long (this one has 40)."
    assert (await page.call("setUsername", "alice"))["type"] == "result"
    error = await refusedWith(page, "say", "m" * 10_000)
    assert error["message"] == "Messages are at most 2000 characters long (this one has 10000)."


@pytest_twisted.ensureDeferred
async def test_lookalikesRefusedAcrossProcesses(cluster):
    """Over Redis, names are held by their skeleton key: alice on one process bars ａｌｉｃｅ, a1ice and ALICE on another."""
    a, b = cluster.start(2)
    alice = await cluster.chatClient(a, "alice")
    for name in ["\uff41\uff4c\uff49\uff43\uff45", "a1ice", "ALICE", "\u0251lice"]:
        with pytest.raises(RemoteError) as caught:
            await cluster.chatClient(b, name)
        assert caught.value.name == "UsernameTaken", (name, caught.value)
    bob = await cluster.chatClient(b, "bob")
    with pytest.raises(RemoteError) as caught:
        await withDeadline(bob.say("/nick a1ice"))
    assert caught.value.name == "UsernameTaken"
    await withDeadline(alice.close())
