#!/usr/bin/env bash
# The FUSE protocol layer's overhead: `unionfs loopback SRC MNT` against the plain directory SRC,
# measured in one run with hyperfine (find over 50,000 files, cold and warm; untar of 20,000 small
# files + sync) and fio (1 GiB sequential read and write, 1 MiB blocks, buffered and O_DIRECT).
# Prints a Markdown table of medians and ratios (loopback/plain time; >1 = loopback slower) and
# writes it to bench-results/loopback-YYYYmmdd-HHMM.md.
# Environment: BENCH_DIR (default /var/tmp/unionfs-bench), RUNS=5 (hyperfine runs and fio
# repetitions), QUICK=1 (3 runs, 256 MiB fio), OUT_DIR, LOOPBACK_NOFILE=N (raise `ulimit -n` to N
# for the loopback daemon; default: the caller's limit, as a user would run it).
set -uo pipefail
source "$(dirname "$0")/lib.sh"

QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then RUNS=${RUNS:-3}; FIO_SIZE=${FIO_SIZE:-256m}; else RUNS=${RUNS:-5}; FIO_SIZE=${FIO_SIZE:-1g}; fi
OUT_DIR=${OUT_DIR:-$REPO/bench-results}
[ "$(id -u)" = 0 ] || die "run as root"
[ -x "$UNIONFS" ] || die "$UNIONFS missing: make publish"
for t in hyperfine fio jq perl; do command -v $t >/dev/null || die "$t missing: scripts/install-deps.sh"; done

bench_lock
"$BENCH_SCRIPTS/layers.sh" || die "building the bench cache failed"   # for the 20,000-file tarball
snapshot_unionfs   # one binary for the whole run, even if bin/unionfs is rebuilt meanwhile
D=$BENCH_DIR/loopback
SRC=$D/src; MNT=$D/mnt; TMP=$D/tmp
TARBALL=$BENCH_DIR/untar-20000.tar
mkdir -p "$SRC" "$MNT" "$TMP"
if [ ! -f "$D/tree.done" ]; then
  log "loopback: creating 50,000 files (250 directories of 200) and a 1 GiB file"
  rm -rf "$SRC/tree"; mkdir -p "$SRC/tree"
  perl -e 'my $d = shift; for my $i (0..249) { my $dd = sprintf("%s/d%03d", $d, $i); mkdir $dd or die;
           for my $j (0..199) { open my $f, ">", sprintf("%s/f%03d", $dd, $j) or die; print $f "x" x (($i + $j) % 512); close $f } }' "$SRC/tree"
  dd if=/dev/urandom of="$SRC/big1g" bs=1M count=1024 status=none
  sync; touch "$D/tree.done"
fi

PID=; HWM=
lb_mount() {
  "$UNIONFS" loopback "$SRC" "$MNT" < /dev/null > "$TMP/mount.log" 2>&1 9>&- || die "unionfs loopback failed: $(cat "$TMP/mount.log")"
  is_mounted "$MNT" || die "loopback not mounted"
  PID=$(fuse_daemon_pid loopback "$MNT")
}
lb_umount() {
  local h; [ -n "$PID" ] && h=$(vm_hwm_kib "$PID") && [ -n "$h" ] && { [ -z "$HWM" ] || [ "$h" -gt "$HWM" ]; } && HWM=$h
  safe_umount "$MNT" "$PID"; PID=
}
cleanup() { safe_umount "$MNT" "$PID"; rm -rf "$SRC/untar" "$SRC/fio.w" "$TMP" "${UNIONFS_SNAPSHOT_DIR:-}"; }
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM
is_mounted "$MNT" && safe_umount "$MNT"
if [ -n "${LOOPBACK_NOFILE:-}" ]; then ulimit -n "$LOOPBACK_NOFILE" || die "ulimit -n $LOOPBACK_NOFILE failed"; fi
NOFILE=$(ulimit -n)

