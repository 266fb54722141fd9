#!/usr/bin/env bash
# make bench: kernel overlayfs vs fuse-overlayfs vs UnionFs over the same layer stack
# (see layers.sh), each run on fresh upper/work dirs, interleaved per workload
# (kernel fuse-overlayfs unionfs, kernel fuse-overlayfs unionfs, ...).
#
# Environment:
#   BENCH_DIR=/var/tmp/unionfs-bench   cache of layers and scratch space
#   ROUNDS=5                           rounds per workload (median reported)
#   QUICK=1                            smoke test: 1 round, smaller untar/churn/fio sizes
#   IMPLS="kernel fuse-overlayfs unionfs"   which implementations
#   WORKLOADS="find-cold ..."          subset of workloads (names as in the table)
#   RUN_TIMEOUT=600                    seconds before one run counts as an error
#   OUT_DIR=<repo>/bench-results       where the Markdown table goes
# One failed run shows as "error" in the table; the rest of the run goes on.
set -uo pipefail
source "$(dirname "$0")/lib.sh"

QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
  ROUNDS=${ROUNDS:-1}; UNTAR_N=${UNTAR_N:-5000}; CHURN_N=${CHURN_N:-1000}
  FIO_SIZE=${FIO_SIZE:-256m}; FIO_RUNTIME=${FIO_RUNTIME:-3}; RUN_TIMEOUT=${RUN_TIMEOUT:-300}
else
  ROUNDS=${ROUNDS:-5}; UNTAR_N=${UNTAR_N:-20000}; CHURN_N=${CHURN_N:-5000}
  FIO_SIZE=${FIO_SIZE:-1g}; FIO_RUNTIME=${FIO_RUNTIME:-10}; RUN_TIMEOUT=${RUN_TIMEOUT:-600}
fi
IMPLS=${IMPLS:-"kernel fuse-overlayfs unionfs"}
ALL_WORKLOADS="mount-latency find-cold find-warm stat-all tar grep untar append-nofsync append-fsync chmod churn delete-lower compile fio"
WORKLOADS=${WORKLOADS:-$ALL_WORKLOADS}
OUT_DIR=${OUT_DIR:-$REPO/bench-results}

[ "$(id -u)" = 0 ] || die "run as root (kernel overlayfs, drop_caches, chroot)"
[ -x "$UNIONFS" ] || die "$UNIONFS missing: make publish"
for t in fio fuse-overlayfs jq perl gcc; do command -v $t >/dev/null || die "$t missing: scripts/install-deps.sh"; done

bench_lock
"$BENCH_SCRIPTS/layers.sh" || die "building the layers failed"
snapshot_unionfs   # one binary for the whole run, even if bin/unionfs is rebuilt meanwhile
case $UNTAR_N in 20000|5000) ;; *) die "UNTAR_N must be 20000 or 5000 (the tarballs layers.sh builds)";; esac

RUN=$BENCH_DIR/run
MNT=$RUN/mnt; UPPER=$RUN/upper; WORK=$RUN/work
LOWER=$BENCH_DIR/mid:$BENCH_DIR/tool:$BENCH_DIR/base
RAW=$RUN/raw.tsv; ERRLOG=$RUN/errors.log; OUT=$RUN/out
# Used upper/work dirs are set aside here and deleted only at the end: ext4 skips inodes deleted in the last
# minute or so when it allocates (find_inode_bit -> recently_deleted), so deleting one run's 20,000 files
# right before the next run would make that run's creates pay for the previous run's deletes.
SPENT=$RUN/spent
CUR_PID=; SPENT_N=0

