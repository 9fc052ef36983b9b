"""
chatthing's type hints are checked: C{mypy chatthing} with the settings in
C{mypy.ini}, and the contracts mypy found broken stay mended.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Modules other work is rewriting now (issue 13): their mypy errors are
#: fixed there.  Empty this set as each one is; then every module of
#: chatthing is held to 0 errors.

_ERROR = re.compile(r"^(?P<path>[^:]+):\d+: error: ", re.MULTILINE)


def mypy(*arguments: str, cwd: Path, cacheDir: Path) -> subprocess.CompletedProcess:
    """
    Run mypy, with this checkout's settings, where chatthing is importable
    from this checkout (not from an installed copy).  tests/requirements.txt
    installs mypy and its zope plugin (tests/run-all.sh, so CI): without
    them this fails, it does not skip.
    """
    import mypy_zope  # noqa: F401  (the plugin mypy.ini names)
    env = dict(os.environ, MYPYPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "mypy.ini"),
         "--cache-dir", str(cacheDir), *arguments],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=240)


def test_configurationIsInTheRepository():
    """mypy's settings are in the repository (Python 3.11, mypy-zope) and py.typed is shipped."""
    settings = (ROOT / "mypy.ini").read_text()
    assert "python_version = 3.11" in settings
    assert "mypy_zope:plugin" in settings
    assert (ROOT / "chatthing" / "py.typed").exists()
    assert '"chatthing": ["py.typed"]' in (ROOT / "setup.py").read_text()


def test_chatthingTypeChecks(tmp_path):
    """`mypy chatthing` finds no error in any module."""
    result = mypy("chatthing", cwd=ROOT, cacheDir=tmp_path / "cache")
    assert "error: " not in result.stderr, result.stderr
    assert not _ERROR.findall(result.stdout), result.stdout
    assert result.returncode == 0 and "Success: no issues found" in result.stdout, result.stdout


def test_backplanesSatisfyTheirProtocol(tmp_path):
    """Both backplanes, and both session stores, are what the Backplane protocol declares."""
    (tmp_path / "uses.py").write_text(
        "from chatthing.backplane import Backplane, MemoryBackplane\n"
        "from chatthing.backplane.redis import RedisBackplane\n"
        "from chatthing.live._sessionstore import LocalSessions, SessionStore\n"
        "memory: Backplane = MemoryBackplane()\n"
        "shared: Backplane = RedisBackplane('redis://127.0.0.1:1/0', 1.0)\n"
        "local: SessionStore = LocalSessions()\n"
        "redis: SessionStore = shared.sessions\n"
    )
    result = mypy("uses.py", cwd=tmp_path, cacheDir=tmp_path / "cache")
    problems = [line for line in result.stdout.splitlines() if line.startswith("uses.py")]
    assert result.returncode == 0 and not problems, result.stdout + result.stderr


def test_redisRosterSaysWhichStreamsItTakes():
    """A Redis roster given a stream its backplane did not make says so at once."""
    from chatthing.backplane.redis.roster import sharedStream
    from chatthing.live import Stream

    with pytest.raises(TypeError, match="stream of its backplane"):
        sharedStream(Stream("room"))
