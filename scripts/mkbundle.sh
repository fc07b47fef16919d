#!/usr/bin/env bash
# mkbundle.sh - build a minimal OCI bundle with a static busybox rootfs.
#
# usage: mkbundle.sh [-h] DIR [-- ARG...]
#   DIR     bundle directory; created if missing, updated in place if it exists
#           (idempotent: running it twice gives the same bundle).
#   ARG...  process.args of the container, as given (default: true).
#
# DIR/rootfs:  bin/busybox (a copy of $BUSYBOX, default /bin/busybox from Debian's
#              busybox-static) and one symlink /bin/<applet> -> /bin/busybox per applet
#              (`busybox --install -s /bin`, run in a chroot; without the right to chroot
#              the links are made from `busybox --list`); sbin, usr/bin and usr/sbin are
#              symlinks to bin, so every applet is found on any usual path;
#              etc/passwd and etc/group with root (0), user (1000:1000, home /home/user)
#              and nobody (65534, group nogroup/nobody); etc/hosts, etc/hostname, an
#              empty etc/resolv.conf; empty proc, sys, dev, run, root and an empty tmp (1777).
# DIR/config.json: the same as `runc spec` (runc 1.1.5) writes, except
#              process.terminal=false and process.args=ARG... It is written by this
#              script (no runtime, no jq needed): namespaces pid, network, ipc, uts,
#              mount; caps AUDIT_WRITE, KILL, NET_BIND_SERVICE; read-only rootfs;
#              no seccomp, no cgroupsPath.
# Needs only bash, coreutils and a STATIC busybox. Run as root (chroot, chown); as
# another user it still works, more slowly and without the chown of /home/user.
# Refuses to touch DIR while anything is mounted below it.
set -euo pipefail
usage() { awk 'NR > 1 && /^#/ {sub(/^# ?/, ""); print; next} NR > 1 {exit}' "$0"; }

case ${1:-} in
  -h|--help) usage; exit 0 ;;
  ""|--) usage >&2; exit 2 ;;
  -*) echo "mkbundle: unknown option $1" >&2; usage >&2; exit 2 ;;