cleanup() {
  safe_umount "$MNT" "$CUR_PID"
  rm -rf "$UPPER" "$WORK" "$SPENT" "${UNIONFS_SNAPSHOT_DIR:-}"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

mkdir -p "$RUN"
is_mounted "$MNT" && safe_umount "$MNT"
rm -rf "$SPENT"
: > "$RAW"; : > "$ERRLOG"

record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$RAW"; }
record_error() { # metric impl round message
  record "$1" "$2" "$3" error
  printf '%s / %s / round %s: %s\n' "$1" "$2" "$3" "$4" >> "$ERRLOG"
  log "  ERROR $1 on $2 (round $3): $4"
}

mount_impl() { # impl -> mounts $MNT on fresh upper/work; returns non-zero on failure
  local impl=$1
  rm -rf "$UPPER" "$WORK"; mkdir -p "$UPPER" "$WORK" "$MNT"
  case $impl in
    kernel) mount -t overlay overlay -o "lowerdir=$LOWER,upperdir=$UPPER,workdir=$WORK" "$MNT" ;;
    fuse-overlayfs) fuse-overlayfs -o "lowerdir=$LOWER,upperdir=$UPPER,workdir=$WORK" "$MNT" ;;
    # metacopy=on, as the engine mounts it: the chmod row measures the metadata-only copy-up (the default copies data)
    unionfs) "$UNIONFS" mount -o "lowerdir=$LOWER,upperdir=$UPPER,workdir=$WORK,metacopy=on" "$MNT" ;;
  esac > "$OUT.mount" 2>&1 < /dev/null 9>&- || return 1   # the daemon must not hold the bench lock
  is_mounted "$MNT" || { echo "not mounted after the mount command returned" >> "$OUT.mount"; return 1; }
  CUR_PID=$(fuse_daemon_pid "$impl" "$MNT")
  return 0
}
umount_impl() {
  safe_umount "$MNT" "$CUR_PID"; CUR_PID=
  find "$UPPER" -type f -size +16M -delete 2>/dev/null   # big copy-ups: few inodes, much space
  SPENT_N=$((SPENT_N + 1)); mkdir -p "$SPENT"
  mv "$UPPER" "$SPENT/upper.$SPENT_N"; mv "$WORK" "$SPENT/work.$SPENT_N"
}

# timed CMD: runs CMD under bash with the run timeout; sets SECS, returns its status
timed() {
  local t0 t1 rc
  t0=$(now_ns)
  timeout -k 10 "$RUN_TIMEOUT" bash -c "$1" > "$OUT" 2> "$OUT.err" < /dev/null; rc=$?
  t1=$(now_ns); SECS=$(elapsed "$t0" "$t1")
  [ $rc = 124 ] && echo "timed out after ${RUN_TIMEOUT}s" >> "$OUT.err"
  return $rc
}
errmsg() { { tail -c 300 "$OUT.err"; echo; } | tr '\n' ' ' | sed 's/  */ /g; s/ *$//'; }

HAVE_CHROOT_GCC=0
[ -x "$BENCH_DIR/tool/usr/bin/gcc" ] || [ -x "$BENCH_DIR/base/usr/bin/gcc" ] && HAVE_CHROOT_GCC=1
if [ $HAVE_CHROOT_GCC = 1 ]; then
  COMPILE_CMD="chroot $MNT /usr/bin/env -i PATH=/usr/bin:/bin HOME=/root make -C /src/proj -j2"
  COMPILE_DESC="chroot into the mount, make -j2 (gcc -O2) of 24 C files (40 functions each) from /src/proj, objects and libproj.a written into the mount"
else
  COMPILE_CMD="make -C $MNT/src/proj -j2"
  COMPILE_DESC="host gcc (no gcc in the layers): make -j2 of 24 C files read from the mount, objects written into it"
fi

