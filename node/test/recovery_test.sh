#!/usr/bin/env bash
# Multi-process test of recovery from the loss of a majority (node/recovery.h), with the real
# e2d and the stock etcdctl over mutual TLS, on loopback:
#   1. five members bootstrap through gossip (-n 5, one command line) and take writes;
#   2. three die for good with their disks (kill -9, data directories removed): the two
#      survivors have no leader, and, seeing no node that could replace the lost ones, wait
#      (they might be cut off by a partition: fewer than a majority of 5 in sight);
#   3. the three machines come back empty with the same command line: they find the survivors
#      running and wait to join. The survivors agree on the one with the most data; it starts
#      the cluster again alone from its data (in the same process, under a new cluster id), the
#      other sets its data aside (kept in superseded-<time>/, not deleted) and joins like the
#      new ones; the leader adds and promotes them until there are five voters again;
#   4. every acknowledged write reads back, the revision goes on from where it was, and the
#      logs say who forced, who stepped aside and why;
#   5. a member stopped (SIGSTOP) past the health timeout is removed by the leader; once it runs
#      again the leader tells it that it is not a member (it never received its removal), and
#      it sets its data aside and joins again as a new member, until there are five voters.
# Waits poll a condition with a deadline; nothing relies on a sleep being long enough.
set -euo pipefail

