#!/usr/bin/env bash
# The sim CLI contract: --list, the last line format, same seed same digest, a saved schedule
# replays to the same digest, and bad input exits 2 with a message naming what and where.
set -euo pipefail
SIM="$1"
TMP="${TEST_TMPDIR:-$(mktemp -d)}"
fail() { echo "FAIL: $*" >&2; exit 1; }

names=$("$SIM" --list)
[ "$(echo "$names" | head -1)" = "counter_swarm" ] || fail "--list: $names"
echo "$names" | grep -qx counter_crashes || fail "--list lacks counter_crashes"

# Every scenario once by seed and once from its saved schedule, except gossip_large: 200 members
# take minutes per run under the sanitizers, and its own scenario test already replays each
# seed from the schedule's text form and compares digests.
for scenario in $names; do
  [ "$scenario" = gossip_large ] && continue
  a=$("$SIM" --scenario="$scenario" --seed=3 --save-schedule="$TMP/$scenario.txt" | tail -1)
  c=$("$SIM" --schedule="$TMP/$scenario.txt" | tail -1)
  echo "$a" | grep -Eq '^digest=[0-9a-f]{16} seed=3 result=pass$' || fail "$scenario last line: $a"
  [ "$a" = "$c" ] || fail "$scenario: replayed schedule differs: $a vs $c"
done
echo "$names" | grep -qx gossip_large || fail "--list lacks gossip_large"

# The same seed twice gives the same line.
a=$("$SIM" --scenario=counter_swarm --seed=3 | tail -1)
b=$("$SIM" --scenario=counter_swarm --seed=3 | tail -1)
[ "$a" = "$b" ] || fail "counter_swarm: same seed, different result: $a vs $b"

d4=$("$SIM" --scenario=counter_swarm --seed=4 | tail -1)
[ "$d4" != "$a" ] || fail "different seeds gave the same line"

# An edited schedule replays (and changes the digest).
grep -v '^@' "$TMP/counter_swarm.txt" > "$TMP/quiet.txt"
echo "@100 isolate 2" >> "$TMP/quiet.txt"
q=$("$SIM" --schedule="$TMP/quiet.txt" | tail -1)
echo "$q" | grep -q 'result=pass' || fail "edited schedule: $q"

# Bad input: exit code 2 and a message that says what and where.
expect_usage_error() {
  local want="$1"; shift
  set +e
  out=$("$SIM" "$@" 2>&1)
  code=$?
  set -e
  [ "$code" = 2 ] || fail "'$*' exited $code, want 2: $out"
  echo "$out" | grep -qF -- "$want" || fail "'$*' said '$out', want '$want'"
}
expect_usage_error "unknown argument '--bogus'" --bogus
expect_usage_error "no scenario 'nope'" --scenario=nope --seed=1
expect_usage_error "--seed takes an unsigned integer" --scenario=counter_swarm --seed=x
expect_usage_error "need --scenario and --seed" --scenario=counter_swarm
expect_usage_error "cannot read" --schedule="$TMP/missing.txt"
printf 'scenario counter_swarm\nseed 1\nnodes 5\nduration_ms 1000\n@10 crash 9\n' > "$TMP/bad.txt"
expect_usage_error "line 5: fault 'crash': node '9'" --schedule="$TMP/bad.txt"
echo "sim CLI contract holds"
