#!/usr/bin/env bash
# The e2d command line refuses bad input with one clear line and a non-zero exit, and leaves the
# data directory as it was: unknown flags, bad values, a non-loopback plaintext listener,
# missing, unreadable or mismatched certificates, a port in use, another cluster's data.
set -euo pipefail

E2D="$(pwd)/$1"
source node/test/lib.sh  # (the runfiles root is the working directory)
WORK="${TEST_TMPDIR:-$(mktemp -d)}/cli"
rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK"
fail() { echo "FAIL: $*" >&2; exit 1; }

# expect CODE PATTERN ARGS...: e2d ARGS exits CODE and its stderr is one line matching PATTERN.
expect() {
  local code="$1" pattern="$2"; shift 2
  local rc=0
  "$E2D" "$@" >out 2>err || rc=$?
  [[ $rc == "$code" ]] || fail "e2d $* exited $rc, not $code: $(cat err)"
  [[ $(wc -l <err) == 1 ]] || fail "e2d $* printed $(wc -l <err) lines: $(cat err)"
  grep -q -- "$pattern" err || fail "e2d $* said \"$(cat err)\", not /$pattern/"
}

"$E2D" pki init >/dev/null && "$E2D" pki gencerts >/dev/null
mkdir other && "$E2D" pki init --ca-cert other/ca.crt --ca-key other/ca.key >/dev/null &&
  "$E2D" pki gencerts --ca-cert other/ca.crt --ca-key other/ca.key --output-dir other >/dev/null
CP=$(free_port); PP=$(free_port); MP=$(free_port)
CERTS=(--ca-cert ca.crt --server-cert server.crt --server-key server.key
       --peer-cert peer.crt --peer-key peer.key)
RUN=(run --name a --host 127.0.0.1 --data-dir d --client-addr 127.0.0.1:$CP
     --peer-addr 127.0.0.1:$PP --metrics-addr 127.0.0.1:$MP "${CERTS[@]}")

expect 2 "unknown command" frobnicate
expect 2 "unknown flag --bogus" run --bogus
expect 2 "needs a value" run --name
expect 2 "cluster size from 1 to 9" run -n x
expect 2 "election-timeout" run --election-timeout=5
expect 2 "log level" run --log-level loud
expect 2 "is not a loopback address" run --plaintext-client-addr 10.1.2.3:2379
expect 2 "needs --bootstrap-addrs" run -n 3
expect 1 "need certificates of one CA" run -n 3 --bootstrap-addrs 10.0.0.1 --data-dir d0
expect 1 "--ca-key is needed" "${RUN[@]}" -n 3 --bootstrap-addrs 10.0.0.1
expect 1 "--ca-key is needed" "${RUN[@]}" -n 3 --peer-discovery dns:peers.example.com
expect 2 "unknown provider \"consul\"" run -n 3 --peer-discovery consul:x
expect 2 "peer-discovery \"dns:a b\": not NAME or NAME:PORT" run -n 3 --peer-discovery "dns:a b"
expect 2 "no provider (expected file:PATH, dns:NAME\[:PORT\], dns-srv:NAME, etcd:URL" run --peer-discovery file
expect 2 "not an http:// or https:// URL" run -n 3 --discovery discovery.etcd.io/abc
AWS_ACCESS_KEY_ID="AK" AWS_SECRET_ACCESS_KEY="" \
  expect 2 "AWS_ACCESS_KEY_ID is set without AWS_SECRET_ACCESS_KEY" run -n 3 --peer-discovery ec2-tags:a=b
AWS_ACCESS_KEY_ID="" AWS_SECRET_ACCESS_KEY="" AWS_EC2_METADATA_SERVICE_ENDPOINT=https://169.254.169.254 \
  expect 2 "AWS_EC2_METADATA_SERVICE_ENDPOINT \"https://169.254.169.254\" is not http://HOST\[:PORT\]" \
  run -n 3 --peer-discovery ec2-tags:a=b
expect 2 "\"cluster\" is not KEY=VALUE" run -n 3 --peer-discovery ec2-tags:cluster
DIGITALOCEAN_ACCESS_TOKEN="" DIGITALOCEAN_TOKEN="" \
  expect 2 "needs DIGITALOCEAN_ACCESS_TOKEN in the environment" run -n 3 --peer-discovery do-tags:e2d
expect 2 "--discovery and --peer-discovery exclude each other" run -n 3 \
  --discovery https://discovery.etcd.io/abc --peer-discovery dns:x
expect 2 "peer-discovery-interval must be at least 1s" run --peer-discovery-interval 10ms
expect 2 "peer-discovery-dns-server: \"8.8.8.8\" is not host:port" run \
  --peer-discovery dns:x --peer-discovery-dns-server 8.8.8.8
expect 2 "is not name=host:port" run --initial-cluster a=nowhere
expect 2 "not in the initial cluster" "${RUN[@]}" --initial-cluster b=127.0.0.1:1
expect 2 "is neither new nor existing" run --initial-cluster-state old
expect 2 "existing needs --initial-cluster" run --initial-cluster-state existing
expect 2 "exclude each other" run --snapshot-compression --snapshot-encryption
expect 2 "snapshot-backup-interval must be at least 1s" run --snapshot-backup-interval 10ms
expect 2 "snapshot-backup-keep-daily must be a number from 0 to 100000" run --snapshot-backup-keep-daily -1
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
# (Without keys e2d would use the instance profile's credentials: off here, so it stops at once.)
AWS_EC2_METADATA_DISABLED=true expect 1 "need AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" \
  "${RUN[@]}" --snapshot-backup-url s3://bucket/e2d
