#!/usr/bin/env bash
# engine.sh - benchmark the engine (onggi run/rm, its monitor) against podman and crun,
#             side by side in one run.
#
# usage: bench/engine.sh [-r RUNS] [-n N] [-m M] [-s SECS] [-o OUT.md] [-k] [ONGGI]
#   ONGGI      the onggi binary, with onggi-monitor and onggi-init beside it
#              (default target/x86_64-unknown-linux-gnu/release/onggi)
#   -r RUNS    hyperfine runs for (a) (default 30)
#   -n N       containers for (b) and (c) (default 100)
#   -m M       podman containers for conmon's PSS in (c) (default 10)
#   -s SECS    quiet time before each timed loop of (b) (default 15): the kernel tears
#              down the network namespaces of removed containers in the background,
#              and a loop started while it does takes up to twice as long
#   -o FILE    also write the markdown report to FILE
#   -k         keep the work directory (hyperfine JSON, logs)
# Measures, with one busybox root filesystem (scripts/rootfs-tar.sh) imported into a
# private onggi store and a private podman store (both under a temp dir):
#   (a) `onggi run --rm busybox true` (and with --init) against
#       `podman run --rm --runtime runc --network none --ulimit ... busybox true`,
#       hyperfine -N, wall ms; target <= 0.2 x podman
#   (b) N detached `sleep 1000`: `onggi run -d` N times, then `onggi rm -f` N times,
#       total wall time of each loop, against `crun run -d` / `crun delete -f` of N
#       containers; target <= 0.8 x crun for both. crun runs them twice: on the
#       config.json onggi wrote for its first container (the same container: Docker's
#       seccomp profile and capabilities, masked paths, no cgroupsPath so that each
#       gets its own), which is the ratio that counts, and on runc's bare default
#       spec (scripts/mkbundle.sh: no seccomp), for scale. onggi-runtime runs both
#       too, to show what the engine adds to the runtime.
#   (c) the monitor's PSS: the sum of Pss over the N monitors (/proc/PID/smaps_rollup)
#       / N, against conmon's under podman (M containers) and the anchor 462 KiB;
#       target <= 0.5 x conmon
# crun 1.8 refuses to run on a hybrid cgroup host whose cgroup2 owns a controller:
# for (b)'s crun loops only, each such controller is bound to a v1 hierarchy with
# bench/runtime.sh's own functions, and unbound after, also on failure or Ctrl-C.
# At exit nothing is left: every container removed, the stores unmounted and
# deleted, podman's new parent cgroups removed; the final check is printed.
# Exit status: 0 ok, 1 a step failed or something was left behind, 2 usage.
# Run as root. Needs hyperfine, jq, podman, runc, crun, busybox-static.
set -euo pipefail
usage() { awk 'NR > 1 && /^#/ {sub(/^# ?/, ""); print; next} NR > 1 {exit}' "$0"; }

RUNS=30 N=100 M=10 SETTLE=15 OUTMD="" KEEP=0
while getopts "r:n:m:s:o:kh" o; do
  case $o in
    r) RUNS=$OPTARG ;; n) N=$OPTARG ;; m) M=$OPTARG ;; s) SETTLE=$OPTARG ;; o) OUTMD=$OPTARG ;; k) KEEP=1 ;;
    h) usage; exit 0 ;; *) usage >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[[ $SETTLE =~ ^[0-9]+$ ]] || { echo "engine.sh: -s must be a number" >&2; exit 2; }
for v in RUNS N M; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "engine.sh: -${v,,} must be a positive number" >&2; exit 2; }
done
HERE=$(cd "$(dirname "$0")" && pwd -P)
ONGGI=$(realpath "${1:-$HERE/../target/x86_64-unknown-linux-gnu/release/onggi}")

log() { echo "[engine.sh] $*" >&2; }
die() { log "$*"; exit 1; }
[[ $EUID -eq 0 ]] || die "run as root"
for t in hyperfine jq podman runc crun mountpoint; do command -v $t >/dev/null || die "$t is needed"; done
for b in onggi onggi-monitor onggi-init onggi-runtime; do
  [[ -x $(dirname "$ONGGI")/$b ]] || die "missing $(dirname "$ONGGI")/$b (cargo build --release)"
done
unset RUST_BACKTRACE RUST_LIB_BACKTRACE
export LC_ALL=C

# The hybrid-cgroup binding for crun: bench/runtime.sh's functions, as they are there
# (they use U, FIXED, MADE, FIXED_LOG, NOTES, LEFTOVER and log).
U=/sys/fs/cgroup/unified FIXED=() MADE=() FIXED_LOG="" NOTES=() LEFTOVER=0
eval "$(awk '/^hybrid_apply\(\) \{/ {on = 1} on {print} /^hybrid_revert\(\) \{/ {rev = 1} rev && /^}/ {exit}' "$HERE/runtime.sh")"
declare -F hybrid_apply hybrid_revert hier_of ncg_of >/dev/null || die "bench/runtime.sh's hybrid functions not found"

