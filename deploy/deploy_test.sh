#!/usr/bin/env bash
# Checks the deployment files:
#  1. e2d.service passes `systemd-analyze verify` without a single warning. The verifier exits 0
#     on some problems (an unknown key is only a warning), so any output at all fails the test;
#     a deliberately broken copy first proves the verifier does report what we rely on.
#  2. e2d.bu is a Fedora CoreOS Butane config (variant fcos, version 1.5.0) with the
#     certificates, an enabled e2d.service running localhost/e2d:latest under podman, and that
#     embedded unit verifies too.
#  3. Both units pass e2d the same data dir and certificate flags, and both read E2D_OPTS from
#     /etc/default/e2d, which e2d.default defines.
set -euo pipefail

deploy="${TEST_SRCDIR}/${TEST_WORKSPACE}/deploy"
work="${TEST_TMPDIR}/deploy_test"
rm -rf "$work"
mkdir -p "$work/plain" "$work/bogus" "$work/fcos"

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# The units name binaries that do not exist here (/usr/local/bin/e2d, /usr/bin/podman), and the
# verifier rejects a missing ExecStart binary: copies point them at an executable that exists.
stand_in=/bin/true
[ -x "$stand_in" ] || fail "$stand_in missing"

# Prints the verifier's output and fails unless it exited 0 and printed nothing. --man=no: do not
# run man(1) for Documentation= entries; --generators=no: the sandbox has no generators to run.
verify_unit() {
  local out status=0
  out=$(systemd-analyze verify --man=no --generators=no "$1" 2>&1) || status=$?
  printf '%s' "$out"
  [ "$status" -eq 0 ] && [ -z "$out" ]
}

command -v systemd-analyze >/dev/null || fail "systemd-analyze not installed (Debian: systemd)"

# 1. The verifier must catch an unknown directive, or a clean result below would mean nothing.
sed 's|^ExecStart=/usr/local/bin/e2d |ExecStart=/bin/true |' "$deploy/e2d.service" \
  >"$work/plain/e2d.service"
grep -q '^ExecStart=/bin/true ' "$work/plain/e2d.service" ||
  fail "e2d.service: no 'ExecStart=/usr/local/bin/e2d ' line to point at $stand_in"
sed 's|^\[Service\]$|[Service]\nBogusDirective=yes|' "$work/plain/e2d.service" \
  >"$work/bogus/e2d.service"
if bogus_out=$(verify_unit "$work/bogus/e2d.service"); then
  fail "systemd-analyze verify reported nothing for an unknown directive: the check is blind"
fi
grep -q "BogusDirective" <<<"$bogus_out" ||
  fail "systemd-analyze verify did not name the unknown directive: $bogus_out"

if ! out=$(verify_unit "$work/plain/e2d.service"); then
  fail "e2d.service does not verify cleanly:
$out"
fi
echo "ok: e2d.service verifies"

# 2. The Butane config. Debian's python3 has yaml (python3-yaml); a python3 earlier on PATH may
# not, hence the absolute path.
/usr/bin/python3 - "$deploy/e2d.bu" "$work/fcos/e2d.service" <<'PY'
import sys
import yaml

path, unit_out = sys.argv[1], sys.argv[2]
errors = []
with open(path) as f:
    config = yaml.safe_load(f)

def expect(cond, message):
    if not cond:
        errors.append(message)

expect(isinstance(config, dict), "top level is not a mapping")
config = config if isinstance(config, dict) else {}
expect(config.get("variant") == "fcos", "variant is %r, not fcos" % config.get("variant"))
expect(config.get("version") == "1.5.0", "version is %r, not 1.5.0" % config.get("version"))

files = {f.get("path"): f for f in (config.get("storage") or {}).get("files") or []}
for name in ("ca", "server", "peer", "client"):
    for ext, mode in (("crt", 0o644), ("key", 0o600)):
        file = files.get("/etc/e2d/%s.%s" % (name, ext))
        if file is None:
            errors.append("no storage file /etc/e2d/%s.%s" % (name, ext))
            continue
        expect(file.get("mode") == mode, "%s mode %r, want %o" % (file["path"], file.get("mode"), mode))
        contents = file.get("contents") or {}
        expect("local" in contents or "inline" in contents, "%s has no contents" % file["path"])
defaults = ((files.get("/etc/default/e2d") or {}).get("contents") or {}).get("inline") or ""
expect("E2D_OPTS=" in defaults, "/etc/default/e2d does not set E2D_OPTS")

units = [u for u in (config.get("systemd") or {}).get("units") or [] if u.get("name") == "e2d.service"]
expect(len(units) == 1, "want one systemd unit named e2d.service, found %d" % len(units))
unit = units[0] if units else {}
contents = unit.get("contents") or ""
expect(unit.get("enabled") is True, "e2d.service is not enabled")
for needle in ("/usr/bin/podman run", "localhost/e2d:latest", "--network host",
               "/var/lib/e2d:/var/lib/e2d:z", "EnvironmentFile=-/etc/default/e2d", "$E2D_OPTS"):
    expect(needle in contents, "e2d.service does not contain %r" % needle)

with open(unit_out, "w") as f:
    f.write(contents.replace("/usr/bin/podman", "/bin/true"))
if errors:
    sys.exit("e2d.bu: " + "; ".join(errors))
PY
echo "ok: e2d.bu has the expected structure"

if ! out=$(verify_unit "$work/fcos/e2d.service"); then
  fail "the e2d.service inside e2d.bu does not verify cleanly:
$out"
fi
echo "ok: the unit in e2d.bu verifies"

# 3. The same flags in both units, and the options file they read.
flags() { grep -o -- '--[a-z-]*=/[^ ]*' "$1" | sort; }
plain_flags=$(flags "$work/plain/e2d.service")
fcos_flags=$(flags "$work/fcos/e2d.service")
[ "$(wc -l <<<"$plain_flags")" -eq 9 ] || fail "e2d.service: want 9 path flags, got: $plain_flags"
[ "$plain_flags" = "$fcos_flags" ] || fail "flags differ between e2d.service and e2d.bu:
$(diff <(echo "$plain_flags") <(echo "$fcos_flags") || true)"
for unit in "$work/plain/e2d.service" "$work/fcos/e2d.service"; do
  grep -q '^EnvironmentFile=-/etc/default/e2d$' "$unit" || fail "$unit: no EnvironmentFile"
  # shellcheck disable=SC2016  # a literal $E2D_OPTS
  grep -q '\$E2D_OPTS$' "$unit" || fail "$unit: does not pass \$E2D_OPTS"
done
grep -q '^E2D_OPTS=' "$deploy/e2d.default" || fail "e2d.default does not set E2D_OPTS"
echo "ok: both units take the same flags"
echo PASS
