"""
chatthing: a real-time browser chat server on Twisted.

The top-level C{templates/} and C{js/} folders are installed inside the
package, as C{chatthing/templates} and C{chatthing/js}, so an installed
chatthing serves them from anywhere (see C{chatthing/live/_assets.py}).
"""

from setuptools import find_packages, setup

setup(
    name="chatthing",
    version="0.1.0",
    description="A real-time browser chat server on Twisted, after the Nevow Athena chat tutorial",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["chatthing", "chatthing.*"])
    + ["twisted.plugins", "chatthing.templates", "chatthing.js"],
    package_dir={"chatthing.templates": "templates", "chatthing.js": "js"},
    package_data={
        "twisted.plugins": ["chatthing_plugin.py"],
        # PEP 561: chatthing's own type hints are checked by the importer's
        # mypy too (chatthing.live.testing, the client, the Backplane).
        "chatthing": ["py.typed"],
        "chatthing.templates": ["*.html", "css/*.css"],
        "chatthing.js": ["*.js", "live/*.js"],
        # chatthing bench's Node ws peer (chatthing/bench/nodepeer.py).
        "chatthing.bench": ["peers/node-ws/package.json", "peers/node-ws/package-lock.json",
                            "peers/node-ws/server.mjs"],
    },
    install_requires=[
        "twisted>=24.3",
        # The runtime reaches into Autobahn's internals (the factory's
        # _batched_timer in chatthing/live/_factory.py; the protocol's
        # per-frame attributes and the module's pformat in _footprint.py),
        # which a new major version may change: tested with 26.11.1.
        "autobahn>=24.4,<27",
        "jinja2>=3.1",
        "prometheus_client>=0.20",
        "txredisapi>=1.4.10",
        # txredisapi parses replies with hiredis when it is installed; its
        # own parser hands each pub/sub message to a later reactor turn,
        # so a page's frames could not be written together (5x the CPU).
        "hiredis>=2.0",
        # Usernames that look alike are the same name (chatthing/chat/names.py):
        # this small pure-Python package ships Unicode's confusables.txt
        # and script data, which the skeleton and the mixed-script check
        # read; nothing else it has is used.
        "confusable-homoglyphs>=3.2",
    ],
    # `chatthing bench --plot` draws with matplotlib, which the server does
    # not need.
    extras_require={"bench": ["matplotlib"]},
    entry_points={"console_scripts": ["chatthing = chatthing.cli:main"]},
)
