#!/usr/bin/env bash
# bench/security.sh — what onggi-runtime's security costs, measured in pairs.
#
# usage: bench/security.sh [-n PAIRS] [RUNTIME]      (root; podman, busybox-static, jq)
#
# (a) podman's default capabilities + podman's default seccomp profile (taken from the
#     config.json podman itself writes for `podman run`), on create: `create` + `delete
#     -f` of a bundle with them against the same bundle without them, alternating run by
#     run (block-wise runs drift by more than the difference on this VM). The filter
#     comes from the runtime's cache after the first create, as it does in use.
# (b) the sealed re-exec (CVE-2019-5736): `run` of `true` from the binary as installed
#     (re-executed from a read-only bind mount) against the same binary on a read-only
#     mount of its own (no re-exec needed), alternating.
# Prints, for each, the median of each side and the median of the per-pair differences.
set -euo pipefail

PAIRS=200
while getopts n: o; do
  case $o in
    n) PAIRS=$OPTARG ;;
    *) sed -n '2,14s/^# \{0,1\}//p' "$0"; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
here=$(cd "$(dirname "$0")/.." && pwd)
RT=$(realpath "${1:-$here/target/x86_64-unknown-linux-gnu/release/onggi-runtime}")
T=$(mktemp -d /tmp/onggi-secbench.XXXXXX)
ROOT=$T/state
PODMAN=(podman --root "$T/storage" --runroot "$T/run" --tmpdir "$T/tmp" --cgroup-manager cgroupfs --runtime "$RT")

cleanup() {
  set +e
  for id in $("$RT" --root "$ROOT" list -q 2>/dev/null); do "$RT" --root "$ROOT" delete -f "$id" >/dev/null 2>&1; done
  "${PODMAN[@]}" rm -af >/dev/null 2>&1
  "${PODMAN[@]}" system reset -f >/dev/null 2>&1
  for c in /sys/fs/cgroup/*/libpod_parent /sys/fs/cgroup/*/onggi-secbench; do [[ -d $c ]] && rmdir "$c"/* "$c" 2>/dev/null; done
  mountpoint -q "$T/ro" && umount "$T/ro"
  grep -o "$T[^ ]*" /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l 2>/dev/null
  rm -rf "$T"
}
trap cleanup EXIT

echo "capturing podman's default config..." >&2
bash "$here/scripts/mkbundle.sh" "$T/base" >/dev/null
tar -C "$T/base/rootfs" -cf "$T/busybox.tar" .
"${PODMAN[@]}" import -q "$T/busybox.tar" localhost/secbench >/dev/null
cid=$("${PODMAN[@]}" create --ulimit nofile=1024:1024 --ulimit nproc=32768:32768 --network none localhost/secbench true)
"${PODMAN[@]}" init "$cid" >/dev/null
cp "$("${PODMAN[@]}" inspect -f '{{.OCIConfigPath}}' "$cid")" "$T/podman.json"
"${PODMAN[@]}" rm -f "$cid" >/dev/null
jq -e '.linux.seccomp.syscalls | length > 0' "$T/podman.json" >/dev/null || { echo "no seccomp profile in podman's config" >&2; exit 1; }

# base: mkbundle's config under a cgroup parent of our own; secured: plus podman's caps and seccomp.
jq '.process.args = ["true"] | .linux.cgroupsPath = "/onggi-secbench/c"' "$T/base/config.json" > "$T/base.json"
mv "$T/base.json" "$T/base/config.json"
mkdir "$T/secured" && ln -s "$T/base/rootfs" "$T/secured/rootfs"
jq --slurpfile p "$T/podman.json" '.process.capabilities = $p[0].process.capabilities | .linux.seccomp = $p[0].linux.seccomp' \
  "$T/base/config.json" > "$T/secured/config.json"

now_us() { echo "${EPOCHREALTIME/./}"; }
median() { sort -n | awk '{a[NR] = $1} END {if (NR == 0) print "-"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
cycle() {  # BIN BUNDLE -> microseconds of create + delete -f
  local t0; t0=$(now_us)
  "$1" --root "$ROOT" create --bundle "$2" c >/dev/null
  "$1" --root "$ROOT" delete -f c >/dev/null
  echo $(($(now_us) - t0))
}
runonce() {  # BIN -> microseconds of run
  local t0; t0=$(now_us)
  "$1" --root "$ROOT" run --bundle "$T/base" r >/dev/null
  echo $(($(now_us) - t0))
}
pairs() {  # FN A B -> "median(A) median(B) median(B-A)" in ms
  local fn=$1 a=$2 b=$3 i ta tb
  : > "$T/a"; : > "$T/b"; : > "$T/d"
  for _ in 1 2 3; do "$fn" $a >/dev/null; "$fn" $b >/dev/null; done
  for ((i = 0; i < PAIRS; i++)); do
    if ((i % 2)); then ta=$("$fn" $a); tb=$("$fn" $b); else tb=$("$fn" $b); ta=$("$fn" $a); fi
    echo "$ta" >> "$T/a"; echo "$tb" >> "$T/b"; echo $((tb - ta)) >> "$T/d"
  done
  printf '%.3f %.3f %+.3f\n' "$(median < "$T/a")e-3" "$(median < "$T/b")e-3" "$(median < "$T/d")e-3"
}

echo "(a) $PAIRS pairs of create+delete, without / with podman's caps and seccomp..." >&2
read -r a b d < <(pairs cycle "$RT $T/base" "$RT $T/secured")
# The pair functions take "BIN BUNDLE" as two words.
echo "| create + delete -f | without: $a ms | with podman's caps + seccomp (cached): $b ms | difference (median of pairs): $d ms |"

echo "(b) $PAIRS pairs of run, binary on a read-only mount (no re-exec) / as installed (sealed re-exec)..." >&2
mkdir "$T/ro" "$T/bin" && cp "$RT" "$T/bin/onggi-runtime"
mount --bind -o ro "$T/bin" "$T/ro"
read -r a b d < <(pairs runonce "$T/ro/onggi-runtime" "$T/bin/onggi-runtime")
echo "| run | read-only install: $a ms | sealed re-exec: $b ms | difference (median of pairs): $d ms |"
