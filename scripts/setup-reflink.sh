#!/usr/bin/env bash
# A reflink-capable file system for the store's reflink test, where the machine allows it: a
# sparse 512 MiB XFS image (reflink=1) loop-mounted at target/reflink-mnt. Prints the directory
# on success; otherwise says why on stderr and prints nothing (the test then reports the skip).
# Needs root (for mount) and xfsprogs, which it installs with apt-get when it can. Never fails.
set -u
cd "$(dirname "$0")/.."
mnt="$PWD/target/reflink-mnt"
img="$PWD/target/reflink.img"
why() { echo "reflink file system not set up: $*" >&2; exit 0; }
if mountpoint -q "$mnt" 2>/dev/null; then
    echo "$mnt"
    exit 0
fi
[ "$(id -u)" = 0 ] || why "not root (mounting a loop image needs root)"
if ! command -v mkfs.xfs >/dev/null; then
    command -v apt-get >/dev/null || why "no mkfs.xfs and no apt-get to install xfsprogs"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq xfsprogs >/dev/null 2>&1 ||
        why "apt-get install xfsprogs failed"
fi
mkdir -p "$mnt" target
rm -f "$img"
truncate -s 512M "$img" || why "cannot create $img"
mkfs.xfs -q -m reflink=1 "$img" >/dev/null 2>&1 || why "mkfs.xfs failed"
mount -o loop "$img" "$mnt" 2>/dev/null || why "loop mount not permitted here"
echo "$mnt"
