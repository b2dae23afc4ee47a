#!/usr/bin/env bash
# Where the service's CPU goes under load: benches/load.sh with perf.
#
#   benches/load_perf.sh CONCURRENT RATE TOTAL HOLD_MS [OUTDIR]
#   e.g. benches/load_perf.sh 2000 200 2000 30000   (2,000 calls up at once)
#        benches/load_perf.sh 5000 250 5000 30000
#
# Runs benches/load.sh with the same arguments (IVR12333_BIN as there) and,
# when load.sh takes its steady-state sample (CONCURRENT/RATE + 3 s after
# SIPp starts), records for PERF_SECS (15) seconds:
#   perf record -g -p <service pid> -- sleep PERF_SECS   (PERF=0: no perf;
#   PERF_FREQ=N adds -F N, default perf's 4000 Hz)
# and, over the same window, the CPU of each service thread and of SIPp
# (/proc/PID/task/*/stat), the machine's /proc/stat, the kernel's UDP
# counters (/proc/net/snmp) and any cargo/rustc/test process of someone else
# seen on the machine (that skews every figure: note it). Then prints
# load.sh's output, those figures and
#   perf report --no-children --sort dso,symbol -g none   (top 40 symbols)
#   perf report --no-children --sort comm / --sort pid    (per thread)
#   perf script ... | benches/perf_categories.py         (CPU by category)
# OUTDIR (default a new temporary directory, printed) keeps perf.data;
# `benches/load_perf.sh --report OUTDIR` prints the perf reports again.
# Needs perf (Debian: linux-perf) run as root or with
# kernel.perf_event_paranoid <= 0. Loopback only, bounded like load.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
report() {  # the perf reports of $out/perf.data
  tail -n 1 "$out/perf-record.txt"
  echo "== perf report --no-children --sort dso,symbol -g none (top 40) =="
  perf report -i "$out/perf.data" --no-children --sort dso,symbol -g none --stdio 2>/dev/null \
    | grep -v -e '^#' -e '^$' | head -n 40 | cut -c1-140 | sed 's/ *$//' || true
  echo "== perf report --no-children --sort comm =="
  perf report -i "$out/perf.data" --no-children --sort comm -g none --stdio 2>/dev/null | grep -v -e '^#' -e '^$' | sed 's/ *$//' || true
  echo "== perf report --no-children --sort pid =="
  perf report -i "$out/perf.data" --no-children --sort pid -g none --stdio 2>/dev/null | grep -v -e '^#' -e '^$' | head -n 12 | sed 's/ *$//' || true
  echo "== perf script -F comm,tid,period,ip,sym,dso | benches/perf_categories.py =="
  perf script -i "$out/perf.data" -F comm,tid,period,ip,sym,dso 2>/dev/null | python3 benches/perf_categories.py
}
if [ "${1:-}" = --report ]; then  # benches/load_perf.sh --report OUTDIR: print the reports again
  out=$2; report; exit 0
fi
conc=${1:-2000}; rate=${2:-200}
out=${5:-$(mktemp -d)}
secs=${PERF_SECS:-15}
mkdir -p "$out"
command -v perf >/dev/null || { echo "load_perf.sh: perf is not installed" >&2; exit 2; }
# shellcheck disable=SC2009 # (the whole command line is wanted)
others() {
  ps -eo pid,pcpu,etime,args --no-headers \
    | grep -E 'cargo|rustc|clippy|/target/(debug|release)/|kamailio|baresip|dpkg|apt-get' \
    | grep -v -E "grep|load_probe|$(pwd)/target|binary_backend" | cut -c1-110 || true
}
{ uptime; others; } > "$out/before.txt"
benches/load.sh "${@:1:4}" > "$out/load.txt" 2>&1 &
lp=$!
trap 'kill "$lp" 2>/dev/null || true' INT TERM
svc=
for _ in $(seq 1 12000); do  # load.sh may build first
  svc=$(pgrep -P "$lp" -x ivr12333 || true)
  [ -n "$svc" ] && break
  kill -0 "$lp" 2>/dev/null || break
  sleep 0.05
done
[ -n "$svc" ] || { wait "$lp" || true; cat "$out/load.txt"; echo "load_perf.sh: the service did not start"; exit 1; }
# load.sh starts SIPp once the service serves (that can take seconds after
# the process starts) and samples its steady state CONCURRENT/RATE + 3 s later.
sipp=
for _ in $(seq 1 1200); do
  sipp=$(pgrep -P "$lp" -x sipp || true)
  [ -n "$sipp" ] && break
  kill -0 "$lp" 2>/dev/null || break
  sleep 0.05
