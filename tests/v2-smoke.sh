#!/bin/sh
# onggi-runtime on a pure cgroup v2 kernel: run inside ../shared/tools/vm/vm-run's
# guest (busybox sh; no bash there). The bundle is made on the host beforehand:
#   scripts/mkbundle.sh target/vm-bundle -- sleep 100
# usage (in the guest): tests/v2-smoke.sh RUNTIME BUNDLE
set -u
RT="$1 --root /run/onggi-v2"
B=$2
pass=0 fail=0
check() { if [ "$2" = "$3" ]; then echo "ok   $1"; pass=$((pass + 1)); else echo "FAIL $1: wanted '$2', got '$3'"; fail=$((fail + 1)); fi; }

$RT create --bundle "$B" c1
check "create on cgroup v2" created "$($RT state c1 | sed -n 's/.*"status": "\(.*\)".*/\1/p')"
check "the init is in /onggi/c1" "0::/onggi/c1" "$(cat /proc/$($RT state c1 | sed -n 's/.*"pid": \([0-9]*\).*/\1/p')/cgroup)"
check "pids.max from linux.resources" 42 "$(cat /sys/fs/cgroup/onggi/c1/pids.max)"
$RT start c1
check "start" running "$($RT state c1 | sed -n 's/.*"status": "\(.*\)".*/\1/p')"
check "exec sees the container's cgroup mount" 42 "$($RT exec c1 cat /sys/fs/cgroup/pids.max)"
check "exec is PID 2+ in the container" yes "$($RT exec c1 sh -c '[ $$ -gt 1 ] && echo yes')"
$RT kill c1 KILL
sleep 0.2
check "kill" stopped "$($RT state c1 | sed -n 's/.*"status": "\(.*\)".*/\1/p')"
$RT delete c1
check "delete removes the cgroup" no "$([ -d /sys/fs/cgroup/onggi ] && echo yes || echo no)"
check "nothing listed" "" "$($RT list -q)"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
