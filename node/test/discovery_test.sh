#!/usr/bin/env bash
# Multi-process test of peer discovery (node/runtime/discovery.h) with the real e2d and the
# stock etcdctl over mutual TLS, on loopback:
#   1. three members start with the same command line, -n 3 and only --peer-discovery
#      file:PEERS, before the file exists: each logs why discovery fails and meets nobody over
#      gossip; nobody bootstraps a cluster of one;
#   2. the file appears with a bad line: the members log the file and line, and still wait;
#   3. the file is fixed: at their next lookup the members find each other, agree on the
#      cluster over gossip and serve writes as three voters;
#   4. a member restarted with the file gone again rejoins from its own data (discovery is only
#      for finding peers; a restart never needs it);
#   5. the etcd discovery protocol against a real etcd 3.4 serving its v2 keys API: a member
#      whose -n differs from the URL's size says so and waits; three members started with
#      --discovery URL and nothing else register themselves, find each other and bootstrap;
#   6. AWS, against a fake of EC2 and Auto Scaling (node/test/fake_aws.py) that checks every
#      request's Signature Version 4 with botocore: ec2-tags finds the running instances with
#      the tag, and one that appears later; aws-autoscaling-group finds its InService ones; a
#      wrong secret key is refused, and the member logs AWS's error.
# Waits poll a condition with a deadline; nothing relies on a sleep being long enough.
set -euo pipefail

E2D="$(pwd)/$1"
RUNFILES="$(pwd)"
source node/test/lib.sh  # (the runfiles root is the working directory)
export ETCDCTL_API=3
WORK="${TEST_TMPDIR:-$(mktemp -d)}/discovery"
rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK"
fail() { echo "FAIL: $*" >&2; for f in "$WORK"/*.log; do echo "== $f"; tail -30 "$f"; done >&2; exit 1; }

make_pki
NAMES=(d1 d2 d3)
declare -A CPORT PPORT MPORT GPORT PID
alloc_ports "${NAMES[@]}"
# start NAME DISCOVERY-FLAG...: a member told -n 3, its discovery and nothing else about the
# others, looking again every second; the environment passes on (AWS credentials, say).
start() {
  local n="$1"; shift
  run_member "$n" -n 3 "$@" --peer-discovery-interval 1s --health-check-timeout 3s
}
FROM_FILE=(--peer-discovery "file:$WORK/peers")
ALL=""
for n in "${NAMES[@]}"; do ALL="${ALL:+$ALL,}$(ep "$n")"; done
alive_in_gossip() { http_get "${MPORT[$1]}" /metrics | sed -n 's/^e2d_gossip_members{state="alive"} //p'; }
alive_is() { [[ "$(alive_in_gossip "$1")" == "$2" ]]; }  # alive_is NAME N

echo "== 1. no peer file yet: every member logs why, and runs alone"
for n in "${NAMES[@]}"; do start "$n" "${FROM_FILE[@]}"; done
for n in "${NAMES[@]}"; do
  wait_for "$n to log the failed lookup" 30 \
    grep -q "peer discovery failed.*peer file $WORK/peers cannot be read" "$n.log"
done
# Step 3 checks that these log lines do show up once the members find each other.
for n in "${NAMES[@]}"; do
  for m in "${NAMES[@]}"; do
    if grep -q "event=join member=$m " "$n.log"; then fail "$n met $m without discovery"; fi
  done
done
for n in "${NAMES[@]}"; do
  if grep -q 'msg="serving"' "$n.log"; then fail "$n started a cluster"; fi
done
# A backup asked of a member still waiting to bootstrap (systemctl kill -s USR1) is ignored:
# it must not end the process (checked once d1 logged step 2's line, after the signal).
kill -USR1 "${PID[d1]}"

echo "== 2. a bad line: named by file and line"
printf '# the members\n127.0.0.1:%s\nnot an address\n' "${GPORT[d1]}" >peers.tmp
mv peers.tmp peers
for n in "${NAMES[@]}"; do
  wait_for "$n to log the bad line" 30 grep -q "$WORK/peers:3: .*not an address" "$n.log"
done
kill -0 "${PID[d1]}" 2>/dev/null || fail "SIGUSR1 ended d1 while it waited to bootstrap"

echo "== 3. the file is fixed: the members find each other and bootstrap"
for n in "${NAMES[@]}"; do echo "127.0.0.1:${GPORT[$n]}"; done >peers.tmp
mv peers.tmp peers
wait_for "the cluster to accept a write" 60 etcdctl "${TLS[@]}" --endpoints "$ALL" put k v
for n in "${NAMES[@]}"; do
  grep -q "msg=\"peer discovery\".*found=\".*127.0.0.1:${GPORT[d3]}" "$n.log" ||
    fail "$n does not log what it found"
  for m in "${NAMES[@]}"; do
    [[ "$m" == "$n" ]] || grep -q "event=join member=$m " "$n.log" || fail "$n never met $m"
  done
  wait_for "$n to see three alive in gossip" 30 alive_is "$n" 3
done
voters=$(etcdctl "${TLS[@]}" --endpoints "$(ep d1)" member list | grep -c ', started, .*, false$')
[[ "$voters" == 3 ]] || fail "$voters voters, not 3"
[[ $(ls -d data-*/ | wc -l) == 3 ]] || fail "data directories"
CLUSTER=$(etcdctl "${TLS[@]}" --endpoints "$(ep d1)" endpoint status -w fields |
  awk -F' : ' '/"ClusterID"/ {print $2}')
