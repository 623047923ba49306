"""The uniffi surface the Swift app uses, exercised from Python bindings generated from the same
library (no Swift toolchain here); the shared pieces are in tests/python/testkit.py.

Run: cargo build -p baomi-ffi -p baomi -p baomi-server && python3 -m pytest -q ios/python-tests
"""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "python"))

from testkit import REPO, KeychainStandIn, Office, ServerProcess, UrllibClient, ffi  # noqa: E402,F401


@pytest.fixture
def office(tmp_path):
    return Office(tmp_path)


@pytest.fixture
def open_agent(tmp_path):
    def make(platform=ffi.PlatformKind.IOS, keys=None, name="store"):
        keys = keys or KeychainStandIn()
        return ffi.BaomiAgent.open(str(tmp_path / name), keys, platform, ffi.SystemClock()), keys
    return make


@pytest.fixture
def server(office, tmp_path):
    s = ServerProcess(office, tmp_path)
    yield s
    s.stop()
