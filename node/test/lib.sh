# Shared helpers of the multi-process tests (sourced; each test defines fail MESSAGE itself).
# Waits poll a condition with a deadline: nothing relies on a sleep being long enough.

# Every process a test started (PIDS+=($!)) is killed when the test ends, however it ends.
PIDS=()
# The ports free_port handed out, one per line (a file: free_port runs in $(...) subshells).
GIVEN_PORTS=$(mktemp)
cleanup() {
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -f "$GIVEN_PORTS"
}
trap cleanup EXIT

# wait_for DESCRIPTION SECONDS COMMAND...: polls COMMAND until it succeeds.
wait_for() {
  local what="$1" secs="$2"; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    [[ $SECONDS -lt $deadline ]] || fail "timed out after ${secs}s waiting for: $what"
    sleep 0.1
  done
}

# A free loopback port (nothing accepts on it now), below Linux's ephemeral range (32768-60999)
# so that no outgoing connection on the machine holds it, and never one this test was given
# before (ports are handed out before anything listens on them: twenty draws from 12000 ports
# would repeat one in about 1.6% of runs).
free_port() {
  local p
  while true; do
    p=$((20000 + RANDOM % 12000))
    grep -qx "$p" "$GIVEN_PORTS" && continue
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p" >>"$GIVEN_PORTS"
      echo "$p"
      return
    fi
  done
}

# http_get PORT PATH: the whole HTTP response from 127.0.0.1:PORT.
http_get() {
  exec 3<>"/dev/tcp/127.0.0.1/$1"
  printf 'GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n' "$2" >&3
  cat <&3
  exec 3<&-
}

# etcdctl helpers; they use the test's TLS array (the client certificate flags) and its CPORT
# map (each member's client port, by name).
ep() { echo "https://127.0.0.1:${CPORT[$1]}"; }  # ep NAME: its client URL
eps() { local out="" n; for n in "$@"; do out="${out:+$out,}$(ep "$n")"; done; echo "$out"; }
cluster_of() {  # cluster_of ENDPOINTS: the cluster id (decimal) the first one reports
  etcdctl "${TLS[@]}" --endpoints "$1" endpoint status -w fields | awk -F' : ' '/"ClusterID"/ {print $2}'
}
voters() {  # voters ENDPOINTS: the started voters the member list shows
  etcdctl "${TLS[@]}" --endpoints "$1" member list | grep -c ', started, .*, false$'
}
revision_of_put() {  # revision_of_put ENDPOINTS KEY VALUE: the revision the put got
  etcdctl "${TLS[@]}" --endpoints "$1" put "$2" "$3" -w json | sed -n 's/.*"revision":\([0-9]*\).*/\1/p'
}

# Members on loopback. The test declares the maps (declare -A CPORT PPORT MPORT GPORT PID),
# sets E2D, and has the PKI that e2d pki init and gencerts write in the working directory.
alloc_ports() {  # alloc_ports NAME...: client, peer, metrics and gossip ports for each
  local n
  for n in "$@"; do
    CPORT[$n]=$(free_port); PPORT[$n]=$(free_port); MPORT[$n]=$(free_port); GPORT[$n]=$(free_port)
  done
}
# run_member NAME FLAG...: `e2d run` of member NAME in the background, on its ports, with the
# test PKI, a 500 ms election timeout and health checks every 500 ms, then FLAG...; its log
# goes to NAME.log, its pid to PID[NAME] (and PIDS, killed at the end).
run_member() {
  local n="$1"; shift
  "$E2D" run --name "$n" --data-dir "data-$n" --host 127.0.0.1 \
    --client-addr "127.0.0.1:${CPORT[$n]}" --peer-addr "127.0.0.1:${PPORT[$n]}" \
    --metrics-addr "127.0.0.1:${MPORT[$n]}" --gossip-addr "127.0.0.1:${GPORT[$n]}" \
    --ca-cert ca.crt --ca-key ca.key --server-cert server.crt --server-key server.key \
    --peer-cert peer.crt --peer-key peer.key --election-timeout 500ms \
    --health-check-interval 500ms "$@" >>"$n.log" 2>&1 &
  PID[$n]=$!
  PIDS+=($!)
}

# make_pki: the cluster CA and its server, peer and client certificates in the working
# directory (what run_member and TLS use), and the etcdctl flags in TLS.
make_pki() {
  "$E2D" pki init --ca-cert ca.crt --ca-key ca.key >/dev/null
  "$E2D" pki gencerts --ca-cert ca.crt --ca-key ca.key --output-dir . >/dev/null
  TLS=(--cacert ca.crt --cert client.crt --key client.key)
}
# gossip_seeds NAME...: their gossip addresses, comma-separated (for --bootstrap-addrs).
gossip_seeds() { local out="" n; for n in "$@"; do out="${out:+$out,}127.0.0.1:${GPORT[$n]}"; done; echo "$out"; }