declare -A RES   # RES[metric,plain|loopback] = median
ERRORS=()
hf() { lb_mount; hf1 "$@"; lb_umount; }   # a fresh loopback mount for each workload
hf1() { # metric prepare cmd-with-@DIR@: both sides in one hyperfine run; if that fails, each side alone
  local m=$1 prep=$2 cmd=$3 j=$TMP/$1.json side d why rc
  log "loopback: hyperfine $m"
  if hyperfine --runs "$RUNS" --style none --export-json "$j" \
       --prepare "${prep//@DIR@/$SRC}" -n plain "${cmd//@DIR@/$SRC}" \
       --prepare "${prep//@DIR@/$MNT}" -n loopback "${cmd//@DIR@/$MNT}" > "$TMP/$m.out" 2>&1; then
    RES[$m,plain]=$(jq '.results[0].median' "$j"); RES[$m,loopback]=$(jq '.results[1].median' "$j")
    return
  fi
  for side in plain loopback; do
    d=$SRC; [ $side = loopback ] && d=$MNT
    if hyperfine --runs "$RUNS" --style none --export-json "$j" --prepare "${prep//@DIR@/$d}" -n $side "${cmd//@DIR@/$d}" > "$TMP/$m.out" 2>&1; then
      RES[$m,$side]=$(jq '.results[0].median' "$j")
    else
      RES[$m,$side]=error
      sh -c "${prep//@DIR@/$d}" > /dev/null 2>&1
      why=$(sh -c "${cmd//@DIR@/$d}" 2>&1 > /dev/null); rc=$?
      if [ $rc != 0 ]; then
        ERRORS+=("$m on $side: exit $rc, $(printf '%s\n' "$why" | grep -c .) error lines, e.g. $(printf '%s\n' "$why" | head -2 | tr '\n' ' ')")
      else
        ERRORS+=("$m on $side: failed within hyperfine's $RUNS runs on one mount (a single further run passed): $(grep -m1 -i error "$TMP/$m.out")")
      fi
      log "loopback: ${ERRORS[-1]}"
    fi
  done
}
DROP='sync; echo 3 > /proc/sys/vm/drop_caches'
hf find-cold "$DROP" 'find @DIR@/tree -false'
hf find-warm 'find @DIR@/tree -false' 'find @DIR@/tree -false'
hf untar "rm -rf @DIR@/untar; mkdir @DIR@/untar; $DROP" "sh -c 'tar -C @DIR@/untar -xf $TARBALL && sync'"
rm -rf "$SRC/untar"
# smaller sizes that stay under the daemon's open-file limit (the loopback holds a descriptor per
# inode the kernel knows), so that there is a ratio even where the full-size rows fail
T15K='@DIR@/tree/d0[0-6][0-9] @DIR@/tree/d07[0-4]'
hf find-cold-15k "$DROP" "find $T15K -false"
hf find-warm-15k "find $T15K -false" "find $T15K -false"
hf untar-5k "rm -rf @DIR@/untar; mkdir @DIR@/untar; $DROP" "sh -c 'tar -C @DIR@/untar -xf $BENCH_DIR/untar-5000.tar && sync'"
rm -rf "$SRC/untar"
lb_mount