for n in d2 d3; do
  id=$(etcdctl "${TLS[@]}" --endpoints "$(ep "$n")" endpoint status -w fields |
    awk -F' : ' '/"ClusterID"/ {print $2}')
  [[ "$id" == "$CLUSTER" ]] || fail "$n is in cluster $id, d1 in $CLUSTER"
done

echo "== 4. a restart without the peer file rejoins from the member's own data"
rm peers
kill -9 "${PID[d3]}"; wait "${PID[d3]}" 2>/dev/null || true
start d3 "${FROM_FILE[@]}"
wait_for "d3 to serve again" 60 etcdctl "${TLS[@]}" --endpoints "$(ep d3)" get k
[[ "$(etcdctl "${TLS[@]}" --endpoints "$(ep d3)" get k --print-value-only)" == v ]] ||
  fail "d3 lost the write"
etcdctl "${TLS[@]}" --endpoints "$ALL" put k2 v2 | grep -qx OK || fail "write after restart"

echo "== 5. etcd discovery (--discovery URL) with a real etcd serving v2"
EP=$(free_port); EPP=$(free_port)
etcd --name disco --data-dir "$WORK/etcd" --enable-v2 \
  --listen-client-urls "http://127.0.0.1:$EP" --advertise-client-urls "http://127.0.0.1:$EP" \
  --listen-peer-urls "http://127.0.0.1:$EPP" --initial-advertise-peer-urls "http://127.0.0.1:$EPP" \
  --initial-cluster "disco=http://127.0.0.1:$EPP" >etcd.log 2>&1 &
PIDS+=($!)
V2=(env ETCDCTL_API=2 etcdctl --endpoints "http://127.0.0.1:$EP")
wait_for "etcd to serve v2" 30 "${V2[@]}" set /discovery/tok3/_config/size 3
"${V2[@]}" set /discovery/tok5/_config/size 5 >/dev/null
NAMES=(e1 e2 e3 e0)
alloc_ports "${NAMES[@]}"
start_etcd_discovery() { start "$1" --discovery "http://127.0.0.1:$EP/v2/keys/discovery/$2"; }
start_etcd_discovery e0 tok5
wait_for "e0 to say the sizes differ" 30 \
  grep -q "discovery/tok5 is for a cluster of 5 but this member has -n 3" e0.log
