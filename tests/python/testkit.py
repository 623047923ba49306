"""Shared by the Python test suites (ios/python-tests, server/console-tests): Python bindings
generated from the same libbaomi_ffi.so with the workspace's pinned uniffi-bindgen, platform
stand-ins (key store, HTTP client), the security office by the `baomi` CLI, and a real
`baomi-server` on loopback.
"""

import atexit
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


REPO = Path(__file__).resolve().parents[2]
TARGET = Path(os.environ.get("BAOMI_TARGET", REPO / "target" / "debug"))
CLI = TARGET / "baomi"
SERVER = TARGET / "baomi-server"

# The generated bindings and a copy of the library (22 MB), removed when the tests end.
_bindings = Path(tempfile.mkdtemp(prefix="baomi-py-"))
atexit.register(shutil.rmtree, _bindings, ignore_errors=True)
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
        # The suite under test: BAOMI_TEST_SUITE (intl unless set; .ci/test runs the suite again
        # with sm, issue 24).
        self.suite = os.environ.get("BAOMI_TEST_SUITE", "intl")
        suite = ["--suite", self.suite]
        self.dir = tmp
        run(CLI, "keys", "new", *suite, "--out", tmp / "office")
        run(CLI, "keys", "new", *suite, "--out", tmp / "registry")
        run(SERVER, "upload-key", "new", *suite, "--out", tmp / "upload")
        self.root = tmp / "trust.json"
        run(CLI, "trust", "new", *suite, "--key", tmp / "office.pub", "--threshold", "1", "--sign-key", tmp / "office.key",
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



class ServerProcess:
    """`baomi-server serve` on a free loopback port with its own SQLite database (or the
    database `db` names, e.g. a PostgreSQL one seeded beforehand)."""

    def __init__(self, office, tmp: Path, extra_env=None, db=None):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.db = db or f"sqlite:{tmp / 'server.db'}"
        self.base = f"http://127.0.0.1:{self.port}"
        run(SERVER, "trust", "publish", office.root, "--db", self.db)
        self.proc = subprocess.Popen([str(SERVER), "serve", "--listen", f"127.0.0.1:{self.port}", "--db", self.db,
                                      "--upload-key", str(office.dir / "upload"), "--threads", "2"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **(extra_env or {})})
        deadline = time.time() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                assert self.proc.poll() is None and time.time() < deadline, "baomi-server did not start"
                time.sleep(0.05)

    def admin(self, *args, stdin=None):
        p = subprocess.run([str(SERVER), *map(str, args), "--db", self.db], capture_output=True, text=True, input=stdin)
        assert p.returncode == 0, f"{args}: {p.stdout}{p.stderr}"
        return p.stdout

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)
