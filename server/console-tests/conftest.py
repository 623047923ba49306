"""Browser tests of the security officer's console: headless Chromium (Debian's `chromium`)
driven by Selenium through Debian's `chromium-driver`, against a real `baomi-server` seeded
through the real sync path: phones (the core through its uniffi surface, Python bindings)
enrol, install the published bundle, record violations, sync them up, and receive custody.

Run: cargo build -p baomi-ffi -p baomi -p baomi-server && python3 -m pytest -q server/console-tests
Screenshots of each page land in target/console-screenshots/.
"""

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "python"))

from testkit import REPO, KeychainStandIn, Office, ServerProcess, UrllibClient, ffi  # noqa: E402

SHOTS = REPO / "target" / "console-screenshots"
ADMIN_PASSWORD = "correct horse battery staple"
AUDITOR_PASSWORD = "auditor reads only 2026"


def seed(tmp: Path, say=lambda message: None):
    """Three phones through the real sync path; returns (office, server, device ids).
    `say` hears each step (the demo prints them)."""
    say("office keys and trust root")
    office = Office(tmp)
    server = ServerProcess(office, tmp)
    say(f"server listening at {server.base}; officers chen.admin and wang.auditor")
    server.admin("officer", "add", "chen.admin", "--role", "admin", stdin=ADMIN_PASSWORD + "\n")
    server.admin("officer", "add", "wang.auditor", "--role", "auditor", stdin=AUDITOR_PASSWORD + "\n")
    agents = []
    for i, holder in enumerate(["li.na", "zhang.wei", "zhao.min"]):
        say(f"phone {i + 1} of 3 ({holder}): enrolling")
        agent = ffi.BaomiAgent.open(str(tmp / f"phone-{i}"), KeychainStandIn(), ffi.PlatformKind.ANDROID, ffi.SystemClock())
        agent.install_trust_root(office.root.read_bytes())
        token = server.admin("token", "new", "--holder", holder).strip().splitlines()[-1]
        agent.enroll(server.base, token, UrllibClient(server.base))
        agents.append((holder, agent))
    # One bundle assigning every phone to its holder.
    policy = json.loads((REPO / "policies" / "baseline.json").read_text())
    clearances = {"li.na": "general", "zhang.wei": "important", "zhao.min": "none"}
    policy["holders"] = [{"holder": h, "clearance": clearances[h], "devices": [a.status().device_id]} for h, a in agents]
    draft = tmp / "policy-1.json"
    draft.write_text(json.dumps(policy))
    from testkit import CLI, run
    bundle = tmp / "bundle-1.json"
    run(CLI, "bundle", "sign", "--policy", draft, "--key", tmp / "office.key", "--version", "1", "--out", bundle)
    server.admin("bundle", "publish", bundle)
    say("bundle v1 signed and published")
    from datetime import datetime, timezone
    now = lambda: datetime.now(timezone.utc).isoformat()  # noqa: E731
    for holder, agent in agents:
        say(f"{holder}: sync, a WeChat launch (a violation), report applied")
        http = UrllibClient(server.base)
        agent.sync_now(http)
        agent.handle_event_json(json.dumps({"at": now(), "type": "app_launched", "package": "com.tencent.mm"}))
        agent.report_applied(ffi.EnforcementMode.DEVICE_OWNER, [])
    # A holder-controlled string: must show as text, never run.
    agents[0][1].report_enforcement_failure("camera", "<script>document.title='pwned'</script><b>bold</b>")
    say("registry: zhang.wei signs out MIMI-2026-042; phones sync")
    server.admin("custody", "post", office.custody("R-1", "zhang.wei", "MIMI-2026-042", "sign-out"))
    for holder, agent in agents:
        agent.sync_now(UrllibClient(server.base))
    # A second version for the impact preview: zhao.min gets a clearance (messengers banned).
    policy["holders"][2]["clearance"] = "important"
    draft2 = tmp / "policy-2.json"
    draft2.write_text(json.dumps(policy))
    bundle2 = tmp / "bundle-2.json"
    run(CLI, "bundle", "sign", "--policy", draft2, "--key", tmp / "office.key", "--version", "2", "--out", bundle2)
    return office, server, [a.status().device_id for _, a in agents], bundle2


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("console")
    office, server, devices, bundle2 = seed(tmp)
    yield {"office": office, "server": server, "devices": devices, "bundle2": bundle2}
    server.stop()


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000", "--disable-gpu"):
        opts.add_argument(a)
    d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    d.set_page_load_timeout(30)
    SHOTS.mkdir(parents=True, exist_ok=True)
    yield d
    d.quit()


# The seeded size: 2,000 phones and 20,000 violations in CI; BAOMI_CONSOLE_DEVICES and
# BAOMI_CONSOLE_VIOLATIONS run the same tests at a province's size (docs/BENCHMARKS.md).
SCALE_DEVICES = int(os.environ.get("BAOMI_CONSOLE_DEVICES", "2000"))
SCALE_VIOLATIONS = int(os.environ.get("BAOMI_CONSOLE_VIOLATIONS", "20000"))
# A database seeded beforehand at that size (`baomi-server seed --db URL`, e.g. PostgreSQL's
# 100,000 phones and 10,000,000 violations, an hour to seed): served as it is, used once (the
# test publishes its own trust root into it; copy it first, `CREATE DATABASE ... TEMPLATE`).
SCALE_DB = os.environ.get("BAOMI_CONSOLE_DB")


@pytest.fixture(scope="module")
def office_at_scale(tmp_path_factory):
    """A generated office (`baomi-server seed`: 2,000 phones, 20,000 violations unless set
    above) behind a real server, with an admin."""
    tmp = tmp_path_factory.mktemp("scale")
    office = Office(tmp)
    server = ServerProcess(office, tmp, db=SCALE_DB)
    try:
        if not SCALE_DB:
            server.admin("seed", "--devices", SCALE_DEVICES, "--violations", SCALE_VIOLATIONS, "--days", 13)
        server.admin("officer", "add", "陈静", "--role", "admin", stdin=ADMIN_PASSWORD + "\n")
        # The published policy assigns the generated holders their phones (version 2: the seed's
        # phones on version 1 are outdated). A policy is at most 1 MiB: it lists at most 5,000
        # holders (10,000 phones, SQLite's seeded size); beyond that an office assigns phones by
        # personnel records, which the generator does not write, and the other phones show the
        # person their enrolment was issued for (none, here).
        from testkit import CLI, run
        policy = json.loads((REPO / "policies" / "baseline.json").read_text())
        policy["holders"] = [{"holder": f"holder-{i:06d}", "clearance": "general", "devices": [f"seed-{2 * i:07d}", f"seed-{2 * i + 1:07d}"]}
                             for i in range(min(SCALE_DEVICES // 2, 5000))]
        (tmp / "policy.json").write_text(json.dumps(policy))
        run(CLI, "bundle", "sign", "--policy", tmp / "policy.json", "--key", tmp / "office.key", "--version", "2", "--out", tmp / "bundle.json")
        server.admin("bundle", "publish", tmp / "bundle.json")
    except BaseException:
        server.stop()  # a server left running would hold the database
        raise
    yield server
    server.stop()
