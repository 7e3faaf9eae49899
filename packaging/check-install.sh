#!/usr/bin/env bash
# Installs the .debs from target/pkg on THIS machine and checks what a sysadmin relies on:
# files and permissions, the user, the binaries and their configs, an upgrade that keeps a
# modified config, the units (verify + security exposure), and a purge that removes
# everything. Meant for CI's throwaway machine: it changes /etc, /usr and /var.
set -euo pipefail
cd "$(dirname "$0")/.."
pkg=${CARGO_TARGET_DIR:-target}/pkg
agent_deb=$(ls "$pkg"/swarmguard-agent_*.deb)
identity_deb=$(ls "$pkg"/swarmguard-identity_*.deb)

fail() { echo "check-install: $*" >&2; exit 1; }
expect_mode() { # PATH "MODE OWNER GROUP"
    local got
    got=$(stat -c '%a %U %G' "$1") || fail "$1 is missing"
    [ "$got" = "$2" ] || fail "$1 is '$got', expected '$2'"
}

echo "== install"
dpkg -i "$agent_deb" "$identity_deb"
getent passwd swarmguard >/dev/null || fail "user swarmguard not created"
id -nG swarmguard | grep -qw adm || fail "swarmguard is not in adm"
expect_mode /var/lib/swarmguard/agent "750 swarmguard swarmguard"
expect_mode /var/lib/swarmguard/identity "700 swarmguard swarmguard"
expect_mode /etc/swarmguard/rules.d "750 root swarmguard"
expect_mode /etc/swarmguard/scenarios.d "750 root swarmguard"
expect_mode /etc/swarmguard/domains.d "750 root swarmguard"
expect_mode /etc/swarmguard/agent.toml "640 root swarmguard"
expect_mode /etc/swarmguard/identity.toml "640 root swarmguard"
for f in /usr/bin/swarmd /usr/bin/swarmctl /usr/bin/identityd \
    /usr/share/bash-completion/completions/swarmd /usr/share/fish/vendor_completions.d/identityd.fish \
    /usr/share/zsh/vendor-completions/_swarmctl; do
    [ -e "$f" ] || fail "$f is missing"
done
ls /usr/share/man/man8/swarmd.8* /usr/share/man/man8/identityd.8* >/dev/null || fail "man pages missing"
grep -qx /etc/swarmguard/agent.toml /var/lib/dpkg/info/swarmguard-agent.conffiles \
    || fail "agent.toml is not a conffile"
[ -L /etc/systemd/system/multi-user.target.wants/swarmd.service ] || fail "swarmd.service not enabled"
[ -L /etc/systemd/system/multi-user.target.wants/identityd.service ] || fail "identityd.service not enabled"
ls /etc/swarmguard/rules.d/*.rules /etc/swarmguard/scenarios.d/*.toml >/dev/null || fail "default rules missing"
swarmd --version
swarmd check-config --strict /etc/swarmguard/agent.toml
identityd check-config /etc/swarmguard/identity.toml

echo "== rules load as the unit runs swarmd: user swarmguard, no W+X memory"
# MemoryDenyWriteExecute= is prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN) (65, 1): pcre2's
# JIT is refused and the engine must fall back to the interpreter.
as_unit() {
    setpriv --reuid=swarmguard --regid=swarmguard --init-groups /usr/bin/python3 -c '
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:
    sys.exit("prctl(PR_SET_MDWE) failed: errno %d" % ctypes.get_errno())
os.execv(sys.argv[1], sys.argv[1:])' "$@"
}
as_unit /usr/bin/swarmctl rules test /etc/swarmguard/rules.d
as_unit /usr/bin/swarmctl scenarios test --scenarios /etc/swarmguard/scenarios.d --log /dev/null >/dev/null

echo "== units"
for unit in swarmd identityd; do
    # Documentation= names man pages; verify runs `man`, which only man-db provides.
    out=$(systemd-analyze verify "/usr/lib/systemd/system/$unit.service" 2>&1 | grep -v "Command 'man " || true)
    [ -z "$out" ] || fail "systemd-analyze verify $unit: $out"
    exposure=$(systemd-analyze security --offline=true "/usr/lib/systemd/system/$unit.service" 2>/dev/null \
        | sed -n 's/.*Overall exposure level for .*: \([0-9.]*\).*/\1/p')
    echo "$unit.service exposure: $exposure"
    awk -v e="$exposure" 'BEGIN { exit !(e != "" && e <= 2.0) }' || fail "$unit exposure $exposure > 2.0"
done

echo "== upgrade keeps a modified config"
echo '# changed by the sysadmin' >>/etc/swarmguard/agent.toml
dpkg -i "$agent_deb"
grep -q '^# changed by the sysadmin' /etc/swarmguard/agent.toml || fail "upgrade lost the modified config"
expect_mode /etc/swarmguard/agent.toml "640 root swarmguard"

echo "== purge"
dpkg --purge swarmguard-agent swarmguard-identity
for f in /usr/bin/swarmd /usr/bin/identityd /etc/swarmguard /var/lib/swarmguard \
    /usr/lib/systemd/system/swarmd.service /etc/systemd/system/multi-user.target.wants/swarmd.service; do
    [ ! -e "$f" ] || fail "$f survived the purge"
done
! getent passwd swarmguard >/dev/null || fail "user swarmguard survived the purge"
echo "check-install: ok"
