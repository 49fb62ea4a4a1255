#!/usr/bin/env bash
# The lincheck CLI contract: last line linearizable=true|false, exit 0 / 1, and exit 2 with a
# message naming the file and line for malformed input (and naming the file if unreadable).
set -euo pipefail
LINCHECK="$1"
TMP="${TEST_TMPDIR:-$(mktemp -d)}"
fail() { echo "FAIL: $*" >&2; exit 1; }

printf 'INFO  jepsen.util - 0\t:invoke\t:write\t1\nINFO  jepsen.util - 0\t:ok\t:write\t1\n' > "$TMP/good.log"
printf 'INFO  jepsen.util - 1\t:invoke\t:read\tnil\nINFO  jepsen.util - 1\t:ok\t:read\t1\n' >> "$TMP/good.log"
cp "$TMP/good.log" "$TMP/bad.log"
printf 'INFO  jepsen.util - 1\t:invoke\t:read\tnil\nINFO  jepsen.util - 1\t:ok\t:read\t2\n' >> "$TMP/bad.log"
cp "$TMP/good.log" "$TMP/malformed.log"
printf 'INFO  jepsen.util - 1\t:invoke\t:read\n' >> "$TMP/malformed.log"

set +e
out=$("$LINCHECK" "$TMP/good.log"); rc=$?
[ $rc -eq 0 ] || fail "good: exit $rc"
[ "$(echo "$out" | tail -1)" = "linearizable=true" ] || fail "good: $out"

out=$("$LINCHECK" "$TMP/bad.log"); rc=$?
[ $rc -eq 1 ] || fail "bad: exit $rc"
[ "$(echo "$out" | tail -1)" = "linearizable=false" ] || fail "bad: $out"
echo "$out" | grep -q 'op 5 (client 1, read -> 2' || fail "bad: no explanation: $out"

err=$("$LINCHECK" "$TMP/malformed.log" 2>&1 >/dev/null); rc=$?
[ $rc -eq 2 ] || fail "malformed: exit $rc"
echo "$err" | grep -q "$TMP/malformed.log:line 5: " || fail "malformed: $err"

err=$("$LINCHECK" "$TMP/missing.log" 2>&1 >/dev/null); rc=$?
[ $rc -eq 2 ] || fail "missing: exit $rc"
echo "$err" | grep -q "$TMP/missing.log" || fail "missing: $err"

"$LINCHECK" >/dev/null 2>&1; rc=$?
[ $rc -eq 2 ] || fail "no file: exit $rc"
"$LINCHECK" --steps_max=x "$TMP/good.log" >/dev/null 2>&1; rc=$?
[ $rc -eq 2 ] || fail "bad flag: exit $rc"
echo PASS
