"""
Example applications on the live runtime, shipped with chatthing so they run
from an installed package:

    twistd -n chat-widget --element=chatthing.examples.echobox.EchoElement

C{docs/writing-an-element.md} walks through the echo example.
"""
