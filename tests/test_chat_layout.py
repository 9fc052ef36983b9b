"""
The chat application as its own package (issue 13 items 4 and 8): the
chat's modules live in C{chatthing.chat}, import one another one way only
(type-only imports counted), reach the runtime and the backplane through
their public faces, name the widget's methods in one module, and keep a
room's history in a typed form rendered in one place.

The import graph is read from the source (every C{import} statement,
those under C{if TYPE_CHECKING:} and inside functions included), so an
import that only a type checker follows still counts as an arrow.
"""

import ast
import re
import time
from pathlib import Path

import pytest_twisted
from test_rooms import enter, result, startRooms

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "chatthing"

#: The modules of the chat application: the package, and the tutorial's
#: module on top of it.
CHAT_MODULES = ("chatthing.chat", "chatthing.chatterbox")

#: Private modules of the layers below that the chat still imports, each
#: marked C{# TODO(layers)} where it is imported (the runtime does not
#: export them yet).
KNOWN_PRIVATE = {"chatthing.live._logsafe"}


def moduleName(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def importsOf(path: Path) -> list[tuple[str, int, str]]:
    """
    Every module C{path} imports, absolute: C{(module, line, source line)};
    C{from package import x} counts as importing the module C{package.x}
    if there is one, else C{package}.
    """
    name = moduleName(path)
    isPackage = path.name == "__init__.py"
    base = name.split(".") if isPackage else name.split(".")[:-1]
    lines = path.read_text().splitlines()
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append((alias.name, node.lineno, lines[node.lineno - 1]))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                target = ".".join(base[:len(base) - node.level + 1] + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [f"{target}.{alias.name}" for alias in node.names]
            modules = [name for name in names if _isModule(name)]
            # "from . import widget" imports the module widget; "from .x
            # import y" the module x.
            for imported in modules or [target]:
                found.append((imported, node.lineno, lines[node.lineno - 1]))
    return found


def _isModule(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def chatthingModules() -> dict[str, Path]:
    return {moduleName(path): path for path in PACKAGE.rglob("*.py")}


def graph() -> dict[str, set[str]]:
    """
    The import graph of chatthing's modules, keeping only arrows between them.
    """
    modules = chatthingModules()
    # A module always imports the packages it is in (Python does, first):
    # those arrows are no cycle.
    return {name: {target for target, _, _ in importsOf(path)
                   if target in modules and target != name and not name.startswith(target + ".")}
            for name, path in modules.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """
    The import cycles among C{edges}' modules (one path per cycle found).
    """
    found, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for target in sorted(edges.get(node, ())):
            if state.get(target) == "open":
                found.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target, stack + [target])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    return found


def inChat(name: str) -> bool:
    return any(name == top or name.startswith(top + ".") for top in CHAT_MODULES)


def test_theChatIsItsOwnPackage():
    """The chat's modules live in chatthing/chat/, whose __init__ is its public face; chatterbox holds the tutorial's names."""
    import chatthing.chat as chat
    import chatthing.chatterbox as chatterbox

    for module in ("rooms", "chatroom", "commands", "validation", "names", "roommemory", "widget",
                   "element", "said"):
        assert (PACKAGE / "chat" / f"{module}.py").is_file(), module
    for old in ("rooms", "lobby", "commands", "validation", "names", "roommemory"):
        assert not (PACKAGE / f"{old}.py").exists(), old
    for name in chat.__all__:
        assert getattr(chat, name) is not None, name
    assert chatterbox.ChatterElement is chat.ChatterElement
    assert isinstance(chatterbox.chatRoom, chat.ChatRoom) and chatterbox.chat.__self__ is chatterbox.chatRoom


def test_noImportCyclesInTheChat():
    """No import cycle runs through the chat's modules, counting type-only and in-function imports."""
    edges = graph()
    chatCycles = [cycle for cycle in cycles(edges) if any(inChat(name) for name in cycle)]
    assert chatCycles == []
    # The ones the issue names: rooms -> chatterbox, chatterbox <-> commands / lobby.
    for name in edges:
        if inChat(name) and name != "chatthing.chatterbox":
            assert "chatthing.chatterbox" not in edges[name], name


def test_theChatImportsOnlyPublicFaces():
    """The chat imports only chatthing.live's and chatthing.backplane's public names; the private ones it still needs are marked TODO(layers)."""
    private, unmarked = set(), []
    for name, path in chatthingModules().items():
        if not inChat(name):
            continue
        for target, line, text in importsOf(path):
            if inChat(target) or not target.startswith("chatthing."):
                continue
            assert target.split(".")[1] in ("live", "backplane"), (name, target)
            if any(part.startswith("_") for part in target.split(".")[2:3]):
                private.add(target.rsplit(".", 1)[0] if target.count(".") > 2 else target)
                if "TODO(layers)" not in text:
                    unmarked.append(f"{name}:{line}: {text.strip()}")
    assert unmarked == []
    assert private <= KNOWN_PRIVATE, private


def test_widgetMethodNamesInOnePlace():
    """The widget's method names are chatthing.chat.widget's constants, the same as ChatThing.js's remoteMethods, and written nowhere else in the chat or its client."""
    from chatthing.chat import widget

    js = (ROOT / "js" / "ChatThing.js").read_text()
    declared = re.search(r"static remoteMethods = \[(.*?)\];", js, re.DOTALL)
    assert declared is not None
    assert set(re.findall(r'"(\w+)"', declared.group(1))) == widget.METHODS
    literals = []
    for name, path in chatthingModules().items():
        if not (inChat(name) or name == "chatthing.client") or name == "chatthing.chat.widget":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in widget.METHODS:
                literals.append(f"{name}:{node.lineno}: {node.value}")
    assert literals == []


def test_saidRendersAndReadsBack():
    """A Said renders to its live call and its history entry, and is read back from that call; other calls are no line."""
    from chatthing.chat import Said, widget
    from chatthing.chat.said import historyCall

    said = Said("action", "ann", "waves", 1_700_000_000_000)
    method, args = said.call()
    assert (method, args) == (widget.DISPLAY_ACTION, ["ann", "waves"])
    assert Said.fromCall(method, args, said.time) == said
    assert said.entry() == ["action", "ann", "waves", 1_700_000_000_000]
    assert historyCall([said]) == (widget.DISPLAY_HISTORY, [[said.entry()]])
    for method, args in [(widget.DISPLAY_MESSAGE, ["ann joined"]), (widget.DISPLAY_USER_MESSAGE, ["ann"]),
                         (widget.DISPLAY_USER_MESSAGE, ["ann", 3]), (widget.SHOW_TYPING, ["ann"])]:
        assert Said.fromCall(method, args, 0) is None, method


@pytest_twisted.ensureDeferred
async def test_historyIsTypedOnARealServer():
    """On a real server, what alice says and does is kept as Said lines (kind, who, text, time), and a newcomer's displayHistory is their rendering."""
    from chatthing.chat import Said

    server = await startRooms(history=5)
    try:
        alice = await enter(server, "/room/typed", "alice")
        before = int(time.time() * 1000) - 1000
        for text in ["hello", "/me waves", "//slash"]:
            await result(alice, "say", text)
        room = server.chatRoom.rooms["typed"]
        lines = list(room.history)
        assert all(isinstance(line, Said) for line in lines), lines
        assert [(line.kind, line.who, line.text) for line in lines] == [
            ("message", "alice", "hello"), ("action", "alice", "waves"), ("message", "alice", "/slash")]
        assert all(before <= line.time <= time.time() * 1000 + 1000 for line in lines), lines
        late = await enter(server, "/room/typed")
        await late.waitFor(lambda: late.calls("displayHistory"), "the history")
        assert late.calls("displayHistory") == [[[line.entry() for line in lines]]]
    finally:
        await server.stop()


def test_deadCodeIsGone():
    """ChatterElement.wall/hear (nothing called them) and ChatRoom.leave (only a test did) are gone; a page leaves through its element's disconnected, the runtime's path."""
    from twisted.internet.error import ConnectionDone
    from twisted.python.failure import Failure

    from chatthing.chat import ChatRoom, ChatterElement

    assert not hasattr(ChatterElement, "wall") and not hasattr(ChatterElement, "hear")
    assert not hasattr(ChatRoom, "leave")
    chatRoom = ChatRoom()
    element = chatRoom.makeChatter("/room/gone")
    assert element in chatRoom.rooms["gone"].chatters
    element.disconnected(Failure(ConnectionDone("the page closed")))
    assert element not in chatRoom.rooms["gone"].chatters
