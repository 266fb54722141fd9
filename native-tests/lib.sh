# shellcheck shell=bash
# Helper library for the native test suites (sourced by run.sh and by every test case).
#
# Conventions inside a test case (function tc_<suite>_<name> in <suite>.sh):
#   - runs under `set -eEu -o pipefail`; any failing command fails the case with its text;
#   - $T is the case's private scratch directory (removed by run.sh);
#   - every command that touches a mount goes through `x` (timeout) or `xs` (shell snippet
#     under timeout); probes go through `probe`/`sysop`;
#   - `fail MSG` ends the case; the first message becomes the FAIL reason;
#   - mounts are made with the helpers below, which register them so they are always
#     unmounted (EXIT trap here, plus a sweep in run.sh).

NT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$NT_DIR/.." && pwd)
BUILD_DIR=$NT_DIR/build
: "${UNIONFS:=$REPO_DIR/bin/unionfs}"
: "${IMPL:=unionfs}"
: "${CMD_TIMEOUT:=60}"      # seconds for one command touching a mount
: "${CASE_TIMEOUT:=180}"    # seconds for one whole test case
export UNIONFS IMPL CMD_TIMEOUT CASE_TIMEOUT

# ---------------------------------------------------------------------------------------
# failing and asserting

fail() {
    local msg="$*"
    if [ -n "${REASON_FILE:-}" ] && [ ! -s "$REASON_FILE" ]; then
        printf '%s\n' "$msg" >"$REASON_FILE"
    fi
    printf 'FAIL: %s\n' "$msg" >&2
    exit 1
}

