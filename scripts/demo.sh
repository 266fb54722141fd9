#!/usr/bin/env bash
# `make demo`: the image/container engine end to end on a real root filesystem (busybox from Debian's
# busybox-static). Imports a base image, builds a second image by committing a container, shows both
# histories sharing the base layer, runs two containers side by side, chroots into one, shows the diffs
# and the shared disk usage, then removes everything. Uses a scratch store (UNIONFS_ROOT) and the FUSE
# storage driver when `unionfs mount` works here, else kernel overlayfs (UNIONFS_STORAGE_DRIVER overrides).
set -euo pipefail
cd "$(dirname "$0")/.."
UNIONFS=${UNIONFS:-$PWD/bin/unionfs}
[ -x "$UNIONFS" ] || { echo "demo: $UNIONFS not built (run make publish)" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "demo: needs root (mounts, chroot, device-node whiteouts)" >&2; exit 1; }
BUSYBOX=${BUSYBOX:-/bin/busybox}
[ -x "$BUSYBOX" ] || { echo "demo: $BUSYBOX missing (apt-get install busybox-static)" >&2; exit 1; }

work=$(mktemp -d /var/tmp/unionfs-demo.XXXXXX)
export UNIONFS_ROOT=$work/store

cleanup() {
  local rc=$?
  # Unmount whatever is still mounted below the scratch dir (a failed step can leave mounts), then delete it.
  if [ -d "$work" ]; then
    { grep -o " $work/[^ ]*" /proc/self/mountinfo 2>/dev/null || true; } | sort -r | while read -r m; do
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done
    rm -rf "$work"
  fi
  exit "$rc"
}
trap cleanup EXIT

if [ -t 1 ]; then B=$'\e[1m'; D=$'\e[2m'; N=$'\e[0m'; else B=; D=; N=; fi
step() { printf '\n%s==> %s%s\n' "$B" "$*" "$N"; }
# The command line goes to stderr so that `x=$(run ...)` captures only the command's output.
run()  { printf '%s$ %s%s\n' "$D" "$*" "$N" >&2; "$@"; }
uf()   { run unionfs "$@"; }
unionfs() { "$UNIONFS" "$@"; }

# The FUSE driver if our union mount works on this machine, else kernel overlayfs.
if [ -z "${UNIONFS_STORAGE_DRIVER:-}" ]; then
  mkdir -p "$work/probe/"{l,u,w,m}
  if "$UNIONFS" mount -o "lowerdir=$work/probe/l,upperdir=$work/probe/u,workdir=$work/probe/w" "$work/probe/m" 2>/dev/null; then
    "$UNIONFS" umount "$work/probe/m"
    export UNIONFS_STORAGE_DRIVER=fuse
  else
    export UNIONFS_STORAGE_DRIVER=overlay
  fi
  rm -rf "$work/probe"
fi
echo "store: $UNIONFS_ROOT   storage driver: $UNIONFS_STORAGE_DRIVER"

step "Build a busybox root filesystem from $BUSYBOX"
rootfs=$work/rootfs
mkdir -p "$rootfs"/{bin,etc,tmp,root,proc,dev}
chmod 1777 "$rootfs/tmp"
cp "$BUSYBOX" "$rootfs/bin/busybox"
for applet in $("$BUSYBOX" --list); do [ "$applet" = busybox ] || ln -s busybox "$rootfs/bin/$applet"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$rootfs/etc/passwd"
echo 'unionfs-demo' > "$rootfs/etc/hostname"
echo "$(ls "$rootfs/bin" | wc -l) entries in /bin"

step "Import it as the base image busybox:latest"
uf image import "$rootfs" busybox:latest

step "Build a second image: a container that adds /tmp/newfile, committed as hello:latest"
unionfs container create busybox --name builder >/dev/null
builder=$(uf container mount builder)
run sh -c "echo 'Hello world' > $builder/tmp/newfile"
uf container diff builder
uf container commit builder hello:latest --message "add /tmp/newfile"
uf container rm builder >/dev/null

step "Both histories: hello is busybox's layer plus one (same LAYER id at the bottom)"
uf image history busybox
echo
uf image history hello
echo
uf image ls

step "Two containers from hello, mounted side by side"
unionfs container create hello --name alice >/dev/null
unionfs container create hello --name bob >/dev/null
alice=$(uf container mount alice)
bob=$(uf container mount bob)
run sh -c "echo 'I am alice' > $alice/tmp/alice.txt"
run sh -c "echo 'bob rewrote this' > $bob/tmp/newfile"
run rm "$bob/etc/hostname"
uf container ls

step "Each sees only its own changes"
run ls "$alice/tmp" "$bob/tmp"
run cat "$alice/tmp/newfile" "$bob/tmp/newfile"
run ls "$alice/etc" "$bob/etc"

step "The image is unchanged: a fresh container still sees the committed content"
unionfs container create hello --name fresh >/dev/null
fresh=$(uf container mount fresh)
run cat "$fresh/tmp/newfile"
run ls "$fresh/tmp" "$fresh/etc"

step "Run a command inside alice with chroot"
run chroot "$alice" /bin/sh -c 'echo "in $(cat /etc/hostname): $(cat /tmp/alice.txt) / $(cat /tmp/newfile)"; echo made-inside > /root/note; busybox | head -1'
run cat "$alice/root/note"

step "What each container changed (A added, C changed, D deleted)"
uf container diff alice
echo
uf container diff bob

step "Disk usage: the base layer is stored once and shared"
uf system df

step "Clean up: containers (unmounted first), images, unreferenced layers"
uf container rm alice bob fresh
uf image rm hello busybox
uf system gc
uf image ls
echo
echo "demo finished: $(date -u +%T)"