fio1() { # metric dir args... -> prints MiB/s
  local m=$1 dir=$2; shift 2
  sync; echo 3 > /proc/sys/vm/drop_caches
  fio --output-format=json --ioengine=psync --bs=1M --size="$FIO_SIZE" --name=$m "$@" > "$TMP/fio.json" 2> "$TMP/fio.err" ||
    { echo error; grep -m1 'error' "$TMP/fio.err" > "$TMP/fio.lasterr"; rm -f "$dir/fio.w"; return; }
  jq -r '[.jobs[0].read.bw, .jobs[0].write.bw] | max / 1024 | . * 10 | round / 10' "$TMP/fio.json"
  rm -f "$dir/fio.w"; sync
}
for m in seqread seqread-direct seqwrite seqwrite-direct; do
  log "loopback: fio $m x$RUNS"
  declare -a vp=() vl=()
  for r in $(seq "$RUNS"); do
    for side in plain loopback; do
      dir=$SRC; [ $side = loopback ] && dir=$MNT
      case $m in
        seqread)         v=$(fio1 $m "$dir" --filename="$dir/big1g" --readonly --rw=read --direct=0) ;;
        seqread-direct)  v=$(fio1 $m "$dir" --filename="$dir/big1g" --readonly --rw=read --direct=1) ;;
        seqwrite)        v=$(fio1 $m "$dir" --filename="$dir/fio.w" --rw=write --direct=0 --end_fsync=1) ;;
        seqwrite-direct) v=$(fio1 $m "$dir" --filename="$dir/fio.w" --rw=write --direct=1) ;;
      esac
      [ $side = plain ] && vp+=("$v") || vl+=("$v")
      [ "$v" = error ] && ERRORS+=("fio-$m on $side (run $r): $(cat "$TMP/fio.lasterr" 2>/dev/null)")
    done
  done
  med() { printf '%s\n' "$@" | grep -v error | sort -g | awk '{a[NR]=$1} END{if(NR==0)print "error"; else if(NR%2)print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
  RES[fio-$m,plain]=$(med "${vp[@]}"); RES[fio-$m,loopback]=$(med "${vl[@]}")
done
lb_umount

STAMP=$(date -u +%Y%m%d-%H%M)
mkdir -p "$OUT_DIR"; RESULT=$OUT_DIR/loopback-$STAMP.md
{
  echo "# FUSE protocol overhead: unionfs loopback vs the plain directory, $STAMP UTC"
  echo
  echo "- kernel $(uname -r); CPU $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores; $(hostname) ($(systemd-detect-virt 2>/dev/null || echo ?)); $(findmnt -n -o FSTYPE,SOURCE --target "$SRC" | tr -s ' ')"
  echo "- $UNIONFS_DESC; load average $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- hyperfine median of $RUNS runs (find: 50,000 files in 250 dirs, \`find -false\`, and the first 15,000 of them; cold = caches dropped before each run; untar: 20,000 or 5,000 small files + sync into a fresh dir); a fresh loopback mount per workload; fio median of $RUNS (1 MiB psync, $FIO_SIZE, caches dropped first; buffered write ends with fsync)"
  echo "- loopback daemon's open-file limit (ulimit -n): $NOFILE"
  echo "- loopback daemon peak RSS (VmHWM), max over its mounts (one per workload, one for all fio jobs): $( [ -n "$HWM" ] && awk -v k="$HWM" 'BEGIN{printf "%.1f MiB", k/1024}' || echo unknown)"
  echo
  echo "| workload | unit | plain | loopback | loopback/plain (time) |"
  echo "|---|---|---:|---:|---:|"
  for m in find-cold find-warm untar find-cold-15k find-warm-15k untar-5k fio-seqread fio-seqread-direct fio-seqwrite fio-seqwrite-direct; do
    p=${RES[$m,plain]:-error}; l=${RES[$m,loopback]:-error}
    case $m in fio-*) unit=MiB/s ;; *) unit=s ;; esac
    if [ "$p" = error ] || [ "$l" = error ] || [ -z "$p" ] || [ -z "$l" ]; then ratio=–
    elif [ $unit = s ]; then ratio=$(awk -v a="$l" -v b="$p" 'BEGIN{printf "%.2fx", a/b}')
    else ratio=$(awk -v a="$l" -v b="$p" 'BEGIN{printf "%.2fx", b/a}'); fi
    [ $unit = s ] && { [ "$p" != error ] && p=$(printf '%.3f' "$p"); [ "$l" != error ] && l=$(printf '%.3f' "$l"); } 2>/dev/null
    echo "| $m | $unit | $p | $l | $ratio |"
  done
  if [ ${#ERRORS[@]} -gt 0 ]; then echo; echo "Errors:"; printf -- '- %s\n' "${ERRORS[@]}"; fi
} > "$RESULT"
cat "$RESULT"
log "results: $RESULT"
