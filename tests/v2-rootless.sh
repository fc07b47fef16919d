#!/bin/sh
# Rootless onggi-runtime on a pure cgroup v2 kernel, with and without a delegated
# cgroup: run inside ../shared/tools/vm/vm-run's guest (busybox sh). The bundle is
# made on the host beforehand, owned by uid 1000, with the config `spec --rootless`
# writes for uid 1000 and a pids limit (see scripts/test).
# usage (in the guest): tests/v2-rootless.sh RUNTIME BUNDLE
set -u
RT=$1
B=$2
CG=/sys/fs/cgroup
pass=0 fail=0
check() { if [ "$2" = "$3" ]; then echo "ok   $1"; pass=$((pass + 1)); else echo "FAIL $1: wanted '$2', got '$3'"; fail=$((fail + 1)); fi; }
as_user() { su -s /bin/sh rl -c "$*"; }
# As the user, from a shell in its delegated subtree (moving a process between cgroups
# needs write access to their common ancestor's cgroup.procs).
delegated() { sh -c "echo \$\$ > $CG/deleg/shell/cgroup.procs; exec su -s /bin/sh rl -c '$*'"; }

grep -q '^rl:' /etc/passwd || echo 'rl:x:1000:1000::/tmp:/bin/sh' >> /etc/passwd
mkdir -p /tmp/rl-state && chown 1000:1000 /tmp/rl-state
STATE="$RT --root /tmp/rl-state"

# Not delegated: limits are refused, saying so; nothing is made.
out=$(as_user "$STATE run -d --bundle $B c0" 2>&1)
check "limits without delegation are refused" yes "$(echo "$out" | grep -q 'no cgroup is delegated to uid 1000' && echo yes || echo no)"
check "nothing made" no "$([ -d $CG/deleg ] && echo yes || echo no)"

# Delegated, as systemd does it (Delegate=yes): a subtree the user owns, the user's
# shell in a leaf of it, the containers beside it.
mkdir -p $CG/deleg/shell
chown -R 1000:1000 $CG/deleg
delegated "$STATE run -d --bundle $B c1"
pid=$(as_user "$STATE state c1" | sed -n 's/.*"pid": \([0-9]*\).*/\1/p')
check "rootless run -d in a delegated cgroup" "0::/deleg/ctr/c1" "$(cat /proc/$pid/cgroup)"
check "the init runs as uid 1000" 1000 "$(awk '/^Uid:/ {print $2}' /proc/$pid/status)"
check "pids.max from linux.resources" 42 "$(cat $CG/deleg/ctr/c1/pids.max)"
check "exec as the user" 0 "$(delegated "$STATE exec c1 id -u")"
as_user "$STATE delete -f c1"
check "delete removes the container's cgroup" no "$([ -d $CG/deleg/ctr/c1 ] && echo yes || echo no)"
check "nothing listed" "" "$(as_user "$STATE list -q")"
rmdir $CG/deleg/ctr 2>/dev/null
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
