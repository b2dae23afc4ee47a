#!/usr/bin/env bash
# Load run: the release service on loopback against SIPp.
#
#   benches/load.sh CONCURRENT RATE TOTAL HOLD_MS
#   e.g. benches/load.sh 5000 200 10000 30000   (5,000 calls up at once)
#        benches/load.sh 2000 1000 20000 1000   (1,000 new calls/s)
#
# Prints SIPp's result (successful and failed calls, failures by SIPp's
# reason, INVITE retransmissions and timeouts from -trace_counts), the
# service's CPU time, peak memory and memory per concurrent call, and what
# callers hear: once CONCURRENT calls are up, the
# probe (benches/load_probe.rs) places PROBE_STREAMS (30) listening calls and
# PROBE_SCRIPTED (5) callers who key an ID and PIN, and reports RTP gaps and
# loss (kernel timestamps), INVITE->200 latency and PIN '#' -> result latency,
# and, from the service's /metrics over the same 15 s, how late the media
# clock sent frames (ticks over 2/5/10/20/40 ms past their slot).
# IVR12333_BIN names the service binary (default target/release/ivr12333,
# built first), so a baseline build can be compared in the same session
# (unset for the service, whose config would read it as a setting).
# Loopback only; bounded by TOTAL calls and SIPp's -timeout.
set -euo pipefail
cd "$(dirname "$0")/.."
conc=${1:-1000}; rate=${2:-100}; total=${3:-2000}; hold=${4:-20000}
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
bin=${IVR12333_BIN:-target/release/ivr12333}
[ -n "${IVR12333_BIN:-}" ] || cargo build --release --quiet --bin ivr12333
cargo bench --quiet --bench load_probe --no-run 2>/dev/null
work=$(mktemp -d)
trap 'kill $svc 2>/dev/null || true; wait $svc 2>/dev/null || true; rm -rf "$work"' EXIT
# SIP at port, SIPp at port+1 (media +10), admin at port+3: all below the
# RTP range. RTP_PORTS (default 20000-59999: 20,000 even ports, enough
# for 15,000 calls and the probe's) may be narrowed.
port=$((15000 + RANDOM % 4900))
admin=127.0.0.1:$((port + 3))
IVR12333_LOG__LEVEL=warn IVR12333_SIP__MAX_CALLS=20000 IVR12333_SIP__MAX_CALLS_PER_SECOND=5000 \
  IVR12333_SIP__TRUSTED_SOURCES='["127.0.0.0/8"]' \
  IVR12333_RTP__INACTIVITY_TIMEOUT_SECS=3600 \
  env -u IVR12333_BIN "$bin" serve --sip-listen 127.0.0.1:$port --rtp-ports "${RTP_PORTS:-20000-59999}" \
  --db "sqlite://$work/ledger.db" --admin-listen "$admin" >"$work/service.log" 2>&1 &
svc=$!
for _ in $(seq 1 100); do
  grep -q "ivr12333 serving" "$work/service.log" && break
  sleep 0.1
done
ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14+$15}' /proc/$svc/stat; }
rss_kib() { awk '/VmRSS/{print $2}' /proc/$svc/status; }
base_rss=$(rss_kib); cpu0=$(cpu); t0=$(date +%s.%N)
peak=0
( while kill -0 $svc 2>/dev/null; do r=$(rss_kib); echo "$r" >> "$work/rss"; sleep 0.5; done ) &
sampler=$!
# Steady state: once CONCURRENT calls are up (after the ramp), 5 s of CPU;
# the media clock's lateness counters and their causes (late wake-ups,
# long and preempted rounds, lock waits; /metrics) over the 15 s from the
# same moment, while the probe listens.
metrics() { curl -s --max-time 5 "http://$admin/metrics" > "$1" 2>/dev/null || true; }
( sleep $(( conc / rate + 3 )); metrics "$work/metrics0"; a=$(cpu); sleep 5; b=$(cpu)
  echo "$(( (b - a) * 100 / 5 / ticks ))" > "$work/steady"
  sleep 10; metrics "$work/metrics1" ) &
lateness=$!
# What callers hear, sampled while every call is up (probe calls hold 10 s).
( sleep $(( conc / rate + 2 ))
  cargo bench --quiet --bench load_probe -- --target 127.0.0.1:$port \
    --streams "${PROBE_STREAMS:-30}" --scripted "${PROBE_SCRIPTED:-5}" \
    --spread-secs 5 --hold-secs 10 > "$work/probe" 2>&1 ) &
prober=$!
sed "s/HOLD_MS/$hold/" tests/sipp/uac_load.xml > "$work/uac_load.xml"
# SIPp writes -trace_counts (per-message Sent/Retrans/Timeout, cumulative) and
# -trace_screen files into its working directory: run it in $work.
(cd "$work" && exec sipp -sf "$work/uac_load.xml" -s 12333 127.0.0.1:$port -i 127.0.0.1 -p $((port + 1)) \
  -mi 127.0.0.1 -mp $((port + 10)) -l "$conc" -r "$rate" -rp 1000 -m "$total" \
  -timeout $(( (total / rate) + hold / 1000 + 120 ))s -timeout_error -nostdin \
  -trace_stat -stf "$work/stats.csv" -trace_counts -trace_screen \
  -trace_err -error_file "$work/errors.log") >"$work/sipp.out" 2>&1 \
  && status=ok || status="FAILED($?)"
