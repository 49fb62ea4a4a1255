#!/usr/bin/env bash
# etcdctl's own load test (`etcdctl check perf`) against a 3-member cluster on loopback, for e2d
# and, as the baseline in the same run, Debian's etcd 3.4. Both use mutual TLS between members
# and for clients, fsync on, default snapshot settings.
#
#   bench/cluster_perf.sh E2D_BINARY [LOADS...]      (default loads: s m l)
#
# Prints etcdctl's verdict lines per system and load. SYSTEMS="e2d" skips etcd; E2D_FLAGS adds
# flags to every e2d member; KEEP_WORK=1 keeps the logs and data. Build with -c opt first:
#   bazel build -c opt //node:e2d && bench/cluster_perf.sh "$(bazel info -c opt bazel-bin)/node/e2d" s m l
set -euo pipefail
E2D="$(realpath "$1")"; shift
LOADS=(s m l)
[[ $# -gt 0 ]] && LOADS=("$@")
export ETCDCTL_API=3
WORK=$(mktemp -d /tmp/e2d-perf.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  if [[ -n "${KEEP_WORK:-}" ]]; then echo "logs and data kept in $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
cd "$WORK"
"$E2D" pki init >/dev/null && "$E2D" pki gencerts >/dev/null
TLS=(--cacert ca.crt --cert client.crt --key client.key)
EPS="https://127.0.0.1:32379,https://127.0.0.1:32479,https://127.0.0.1:32579"

wait_healthy() {
  for _ in $(seq 300); do
    etcdctl "${TLS[@]}" --endpoints "$EPS" put perf-ready 1 >/dev/null 2>&1 && \
      etcdctl "${TLS[@]}" --endpoints "$EPS" del perf-ready >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "cluster did not come up" >&2; exit 1
}

start_e2d() {
  local ic="a=127.0.0.1:32380,b=127.0.0.1:32480,c=127.0.0.1:32580" i=3
  for n in a b c; do
    "$E2D" run --name $n --data-dir "$WORK/e2d-$n" --host 127.0.0.1 -n 3 --initial-cluster "$ic" \
      --client-addr "127.0.0.1:32${i}79" --peer-addr "127.0.0.1:32${i}80" \
      --ca-cert ca.crt --server-cert server.crt --server-key server.key \
      --peer-cert peer.crt --peer-key peer.key --metrics-addr "127.0.0.1:32${i}81" \
      ${E2D_FLAGS:-} >"$WORK/e2d-$n.log" 2>&1 &
    PIDS+=($!); i=$((i + 1))
  done
}

start_etcd() {
  local ic="a=https://127.0.0.1:32380,b=https://127.0.0.1:32480,c=https://127.0.0.1:32580" i=3
  for n in a b c; do
    etcd --name $n --data-dir "$WORK/etcd-$n" \
      --listen-client-urls "https://127.0.0.1:32${i}79" --advertise-client-urls "https://127.0.0.1:32${i}79" \
      --listen-peer-urls "https://127.0.0.1:32${i}80" --initial-advertise-peer-urls "https://127.0.0.1:32${i}80" \
      --initial-cluster "$ic" --initial-cluster-state new \
      --cert-file server.crt --key-file server.key --client-cert-auth --trusted-ca-file ca.crt \
      --peer-cert-file peer.crt --peer-key-file peer.key --peer-client-cert-auth \
      --peer-trusted-ca-file ca.crt --log-level error >"$WORK/etcd-$n.log" 2>&1 &
    PIDS+=($!); i=$((i + 1))
  done
}

stop_all() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done; PIDS=(); }

for system in ${SYSTEMS:-e2d etcd}; do
  for load in "${LOADS[@]}"; do
    rm -rf "$WORK"/e2d-? "$WORK"/etcd-?
    "start_$system"
    wait_healthy
    echo "== $system, check perf --load=$load"
    etcdctl "${TLS[@]}" --endpoints "$EPS" check perf --load="$load" 2>&1 | tr '\r' '\n' |
      grep -E "PASS|FAIL|writes/s|Slowest|Stddev" || true
    if [[ $system == e2d ]]; then
      echo "leader changes seen per member: $(cat "$WORK"/e2d-?.log | grep -c 'leader changed')" \
        "(3 at start)"
    fi
    stop_all
  done
done
