"""
Reading a command line into L{twisted.python.usage.Options}, the same way
for every program chatthing ships (C{chatthing} and the bench's processes).
"""

import sys

from twisted.python import usage


def parseCommandLine(options: usage.Options, argv: list[str] | None, program: str) -> bool:
    """
    Parse C{argv} (C{sys.argv[1:]} if L{None}) into C{options}.  On a usage
    error, print the options' help and the error, named for C{program}, to
    standard error.

    @return: whether the command line was good (if not, exit with status 2).
    """
    try:
        options.parseOptions(sys.argv[1:] if argv is None else argv)
    except usage.UsageError as e:
        print(f"{options}\n{program}: {e}", file=sys.stderr)
        return False
    return True
