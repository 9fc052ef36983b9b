"""
Names nobody can fake: what makes two usernames "the same", and which
characters a username may not hold.

Two names are the same name when they look alike, not only when their code
points match: C{аlice} (Cyrillic C{а}), C{ａｌｉｃｅ} (fullwidth) and C{a1ice}
would each pass for C{alice} in a presence list.  L{nameKey} is the key
under which a name is held (by every roster, in memory or in Redis, so it
is the same in every process): NFKC, case folded, then the Unicode
confusables skeleton of UTS #39 (NFD, each character replaced by its
prototype from Unicode's C{confusables.txt}, NFD again), folded again
until it no longer changes.  The display name stays as the user typed it.

L{nameProblem} says why a name cannot be used at all: it holds characters
that do not show (format characters, default-ignorables such as U+3164
HANGUL FILLER, U+2800 BRAILLE PATTERN BLANK, variation selectors), spaces
other than single ASCII spaces between words, stacks of more than
L{MAX_MARKS_PER_LETTER} combining marks on one letter, or letters of two
alphabets that are not used together (UTS #39 "highly restrictive": one
script, or Latin with Han and Japanese kana, with Han and Bopomofo, or with
Han and Hangul), since a mixed name is how a lookalike is made of someone
who is not online yet.

The confusables data is the C{confusable-homoglyphs} package's copy of
C{confusables.txt}, read once, on first use.
"""

import functools
import unicodedata

from confusable_homoglyphs import categories
from confusable_homoglyphs.utils import load

#: Most combining marks on one letter: Vietnamese needs two (C{ệ}); more
#: is a "zalgo" stack that draws over the lines around it.
MAX_MARKS_PER_LETTER = 2

#: Characters that are default-ignorable (they draw nothing) without being
#: format characters (category Cf, refused as a whole), and other blanks
#: that draw as nothing in common fonts.
_INVISIBLE = frozenset(
    [0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x180B, 0x180C, 0x180D, 0x180E, 0x180F,
     0x2800, 0x3164, 0xFFA0, 0x1D159]
    + list(range(0xFE00, 0xFE10))  # variation selectors
    + list(range(0xE0100, 0xE01F0))  # variation selectors supplement
    + list(range(0x2060, 0x2070))  # word joiner, invisible operators, deprecated formats
    + list(range(0xFFF0, 0xFFF9))
    + list(range(0xE0000, 0xE1000))  # tags
)

#: Scripts that may be mixed in one name (besides Common and Inherited),
#: from UTS #39's "highly restrictive" level.
_SCRIPT_SETS = (
    frozenset({"LATIN", "HAN", "HIRAGANA", "KATAKANA"}),
    frozenset({"LATIN", "HAN", "BOPOMOFO"}),
    frozenset({"LATIN", "HAN", "HANGUL"}),
)

#: Scripts that never make a name mixed.
_ANY_SCRIPT = frozenset({"COMMON", "INHERITED", "Unknown"})


def codePointName(char: str) -> str:
    """
    C{char} as people can read it in an error message: C{U+200B ZERO
    WIDTH SPACE}.
    """
    return f"U+{ord(char):04X} {unicodedata.name(char, '(unnamed)')}"


def isInvisible(char: str) -> bool:
    """
    Whether C{char} draws nothing: a format character (bidi controls,
    zero-width spaces and joiners, the soft hyphen...) or another
    default-ignorable or blank character.
    """
    return unicodedata.category(char) == "Cf" or ord(char) in _INVISIBLE


