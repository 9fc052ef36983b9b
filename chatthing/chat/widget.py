"""
The chat widget's method names: what the server calls on each page's
C{ChatterWidget} (C{js/ChatThing.js}, whose C{expose} list holds the same
names), in one place.

The rooms send these, the history is kept from them, and
L{chatthing.client.ChatClient} dispatches on them; a name written as a
string literal anywhere else would drift from the widget unseen.
"""

from typing import Final

#: C{displayMessage(text)}: an alert or notice (joins, leaves, the operator's
#: C{wall}, answers to C{/who} and C{/help}).
DISPLAY_MESSAGE: Final = "displayMessage"

#: C{displayUserMessage(username, text)}: someone said something.
DISPLAY_USER_MESSAGE: Final = "displayUserMessage"

#: C{displayAction(username, text)}: someone did something (C{/me}).
DISPLAY_ACTION: Final = "displayAction"

#: C{displayHistory(entries)}: the room's last messages, for a page that
#: joins (each entry as L{chatthing.chat.said.Said.entry} renders it).
DISPLAY_HISTORY: Final = "displayHistory"

#: C{messageTime(epochMilliseconds)}: the time of the lines that follow.
MESSAGE_TIME: Final = "messageTime"

#: C{updatePresence(names)}: the whole list of who is in the room; past
#: C{--presence-list-max} names, C{updatePresence(window, count)}: the
#: room's first names by join order, and how many are there.
UPDATE_PRESENCE: Final = "updatePresence"

#: C{presenceChanged(joined, left)}: the changes to it since the last one,
#: gathered over an interval (L{chatthing.chat.presence}): the names that
#: joined, and the names that left (a rename is both), each list sorted;
#: past C{--presence-list-max} names, C{presenceChanged(joined, left,
#: count)}: the changes to the window, and how many are there now.
PRESENCE_CHANGED: Final = "presenceChanged"

#: C{showTyping(username)}: someone is typing.
SHOW_TYPING: Final = "showTyping"

#: Every method the chat calls on its widget.
METHODS: Final = frozenset({
    DISPLAY_MESSAGE, DISPLAY_USER_MESSAGE, DISPLAY_ACTION, DISPLAY_HISTORY, MESSAGE_TIME,
    UPDATE_PRESENCE, PRESENCE_CHANGED, SHOW_TYPING,
})
