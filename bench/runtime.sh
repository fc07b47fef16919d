#!/usr/bin/env bash
# runtime.sh - benchmark OCI runtimes (runc-compatible CLIs) side by side, in one run.
#
# usage: bench/runtime.sh [-r RUNS] [-n HANGRUNS] [-m RSSRUNS] [-t SECS] [-w WARMUP]
#                         [-o OUT.md] [-k] RUNTIME...
#   RUNTIME    path or PATH name of a runc-compatible binary: runc, crun,
#              target/x86_64-unknown-linux-gnu/release/onggi-runtime, ... Each one gets its own state dir,
#              passed as the global flag `--root /tmp/onggi-bench/<name>`.
#   -r RUNS    hyperfine runs for (a) and (b) (default 30)
#   -n N       runs of the hang check (d) per runtime (default 500)
#   -m N       runs for the peak RSS (c) (default 10)
#   -t SECS    watchdog: every timed run is `timeout -s KILL SECS ...` (default 10;
#              0 = no watchdog in (a)/(b), which then hang forever if the runtime does).
#              The wrapper adds about 1 ms to (a), (b) and (d), the same for every runtime.
#   -w N       untimed warm-up runs per runtime before (a) and (b) (default 3)
#   -o FILE    also write the markdown report to FILE
#   -k         keep the raw data (hyperfine JSON, per-run CSV, stderr of failed runs)
# Measures, per runtime, with the bundle of scripts/mkbundle.sh (busybox, runc spec
# defaults, args [/bin/true]):
#   (a) run     `RT run --bundle B ID`, hyperfine -N, a fresh id per run
#               (--parameter-scan), wall ms
#   (b) cycle   create --pid-file, start, wait until the pid is gone (/proc poll),
#               delete: a small bash script, timed as a whole by hyperfine, wall ms
#               (includes ~1-2 ms of bash start-up, as the reference lifecycle.sh)
#   (c) rss     peak RSS of `RT run` (GNU time %M: the largest of RT and the processes
#               it reaped), KiB, no wrapper in between
#   (d) hang    N runs of `timeout -s KILL SECS RT run`, runtimes interleaved, counted
#               ok / hang (killed by the watchdog) / fail (other non-zero exit); the
#               wall time of the ok runs is reported too ("run-loop")
# Prints a markdown table (median, min-max, n, failures, ratio to crun or, without
# crun, to the first runtime) to stdout and to FILE.
# On a hybrid cgroup host whose cgroup2 still owns controllers (crun 1.8 refuses to run
# there) each of them is bound to a v1 hierarchy for the run and unbound at exit, also on
# Ctrl-C or failure. At exit nothing is left: containers are force-deleted, their
# cgroups removed, the bundle and state dirs deleted; the final check is printed.
# Exit status: 0 ok, 1 a runtime failed or something was left behind, 2 usage.
# Run as root. Needs hyperfine, jq, GNU time (/usr/bin/time), timeout, flock, busybox-static.
set -euo pipefail
usage() { awk 'NR > 1 && /^#/ {sub(/^# ?/, ""); print; next} NR > 1 {exit}' "$0"; }