fio_one() { # name fio-args... ; prints "name value" (MiB/s or IOPS) or "name error"
  local name=$1; shift
  drop_caches
  if timeout -k 10 "$RUN_TIMEOUT" fio --output-format=json --ioengine=psync --numjobs=1 "$@" > "$OUT.fio" 2> "$OUT.fio.err"; then
    case $name in
      fio-randread*) jq -r '.jobs[0].read.iops | "'$name' \(. * 10 | round / 10)"' "$OUT.fio" ;;
      *read*) jq -r '.jobs[0].read.bw | "'$name' \(. / 1024 * 10 | round / 10)"' "$OUT.fio" ;;
      *) jq -r '.jobs[0].write.bw | "'$name' \(. / 1024 * 10 | round / 10)"' "$OUT.fio" ;;
    esac
  else
    echo "$name error $(tail -c 200 "$OUT.fio.err" | tr '\n' ' ')"
  fi
  rm -f "$MNT/var/tmp/fio.w"; sync
}
run_fio() {
  local big=$MNT/bench/big/big1g w=$MNT/var/tmp/fio.w
  fio_one fio-seqread        --name=seqread  --filename="$big" --readonly --rw=read  --bs=1M --size="$FIO_SIZE" --direct=0
  fio_one fio-seqread-direct --name=seqreadd --filename="$big" --readonly --rw=read  --bs=1M --size="$FIO_SIZE" --direct=1
  fio_one fio-seqwrite       --name=seqwrite --filename="$w" --rw=write --bs=1M --size="$FIO_SIZE" --direct=0
  fio_one fio-seqwrite-direct --name=seqwrited --filename="$w" --rw=write --bs=1M --size="$FIO_SIZE" --direct=1
  fio_one fio-randread       --name=randread --filename="$big" --readonly --rw=randread --bs=4k --size=1g --direct=0 \
                             --runtime="$FIO_RUNTIME" --time_based
  fio_one fio-randread-direct --name=randreadd --filename="$big" --readonly --rw=randread --bs=4k --size=1g --direct=1 \
                             --runtime="$FIO_RUNTIME" --time_based
}

# run_one WORKLOAD IMPL ROUND
run_one() {
  local wl=$1 impl=$2 r=$3 cmd= prep= cold=1 m v rest
  if [ "$wl" = mount-latency ]; then
    local t0 t1; t0=$(now_ns)
    if mount_impl "$impl" && stat "$MNT/etc/os-release" > /dev/null 2> "$OUT.err"; then
      t1=$(now_ns); record mount-latency "$impl" "$r" "$(elapsed "$t0" "$t1")"
    else
      record_error mount-latency "$impl" "$r" "$(cat "$OUT.mount" "$OUT.err" 2>/dev/null | tr '\n' ' ' | tail -c 300)"
    fi
    umount_impl; return
  fi
  case $wl in
    find-cold)  cmd="set -o pipefail; find $MNT | wc -l" ;;  # the count checks that all see one tree
    find-warm)  prep="find $MNT > /dev/null"; cold=0; cmd="find $MNT > /dev/null" ;;
    stat-all)   cmd="find $MNT -printf '%s %i\n' > /dev/null" ;;
    tar)        cmd="set -o pipefail; tar -C $MNT --exclude=./bench/big -cf - . | cat > /dev/null" ;;
    grep)       cmd="grep -r -l --exclude-dir=big UNIONFS_BENCH_NEEDLE $MNT > /dev/null" ;;
    untar)      prep="mkdir -p $MNT/srv/untar"; cmd="tar -C $MNT/srv/untar -xf $BENCH_DIR/untar-$UNTAR_N.tar && sync" ;;
    append-nofsync) cmd="printf x >> $MNT/bench/big/big1g" ;;
    append-fsync)   cmd="dd if=/dev/zero of=$MNT/bench/big/big1g bs=1 count=1 oflag=append conv=notrunc,fsync status=none" ;;
    chmod)      cmd="$BENCH_DIR/chmodtime $MNT/bench/big/f64m 600" ;;
    churn)      prep="mkdir -p $MNT/var/tmp/churn"; cmd="$BENCH_DIR/churn $MNT/var/tmp/churn $CHURN_N" ;;
    delete-lower) cmd="find $MNT/bench/del -type f -delete" ;;
    compile)    cmd="$COMPILE_CMD" ;;
    fio)        cmd="run_fio" ;;
    *) die "unknown workload $wl" ;;
  esac
  local metrics=$wl
  case $wl in
    churn) metrics="churn-create churn-rename churn-delete" ;;
    fio)   metrics="fio-seqread fio-seqread-direct fio-seqwrite fio-seqwrite-direct fio-randread fio-randread-direct" ;;
  esac
  if ! mount_impl "$impl"; then
    for m in $metrics; do record_error "$m" "$impl" "$r" "mount failed: $(tr '\n' ' ' < "$OUT.mount" | tail -c 300)"; done
    umount_impl; return
  fi
  if [ -n "$prep" ] && ! timeout -k 10 "$RUN_TIMEOUT" bash -c "$prep" > /dev/null 2> "$OUT.err"; then
    for m in $metrics; do record_error "$m" "$impl" "$r" "preparation ($prep) failed: $(errmsg)"; done
    umount_impl; return
  fi
  if [ "$wl" = fio ]; then
    run_fio > "$OUT" 2> "$OUT.err"
    while read -r m v rest; do
      [ "$v" = error ] && record_error "$m" "$impl" "$r" "fio: $rest" || record "$m" "$impl" "$r" "$v"
    done < "$OUT"
    for m in $metrics; do grep -q "^$m " "$OUT" || record_error "$m" "$impl" "$r" "no result: $(errmsg)"; done
  else
    [ $cold = 1 ] && drop_caches
    if timed "$cmd"; then
      if [ "$wl" = churn ]; then
        while read -r m v; do record "churn-$m" "$impl" "$r" "$v"; done < "$OUT"
      elif [ "$wl" = chmod ]; then
        record chmod "$impl" "$r" "$(cat "$OUT")"   # the call alone (see chmodtime.c)
      else
        record "$wl" "$impl" "$r" "$SECS"
        [ "$wl" = find-cold ] && record "count:find-cold" "$impl" "$r" "$(tr -dc 0-9 < "$OUT")"
      fi
    else
      for m in $metrics; do record_error "$m" "$impl" "$r" "exit $? after ${SECS}s: $(errmsg)"; done
    fi
  fi
  if [ -n "$CUR_PID" ]; then
    v=$(vm_hwm_kib "$CUR_PID"); [ -n "$v" ] && record "rss:$wl" "$impl" "$r" "$(awk -v k="$v" 'BEGIN{printf "%.1f", k/1024}')"
  fi
  umount_impl
}

