#!/usr/bin/env bash
# Multi-process test of recovery from the loss of a majority when the newest backup holds more
# than every survivor (node/recovery.h), with the real e2d and the stock etcdctl over mutual
# TLS, on loopback:
#   1. three members bootstrap through gossip (-n 3), backups on (file://), and take writes;
#   2. r3 crashes (kill -9, its disk kept), for well under the health timeout: r1 and r2 go on
#      writing, and their leader writes a backup on demand (SIGUSR1) that holds those writes;
#   3. r1 and r2 die for good with their disks; r3 starts again, alone with less than the
#      backup (a stopped process would not do: the kernel buffers what peers send it);
#   4. r1 and r2 come back empty with the same command lines. r3, the only survivor, reads the
#      newest backup of its cluster, finds that it holds more than its own log, sets its data
#      aside and starts the cluster again alone from the backup; r1 and r2 join it;
#   5. every write reads back, including those r3 never had, and revisions go on from the
#      backup's; r3's old data is kept in superseded-*/ and its pending-restore record is gone;
#   6. r3 restarts from its own data in the restored cluster (no second restore), also with
#      the restore's record left behind (a crash right after the restore), which it removes;
#   7. a machine left with the old data and the restore's record (a crash right after recording
#      it) sets the old data aside and restores the backup when it starts.
# Waits poll a condition with a deadline; nothing relies on a sleep being long enough.
set -euo pipefail