done
sleep $(( conc / rate + 3 ))
snap() {  # snap SUFFIX: thread CPU, machine CPU, SIPp CPU, UDP counters, time
  for t in /proc/"$svc"/task/*; do
    echo "${t##*/} $(cat "$t/comm") $(awk '{print $14, $15}' "$t/stat")"
  done 2>/dev/null | sort > "$out/threads$1"
  grep '^cpu ' /proc/stat > "$out/stat$1"
  local c=
  [ -z "$sipp" ] || c=$(awk '{print $14 + $15}' /proc/"$sipp"/stat 2>/dev/null || true)
  echo "$c" > "$out/sipp$1"
  grep '^Udp:' /proc/net/snmp > "$out/snmp$1"
  date +%s.%N > "$out/time$1"
}
snap 0
( for _ in $(seq 1 "$secs"); do others; sleep 1; done > "$out/others.txt" ) &
mon=$!
if [ "${PERF:-1}" = 0 ]; then
  sleep "$secs"
else
  # PERF_FREQ: sampling frequency (default perf's own, 4000 Hz)
  perf record -g ${PERF_FREQ:+-F "$PERF_FREQ"} -p "$svc" -o "$out/perf.data" -- sleep "$secs" > "$out/perf-record.txt" 2>&1
fi
snap 1
kill "$mon" 2>/dev/null || true
wait "$lp" && rc=0 || rc=$?
cat "$out/load.txt"
[ "$rc" = 0 ] || echo "load.sh exit status $rc"
tck=$(getconf CLK_TCK)
w=$(echo "$(cat "$out/time1") - $(cat "$out/time0")" | bc)
echo "== window of ${w}s from $(( conc / rate + 3 ))s after SIPp started (% of one core) =="
join "$out/threads0" "$out/threads1" | awk -v w="$w" -v t="$tck" '
  { u = ($6 - $3) / t / w * 100; s = ($7 - $4) / t / w * 100; n = $2; sub(/-[0-9]+$/, "", n)
    U[n] += u; S[n] += s; N[n]++ }
  END { for (n in U) { printf "service threads %-16s x%-3d user %5.1f%%  sys %5.1f%%  total %5.1f%%\n", n, N[n], U[n], S[n], U[n] + S[n]
        tu += U[n]; ts += S[n] }
        printf "service threads all                    user %5.1f%%  sys %5.1f%%  total %5.1f%%\n", tu, ts, tu + ts }'
s0=$(cat "$out/sipp0"); s1=$(cat "$out/sipp1")
if [ -n "$s0" ] && [ -n "$s1" ]; then
  echo "sipp: $(echo "scale=1; ($s1 - $s0) * 100 / $tck / $w" | bc)%"
else
  echo "sipp: not measured (SIPp not running at the start or the end of the window)"
fi
paste "$out/stat0" "$out/stat1" | awk '{ n = (NF - 2) / 2; for (i = 2; i <= n + 1; i++) { d[i] = $(i + n + 1) - $i; tot += d[i] }
  f = 200 / tot  # shares of the window, on 2 cores = 200 %
  printf "machine (/proc/stat, 2 cores = 200%%): user %.1f%%  system %.1f%%  softirq %.1f%%  idle %.1f%%  iowait %.1f%%  steal %.1f%%\n",
    d[2] * f, d[4] * f, d[8] * f, d[5] * f, d[6] * f, d[9] * f }'
paste -d' ' <(sed -n 1p "$out/snmp0" | tr ' ' '\n') <(sed -n 2p "$out/snmp0" | tr ' ' '\n') \
  <(sed -n 2p "$out/snmp1" | tr ' ' '\n') | awk -v w="$w" '
  $1 ~ /^(OutDatagrams|InDatagrams|RcvbufErrors|SndbufErrors)$/ { printf "udp %s: %.0f/s\n", $1, ($3 - $2) / w }'
if [ -s "$out/others.txt" ]; then
  echo "other processes seen during the window (they share the two cores):"
  awk '{ $2 = ""; $3 = ""; print }' "$out/others.txt" | sort | uniq -c | sort -rn | head -n 8
else
  echo "other processes seen during the window: none (no cargo, rustc, test binary, kamailio, baresip, apt)"
fi
[ "${PERF:-1}" = 0 ] && { echo "output in $out"; exit 0; }
report
echo "output in $out"
