"""
L{defaultReactor}: the reactor a caller gave, or else the global one,
imported only at that moment.

Importing C{twisted.internet.reactor} installs the default reactor, for
good: a module that did so when imported would leave a program that
imports it unable to choose another (C{asyncioreactor.install()} raises
C{ReactorAlreadyInstalledError}).  So, as treq does with
C{treq._utils.default_reactor}, what needs a reactor takes a C{reactor}
parameter and calls this when it first needs one, never at import time.
"""

from typing import Any


def defaultReactor(reactor: Any = None) -> Any:
    """
    C{reactor} if it is not L{None}, else the global reactor (installing the
    default one if none is installed yet).
    """
    if reactor is None:
        from twisted.internet import reactor
    return reactor