def nameProblem(name: str) -> str | None:
    """
    Why C{name} (already trimmed) cannot be a username, or L{None} if it
    can.
    """
    if name.isascii() and name.isprintable():
        # Most names: printable ASCII has no invisible or control
        # character, no space but U+0020, no mark and one script (Latin
        # and Common), so only a double space can be wrong with it; the
        # checks below, one Unicode lookup per character each, cost a
        # login more than its name's key.
        return "Usernames can only hold single spaces between words." if "  " in name else None
    for char in name:
        category = unicodedata.category(char)
        if isInvisible(char):
            return ("Usernames cannot hold invisible characters or control characters "
                    f"(this one has {codePointName(char)}).")
        if category == "Cc":
            return f"Usernames cannot hold control characters (this one has U+{ord(char):04X})."
        if category in ("Zs", "Zl", "Zp") and char != " ":
            return ("Usernames can only hold single ordinary spaces between words "
                    f"(this one has {codePointName(char)}).")
        if category in ("Co", "Cn", "Cs"):
            return ("Usernames can only hold letters, digits, punctuation and symbols "
                    f"(this one has U+{ord(char):04X}, which is not one).")
    if "  " in name:
        return "Usernames can only hold single spaces between words."
    marks = 0
    for char in unicodedata.normalize("NFD", name):
        if unicodedata.category(char) in ("Mn", "Me"):
            marks += 1
            if marks > MAX_MARKS_PER_LETTER:
                return (f"Usernames can have at most {MAX_MARKS_PER_LETTER} accents "
                        "or marks on one letter.")
        else:
            marks = 0
    mixed = mixedScripts(name)
    if mixed:
        return (f"Usernames cannot mix alphabets ({' and '.join(mixed)} here): "
                "such a name can pass for someone else's.")
    return None


def mixedScripts(name: str) -> list[str]:
    """
    The scripts of C{name}'s letters, if they are not ones used together
    (see L{_SCRIPT_SETS}); else an empty list.
    """
    scripts = {categories.alias(char) for char in name} - _ANY_SCRIPT
    if len(scripts) <= 1 or any(scripts <= allowed for allowed in _SCRIPT_SETS):
        return []
    return sorted(script.title() for script in scripts)


@functools.cache
def _prototypes() -> dict[str, str]:
    """
    Each confusable character's prototype, from C{confusables.txt}.

    The package keeps each line C{source ; prototype} both ways round (as
    C{{source: [prototype], prototype: [source, ...]}}, in the file's
    order), so a source is a character with one entry whose other end is a
    string of several characters, or a character with several entries, or,
    for a pair confused only with each other, the one that comes first (the
    line's source is added before its prototype).  Checked by
    L{tests.test_names}: no prototype is itself mapped further.
    """
    raw = load("confusables.json")
    plain = {key.replace("\u200e", ""): [entry["c"].replace("\u200e", "") for entry in entries]
             for key, entries in raw.items()}
    order = {key: i for i, key in enumerate(plain)}
    prototypes = {}
    for key, entries in plain.items():
        if len(key) != 1 or len(entries) != 1:
            continue
        other = entries[0]
        if len(other) != 1 or len(plain.get(other, ())) > 1 or order[key] < order.get(other, -1):
            prototypes[key] = other
    return prototypes


def loadConfusables() -> None:
    """
    Read the confusables data now (some 15 ms), not when the first name is
    keyed: a server calls this as it starts, so that its first login does
    not pay for it.
    """
    _prototypes()


def skeleton(text: str) -> str:
    """
    The UTS #39 skeleton of C{text}: NFD, each character replaced by its
    confusables prototype, NFD again.  Two strings with the same skeleton
    look alike.
    """
    prototypes = _prototypes()
    decomposed = unicodedata.normalize("NFD", text)
    return unicodedata.normalize("NFD", "".join(prototypes.get(c, c) for c in decomposed))


#: How many names' keys are kept (L{nameKey}): a login's name is keyed
#: when it is held, again when its join is published and when it leaves;
#: the cache is bounded, whatever names pages try.
NAME_KEYS_KEPT = 4096


@functools.lru_cache(maxsize=NAME_KEYS_KEPT)
def nameKey(name: str) -> str:
    """
    The key under which C{name} is held: equal for names that look alike
    (C{alice}, C{ALICE}, C{аlice}, C{ａｌｉｃｅ}, C{a1ice}; C{zoé} and
    C{zoe} with U+0301).

    NFKC and case folding first (as UTS #39 asks for case-insensitive
    matching), then the skeleton; a skeleton may hold capitals (C{0} looks
    like C{O}) or compatibility characters (C{%} looks like C{º/₀}), so
    the three are done again until the key stays the same (two or three
    rounds in practice; a key is its own key).
    """
    key = name
    for _ in range(8):
        again = skeleton(unicodedata.normalize("NFKC", key).casefold())
        if again == key:
            break
        key = again
    return key
