"""The iOS app's calls into the core, through the same uniffi surface the Swift bindings wrap."""

import json
import re
from datetime import datetime, timedelta, timezone

import pytest

import baomi_ffi as ffi
from testkit import REPO, UrllibClient


def shifted_to_now(lines):
    """A recorded stream moved to the present (the agent never acts before a time it saw)."""
    at = re.compile(r'"at":\s*"([^"]+)"')
    first = datetime.fromisoformat(at.search(lines[0]).group(1))
    shift = datetime.now(timezone.utc) - first
    return [at.sub(lambda m: f'"at":"{(datetime.fromisoformat(m.group(1)) + shift).isoformat()}"', l) for l in lines]


def now(seconds=0):
    return (datetime.now(timezone.utc) + timedelta(seconds=seconds)).isoformat()


def test_the_leak_scenarios_are_decided_as_expected_on_ios_and_android(office, open_agent):
    index = json.loads((REPO / "tests" / "scenarios" / "index.json").read_text())
    assert len(index) >= 7
    for sc in index:
        kind = ffi.PlatformKind.IOS if sc["platform"] == "ios" else ffi.PlatformKind.ANDROID
        agent, _ = open_agent(kind, name=sc["name"])
        agent.install_trust_root(office.root.read_bytes())
        info = agent.install_bundle(office.bundle_file(agent.status().device_id, sc["clearance"], 1).read_bytes())
        assert info.policy_id == "baseline"
        events = [l for l in (REPO / "tests" / "scenarios" / f"{sc['name']}.events.jsonl").read_text().splitlines() if l.strip()]
        expected = [json.loads(l) for l in (REPO / "tests" / "scenarios" / f"{sc['name']}.expect.jsonl").read_text().splitlines() if l.strip()]
        assert len(events) == len(expected)
        for line, want in zip(shifted_to_now(events), expected):
            d = agent.handle_event_json(line)
            ctx = f"{sc['name']}: {line}"
            assert d.verdict.name.lower() == want["verdict"], ctx
            assert d.violation == want["violation"], ctx
            assert d.posture.camera_disabled == want["camera_disabled"], ctx
            assert d.posture.screen_capture_disabled == want["screen_capture_disabled"], ctx
        logged = agent.violations(0, 1000)
        assert len(logged) == sum(1 for e in expected if e["violation"]), sc["name"]
        assert agent.verify_log().records == len(logged)


def test_refusals_are_typed_and_lose_nothing(office, open_agent):
    agent, keys = open_agent()
    with pytest.raises(ffi.BaomiError.NoTrustRoot):
        agent.install_bundle(office.bundle_file("x", "general", 1).read_bytes())
    agent.install_trust_root(office.root.read_bytes())
    good = office.bundle_file(agent.status().device_id, "general", 2).read_bytes()
    with pytest.raises(ffi.BaomiError.Refused):
        agent.install_bundle(good.replace(b'"payload": "ey', b'"payload": "ez', 1))
    agent.install_bundle(good)
    with pytest.raises(ffi.BaomiError.Refused):
        agent.install_bundle(office.bundle_file(agent.status().device_id, "general", 1).read_bytes())
    assert agent.status().policy_version == 2
    with pytest.raises(ffi.BaomiError.BadEvent):
        agent.handle_event_json('{"at": "yesterday", "type": "app_launched"}')
    # One agent per store: a second open while the first lives is refused ...
    with pytest.raises(ffi.BaomiError.Store, match="another agent"):
        open_agent(keys=keys)
    # ... and works once it is gone.
    del agent
    import gc
    gc.collect()
    # Another Keychain key does not open the store, and harms nothing.
    from testkit import KeychainStandIn
    with pytest.raises(ffi.BaomiError.Store, match="data key"):
        open_agent(keys=KeychainStandIn())
    again, _ = open_agent(keys=keys)
    assert again.status().policy_version == 2


def test_managed_app_configuration_redelivered_is_no_refusal(office, open_agent):
    agent, _ = open_agent()
    root = office.root.read_bytes()
    bundle = office.bundle_file(agent.status().device_id, "general", 1).read_bytes()
    first = agent.apply_managed_config(root, bundle)
    assert first.trust_root.is_installed() and first.bundle.is_installed() and first.changed
    # The MDM delivers the same configuration again on every change.
    for _ in range(3):
        again = agent.apply_managed_config(root, bundle)
        assert again.trust_root.is_already_installed() and not again.changed
    assert agent.violations(0, 10) == []
    forged = agent.apply_managed_config(None, b'{"payload_type":"x"}')
    assert forged.bundle.is_refused() and forged.bundle.recorded
    assert "managed_config_refused" in agent.violations(0, 10)[0].json


def test_syncs_against_the_server_and_reports_the_posture_as_applied_by_the_mdm(office, open_agent, server):
    agent, _ = open_agent()
    agent.install_trust_root(office.root.read_bytes())
    http = UrllibClient(server.base)
    token = server.admin("token", "new").strip().splitlines()[-1]
    device = agent.enroll(server.base, token, http)
    server.admin("bundle", "publish", str(office.bundle_file(device, "important", 1)))
    assert agent.sync_now(http).bundle_installed == 1
    # On iOS the MDM applies the posture: the app reports every setting as left to it.
    posture = agent.posture()
    settings = [ffi.AppliedSettingInfo(setting="camera_disabled", desired=posture.camera_disabled, state=ffi.SettingOutcome.BY_MDM, detail=None)]
    settings += [ffi.AppliedSettingInfo(setting=f"package:{p}", desired=True, state=ffi.SettingOutcome.BY_MDM, detail=None) for p in posture.blocked_packages]
    assert "com.tencent.xin" in posture.blocked_packages, "WeChat by its iOS bundle id"
    agent.report_applied(ffi.EnforcementMode.MDM, settings)
    d = agent.handle_event_json(json.dumps({"at": now(), "type": "app_launched", "package": "com.tencent.xin"}))
    assert d.violation
    out = agent.sync_now(http)
    assert out.uploaded == 1 and agent.violations(0, 10) == []
    assert "com.tencent.xin" in server.admin("violations")
    row = json.loads(server.admin("devices").strip().splitlines()[0])
    assert row["enforcement"] == "mdm" and row["compliant"] is True, row
    # The office's suite everywhere: the root, the phone's store, the server's view (issue 24).
    status = agent.status()
    assert status.suite == office.suite and status.store_suite == office.suite, status
    assert row["suite"] == office.suite, row
    # A registry sign-out reaches the phone with the next sync (the MDM path acts at once on
    # the server side: server/tests/mdm.rs).
    server.admin("custody", "post", str(office.custody("R-9", "li.na", "DOC-9", "sign-out")))
    assert agent.wait_for_change(http, 5000)
    got = agent.sync_now(http)
    assert got.custody_applied == 1 and got.posture.camera_disabled
