#!/bin/bash
# Kernel-level test suite for UnionFs.
#
#   native-tests/run.sh [SUITE...]        SUITE: posix, overlay, trust (default: all three)
#
# Environment:
#   IMPL          how to mount (default unionfs)
#                   posix:   unionfs ($UNIONFS loopback SRC MNT) | bind (mount --bind)
#                   overlay: unionfs ($UNIONFS mount -o ...) | kernel (mount -t overlay)
#                            | fuse-overlayfs
#   POSIX_IMPL / OVERLAY_IMPL   override IMPL for one suite
#   UNIONFS       daemon binary (default: <repo>/bin/unionfs)
#   FILTER        extended regex; only cases whose "suite/name" matches are run
#   CASE_TIMEOUT  seconds per test case (default 180); CMD_TIMEOUT per command (default 60)
#   VERBOSE=1     print the full log of every case (default: log tail of failed cases)
#   KEEP=1        keep the scratch directory (only if nothing is mounted in it)
#   LONG=1        full-length runs (suite trust: 100,000 fsx ops, 2 GiB copy-up, 120 s load);
#                 case timeouts are multiplied by 10
#   TRUST_IMPL    override IMPL for the trust suite (unionfs; kernel = informative check of
#                 the tests themselves: the daemon-specific cases fail by design; kernel overlayfs
#                 is used inside some trust cases as the reference)
#
# Output: "ok - suite/name" or "FAIL - suite/name: reason" per case, then one line
# "N passed, N failed". Exit status 1 if anything failed.
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
source "$HERE/lib.sh"

if [ "${1:-}" = --case ]; then
    shift
    run_case "$@"
    exit $?
fi

PASSED=0
FAILED=0
report_ok() {
    echo "ok - $1"
    PASSED=$((PASSED + 1))
}
report_fail() {
    echo "FAIL - $1: $2"
    FAILED=$((FAILED + 1))
}

SUITES=("$@")
[ ${#SUITES[@]} -gt 0 ] || SUITES=(posix overlay trust)
for s in "${SUITES[@]}"; do
    case $s in
    posix | overlay | trust) ;;
    *)
        echo "usage: $0 [posix] [overlay] [trust]" >&2
        exit 2
        ;;
    esac
done

SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/unionfs-native-tests.XXXXXX") || {
    echo "FAIL - setup: cannot create scratch dir"
    echo "0 passed, 1 failed"
    exit 1
}
export SCRATCH
FUSECTL_BEFORE=$(grep -q ' - fusectl ' /proc/self/mountinfo && echo yes || echo no)
FINISHED=0

