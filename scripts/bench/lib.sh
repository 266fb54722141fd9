# Shared helpers for scripts/bench/*.sh (sourced, not run).
# Everything here is about measuring; nothing changes the project.

BENCH_DIR=${BENCH_DIR:-/var/tmp/unionfs-bench}
BENCH_SCRIPTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_SCRIPTS/../.." && pwd)
UNIONFS=${UNIONFS:-$REPO/bin/unionfs}

log()  { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die()  { log "error: $*"; exit 1; }

now_ns() { date +%s%N; }
# seconds with 3 decimals between two now_ns values
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.3f", (b-a)/1e9}'; }

drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }

# The first Debian archive URL apt is configured with (deb822 or one-line format).
apt_mirror() {
  local url
  url=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
        grep -oE 'https?://[^ ]+/debian/?( |$)' | grep -v security | head -1 | tr -d ' ')
  echo "${url:-http://deb.debian.org/debian}"
}

is_mounted() { findmnt -n --mountpoint "$1" >/dev/null 2>&1; }

# pid of the FUSE daemon serving mountpoint $2 (implementation $1); empty if none.
# Restricted to processes whose command line ends with the mount point.
fuse_daemon_pid() {
  local impl=$1 mnt=$2 pat
  case $impl in
    fuse-overlayfs) pat="fuse-overlayfs .*${mnt}\$" ;;
    unionfs)        pat="unionfs .*${mnt}\$" ;;
    loopback)       pat="unionfs loopback .*${mnt}\$" ;;
    *) return 0 ;;
  esac
  local p
  for p in $(pgrep -f -- "$pat"); do
    grep -q '^VmHWM' /proc/$p/status 2>/dev/null && { echo "$p"; return 0; }
  done
}

vm_hwm_kib() { awk '/^VmHWM/{print $2}' /proc/$1/status 2>/dev/null; }

# Unmount $1 (a mount we made). FUSE daemon pid in $2 (optional) is killed only if the
# unmount did not make it exit. Never touches anything but that mount and that pid.
safe_umount() {
  local mnt=$1 pid=${2:-} i
  is_mounted "$mnt" || return 0
  timeout 60 umount "$mnt" 2>/dev/null || { sleep 1; timeout 60 umount "$mnt" 2>/dev/null; } ||
    { log "umount $mnt failed; lazy unmount"; umount -l "$mnt" 2>/dev/null; }
  if [ -n "$pid" ]; then
    for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; [ -e /proc/$pid/status ] && grep -q '^State:.*Z' /proc/$pid/status && break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null && ! grep -q '^State:.*Z' /proc/$pid/status 2>/dev/null; then
      log "daemon $pid still alive after unmount of $mnt; killing it"; kill "$pid" 2>/dev/null; sleep 1; kill -9 "$pid" 2>/dev/null
    fi
  fi
  return 0
}

# Copies $UNIONFS into $BENCH_DIR/bin-<pid>/ and points UNIONFS at the copy (removed at exit by
# the caller's cleanup via UNIONFS_SNAPSHOT_DIR); sets UNIONFS_DESC (version, commit, dirty tree).
snapshot_unionfs() {
  UNIONFS_SNAPSHOT_DIR=$BENCH_DIR/bin-$$
  mkdir -p "$UNIONFS_SNAPSHOT_DIR"
  cp "$UNIONFS" "$UNIONFS_SNAPSHOT_DIR/unionfs"
  local d; d=$(date -u -r "$UNIONFS" '+%Y-%m-%d %H:%M UTC')
  UNIONFS=$UNIONFS_SNAPSHOT_DIR/unionfs
  local rev; rev=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')
  [ -n "$(git -C "$REPO" status --porcelain --untracked-files=no -- src 2>/dev/null)" ] && rev="$rev + uncommitted changes in src/"
  UNIONFS_DESC="$("$UNIONFS" --version 2>&1 | head -1) (binary built $d; repo at $rev)"
}

# One benchmark at a time per BENCH_DIR (they would share scratch dirs and disturb each other's timings).
bench_lock() {
  mkdir -p "$BENCH_DIR"
  exec 9> "$BENCH_DIR/.lock"
  flock -n 9 || die "another benchmark is running on $BENCH_DIR"
}