# ERR trap: report the innermost line of a suite file (not of this library) that failed
_on_err() {
    local rc=$1 cmd=$2 i src line where=
    for ((i = 1; i < ${#FUNCNAME[@]}; i++)); do
        src=${BASH_SOURCE[i]}
        case $src in */lib.sh) continue ;; esac
        line=${BASH_LINENO[i - 1]}
        where="$(basename "$src"):$line: $(sed -n "${line}{s/^ *//;p}" "$src")"
        break
    done
    fail "command failed (rc=$rc): ${where:-$cmd}"
}

# diff_summary TEXT_A TEXT_B N: the first N differing lines, on one line (never fails)
diff_summary() {
    { diff <(echo "$1") <(echo "$2") | grep '^[<>]' | head -n "$3" | tr '\n' ' '; } || true
}

note() { printf '# %s\n' "$*" >&2; }

# x CMD...: run CMD under a timeout; a timeout always fails the case.
x() {
    local rc=0
    timeout -k 5 "$CMD_TIMEOUT" "$@" || rc=$?
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        fail "timed out after ${CMD_TIMEOUT}s: $*"
    fi
    return "$rc"
}

# xs 'SNIPPET': run a bash snippet under a timeout (variables must be exported; T, M, S, U,
# W and the layer variables are).
xs() { x bash -c "set -eu -o pipefail; $1"; }

# probe NAME ARGS...: run build/NAME; its stdout passes through, its one-line stderr message
# becomes the failure reason.
probe() {
    local name=$1 rc=0
    shift
    local errf
    errf=$(mktemp "$T/.probe.XXXXXX")
    timeout -k 5 "$CMD_TIMEOUT" "$BUILD_DIR/$name" "$@" 2>"$errf" || rc=$?
    if [ "$rc" -ne 0 ]; then
        cat "$errf" >&2
        if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
            fail "probe $name timed out after ${CMD_TIMEOUT}s"
        fi
        fail "$(tail -n 1 "$errf")"
    fi
    rm -f "$errf"
}

# sysop DIR EXPECT OP ARGS... (see probes/sysop.c); EXPECT is ok or an errno name
sysop() { probe sysop "$@"; }

assert_eq() { # EXPECTED ACTUAL WHAT
    [ "$1" == "$2" ] || fail "$3: expected '$1', got '$2'"
}

assert_ne() { # UNEXPECTED ACTUAL WHAT
    [ "$1" != "$2" ] || fail "$3: expected something other than '$1'"
}

# assert_content PATH STRING: file holds exactly STRING (no implicit newline)
assert_content() {
    local got
    if ! got=$(x cat -- "$1" 2>&1 && echo .); then
        fail "cannot read $1: $got"
    fi
    got=${got%.}
    [ "$got" == "$2" ] || fail "content of $1: expected $(printf %q "$2"), got $(printf %q "$got")"
}

assert_enoent() { sysop / ENOENT lstat "$1" >/dev/null; }
assert_exists() { sysop / ok lstat "$1" >/dev/null; }

# stat_of FORMAT PATH (lstat)
stat_of() { x stat -c "$1" -- "$2"; }

assert_type() { # PATH TYPE-as-printed-by-stat-%F
    local t
    t=$(stat_of %F "$1") || fail "stat $1 failed"
    [ "$t" == "$2" ] || fail "type of $1: expected '$2', got '$t'"
}

assert_whiteout() { # PATH on disk must be a char 0/0 device
    local t
    t=$(stat -c '%F %t:%T' -- "$1" 2>&1) || fail "expected a whiteout at $1, but: $t"
    [ "$t" == "character special file 0:0" ] || fail "expected char 0/0 whiteout at $1, got '$t'"
}

# listing DIR: sorted names (ls -A), space separated
listing() { x ls -A -- "$1" | sort | tr '\n' ' ' | sed 's/ $//'; }

assert_listing() { # DIR "a b c"
    local got
    got=$(listing "$1") || fail "ls $1 failed"
    [ "$got" == "$2" ] || fail "listing of $1: expected '$2', got '$got'"
}

# xattr_lines DIR [REGEX]: one "relative/path name=value" line per extended attribute of
# everything under DIR (default: all namespaces), sorted
xattr_lines() {
    { x getfattr -R -h -d -m "${2:--}" --absolute-names "$1" 2>/dev/null || true; } |
        awk -v root="$1" 'substr($0, 1, 8) == "# file: " { f = substr($0, 9 + length(root)); next }
                           NF { print f " " $0 }' | LC_ALL=C sort
}

getxattr_of() { # PATH NAME  (value on stdout, fails if absent)
    x getfattr --absolute-names --only-values -h -n "$2" -- "$1"
}

# ---------------------------------------------------------------------------------------
# mounts. Every mount made by a case is recorded in $T/.mounts as "KIND MOUNTPOINT".

_register_mount() { printf '%s %s\n' "$1" "$2" >>"$T/.mounts"; }

# Mount queries read /proc/self/mountinfo only; they never touch the (maybe hung) mount.
# mountinfo_field MNT FIELD: FIELD of the topmost mount at MNT: devno, opts (per-mount
# options), fstype, source
mountinfo_field() {
    awk -v mp="$1" -v want="$2" '
        function unescape(s) { gsub(/\\040/, " ", s); gsub(/\\011/, "\t", s); gsub(/\\012/, "\n", s); gsub(/\\134/, "\\", s); return s }
        unescape($5) == mp {
            for (i = 7; i <= NF; i++) if ($i == "-") break
            if (want == "devno") r = $3; else if (want == "opts") r = $6
            else if (want == "fstype") r = $(i + 1); else if (want == "source") r = $(i + 2)
            found = 1
        }
        END { if (found) print r; exit !found }' /proc/self/mountinfo
}

is_mounted() { mountinfo_field "$1" devno >/dev/null; }

fstype_of() { mountinfo_field "$1" fstype; }

# _unmount_kind KIND MNT: the implementation's own unmount command
_unmount_kind() {
    case $1 in
    unionfs) timeout -k 5 15 "$UNIONFS" umount "$2" ;;
    fuse-overlayfs) timeout -k 5 15 fusermount3 -u "$2" ;;
    *) timeout -k 5 15 umount "$2" ;;
    esac
}

