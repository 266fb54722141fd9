#!/usr/bin/env bash
# What a FUSE round trip costs depends on where the caller and the daemon run. This runs the metadata
# workloads of run.sh on UnionFs twice per round: with the scheduler free to place both (as run.sh does),
# and with the caller and every daemon thread pinned to CPU 0 (taskset). Pinning is an experiment, not a
# setting: a daemon cannot pin its callers. It shows how much of a round trip is the wake-up of a process
# on another CPU (on a VM that halts idle vCPUs, an interrupt to a halted vCPU each time).
#
# Environment: BENCH_DIR (layers from layers.sh), ROUNDS=3, CHURN_N=5000, UNIONFS=<repo>/bin/unionfs.
# Prints one line per workload: median seconds free, pinned, and their ratio.
set -uo pipefail
source "$(dirname "$0")/lib.sh"

ROUNDS=${ROUNDS:-3}; CHURN_N=${CHURN_N:-5000}
[ "$(id -u)" = 0 ] || die "run as root (drop_caches, mount)"
[ -x "$UNIONFS" ] || die "$UNIONFS missing: make publish"
[ "$(nproc)" -ge 2 ] || die "needs two CPUs or more"
bench_lock
"$BENCH_SCRIPTS/layers.sh" || die "building the layers failed"
snapshot_unionfs

RUN=$BENCH_DIR/placement
MNT=$RUN/mnt; LOWER=$BENCH_DIR/mid:$BENCH_DIR/tool:$BENCH_DIR/base
SPENT=$RUN/spent   # used uppers are deleted at the end (see run.sh: ext4 and recently deleted inodes)
CUR_PID=; N=0
RAW=$RUN/raw.tsv
cleanup() { safe_umount "$MNT" "$CUR_PID"; rm -rf "$SPENT" "${UNIONFS_SNAPSHOT_DIR:-}"; }
trap cleanup EXIT
mkdir -p "$RUN" "$SPENT"; : > "$RAW"
is_mounted "$MNT" && safe_umount "$MNT"

# one_run PLACEMENT: mounts on a fresh upper, runs churn and delete-lower, records seconds
one_run() {
  local placement=$1 upper work t0 t1 pin=()
  N=$((N + 1)); upper=$SPENT/upper.$N; work=$SPENT/work.$N
  mkdir -p "$upper" "$work" "$MNT"
  "$UNIONFS" mount -o "lowerdir=$LOWER,upperdir=$upper,workdir=$work,metacopy=on" "$MNT" 9>&- < /dev/null ||
    die "mount failed"
  CUR_PID=$(fuse_daemon_pid unionfs "$MNT")
  [ -n "$CUR_PID" ] || die "no daemon found for $MNT"
  if [ "$placement" = pinned ]; then
    taskset -a -p -c 0 "$CUR_PID" > /dev/null || die "taskset of the daemon failed"
    pin=(taskset -c 0)
  fi
  mkdir -p "$MNT/var/tmp/churn"
  drop_caches
  "${pin[@]}" "$BENCH_DIR/churn" "$MNT/var/tmp/churn" "$CHURN_N" |
    while read -r phase secs; do printf 'churn-%s\t%s\t%s\n' "$phase" "$placement" "$secs"; done >> "$RAW"
  drop_caches
  t0=$(now_ns); "${pin[@]}" find "$MNT/bench/del" -type f -delete; t1=$(now_ns)
  printf 'delete-lower\t%s\t%s\n' "$placement" "$(elapsed "$t0" "$t1")" >> "$RAW"
  safe_umount "$MNT" "$CUR_PID"; CUR_PID=
}

for ((r = 1; r <= ROUNDS; r++)); do
  for placement in free pinned; do log "round $r/$ROUNDS: $placement"; one_run $placement; done
done

echo "UnionFs $UNIONFS_DESC; $ROUNDS rounds; $(nproc) CPUs; cpuidle $(cat /sys/devices/system/cpu/cpuidle/current_driver 2>/dev/null || echo unknown)"
printf '%-14s %8s %8s %8s\n' workload free pinned ratio
for wl in churn-create churn-rename churn-delete delete-lower; do
  awk -F'\t' -v wl="$wl" '
    function median(s,  a, n) { n = split(s, a, " "); asort(a); return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
    $1 == wl { v[$2] = v[$2] " " $3 }
    END { f = median(v["free"]); p = median(v["pinned"]); printf "%-14s %8.3f %8.3f %7.2fx\n", wl, f, p, f / p }' "$RAW"
done
