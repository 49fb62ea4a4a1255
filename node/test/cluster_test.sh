#!/usr/bin/env bash
# Multi-process test of the real node: e2d processes on loopback, driven by the stock etcdctl
# (Debian's etcd-client 3.4) over mutual TLS.
#
#   1. one member from `e2d run` with no certificate flags (it makes its own CA): put/get/del,
#      txn, watch with --prev-kv and --rev, leases, compaction errors, endpoint health;
#   2. a client without a certificate, and one with a certificate of another CA, are refused;
#   3. three members: move-leader; a lease kept alive through a follower; kill -9 the leader
#      under a concurrent write load: every acknowledged write is readable afterwards from the
#      survivors and, once it is back, from the killed member;
#   4. every member restarted at once keeps every acknowledged write;
#   5. a member whose peer certificate comes from another CA never joins (it learns nothing);
#   6. etcdctl member remove / add --learner / promote: the dead member is replaced by a new one
#      started with what `member add` printed (--initial-cluster-state existing); it learns the
#      cluster id and the data, is promoted, serves linearizable writes, and the others list it
#      by name from its gossip;
#   7. three members started with the same -n 3 --bootstrap-addrs command line and no
#      --initial-cluster agree on their cluster over gossip (the first one alone waits), restart
#      into it, and a fourth member finds it running and joins it without bootstrapping another,
#      waiting while the cluster is whole; when one member dies for good, the leader removes
#      it after the health timeout, adds the fourth as a learner and promotes it; the
#      leader writes encrypted backups to a file:// directory;
#   8. total loss: every disk of that cluster is gone; three new members with one command line
#      (gossip bootstrap, --restore-backup latest) skip a tampered newer-looking backup, agree
#      on the newest good one, serve its data under a new cluster id, go on from its revision,
#      and a restarted member keeps its own data;
#   9. one member restores a backup file given by path.
# Gossip runs among the members (sealed with a key derived from the CA key): each sees the
# others alive, and sees the killed leader fail.
#
# Waits poll a condition with a deadline; nothing relies on a sleep being long enough.
set -euo pipefail