# _abort_fuse MNT: abort the FUSE connection behind MNT (for a hung daemon); afterwards
# every request on it fails at once instead of blocking
_abort_fuse() {
    local devno minor ctl=/sys/fs/fuse/connections
    case $(fstype_of "$1") in fuse | fuse.*) ;; *) return 0 ;; esac
    devno=$(mountinfo_field "$1" devno) || return 0
    minor=${devno#*:}
    [ "${devno%%:*}" = 0 ] || return 0
    if [ ! -e "$ctl/$minor/abort" ] && ! grep -q ' - fusectl ' /proc/self/mountinfo; then
        mount -t fusectl fusectl "$ctl" 2>/dev/null || return 0
        echo "# mounted fusectl on $ctl to abort a hung FUSE connection" >&2
    fi
    if [ -e "$ctl/$minor/abort" ]; then
        echo "# aborting FUSE connection $minor of $1" >&2
        echo 1 >"$ctl/$minor/abort" 2>/dev/null
    fi
    return 0
}

# force_unmount KIND MNT: make sure MNT is not mounted any more, escalating (abort the
# FUSE connection, umount without touching the path, lazy umount); returns 1 if the
# implementation's own unmount did not do it.
force_unmount() {
    local kind=$1 mnt=$2 polite=0
    is_mounted "$mnt" || return 0
    _unmount_kind "$kind" "$mnt" >&2 2>&1 || polite=1
    is_mounted "$mnt" || return "$polite"
    echo "# unmount of $mnt ($kind) did not work, escalating" >&2
    _abort_fuse "$mnt"
    timeout -k 2 10 umount --no-canonicalize "$mnt" >&2 2>&1
    is_mounted "$mnt" && timeout -k 2 10 umount --no-canonicalize -l "$mnt" >&2 2>&1
    return 1
}

# cleanup_mounts_under DIR: unmount everything mounted at or below DIR (deepest first)
cleanup_mounts_under() {
    local dir=$1 mp kind left
    for _ in 1 2 3; do
        left=0
        while read -r mp; do
            [ -n "$mp" ] || continue
            left=1
            kind=umount
            case $(fstype_of "$mp") in
            fuse.fuse-overlayfs) kind=fuse-overlayfs ;;
            fuse*) kind=fuse ;;
            esac
            echo "# cleanup: unmounting leftover mount $mp" >&2
            if [ "$kind" = fuse ]; then
                if [ -x "$UNIONFS" ]; then kind=unionfs; else kind=fuse-overlayfs; fi
            fi
            force_unmount "$kind" "$mp" || true
        done < <(mounts_under "$dir")
        [ "$left" = 0 ] && return 0
    done
    [ -z "$(mounts_under "$dir")" ]
}

