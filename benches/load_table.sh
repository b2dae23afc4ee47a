#!/usr/bin/env bash
# The concurrency table of BENCHMARKS.md: benches/load.sh at several levels,
# several rounds, this build and (optionally) a baseline build alternately.
#
#   benches/load_table.sh [ROUNDS] [LEVELS...]
#   e.g. BASELINE=/tmp/ivr12333-base benches/load_table.sh 3 1000 2000 5000 10000 15000
#
# Each run: CONCURRENT calls placed at RATE/s (250/s up to 2,000, 500/s
# above), each held for the ramp plus 20 s, so every call is up while the
# probe listens (from ramp + 2 s for 15 s). Prints each run's load.sh
# output (kept in OUTDIR, default a new temporary directory) and, at the
# end, one line per run. Loopback only; every run bounded like load.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}; shift || true
levels=("$@"); [ ${#levels[@]} -gt 0 ] || levels=(1000 2000 5000 10000 15000)
out=${OUTDIR:-$(mktemp -d)}; mkdir -p "$out"
echo "load_table: output in $out"
cargo build --release --quiet --bin ivr12333
cp target/release/ivr12333 "$out/ivr12333-new"
builds=(new); [ -n "${BASELINE:-}" ] && builds+=(old)
for r in $(seq 1 "$rounds"); do
  for c in "${levels[@]}"; do
    rate=250; [ "$c" -gt 2000 ] && rate=500
    hold=$(( (c / rate + 20) * 1000 ))
    for b in "${builds[@]}"; do
      bin="$out/ivr12333-new"; [ "$b" = old ] && bin=$BASELINE
      f="$out/$c-$b-$r.txt"
      echo "== round $r, $c calls, $b: benches/load.sh $c $rate $c $hold (load $(cut -d' ' -f1 /proc/loadavg))"
      IVR12333_BIN=$bin benches/load.sh "$c" "$rate" "$c" "$hold" > "$f" 2>&1 || true
      cat "$f"
      sleep 5
    done
  done
done
echo "== summary (level, build, round: SIPp; steady CPU; clock lateness; probe gaps; loss; INVITE->200; '#'->result; KiB/call)"
for c in "${levels[@]}"; do for b in "${builds[@]}"; do for r in $(seq 1 "$rounds"); do
  f="$out/$c-$b-$r.txt"; [ -s "$f" ] || continue
  echo "$c $b $r | $(grep -o 'successful=[0-9?]* failed=[0-9?]*' "$f") $(grep -o 'INVITE retransmissions [0-9?]*' "$f" | head -n1)" \
    "| $(grep -o 'steady state with all calls up: [0-9]*%' "$f" | cut -d: -f2)" \
    "| $(grep '^media clock (' "$f" | grep -o '> 5 ms: [0-9]* ([0-9.]*%)\|latest tick since start [0-9.]* ms' | paste -sd ' ')" \
    "| $(grep -o 'packets received, [0-9]* lost ([0-9.]*%); gaps p50 .*' "$f" | head -n1)" \
    "| $(grep -o 'INVITE->200 p50 [0-9.]* ms, p99 [0-9.]* ms' "$f")" \
    "| $(grep -o "first packet of the result, 5 callers: p50 [0-9.]* ms, p99 [0-9.]* ms" "$f" | cut -d: -f2)" \
    "| $(grep -o '[0-9.]* KiB per concurrent call' "$f")"
done; done; done