E2D="$(pwd)/$1"
source node/test/lib.sh  # (the runfiles root is the working directory)
export ETCDCTL_API=3
WORK="${TEST_TMPDIR:-$(mktemp -d)}/cluster"
rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK"
fail() { echo "FAIL: $*" >&2; for f in "$WORK"/*.log; do echo "== $f"; tail -20 "$f"; done >&2; exit 1; }

echo "== 1. a single member with no certificate flags"
P1=$(free_port); P2=$(free_port); P3=$(free_port); P4=$(free_port)
mkdir single && (cd single && exec "$E2D" run --name solo --host 127.0.0.1 \
  --client-addr 127.0.0.1:$P1 --peer-addr 127.0.0.1:$P2 --metrics-addr 127.0.0.1:$P3 \
  --gossip-addr 127.0.0.1:$P4 >../solo.log 2>&1) &
PIDS+=($!)
S=(etcdctl --endpoints "https://127.0.0.1:$P1" --cacert single/data/pki/ca.crt
   --cert single/data/pki/client.crt --key single/data/pki/client.key)
wait_for "the single member to serve" 30 "${S[@]}" endpoint health
http_get "$P3" /health | grep -q '200 OK' || fail "/health: $(http_get "$P3" /health)"
"${S[@]}" put greeting hello | grep -qx OK || fail "put"
http_get "$P3" /metrics | grep -q '^e2d_raft_is_leader 1' || fail "/metrics: no leader gauge"
# Gossip runs with the key of the CA made on first start: the member sees itself alive.
http_get "$P3" /metrics | grep -q '^e2d_gossip_members{state="alive"} 1' ||
  fail "/metrics: gossip does not see the member alive"
[[ "$("${S[@]}" get greeting --print-value-only)" == hello ]] || fail "get after put"
"${S[@]}" put a/1 one >/dev/null && "${S[@]}" put a/2 two >/dev/null
[[ "$("${S[@]}" get a/ --prefix --keys-only | grep -c .)" == 2 ]] || fail "get --prefix"
[[ "$("${S[@]}" get a/ --prefix --limit 1 -w fields | grep '"Count"')" == *": 2" ]] ||
  fail "count"
REV=$("${S[@]}" get greeting -w fields | awk -F' : ' '/"ModRevision"/ {print $2}')
out=$("${S[@]}" txn <<TXN
mod("greeting") = "$REV"

put greeting bonjour

put greeting never

TXN
)
[[ "$out" == SUCCESS* ]] || fail "txn compare on mod revision: $out"
[[ "$("${S[@]}" get greeting --print-value-only)" == bonjour ]] || fail "txn put"
# A watch from an old revision replays history with previous values.
timeout 10 "${S[@]}" watch greeting --rev "$REV" --prev-kv >watch.out 2>&1 &
WATCH=$!
wait_for "the watch to replay" 10 grep -q bonjour watch.out
kill "$WATCH" 2>/dev/null || true
grep -q hello watch.out || fail "watch --prev-kv shows no previous value: $(cat watch.out)"
# Leases: keys go with a revoked lease.
LEASE=$("${S[@]}" lease grant 60 | awk '{print $2}')
"${S[@]}" put --lease="$LEASE" leased v >/dev/null
"${S[@]}" lease timetolive "$LEASE" --keys | grep -q leased || fail "timetolive --keys"
"${S[@]}" lease keep-alive --once "$LEASE" | grep -q "keepalived with TTL" || fail "keep-alive"
"${S[@]}" lease revoke "$LEASE" >/dev/null
[[ -z "$("${S[@]}" get leased)" ]] || fail "a key outlived its revoked lease"
"${S[@]}" lease timetolive "$LEASE" | grep -q "already expired" || fail "revoked lease ttl"
# etcd's errors, by their texts.
"${S[@]}" del a/ --prefix | grep -qx 2 || fail "del --prefix"
"${S[@]}" compaction "$REV" >/dev/null
err=$("${S[@]}" get greeting --rev 1 2>&1 || true)
[[ "$err" == *"required revision has been compacted"* ]] || fail "compacted read: $err"
err=$("${S[@]}" put "" x 2>&1 || true)
[[ "$err" == *"key is not provided"* ]] || fail "empty key: $err"

echo "== 2. clients without a certificate, or with another CA's, are refused"
mkdir other && "$E2D" pki init --ca-cert other/ca.crt --ca-key other/ca.key >/dev/null &&
  "$E2D" pki gencerts --ca-cert other/ca.crt --ca-key other/ca.key --output-dir other >/dev/null
if etcdctl --endpoints "https://127.0.0.1:$P1" --cacert single/data/pki/ca.crt \
    --dial-timeout 2s --command-timeout 3s get greeting >/dev/null 2>&1; then
  fail "a client without a certificate was served"
fi
if etcdctl --endpoints "https://127.0.0.1:$P1" --cacert single/data/pki/ca.crt \
    --cert other/client.crt --key other/client.key \
    --dial-timeout 2s --command-timeout 3s get greeting >/dev/null 2>&1; then
  fail "a client with another CA's certificate was served"
fi
"${S[@]}" get greeting >/dev/null || fail "the member stopped serving good clients"
# etcdctl snapshot save checks the stream's shape (512-byte blocks and a SHA-256 trailer).
"${S[@]}" snapshot save solo.snap | grep -q "Snapshot saved at solo.snap" || fail "snapshot save"

echo "== 3. three members, kill -9 of the leader under a write load"
"$E2D" pki init --ca-cert ca.crt --ca-key ca.key >/dev/null
"$E2D" pki gencerts --ca-cert ca.crt --ca-key ca.key --output-dir . >/dev/null
declare -A CPORT PPORT PID
NAMES=(a b c)
declare -A MPORT GPORT
alloc_ports "${NAMES[@]}"
IC="a=127.0.0.1:${PPORT[a]},b=127.0.0.1:${PPORT[b]},c=127.0.0.1:${PPORT[c]}"
SEEDS="127.0.0.1:${GPORT[a]},127.0.0.1:${GPORT[b]},127.0.0.1:${GPORT[c]}"
# gossip_alive NAME N: NAME's gossip holds exactly N members alive.
gossip_alive() { http_get "${MPORT[$1]}" /metrics | grep -qx "e2d_gossip_members{state=\"alive\"} $2"; }
start() {  # start NAME [peer cert and CA key prefix]
  local n="$1" pp="${2:-}"
  "$E2D" run --name "$n" --data-dir "data-$n" --host 127.0.0.1 -n 3 --initial-cluster "$IC" \
    --client-addr "127.0.0.1:${CPORT[$n]}" --peer-addr "127.0.0.1:${PPORT[$n]}" \
    --metrics-addr "127.0.0.1:${MPORT[$n]}" --ca-cert ca.crt --server-cert server.crt --server-key server.key \
    --peer-cert "${pp}peer.crt" --peer-key "${pp}peer.key" --ca-key "${pp}ca.key" \
    --gossip-addr "127.0.0.1:${GPORT[$n]}" --bootstrap-addrs "$SEEDS" \
    --election-timeout 500ms >>"$n.log" 2>&1 &
  PID[$n]=$!
  PIDS+=($!)
}
TLS=(--cacert ca.crt --cert client.crt --key client.key)
ALL="$(ep a),$(ep b),$(ep c)"
for n in "${NAMES[@]}"; do start "$n"; done
wait_for "the cluster to accept a write" 30 etcdctl "${TLS[@]}" --endpoints "$ALL" put boot 1
leader() {
  for n in "${NAMES[@]}"; do
    if etcdctl "${TLS[@]}" --endpoints "$(ep "$n")" --command-timeout 2s endpoint status \
        2>/dev/null | awk -F', ' '{print $5}' | grep -qx true; then
      echo "$n"; return 0
    fi
  done
  return 1
}
wait_for "a leader" 30 leader
for n in "${NAMES[@]}"; do wait_for "$n to see 3 members alive over gossip" 30 gossip_alive "$n" 3; done
L=$(leader)
echo "leader: $L"
# move-leader: hand leadership to another member, then find the new leader again.
for n in "${NAMES[@]}"; do [[ $n == "$L" ]] || T=$n; done
TID=$(etcdctl "${TLS[@]}" --endpoints "$(ep "$T")" endpoint status | awk -F', ' '{print $2}')
etcdctl "${TLS[@]}" --endpoints "$ALL" move-leader "$TID" | grep -q "Leadership transferred" ||
  fail "move-leader to $T"
[[ "$(leader)" == "$T" ]] || fail "move-leader reported success but $T does not lead"
L=$T
# A lease kept alive through a follower (renewed through the log).
for n in "${NAMES[@]}"; do [[ $n == "$L" ]] || F=$n; done
LEASE=$(etcdctl "${TLS[@]}" --endpoints "$(ep "$F")" lease grant 30 | awk '{print $2}')
etcdctl "${TLS[@]}" --endpoints "$(ep "$F")" lease keep-alive --once "$LEASE" |
  grep -q "keepalived with TTL(30)" || fail "keep-alive through follower $F"
etcdctl "${TLS[@]}" --endpoints "$(ep "$F")" lease revoke "$LEASE" >/dev/null
http_get "${MPORT[$L]}" /metrics | grep -q '^e2d_raft_is_leader 1' || fail "/metrics of $L"
# The load: sequential puts through every endpoint; a put is acknowledged when etcdctl says OK.
load() {
  local i=0
  while [[ ! -e stop-load ]]; do
    i=$((i + 1))
    if etcdctl "${TLS[@]}" --endpoints "$ALL" --command-timeout 3s put "load/$i" "v$i" \
        2>/dev/null | grep -qx OK; then
      echo "$i" >>acked
    fi
  done
}
: >acked
load &
LOAD=$!
wait_for "20 acknowledged writes" 60 bash -c '[[ $(wc -l <acked) -ge 20 ]]'
kill -9 "${PID[$L]}"
echo "killed $L after $(wc -l <acked) acknowledged writes"
BEFORE=$(wc -l <acked)
wait_for "20 more acknowledged writes without $L" 60 \
  bash -c "[[ \$(wc -l <acked) -ge $((BEFORE + 20)) ]]"
touch stop-load
wait "$LOAD"
echo "$(wc -l <acked) writes acknowledged"
SURVIVORS=""
for n in "${NAMES[@]}"; do [[ $n == "$L" ]] || SURVIVORS+="$(ep "$n"),"; done
check_acked() {  # check_acked ENDPOINTS [extra etcdctl flags]: every acked write is there
  local eps="$1"; shift
  etcdctl "${TLS[@]}" --endpoints "$eps" get load/ --prefix "$@" -w fields 2>/dev/null |
    awk -F' : ' '/"Key"/ {k=$2} /"Value"/ {print k, $2}' | tr -d '"' | sort >have
  while read -r i; do echo "load/$i v$i"; done <acked | sort >want
  comm -23 want have >missing
  [[ ! -s missing ]]
}
check_acked "${SURVIVORS%,}" || fail "acknowledged writes missing: $(head -5 missing)"
for n in "${NAMES[@]}"; do
  [[ $n == "$L" ]] || wait_for "$n to see $L fail over gossip" 30 gossip_alive "$n" 2
done
start "$L"
wait_for "the restarted member to catch up" 60 check_acked "$(ep "$L")" --consistency=s

echo "== 4. every member restarted at once keeps every acknowledged write"
for n in "${NAMES[@]}"; do kill "${PID[$n]}"; done
for n in "${NAMES[@]}"; do wait "${PID[$n]}" 2>/dev/null || true; done
for n in "${NAMES[@]}"; do start "$n"; done
wait_for "the restarted cluster to serve every acknowledged write" 60 check_acked "$ALL"

echo "== 5. a member with another CA's peer certificate never joins"
kill -9 "${PID[c]}"
wait "${PID[c]}" 2>/dev/null || true
rm -rf data-c
start c other/
# (c may have led: a write can be lost with it and time out, so retry until a and b take one.)
wait_for "a and b to accept writes without c" 30 \
  etcdctl "${TLS[@]}" --endpoints "$(ep a),$(ep b)" put after-foreign-c 1
# c serves its clients (its server certificate is good) but learns nothing from a and b.
wait_for "c to serve its clients" 30 etcdctl "${TLS[@]}" --endpoints "$(ep c)" \
  --command-timeout 2s get x --consistency=s
status=$(etcdctl "${TLS[@]}" --endpoints "$(ep c)" endpoint status 2>&1 || true)
[[ "$status" == *"no leader"* ]] || fail "c has a leader with a foreign peer certificate: $status"
[[ -z "$(etcdctl "${TLS[@]}" --endpoints "$(ep c)" get boot --consistency=s)" ]] ||
  fail "c received data with a foreign peer certificate"

echo "== 6. replace c: member remove, member add --learner, start with --initial-cluster-state existing, promote"
kill -9 "${PID[c]}"
wait "${PID[c]}" 2>/dev/null || true
AB="$(ep a),$(ep b)"
CID=$(etcdctl "${TLS[@]}" --endpoints "$AB" member list | awk -F', ' -v p="${PPORT[c]}" \
  '$4 == "https://127.0.0.1:" p {print $1}')
[[ -n "$CID" ]] || fail "c is not in the member list"
etcdctl "${TLS[@]}" --endpoints "$AB" member remove "$CID" | grep -q "Member *$CID removed" ||
  fail "member remove c"
# The change is acknowledged once the leader applied it; the other member (etcdctl may ask
# either) lists it once it applied it too, as in etcd, whose member list is served locally.
c_gone() { ! etcdctl "${TLS[@]}" --endpoints "$1" member list | grep -q "^$CID, "; }
for n in a b; do
  wait_for "$n to drop c from its member list" 10 c_gone "$(ep "$n")"
done
out=$(etcdctl "${TLS[@]}" --endpoints "$AB" member remove "$CID" 2>&1 || true)
[[ "$out" == *"member not found"* ]] || fail "removing c twice was not refused as etcd does: $out"
CPORT[d]=$(free_port); PPORT[d]=$(free_port); MPORT[d]=$(free_port)
etcdctl "${TLS[@]}" --endpoints "$AB" member add d --learner \
  --peer-urls "https://127.0.0.1:${PPORT[d]}" >added || fail "member add d: $(cat added)"
DID=$(awk '/^Member/ {print $2}' added)
IC_D=$(sed -n 's/^ETCD_INITIAL_CLUSTER="\(.*\)"$/\1/p' added)
[[ -n "$DID" && "$IC_D" == *"d=https://127.0.0.1:${PPORT[d]}"* ]] || fail "member add printed: $(cat added)"
grep -qx 'ETCD_INITIAL_CLUSTER_STATE="existing"' added || fail "member add printed: $(cat added)"
out=$(etcdctl "${TLS[@]}" --endpoints "$AB" member add d2 \
  --peer-urls "https://127.0.0.1:${PPORT[d]}" 2>&1 || true)
[[ "$out" == *"Peer URLs already exists"* ]] || fail "a second member at d's address: $out"
IC="$IC_D"
"$E2D" run --name d --data-dir data-d --host 127.0.0.1 --initial-cluster "$IC_D" \
  --initial-cluster-state existing --client-addr "127.0.0.1:${CPORT[d]}" \
  --peer-addr "127.0.0.1:${PPORT[d]}" --metrics-addr "127.0.0.1:${MPORT[d]}" --ca-cert ca.crt \
  --server-cert server.crt --server-key server.key --peer-cert peer.crt --peer-key peer.key \
  --ca-key ca.key --gossip-addr "127.0.0.1:$(free_port)" --bootstrap-addrs "127.0.0.1:${GPORT[a]}" \
  --election-timeout 500ms >>d.log 2>&1 &
PID[d]=$!
PIDS+=($!)
# The learner catches up (a serializable read on d sees what a and b hold) ...
wait_for "d to catch up" 60 bash -c "etcdctl ${TLS[*]} --endpoints $(ep d) get after-foreign-c \
  --consistency=s --print-value-only | grep -qx 1"
check_acked "$(ep d)" --consistency=s || fail "d lacks acknowledged writes"
# ... reports the cluster's id, and is promoted once in sync.
[[ "$(cluster_of "$(ep d)")" == "$(cluster_of "$(ep a)")" ]] || fail "d reports another cluster id"
wait_for "d to be promoted" 30 etcdctl "${TLS[@]}" --endpoints "$AB" member promote "$DID"
d_voter() { etcdctl "${TLS[@]}" --endpoints "$1" member list | grep -q "^$DID, .*, false$"; }
for n in a b; do
  wait_for "$n to list d as a voter" 10 d_voter "$(ep "$n")"
done
# Each change is logged, with ids as etcdctl shows them (zero-padded to 16 digits).
grep -q "msg=\"membership changed\" .*voters=[0-9a-f,]*$(printf '%016x' "0x$DID")" a.log ||
  fail "a did not log d's promotion"
# a and b did not start with d: they name it, and know its client URL, from its gossip.
d_listed() {
  etcdctl "${TLS[@]}" --endpoints "$(ep a)" member list |
    grep -qx "$DID, started, d, https://127.0.0.1:${PPORT[d]}, $(ep d), false"
}
wait_for "a to list d by name with its client URL" 30 d_listed
etcdctl "${TLS[@]}" --endpoints "$(ep d)" put via-d 1 | grep -qx OK || fail "a write through d"
[[ "$(etcdctl "${TLS[@]}" --endpoints "$(ep a)" get via-d --print-value-only)" == 1 ]] ||
  fail "a does not see the write made through d"
# With c gone for good, a, b and d make the quorum: d's vote counts.
kill -9 "${PID[b]}"
wait "${PID[b]}" 2>/dev/null || true
wait_for "a and d to accept a write without b" 30 \
  etcdctl "${TLS[@]}" --endpoints "$(ep a),$(ep d)" put without-b 1

echo "== 7. three members bootstrap through gossip alone (-n 3 --bootstrap-addrs, no --initial-cluster)"
for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
G=(g1 g2 g3)
alloc_ports "${G[@]}" g4
GSEEDS="127.0.0.1:${GPORT[g1]},127.0.0.1:${GPORT[g2]},127.0.0.1:${GPORT[g3]}"
gstart() {  # gstart NAME: the same command line for every member, no --initial-cluster
  local n="$1"
  "$E2D" run --name "$n" --data-dir "data-$n" --host 127.0.0.1 -n 3 --bootstrap-addrs "$GSEEDS" \
    --client-addr "127.0.0.1:${CPORT[$n]}" --peer-addr "127.0.0.1:${PPORT[$n]}" \
    --metrics-addr "127.0.0.1:${MPORT[$n]}" --gossip-addr "127.0.0.1:${GPORT[$n]}" \
    --ca-cert ca.crt --ca-key ca.key --server-cert server.crt --server-key server.key \
    --peer-cert peer.crt --peer-key peer.key --election-timeout 500ms \
    --snapshot-backup-url "file://$WORK/backups" --snapshot-backup-interval 1s \
    --snapshot-encryption --health-check-interval 500ms --health-check-timeout 3s \
    --restore-backup latest >>"$n.log" 2>&1 &
  PID[$n]=$!
  PIDS+=($!)
}
# The first member alone waits (a cluster of one is never bootstrapped against itself) ...
gstart g1
wait_for "g1 to wait for the others" 30 grep -q 'sees 1 of the 3 members' g1.log
# ... until the other two come.
gstart g2
gstart g3
GALL="$(ep g1),$(ep g2),$(ep g3)"
wait_for "the gossip-bootstrapped cluster to accept a write" 60 \
  etcdctl "${TLS[@]}" --endpoints "$GALL" put gboot 1
GCID=$(cluster_of "$(ep g1)")
# The unit-file flag --restore-backup latest, with no backup yet: the first cluster starts empty.
grep -q "no backup to restore: a new cluster starts empty" g1.log ||
  fail "g1 did not start empty with no backup to restore"
for n in g2 g3; do
  [[ "$(cluster_of "$(ep "$n")")" == "$GCID" ]] || fail "$n reports another cluster id"
  [[ "$(etcdctl "${TLS[@]}" --endpoints "$(ep "$n")" get gboot --print-value-only)" == 1 ]] ||
    fail "$n does not see the write"
done
list=$(etcdctl "${TLS[@]}" --endpoints "$(ep g2)" member list)
[[ $(grep -c . <<<"$list") == 3 ]] || fail "member list: $list"
for n in "${G[@]}"; do
  grep -q ", started, $n, https://127.0.0.1:${PPORT[$n]}, $(ep "$n"), false$" <<<"$list" ||
    fail "the member list lacks $n: $list"
done
# The leader writes encrypted backups of the store (every second while it changes).
has_backup() { compgen -G "$WORK/backups/e2d-*.bkp" >/dev/null; }
wait_for "a backup file" 30 has_backup
for f in "$WORK"/backups/e2d-*.bkp; do
  ! grep -q gboot "$f" || fail "the backup $f holds the key gboot in plaintext"
done
grep -q 'msg="backup written"' g1.log g2.log g3.log || fail "no member logged its backup"
# Restarted with the same command line, every member comes back to the same cluster and data.
for n in "${G[@]}"; do kill "${PID[$n]}"; done
for n in "${G[@]}"; do wait "${PID[$n]}" 2>/dev/null || true; done
for n in "${G[@]}"; do gstart "$n"; done
wait_for "the restarted cluster to serve gboot" 60 bash -c "etcdctl ${TLS[*]} --endpoints $GALL \
  get gboot --print-value-only | grep -qx 1"
grep -q "restarting in the cluster agreed before" g1.log || fail "g1 did not restart from its record"
[[ "$(cluster_of "$(ep g3)")" == "$GCID" ]] || fail "the restarted cluster has another id"
# A fourth member with the same flags finds the cluster running: it does not bootstrap another
# one, but joins it and waits: the cluster has its 3 members.
gstart g4
wait_for "g4 to see the running cluster" 30 grep -q 'already runs cluster' g4.log
wait_for "g4 to wait for the cluster" 30 grep -q '"serving" name=g4' g4.log
[[ $(etcdctl "${TLS[@]}" --endpoints "$(ep g1)" member list | grep -c .) == 3 ]] ||
  fail "g4 changed the membership"
# g3 dies for good. Once gossip and Raft have not heard from it for the health timeout (3 s
# here), the leader removes it, adds g4 as a learner, and promotes it once in sync.
kill -9 "${PID[g3]}"
wait "${PID[g3]}" 2>/dev/null || true
replaced() {
  local list
  list=$(etcdctl "${TLS[@]}" --endpoints "$(ep g1),$(ep g2)" member list) || return 1
  [[ $(grep -c . <<<"$list") == 3 ]] && ! grep -q ", g3, " <<<"$list" &&
    grep -q ", started, g4, https://127.0.0.1:${PPORT[g4]}, $(ep g4), false$" <<<"$list"
}
wait_for "the leader to replace g3 with g4" 60 replaced
grep -h 'msg="membership: remove"' g1.log g2.log | grep -q "health timeout" ||
  fail "no leader logged why it removed g3"
grep -hq 'msg="membership: add learner"' g1.log g2.log || fail "no leader logged adding g4"
grep -hq 'msg="membership: promote"' g1.log g2.log || fail "no leader logged promoting g4"
[[ "$(cluster_of "$(ep g4)")" == "$GCID" ]] || fail "g4 reports another cluster id"
etcdctl "${TLS[@]}" --endpoints "$(ep g4)" put via-g4 1 | grep -qx OK || fail "a write through g4"
GALL="$(ep g1),$(ep g2),$(ep g4)"

echo "== 8. total loss: three new members bootstrap through gossip from the newest backup that checks out"
R=$(revision_of_put "$GALL" gfinal 1)
[[ -n "$R" ]] || fail "no revision for the last write"
GHEX=$(printf '%016x' "$GCID")
LAST="$WORK/backups/e2d-$GHEX-$(printf '%020d' "$R").bkp"
wait_for "a backup of revision $R" 30 test -e "$LAST"
for n in g1 g2 g4; do kill -9 "${PID[$n]}" 2>/dev/null || true; done
for n in g1 g2 g4; do wait "${PID[$n]}" 2>/dev/null || true; done
rm -rf data-g1 data-g2 data-g3 data-g4
# A newer-looking backup that was tampered with is refused, and the one before it restored.
TAMPERED="$WORK/backups/e2d-$GHEX-$(printf '%020d' $((R + 1000))).bkp"
cp "$LAST" "$TAMPERED"
printf '\xff' | dd of="$TAMPERED" bs=1 seek=200 conv=notrunc status=none
H=(h1 h2 h3)
alloc_ports "${H[@]}"
HSEEDS="127.0.0.1:${GPORT[h1]},127.0.0.1:${GPORT[h2]},127.0.0.1:${GPORT[h3]}"
# The members' command line, the same for all (as in a unit file): gossip bootstrap, and
# --restore-backup latest, which only matters to a cluster that starts with no member's data.
hstart() {
  local n="$1"
  "$E2D" run --name "$n" --data-dir "data-$n" --host 127.0.0.1 -n 3 --bootstrap-addrs "$HSEEDS" \
    --client-addr "127.0.0.1:${CPORT[$n]}" --peer-addr "127.0.0.1:${PPORT[$n]}" \
    --metrics-addr "127.0.0.1:${MPORT[$n]}" --gossip-addr "127.0.0.1:${GPORT[$n]}" \
    --ca-cert ca.crt --ca-key ca.key --server-cert server.crt --server-key server.key \
    --peer-cert peer.crt --peer-key peer.key --election-timeout 500ms \
    --snapshot-backup-url "file://$WORK/backups" --snapshot-backup-interval 1s \
    --snapshot-encryption --restore-backup latest >>"$n.log" 2>&1 &
  PID[$n]=$!
  PIDS+=($!)
}
for n in "${H[@]}"; do hstart "$n"; done
HALL="$(ep h1),$(ep h2),$(ep h3)"
wait_for "the restored cluster to serve gfinal" 60 bash -c "etcdctl ${TLS[*]} --endpoints $HALL \
  get gfinal --print-value-only | grep -qx 1"
for n in "${H[@]}"; do
  grep -q "backup refused, trying an older one.* backup=$(basename "$TAMPERED")" "$n.log" ||
    fail "$n did not refuse the tampered backup"
  grep -q "restored the store from a backup.* backup=$(basename "$LAST") revision=$R" "$n.log" ||
    fail "$n did not restore $(basename "$LAST"): $(grep -i restor "$n.log")"
done
[[ "$(etcdctl "${TLS[@]}" --endpoints "$HALL" get gboot --print-value-only)" == 1 ]] ||
  fail "the restored cluster lacks gboot"
HCID=$(cluster_of "$(ep h1)")
[[ "$HCID" != "$GCID" ]] || fail "the restored cluster kept the lost cluster's id"
# Revisions go on from the backup's: a client never sees them go back.
R2=$(revision_of_put "$HALL" hnew 1)
[[ "$R2" == $((R + 1)) ]] || fail "the first write after the restore got revision $R2, not $((R + 1))"
# The restored cluster writes its own backups; restarted with the same command line, a member
# keeps its own data: the newer backups of its own cluster are not restored over it.
HHEX=$(printf '%016x' "$HCID")
has_h_backup() { compgen -G "$WORK/backups/e2d-$HHEX-*.bkp" >/dev/null; }
wait_for "a backup of the restored cluster" 30 has_h_backup
etcdctl "${TLS[@]}" --endpoints "$HALL" put after-h-backup 1 >/dev/null
kill "${PID[h1]}" && wait "${PID[h1]}" 2>/dev/null || true
hstart h1
wait_for "h1 to serve again" 60 bash -c "etcdctl ${TLS[*]} --endpoints $(ep h1) \
  get after-h-backup --consistency=s --print-value-only | grep -qx 1"
[[ "$(cluster_of "$(ep h1)")" == "$HCID" ]] || fail "h1 restarted into another cluster"
[[ $(grep -c "restored the store from a backup" h1.log) == 1 ]] || fail "h1 restored twice"

echo "== 9. a single member restores a backup file given by path"
S1=s1
CPORT[$S1]=$(free_port); PPORT[$S1]=$(free_port)
"$E2D" run --name s1 --data-dir data-s1 --host 127.0.0.1 --client-addr "127.0.0.1:${CPORT[$S1]}" \
  --peer-addr "127.0.0.1:${PPORT[$S1]}" --metrics-addr "" --ca-cert ca.crt --ca-key ca.key \
  --server-cert server.crt --server-key server.key --peer-cert peer.crt --peer-key peer.key \
  --restore-backup "$LAST" >>s1.log 2>&1 &
PID[s1]=$!
PIDS+=($!)
wait_for "s1 to serve the backup's data" 30 bash -c "etcdctl ${TLS[*]} --endpoints $(ep s1) \
  get gfinal --print-value-only | grep -qx 1"
[[ -z "$(etcdctl "${TLS[@]}" --endpoints "$(ep s1)" get hnew --print-value-only)" ]] ||
  fail "s1 holds a write made after its backup"
echo PASS