# mounts_under DIR: mount points at or below DIR, deepest first
mounts_under() {
    local dir=${1%/}
    awk '{print $5}' /proc/self/mountinfo | while read -r mp; do
        mp=$(printf '%b' "$mp")
        case $mp in "$dir" | "$dir"/*) echo "$mp" ;; esac
    done | awk '{print length($0) " " $0}' | sort -rn | cut -d' ' -f2-
}

# unmount everything this case registered (EXIT trap of a case); a failing unmount
# fails the case
case_unmount_all() {
    [ -f "$T/.mounts" ] || return 0
    local kind mnt bad=
    while read -r kind mnt; do
        force_unmount "$kind" "$mnt" || bad+="$mnt ($kind) "
    done < <(tac "$T/.mounts")
    cleanup_mounts_under "$T" || bad+="(mounts left under $T) "
    [ -z "$bad" ] || fail "unmount at the end of the case failed: $bad"
}

_check_fstype() { # MNT EXPECTED-PATTERN
    local ft
    ft=$(fstype_of "$1")
    # shellcheck disable=SC2254 # $2 is a glob on purpose
    case $ft in
    $2) ;;
    *) fail "mount at $1 has filesystem type '$ft', expected $2 (IMPL=$IMPL)" ;;
    esac
}

# --- posix suite: SRC seen through MNT ---
posix_mount() { # SRC MNT
    local src=$1 mnt=$2 rc=0 out
    # output goes to a file, not a pipe: a daemon that keeps the caller's stdout/stderr
    # open would otherwise block $(...) forever (checked by the mount_detaches case)
    local outf=$T/.mount.out
    case $IMPL in
    bind) x mount --bind "$src" "$mnt" >"$outf" 2>&1 || rc=$? ;;
    unionfs) x "$UNIONFS" loopback "$src" "$mnt" >"$outf" 2>&1 || rc=$? ;;
    *) fail "posix suite: unknown IMPL=$IMPL (use unionfs or bind)" ;;
    esac
    out=$(cat "$outf")
    _register_mount "$IMPL" "$mnt"
    [ "$rc" -eq 0 ] || fail "mount (IMPL=$IMPL) of $src on $mnt failed rc=$rc: $out"
    is_mounted "$mnt" || fail "mount command (IMPL=$IMPL) returned 0 but $mnt is not a mount point"
    case $IMPL in
    unionfs) _check_fstype "$mnt" 'fuse*' ;;
    esac
}

posix_umount() { # MNT
    force_unmount "$IMPL" "$1" || fail "unmount (IMPL=$IMPL) of $1 failed"
}

# --- overlay suite ---
# ovl_init N: fresh layers $T/l1..lN (L1 is the topmost lower), upper U, work W, mount M.
# Sets LOWER=(paths...), L1, L2, ... and OVL_LOWERDIR (colon list, topmost first).
ovl_init() {
    local n=$1 i
    LOWER=()
    for ((i = 1; i <= n; i++)); do
        mkdir -p "$T/l$i"
        LOWER+=("$T/l$i")
        if [ "$i" -le 9 ]; then
            eval "L$i=\$T/l$i"
            export "L$i"
        fi
    done
    U=$T/u W=$T/w M=$T/m
    mkdir -p "$U" "$W" "$M"
    OVL_LOWERDIR=$(IFS=:; echo "${LOWER[*]}")
    OVL_READONLY=0
    export U W M
}

# ovl_try_mount [EXTRA_OPTS]: mount the union of OVL_LOWERDIR (+ U/W unless
# OVL_READONLY=1); returns the mount command's status, its output in OVL_MOUNT_OUT.
ovl_try_mount() {
    local extra=${1:-} opts rc=0 lowerdir=$OVL_LOWERDIR cwd=$PWD
    if [ "$IMPL" = kernel ] && [ "${#lowerdir}" -gt 3000 ]; then
        # mount(2) data is limited to one page: use paths relative to the layers' parent
        # (the way Docker does it); all layers are expected to share one parent.
        local base
        base=$(dirname "${LOWER[0]}")
        lowerdir=$(printf '%s\n' "${LOWER[@]}" | sed "s|^$base/||" | paste -sd:)
        cd "$base"
    fi
    opts="lowerdir=$lowerdir"
    [ "$OVL_READONLY" = 1 ] || opts+=",upperdir=$U,workdir=$W"
    [ -z "$extra" ] || opts+=",$extra"
    OVL_MOUNT_OPTS=$opts
    local outf=$T/.mount.out   # a file, not a pipe (see posix_mount)
    case $IMPL in
    kernel) x mount -t overlay overlay -o "$opts" "$M" >"$outf" 2>&1 || rc=$? ;;
    unionfs) x "$UNIONFS" mount -o "$opts" "$M" >"$outf" 2>&1 || rc=$? ;;
    fuse-overlayfs) x fuse-overlayfs -o "$opts" "$M" >"$outf" 2>&1 || rc=$? ;;
    *) fail "overlay suite: unknown IMPL=$IMPL (use unionfs, kernel or fuse-overlayfs)" ;;
    esac
    OVL_MOUNT_OUT=$(cat "$outf")
    cd "$cwd"
    _register_mount "$IMPL" "$M"
    return "$rc"
}

# ovl_mount [EXTRA_OPTS]: like ovl_try_mount, but the mount must succeed and be live
ovl_mount() {
    local rc=0
    ovl_try_mount "${1:-}" || rc=$?
    [ "$rc" -eq 0 ] || fail "overlay mount (IMPL=$IMPL, ${OVL_MOUNT_OPTS:0:200}) failed rc=$rc: $OVL_MOUNT_OUT"
    is_mounted "$M" || fail "mount command (IMPL=$IMPL) returned 0 but $M is not a mount point"
    case $IMPL in
    kernel) _check_fstype "$M" overlay ;;
    *) _check_fstype "$M" 'fuse*' ;;
    esac
}

ovl_umount() {
    force_unmount "$IMPL" "$M" || fail "unmount (IMPL=$IMPL) of $M failed"
}

ovl_remount() { # [EXTRA_OPTS]
    ovl_umount
    ovl_mount "${1:-}"
}

# assert_mount_detached: after a mount command returned, no process may still hold its
# stdout/stderr (the file $T/.mount.out): a daemon must detach from the caller's stdio, or
# `out=$(unionfs mount ...)` and similar callers hang until it exits.
assert_mount_detached() {
    local f=$T/.mount.out p holders=
    [ -e "$f" ] || fail "no mount output file $f"
    for p in /proc/[0-9]*/fd/*; do
        [ "$(readlink "$p" 2>/dev/null)" = "$f" ] || continue
        p=${p#/proc/}
        p=${p%%/*}
        holders+="$p($(tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline" | cut -c1-60)) "
    done
    [ -z "$holders" ] || fail "the mount command returned but still holds its stdout/stderr open: $holders"
}

# tmpfs_at DIR [SIZE]: a private tmpfs (used to put a layer on a different filesystem)
tmpfs_at() {
    mkdir -p "$1"
    mount -t tmpfs -o "size=${2:-64m},mode=0755" tmpfs "$1" || fail "mounting tmpfs on $1 failed"
    _register_mount tmpfs "$1"
}

# ---------------------------------------------------------------------------------------
# one test case (executed by `run.sh --case SUITE NAME DIR` in its own process)

run_case() {
    local suite=$1 name=$2
    T=$3
    CASE_NAME=$name # used by setup hooks (premount_<name>)
    export CASE_NAME
    REASON_FILE=$T/.reason
    export T REASON_FILE
    : >"$REASON_FILE"
    case $suite in
    posix) IMPL=${POSIX_IMPL:-$IMPL} ;;
    overlay) IMPL=${OVERLAY_IMPL:-$IMPL} ;;
    trust) IMPL=${TRUST_IMPL:-$IMPL} ;;
    esac
    export IMPL
    trap 'case_unmount_all' EXIT
    trap 'exit 143' TERM
    trap 'exit 130' INT
    set -eEu -o pipefail
    trap '_on_err $? "$BASH_COMMAND"' ERR
    # shellcheck source=/dev/null
    source "$NT_DIR/$suite.sh"
    cd "$T"
    if declare -F "setup_$suite" >/dev/null; then "setup_$suite"; fi
    "tc_${suite}_$name"
    # a failure inside a command substitution used as an argument does not stop bash,
    # but it did record a reason: the case has failed
    if [ -s "$REASON_FILE" ]; then exit 1; fi
}

# list_cases SUITE: test names in file order
list_cases() {
    grep -o "^tc_$1_[A-Za-z0-9_]*" "$NT_DIR/$1.sh" | sed "s/^tc_$1_//"
}