RUNS=30 HANGRUNS=500 RSSRUNS=10 TMO=10 WARM=3 OUTMD="" KEEP=0
while getopts "r:n:m:t:w:o:kh" o; do
  case $o in
    r) RUNS=$OPTARG ;; n) HANGRUNS=$OPTARG ;; m) RSSRUNS=$OPTARG ;; t) TMO=$OPTARG ;;
    w) WARM=$OPTARG ;; o) OUTMD=$OPTARG ;; k) KEEP=1 ;;
    h) usage; exit 0 ;; *) usage >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[[ $# -ge 1 ]] || { usage >&2; exit 2; }
for v in RUNS HANGRUNS RSSRUNS TMO WARM; do
  [[ ${!v} =~ ^[0-9]+$ ]] || { echo "runtime.sh: -${v} must be a number" >&2; exit 2; }
done
[[ $RUNS -ge 1 ]] || { echo "runtime.sh: -r must be >= 1" >&2; exit 2; }

exec {ERRFD}>&2           # the real stderr, also for traps run inside redirected calls
die() { echo "runtime.sh: $*" >&$ERRFD; exit 1; }
log() { echo "[runtime.sh] $*" >&$ERRFD; }
[[ $EUID -eq 0 ]] || die "run as root"
for t in hyperfine jq timeout flock mountpoint; do command -v $t >/dev/null || die "$t is needed"; done
TIME=/usr/bin/time
"$TIME" -f %M true >/dev/null 2>&1 || die "GNU time is needed at $TIME (apt-get install time)"
HERE=$(cd "$(dirname "$0")" && pwd -P)
MKBUNDLE=$HERE/../scripts/mkbundle.sh
[[ -x $MKBUNDLE ]] || die "missing $MKBUNDLE"
unset RUST_BACKTRACE RUST_LIB_BACKTRACE   # slow error paths in Rust runtimes
export LC_ALL=C

# ---- runtimes -----------------------------------------------------------------------
RTS=() LABELS=()
for r in "$@"; do
  p=$(command -v -- "$r" 2>/dev/null) || die "runtime not found: $r"
  [[ $p == /* ]] || p=$(cd "$(dirname "$p")" && pwd -P)/$(basename "$p")
  l=$(basename "$p"); l=${l//[^A-Za-z0-9._-]/_}
  base=$l k=2
  for x in "${LABELS[@]}"; do [[ $x == "$l" ]] && { l=$base-$k; k=$((k + 1)); }; done
  RTS+=("$p"); LABELS+=("$l")
done
NRT=${#RTS[@]}

TOP=/tmp/onggi-bench
mkdir -p "$TOP"
exec {LOCKFD}>"$TOP/.lock"
flock -n "$LOCKFD" || die "another runtime.sh is running (lock $TOP/.lock)"

P=rtb$$                       # container id prefix: rtb<pid>-<runtime#>-<phase><i>
U=/sys/fs/cgroup/unified
WORK="" BUNDLE="" CLEANED=0 STATUS=0 LEFTOVER=0 FIXED_LOG=""
FIXED=() MADE=() NOTES=() PRE_ONGGI=""
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
HUGETLB_WAS_MOUNTED=0; mountpoint -q /sys/fs/cgroup/hugetlb && HUGETLB_WAS_MOUNTED=1
PRE_ONGGI=$(find /sys/fs/cgroup -maxdepth 3 -name '*onggi*' 2>/dev/null | sort || true)

root_of() { echo "$TOP/${LABELS[$1]}"; }
rt() { local i=$1; shift; "${RTS[$i]}" --root "$(root_of "$i")" "$@"; }

# ids of the containers in runtime #i's private root (all of them are ours)
list_ids() {
  local i=$1 out
  if out=$(rt "$i" list -q 2>/dev/null); then printf '%s\n' "$out"
  else rt "$i" list 2>/dev/null | awk 'NR > 1 && NF {print $1}'; fi
}
# force-delete whatever runtime #i still has; prints how many were there
sweep() {
  local i=$1 id n=0
  for id in $(list_ids "$i"); do
    rt "$i" delete -f "$id" >/dev/null 2>&1 || true
    n=$((n + 1))
  done
  echo $n
}

# ---- cgroup hybrid fix (as /work/shared/bench/cgroup-hybrid-fix.sh, undone at exit) --
hybrid_apply() {
  [[ -r $U/cgroup.controllers ]] || return 0
  local c d ctrls
  local h; h=$(hier_of hugetlb)
  if [[ -n $h && $h != 0 ]] && ! mountpoint -q /sys/fs/cgroup/hugetlb; then
    log "warning: hugetlb is bound to a v1 hierarchy that is not mounted (left by an earlier unclean revert?)"
  fi
  read -r -a ctrls < "$U/cgroup.controllers" || true
  for c in "${ctrls[@]}"; do
    d=/sys/fs/cgroup/$c
    mountpoint -q "$d" && continue
    if [[ ! -d $d ]]; then mkdir "$d"; MADE+=("$d"); fi
    if mount -t cgroup -o "$c" cgroup "$d"; then
      FIXED+=("$c"); FIXED_LOG+="${FIXED_LOG:+, }$c"; log "hybrid cgroups: bound $c to a v1 hierarchy at $d (undone at exit)"
    else
      NOTES+=("could not bind $c to v1; crun may refuse to run")
    fi
  done
}
hier_of() { awk -v c="$1" '$1 == c {print $2}' /proc/cgroups; }   # 0 = owned by cgroup2
ncg_of() { awk -v c="$1" '$1 == c {print $3}' /proc/cgroups; }    # cgroups incl. dying ones
hybrid_revert() {
  local k c d left t try
  for ((k = ${#FIXED[@]} - 1; k >= 0; k--)); do
    c=${FIXED[k]} d=/sys/fs/cgroup/${FIXED[k]}
    # The hierarchy was empty when mounted: what is in it now came from the runtimes,
    # or from containers someone else started meanwhile (any runtime that looks for v1
    # mounts uses it). Remove the empty ones (rmdir refuses cgroups with tasks); wait up
    # to 30 s for cgroups still in use.
    for ((t = 0; t < 300; t++)); do
      find "$d" -mindepth 1 -depth -type d -exec rmdir {} + 2>/dev/null
      left=$(find "$d" -mindepth 1 -type d 2>/dev/null | head -3 | tr '\n' ' ')
      [[ -z $left ]] && break
      [[ $t == 0 ]] && log "waiting up to 30 s for cgroups still in use in $d: $left"
      sleep 0.1
    done
    if [[ -n $left ]]; then
      NOTES+=("NOT unbound $c: $d still has cgroups in use: $left; once they are gone: find $d -mindepth 1 -depth -type d -exec rmdir {} + ; umount $d; rmdir $d")
      LEFTOVER=1; continue
    fi
    # A hierarchy is destroyed at umount only if it has no child cgroups at all, dying
    # ones included (removed cgroups linger ~100 ms). Unmounted with children it lives
    # on, invisible, and $c never returns to cgroup2. So wait for them to go, unmount,
    # and check that the kernel gave $c back to cgroup2 (hierarchy id 0); else retry.
    for ((try = 1; try <= 5; try++)); do
      mountpoint -q "$d" || mount -t cgroup -o "$c" cgroup "$d" || break
      for ((t = 0; t < 100; t++)); do [[ $(ncg_of "$c") == 1 ]] && break; sleep 0.05; done
      umount "$d" || { NOTES+=("umount $d failed"); break; }
      for ((t = 0; t < 20; t++)); do [[ $(hier_of "$c") == 0 ]] && break; sleep 0.05; done
      [[ $(hier_of "$c") == 0 ]] && break
    done
    if [[ $(hier_of "$c") != 0 ]]; then
      NOTES+=("CHECK FAILED: $c is still bound to a v1 hierarchy ($(grep "^$c" /proc/cgroups | tr '\t' ' '))"); LEFTOVER=1
    fi
  done
  for d in "${MADE[@]}"; do mountpoint -q "$d" || rmdir "$d" 2>/dev/null || true; done
  FIXED=()
}

# ---- commands in flight ---------------------------------------------------------------
# Long commands run in the background and are waited for: bash runs a trap (Ctrl-C) only
# once a foreground child has exited, and hyperfine carries on after SIGINT; `wait` is
# interrupted at once. On an interrupt, settle() lets the command in flight finish
# (the watchdog bounds it) so that no half-created container escapes the sweep.
CUR="" CURHF=0
bgrun() {  # ERRFILE CMD... (stdin and stdout /dev/null; stderr appended to ERRFILE)
  local ef=$1; shift
  "$@" </dev/null >/dev/null 2>>"$ef" {ERRFD}>&- {LOCKFD}>&- &
  CUR=$!
  local rc=0
  { wait "$CUR"; } 2>/dev/null || rc=$?
  CUR=""
  return "$rc"
}
descendants() {
  local c
  for c in $(cat /proc/"$1"/task/*/children 2>/dev/null); do echo "$c"; descendants "$c"; done
}
running() {  # pid... -> those still running (not gone, not zombies)
  local p l st
  for p in "$@"; do
    l=""; read -r l < "/proc/$p/stat" 2>/dev/null || continue
    st=${l##*) }; st=${st%% *}
    [[ $st == Z || $st == X ]] || echo "$p"
  done
}
settle() {
  [[ -n $CUR ]] || return 0
  local pids alive t lim
  pids=$(echo "$CUR"; descendants "$CUR")
  [[ $CURHF == 1 ]] && kill -TERM "$CUR" 2>/dev/null   # hyperfine: no further runs
  lim=$(( (TMO > 0 ? TMO : 10) * 10 + 20 ))
  for ((t = 0; t < lim; t++)); do
    # shellcheck disable=SC2086
    alive=$(running $pids)
    [[ -z $alive ]] && break
    [[ $t == 0 ]] && log "waiting for the command in flight to end"
    sleep 0.1
  done
  if [[ -n $alive ]]; then
    # shellcheck disable=SC2086
    kill -KILL $alive 2>/dev/null
    NOTES+=("killed processes still running after the interrupt: $(echo $alive)")
  fi
  wait "$CUR" 2>/dev/null
  CUR=""
}

# ---- cleanup: runs once, at the end or on any exit (error, Ctrl-C, TERM) ------------
cleanup() {
  [[ $CLEANED == 1 ]] && return 0
  CLEANED=1
  set +e
  local i n d x j
  settle
  # our background watchdogs
  for j in $(jobs -p); do kill -KILL "$j" 2>/dev/null; done
  for ((i = 0; i < NRT; i++)); do
    d=$(root_of "$i")
    [[ -d $d ]] || continue
    n=$(sweep "$i")
    [[ $n -gt 0 ]] && NOTES+=("${LABELS[i]}: force-deleted $n leftover container(s)")
    x=$(list_ids "$i" | grep -c . || true)
    if [[ $x -gt 0 ]]; then NOTES+=("${LABELS[i]}: $x container(s) could not be deleted (state in $d)"); STATUS=1
    else rm -rf --one-file-system "$d"; fi
  done
  # cgroups named after our containers (a runtime that did not remove them)
  x=$(find /sys/fs/cgroup -mindepth 1 -maxdepth 8 -depth -type d -name "$P-*" 2>/dev/null)
  if [[ -n $x ]]; then
    NOTES+=("cgroups left by the runtimes (removed): $(echo "$x" | head -3 | tr '\n' ' ')")
    echo "$x" | while read -r d; do rmdir "$d" 2>/dev/null; done
  fi
  # onggi's default parent cgroup /onggi, if it appeared during the run and is empty now
  x=$(comm -13 <(echo "$PRE_ONGGI") <(find /sys/fs/cgroup -maxdepth 3 -type d -name onggi 2>/dev/null | sort))
  if [[ -n $x ]]; then
    NOTES+=("empty parent cgroups left by the runtimes (removed): $(echo "$x" | tr '\n' ' ')")
    echo "$x" | while read -r d; do [[ -n $d ]] && rmdir "$d" 2>/dev/null; done
  fi
  # the bundle: nothing may be mounted there
  if [[ -n $BUNDLE && -d $BUNDLE ]]; then
    x=$(awk -v b="$BUNDLE" '$5 == b || index($5, b "/") == 1 {print $5}' /proc/self/mountinfo | sort -r)
    if [[ -n $x ]]; then
      NOTES+=("mounts left in the bundle (unmounted): $(echo "$x" | tr '\n' ' ')"); STATUS=1
      echo "$x" | while read -r d; do umount -l "$d"; done
    fi
    rm -rf --one-file-system "$BUNDLE"
  fi
  hybrid_revert
  [[ -n $WORK && $KEEP == 1 ]] && NOTES+=("raw data kept in $WORK")
  # final check (cgroups named after our containers are ours; other new *onggi* ones are
  # someone else's containers, e.g. tests running at the same time: noted, not touched)
  x=$(find /sys/fs/cgroup -maxdepth 8 -type d -name "$P-*" 2>/dev/null | head -3)
  [[ -n $x ]] && { NOTES+=("CHECK FAILED: container cgroups remain: $(echo $x)"); LEFTOVER=1; }
  x=$(comm -13 <(echo "$PRE_ONGGI") <(find /sys/fs/cgroup -maxdepth 3 -name '*onggi*' 2>/dev/null | sort))
  [[ -n $x ]] && NOTES+=("*onggi* cgroups that appeared during the run and are not ours (in use by someone else?): $(echo "$x" | head -5 | tr '\n' ' ')")
  if [[ $HUGETLB_WAS_MOUNTED == 0 ]] && mountpoint -q /sys/fs/cgroup/hugetlb; then
    NOTES+=("CHECK FAILED: /sys/fs/cgroup/hugetlb is still mounted"); LEFTOVER=1
  fi
  [[ $LEFTOVER == 1 ]] && STATUS=1
  set -e
}
on_exit() {
  local rc=$?
  set +e
  trap '' INT TERM HUP     # a second Ctrl-C must not cut the clean-up short
  if [[ $CLEANED == 0 ]]; then
    cleanup
    [[ ${#NOTES[@]} -gt 0 ]] && printf '[runtime.sh] %s\n' "${NOTES[@]}" >&$ERRFD
    [[ $rc == 0 ]] && rc=$STATUS
  fi
  [[ -n $WORK && $KEEP == 0 ]] && rm -rf "$WORK"
  rm -f "$TOP/.lock"; rmdir "$TOP" 2>/dev/null
  exit "$rc"
}
trap on_exit EXIT
trap 'log interrupted; exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# ---- set up ---------------------------------------------------------------------------
WORK=$(mktemp -d "$TOP/work.XXXXXX")
BUNDLE=$(mktemp -d "$TOP/bundle.XXXXXX")
"$MKBUNDLE" "$BUNDLE" -- /bin/true >/dev/null
hybrid_apply
for ((i = 0; i < NRT; i++)); do
  mkdir -p "$(root_of "$i")"
  n=$(sweep "$i")   # state left by an earlier, killed run of this script
  [[ $n -gt 0 ]] && log "${LABELS[i]}: removed $n stale container(s) from $(root_of "$i")"
done

cat > "$WORK/cycle.sh" <<'EOF'
#!/bin/bash
# cycle.sh RT ROOT BUNDLE ID PIDFILE: create, start, wait for the exit, delete
RT=$1 R=$2 B=$3 ID=$4 PF=$5
fail() { "$RT" --root "$R" delete -f "$ID" >/dev/null 2>&1; exit 1; }
"$RT" --root "$R" create --bundle "$B" --pid-file "$PF" "$ID" || fail
pid=""; read -r pid < "$PF"; [[ -n $pid ]] || fail
"$RT" --root "$R" start "$ID" || fail
i=0
while read -r st < "/proc/$pid/stat"; do
  st=${st##*) }; st=${st%% *}
  [[ $st == Z || $st == X ]] && break
  (( ++i > 2000 )) && sleep 0.001
done 2>/dev/null
"$RT" --root "$R" delete "$ID" || fail
EOF
chmod +x "$WORK/cycle.sh"

W=(); [[ $TMO != 0 ]] && W=(timeout -s KILL "$TMO")
q() { printf '%q ' "$@"; }       # quote words for hyperfine -N (shell-words)

# summary rows: label<TAB>metric<TAB>unit<TAB>median<TAB>min<TAB>max<TAB>n<TAB>failinfo
SUM=$WORK/summary.tsv
: > "$SUM"
stats() {  # stdin: numbers -> "median min max n" (or "- - - 0")
  sort -g | awk '{v[NR]=$1} END { if (NR == 0) { print "- - - 0"; exit }
    m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    printf "%.6g %.6g %.6g %d\n", m, v[1], v[NR], NR }'
}
row() { local IFS=$'\t'; echo "$*" >> "$SUM"; }

hf() {  # i metric phase cmd-prefix (the id {i} is appended by the caller's template)
  local i=$1 metric=$2 tmpl=$4 json=$WORK/${LABELS[$1]}.$2.json st fails killed n
  CURHF=1
  bgrun /dev/null hyperfine -N -i --style none --runs 1 --parameter-scan i 1 "$RUNS" \
    --export-json "$json" "$tmpl" || true
  CURHF=0
  n=$(sweep "$i"); [[ $n -gt 0 ]] && NOTES+=("${LABELS[i]} $metric: $n container(s) left by failed runs were force-deleted")
  if [[ ! -s $json ]]; then row "${LABELS[i]}" "$metric" ms - - - 0 "hyperfine failed"; return; fi
  st=$(jq -r '.results[] | select(.exit_codes[0] == 0) | .times[0] * 1000' "$json" | stats)
  # killed by the watchdog: timeout -s KILL exits 137 (hyperfine may record no code)
  read -r fails killed < <(jq -r '[.results[] | select(.exit_codes[0] != 0)] as $f
    | "\($f | length) \([$f[] | select(.exit_codes[0] == null or .exit_codes[0] == 137 or .exit_codes[0] == 124)] | length)"' "$json")
  # shellcheck disable=SC2086
  row "${LABELS[i]}" "$metric" ms $st "$fails failed ($killed hung)"
}

warm() {  # i : untimed runs, so caches and the cgroup parents exist for everyone
  local i=$1 k
  for ((k = 1; k <= WARM; k++)); do
    bgrun /dev/null "${W[@]}" "${RTS[i]}" --root "$(root_of "$i")" run --bundle "$BUNDLE" "$P-$i-w$k" || true
  done
  sweep "$i" >/dev/null
}

# ---- preflight: every runtime must run the bundle once --------------------------------
OK=()
for ((i = 0; i < NRT; i++)); do
  VER[i]=$(timeout -s KILL 5 "${RTS[i]}" --version </dev/null 2>/dev/null | head -1 || true)
  # stderr to a file, not a pipe: a container process left behind may hold it open
  ef=$WORK/${LABELS[i]}.preflight.err
  : > "$ef"
  if bgrun "$ef" timeout -s KILL 20 "${RTS[i]}" --root "$(root_of "$i")" run --bundle "$BUNDLE" "$P-$i-p"; then
    OK[i]=1
  else
    rc=$?; OK[i]=0; STATUS=1
    sweep "$i" >/dev/null
    err="exit $rc$( [[ $rc == 137 ]] && echo ' (killed after 20 s)'): $( { grep -v '^$' "$ef" | head -2 | tr '\n' ' ' | cut -c1-200; } || true)"
    NOTES+=("${LABELS[i]}: preflight \`run\` failed, not measured: $err")
    log "${LABELS[i]}: preflight failed: $err"
  fi
done

# ---- (a) run, (b) cycle, (c) peak RSS, per runtime ----------------------------------------
for ((i = 0; i < NRT; i++)); do
  [[ ${OK[i]} == 1 ]] || continue
  l=${LABELS[i]} R=$(root_of "$i") RT=${RTS[i]}
  log "$l: (a) run x$RUNS"
  warm "$i"
  hf "$i" run r "$(q "${W[@]}" "$RT" --root "$R" run --bundle "$BUNDLE")$P-$i-r{i}"
  log "$l: (b) create+start+wait+delete x$RUNS"
  warm "$i"
  hf "$i" cycle c "$(q "${W[@]}" "$WORK/cycle.sh" "$RT" "$R" "$BUNDLE")$P-$i-c{i} $(printf %q "$WORK")/$P-$i-c{i}.pid"
  log "$l: (c) peak RSS of run x$RSSRUNS"
  : > "$WORK/$l.rss"
  fails=0 hung=0
  for ((k = 1; k <= RSSRUNS; k++)); do
    id=$P-$i-m$k
    rm -f "$WORK/rss.one"
    "$TIME" -f %M -o "$WORK/rss.one" "$RT" --root "$R" run --bundle "$BUNDLE" "$id" \
      </dev/null >/dev/null 2>&1 {ERRFD}>&- {LOCKFD}>&- &
    tp=$! CUR=$!
    wd=""
    if [[ $TMO != 0 ]]; then   # watchdog without a process between time and the runtime
      ( trap 'kill "$s" 2>/dev/null; exit 0' TERM
        sleep "$TMO" & s=$!; wait "$s"
        pkill -KILL -P "$tp"; kill -KILL "$tp" ) 2>/dev/null &
      wd=$!
    fi
    rc=0; { wait "$tp"; } 2>/dev/null || rc=$?
    CUR=""
    if [[ -n $wd ]]; then kill -TERM "$wd" 2>/dev/null || true; wait "$wd" 2>/dev/null || true; fi
    if [[ $rc == 0 ]]; then tail -1 "$WORK/rss.one" >> "$WORK/$l.rss"
    else
      fails=$((fails + 1)); [[ $rc == 137 ]] && hung=$((hung + 1))
      rt "$i" delete -f "$id" >/dev/null 2>&1 || true
    fi
  done
  # shellcheck disable=SC2046
  row "$l" "peak RSS of run" KiB $(stats < "$WORK/$l.rss") "$fails failed ($hung hung)"
done

# ---- (d) hang check: runtimes interleaved ------------------------------------------
if [[ $HANGRUNS -gt 0 ]]; then
  HT=$TMO; [[ $HT == 0 ]] && HT=10
  log "(d) hang check: $HANGRUNS x run per runtime, watchdog $HT s, interleaved"
  CSV=$WORK/hang.csv; : > "$CSV"
  for ((k = 1; k <= HANGRUNS; k++)); do
    for ((i = 0; i < NRT; i++)); do
      [[ ${OK[i]} == 1 ]] || continue
      id=$P-$i-h$k
      t0=${EPOCHREALTIME//[.,]/}
      bgrun "$WORK/${LABELS[i]}.hang.err" timeout -s KILL "$HT" "${RTS[i]}" --root "$(root_of "$i")" \
        run --bundle "$BUNDLE" "$id" && rc=0 || rc=$?
      t1=${EPOCHREALTIME//[.,]/}
      [[ $rc == 0 ]] || rt "$i" delete -f "$id" >/dev/null 2>&1 || true
      echo "$i,$rc,$((t1 - t0))" >> "$CSV"
    done
  done
  for ((i = 0; i < NRT; i++)); do
    [[ ${OK[i]} == 1 ]] || continue
    ok=$(awk -F, -v i="$i" '$1 == i && $2 == 0' "$CSV" | wc -l)
    hang=$(awk -F, -v i="$i" '$1 == i && ($2 == 137 || $2 == 124)' "$CSV" | wc -l)
    fail=$(awk -F, -v i="$i" '$1 == i && $2 != 0 && $2 != 137 && $2 != 124' "$CSV" | wc -l)
    # shellcheck disable=SC2046
    row "${LABELS[i]}" "run-loop (hang check)" ms $(awk -F, -v i="$i" '$1 == i && $2 == 0 {print $3 / 1000}' "$CSV" | stats) \
      "ok $ok, hang $hang, fail $fail"
    [[ $hang -gt 0 || $fail -gt 0 ]] && STATUS=1
    if [[ $fail -gt 0 && -s $WORK/${LABELS[i]}.hang.err ]]; then
      NOTES+=("${LABELS[i]}: hang check errors: $( { sort "$WORK/${LABELS[i]}.hang.err" | uniq -c | sort -rn | head -2 | tr -s ' \n' ' ' | cut -c1-200; } || true)")
    fi
  done
fi

# ---- clean up now, so the report includes the check -------------------------------------
cleanup

# ---- report ------------------------------------------------------------------------------
BASE=""
for ((i = 0; i < NRT; i++)); do [[ ${RTS[i]##*/} == crun && ${OK[i]} == 1 ]] && { BASE=${LABELS[i]}; break; }; done
[[ -n $BASE ]] || for ((i = 0; i < NRT; i++)); do [[ ${OK[i]} == 1 ]] && { BASE=${LABELS[i]}; break; }; done
report() {
  echo "## OCI runtime benchmark ($(date -u '+%Y-%m-%d %H:%M UTC'))"
  echo
  echo "Host: $(uname -sr), $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)," \
       "cgroups $( [[ -f /sys/fs/cgroup/cgroup.controllers ]] && echo v2 || { [[ -d $U ]] && echo hybrid || echo v1; })" \
       "$( [[ -n $FIXED_LOG ]] && echo "($FIXED_LOG bound to cgroup v1 for the run, unbound after)")"
  echo "Load average: $LOAD0 at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end (figures are only comparable on an idle machine)."
  echo "Bundle: scripts/mkbundle.sh, busybox static, runc spec defaults, args [\"/bin/true\"]."
  echo "Watchdog: $( [[ $TMO == 0 ]] && echo 'none in (a)/(b)' || echo "timeout -s KILL $TMO in (a), (b), (d) (adds ~1 ms)")."
  echo "Runs: (a)/(b) $RUNS each (hyperfine -N, fresh id per run, $WARM warm-up), (c) $RSSRUNS, (d) $HANGRUNS."
  echo
  for ((i = 0; i < NRT; i++)); do echo "- \`${LABELS[i]}\`: ${RTS[i]} — ${VER[i]:-?}"; done
  echo
  echo "| metric | runtime | median | min-max | n | failures | × $BASE |"
  echo "| --- | --- | ---: | ---: | ---: | --- | ---: |"
  awk -F'\t' -v b="$BASE" '
    { lab[NR]=$1; met[NR]=$2; unit[NR]=$3; med[NR]=$4; mn[NR]=$5; mx[NR]=$6; n[NR]=$7; f[NR]=$8
      if ($1 == b && $4 != "-") base[$2] = $4; if (!($2 in ord)) { ord[$2] = ++no; mets[no] = $2 } }
    function fmt(v, u) { if (v == "-") return "-"; return (u == "ms") ? sprintf("%.2f", v) : sprintf("%d", v) }
    END {
      for (k = 1; k <= no; k++) for (r = 1; r <= NR; r++) if (met[r] == mets[k]) {
        ratio = (med[r] != "-" && base[met[r]] > 0) ? sprintf("%.2f", med[r] / base[met[r]]) : "-"
        printf "| %s (%s) | %s | %s | %s | %d | %s | %s |\n", met[r], unit[r], lab[r],
          fmt(med[r], unit[r]), (mn[r] == "-") ? "-" : fmt(mn[r], unit[r]) "-" fmt(mx[r], unit[r]), n[r], f[r], ratio }
    }' "$SUM"
  echo
  echo "Clean-up check: $( [[ $LEFTOVER == 0 ]] && echo 'nothing left' || echo 'FAILED, see notes');" \
       "\`find /sys/fs/cgroup -maxdepth 3 -name '*onggi*'\`: $(find /sys/fs/cgroup -maxdepth 3 -name '*onggi*' 2>/dev/null | wc -l) entries" \
       "($(echo -n "$PRE_ONGGI" | grep -c . || true) before);" \
       "hugetlb v1 mounted: $(mountpoint -q /sys/fs/cgroup/hugetlb && echo yes || echo no) (before: $( [[ $HUGETLB_WAS_MOUNTED == 1 ]] && echo yes || echo no))."
  if [[ ${#NOTES[@]} -gt 0 ]]; then
    echo
    echo "Notes:"
    printf -- '- %s\n' "${NOTES[@]}"
  fi
}
if [[ -n $OUTMD ]]; then report | tee "$OUTMD"; else report; fi
exit "$STATUS"