P=eb$$                                   # names and crun ids: eb<pid>-<i>
WORK=$(mktemp -d /tmp/onggi-engine-bench.XXXXXX)
ON=("$ONGGI" --root "$WORK/onggi/data" --run-root "$WORK/onggi/run")
PM=(podman --root "$WORK/podman/root" --runroot "$WORK/podman/run" --tmpdir "$WORK/podman/tmp"
    --cgroup-manager cgroupfs --events-backend file)
PMRUN=(run --runtime runc --network none --ulimit nofile=1024:1024 --ulimit nproc=32768:32768)
CR=(crun --root "$WORK/crun")
STATUS=0 CLEANED=0
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
PRE_CG=$(find /sys/fs/cgroup -maxdepth 3 -type d \( -name libpod_parent -o -name onggi \) 2>/dev/null | sort || true)
ONGGI_IDS=()

now_us() { echo "${EPOCHREALTIME//[.,]/}"; }
ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", (b - a) / 1000 }'; }
pss() { awk '/^Pss:/ {print $2}' "/proc/$1/smaps_rollup" 2>/dev/null || echo 0; }

cleanup() {
  [[ $CLEANED == 1 ]] && return 0
  CLEANED=1
  set +e
  local id x
  trap '' INT TERM HUP
  if [[ -d $WORK/onggi ]]; then
    for id in $("${ON[@]}" ps -a -q 2>/dev/null); do "${ON[@]}" rm -f "$id" >/dev/null 2>&1; done
  fi
  if [[ -d $WORK/podman ]]; then
    "${PM[@]}" rm -fa -t 0 >/dev/null 2>&1
    "${PM[@]}" rmi -fa >/dev/null 2>&1
  fi
  if [[ -d $WORK/crun ]]; then
    for id in $("${CR[@]}" list -q 2>/dev/null); do "${CR[@]}" delete -f "$id" >/dev/null 2>&1; done
  fi
  if [[ -d $WORK/onggi-runtime ]]; then
    for id in $("$(dirname "$ONGGI")/onggi-runtime" --root "$WORK/onggi-runtime" list -q 2>/dev/null); do
      "$(dirname "$ONGGI")/onggi-runtime" --root "$WORK/onggi-runtime" delete -f "$id" >/dev/null 2>&1
    done
  fi
  hybrid_revert
  # Mounts under the work dir (podman's overlay, a failed container's rootfs), last first.
  x=$(awk -v w="$WORK" 'index($5, w "/") == 1 {print $5}' /proc/self/mountinfo | tac)
  [[ -n $x ]] && { NOTES+=("mounts left under $WORK (unmounted): $(echo "$x" | wc -l)"); echo "$x" | while read -r m; do umount -l "$m"; done; }
  # Parent cgroups that podman and onggi made during the run, if empty now.
  x=$(comm -13 <(echo "$PRE_CG") <(find /sys/fs/cgroup -maxdepth 3 -type d \( -name libpod_parent -o -name onggi \) 2>/dev/null | sort))
  for d in $x; do find "$d" -depth -type d -exec rmdir {} + 2>/dev/null; done
  # The checks.
  x=$(find /sys/fs/cgroup -maxdepth 4 -type d -name "$P-*" 2>/dev/null | head -3)
  [[ -n $x ]] && { NOTES+=("CHECK FAILED: crun cgroups left: $x"); STATUS=1; }
  for id in "${ONGGI_IDS[@]}"; do
    x=$(find /sys/fs/cgroup -maxdepth 4 -type d -name "$id" 2>/dev/null | head -1)
    [[ -n $x ]] && { NOTES+=("CHECK FAILED: onggi cgroup left: $x"); STATUS=1; break; }
  done
  x=$(pgrep -f -- "$WORK" | head -3 | tr '\n' ' ')
  [[ -n $x ]] && { NOTES+=("CHECK FAILED: processes left: $x"); STATUS=1; }
  [[ $LEFTOVER == 1 ]] && STATUS=1
  if [[ $KEEP == 1 ]]; then NOTES+=("work directory kept: $WORK"); else rm -rf --one-file-system "$WORK"; fi
}
on_exit() {
  local rc=$?
  cleanup
  [[ ${#NOTES[@]} -gt 0 && $rc != 0 ]] && printf '[engine.sh] %s\n' "${NOTES[@]}" >&2
  [[ $rc == 0 ]] && rc=$STATUS
  exit "$rc"
}
trap on_exit EXIT
trap 'log interrupted; exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# ---- the image, in both stores; the crun bundle ------------------------------------
log "setting up in $WORK"
mkdir -p "$WORK/podman/tmp" "$WORK/crun"
bash "$HERE/../scripts/rootfs-tar.sh" "$WORK/rootfs.tar"
"${ON[@]}" import "$WORK/rootfs.tar" busybox >/dev/null
"${PM[@]}" import "$WORK/rootfs.tar" localhost/busybox >/dev/null
bash "$HERE/../scripts/mkbundle.sh" "$WORK/bundle" -- sleep 1000 >/dev/null

# ---- (a) run --rm true -------------------------------------------------------------
log "(a) run --rm busybox true, hyperfine x$RUNS each"
q() { printf '%q ' "$@"; }
hyperfine -N --style none --warmup 3 --runs "$RUNS" --export-json "$WORK/a.json" \
  -n onggi "$(q "${ON[@]}" run --rm busybox true)" \
  -n "onggi --init" "$(q "${ON[@]}" run --rm --init busybox true)" \
  -n podman "$(q "${PM[@]}" "${PMRUN[@]}" --rm localhost/busybox true)" >/dev/null
A=$(jq -r '.results[] | "\(.command)\t\(.median * 1000)\t\(.min * 1000)\t\(.max * 1000)"' "$WORK/a.json")
median_a() { awk -F'\t' -v c="$1" '$1 == c {print $2}' <<<"$A"; }

# ---- (b) N detached containers: onggi, then crun ------------------------------------
quiet() { log "quiet for $SETTLE s"; sleep "$SETTLE"; }
quiet
log "(b) onggi: $N x run -d, then $N x rm -f"
t0=$(now_us)
for ((i = 1; i <= N; i++)); do
  "${ON[@]}" run -d --name "$P-$i" busybox sleep 1000 >>"$WORK/onggi.ids"
done
t1=$(now_us)
mapfile -t ONGGI_IDS <"$WORK/onggi.ids"
# The same container for the runtimes: onggi's config of its first container, on the
# bundle's root filesystem (the same files), with the default cgroup of each runtime.
jq --arg r "$WORK/bundle/rootfs" '.root.path = $r | del(.linux.cgroupsPath)' \
  "$WORK/onggi/data/containers/$(head -1 "$WORK/onggi.ids")/config.json" >"$WORK/same.json"
mkdir -p "$WORK/same"; mv "$WORK/same.json" "$WORK/same/config.json"
sleep 2
# (c) the monitors, while they run
mon_sum=0 mon_n=0
for mp in $("${ON[@]}" ps --format json | jq -r '.[].monitor_pid // empty'); do
  mon_sum=$((mon_sum + $(pss "$mp"))); mon_n=$((mon_n + 1))
done
[[ $mon_n == "$N" ]] || { NOTES+=("only $mon_n of $N onggi containers had a monitor"); STATUS=1; }
t2=$(now_us)
for ((i = 1; i <= N; i++)); do "${ON[@]}" rm -f "$P-$i" >/dev/null; done
t3=$(now_us)
ON_START=$(ms "$t0" "$t1") ON_RM=$(ms "$t2" "$t3")

# A runtime's loops on a bundle: `RT run -d` N times, then `RT delete -f` N times;
# sets RT_START and RT_RM (ms).
runtime_loops() {  # LABEL BUNDLE RT...
  local label=$1 bundle=$2 t0 t1 t2 t3 i; shift 2
  quiet
  log "(b) $label: $N x run -d, then $N x delete -f"
  t0=$(now_us)
  for ((i = 1; i <= N; i++)); do
    "$@" run -d --bundle "$bundle" "$P-$i" </dev/null >/dev/null 2>>"$WORK/$label.err" ||
      { NOTES+=("$label run -d $P-$i failed: $(tail -1 "$WORK/$label.err")"); STATUS=1; }
  done
  t1=$(now_us)
  sleep 2
  t2=$(now_us)
  for ((i = 1; i <= N; i++)); do "$@" delete -f "$P-$i" >/dev/null 2>>"$WORK/$label.err"; done
  t3=$(now_us)
  RT_START=$(ms "$t0" "$t1") RT_RM=$(ms "$t2" "$t3")
}
# onggi-runtime alone, for what the engine adds to the runtime (no fix needed).
runtime_loops onggi-runtime-same "$WORK/same" "$(dirname "$ONGGI")/onggi-runtime" --root "$WORK/onggi-runtime"
ORS_START=$RT_START ORS_RM=$RT_RM
runtime_loops onggi-runtime "$WORK/bundle" "$(dirname "$ONGGI")/onggi-runtime" --root "$WORK/onggi-runtime"
OR_START=$RT_START OR_RM=$RT_RM
hybrid_apply
runtime_loops crun-same "$WORK/same" "${CR[@]}"
CS_START=$RT_START CS_RM=$RT_RM
runtime_loops crun "$WORK/bundle" "${CR[@]}"
CR_START=$RT_START CR_RM=$RT_RM
hybrid_revert

# ---- (c) conmon, live ---------------------------------------------------------------
log "(c) conmon: $M x podman run -d"
con_sum=0 con_n=0
for ((i = 1; i <= M; i++)); do
  "${PM[@]}" "${PMRUN[@]}" -d --name "$P-pm$i" localhost/busybox sleep 1000 >/dev/null
done
sleep 2
for ((i = 1; i <= M; i++)); do
  cp=$("${PM[@]}" inspect -f '{{.State.ConmonPid}}' "$P-pm$i")
  con_sum=$((con_sum + $(pss "$cp"))); con_n=$((con_n + 1))
done
"${PM[@]}" rm -f -t 0 $(for ((i = 1; i <= M; i++)); do echo "$P-pm$i"; done) >/dev/null

cleanup

# ---- report ---------------------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf (b > 0 ? "%.2f" : "-"), a / b }'; }
MON=$((mon_sum / (mon_n > 0 ? mon_n : 1))) CON=$((con_sum / (con_n > 0 ? con_n : 1)))
report() {
  echo "## Engine benchmark ($(date -u '+%Y-%m-%d %H:%M UTC'))"
  echo
  echo "Host: $(uname -sr), $(nproc) CPUs; load average $LOAD0 at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end."
  echo "onggi: $ONGGI ($("$ONGGI" --version)); $(podman --version), runc $(runc --version | awk 'NR == 1 {print $3}'); $(crun --version | head -1)."
  echo "(b): $SETTLE s of quiet before each loop of $N; crun ran with hugetlb bound to cgroup v1${FIXED_LOG:+ ($FIXED_LOG)}, unbound after."
  echo
  echo "| figure | onggi | other | onggi ÷ other | target |"
  echo "| --- | ---: | ---: | ---: | --- |"
  local o i p
  o=$(median_a onggi) i=$(median_a "onggi --init") p=$(median_a podman)
  printf '| (a) `run --rm busybox true`, median ms (n=%d) | %.1f | podman %.1f | **%s** | ≤ 0.2 |\n' "$RUNS" "$o" "$p" "$(ratio "$o" "$p")"
  printf '| (a) the same with `--init` | %.1f | podman %.1f | %s | |\n' "$i" "$p" "$(ratio "$i" "$p")"
  printf '| (b) start %d detached `sleep 1000`, total ms | %d | crun %d | **%s** | ≤ 0.8 |\n' "$N" "$ON_START" "$CS_START" "$(ratio "$ON_START" "$CS_START")"
  printf '| (b) remove them (`rm -f` / `delete -f` each), total ms | %d | crun %d | **%s** | ≤ 0.8 |\n' "$ON_RM" "$CS_RM" "$(ratio "$ON_RM" "$CS_RM")"
  printf '| (b) for scale: crun on runc'"'"'s bare spec (no seccomp), start / remove, ms | %d / %d | crun %d / %d | %s / %s | |\n' \
    "$ON_START" "$ON_RM" "$CR_START" "$CR_RM" "$(ratio "$ON_START" "$CR_START")" "$(ratio "$ON_RM" "$CR_RM")"
  printf '| (b) for scale: onggi-runtime on the same config, start / remove, ms | %d / %d | crun %d / %d | %s / %s | |\n' \
    "$ORS_START" "$ORS_RM" "$CS_START" "$CS_RM" "$(ratio "$ORS_START" "$CS_START")" "$(ratio "$ORS_RM" "$CS_RM")"
  printf '| (b) for scale: onggi-runtime on the bare spec, start / remove, ms | %d / %d | crun %d / %d | %s / %s | |\n' \
    "$OR_START" "$OR_RM" "$CR_START" "$CR_RM" "$(ratio "$OR_START" "$CR_START")" "$(ratio "$OR_RM" "$CR_RM")"
  printf '| (c) monitor PSS, KiB (mean of %d) | %d | conmon %d (n=%d) | **%s** | ≤ 0.5 |\n' "$mon_n" "$MON" "$CON" "$con_n" "$(ratio "$MON" "$CON")"
  printf '| (c) against the anchor | %d | conmon 462 | %s | ≤ 0.5 |\n' "$MON" "$(ratio "$MON" 462)"
  echo
  echo "Clean-up check: $( [[ $STATUS == 0 ]] && echo 'nothing left' || echo 'FAILED, see notes')."
  if [[ ${#NOTES[@]} -gt 0 ]]; then echo; echo "Notes:"; printf -- '- %s\n' "${NOTES[@]}"; fi
}
if [[ -n $OUTMD ]]; then report | tee "$OUTMD"; else report; fi
exit "$STATUS"
