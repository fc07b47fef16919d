#!/usr/bin/env bash
# A busybox root filesystem as a tarball, what `docker export` writes: mkbundle.sh's
# rootfs, tarred. usage: scripts/rootfs-tar.sh OUT.tar
set -euo pipefail
out=$(realpath -m "$1")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bash "$(dirname "$0")/mkbundle.sh" "$tmp/b" >/dev/null
tar -C "$tmp/b/rootfs" -cf "$out" .