START=$(date -u +%Y%m%d-%H%M); START_S=$(date +%s); LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
log "bench: rounds=$ROUNDS quick=$QUICK impls=[$IMPLS] untar=$UNTAR_N churn=$CHURN_N fio=$FIO_SIZE"
for wl in $WORKLOADS; do
  for r in $(seq "$ROUNDS"); do
    for impl in $IMPLS; do
      log "$wl: $impl, round $r/$ROUNDS"
      run_one "$wl" "$impl" "$r"
    done
  done
  perl "$BENCH_SCRIPTS/report.pl" --brief "$RAW" "$wl" "$IMPLS" >&2
done
END_S=$(date +%s); LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)

mkdir -p "$OUT_DIR"
RESULT=$OUT_DIR/bench-$START.md
{
  echo "# UnionFs benchmark $START UTC"
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC') (took $(( (END_S-START_S)/60 )) min)"
  echo "- kernel: $(uname -r) ($(uname -m)); FUSE: $(dmesg 2>/dev/null | grep -o 'fuse: init (API version [0-9.]*)' | tail -1 || true)"
  echo "- CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores; RAM $(free -g | awk '/Mem:/{print $2}') GiB"
  echo "- machine: $(hostname), virtualisation: $(systemd-detect-virt 2>/dev/null || echo unknown)$(lscpu | awk -F: '/Hypervisor vendor/{gsub(/^ */,"",$2); print " on " $2 " hypervisor"}'); $(. /etc/os-release; echo "$PRETTY_NAME"); scratch fs: $(findmnt -n -o FSTYPE,SOURCE --target "$BENCH_DIR" | tr -s ' ') ($BENCH_DIR)"
  echo "- load average at start / end: $LOAD0 / $LOAD1 (other work on the machine adds noise)"
  echo "- implementations: kernel overlayfs; $(fuse-overlayfs --version 2>&1 | grep -m1 -i 'fuse-overlayfs'); $UNIONFS_DESC"
  echo "- rounds: $ROUNDS$([ "$QUICK" = 1 ] && echo ' (QUICK=1 smoke test: smaller sizes)'), interleaved kernel / fuse-overlayfs / unionfs; fresh upper+work per run; caches dropped before every run except find-warm and mount-latency"
  echo "- layers (bottom to top): base = $(cat "$BENCH_DIR/base.source"), $(find "$BENCH_DIR/base" | wc -l) entries; tool = $(cat "$BENCH_DIR/tool.source"), $(find "$BENCH_DIR/tool" | wc -l) entries; mid = modified files, 100 whiteouts + a whiteout dir, an opaque dir, /src/proj, 8,000 files in /bench/del, 1 GiB + 64 MiB files, $(find "$BENCH_DIR/mid" | wc -l) entries"
  echo "- sizes: untar $UNTAR_N files; churn $CHURN_N files; fio $FIO_SIZE per sequential job (buffered and O_DIRECT, 1 MiB, psync), random 4k read (buffered and O_DIRECT) ${FIO_RUNTIME}s time-based each on the 1 GiB lower file"
  echo "- compile: $COMPILE_DESC"
  echo
  perl "$BENCH_SCRIPTS/report.pl" "$RAW" "$ALL_WORKLOADS" "$IMPLS"
  if [ -s "$ERRLOG" ]; then
    echo; echo "## Errors"; echo; sed 's/^/- /' "$ERRLOG"
  fi
  echo; echo "## Workloads"; echo
  cat <<'DESC'
- mount-latency: from the mount command to the first successful stat of /etc/os-release in the mount.
- find-cold / find-warm: `find MNT`; warm = after one untimed `find` on the same mount.
- stat-all: `find MNT -printf '%s %i\n'` (stat of every entry).
- tar: `tar -cf - . | cat > /dev/null` of the whole tree except /bench/big (reads every file; piping avoids GNU tar's /dev/null shortcut that skips reading).
- grep: `grep -r -l UNIONFS_BENCH_NEEDLE MNT` except /bench/big.
- untar: `tar -xf` of the small-files tarball into /srv/untar, then `sync`.
- append-nofsync / append-fsync: append 1 byte to the 1 GiB lower file /bench/big/big1g (copy-up), without / with fsync (`dd conv=fsync`).
- chmod: chmod(2) to 600 of the 64 MiB lower file (copy-up of metadata, or of data too), the call alone timed by a C helper (scripts/bench/chmodtime.c): starting `chmod` from cold caches costs more than a metadata-only copy-up.
- churn-create / -rename / -delete: a C helper (scripts/bench/churn.c) creating N 100-byte files in /var/tmp/churn, renaming each, unlinking each.
- delete-lower: `find /bench/del -type f -delete`: 8,000 files of the middle layer (whiteouts).
- compile: see the header.
- fio-*: seqread/seqread-direct of the 1 GiB lower file (buffered, O_DIRECT), seqwrite/seqwrite-direct of a new file in /var/tmp, randread = 4 KiB random reads (IOPS) for a fixed time, buffered (from cold caches; fio advises FADV_RANDOM, which the kernel honours for its own page cache, but a FUSE daemon may still read ahead on the backing file and so cache the 1 GiB file within the run) and O_DIRECT (one request per read: the per-request cost).
- rss:*: VmHWM of the FUSE daemon (from /proc/PID/status, the pid whose command line ends with the mount point) just before unmounting after that workload.
DESC
  echo; echo "<details><summary>raw values (workload, implementation, round, value)</summary>"; echo; echo '```'; cat "$RAW"; echo '```'; echo "</details>"
} > "$RESULT"
cat "$RESULT"
log "results: $RESULT"