final_cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "${CASE_PID:-}" ] && kill -0 "$CASE_PID" 2>/dev/null; then
        kill -TERM "$CASE_PID" 2>/dev/null
        sleep 1
        kill -KILL "$CASE_PID" 2>/dev/null
    fi
    [ -n "${WATCHDOG_PID:-}" ] && kill "$WATCHDOG_PID" 2>/dev/null
    if ! cleanup_mounts_under "$SCRATCH"; then
        echo "# WARNING: could not unmount everything under $SCRATCH; not deleting it" >&2
    elif [ "${KEEP:-0}" = 1 ]; then
        echo "# scratch kept: $SCRATCH" >&2
    else
        rm -rf --one-file-system "$SCRATCH"
    fi
    if [ "$FUSECTL_BEFORE" = no ] && grep -q ' - fusectl ' /proc/self/mountinfo; then
        umount /sys/fs/fuse/connections 2>/dev/null
    fi
    if [ "$FINISHED" = 0 ]; then
        echo "FAIL - run: interrupted"
        FAILED=$((FAILED + 1))
        echo "$PASSED passed, $FAILED failed"
        exit 1
    fi
    exit "$rc"
}
trap final_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# processes whose command line mentions the scratch dir (daemons we started), except us
our_leftover_pids() {
    local p cmd
    for p in /proc/[0-9]*; do
        p=${p#/proc/}
        [ "$p" = $$ ] && continue
        cmd=$(tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline") || continue
        case $cmd in *"$SCRATCH"*) echo "$p $cmd" ;; esac
    done
}

# ---------------------------------------------------------------------------------------
# prerequisites

PREREQ_ERR=()
[ "$(id -u)" = 0 ] || PREREQ_ERR+=("not running as root")
for tool in timeout stat getfattr setfattr find tar cp diff dd mknod \
    truncate fallocate du df awk sort make gcc; do
    command -v "$tool" >/dev/null 2>&1 || PREREQ_ERR+=("missing tool: $tool")
done
if ! out=$(make -s -C "$HERE" 2>&1); then
    PREREQ_ERR+=("building probes failed: $(echo "$out" | tail -n 3 | tr '\n' ' ')")
fi
for f in lib.sh posix.sh overlay.sh trust.sh run.sh; do
    out=$(bash -n "$HERE/$f" 2>&1) || PREREQ_ERR+=("syntax error in $f: $(echo "$out" | head -n 1)")
done
for c in "$HERE"/probes/*.c; do
    b=$BUILD_DIR/$(basename "$c" .c)
    [ -x "$b" ] || PREREQ_ERR+=("probe not built: $b")
done

suite_prereqs() { # SUITE -> prints problems, one per line
    local suite=$1 impl
    impl=$IMPL
    [ "$suite" = posix ] && impl=${POSIX_IMPL:-$IMPL}
    [ "$suite" = overlay ] && impl=${OVERLAY_IMPL:-$IMPL}
    [ "$suite" = trust ] && impl=${TRUST_IMPL:-$IMPL}
    case $suite/$impl in
    posix/bind | overlay/kernel | trust/kernel) ;;
    posix/unionfs | overlay/unionfs | trust/unionfs)
        [ -x "$UNIONFS" ] || echo "UnionFs binary not found or not executable: $UNIONFS"
        [ -c /dev/fuse ] || echo "/dev/fuse missing"
        ;;
    overlay/fuse-overlayfs)
        command -v fuse-overlayfs >/dev/null || echo "fuse-overlayfs not installed"
        command -v fusermount3 >/dev/null || echo "fusermount3 not installed"
        [ -c /dev/fuse ] || echo "/dev/fuse missing"
        ;;
    *) echo "IMPL=$impl is not valid for suite $suite" ;;
    esac
    if [ "$suite" = trust ]; then
        for tool in python3 setpriv useradd md5sum cmp; do
            command -v "$tool" >/dev/null 2>&1 || echo "missing tool for suite trust: $tool"
        done
    fi
    if { [ "$suite/$impl" = overlay/kernel ] || [ "$suite" = trust ]; } && ! grep -qw overlay /proc/filesystems; then
        modprobe overlay 2>/dev/null
        grep -qw overlay /proc/filesystems || echo "kernel overlay filesystem not available"
    fi
}

# ---------------------------------------------------------------------------------------
# run one case in its own process, with a timeout and a watchdog

CASE_NO=0
run_one() { # SUITE NAME
    local suite=$1 name=$2 dir log rc reason
    CASE_NO=$((CASE_NO + 1))
    dir=$SCRATCH/$(printf '%03d' "$CASE_NO")-$suite-$name
    log=$dir.log
    mkdir -p "$dir"
    local case_timeout=$CASE_TIMEOUT
    [ "${LONG:-0}" = 1 ] && case_timeout=$((CASE_TIMEOUT * 10))
    timeout -k 10 "$case_timeout" bash "$HERE/run.sh" --case "$suite" "$name" "$dir" \
        >"$log" 2>&1 </dev/null &
    CASE_PID=$!
    # watchdog: if even the timeout cannot end the case (process stuck on a hung FUSE
    # mount), abort/unmount the case's mounts so it can die.
    (
        trap 'kill $sp 2>/dev/null; exit 0' TERM
        sleep $((case_timeout + 30)) &
        sp=$!
        wait $sp
        echo "# watchdog: case $suite/$name still running, forcing its mounts away" >>"$log"
        cleanup_mounts_under "$dir" >>"$log" 2>&1
    ) &
    WATCHDOG_PID=$!
    rc=0
    { wait "$CASE_PID"; } 2>/dev/null || rc=$?
    kill "$WATCHDOG_PID" 2>/dev/null
    wait "$WATCHDOG_PID" 2>/dev/null
    CASE_PID='' WATCHDOG_PID=''

    reason=$(head -n 1 "$dir/.reason" 2>/dev/null)
    [ "$rc" -ne 0 ] || [ -z "$reason" ] || rc=1
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        reason="timed out after ${case_timeout}s${reason:+ ($reason)}; last log line: $(grep -v '^#' "$log" | tail -n 1)"
    fi
    if [ -n "$(mounts_under "$dir")" ]; then
        echo "# case left mounts behind: $(mounts_under "$dir" | tr '\n' ' ')" >>"$log"
        cleanup_mounts_under "$dir" >>"$log" 2>&1
        [ "$rc" -ne 0 ] || { rc=1; reason="left a mount behind"; }
    fi
    if [ "$rc" -eq 0 ]; then
        report_ok "$suite/$name"
    else
        [ -n "$reason" ] || reason="exit status $rc: $(grep -v '^#' "$log" | tail -n 1)"
        report_fail "$suite/$name" "$reason"
    fi
    if [ "${VERBOSE:-0}" = 1 ] || { [ "$rc" -ne 0 ] && [ -s "$log" ]; }; then
        if [ "${VERBOSE:-0}" = 1 ]; then cat "$log"; else tail -n 15 "$log"; fi | sed 's/^/#   /'
    fi
    if [ -z "$(mounts_under "$dir")" ] && [ "${KEEP:-0}" != 1 ]; then
        rm -rf --one-file-system "$dir" "$log"
    fi
}

check_leftover_processes() { # NAME
    local left i
    for i in 1 2 3 4 5 6 7 8 9 10; do
        left=$(our_leftover_pids)
        [ -z "$left" ] && break
        sleep 0.5
    done
    if [ -n "$left" ]; then
        report_fail "$1" "processes still running after all unmounts (killed): $(echo "$left" | head -n 3 | cut -c1-100 | tr '\n' ';')"
        echo "$left" | while read -r p _; do kill -TERM "$p" 2>/dev/null; done
        sleep 1
        echo "$left" | while read -r p _; do kill -KILL "$p" 2>/dev/null; done
    else
        report_ok "$1"
    fi
}

# ---------------------------------------------------------------------------------------

for suite in "${SUITES[@]}"; do
    impl=$IMPL
    [ "$suite" = posix ] && impl=${POSIX_IMPL:-$IMPL}
    [ "$suite" = overlay ] && impl=${OVERLAY_IMPL:-$IMPL}
    [ "$suite" = trust ] && impl=${TRUST_IMPL:-$IMPL}
    echo "# suite $suite, IMPL=$impl"
    problems=("${PREREQ_ERR[@]}")
    while IFS= read -r line; do problems+=("$line"); done < <(suite_prereqs "$suite")
    mapfile -t cases < <(list_cases "$suite")
    if [ ${#problems[@]} -gt 0 ]; then
        report_fail "$suite/prerequisites" "$(printf '%s; ' "${problems[@]}")"
        for c in "${cases[@]}"; do
            [[ "$suite/$c" =~ ${FILTER:-.} ]] || continue
            report_fail "$suite/$c" "not run: prerequisites missing"
        done
        continue
    fi
    for c in "${cases[@]}"; do
        [[ "$suite/$c" =~ ${FILTER:-.} ]] || continue
        run_one "$suite" "$c"
    done
    check_leftover_processes "$suite/no_leftover_processes"
done

FINISHED=1
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
