#!/usr/bin/env bash
# Multi-process test of S3 backups: real e2d processes on loopback, a real S3-compatible server
# (s3rver, from the npm registry) and a real S3 client (Debian's s3cmd) to cross-check what e2d
# writes and reads. s3rver does not check Signature Version 4, so e2d reaches it through
# node/test/sigv4_proxy.py, which re-signs every request with botocore and refuses mismatches.
#
#   1. a member writes encrypted backups to s3://BUCKET/PREFIX (endpoint from AWS_ENDPOINT_URL),
#      keeps the newest --snapshot-backup-keep of them, and s3cmd lists and reads them: the
#      backup s3cmd fetched restores a new member (e2d -> client); SIGUSR1 writes one on demand;
#   2. a backup put by s3cmd under another prefix is found by --restore-backup latest, which
#      restores it, and reports the revision it restored (client -> e2d);
#   3. wrong credentials, a missing bucket and missing credentials are refused with S3's reason;
#   4. with no keys in the environment, the instance profile's temporary credentials come from
#      the instance metadata service (node/test/fake_imds.py, IMDSv2 session tokens only);
#   5. over https (s3rver with a certificate of the test CA): AWS_CA_BUNDLE trusts it, and
#      without it the handshake is refused (the certificate is not the system's).
set -euo pipefail