expect 1 "bad bucket name \"Bucket\"" "${RUN[@]}" --snapshot-backup-url s3://Bucket/e2d
expect 1 "is not file://DIR, s3://BUCKET" "${RUN[@]}" --snapshot-backup-url ftp://host/b
expect 1 "--snapshot-encryption needs --ca-key" "${RUN[@]}" --snapshot-encryption \
  --snapshot-backup-url "file://$WORK/b"
[[ ! -e "$WORK/b" ]] || fail "a refused start created the backup directory"
# Restores: flags that cannot go together, and backups that are missing, damaged or absent.
expect 2 "restore-backup=latest needs --snapshot-backup-url" run --restore-backup latest
expect 2 "does not go with --initial-cluster-state existing" run --initial-cluster-state existing \
  --initial-cluster a=127.0.0.1:1 --restore-backup x.bkp
expect 1 "cannot read the backup nosuch.bkp" "${RUN[@]}" --data-dir d4 --restore-backup nosuch.bkp
printf 'E2DBKUP\001 not really a backup' >bad.bkp
expect 1 "restore-backup: backup bad.bkp: " "${RUN[@]}" --data-dir d4 --restore-backup bad.bkp
mkdir empty
expect 1 "restore-backup: no backup under file://$WORK/empty" "${RUN[@]}" --data-dir d4 \
  --restore-backup latest --snapshot-backup-url "file://$WORK/empty"
[[ ! -e d4/member && ! -e d4/kv ]] || fail "a refused restore wrote the data directory: $(ls d4)"
expect 1 "already exists" pki init
expect 1 "--peer-key is missing" run --ca-cert ca.crt --server-cert server.crt \
  --server-key server.key --peer-cert peer.crt
expect 1 "cannot read the server certificate nosuch.crt" "${RUN[@]}" --server-cert nosuch.crt
expect 1 "does not match" "${RUN[@]}" --server-key other/server.key
expect 1 "does not match" "${RUN[@]}" --peer-key other/peer.key
# A name gossip cannot carry (over 128 bytes) is refused before the data directory is touched.
listing() { if [[ -e d ]]; then (cd d && find . | sort); fi; }
before=$(listing)
expect 1 "name must be 1..128 bytes" run --name "$(printf 'n%.0s' $(seq 200))" --host 127.0.0.1 \
  --data-dir d --client-addr 127.0.0.1:$CP --peer-addr 127.0.0.1:$PP --metrics-addr "" \
  "${CERTS[@]}" --ca-key ca.key --gossip-addr 127.0.0.1:$(free_port)
[[ "$(listing)" == "$before" ]] || fail "a refused start wrote the data directory: $(listing)"
[[ ! -e d/member ]] || fail "a refused start wrote the data directory"

# A member that ran once: its data directory is now this cluster's.
"$E2D" "${RUN[@]}" 2>a.log &
PIDS+=($!)
for _ in $(seq 300); do grep -q '"serving"' a.log && break; sleep 0.1; done
grep -q '"serving"' a.log || fail "the member did not start: $(cat a.log)"
expect 1 "cannot listen on 127.0.0.1:$CP" run --name b --data-dir d2 --host 127.0.0.1 \
  --client-addr 127.0.0.1:$CP --peer-addr 127.0.0.1:$(free_port) --metrics-addr "" "${CERTS[@]}"
expect 1 "cannot listen on 127.0.0.1:$PP" run --name b --data-dir d2 --host 127.0.0.1 \
  --client-addr 127.0.0.1:$(free_port) --peer-addr 127.0.0.1:$PP --metrics-addr "" "${CERTS[@]}"
kill "${PIDS[0]}" && wait "${PIDS[0]}" || true
before=$(cd d && find . -type f -exec sha256sum {} + | sort)
expect 1 "belongs to another cluster or member" run --name b --host 127.0.0.1 --data-dir d \
  --client-addr 127.0.0.1:$CP --peer-addr 127.0.0.1:$PP --metrics-addr "" "${CERTS[@]}"
# The same member, in a cluster of another initial membership.
expect 1 "belongs to another cluster or member" run --name a --host 127.0.0.1 --data-dir d \
  --client-addr 127.0.0.1:$CP --peer-addr 127.0.0.1:$PP --metrics-addr "" "${CERTS[@]}" \
  -n 2 --initial-cluster "a=https://127.0.0.1:$PP,z=127.0.0.1:1"
# The same member, told to bootstrap through gossip instead.
expect 1 "was not bootstrapped through gossip" run --name a --host 127.0.0.1 --data-dir d \
  --client-addr 127.0.0.1:$CP --peer-addr 127.0.0.1:$PP --metrics-addr "" "${CERTS[@]}" \
  -n 3 --bootstrap-addrs 127.0.0.1:$(free_port) --ca-key ca.key --gossip-addr 127.0.0.1:$(free_port)
after=$(cd d && find . -type f -exec sha256sum {} + | sort)
[[ "$before" == "$after" ]] || fail "a refused start changed the data directory"
# A damaged record of the gossip bootstrap is refused, naming the file, and left as it is.
mkdir d3 && printf 'e2d-bootstrap v1\nstate=committed\n' >d3/bootstrap
expect 1 '"bootstrap" is damaged' run --name a --host 127.0.0.1 --data-dir d3 \
  --client-addr 127.0.0.1:$CP --peer-addr 127.0.0.1:$PP --metrics-addr "" "${CERTS[@]}" \
  -n 3 --bootstrap-addrs 127.0.0.1:$(free_port) --ca-key ca.key --gossip-addr 127.0.0.1:$(free_port)
[[ "$(cat d3/bootstrap)" == $'e2d-bootstrap v1\nstate=committed' ]] || fail "the record changed"
[[ "$(ls d3)" == bootstrap ]] || fail "a refused start wrote the data directory: $(ls d3)"
echo PASS
