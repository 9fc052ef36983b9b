"""
The C{chatthing} command, for operators::

    chatthing alert "Server restarts in 5 minutes" --token-file admin.token
"""

import getopt
import json
import sys
import urllib.error
import urllib.request

from twisted.python import usage

from . import __version__
from .admin import readToken


class AlertOptions(usage.Options):
    synopsis = "TEXT --token-file PATH [--url URL]"
    longdesc = "Send TEXT as a global alert to every page of a running server."
    optParameters = [
        ["url", "u", "http://127.0.0.1:8081/", "Base URL of the server's admin endpoint (--admin-listen)."],
        ["token-file", "t", None, "File holding the admin token (the server's --admin-token-file)."],
    ]

    def parseOptions(self, options: list[str] | None = None) -> None:
        """
        Accept options after the text too (C{alert "TEXT" --token-file PATH}):
        C{usage.Options} uses C{getopt}, which stops at the first argument
        that is not an option, so put the options first, then C{--}, then
        the text.
        """
        if options is None:
            options = sys.argv[1:]
        try:
            found, text = getopt.gnu_getopt(options, self.shortOpt, self.longOpt)
        except getopt.error as e:
            raise usage.UsageError(str(e)) from None
        reordered: list[str] = []
        for name, value in found:
            takesValue = (
                name[2:] + "=" in self.longOpt
                if name.startswith("--")
                else name[1:] + ":" in self.shortOpt
            )
            reordered += [name, value] if takesValue else [name]
        super().parseOptions([*reordered, "--", *text])

    def parseArgs(self, *text: str) -> None:
        self["text"] = " ".join(text)

    def postOptions(self) -> None:
        if not self["text"].strip():
            raise usage.UsageError("give the alert's text")
        if self["token-file"] is None:
            raise usage.UsageError("--token-file is required")
        self["token"] = readToken(self["token-file"])


class Options(usage.Options):
    synopsis = "Usage: chatthing [options]"
    subCommands = [["alert", None, AlertOptions, "Send a global alert to every page."]]

    def opt_version(self) -> None:
        """
        Print chatthing's version and exit.
        """
        print(f"chatthing {__version__}")
        sys.exit(0)

    def postOptions(self) -> None:
        if self.subCommand is None:
            raise usage.UsageError("give a command")


def sendAlert(url: str, token: str, text: str) -> dict:
    """
    POST C{text} to the admin endpoint at C{url}; its JSON answer.
    """
    request = urllib.request.Request(
        url.rstrip("/") + "/alert",
        data=json.dumps({"text": text}).encode("utf-8"),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def main(argv: list[str] | None = None) -> int:
    options = Options()
    try:
        options.parseOptions(sys.argv[1:] if argv is None else argv)
    except usage.UsageError as e:
        print(f"{options}\nchatthing: {e}", file=sys.stderr)
        return 2
    alert = options.subOptions
    try:
        answer = sendAlert(alert["url"], alert["token"], alert["text"])
    except urllib.error.HTTPError as e:
        print(f"chatthing: alert refused ({e.code}): {e.read().decode('utf-8', 'replace')}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as e:
        print(f"chatthing: cannot reach {alert['url']}: {e}", file=sys.stderr)
        return 1
    print(f"alert sent to {answer['delivered']} pages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
