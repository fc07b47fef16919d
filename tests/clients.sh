#!/usr/bin/env bash
# Real clients driving onggi-runtime: podman (--runtime) and containerd (ctr run
# --runc-binary, the BinaryName route Kubernetes uses). Each scenario checks what the
# client prints or returns; the script exits non-zero on the first failure and
# always cleans up: private podman storage and a private containerd under one temp
# dir, no host network (podman --network none), no cgroups or mounts left.
#
# usage: tests/clients.sh [path/to/onggi-runtime]   (root; podman, containerd, busybox-static)
set -euo pipefail

RT=$(realpath "${1:-target/x86_64-unknown-linux-gnu/debug/onggi-runtime}")
here=$(cd "$(dirname "$0")/.." && pwd)
T=$(mktemp -d /tmp/onggi-clients.XXXXXX)
NS=onggi-test
CTRD_PID=
pass=0 fail=0

ok() { echo "ok   $*"; pass=$((pass + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }
expect() { # expect NAME WANT GOT
  if [[ $3 == *"$2"* ]]; then ok "$1"; else bad "$1: wanted '$2', got '$3'"; fi
}

PODMAN=(podman --root "$T/storage" --runroot "$T/run" --cgroup-manager cgroupfs --runtime "$RT")
# Low hard limits here (nofile 20000, no CAP_SYS_RESOURCE): podman's defaults would be refused.
LIMITS=(--ulimit nofile=1024:1024 --ulimit nproc=32768:32768 --network none)
CTR=(ctr -a "$T/containerd/containerd.sock" -n "$NS")

cleanup() {
  set +e
  for c in $("${PODMAN[@]}" ps -aq 2>/dev/null); do "${PODMAN[@]}" rm -f "$c" >/dev/null 2>&1; done
  "${PODMAN[@]}" system reset -f >/dev/null 2>&1
  if [[ -n $CTRD_PID ]]; then
    for c in $("${CTR[@]}" task ls -q 2>/dev/null); do "${CTR[@]}" task kill -s KILL "$c" >/dev/null 2>&1; "${CTR[@]}" task rm -f "$c" >/dev/null 2>&1; done
    for c in $("${CTR[@]}" container ls -q 2>/dev/null); do "${CTR[@]}" container rm "$c" >/dev/null 2>&1; done
    kill "$CTRD_PID" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$CTRD_PID" 2>/dev/null || break; sleep 0.1; done
  fi
  # podman and containerd leave their (empty) parent cgroups behind.
  for c in /sys/fs/cgroup/*/libpod_parent/conmon /sys/fs/cgroup/*/libpod_parent /sys/fs/cgroup/*/"$NS" /sys/fs/cgroup/"$NS"; do
    [[ -d $c ]] && rmdir "$c" 2>/dev/null
  done
  rmdir "/run/containerd/runc/$NS" 2>/dev/null
  grep -o "$T[^ ]*" /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l 2>/dev/null
  rm -rf "$T"
}
trap cleanup EXIT

# A busybox image from Debian's busybox-static, imported into podman.
bash "$here/scripts/mkbundle.sh" "$T/bundle" >/dev/null
tar -C "$T/bundle/rootfs" -cf "$T/busybox.tar" .
"${PODMAN[@]}" import -q "$T/busybox.tar" localhost/onggi-busybox >/dev/null
IMG=localhost/onggi-busybox

echo "== onggi-runtime run and exec with a terminal, no --console-socket (relayed, as runc does)"
cp -a "$T/bundle" "$T/tty"
sed -i 's/"terminal": false/"terminal": true/; s/"true"$/"sh"/' "$T/tty/config.json"
grep -q '"terminal": true' "$T/tty/config.json" || bad "could not turn on process.terminal in the test bundle"
set +e
out=$(printf 'tty; echo in-$((6*7)); exit 4\n' | script -qec "stty rows 33 cols 91; $RT --root $T/rt run --bundle $T/tty onggi-tty; echo rc=\$?" /dev/null | tr -d '\r')
set -e
expect "run relays a pty" "/dev/pts/0" "$out"
expect "run relays typed input" "in-42" "$out"
expect "run returns the exit code through the relay" "rc=4" "$out"
out=$(printf 'stty size; exit\n' | script -qec "stty rows 33 cols 91; $RT --root $T/rt run --bundle $T/tty onggi-tty2" /dev/null | tr -d '\r')
expect "run gives the pty our window size" "33 91" "$out"

echo "== podman --runtime $RT"
out=$("${PODMAN[@]}" run --rm "${LIMITS[@]}" $IMG sh -c 'echo pid=$$; hostname')
expect "podman run --rm: the container's shell is PID 1" "pid=1" "$out"

out=$("${PODMAN[@]}" run --rm "${LIMITS[@]}" $IMG grep -E '^Seccomp:' /proc/self/status)
expect "podman's default seccomp profile is loaded (mode 2: filter)" "2" "$out"

set +e
"${PODMAN[@]}" run --rm "${LIMITS[@]}" $IMG sh -c 'exit 7'
rc=$?
"${PODMAN[@]}" run --rm "${LIMITS[@]}" $IMG no-such-program 2>/dev/null
rc127=$?
set -e
expect "podman run --rm: exit code passes through" "7" "$rc"
expect "podman run: a missing program is exit 127" "127" "$rc127"

out=$(printf 'echo typed-$((6*7)); exit 5\n' | script -qec "${PODMAN[*]} run --rm -it ${LIMITS[*]} $IMG sh -c 'tty; read l; eval \"\$l\"'" /dev/null | tr -d '\r') || rc=$?
expect "podman run -it: stdin is a pty" "/dev/pts/" "$out"
expect "podman run -it: typed input runs" "typed-42" "$out"

cid=$("${PODMAN[@]}" run -d --name onggi-t1 "${LIMITS[@]}" $IMG sleep 1000)
expect "podman run -d" "running" "$("${PODMAN[@]}" inspect -f '{{.State.Status}}' onggi-t1)"
out=$("${PODMAN[@]}" exec onggi-t1 sh -c 'echo exec-pid=$$; cat /proc/1/cmdline | tr "\0" " "')
expect "podman exec joins the pid namespace" "exec-pid=" "$out"
expect "podman exec sees the init" "sleep 1000" "$out"
out=$("${PODMAN[@]}" exec -e X=y -w /tmp -u 65534 onggi-t1 sh -c 'echo $X $(pwd) $(id -u)')
expect "podman exec -e -w -u" "y /tmp 65534" "$out"
"${PODMAN[@]}" stop -t 1 onggi-t1 >/dev/null 2>&1
expect "podman stop" "exited" "$("${PODMAN[@]}" inspect -f '{{.State.Status}}' onggi-t1)"
"${PODMAN[@]}" rm onggi-t1 >/dev/null
expect "podman rm" "" "$("${PODMAN[@]}" ps -aq)"
[[ -z $(ls "$T/run/runtime" 2>/dev/null) ]] || true

echo "== containerd ctr run --runc-binary $RT"
mkdir -p "$T/containerd"
cat > "$T/containerd/config.toml" <<EOF
version = 2
root = "$T/containerd/root"
state = "$T/containerd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$T/containerd/containerd.sock"
[ttrpc]
  address = "$T/containerd/containerd.sock.ttrpc"
EOF
containerd -c "$T/containerd/config.toml" > "$T/containerd/log" 2>&1 &
CTRD_PID=$!
for _ in $(seq 100); do "${CTR[@]}" version >/dev/null 2>&1 && break; sleep 0.1; done
"${PODMAN[@]}" save --format docker-archive -o "$T/busybox-docker.tar" $IMG >/dev/null
"${CTR[@]}" image import --base-name localhost/onggi-busybox "$T/busybox-docker.tar" >/dev/null
CIMG=$("${CTR[@]}" image ls -q | head -n1)

out=$("${CTR[@]}" run --rm --runc-binary "$RT" "$CIMG" onggi-c1 sh -c 'echo ctr-pid=$$') || true
expect "ctr run --rm" "ctr-pid=1" "$out"
"${CTR[@]}" run -d --runc-binary "$RT" "$CIMG" onggi-c2 sleep 1000 >/dev/null
out=$("${CTR[@]}" task exec --exec-id e1 onggi-c2 sh -c 'echo ctr-exec=$$') || true
expect "ctr task exec" "ctr-exec=" "$out"
"${CTR[@]}" task kill -s KILL onggi-c2
for _ in $(seq 50); do "${CTR[@]}" task rm onggi-c2 >/dev/null 2>&1 && break; sleep 0.1; done
"${CTR[@]}" container rm onggi-c2
expect "ctr task/container rm" "" "$("${CTR[@]}" container ls -q)"

echo "$pass passed, $fail failed"
[[ $fail -eq 0 ]]
