"""
The C{chat-widget} twistd plugin.  It names L{chatthing.tap}, which is
imported only when the plugin is used, so C{twistd --help} stays fast.
"""

from twisted.application.service import ServiceMaker

chatWidget = ServiceMaker(
    "chatthing chat-widget",
    "chatthing.tap",
    "Serve a live element (such as chatthing.chatterbox.chat) to browsers",
    "chat-widget",
)
