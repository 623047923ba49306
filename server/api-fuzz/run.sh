#!/usr/bin/env bash
# An independent fuzzer against the API description: schemathesis generates requests from
# docs/openapi.json (with an admin's token), sends them to a real `baomi-server` on loopback
# and fails on any server error (5xx) or any status the document does not list for that
# operation. Bounded: a fixed number of examples per operation, loopback only. The device
# operations answer 401 to anything not signed by an enrolled device's key (generated bodies
# cannot be): what is fuzzed there is the refusal; their logic is fuzzed by `fuzz/`
# (server_request) and attacked by server/tests/e2e.rs.
# Logout is left out: it would end the very session the other operations are fuzzed with.
# Usage: server/api-fuzz/run.sh [EXAMPLES]   (needs target/debug/baomi-server and schemathesis)
set -euo pipefail
cd "$(dirname "$0")/../.."
examples="${1:-25}"
bin=target/debug/baomi-server
work=$(mktemp -d)
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
db="sqlite:$work/server.db"
password="fuzzing-password-$RANDOM$RANDOM"
BAOMI_OFFICER_PASSWORD="$password" "$bin" officer add fuzz.admin --role admin --db "$db" >/dev/null
# A log key, so the evidence ledger's endpoints answer with proofs, not 503.
"$bin" log-key new --name ledger.fuzz.example --out "$work/log.key" >/dev/null
"$bin" serve --listen 127.0.0.1:0 --db "$db" --log-key "$work/log.key" >"$work/out" 2>/dev/null &
server_pid=$!
for _ in $(seq 1 100); do
  grep -q "listening on" "$work/out" 2>/dev/null && break
  sleep 0.1
done
addr=$(sed -n 's/^listening on //p' "$work/out" | head -1)
[ -n "$addr" ] || { echo "the server did not start" >&2; exit 1; }
token=$(curl -s -X POST "http://$addr/v1/office/login" -H 'content-type: application/json' \
  -d "{\"name\":\"fuzz.admin\",\"password\":\"$password\"}" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
# The CLI through the interpreter that has the package (no PATH shim needed).
python3 -c 'import sys; from schemathesis.cli import schemathesis; sys.argv[0] = "schemathesis"; sys.exit(schemathesis())' \
  run docs/openapi.json --url "http://$addr" \
  -H "Authorization: Bearer $token" \
  --checks not_a_server_error,status_code_conformance \
  --max-examples "$examples" --request-timeout 10 \
  --suppress-health-check all \
  --exclude-path /v1/office/logout
