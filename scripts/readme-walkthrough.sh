#!/usr/bin/env bash
# The README's five-minute walk-through, run as written with the server running (CI runs it).
# Run from the repository after `npm ci`. PORT and DATA_DIR may be set to keep it apart from a
# running development server; the commands are the README's.
set -euo pipefail
cd "$(dirname "$0")/.."
export PORT="${PORT:-3000}" DATA_DIR="${DATA_DIR:-./data}"
BASE="localhost:$PORT"
fail() { echo "readme-walkthrough: $*" >&2; exit 1; }

npm start > "${WALKTHROUGH_LOG:-/dev/null}" 2>&1 &
SERVER=$!
trap 'kill -TERM "$(cat "$DATA_DIR/sessiongate.pid" 2>/dev/null || echo $SERVER)" 2>/dev/null || true; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do
  curl -sf "$BASE/health/ready" > /dev/null && break
  kill -0 $SERVER 2> /dev/null || fail "npm start exited"
  sleep 1
done
curl -sf "$BASE/health/ready" > /dev/null || fail "the server did not become ready"

# npx sessiongate db:seed, then paste the export lines it printed
SEED=$(npx sessiongate db:seed)
eval "$(grep '^export ' <<< "$SEED")"
[ -n "${PATIENT_TOKEN:-}" ] && [ -n "${DOCTORMALAWI_TOKEN:-}" ] || fail "db:seed printed no tokens"

curl -sf "$BASE/api/v2/me" -H "Authorization: Bearer $PATIENT_TOKEN" | grep -q '"role":"patient"' || fail "/me refused the seeded token"
curl -sf "$BASE/api/v2/appointments" -H "Authorization: Bearer $PATIENT_TOKEN" > /dev/null || fail "/appointments failed"
# The worker turns appointment 1 into a text session within a minute.
CONTEXT=""
for _ in $(seq 1 90); do
  CONTEXT=$(curl -s "$BASE/api/v2/appointments/1/session" -H "Authorization: Bearer $PATIENT_TOKEN" | grep -o 'text_session:[0-9]*' | head -1 || true)
  [ -n "$CONTEXT" ] && break
  sleep 1
done
[ -n "$CONTEXT" ] || fail "appointment 1 did not become a session"
curl -sf -X POST "$BASE/api/v2/sessions/$CONTEXT/messages" -H "Authorization: Bearer $PATIENT_TOKEN" \
  -H 'Content-Type: application/json' -d '{"client_message_id":"readme-1","type":"text","body":"Hello doctor"}' > /dev/null \
  || fail "the chat message was refused"
curl -sf "$BASE/api/v2/sessions/$CONTEXT/messages" -H "Authorization: Bearer $DOCTORMALAWI_TOKEN" | grep -q 'Hello doctor' \
  || fail "the doctor does not see the message"

# (exit 1/2 are check results; 3 would mean the command did not run)
npx sessiongate appointments:monitor-sessions || [ $? -lt 3 ]
npx sessiongate rollout:status || [ $? -lt 3 ]
npx sessiongate flags:reload
echo "readme-walkthrough: ok"
