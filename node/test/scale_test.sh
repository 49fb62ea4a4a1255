#!/usr/bin/env bash
# Multi-process test of scaling a self-managed cluster 3 -> 5 -> 3 and of replacing every member
# in turn, with the real e2d and the stock etcdctl over mutual TLS, on loopback:
#   1. three members bootstrap through gossip (-n 3) and take writes;
#   2. scale up: each is restarted with -n 5, one at a time, then two more machines start with
#      -n 5; the leader adds them as learners and promotes them: five voters;
#   3. scale down: every member is restarted with -n 3, one at a time; the leader removes voters
#      beyond three (never itself): three voters, and the two machines left out wait;
#   4. rolling replacement: the waiting machines are stopped, then each member in turn dies with
#      its disk and comes back empty; the leader removes it after the health timeout and adds the
#      new node through a learner, until every original member has been replaced;
#   5. every write made along the way reads back from every member, and revisions went on.
# Waits poll a condition with a deadline; nothing relies on a sleep being long enough.
set -euo pipefail

E2D="$(pwd)/$1"
source node/test/lib.sh  # (the runfiles root is the working directory)
export ETCDCTL_API=3
WORK="${TEST_TMPDIR:-$(mktemp -d)}/scale"
rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK"
fail() { echo "FAIL: $*" >&2; for f in "$WORK"/*.log; do echo "== $f"; tail -30 "$f"; done >&2; exit 1; }

make_pki
NAMES=(s1 s2 s3 s4 s5)
declare -A CPORT PPORT MPORT GPORT PID
alloc_ports "${NAMES[@]}"
SEEDS=$(gossip_seeds "${NAMES[@]}")
start() {  # start NAME SIZE: the same command line on every machine, but for -n
  run_member "$1" -n "$2" --bootstrap-addrs "$SEEDS" --health-check-timeout 3s
}
stop() { kill "${PID[$1]}" 2>/dev/null || true; wait "${PID[$1]}" 2>/dev/null || true; }
ALL=$(eps "${NAMES[@]}")
# The members' names, sorted, and how many are started voters, as the cluster lists them.
members() { etcdctl "${TLS[@]}" --endpoints "$ALL" member list | awk -F', ' '{print $3}' | sort | xargs; }
voters_are() { [[ "$(voters "$ALL" 2>/dev/null)" == "$1" && "$(members)" == "$2" ]]; }
serves() {  # serves NAME: NAME's own store (a serializable read) holds the last write
  [[ "$(etcdctl "${TLS[@]}" --endpoints "$(ep "$1")" get last --consistency=s --print-value-only)" == "$LAST" ]]
}
KEYS=0
# write N: N more keys k<i>=v<i>, through any member; a put refused while the membership
# changes (an election) is tried again (the same value: trying again changes nothing else).
write() {
  local i
  for ((i = KEYS + 1; i <= KEYS + $1; i++)); do
    wait_for "put k$i" 30 etcdctl "${TLS[@]}" --endpoints "$ALL" put "k$i" "v$i"
  done
  KEYS=$((KEYS + $1))
  LAST="$KEYS"
  wait_for "put last" 30 etcdctl "${TLS[@]}" --endpoints "$ALL" put last "$LAST"
}
# settled NAME: NAME serves the last write, or it is no member any more (the leader removed it
# while scaling down: it set its data aside and waits to join).
settled() { serves "$1" || [[ " $(members) " != *" $1 "* ]]; }
rolling_restart() {  # rolling_restart SIZE NAME...: each restarted with -n SIZE, in turn
  local size="$1" n; shift
  for n in "$@"; do
    stop "$n"
    start "$n" "$size"
    wait_for "$n to serve again with -n $size" 60 settled "$n"
  done
}

echo "== 1. three members bootstrap through gossip"
for n in s1 s2 s3; do start "$n" 3; done
wait_for "the cluster to accept a write" 60 etcdctl "${TLS[@]}" --endpoints "$ALL" put boot 1
write 10
wait_for "three voters s1 s2 s3" 30 voters_are 3 "s1 s2 s3"

echo "== 2. scale up to five: a rolling restart with -n 5, then two more machines"
rolling_restart 5 s1 s2 s3
for n in s4 s5; do start "$n" 5; done
wait_for "five voters" 120 voters_are 5 "s1 s2 s3 s4 s5"
grep -h 'msg="membership: add learner"' s*.log | grep -q 'of its 5 members' ||
  fail "no leader logged adding a learner toward five members"
write 10
for n in "${NAMES[@]}"; do wait_for "$n to hold every write" 30 serves "$n"; done

echo "== 3. scale down to three: a rolling restart with -n 3"
rolling_restart 3 "${NAMES[@]}"
three() { [[ "$(voters "$ALL" 2>/dev/null)" == 3 && $(members | wc -w) == 3 ]]; }
wait_for "three voters" 120 three
KEPT=($(members))
grep -h 'msg="membership: remove"' s*.log | grep -q 'voters and requires 3' ||
  fail "no leader logged removing a voter beyond the size: $(grep -h 'membership: remove' s*.log)"
write 10
for n in "${KEPT[@]}"; do wait_for "$n to hold every write" 30 serves "$n"; done
echo "kept ${KEPT[*]}"

echo "== 4. the machines left out stop; every member is replaced in turn"
for n in "${NAMES[@]}"; do
  [[ " ${KEPT[*]} " == *" $n "* ]] || stop "$n"
done
member_id_of() {
  etcdctl "${TLS[@]}" --endpoints "$ALL" member list | awk -F', ' -v n="$1" '$3 == n {print $1}'
}
replaced() {  # replaced NAME OLD_ID: NAME is a voter again, under another id, and serves
  local id
  id=$(member_id_of "$1")
  [[ -n "$id" && "$id" != "$2" && "$(voters "$ALL")" == 3 ]] && serves "$1"
}
for n in "${KEPT[@]}"; do
  OLD=$(member_id_of "$n")
  kill -9 "${PID[$n]}"; wait "${PID[$n]}" 2>/dev/null || true
  rm -rf "data-$n"
  start "$n" 3
  wait_for "$n to be replaced by a new member" 120 replaced "$n" "$OLD"
  write 3
  echo "replaced $n ($OLD -> $(member_id_of "$n"))"
done

echo "== 5. every write reads back from every member"
for n in "${KEPT[@]}"; do
  for ((i = 1; i <= KEYS; i++)); do
    [[ "$(etcdctl "${TLS[@]}" --endpoints "$(ep "$n")" get "k$i" --print-value-only)" == "v$i" ]] ||
      fail "k$i does not read back from $n"
  done
done
echo "PASS"
