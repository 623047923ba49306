"""The uniffi surface the Swift app uses, exercised from Python bindings generated from the same
library (no Swift toolchain here). The bindings are generated at session start with the
workspace's pinned uniffi-bindgen from target/debug/libbaomi_ffi.so, next to a copy of it.

Run: cargo build -p baomi-ffi -p baomi -p baomi-server && python3 -m pytest -q ios/python-tests
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TARGET = Path(os.environ.get("BAOMI_TARGET", REPO / "target" / "debug"))
CLI = TARGET / "baomi"
SERVER = TARGET / "baomi-server"

_bindings = Path(tempfile.mkdtemp(prefix="baomi-py-"))
subprocess.run(
    ["cargo", "run", "--quiet", "--locked", "-p", "uniffi-bindgen", "--", "generate",
     "--library", str(TARGET / "libbaomi_ffi.so"), "--language", "python", "--out-dir", str(_bindings)],
    cwd=REPO, check=True, stdout=subprocess.DEVNULL,
)
shutil.copy(TARGET / "libbaomi_ffi.so", _bindings / "libbaomi_ffi.so")
sys.path.insert(0, str(_bindings))

import baomi_ffi as ffi  # noqa: E402
from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: E402


def run(*cmd: str) -> str:
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    assert p.returncode == 0, f"{cmd}: {p.stdout}{p.stderr}"
    return p.stdout


class KeychainStandIn(ffi.KeyStore):
    """What the Swift adapter does with the Keychain: AES-256-GCM wrap, iv || ct+tag."""

    def __init__(self):
        self.key = AESGCM.generate_key(bit_length=256)

    def key_id(self):
        return "python-test:kek-1"

    def wrap(self, data_key):
        iv = os.urandom(12)
        return iv + AESGCM(self.key).encrypt(iv, bytes(data_key), None)

    def unwrap(self, wrapped):
        try:
            return AESGCM(self.key).decrypt(bytes(wrapped[:12]), bytes(wrapped[12:]), None)
        except Exception:
            raise ffi.BaomiError.Refused("wrapped key does not open under this key")


class UrllibClient(ffi.HttpClient):
    """What URLSessionTransport does: POST, every status back, throw only when no answer."""

    def __init__(self, base):
        self.base = base.rstrip("/")

    def post(self, path, headers, body):
        req = urllib.request.Request(self.base + path, data=bytes(body), method="POST")
        for h in headers:
            req.add_header(h.name, h.value)
        try:
            with urllib.request.urlopen(req, timeout=40) as r:
                return ffi.HttpReply(status=r.status, body=r.read(2 * 1024 * 1024))
        except urllib.error.HTTPError as e:
            return ffi.HttpReply(status=e.code, body=e.read(2 * 1024 * 1024))
        except OSError as e:
            raise ffi.BaomiError.Offline(f"{self.base}{path}: {e}")


class Office:
    """The security office, by the `baomi` CLI: keys, trust root (with upload key), bundles."""

    def __init__(self, tmp: Path):
        self.dir = tmp
        run(CLI, "keys", "new", "--out", tmp / "office")
        run(CLI, "keys", "new", "--out", tmp / "registry")
        run(SERVER, "upload-key", "new", "--out", tmp / "upload")
        self.root = tmp / "trust.json"
        run(CLI, "trust", "new", "--key", tmp / "office.pub", "--threshold", "1", "--sign-key", tmp / "office.key",
            "--registry-key", tmp / "registry.pub", "--upload-key", tmp / "upload.pub", "--out", self.root)

    def bundle_file(self, device: str, clearance: str, version: int, holder: str = "li.na") -> Path:
        policy = json.loads((REPO / "policies" / "baseline.json").read_text())
        policy["holders"] = [{"holder": holder, "clearance": clearance, "devices": [device]}]
        p = self.dir / f"policy-{version}.json"
        p.write_text(json.dumps(policy))
        out = self.dir / f"bundle-{version}.json"
        run(CLI, "bundle", "sign", "--policy", p, "--key", self.dir / "office.key", "--version", str(version), "--out", out)
        return out

    def custody(self, rid: str, holder: str, document: str, action: str) -> Path:
        out = self.dir / f"custody-{rid}.json"
        run(CLI, "custody", "sign", "--key", self.dir / "registry.key", "--record-id", rid, "--holder", holder,
            "--document", document, "--classification", "secret", "--action", action, "--out", out)
        return out


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
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    db = f"sqlite:{tmp_path / 'server.db'}"
    run(SERVER, "trust", "publish", office.root, "--db", db)
    proc = subprocess.Popen([str(SERVER), "serve", "--listen", f"127.0.0.1:{port}", "--db", db,
                             "--upload-key", str(tmp_path / "upload"), "--threads", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            assert proc.poll() is None and time.time() < deadline, "baomi-server did not start"
            time.sleep(0.05)

    class S:
        base = f"http://127.0.0.1:{port}"

        @staticmethod
        def admin(*args):
            return run(SERVER, *args, "--db", db)

    yield S
    proc.terminate()
    proc.wait(timeout=10)