kill -9 "${PID[e0]}"; wait "${PID[e0]}" 2>/dev/null || true
[[ -z "$("${V2[@]}" ls /discovery/tok5 2>/dev/null)" ]] || fail "e0 registered despite the size"
for n in e1 e2 e3; do start_etcd_discovery "$n" tok3; done
E=""
for n in e1 e2 e3; do E="${E:+$E,}$(ep "$n")"; done
wait_for "the etcd-discovered cluster to accept a write" 60 etcdctl "${TLS[@]}" --endpoints "$E" put k3 v3
for n in e1 e2 e3; do
  [[ "$("${V2[@]}" get "/discovery/tok3/$n")" == "$n=127.0.0.1:${GPORT[$n]}" ]] ||
    fail "$n's registration: $("${V2[@]}" get "/discovery/tok3/$n" 2>&1)"
done
voters=$(etcdctl "${TLS[@]}" --endpoints "$(ep e1)" member list | grep -c ', started, .*, false$')
[[ "$voters" == 3 ]] || fail "$voters voters, not 3"

echo "== 6. AWS: EC2 tags and an autoscaling group, from a fake that checks signatures"
cat >aws.json <<'JSON'
{"instances": [
  {"id": "i-1", "ip": "10.9.0.1", "state": "running", "tags": {"cluster": "prod"}},
  {"id": "i-2", "ip": "10.9.0.2", "state": "running", "tags": {"cluster": "prod"}},
  {"id": "i-3", "ip": "10.9.0.3", "state": "stopped", "tags": {"cluster": "prod"}},
  {"id": "i-4", "ip": "10.9.0.4", "state": "running", "tags": {"cluster": "test"}}],
 "groups": {"e2d-asg": [["i-1", "InService"], ["i-4", "InService"], ["i-2", "Pending"]]}}
JSON
AP=$(free_port)
python3 "$RUNFILES/node/test/fake_aws.py" "$AP" AKIDTEST secret-1 eu-west-1 "$WORK/aws.json" \
  2>fake_aws.log &
PIDS+=($!)
alloc_ports a1 a2 a3
start_aws() {  # start_aws NAME SECRET SPEC
  AWS_ACCESS_KEY_ID=AKIDTEST AWS_SECRET_ACCESS_KEY="$2" AWS_REGION=eu-west-1 \
    AWS_ENDPOINT_URL="http://127.0.0.1:$AP" start "$1" --peer-discovery "$3"
}
wait_for "the fake AWS to listen" 30 bash -c "exec 3<>/dev/tcp/127.0.0.1/$AP"
start_aws a1 secret-1 ec2-tags:cluster=prod
start_aws a2 secret-1 aws-autoscaling-group:e2d-asg
start_aws a3 wrong-secret ec2-tags:cluster=prod
G1=${GPORT[a1]}
wait_for "a1 to find the tagged running instances" 30 \
  grep -q "found=\"10.9.0.1:$G1,10.9.0.2:$G1\"" a1.log
wait_for "a2 to find the group's InService instances" 30 \
  grep -q "found=\"10.9.0.1:${GPORT[a2]},10.9.0.4:${GPORT[a2]}\"" a2.log
wait_for "a3 to log AWS's refusal" 30 \
  grep -q "peer discovery failed.*DescribeInstances.*HTTP 403: AuthFailure: signature mismatch" a3.log
sed -i 's/"i-3", "ip": "10.9.0.3", "state": "stopped"/"i-3", "ip": "10.9.0.3", "state": "running"/' \
  aws.json
wait_for "a1 to find the instance started later" 30 \
  grep -q "found=\"10.9.0.1:$G1,10.9.0.2:$G1,10.9.0.3:$G1\"" a1.log
# Only a3's requests are refused (a1's and a2's all pass botocore's check).
others=$(grep "refused" fake_aws.log | grep -v "signature mismatch" || true)
[[ -z "$others" ]] || fail "the fake refused requests for another reason: $others"
echo "PASS"
