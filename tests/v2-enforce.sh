#!/bin/sh
# cgroup v2 ENFORCEMENT by onggi-runtime, in ../shared/tools/vm/vm-run's guest (a
# kernel with only cgroup2; busybox sh, PATH=/bin, no bash, no jq). The cgroup v1
# twin of these checks is bins/onggi-runtime/tests/cgroups.rs.
#
# usage (in the guest): tests/v2-enforce.sh RUNTIME BUNDLE
#   RUNTIME  the onggi-runtime binary (static)
#   BUNDLE   any bundle made by scripts/mkbundle.sh: only its rootfs is used. Each
#            check writes its own config.json (runc's defaults, its program and its
#            linux.resources) into a directory of the guest's /tmp, with root.path
#            pointing at BUNDLE/rootfs.
# On the host (e.g. in scripts/test):
#   bash scripts/mkbundle.sh target/vm-enforce >/dev/null
#   ../shared/tools/vm/vm-run -- tests/v2-enforce.sh \
#       target/x86_64-unknown-linux-gnu/debug/onggi-runtime target/vm-enforce
#   rm -rf target/vm-enforce
#
# Checks, each from a real container under the cgroup /onggi-enforce/<id>:
#   cpu      cpu quota 50000/100000 holds a busy loop to 50 % +- 10 of one CPU
#            (cpu.stat usage_usec over wall time; nr_throttled > 0)
#   memory   a 32 MiB limit (no swap) OOM-kills a 100 MiB allocation: run exits 137,
#            memory.events oom_kill > 0 (read before delete); `events` streams an
#            {"type":"oom"} line and `events --stats` counts oom_events
#   pids     pids.limit 20 against 100 background sleeps: pids.current <= 20, the
#            shell reports the failed fork, pids.events max > 0, the guest still
#            starts a process in < 1 s, delete --force leaves nothing
#   cpuset   cpus "0": cpuset.cpus and the container's Cpus_allowed_list say 0
#   update   --memory/--pids-limit/--cpu-quota/--cpu-period, then -r - from stdin
#   pause    the counter a container writes stops while paused and moves on after
#            resume; delete --force of a paused container leaves nothing
#   badres   cpu.shares 1 and memory.swap below memory.limit: create fails naming
#            the field and leaves no cgroup
# Prints "ok"/"FAIL" lines, then "N passed, M failed"; exits 1 if any failed.
set -u
[ $# -eq 2 ] || { echo "usage: $0 RUNTIME BUNDLE" >&2; exit 2; }
RUNTIME=$(realpath "$1")
ROOTFS=$(realpath "$2/rootfs")
STATE=/run/onggi-enforce
W=/tmp/onggi-enforce
PARENT=onggi-enforce
CG=/sys/fs/cgroup/$PARENT
MIB=1048576
pass=0 fail=0

[ -f /sys/fs/cgroup/cgroup.controllers ] || { echo "not a cgroup v2 host" >&2; exit 2; }
[ -x "$ROOTFS/bin/sh" ] || { echo "no busybox rootfs at $ROOTFS" >&2; exit 2; }
rm -rf "$W"
mkdir -p "$W"

rt() { "$RUNTIME" --root "$STATE" "$@"; }
ok() { echo "ok   $1"; pass=$((pass + 1)); }
ko() { echo "FAIL $1"; fail=$((fail + 1)); }
# check DESC WANT GOT
check() { if [ "$2" = "$3" ]; then ok "$1"; else ko "$1: wanted '$2', got '$3'"; fi; }
# holds DESC SHELL-CONDITION
holds() { if eval "$2"; then ok "$1"; else ko "$1 ($2)"; fi; }

# Seconds since boot in hundredths (/proc/uptime; busybox date has no %N).
now_cs() { read -r up _ </proc/uptime; echo "${up%.*}${up#*.}"; }
# wait_for DESC SHELL-CONDITION: poll for 10 s; 0 when it came true.
wait_for() {
  i=0
  while [ $i -lt 100 ]; do
    eval "$2" && return 0
    sleep 0.1
    i=$((i + 1))
  done
  echo "     (timed out waiting for $1)"
  return 1
}
status() { rt state "$1" 2>/dev/null | sed -n 's/.*"status": "\(.*\)".*/\1/p'; }
# keyed FILE KEY: the number after KEY in a flat-keyed file (cpu.stat, memory.events)
keyed() { sed -n "s/^$2 //p" "$1"; }
# gone ID: no state, no cgroup, no process with the id as an argument
gone() {
  [ ! -e "$STATE/$1" ] && [ ! -d "$CG/$1" ] && ! grep -qszxF "$1" /proc/[0-9]*/cmdline
}
json_str() { printf '"%s"' "$(printf '%s' "$1" | sed 's/[\\"]/\\&/g')"; }

# bundle ID RESOURCES SCRIPT [BIND-SOURCE]: $W/ID/config.json running `sh -c SCRIPT`,
# with RESOURCES (JSON members, each followed by a comma) in linux.resources, the
# cgroup /onggi-enforce/ID, and BIND-SOURCE (if given) bound on /shared. Prints the
# bundle directory.
bundle() {
  d=$W/$1
  mkdir -p "$d"
  bind=""
  [ $# -lt 4 ] || bind="{\"destination\": \"/shared\", \"type\": \"bind\", \"source\": \"$4\", \"options\": [\"rbind\"]},"
  cat >"$d/config.json" <<EOF
{
  "ociVersion": "1.0.2-dev",
  "process": {
    "terminal": false,
    "user": {"uid": 0, "gid": 0},
    "args": ["sh", "-c", $(json_str "$3")],
    "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
    "cwd": "/",
    "capabilities": {
      "bounding": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
      "effective": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
      "permitted": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    },
    "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
    "noNewPrivileges": true
  },
  "root": {"path": "$ROOTFS", "readonly": true},
  "hostname": "enforce",
  "mounts": [
    $bind
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
    {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
    {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
    {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
  ],
  "linux": {
    "cgroupsPath": "/$PARENT/$1",
    "resources": {
      $2
      "devices": [{"allow": false, "access": "rwm"}]
    },
    "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}],
    "maskedPaths": ["/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug", "/sys/firmware"],
    "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
  }
}
EOF
  echo "$d"
}

# Whatever a failed check left: every container of $STATE, then the cgroups.
cleanup() {
  for d in "$STATE"/*/; do [ ! -d "$d" ] || rt delete --force "$(basename "$d")" >/dev/null 2>&1; done
  for d in "$CG"/*/; do [ -d "$d" ] && rmdir "$d" 2>/dev/null; done
  rmdir "$CG" 2>/dev/null
}
trap cleanup EXIT

echo "kernel $(uname -r), $(nproc) CPUs; $(cat /sys/fs/cgroup/cgroup.subtree_control)"

# --- cpu: quota 50000/100000 --------------------------------------------------------
b=$(bundle cpu '"cpu": {"quota": 50000, "period": 100000},' 'while :; do :; done')
rt run --detach --bundle "$b" cpu >"$W/cpu.out" 2>&1 || ko "cpu: run --detach: $(cat "$W/cpu.out")"
check "cpu: cpu.max" "50000 100000" "$(cat $CG/cpu/cpu.max 2>&1)"
sleep 1
seen="" got=no over=no n=0
while [ $n -lt 4 ] && [ $got = no ]; do
  u0=$(keyed $CG/cpu/cpu.stat usage_usec) t0=$(now_cs)
  sleep 1.5
  u1=$(keyed $CG/cpu/cpu.stat usage_usec) t1=$(now_cs)
  pct=$(((u1 - u0) / (t1 - t0) / 100))
  seen="$seen $pct%"
  [ $pct -le 60 ] || over=yes
  [ $pct -lt 40 ] || got=yes
  n=$((n + 1))
done
echo "     cpu quota 50 %: measured$seen of one CPU"
holds "cpu: the busy loop gets 40..60 % (saw$seen)" '[ $got = yes ] && [ $over = no ]'
holds "cpu: cpu.stat nr_throttled > 0" '[ "$(keyed $CG/cpu/cpu.stat nr_throttled)" -gt 0 ]'
rt delete --force cpu
holds "cpu: delete --force leaves nothing" 'gone cpu'

# --- memory: 32 MiB, no swap, 100 MiB allocated ----------------------------------------
mem="\"memory\": {\"limit\": $((32 * MIB)), \"swap\": $((32 * MIB))},"
# dd's buffer, filled by one read(2). (A shell holding a growing string, x=$(yes |
# head -c 100000000), thrashes here for minutes at the limit, refaulting its text
# pages from 9p, before the OOM killer comes.)
alloc='exec dd if=/dev/zero of=/dev/null bs=100M count=1'
b=$(bundle oomrun "$mem" "$alloc")
rt run --bundle "$b" oomrun >"$W/oomrun.out" 2>&1
check "memory: run of a 100 MiB allocation exits 137 (OOM kill)" 137 $?
holds "memory: run leaves nothing" 'gone oomrun'
b=$(bundle oom "$mem" "$alloc")
rt create --bundle "$b" oom >"$W/oom.out" 2>&1
check "memory: memory.max" $((32 * MIB)) "$(cat $CG/oom/memory.max 2>&1)"
check "memory: memory.swap.max (OCI swap is memory+swap)" 0 "$(cat $CG/oom/memory.swap.max 2>&1)"
rt start oom
wait_for "oom to stop" '[ "$(status oom)" = stopped ]'
echo "     memory.events: $(tr '\n' ' ' <$CG/oom/memory.events)"
holds "memory: memory.events oom_kill > 0" '[ "$(keyed $CG/oom/memory.events oom_kill)" -gt 0 ]'
rt delete oom
holds "memory: delete leaves nothing" 'gone oom'

# events: the init survives (its child dd is killed), so events can watch it.
mkdir -p "$W/oomev-shared"
b=$(bundle oomev "$mem" \
  "while [ ! -e /shared/go ]; do sleep 0.05; done; ${alloc#exec }; echo inner=\$?; exec sleep 30" \
  "$W/oomev-shared")
rt create --bundle "$b" oomev >"$W/oomev.out" 2>"$W/oomev.err"
rt start oomev
rt events --stats oomev >"$W/oomev.stats0" 2>&1
holds "events --stats: oom_events 0 and the limit before" \
  'grep -q "\"oom_events\":0[,}]" "$W/oomev.stats0" && grep -q "\"limit\":$((32 * MIB))[,}]" "$W/oomev.stats0" || { cat "$W/oomev.stats0"; false; }'
rt events --interval 1s oomev >"$W/oomev.events" 2>&1 &
events_pid=$!
# events prints its first stats line right after reading the OOM baseline: an OOM
# before that is not one it saw happen.
wait_for "events to print its first line" 'grep -q "\"type\":\"stats\"" "$W/oomev.events"'
touch "$W/oomev-shared/go"
wait_for "the inner dd to be killed" 'grep -q inner= "$W/oomev.out"'
check "events: the killed child's status" inner=137 "$(cat "$W/oomev.out")"
oom_line() { grep '"type":"oom"' "$W/oomev.events" | grep -q '"id":"oomev"'; }
holds "events: a {\"type\":\"oom\"} line while streaming" 'wait_for "the oom event" oom_line'
rt events --stats oomev >"$W/oomev.stats1" 2>&1
holds "events --stats: oom_events > 0 after" \
  'grep -q "\"oom_events\":[1-9]" "$W/oomev.stats1" || { cat "$W/oomev.stats1"; false; }'
kill "$events_pid" 2>/dev/null
wait "$events_pid" 2>/dev/null
rt delete --force oomev
# The kill above reaches the subshell running `rt`, not the events process in it:
# that one ends by itself at its next poll, once the container is gone.
holds "events: delete --force leaves nothing" 'wait_for "events and the container to be gone" "gone oomev"'

# --- pids: limit 20 against 100 sleeps ----------------------------------------------
# busybox sh gives up at its first failed fork: the loop runs in a child shell, and
# the init stays on as `sleep` (exec needs no new PID).
b=$(bundle pids '"pids": {"limit": 20},' \
  "exec 2>&1; sh -c 'for i in \$(seq 100); do sleep 30 & done; wait'; echo loop exited \$?; exec sleep 30")
rt create --bundle "$b" pids >"$W/pids.out" 2>&1
check "pids: pids.max" 20 "$(cat $CG/pids/pids.max 2>&1)"
rt start pids
most=0 slowest=0 t_end=$(($(now_cs) + 150))
while [ "$(now_cs)" -lt $t_end ]; do
  cur=$(cat $CG/pids/pids.current)
  [ "$cur" -le $most ] || most=$cur
  t0=$(now_cs)
  /bin/true
  dt=$(($(now_cs) - t0))
  [ $dt -le $slowest ] || slowest=$dt
done
echo "     pids.limit 20: pids.current peaked at $most; slowest guest true ${slowest}0 ms"
holds "pids: pids.current stays <= 20 and gets near it (peak $most)" '[ $most -le 20 ] && [ $most -ge 15 ]'
holds "pids: the guest still starts a process in < 1 s" '[ $slowest -lt 100 ]'
holds "pids: pids.events max > 0" '[ "$(keyed $CG/pids/pids.events max)" -gt 0 ]'
holds "pids: the shell reported the failed fork" 'grep -q "can.t fork" "$W/pids.out"'
check "pids: the container still runs" running "$(status pids)"
procs=$(cat $CG/pids/cgroup.procs)
rt delete --force pids
holds "pids: delete --force leaves nothing" 'gone pids'
left=""
for p in $procs; do [ ! -d /proc/$p ] || left="$left $p"; done
check "pids: no process of the container survives" "" "$left"

# --- cpuset: cpus "0" -------------------------------------------------------------
b=$(bundle cpuset '"cpu": {"cpus": "0"},' 'grep Cpus_allowed_list /proc/self/status')
rt create --bundle "$b" cpuset >"$W/cpuset.out" 2>&1
check "cpuset: cpuset.cpus" 0 "$(cat $CG/cpuset/cpuset.cpus 2>&1)"
rt start cpuset
wait_for "cpuset to stop" '[ "$(status cpuset)" = stopped ]'
check "cpuset: Cpus_allowed_list inside" "Cpus_allowed_list:0" "$(tr -d ' \t' <"$W/cpuset.out")"
rt delete cpuset
holds "cpuset: delete leaves nothing" 'gone cpuset'

# --- update ------------------------------------------------------------------------
b=$(bundle update '"pids": {"limit": 100},' 'exec sleep 30')
rt run --detach --bundle "$b" update >"$W/update.out" 2>&1
rt update --memory 40m --pids-limit 7 --cpu-quota 25000 --cpu-period 100000 update
check "update: memory.max" $((40 * MIB)) "$(cat $CG/update/memory.max 2>&1)"
check "update: pids.max" 7 "$(cat $CG/update/pids.max 2>&1)"
check "update: cpu.max" "25000 100000" "$(cat $CG/update/cpu.max 2>&1)"
echo '{"pids": {"limit": 9}}' | rt update -r - update
check "update -r -: pids.max" 9 "$(cat $CG/update/pids.max 2>&1)"
check "update -r -: memory.max unchanged" $((40 * MIB)) "$(cat $CG/update/memory.max 2>&1)"
check "update -r -: cpu.max unchanged" "25000 100000" "$(cat $CG/update/cpu.max 2>&1)"
check "update: still running" running "$(status update)"
rt delete --force update
holds "update: delete --force leaves nothing" 'gone update'

# --- pause / resume ------------------------------------------------------------------
mkdir -p "$W/shared"
b=$(bundle pause '' 'i=0; while :; do i=$((i + 1)); echo $i >/shared/n; sleep 0.05; done' "$W/shared")
# The counter (0 before the first write; retried while the shell is mid-write). A
# shell frozen between truncating the file and writing it leaves it empty for the
# whole pause: after 100 tries that empty value is the answer (it does not move).
counter() {
  t=0
  while :; do
    [ -e "$W/shared/n" ] || { echo 0; return; }
    c=$(cat "$W/shared/n")
    t=$((t + 1))
    { [ -n "$c" ] || [ $t -ge 100 ]; } && { echo "$c"; return; }
    sleep 0.01
  done
}
rt run --detach --bundle "$b" pause >"$W/pause.out" 2>&1
wait_for "the counter to start" '[ "$(counter)" -ge 3 ]'
rt pause pause
check "pause: state" paused "$(status pause)"
check "pause: cgroup.freeze" 1 "$(cat $CG/pause/cgroup.freeze 2>&1)"
holds "pause: cgroup.events frozen 1" '[ "$(keyed $CG/pause/cgroup.events frozen)" = 1 ]'
c0=$(counter)
sleep 0.3
check "pause: the counter stops" "$c0" "$(counter)"
rt resume pause
check "resume: state" running "$(status pause)"
holds "resume: the counter moves again" 'wait_for "the counter to move" "[ \$(counter) -ge $((c0 + 2)) ]"'
rt pause pause
check "pause again: state" paused "$(status pause)"
rt delete --force pause
holds "pause: delete --force of a paused container leaves nothing" 'gone pause'

# --- bad resources --------------------------------------------------------------------
b=$(bundle shares '"cpu": {"shares": 1},' true)
err=$(rt create --bundle "$b" shares 2>&1)
holds "badres: cpu.shares 1 is refused naming the field" \
  'case $err in *"error:"*linux.resources.cpu.shares*) true ;; *) false ;; esac || { echo "     $err"; false; }'
holds "badres: no cgroup left" 'gone shares && [ ! -d $CG ]'
b=$(bundle swap "\"memory\": {\"limit\": $((32 * MIB)), \"swap\": $((16 * MIB))}," true)
err=$(rt create --bundle "$b" swap 2>&1)
holds "badres: memory.swap below memory.limit is refused naming the field" \
  'case $err in *"error:"*linux.resources.memory.swap*) true ;; *) false ;; esac || { echo "     $err"; false; }'
holds "badres: no cgroup left" 'gone swap && [ ! -d $CG ]'

cleanup
holds "nothing is left under /sys/fs/cgroup/$PARENT" '[ ! -d $CG ]'
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