E2D="$(pwd)/$1"
source node/test/lib.sh  # (the runfiles root is the working directory)
export ETCDCTL_API=3
WORK="${TEST_TMPDIR:-$(mktemp -d)}/recovery_backup"
rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK"
fail() { echo "FAIL: $*" >&2; for f in "$WORK"/*.log; do echo "== $f"; tail -30 "$f"; done >&2; exit 1; }

make_pki
NAMES=(r1 r2 r3)
declare -A CPORT PPORT MPORT GPORT PID
alloc_ports "${NAMES[@]}"
SEEDS=$(gossip_seeds "${NAMES[@]}")
# The health timeout is long enough that r3, down in step 2, is never removed meanwhile.
start() {  # start NAME: the same command line for every member
  run_member "$1" -n 3 --bootstrap-addrs "$SEEDS" --health-check-timeout 20s \
    --snapshot-backup-url "file://$WORK/backups" --snapshot-backup-interval 1h --snapshot-encryption
}
holds() {  # holds NAME KEY VALUE: NAME's own store (a serializable read) has KEY=VALUE
  [[ "$(etcdctl "${TLS[@]}" --endpoints "$(ep "$1")" get "$2" --consistency=s --print-value-only)" == "$3" ]]
}

echo "== 1. three members bootstrap through gossip and take writes"
for n in "${NAMES[@]}"; do start "$n"; done
ALL=$(eps "${NAMES[@]}")
wait_for "the cluster to accept a write" 60 etcdctl "${TLS[@]}" --endpoints "$ALL" put boot 1
OLD=$(cluster_of "$(ep r1)")
for i in $(seq 1 10); do
  etcdctl "${TLS[@]}" --endpoints "$ALL" put "k$i" "v$i" | grep -qx OK || fail "put k$i"
done
wait_for "r3 to hold k10" 30 holds r3 k10 v10

echo "== 2. r3 crashes; r1 and r2 write on and back up"
kill -9 "${PID[r3]}"
wait "${PID[r3]}" 2>/dev/null || true
mv r3.log r3.before.log
TWO=$(eps r1 r2)
wait_for "r1 and r2 to accept writes (r3 may have led)" 30 \
  etcdctl "${TLS[@]}" --endpoints "$TWO" put k11 v11
for i in $(seq 12 20); do
  etcdctl "${TLS[@]}" --endpoints "$TWO" put "k$i" "v$i" | grep -qx OK || fail "put k$i"
done
R=$(revision_of_put "$TWO" last 1)
[[ -n "$R" ]] || fail "no revision for the last write"
for n in r1 r2; do wait_for "$n to hold the last write" 30 holds "$n" last 1; done
kill -USR1 "${PID[r1]}" "${PID[r2]}"  # the leader writes one, the follower says who leads
BACKUP="e2d-$(printf '%016x' "$OLD")-$(printf '%020d' "$R").bkp"
wait_for "the backup $BACKUP" 30 test -e "backups/$BACKUP"

echo "== 3. r1 and r2 die with their disks; r3 starts again with less than the backup"
for n in r1 r2; do kill -9 "${PID[$n]}"; wait "${PID[$n]}" 2>/dev/null || true; done
for n in r1 r2; do rm -rf "data-$n"; mv "$n.log" "$n.before.log"; done
start r3
wait_for "r3 to serve its own data" 30 holds r3 k10 v10
holds r3 last 1 && fail "r3 holds the writes made while it was down"

echo "== 4. r1 and r2 come back empty: r3 restores the backup, they join it"
for n in r1 r2; do start "$n"; done
recovered() {
  local c
  c=$(cluster_of "$ALL" 2>/dev/null | head -1) || return 1
  [[ -n "$c" && "$c" != "$OLD" ]] || return 1
  [[ "$(voters "$ALL")" == 3 ]] || return 1
  for n in "${NAMES[@]}"; do [[ "$(cluster_of "$(ep "$n")")" == "$c" ]] || return 1; done
}
wait_for "three voters of one restored cluster" 150 recovered
NEW=$(cluster_of "$(ep r1)")
grep -q "msg=\"recovery: restores a backup\".*the newest backup $BACKUP holds more" r3.log ||
  fail "r3 did not log restoring $BACKUP because it holds more"
grep -q "msg=\"recovery: starting the cluster again alone from a backup\" backup=$BACKUP revision=$R " \
  r3.log || fail "r3 did not log starting again from $BACKUP at revision $R"
grep -q 'msg="recovery: forces a new cluster"' r3.log && fail "r3 forced from its own data"
compgen -G "data-r3/superseded-*/member" >/dev/null || fail "r3's old data is not in data-r3/superseded-*/"
[[ -e data-r3/recovery-restore ]] && fail "r3's pending-restore record was not removed"

echo "== 5. every write reads back, those r3 never had too; revisions go on"
for i in $(seq 1 20); do
  [[ "$(etcdctl "${TLS[@]}" --endpoints "$ALL" get "k$i" --print-value-only)" == "v$i" ]] ||
    fail "k$i does not read back after the restore"
done
R2=$(revision_of_put "$ALL" after 1)
[[ "$R2" == $((R + 1)) ]] || fail "the first write after the restore is at revision $R2, not $((R + 1))"
for n in "${NAMES[@]}"; do wait_for "$n to hold every write" 30 holds "$n" k15 v15; done
echo "restored cluster $NEW (was $OLD) from $BACKUP at revision $R"

echo "== 6. r3 restarts from its own data in the restored cluster"
kill -TERM "${PID[r3]}"
wait "${PID[r3]}" 2>/dev/null || true
mv r3.log r3.before-restart.log
# The restore's record as a crash right after the restored member was recorded leaves it: the
# restore is done, so the start only removes the record.
printf 'e2d-recovery-restore v1\nbackup=%s\nrecovers=%016x\n' "$BACKUP" "$OLD" >data-r3/recovery-restore
start r3
wait_for "r3 to serve again" 60 holds r3 after 1
[[ "$(cluster_of "$(ep r3)")" == "$NEW" ]] || fail "r3 restarted in another cluster"
grep -q 'restarting in the cluster agreed before' r3.log || fail "r3 did not restart from its record"
grep -q 'restored the store from a backup\|starting the cluster again alone' r3.log &&
  fail "r3 restored again on a restart"
[[ $(compgen -G "data-r3/superseded-*" | grep -c .) == 1 ]] || fail "r3 set its data aside again"
[[ -e data-r3/recovery-restore ]] && fail "r3 kept the record of a restore that was done"

echo "== 7. a crash between recording the restore and setting the data aside: the next start finishes it"
# r4, a machine of its own (alone, -n 1), holds a copy of r3's data from before the restore and
# the record of the restore it was told to do, as a crash right after recording it leaves them.
mkdir data-r4
cp -r data-r3/superseded-*/. data-r4/
printf 'e2d-recovery-restore v1\nbackup=%s\nrecovers=%016x\n' "$BACKUP" "$OLD" >data-r4/recovery-restore
alloc_ports r4
run_member r4 -n 1 --bootstrap-addrs "127.0.0.1:${GPORT[r4]}" \
  --snapshot-backup-url "file://$WORK/backups" --snapshot-encryption
wait_for "r4 to serve the backup's data" 60 holds r4 k20 v20
grep -q 'completing an interrupted restore' r4.log || fail "r4 did not say it completed the set-aside"
compgen -G "data-r4/superseded-*/member" >/dev/null || fail "r4 did not set the old data aside"
[[ -e data-r4/recovery-restore ]] && fail "r4's pending-restore record was not removed"
R4=$(revision_of_put "$(ep r4)" after-r4 1)
[[ "$R4" == $((R + 1)) ]] || fail "r4's first write is at revision $R4, not $((R + 1))"
echo "PASS"
