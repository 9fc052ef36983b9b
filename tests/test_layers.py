"""
The import rule that keeps chatthing's three layers apart (read from the
source, not by importing it):

- C{chatthing.live}, the runtime, imports nothing else of chatthing;
- C{chatthing.backplane} imports only itself and C{chatthing.live};
- the chat application (C{chatthing.chat}, C{chatthing.chatterbox},
  C{chatthing.client}, C{chatthing.examples}) imports only itself, the
  runtime and the backplane;
- the shell (C{tap}, C{cli}, C{listening}, ...) may import any of them;
- nobody imports another package's private module (a name with a leading
  underscore below C{chatthing.live}, C{chatthing.backplane} or
  C{chatthing.chat}): each package's C{__init__} is its public face;
- no module imports, directly or through others, one that imports it:
  counting imports inside functions and under C{if TYPE_CHECKING:}, since
  both are dependencies all the same.
"""

import ast
from pathlib import Path

import chatthing

PACKAGE = Path(chatthing.__file__).resolve().parent

#: Each layer, by the prefixes of its modules' names.
LIVE = ("chatthing.live",)
BACKPLANE = ("chatthing.backplane",)
APPLICATION = ("chatthing.chat", "chatthing.chatterbox", "chatthing.client", "chatthing.examples")

#: What each layer may import of chatthing (besides itself).
ALLOWED = {
    LIVE: LIVE,
    BACKPLANE: BACKPLANE + LIVE,
    APPLICATION: APPLICATION + BACKPLANE + LIVE,
}

#: The packages whose private modules are theirs alone.
PACKAGES = ("chatthing.live", "chatthing.backplane", "chatthing.chat")


def _within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def modules() -> dict[str, Path]:
    """
    Every module of chatthing, by dotted name.
    """
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """
    The chatthing modules that module C{name} imports, anywhere in it.
    """
    isPackage = path.name == "__init__.py"
    here = name.split(".") if isPackage else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[:len(here) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # "from package import module" imports the module.
            named = [f"{target}.{alias.name}" for alias in node.names]
            submodules = [m for m in named if m in known]
            found.update(submodules)
            if len(submodules) < len(named):
                found.add(target)
    return {m for m in found if m in known and m != name}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def test_layersImportOnlyDownward():
    """The runtime imports nothing above it, the backplane only the runtime, the chat only those two."""
    wrong = []
    for module, targets in graph().items():
        for layer, allowed in ALLOWED.items():
            if _within(module, layer):
                wrong += [f"{module} -> {t}" for t in sorted(targets) if not _within(t, allowed)]
    assert not wrong, "\n".join(wrong)


def test_noImportOfAnotherPackagesPrivateModule():
    """Outside a package, only its public face and public modules are imported, never its _private ones."""
    wrong = []
    for module, targets in graph().items():
        for target in sorted(targets):
            for package in PACKAGES:
                if _within(target, (package,)) and not _within(module, (package,)):
                    rest = target[len(package):].split(".")
                    if any(part.startswith("_") for part in rest):
                        wrong.append(f"{module} -> {target}")
    assert not wrong, "\n".join(wrong)


def test_noImportCycles():
    """No module imports itself through others, type-only and function-level imports included."""
    edges = graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(edges[module]):
            if state.get(target) == 1:
                cycles.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_theRuleSeesImports():
    """The rule reads relative, absolute and function-level imports (so that it can fail)."""
    edges = graph()
    assert "chatthing.live._wire" in edges["chatthing.live._protocol"]
    assert "chatthing.live" in edges["chatthing.tap"]
    assert any(t.startswith("chatthing.backplane") for t in edges["chatthing.tap"])