E2D="$(pwd)/$1"
source node/test/lib.sh  # (the runfiles root is the working directory)
export ETCDCTL_API=3
WORK="${TEST_TMPDIR:-$(mktemp -d)}/recovery"
rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK"
fail() { echo "FAIL: $*" >&2; for f in "$WORK"/*.log; do echo "== $f"; tail -30 "$f"; done >&2; exit 1; }

make_pki
NAMES=(r1 r2 r3 r4 r5)
declare -A CPORT PPORT MPORT GPORT PID
alloc_ports "${NAMES[@]}"
SEEDS=$(gossip_seeds "${NAMES[@]}")
start() {  # start NAME: the same command line for every member
  run_member "$1" -n 5 --bootstrap-addrs "$SEEDS" --health-check-timeout 3s
}

echo "== 1. five members bootstrap through gossip and take writes"
for n in "${NAMES[@]}"; do start "$n"; done
ALL=$(eps "${NAMES[@]}")
wait_for "the cluster to accept a write" 60 etcdctl "${TLS[@]}" --endpoints "$ALL" put boot 1
OLD=$(cluster_of "$(ep r1)")
for i in $(seq 1 20); do
  etcdctl "${TLS[@]}" --endpoints "$ALL" put "k$i" "v$i" | grep -qx OK || fail "put k$i"
done
R=$(revision_of_put "$ALL" last 1)
[[ -n "$R" ]] || fail "no revision for the last write"
# Every member has every write (a serializable read is local), so either survivor may be chosen.
for n in "${NAMES[@]}"; do
  wait_for "$n to hold the last write" 30 bash -c "etcdctl ${TLS[*]} --endpoints $(ep "$n") \
    get last --consistency=s --print-value-only | grep -qx 1"
done

echo "== 2. three members die with their disks: the two survivors wait"
LOST=(r1 r2 r3)
SURV=(r4 r5)
for n in "${LOST[@]}"; do kill -9 "${PID[$n]}"; done
for n in "${LOST[@]}"; do wait "${PID[$n]}" 2>/dev/null || true; done
for n in "${LOST[@]}"; do rm -rf "data-$n"; mv "$n.log" "$n.before.log"; done
cut_off() { grep -q 'msg="recovery: waiting".*may be cut off by a partition' r4.log r5.log; }
wait_for "a survivor to wait, seeing too few nodes" 60 cut_off
if grep -q 'msg="recovery: forces\|msg="recovery: steps aside' r4.log r5.log; then
  fail "a survivor acted with no node in sight to replace the lost ones"
fi

echo "== 3. the lost machines come back empty: the survivors recover"
for n in "${LOST[@]}"; do start "$n"; done
recovered() {
  local c
  c=$(cluster_of "$ALL" 2>/dev/null | head -1) || return 1
  [[ -n "$c" && "$c" != "$OLD" ]] || return 1
  [[ "$(voters "$ALL")" == 5 ]] || return 1
  for n in "${NAMES[@]}"; do [[ "$(cluster_of "$(ep "$n")")" == "$c" ]] || return 1; done
}
wait_for "five voters of one recovered cluster" 120 recovered
NEW=$(cluster_of "$(ep r1)")
FORCER=$(grep -l 'msg="recovery: forces a new cluster"' r4.log r5.log | sed 's/\.log$//')
ASIDE=$(grep -l 'msg="recovery: steps aside"' r4.log r5.log | sed 's/\.log$//')
[[ -n "$FORCER" && -n "$ASIDE" && "$FORCER" != "$ASIDE" ]] ||
  fail "expected one survivor to force and the other to step aside (forced: '$FORCER', aside: '$ASIDE')"
grep -q 'every survivor agrees' "$FORCER.log" || fail "$FORCER did not log why it forced"
grep -q "msg=\"recovery: the cluster runs again from this member's data\".* revision=$R" \
  "$FORCER.log" || fail "$FORCER did not report recovering at revision $R"
# The other survivor's data is kept, set aside, with its identity.
compgen -G "data-$ASIDE/superseded-*/member" >/dev/null ||
  fail "$ASIDE did not keep its data in data-$ASIDE/superseded-*/"
[[ -e "data-$FORCER/member" ]] && ! compgen -G "data-$FORCER/superseded-*" >/dev/null ||
  fail "$FORCER's own data was moved"

echo "== 4. every acknowledged write reads back; revisions go on"
for i in $(seq 1 20); do
  [[ "$(etcdctl "${TLS[@]}" --endpoints "$ALL" get "k$i" --print-value-only)" == "v$i" ]] ||
    fail "k$i does not read back after the recovery"
done
R2=$(revision_of_put "$ALL" after 1)
[[ "$R2" == $((R + 1)) ]] || fail "the first write after the recovery is at revision $R2, not $((R + 1))"
for n in "${NAMES[@]}"; do
  wait_for "$n to hold the write after the recovery" 30 bash -c "etcdctl ${TLS[*]} \
    --endpoints $(ep "$n") get after --consistency=s --print-value-only | grep -qx 1"
done
echo "recovered cluster $NEW (was $OLD) at revision $R: forced by $FORCER, $ASIDE stepped aside"

echo "== 5. a member removed while it was stopped learns it, sets its data aside and rejoins"
member_id_of() {  # member_id_of NAME: its id in hex, as etcdctl lists it
  etcdctl "${TLS[@]}" --endpoints "$ALL" member list | awk -F', ' -v n="$1" '$3 == n {print $1}'
}
OLDID=$(member_id_of r2)
[[ -n "$OLDID" ]] || fail "r2 is not in the member list"
kill -STOP "${PID[r2]}"
removed_r2() {  # (a failed etcdctl is no answer, not a removal)
  local list
  list=$(etcdctl "${TLS[@]}" --endpoints "$(eps r1 r3 r4 r5)" member list) || return 1
  ! grep -q "^$OLDID, " <<<"$list"
}
wait_for "the leader to remove the stopped r2" 60 removed_r2
grep -h 'msg="membership: remove"' r*.log | grep -q "member=$(printf '%016s' "$OLDID" | tr ' ' 0)" ||
  fail "no leader logged removing r2 ($OLDID)"
kill -CONT "${PID[r2]}"
wait_for "r2 to hear that it is not a member" 60 grep -q 'says this node is not a member' r2.log
wait_for "r2 to step aside" 30 grep -q 'recovery: this member.s data was set aside' r2.log
rejoined_r2() {
  local id
  id=$(member_id_of r2)
  [[ -n "$id" && "$id" != "$OLDID" && "$(voters "$ALL")" == 5 ]]
}
wait_for "r2 to rejoin as a new voter" 120 rejoined_r2
[[ $(compgen -G "data-r2/superseded-*/member" | grep -c .) == 1 ]] ||
  fail "r2's old data is not set aside in data-r2/superseded-*/"
[[ "$(etcdctl "${TLS[@]}" --endpoints "$(ep r2)" get after --print-value-only)" == 1 ]] ||
  fail "r2 does not serve the cluster's data after rejoining"
echo "PASS"
