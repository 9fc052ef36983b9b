"""
chatthing: a real-time browser chat server on Twisted, after the Nevow
Athena chat tutorial.
"""

__version__ = "0.1.0"
