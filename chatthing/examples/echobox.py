"""
The Nevow Athena tutorial's echo example, on the live runtime: the page
sends what is typed to the server, and the server sends it back.

    twistd -n chat-widget --element=chatthing.examples.echobox.EchoElement

The element class is itself the element factory: C{EchoElement()} makes
one element per page.  Its browser half is C{EchoWidget} in
C{js/EchoThing.js}; its markup is C{templates/echobox.html}.
"""

from twisted.logger import Logger

from ..live import LiveElement, expose


class EchoElement(LiveElement):
    """
    One page of the echo example: whatever the page says comes back to it.
    """

    template = "echobox.html"
    jsModule = "/js/EchoThing.js"
    jsClass = "EchoWidget"

    log = Logger()

    @expose
    def say(self, message: str) -> None:
        """
        Echo C{message} back to this page's widget (its C{addText}).
        """
        self.callRemote("addText", message).addErrback(
            lambda failure: self.log.failure("could not echo to {element}", failure,
                                             element=self))
