"""
The Nevow Athena tutorial's chat, ported line by line to C{chatthing.live},
in a folder of its own, outside the chatthing package:

    cd examples/tutorial
    PYTHONPATH=. twistd -n chat-widget --element=chatterbox.chat

Its template is C{templates/chatterbox.html} and its widget
C{js/ChatThing.js}, both beside this module: the runtime looks an element's
C{template} up in the C{templates/} folder beside the module defining it,
and serves a bare C{jsModule} from the C{js/} folder beside it (see
C{docs/writing-an-element.md}).

Departures from the tutorial, each for a reason: C{ChatterElement} says
its page's files in C{template}/C{jsModule}/C{jsClass} instead of
C{docFactory}; the room forgets a chatter whose page has gone (Athena's
never did, so its list only grew); and a remote call to a page that left
meanwhile is not an error worth a traceback.
"""

from chatthing.live import ElementDetached, LiveElement, expose


class ChatRoom(object):

    def __init__(self):
        self.chatters = []

    def wall(self, message):
        for chatter in self.chatters:
            chatter.wall(message)

    def tellEverybody(self, who, what):
        for chatter in self.chatters:
            chatter.hear(who.username, what)

    def makeChatter(self):
        elem = ChatterElement(self)
        self.chatters.append(elem)
        return elem

    def forget(self, chatter):
        if chatter in self.chatters:
            self.chatters.remove(chatter)


class ChatterElement(LiveElement):

    template = "chatterbox.html"
    jsModule = "ChatThing.js"
    jsClass = "ChatterWidget"

    def __init__(self, room):
        self.room = room
        self.username = None

    @expose
    def setUsername(self, username: str) -> None:
        self.username = username
        message = " * user " + username + " has joined the room"
        self.room.wall(message)

    @expose
    def say(self, message: str) -> None:
        self.room.tellEverybody(self, message)

    def wall(self, message):
        self.callRemote("displayMessage", message).addErrback(_pageGone)

    def hear(self, username, what):
        self.callRemote("displayUserMessage", username, what).addErrback(_pageGone)

    def disconnected(self, reason):
        self.room.forget(self)


def _pageGone(failure):
    failure.trap(ElementDetached)


# element to be run with twistd
chat = ChatRoom().makeChatter
