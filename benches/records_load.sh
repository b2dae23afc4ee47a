#!/usr/bin/env bash
# CDR load run: every call that SIPp completes must leave one CDR.
#
#   benches/records_load.sh CONCURRENT RATE TOTAL HOLD_MS
#   e.g. benches/records_load.sh 5000 300 5000 30000
#        (5,000 calls up at once, then hanging up at ~300/s)
#
# Starts the release service on an embedded SQLite ledger, runs SIPp's
# tests/sipp/uac_load.xml, stops the service with SIGTERM (the records
# writer flushes its queue) and counts the CDRs and the rows still spooled.
# Loopback only; bounded by TOTAL calls and SIPp's -timeout.
set -euo pipefail
cd "$(dirname "$0")/.."
conc=${1:-5000}; rate=${2:-300}; total=${3:-5000}; hold=${4:-30000}
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
cargo build --release --quiet --bin ivr12333
work=$(mktemp -d)
trap 'kill $svc 2>/dev/null || true; wait $svc 2>/dev/null || true; rm -rf "$work"' EXIT
port=$((15000 + RANDOM % 5000))
IVR12333_LOG__LEVEL=warn IVR12333_SIP__MAX_CALLS=20000 IVR12333_SIP__MAX_CALLS_PER_SECOND=5000 \
  IVR12333_RTP__INACTIVITY_TIMEOUT_SECS=3600 IVR12333_SHUTDOWN_GRACE_SECS=30 \
  target/release/ivr12333 serve --sip-listen 127.0.0.1:$port --rtp-ports 20000-39999 \
  --db "sqlite://$work/ledger.db" --admin-listen "127.0.0.1:$((port + 2))" >"$work/service.log" 2>&1 &
svc=$!
for _ in $(seq 1 100); do
  grep -q "ivr12333 serving" "$work/service.log" && break
  sleep 0.1
done
# Peak of the writer's queue while the calls end.
( while kill -0 $svc 2>/dev/null; do
    curl -s "http://127.0.0.1:$((port + 2))/metrics" 2>/dev/null \
      | awk '/^ivr_records_queue_depth /{print $2}' >> "$work/depth"; sleep 0.5; done ) &
sampler=$!
sed "s/HOLD_MS/$hold/" tests/sipp/uac_load.xml > "$work/uac_load.xml"
t0=$(date +%s.%N)
sipp -sf "$work/uac_load.xml" -s 12333 127.0.0.1:$port -i 127.0.0.1 -p $((port + 1)) \
  -mi 127.0.0.1 -mp $((port + 10)) -l "$conc" -r "$rate" -rp 1000 -m "$total" \
  -timeout $(( (total / rate) + hold / 1000 + 120 ))s -timeout_error -nostdin \
  -trace_stat -stf "$work/stats.csv" >"$work/sipp.out" 2>&1 \
  && status=ok || status="FAILED($?)"
t1=$(date +%s.%N)
ok=$(tail -n 1 "$work/stats.csv" | awk -F';' '{print $16}')
failed=$(tail -n 1 "$work/stats.csv" | awk -F';' '{print $18}')
cdrs_before_stop=$(sqlite3 "$work/ledger.db" "SELECT COUNT(*) FROM call_records")
kill -TERM $svc; wait $svc || true
kill $sampler 2>/dev/null || true
cdrs=$(sqlite3 "$work/ledger.db" "SELECT COUNT(*) FROM call_records")
distinct=$(sqlite3 "$work/ledger.db" "SELECT COUNT(DISTINCT call_id) FROM call_records")
spooled=$(find "$work/spool" -name '*.ivrspool' 2>/dev/null | wc -l)
peak=$(sort -g "$work/depth" 2>/dev/null | tail -n 1)
echo "records load: concurrent=$conc rate=$rate/s total=$total hold=${hold}ms sipp=$status successful=$ok failed=$failed wall=$(echo "$t1 - $t0" | bc)s"
echo "CDRs: $cdrs rows ($distinct distinct Call-IDs) for $ok successful calls; $cdrs_before_stop already in the database when SIPp finished; spool files left: $spooled; peak writer queue depth: ${peak:-n/a}"
echo "CDR write failures logged: $(grep -c 'CDR write failed' "$work/service.log" || true); service WARN/ERROR lines: $(grep -cE ' (WARN|ERROR) ' "$work/service.log" || true)"