E2D="$(pwd)/$1"
source node/test/lib.sh  # (the runfiles root is the working directory)
RUNFILES_DIR_E2D="$(pwd)"
export ETCDCTL_API=3
S3RVER="${E2D_TEST_TOOLS:-/opt/e2d/test-tools}/node_modules/.bin/s3rver"
WORK="${TEST_TMPDIR:-$(mktemp -d)}/s3"
rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK"
fail() { echo "FAIL: $*" >&2; for f in "$WORK"/*.log; do echo "== $f"; tail -20 "$f"; done >&2; exit 1; }

[[ -x "$S3RVER" ]] || fail "no s3rver at $S3RVER: run tools/setup"
command -v s3cmd >/dev/null || fail "no s3cmd: run tools/setup"

"$E2D" pki init --ca-cert ca.crt --ca-key ca.key >/dev/null
"$E2D" pki gencerts --ca-cert ca.crt --ca-key ca.key --output-dir . >/dev/null
TLS=(--cacert ca.crt --cert client.crt --key client.key)

# s3rver's one account; every request must be signed with it.
export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER AWS_REGION=us-east-1
S3PORT=$(free_port)
"$S3RVER" -d "$WORK/s3data" -a 127.0.0.1 -p "$S3PORT" --configure-bucket e2d-backups \
  >s3rver.log 2>&1 &
PIDS+=($!)
cat >s3cfg <<EOF
[default]
access_key = S3RVER
secret_key = S3RVER
host_base = 127.0.0.1:$S3PORT
host_bucket = 127.0.0.1:$S3PORT
use_https = False
signature_v2 = False
EOF
S3=(s3cmd -c "$WORK/s3cfg")
wait_for "s3rver to serve" 30 "${S3[@]}" ls s3://e2d-backups
PROXY=$(free_port)
/usr/bin/python3 "$RUNFILES_DIR_E2D/node/test/sigv4_proxy.py" "$PROXY" "$S3PORT" S3RVER S3RVER \
  us-east-1 >proxy.log 2>&1 &
PIDS+=($!)
wait_for "the signature-checking proxy to serve" 30 grep -q listening proxy.log
export AWS_ENDPOINT_URL="http://127.0.0.1:$PROXY"

declare -A CPORT PPORT MPORT GPORT PID
# start NAME URL [more flags]: one member of its own cluster, backups to URL every second.
start() {
  local n="$1" url="$2"; shift 2
  alloc_ports "$n"
  "$E2D" run --name "$n" --data-dir "data-$n" --host 127.0.0.1 \
    --client-addr "127.0.0.1:${CPORT[$n]}" --peer-addr "127.0.0.1:${PPORT[$n]}" \
    --metrics-addr "127.0.0.1:${MPORT[$n]}" --gossip-addr "127.0.0.1:${GPORT[$n]}" \
    --ca-cert ca.crt --ca-key ca.key --server-cert server.crt --server-key server.key \
    --peer-cert peer.crt --peer-key peer.key --election-timeout 500ms \
    --snapshot-backup-url "$url" --snapshot-backup-interval 1s --snapshot-encryption \
    "$@" >>"$n.log" 2>&1 &
  PID[$n]=$!
  PIDS+=($!)
}
stop() { kill "${PID[$1]}" 2>/dev/null || true; wait "${PID[$1]}" 2>/dev/null || true; }
cluster_hex() {
  printf '%016x' "$(etcdctl "${TLS[@]}" --endpoints "$1" endpoint status -w fields |
    awk -F' : ' '/"ClusterID"/ {print $2}')"
}
# The names s3cmd lists under s3://e2d-backups/PREFIX/, one per line, sorted.
listed() { "${S3[@]}" ls "s3://e2d-backups/$1/" | awk '{print $4}' | sed 's|.*/||' | sort; }

echo "== 1. backups to s3:// with retention, read back by s3cmd and restored"
start a "s3://e2d-backups/prod/east" --snapshot-backup-keep 2
wait_for "a to serve" 30 etcdctl "${TLS[@]}" --endpoints "$(ep a)" endpoint health
AHEX=$(cluster_hex "$(ep a)")
for i in 1 2 3 4; do
  R=$(revision_of_put "$(ep a)" "k$i" "v$i")
  NAME="e2d-$AHEX-$(printf '%020d' "$R").bkp"
  wait_for "a backup of revision $R in the bucket" 30 grep -q "backup written\" name=$NAME" a.log
done
[[ $(grep -c 'msg="backup written"' a.log) -ge 4 ]] || fail "fewer than 4 backups written"
# Nothing changes any more, so nothing is written: the listing is final. Retention kept 2.
mapfile -t NAMES < <(listed prod/east)
[[ ${#NAMES[@]} == 2 ]] || fail "s3cmd lists ${#NAMES[@]} backups, not the 2 kept: ${NAMES[*]}"
[[ "${NAMES[1]}" == "$NAME" ]] || fail "the newest backup listed is ${NAMES[1]}, not $NAME"
mkdir fetched
FETCHED="$WORK/fetched/$NAME"
"${S3[@]}" get "s3://e2d-backups/prod/east/$NAME" "$FETCHED" >/dev/null
! grep -q v4 "$FETCHED" || fail "the backup holds the value v4 in plaintext"
start b "s3://e2d-backups/prod/b" --restore-backup "$FETCHED"
wait_for "b to serve a's data" 30 bash -c "etcdctl ${TLS[*]} --endpoints $(ep b) \
  get k4 --print-value-only | grep -qx v4"
grep -q "restored the store from a backup.* backup=$NAME revision=$R" b.log ||
  fail "b did not log the revision it restored: $(grep -i restor b.log)"
# A backup on demand (SIGUSR1): written although nothing changed since the last one.
WRITTEN=$(grep -c 'msg="backup written"' a.log)
kill -USR1 "${PID[a]}"
wait_for "a's backup on demand" 30 bash -c \
  "[[ \$(grep -c 'msg=\"backup written\"' a.log) -gt $WRITTEN ]]"
grep -q 'msg="backup on demand started"' a.log || fail "a did not log the backup on demand"
stop a; stop b

echo "== 2. a backup put by s3cmd is restored by --restore-backup latest"
"${S3[@]}" put "$FETCHED" "s3://e2d-backups/handoff/$NAME" >/dev/null
# An object that is not a backup, beside it and under a deeper prefix, is ignored.
echo junk >junk.txt
"${S3[@]}" put junk.txt "s3://e2d-backups/handoff/notes.txt" >/dev/null
"${S3[@]}" put "$FETCHED" "s3://e2d-backups/handoff/deeper/e2d-$AHEX-$(printf '%020d' 999999).bkp" \
  >/dev/null
start c "s3://e2d-backups/handoff" --restore-backup latest
wait_for "c to serve the backup's data" 30 bash -c "etcdctl ${TLS[*]} --endpoints $(ep c) \
  get k3 --print-value-only | grep -qx v3"
grep -q "restored the store from a backup.* backup=$NAME revision=$R" c.log ||
  fail "c did not restore $NAME: $(grep -i restor c.log)"
R2=$(revision_of_put "$(ep c)" after 1)
[[ "$R2" == $((R + 1)) ]] || fail "the first write after the restore got revision $R2, not $((R + 1))"
CHEX=$(cluster_hex "$(ep c)")
wait_for "c's own backup in the bucket" 30 bash -c \
  "s3cmd -c $WORK/s3cfg ls s3://e2d-backups/handoff/ | grep -q e2d-$CHEX-"
stop c

! grep -q refused proxy.log || fail "the proxy refused a signature of e2d's: $(grep refused proxy.log)"
grep -q '"PUT /e2d-backups/prod/east/e2d-' proxy.log || fail "e2d's writes did not pass the proxy"

echo "== 3. wrong credentials, a missing bucket, no credentials"
# expect_refusal NAME PATTERN URL [env assignments]: e2d exits non-zero, saying PATTERN.
expect_refusal() {
  local n="$1" pattern="$2" url="$3"; shift 3
  local rc=0
  env "$@" "$E2D" run --name "$n" --data-dir "data-$n" --host 127.0.0.1 \
    --client-addr "127.0.0.1:$(free_port)" --peer-addr "127.0.0.1:$(free_port)" \
    --gossip-addr "127.0.0.1:$(free_port)" --ca-cert ca.crt --ca-key ca.key \
    --server-cert server.crt --server-key server.key --peer-cert peer.crt --peer-key peer.key \
    --snapshot-backup-url "$url" --snapshot-encryption --restore-backup latest \
    >"$n.log" 2>&1 || rc=$?
  [[ $rc != 0 ]] || fail "$n started with $*"
  grep -q -- "$pattern" "$n.log" || fail "$n did not say /$pattern/: $(tail -3 "$n.log")"
}
expect_refusal d1 "HTTP 403 SignatureDoesNotMatch" "s3://e2d-backups/handoff" \
  AWS_SECRET_ACCESS_KEY=wrong
expect_refusal d2 "HTTP 403 InvalidAccessKeyId" "s3://e2d-backups/handoff" AWS_ACCESS_KEY_ID=nobody
expect_refusal d3 "HTTP 404 NoSuchBucket" "s3://no-such-bucket/x"
expect_refusal d4 "AWS_SECRET_ACCESS_KEY is set without AWS_ACCESS_KEY_ID" "s3://e2d-backups/x" \
  -u AWS_ACCESS_KEY_ID
expect_refusal d5 "need AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" "s3://e2d-backups/x" \
  -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY AWS_EC2_METADATA_DISABLED=true
# No keys and no instance metadata service (nothing listens there): said, and nothing started.
NO_IMDS=$(free_port)
expect_refusal d6 "instance metadata service at 127.0.0.1:$NO_IMDS gave none" \
  "s3://e2d-backups/x" -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY \
  "AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:$NO_IMDS"
for n in d1 d2 d3 d4 d5 d6; do
  [[ ! -e "data-$n/identity" ]] || fail "$n recorded an identity although it refused to start"
done

echo "== 4. no keys: the instance profile's credentials from the instance metadata service"
IMDS=$(free_port)
/usr/bin/python3 "$RUNFILES_DIR_E2D/node/test/fake_imds.py" "$IMDS" S3RVER S3RVER imds-session \
  >imds.log 2>&1 &
PIDS+=($!)
wait_for "the fake instance metadata service to serve" 30 grep -q listening imds.log
AWS_ACCESS_KEY_ID= AWS_SECRET_ACCESS_KEY= AWS_EC2_METADATA_SERVICE_ENDPOINT="http://127.0.0.1:$IMDS" \
  start i "s3://e2d-backups/imds"
wait_for "i to serve" 30 etcdctl "${TLS[@]}" --endpoints "$(ep i)" endpoint health
RI=$(revision_of_put "$(ep i)" from-the-profile 1)
wait_for "i's backup of revision $RI in the bucket" 30 bash -c \
  "s3cmd -c $WORK/s3cfg ls s3://e2d-backups/imds/ | grep -q -- '-$(printf '%020d' "$RI").bkp'"
stop i
grep -q "^PUT /latest/api/token 200" imds.log || fail "i never asked for an IMDSv2 session token"
grep -q "^GET /latest/meta-data/iam/security-credentials/e2d-node 200" imds.log ||
  fail "i never read the role's credentials"
grep -q ' 401$' imds.log && fail "i sent a metadata request without the session token"
# The proxy let the writes through: their signatures, session token header included, held.
grep -q '"PUT /e2d-backups/imds/e2d-' proxy.log || fail "i's writes did not pass the proxy"

echo "== 5. https: the endpoint's CA from AWS_CA_BUNDLE"
S3TLS=$(free_port)
"$S3RVER" -d "$WORK/s3tls" -a 127.0.0.1 -p "$S3TLS" --key server.key --cert server.crt \
  --configure-bucket tls-bucket >s3rver-tls.log 2>&1 &
PIDS+=($!)
S3T=(s3cmd -c "$WORK/s3cfg" --host="127.0.0.1:$S3TLS" --host-bucket="127.0.0.1:$S3TLS" --ssl
     --ca-certs="$WORK/ca.crt")
wait_for "s3rver to serve https" 30 "${S3T[@]}" ls s3://tls-bucket
AWS_CA_BUNDLE="$WORK/ca.crt" start e "https://127.0.0.1:$S3TLS/tls-bucket/e2d"
wait_for "e to serve" 30 etcdctl "${TLS[@]}" --endpoints "$(ep e)" endpoint health
R3=$(revision_of_put "$(ep e)" over-tls 1)
wait_for "e's backup of revision $R3 over https" 30 bash -c \
  "s3cmd -c $WORK/s3cfg --host=127.0.0.1:$S3TLS --host-bucket=127.0.0.1:$S3TLS --ssl \
   --ca-certs=$WORK/ca.crt ls s3://tls-bucket/e2d/ | grep -q -- '-$(printf '%020d' "$R3").bkp'"
stop e
expect_refusal f1 "certificate verify failed\|certificate: " "https://127.0.0.1:$S3TLS/tls-bucket/e2d" \
  -u AWS_CA_BUNDLE
echo PASS
