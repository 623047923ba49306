#!/usr/bin/env python3
"""The published JSON Schema and the Rust validator agree on the baseline and on broken docs.

Editors and the officer's tooling use policies/policy.schema.json; the agent uses its own
validator. A policy one accepts and the other refuses would be a trap, so both are run on the
same documents here.
"""
import copy
import json
import pathlib
import subprocess
import sys
import tempfile

import jsonschema

root = pathlib.Path(__file__).resolve().parent.parent
schema = json.loads((root / "policies/policy.schema.json").read_text())
jsonschema.Draft202012Validator.check_schema(schema)
validator = jsonschema.Draft202012Validator(schema)
baseline = json.loads((root / "policies/baseline.json").read_text())
baomi = sys.argv[1] if len(sys.argv) > 1 else str(root / "target/debug/baomi")

def rust_accepts(doc):
    with tempfile.TemporaryDirectory(prefix="baomi-schema-") as d:
        path = pathlib.Path(d) / "policy.json"
        path.write_text(json.dumps(doc))
        r = subprocess.run([baomi, "policy", "check", str(path)], capture_output=True, text=True)
    return r.returncode == 0

errors = list(validator.iter_errors(baseline))
assert not errors, [e.message for e in errors]
assert rust_accepts(baseline)

def broken(edit):
    doc = copy.deepcopy(baseline)
    edit(doc)
    return doc

cases = {
    "misspelt effect": lambda d: d["rules"][1]["effects"].__setitem__(0, "disable_camra"),
    "unknown field": lambda d: d["sync"].__setitem__("fail_closd", {}),
    "bad clearance": lambda d: d["rules"][0].__setitem__("when", {"clearance_at_least": "secret"}),
    "reserved rule id": lambda d: d["rules"][0].__setitem__("id", "baomi.x"),
    "bad bssid": lambda d: d["zones"]["secrets-office"]["wifi_bssids"].__setitem__(0, "02:1a"),
    "empty effects": lambda d: d["rules"][0].__setitem__("effects", []),
    "format 2": lambda d: d.__setitem__("format", 2),
}
for name, edit in cases.items():
    doc = broken(edit)
    assert list(validator.iter_errors(doc)), f"schema accepts: {name}"
    assert not rust_accepts(doc), f"agent accepts: {name}"
print(f"schema check: baseline valid; {len(cases)} broken documents refused by both the schema and the agent")