esac
DIR=$1; shift
[[ ${1:-} == "--" ]] && shift
ARGS=("$@")
[[ ${#ARGS[@]} -gt 0 ]] || ARGS=(true)
BUSYBOX=${BUSYBOX:-/bin/busybox}

die() { echo "mkbundle: $*" >&2; exit 1; }
[[ -x $BUSYBOX ]] || die "no busybox at $BUSYBOX (apt-get install busybox-static, or set BUSYBOX=)"
# a dynamically linked busybox names its ELF interpreter; it cannot run in the rootfs
if LC_ALL=C grep -qa -e '/ld-linux' -e '/ld-musl' "$BUSYBOX"; then
  echo "mkbundle: warning: $BUSYBOX looks dynamically linked; the container will fail" >&2
fi

mkdir -p -- "$DIR"
DIR=$(cd -- "$DIR" && pwd -P)
[[ $DIR != / ]] || die "refusing to build a bundle at /"
# never write into a tree something is mounted on (a leaked container mount)
while read -r _ _ _ _ mp _; do
  [[ $mp == "$DIR" || $mp == "$DIR"/* ]] && die "$mp is a mount point inside $DIR; unmount it first"
done < /proc/self/mountinfo

R=$DIR/rootfs
newhome=0; [[ -d $R/home/user ]] || newhome=1
mkdir -p "$R"/{bin,etc,proc,sys,dev,run,root,tmp,usr,home/user}
[[ -k $R/tmp ]] || chmod 1777 "$R/tmp"
# an empty tmp (but never cross into another file system)
shopt -s nullglob dotglob
left=("$R"/tmp/*)
shopt -u nullglob dotglob
[[ ${#left[@]} -eq 0 ]] || rm -rf --one-file-system -- "${left[@]}"

# busybox: replace only if it differs; rename over it (a running copy stays valid)
fresh=0
if ! cmp -s "$BUSYBOX" "$R/bin/busybox"; then
  cp -- "$BUSYBOX" "$R/bin/.busybox.new"
  chmod 755 "$R/bin/.busybox.new"
  mv -f -- "$R/bin/.busybox.new" "$R/bin/busybox"
  fresh=1
fi

# applet links, all in /bin; sbin, usr/bin, usr/sbin point there
if [[ $fresh == 1 || ! -L $R/bin/sh || ! -e $R/usr/bin || ! -e $R/sbin ]]; then
  # shellcheck disable=SC2016
  if ! chroot "$R" /bin/busybox sh -c '
      /bin/busybox --install -s /bin || exit 1
      cd / && for l in sbin:bin usr/bin:../bin usr/sbin:../bin; do
        [ -e "${l%%:*}" ] || ln -s "${l#*:}" "${l%%:*}" || exit 1
      done' 2>/dev/null; then
    # no chroot (not root): make the same links from the host, one ln each (slower)
    for a in $("$BUSYBOX" --list); do
      [[ -L $R/bin/$a || $a == busybox ]] || ln -s /bin/busybox "$R/bin/$a"
    done
    [[ -e $R/sbin ]] || ln -s bin "$R/sbin"
    [[ -e $R/usr/bin ]] || ln -s ../bin "$R/usr/bin"
    [[ -e $R/usr/sbin ]] || ln -s ../bin "$R/usr/sbin"
  fi
fi

printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' 'user:x:1000:1000:user:/home/user:/bin/sh' \
  'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' > "$R/etc/passwd"
printf '%s\n' 'root:x:0:' 'user:x:1000:' 'nogroup:x:65534:' 'nobody:x:65534:' > "$R/etc/group"
printf '%s\n' '127.0.0.1 localhost' '::1 localhost ip6-localhost ip6-loopback' > "$R/etc/hosts"
printf '%s\n' 'runc' > "$R/etc/hostname"
: > "$R/etc/resolv.conf"
[[ $newhome == 0 ]] || chown 1000:1000 "$R/home/user" 2>/dev/null || true

# JSON string of $1 into $J (escapes \ " and control characters)
json_str() {
  local s=$1 out="" c i
  s=${s//\\/\\\\}; s=${s//\"/\\\"}
  s=${s//$'\n'/\\n}; s=${s//$'\t'/\\t}; s=${s//$'\r'/\\r}
  if [[ $s == *[[:cntrl:]]* ]]; then
    for ((i = 0; i < ${#s}; i++)); do
      c=${s:i:1}
      if [[ $c == [[:cntrl:]] ]]; then printf -v c '\\u%04x' "'$c"; fi
      out+=$c
    done
    s=$out
  fi
  J="\"$s\""
}
args_json=""
for a in "${ARGS[@]}"; do
  json_str "$a"
  args_json+="${args_json:+,}"$'\n\t\t\t'"$J"
done

IFS= read -r -d '' CONFIG <<EOF || true
{
	"ociVersion": "1.0.2-dev",
	"process": {
		"terminal": false,
		"user": {
			"uid": 0,
			"gid": 0
		},
		"args": [${args_json}
		],
		"env": [
			"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			"TERM=xterm"
		],
		"cwd": "/",
		"capabilities": {
			"bounding": [
				"CAP_AUDIT_WRITE",
				"CAP_KILL",
				"CAP_NET_BIND_SERVICE"
			],
			"effective": [
				"CAP_AUDIT_WRITE",
				"CAP_KILL",
				"CAP_NET_BIND_SERVICE"
			],
			"permitted": [
				"CAP_AUDIT_WRITE",
				"CAP_KILL",
				"CAP_NET_BIND_SERVICE"
			],
			"ambient": [
				"CAP_AUDIT_WRITE",
				"CAP_KILL",
				"CAP_NET_BIND_SERVICE"
			]
		},
		"rlimits": [
			{
				"type": "RLIMIT_NOFILE",
				"hard": 1024,
				"soft": 1024
			}
		],
		"noNewPrivileges": true
	},
	"root": {
		"path": "rootfs",
		"readonly": true
	},
	"hostname": "runc",
	"mounts": [
		{
			"destination": "/proc",
			"type": "proc",
			"source": "proc"
		},
		{
			"destination": "/dev",
			"type": "tmpfs",
			"source": "tmpfs",
			"options": [
				"nosuid",
				"strictatime",
				"mode=755",
				"size=65536k"
			]
		},
		{
			"destination": "/dev/pts",
			"type": "devpts",
			"source": "devpts",
			"options": [
				"nosuid",
				"noexec",
				"newinstance",
				"ptmxmode=0666",
				"mode=0620",
				"gid=5"
			]
		},
		{
			"destination": "/dev/shm",
			"type": "tmpfs",
			"source": "shm",
			"options": [
				"nosuid",
				"noexec",
				"nodev",
				"mode=1777",
				"size=65536k"
			]
		},
		{
			"destination": "/dev/mqueue",
			"type": "mqueue",
			"source": "mqueue",
			"options": [
				"nosuid",
				"noexec",
				"nodev"
			]
		},
		{
			"destination": "/sys",
			"type": "sysfs",
			"source": "sysfs",
			"options": [
				"nosuid",
				"noexec",
				"nodev",
				"ro"
			]
		},
		{
			"destination": "/sys/fs/cgroup",
			"type": "cgroup",
			"source": "cgroup",
			"options": [
				"nosuid",
				"noexec",
				"nodev",
				"relatime",
				"ro"
			]
		}
	],
	"linux": {
		"resources": {
			"devices": [
				{
					"allow": false,
					"access": "rwm"
				}
			]
		},
		"namespaces": [
			{
				"type": "pid"
			},
			{
				"type": "network"
			},
			{
				"type": "ipc"
			},
			{
				"type": "uts"
			},
			{
				"type": "mount"
			}
		],
		"maskedPaths": [
			"/proc/acpi",
			"/proc/asound",
			"/proc/kcore",
			"/proc/keys",
			"/proc/latency_stats",
			"/proc/timer_list",
			"/proc/timer_stats",
			"/proc/sched_debug",
			"/sys/firmware",
			"/proc/scsi"
		],
		"readonlyPaths": [
			"/proc/bus",
			"/proc/fs",
			"/proc/irq",
			"/proc/sys",
			"/proc/sysrq-trigger"
		]
	}
}
EOF
printf '%s' "$CONFIG" > "$DIR/config.json"