t1=$(date +%s.%N); cpu1=$(cpu)
wait $prober 2>/dev/null || true
wait $lateness 2>/dev/null || true
kill $sampler 2>/dev/null || true
peak=$(sort -n "$work/rss" | tail -n 1)
# col FILE NAME: the last row's value in the column headed NAME, or headed
# <index>_NAME in -trace_counts (e.g. 0_INVITE_Retrans), or "?". SIPp's csv
# files have a header row, then rows of cumulative counts.
col() {
  if [ -z "$1" ] || [ ! -s "$1" ]; then echo "?"; return; fi
  awk -F';' -v name="$2" 'NR == 1 { for (i = 1; i <= NF; i++)
      if (!c && ($i == name || $i ~ ("^[0-9]+_" name "$"))) c = i; next }
    { last = $0 } END { n = split(last, f, ";"); print (c && c <= n) ? f[c] : "?" }' "$1"
}
ok=$(col "$work/stats.csv" 'SuccessfulCall(C)')
failed=$(col "$work/stats.csv" 'FailedCall(C)')
counts=$(find "$work" -maxdepth 1 -name '*_counts.csv' | head -n 1)
wall=$(echo "$t1 - $t0" | bc)
cpus=$(echo "scale=2; ($cpu1 - $cpu0) / $ticks" | bc)
echo "binary: $bin"
echo "load: concurrent=$conc rate=$rate/s total=$total hold=${hold}ms sipp=$status successful=$ok failed=$failed"
echo "sipp: INVITE retransmissions $(col "$counts" INVITE_Retrans) of $(col "$counts" INVITE_Sent) INVITEs sent, INVITE timeouts $(col "$counts" INVITE_Timeout); retransmissions of all messages $(col "$work/stats.csv" 'Retransmissions(C)')"
echo "sipp: failed calls $failed (max UDP retransmissions $(col "$work/stats.csv" 'FailedMaxUDPRetrans(C)'), timeout on receive $(col "$work/stats.csv" 'FailedTimeoutOnRecv(C)'), unexpected message $(col "$work/stats.csv" 'FailedUnexpectedMessage(C)'), rejected $(col "$work/stats.csv" 'FailedCallRejected(C)'), cannot send $(col "$work/stats.csv" 'FailedCannotSendMessage(C)'))"
[ -s "$work/steady" ] && echo "service: steady state with all calls up: $(cat "$work/steady")% of one core"
echo "service: wall ${wall}s, CPU ${cpus}s ($(echo "scale=1; 100 * $cpus / $wall" | bc)% of one core)"
if [ -s "$work/errors.log" ]; then
  echo "sipp error log: $(grep -c 'sipp' "$work/errors.log" || true) entries; first:"
  grep -m 3 -E "^[0-9].*(Aborting|Unexpected|unexpected|Retransmission|timeout)" "$work/errors.log" | cut -c1-160 || true
fi
# The media clock's lateness over the 15 s window (two /metrics samples).
if [ -s "$work/metrics0" ] && [ -s "$work/metrics1" ] \
  && grep -q '^ivr_media_clock_ticks_total ' "$work/metrics1"; then
  awk 'FNR == NR { a[$1] = $2; next } { b[$1] = $2 }
    function over(total, name, label,   t, i, k, n, line) {
      t = b[total] - a[total]; line = sprintf("%d %s", t, label)
      for (i = 1; i <= 5; i++) { k = name "{over=\"" o[i] "ms\"}"
        n = b[k] - a[k]; line = line sprintf("; > %s ms: %d (%.3f%%)", o[i], n, t ? 100 * n / t : 0) }
      return line }
    END { split("2 5 10 20 40", o, " ")
      printf "media clock (15 s with all calls up): %s; latest tick since start %.1f ms\n",
        over("ivr_media_clock_ticks_total", "ivr_media_clock_late_ticks_total", "ticks"),
        1000 * b["ivr_media_clock_late_max_seconds"]
      if ("ivr_media_clock_wakeups_total" in b)
        printf "media clock why: %s (the OS ran the thread late); %s (from waking to sleeping); latest wake-up since start %.1f ms, longest round %.1f ms\n",
          over("ivr_media_clock_wakeups_total", "ivr_media_clock_late_wakeups_total", "timed wake-ups"),
          over("ivr_media_clock_rounds_total", "ivr_media_clock_long_rounds_total", "rounds") "; of which " \
          over("ivr_media_clock_preempted_rounds_total", "ivr_media_clock_long_preempted_rounds_total", "preempted by the OS"),
          1000 * b["ivr_media_clock_wakeup_late_max_seconds"], 1000 * b["ivr_media_clock_round_max_seconds"]
      if ("ivr_media_clock_lock_waits_total" in b)
        printf "media clock lock waits (a call'"'"'s task held its lock): %d, > 1 ms: %d; longest since start %.1f ms\n",
          b["ivr_media_clock_lock_waits_total"] - a["ivr_media_clock_lock_waits_total"],
          b["ivr_media_clock_long_lock_waits_total{over=\"1ms\"}"] - a["ivr_media_clock_long_lock_waits_total{over=\"1ms\"}"],
          1000 * b["ivr_media_clock_lock_wait_max_seconds"] }' \
    "$work/metrics0" "$work/metrics1"
else
  echo "media clock: no lateness figures (no /metrics sample, or a build without them)"
fi
grep '^probe:' "$work/probe" || { echo "probe: no result"; tail -n 5 "$work/probe"; }
echo "service warnings/errors: $(grep -cE ' (WARN|ERROR) ' "$work/service.log" || true)"
echo "service: RSS at start ${base_rss} KiB, peak ${peak} KiB, $(echo "scale=1; ($peak - $base_rss) / $conc" | bc) KiB per concurrent call"
