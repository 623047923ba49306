"""The console with demo data from the real sync path: three phones enrol, sync violations and
receive a registry custody sign-out; then the server keeps running until Ctrl-C.

    cargo build -p baomi-ffi -p baomi -p baomi-server
    python3 server/console-tests/demo.py
"""

import signal
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import ADMIN_PASSWORD, AUDITOR_PASSWORD, seed  # noqa: E402

tmp = Path(tempfile.mkdtemp(prefix="baomi-console-demo-"))
print(f"seeding the demo in {tmp} (a few seconds; each step is printed)", flush=True)
office, server, devices, bundle2 = seed(tmp, say=lambda m: print(f"  … {m}", flush=True))
print(f"console:  {server.base}/console/")
print(f"admin:    chen.admin / {ADMIN_PASSWORD}")
print(f"auditor:  wang.auditor / {AUDITOR_PASSWORD}")
print(f"try the impact preview with {bundle2}")
print("Ctrl-C to stop")
try:
    signal.pause()
except KeyboardInterrupt:
    pass
finally:
    server.stop()
