# shellcheck shell=bash
# shellcheck disable=SC2034 # OVL_* settings are read by the mount helpers in lib.sh
# Suite "trust" (issue 7): faults, random operations and hostile input must leave the mount,
# the layers and the store intact.
#
#   native-tests/run.sh trust              short run (part of `make test`, ~3 min on 2 cores)
#   LONG=1 native-tests/run.sh trust       full lengths: 100,000 fsx ops, 2 GiB copy-up killed
#                                          at 4 points, 10,000/20,000-op crash bursts, 120 s
#                                          load, 400 model sequences of 300 ops
#   TRUST_IMPL=kernel native-tests/run.sh trust   informative: checks the tests themselves on
#                                          kernel overlayfs (the daemon-kill cases fail by design)
#
# Cases: fsx (probes/fsx.c) on lower files, also on kernel overlayfs; kill -9 of the daemon
# during a big copy-up, a rename burst, a create burst, a write loop (then umount -l, remount
# with the same U/W: old-or-new state, no lost whiteout, clean work dir); ENOSPC on a small
# tmpfs upper; a read-only upper; hostile layers (escaping symlinks, symlink over dir and dir
# over symlink, devices, setuid, 100,000 entries, 255-byte names, ~4000-byte paths, newline and
# invalid UTF-8 names); hostile tarballs for `image import` / `image load`; permissions of an
# unprivileged user vs a plain directory; load (probes/hammer.c, 8 processes) with daemon fd
# and RSS before/after; model-based random test vs kernel overlayfs (model.py, fixed cases in
# model-regressions.txt); races on lower-backed names.
#
# Reproduce a random run: FSX_SEED, HAMMER_SEED, MODEL_SEED (printed in each case's log).
# Figures (ops run, faults injected, hostile inputs, RSS/fd) are printed as "# figure: ..."
# lines in each case's log (VERBOSE=1 shows them).

LONG=${LONG:-0}
long() { [ "$LONG" = 1 ]; }
figure() { note "figure: $*"; }

# bg CMD...: run CMD in the background, its failure is expected (no ERR trap, no fail); BG=pid
bg() {
    (
        trap - ERR
        set +eE
        "$@"
    ) &
    BG=$!
}

# the unionfs daemon serving MNT: its argv[0] is the unionfs binary and its last argument is
# MNT (not /proc/PID/exe: it reads "... (deleted)" once the binary is rebuilt under a daemon)
daemon_pid() { # MNT
    local p args
    for p in /proc/[0-9]*; do
        mapfile -d '' -t args 2>/dev/null <"$p/cmdline" || continue
        [ "${#args[@]}" -ge 2 ] || continue
        [ "${args[0]}" = "$UNIONFS" ] || [ "$(basename "${args[0]}")" = unionfs ] || continue
        [ "${args[1]}" = mount ] || [ "${args[1]}" = -o ] || continue
        [ "${args[${#args[@]} - 1]}" = "$1" ] && { echo "${p#/proc/}"; return 0; }
    done
    return 1
}

# kill -9 the daemon of M; afterwards the dead mount is lazily unmounted
# wait_for_names DIR GLOB N: until N names matching GLOB exist below DIR (at most 10 s), so a kill lands
# in the middle of the work
wait_for_names() {
    local i
    for i in $(seq 200); do
        [ "$(find "$1" -name "$2" 2>/dev/null | head -n "$3" | wc -l)" -ge "$3" ] && return 0
        sleep 0.05
    done
}

kill_daemon() {
    local pid
    pid=$(daemon_pid "$M") || fail "no unionfs daemon found for $M"
    kill -9 "$pid"
    local i
    for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && fail "daemon $pid survived kill -9"
    note "killed daemon $pid of $M"
    FAULTS=$((${FAULTS:-0} + 1))
    umount -l "$M" 2>/dev/null || true
    is_mounted "$M" && fail "dead mount $M still mounted after umount -l"
    return 0
}

# the work dir must be empty after a (re)mount: leftovers of a crash are cleaned at mount
assert_work_clean() {
    local left
    left=$(find "$W" -mindepth 1 -maxdepth 3 ! -path "$W/work" ! -path "$W/index" 2>/dev/null | head -n 5 | tr '\n' ' ')
    [ -z "$left" ] || fail "work dir not clean after remount: $left"
}

# every lower layer snapshot (names, types, modes, sizes, checksums)
layer_state() {
    find "$1" -printf '%P|%y|%m|%U|%G|%s|%n|%l\n' | LC_ALL=C sort
    find "$1" -type f -print0 | LC_ALL=C sort -z | xargs -0r md5sum | sed "s|$1/||"
}
snapshot_lowers() { local l; for l in "${LOWER[@]}"; do layer_state "$l" >"$l.state"; done; }
assert_lowers_unchanged() {
    local l
    for l in "${LOWER[@]}"; do
        diff <(layer_state "$l") "$l.state" >"$T/layer.diff" ||
            fail "lower layer $(basename "$l") was modified: $(head -n 3 "$T/layer.diff" | tr '\n' ' ')"
    done
}

# a canary directory outside every layer and mount; its state is compared at the end
make_canary() { # DIR
    mkdir -p "$1/sub"
    echo canary >"$1/canaryfile"
    echo deep >"$1/sub/secret"
    mkdir -p "$1/q"
    echo qsecret >"$1/q/qsecret"
    chmod 0755 "$1"
}
canary_state() { # names, types, modes, sizes, link counts, file checksums (not dir mtimes)
    find "$1" -printf '%P|%y|%m|%s|%n|%l\n' | LC_ALL=C sort
    find "$1" -type f -print0 | LC_ALL=C sort -z | xargs -0r md5sum
}

# errno_as USER DIR OP ARGS...: "ok" or the errno name of one syscall (probes/sysop) run as USER
errno_as() {
    local user=$1 out rc=0
    shift
    if [ "$user" = root ]; then
        out=$(timeout -k 5 "$CMD_TIMEOUT" "$BUILD_DIR/sysop" "$1" ok "${@:2}" 2>&1 >/dev/null) || rc=$?
    else
        out=$(timeout -k 5 "$CMD_TIMEOUT" setpriv --reuid="$(id -u "$user")" --regid="$(id -g "$user")" \
            --clear-groups "$BUILD_DIR/sysop" "$1" ok "${@:2}" 2>&1 >/dev/null) || rc=$?
    fi
    [ "$rc" -ne 124 ] && [ "$rc" -ne 137 ] || fail "timed out: $*"
    if [ "$rc" -eq 0 ]; then echo ok; else echo "$out" | grep -o 'got E[A-Z0-9]*' | head -n 1 | cut -c5-; fi
}

ensure_user() { # NAME
    id -u "$1" >/dev/null 2>&1 || useradd -M -r -s /usr/sbin/nologin "$1" >/dev/null 2>&1 || id -u "$1" >/dev/null ||
        fail "cannot create user $1"
}

# =======================================================================================
# 1. fsx data-integrity exerciser on files that start in a lower layer

fsx_ops() { if long; then echo 100000; else echo 10000; fi; }

# fsx_run [EXTRA_OPTS]: lower files of several sizes (empty, sub-page, sparse, 1 MiB)
fsx_run() {
    local opts=${1:-} ops seed name n=0 total=0
    ops=$(fsx_ops)
    ovl_init 2
    : >"$L1/empty"
    head -c 3000 /dev/urandom >"$L1/small"
    head -c 200000 /dev/urandom >"$L2/medium"
    truncate -s 300000 "$L1/sparse"
    printf 'data in the middle' | dd of="$L1/sparse" bs=1 seek=150000 conv=notrunc status=none
    head -c 1048576 /dev/urandom >"$L2/big"
    mkdir -p "$L2/deep/er" && head -c 70000 /dev/urandom >"$L2/deep/er/nested"
    snapshot_lowers
    ovl_mount $opts
    local files=(empty small medium sparse big deep/er/nested)
    local per=$((ops / ${#files[@]}))
    for name in "${files[@]}"; do
        n=$((n + 1))
        seed=$(( ${FSX_SEED:-$((RANDOM * 32768 + RANDOM))} + n ))
        local src=$L1/$name
        [ -e "$src" ] || src=$L2/$name
        note "fsx $name: $per ops, seed $seed (reproduce: FSX_SEED=$((seed - n)))"
        CMD_TIMEOUT=$((CMD_TIMEOUT * 10)) probe fsx "$M" "$name" "$per" "$seed" "$src" "$T/shadow.${name//\//_}" 1048576
        total=$((total + per))
    done
    # the result survives an unmount: the upper holds exactly the shadow copies
    ovl_umount
    for name in "${files[@]}"; do
        cmp "$T/shadow.${name//\//_}" "$U/$name" || fail "upper copy of $name differs from the fsx shadow after unmount"
    done
    ovl_mount $opts
    for name in "${files[@]}"; do
        cmp "$T/shadow.${name//\//_}" "$M/$name" || fail "$name differs from the fsx shadow after remount"
    done
    assert_lowers_unchanged
    figure "fsx IMPL=$IMPL ${opts}: $total ops on ${#files[@]} lower files"
}

tc_trust_fsx_lower_files() {
    fsx_run
}

# every byte through the daemon's own read and write path (no passthrough): the path that serves set-ID files,
# files still open from before their copy-up, and kernels without passthrough
tc_trust_fsx_without_passthrough() {
    fsx_run passthrough=0
}

# the probe itself, checked against kernel overlayfs (the reference)
tc_trust_fsx_kernel_reference() {
    grep -qw overlay /proc/filesystems || modprobe overlay || fail "kernel overlayfs not available"
    IMPL=kernel
    fsx_run
}

# =======================================================================================
# 2. crash safety: kill -9 of the daemon, then umount -l, remount with the same U/W

big_size_mb() { if long; then echo 2048; else echo 1024; fi; }

# kill -9 while a 1 GiB (LONG: 2 GiB) lower file is being copied up by an append, at several
# points of the copy (percent of the file copied); after each crash: umount -l, remount with
# the same U/W, the file is exactly the lower content or lower+appended, W is clean
tc_trust_crash_copyup_big_file() {
    local mb i sz lsz pct kills=0 where state=old
    local pcts="10 90"
    long && pcts="5 30 60 95"
    mb=$(big_size_mb)
    ovl_init 1
    dd if=/dev/urandom of="$T/chunk" bs=1M count=16 status=none
    for ((i = 0; i < mb / 16; i++)); do cat "$T/chunk"; done >"$L1/big"
    echo small >"$L1/small"
    lsz=$(stat -c %s "$L1/big")
    ovl_mount
    for pct in $pcts; do
        [ "$state" = old ] || break
        # append in the background: the first write copies the whole file up
        bg sh -c "echo x >>'$M/big'" 2>"$T/append.err"
        local bgp=$BG want=$((lsz / 100 * pct)) seen=
        for i in $(seq 1200); do
            seen=$(find "$W" "$U" -type f -size +1M -printf '%s %p\n' 2>/dev/null | sort -rn | head -n 1)
            [ -n "$seen" ] && [ "${seen%% *}" -ge "$want" ] && break
            kill -0 "$bgp" 2>/dev/null || break
            sleep 0.02
        done
        if ! kill -0 "$bgp" 2>/dev/null; then
            note "copy-up finished before $pct% could be caught (last seen: $seen)"
            wait "$bgp" 2>/dev/null || true
            state=new
            break
        fi
        note "at $pct%: partial copy seen: $seen; killing the daemon"
        kill_daemon
        kills=$((kills + 1))
        wait "$bgp" 2>/dev/null || true
        note "appender: $(cat "$T/append.err")"
        ovl_mount
        assert_work_clean
        sz=$(stat -c %s "$M/big")
        if [ "$sz" = "$lsz" ]; then
            cmp "$L1/big" "$M/big" || fail "big file has the old size but not the lower content after the crash at $pct%"
            note "after the crash at $pct%: big shows the old (lower) state"
        elif [ "$sz" = $((lsz + 2)) ]; then
            cmp -n "$lsz" "$L1/big" "$M/big" || fail "big file: lower part corrupted after the crash at $pct%"
            [ "$(tail -c 2 "$M/big")" = x ] || fail "big file: appended bytes wrong"
            note "after the crash at $pct%: big shows the new state"
            state=new
        else
            fail "after kill -9 at $pct% of the copy-up, big has size $sz: neither the lower size $lsz nor $((lsz + 2))"
        fi
        # the upper never holds a partial copy under the real name
        if [ -e "$U/big" ]; then
            where=$(stat -c %s "$U/big")
            [ "$where" = "$sz" ] || fail "upper big has size $where, merged view $sz"
        fi
        assert_content "$M/small" $'small\n'
    done
    [ "$kills" -gt 0 ] || fail "no kill during the copy-up of a ${mb} MiB file (copy finished too fast?)"
    # the mount works: the copy-up now completes
    sz=$(stat -c %s "$M/big")
    echo y >>"$M/big"
    [ "$(stat -c %s "$M/big")" = $((sz + 2)) ] || fail "append after recovery: size $(stat -c %s "$M/big"), expected $((sz + 2))"
    cmp -n "$lsz" "$L1/big" "$M/big" || fail "big file: lower part corrupted after the final copy-up"
    ovl_umount
    assert_work_clean
    figure "crash during copy-up of a $mb MiB file: $kills kill -9 survived"
    FIG_FAULTS=$kills
}

# lower files, some deleted (whiteouts) and opaque dirs before the crash
crash_layers() {
    ovl_init 2
    local i
    mkdir -p "$L1/r" "$L2/r" "$L2/gone" "$L2/opq"
    for ((i = 0; i < $1; i++)); do
        echo "a$i" >"$L1/r/a$i"
        echo "del$i" >"$L2/r/del$i"
    done
    echo old >"$L2/gone/f"
    echo hidden >"$L2/opq/hidden"
}
crash_prepare_whiteouts() { # N: delete some names and dirs before the crash
    local i
    for ((i = 0; i < $1; i += 2)); do rm "$M/r/del$i"; done
    rm -r "$M/gone"
    rm -r "$M/opq" && mkdir "$M/opq" && echo new >"$M/opq/new"
}
crash_check_whiteouts() { # N
    local i
    for ((i = 0; i < $1; i++)); do
        if ((i % 2 == 0)); then
            [ ! -e "$M/r/del$i" ] || fail "whiteout lost: deleted r/del$i is back after the crash"
        else
            assert_content "$M/r/del$i" "del$i"$'\n'
        fi
    done
    [ ! -e "$M/gone" ] || fail "whiteout lost: deleted dir gone/ is back"
    assert_listing "$M/opq" "new"
}

tc_trust_crash_rename_burst() {
    local n=1000 i
    long && n=10000
    crash_layers "$n"
    ovl_mount
    crash_prepare_whiteouts "$n"
    # renames of lower files (each a copy-up + rename + whiteout) in the background
    # merged lower dirs dd/dd$i (L2 child f, L1 child g): renamed too (redirect)
    local nd=200
    for ((i = 0; i < nd; i++)); do
        mkdir -p "$L2/dd/dd$i" "$L1/dd/dd$i"
        echo "f$i" >"$L2/dd/dd$i/f"
        echo "g$i" >"$L1/dd/dd$i/g"
    done
    ovl_remount
    bg bash -c "cd $M/r && for ((i = 0; i < $n; i++)); do mv a\$i b\$i || exit 0; if ((i < $nd)); then mv ../dd/dd\$i ../dd/ee\$i || exit 0; fi; done" 2>/dev/null
    local bg=$BG
    wait_for_names "$U/r" 'b*' 50
    kill_daemon
    wait "$bg" 2>/dev/null || true
    ovl_mount
    assert_work_clean
    local moved=0 both=0 none=0
    for ((i = 0; i < n; i++)); do
        if [ -e "$M/r/a$i" ] && [ -e "$M/r/b$i" ]; then both=$((both + 1))
        elif [ -e "$M/r/b$i" ]; then moved=$((moved + 1)); [ "$(cat "$M/r/b$i")" = "a$i" ] || fail "r/b$i has wrong content"
        elif [ -e "$M/r/a$i" ]; then [ "$(cat "$M/r/a$i")" = "a$i" ] || fail "r/a$i has wrong content"
        else none=$((none + 1)); fi
    done
    note "renamed before the crash: $moved of $n; both names: $both; neither: $none"
    [ "$both" = 0 ] || fail "$both renamed files visible under both names after the crash"
    [ "$none" = 0 ] || fail "$none files lost (neither old nor new name) after the crash"
    [ "$moved" -gt 0 ] || fail "no rename completed before the kill (test did not exercise anything)"
    crash_check_whiteouts "$n"
    local dmoved=0 d
    for ((i = 0; i < nd; i++)); do
        if [ -e "$M/dd/dd$i" ] && [ -e "$M/dd/ee$i" ]; then fail "dir dd$i visible under both names after the crash"
        elif [ -e "$M/dd/ee$i" ]; then d=ee$i; dmoved=$((dmoved + 1))
        elif [ -e "$M/dd/dd$i" ]; then d=dd$i
        else fail "dir dd$i lost (neither dd$i nor ee$i) after the crash"; fi
        assert_listing "$M/dd/$d" "f g"
        assert_content "$M/dd/$d/f" "f$i"$'\n'
        assert_content "$M/dd/$d/g" "g$i"$'\n'
    done
    note "dirs renamed before the crash: $dmoved of $nd"
    # and the mount works: rename the rest, also after another remount
    [ -e "$M/r/b$((n - 1))" ] || mv "$M/r/a$((n - 1))" "$M/r/b$((n - 1))"
    [ -e "$M/dd/ee$((nd - 1))" ] || mv "$M/dd/dd$((nd - 1))" "$M/dd/ee$((nd - 1))"
    ovl_remount
    assert_content "$M/r/b$((n - 1))" "a$((n - 1))"$'\n'
    assert_listing "$M/dd/ee$((nd - 1))" "f g"
    assert_enoent "$M/dd/dd$((nd - 1))"
    ovl_umount
    figure "crash during a rename burst ($moved of $n file renames, $dmoved of $nd dir renames done): 1 kill -9 survived"
}

tc_trust_crash_create_burst() {
    local n=3000 i
    long && n=20000
    crash_layers 100
    mkdir -p "$L2/lowonly/sub"
    ovl_mount
    crash_prepare_whiteouts 100
    bg bash -c "for ((i = 0; i < $n; i++)); do echo c\$i > $M/lowonly/sub/c\$i || exit 0; mkdir $M/r/dir\$i || exit 0; done" 2>/dev/null
    local bg=$BG
    wait_for_names "$U/lowonly/sub" 'c*' 100
    kill_daemon
    wait "$bg" 2>/dev/null || true
    ovl_mount
    assert_work_clean
    local made=0 c
    for ((i = 0; i < n; i++)); do
        [ -e "$M/lowonly/sub/c$i" ] || continue
        made=$((made + 1))
        c=$(cat "$M/lowonly/sub/c$i")
        [ "$c" = "c$i" ] || [ -z "$c" ] || fail "lowonly/sub/c$i: partial content '$c' after the crash"
        [ -z "$c" ] && note "c$i empty (created, not yet written: allowed)"
        if [ -e "$M/r/dir$i" ]; then [ -d "$M/r/dir$i" ] || fail "r/dir$i is not a directory"; fi
    done
    [ "$made" -gt 0 ] || fail "no file created before the kill"
    local stray
    stray=$(ls -A "$M/lowonly/sub" | grep -v '^c[0-9]*$' | head -n 3 | tr '\n' ' ' || true)
    [ -z "$stray" ] || fail "stray names in lowonly/sub after the crash: $stray"
    crash_check_whiteouts 100
    echo after >"$M/lowonly/sub/after"
    ovl_umount
    figure "crash during a create burst ($made of $n files): 1 kill -9 survived"
}

# a hung daemon must not be needed for a crash with open files: kill while a writer holds
# an fd of a copied-up file and is writing; remount shows a prefix-consistent file
tc_trust_crash_during_writes() {
    ovl_init 1
    head -c 1048576 /dev/urandom >"$L1/f"
    ovl_mount
    x "$BUILD_DIR/fsx" "$M" f 200 7 "$L1/f" - >/dev/null # copy-up done, data settled
    cp "$M/f" "$T/before"
    bg bash -c "while :; do dd if=/dev/zero of=$M/g bs=64k count=64 conv=fsync status=none || exit 0; done" 2>/dev/null
    local bg=$BG
    sleep 1
    kill_daemon
    wait "$bg" 2>/dev/null || true
    ovl_mount
    assert_work_clean
    cmp "$T/before" "$M/f" || fail "f (written and closed before the crash) changed"
    ovl_umount
    figure "crash during a write loop: 1 kill -9 survived"
}

# ENOSPC in a small upper: the writer gets ENOSPC, nothing written before is lost
tc_trust_enospc_small_upper() {
    ovl_init 1
    head -c $((32 * 1048576)) /dev/urandom >"$L1/lower32m"
    echo keep >"$L1/keep"
    tmpfs_at "$T/small" 16m
    U=$T/small/u W=$T/small/w
    mkdir -p "$U" "$W"
    snapshot_lowers
    ovl_mount
    head -c $((4 * 1048576)) /dev/urandom >"$T/a.data"
    cp "$T/a.data" "$M/a"
    local rc=0 out
    out=$(x dd if=/dev/zero of="$M/fill" bs=1M count=64 conv=fsync 2>&1) || rc=$?
    [ "$rc" -ne 0 ] || fail "writing 64 MiB into a 16 MiB upper succeeded"
    echo "$out" | grep -q 'No space left on device' || fail "writer did not get ENOSPC: $out"
    cmp "$T/a.data" "$M/a" || fail "file written before ENOSPC is damaged"
    # copy-up of a 32 MiB lower file cannot fit: ENOSPC, lower content still visible
    rc=0
    out=$(x sh -c "echo more >> '$M/lower32m'" 2>&1) || rc=$?
    [ "$rc" -ne 0 ] || fail "appending to a 32 MiB lower file on a full 16 MiB upper succeeded"
    echo "$out" | grep -qi 'No space left' || fail "copy-up into a full upper: expected ENOSPC, got: $out"
    cmp "$L1/lower32m" "$M/lower32m" || fail "lower32m not intact through the mount after a failed copy-up"
    assert_work_clean
    # the mount keeps working after deleting something. The removed file's space comes back when the
    # kernel forgets its inode (the daemon keeps a descriptor until then, for a stat or open racing with
    # the removal); that FORGET is queued at the unlink but may be read a little later on a loaded machine.
    rm "$M/fill"
    local i
    for i in $(seq 50); do echo fresh 2>/dev/null >"$M/fresh" && break; sleep 0.1; done
    [ "$i" -lt 50 ] || fail "cannot write 5 s after freeing space"
    [ "$i" -eq 1 ] || note "the space came back after $i attempts"
    assert_content "$M/fresh" $'fresh\n'
    assert_content "$M/keep" $'keep\n'
    cmp "$T/a.data" "$M/a" || fail "a damaged after freeing space"
    ovl_remount
    cmp "$T/a.data" "$M/a" || fail "a damaged after remount"
    assert_content "$M/fresh" $'fresh\n'
    [ "$(stat -c %s "$M/lower32m")" = $((32 * 1048576)) ] || fail "lower32m size changed"
    assert_lowers_unchanged
    figure "ENOSPC: 2 faults (full upper on write, copy-up too big) survived"
}

# a read-only upper: mount read-only with a clear message, or refuse with a clear one-line error
tc_trust_readonly_upper() {
    ovl_init 1
    echo low >"$L1/f"
    mkdir -p "$T/rw/u" "$T/rw/w" "$T/ro"
    echo up >"$T/rw/u/g"
    mount --bind "$T/rw" "$T/ro" && _register_mount bind "$T/ro"
    mount -o remount,bind,ro "$T/ro" || fail "cannot make the bind mount read-only"
    U=$T/ro/u W=$T/ro/w
    local rc=0
    ovl_try_mount || rc=$?
    note "mount with a read-only upper: rc=$rc output: $OVL_MOUNT_OUT"
    if [ "$rc" -ne 0 ]; then
        is_mounted "$M" && fail "mount failed (rc=$rc) but $M is mounted"
        [ -n "$OVL_MOUNT_OUT" ] || fail "mount refused a read-only upper without any message"
        [ "$(printf '%s\n' "$OVL_MOUNT_OUT" | wc -l)" -le 2 ] || fail "error is not a short message: $OVL_MOUNT_OUT"
        printf '%s' "$OVL_MOUNT_OUT" | grep -Eqi 'read-only|EROFS|readonly' ||
            fail "error does not say the upper is read-only: $OVL_MOUNT_OUT"
        figure "read-only upper: refused (rc=$rc): $OVL_MOUNT_OUT"
    else
        is_mounted "$M" || fail "mount returned 0 but nothing is mounted"
        printf '%s' "$OVL_MOUNT_OUT" | grep -Eqi 'read-only|readonly' ||
            fail "mounted with a read-only upper but printed no message saying so (output: '$OVL_MOUNT_OUT')"
        assert_content "$M/f" $'low\n'
        assert_content "$M/g" $'up\n'
        sysop "$M" EROFS open new w,creat >/dev/null
        sysop "$M" EROFS write f data >/dev/null
        sysop "$M" EROFS unlink f
        figure "read-only upper: mounted read-only: $OVL_MOUNT_OUT"
        ovl_umount
    fi
}

# =======================================================================================
# 3. hostile layers seen through the mount

tc_trust_hostile_symlink_layers() {
    local C=$T/canary
    make_canary "$C"
    canary_state "$C" >"$T/canary.before"
    ovl_init 3
    # L1 symlink d -> canary over L2 directory d/ (with f): the symlink wins, no merge
    ln -s "$C" "$L1/d"
    mkdir -p "$L2/d" && echo f >"$L2/d/f"
    # L1 directory e/ over L2 symlink e -> canary: the daemon must not merge the canary in
    mkdir -p "$L1/e" && echo a >"$L1/e/a"
    ln -s "$C" "$L2/e"
    # the same with a relative escape and a deeper path
    mkdir -p "$L1/p/q" && echo pa >"$L1/p/q/pa"
    ln -s ../../../../../../../../../../../../../../.."$C" "$L2/p"
    mkdir -p "$L1/s" && echo sa >"$L1/s/sa"
    ln -s "$C/sub" "$L3/s"
    # a symlink named like an intermediate dir component in a lower, below a dir in L1
    mkdir -p "$L1/x/y" && echo xy >"$L1/x/y/f"
    mkdir -p "$L2/x" && ln -s "$C" "$L2/x/y"
    # escape symlinks as plain entries
    ln -s /etc/passwd "$L1/abs"
    ln -s ../../../../../../../../etc/passwd "$L1/rel"
    ln -s "$C/written" "$L1/wthrough"
    snapshot_lowers
    ovl_mount
    assert_type "$M/d" "symbolic link"
    assert_eq "$C" "$(readlink "$M/d")" "readlink d"
    assert_enoent "$M/d/f"   # the kernel follows d to the canary, which has no f
    assert_listing "$M/e" "a"
    assert_listing "$M/p" "q"
    assert_listing "$M/p/q" "pa"
    assert_listing "$M/s" "sa"
    assert_listing "$M/x/y" "f"
    assert_eq /etc/passwd "$(readlink "$M/abs")" "readlink abs"
    # writes in the merged dirs land in the upper, never in the canary
    echo n >"$M/e/new"
    echo n >"$M/p/q/new"
    echo n >"$M/s/new"
    echo n >"$M/x/y/new"
    chmod 600 "$M/e/a"
    echo more >>"$M/p/q/pa"
    mkdir "$M/e/sub"
    rm "$M/s/sa"
    rm -r "$M/x/y"
    mkdir "$M/x/y" && echo fresh >"$M/x/y/fresh"
    mv "$M/e" "$M/e2"
    [ -d "$U/e2" ] && [ ! -L "$U/e2" ] || fail "upper e2 is not a real directory"
    [ -d "$U/p/q" ] && [ ! -L "$U/p" ] || fail "copy-up of p followed the lower symlink"
    rm "$M/d" "$M/abs" "$M/rel"
    assert_enoent "$M/d"
    diff <(canary_state "$C") "$T/canary.before" >/dev/null || fail "canary changed: $(diff <(canary_state "$C") "$T/canary.before" | head -n 3 | tr '\n' ' ')"
    # writing through a symlink in the mount follows it as the kernel resolves it for the
    # caller (expected POSIX behaviour): canary/written appears
    echo through >"$M/wthrough"
    assert_content "$C/written" $'through\n'
    rm "$C/written"
    ovl_remount
    assert_listing "$M/x/y" "fresh"
    assert_listing "$M/s" "new"
    diff <(canary_state "$C") "$T/canary.before" >/dev/null || fail "canary changed after remount"
    assert_lowers_unchanged
    figure "hostile symlink layers: 8 escaping symlinks"
}

tc_trust_hostile_special_files() {
    ovl_init 1
    mknod "$L1/null" c 1 3
    mknod "$L1/blk" b 7 200
    mkfifo "$L1/fifo"
    echo suid >"$L1/suid" && chown 1234:1234 "$L1/suid" && chmod 6755 "$L1/suid"
    echo sticky >"$L1/sticky" && chmod 1644 "$L1/sticky"
    python3 -c "import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])" "$L1/sock"
    snapshot_lowers
    ovl_mount
    assert_eq "character special file 1:3" "$(stat_of '%F %t:%T' "$M/null")" "char device"
    assert_eq "block special file 7:c8" "$(stat_of '%F %t:%T' "$M/blk")" "block device"
    assert_type "$M/fifo" "fifo"
    assert_type "$M/sock" "socket"
    assert_eq "6755 1234 1234" "$(stat_of '%a %u %g' "$M/suid")" "setuid file"
    assert_content "$M/suid" $'suid\n'
    # copy-up by chmod keeps type, rdev, owner and special bits
    chmod 0640 "$M/null"
    chmod 0640 "$M/blk"
    chown 5:5 "$M/fifo"
    touch -h -d @1000000000 "$M/suid"
    chmod 1600 "$M/sticky"
    assert_eq "character special file 1:3 640" "$(stat -c '%F %t:%T %a' "$U/null")" "upper char device"
    assert_eq "block special file 7:c8 640" "$(stat -c '%F %t:%T %a' "$U/blk")" "upper block device"
    assert_eq "fifo 5" "$(stat -c '%F %u' "$U/fifo")" "upper fifo"
    assert_eq "6755 1234 1234" "$(stat -c '%a %u %g' "$U/suid")" "copied-up setuid file (root touch)"
    assert_eq "1600" "$(stat -c '%a' "$M/sticky")" "sticky"
    # root appending keeps setuid (CAP_FSETID), as on any filesystem
    echo more >>"$M/suid"
    assert_eq "6755" "$(stat_of %a "$M/suid")" "setuid after root append"
    rm "$M/null" "$M/blk" "$M/fifo" "$M/sock" "$M/suid"
    assert_listing "$M" "sticky"
    ovl_remount
    assert_listing "$M" "sticky"
    assert_lowers_unchanged
    figure "hostile special files: 2 devices, fifo, socket, setuid, sticky"
}

tc_trust_hostile_big_directory() {
    local n=100000
    ovl_init 2
    mkdir -p "$L2/big" "$L1/big"
    # 90,000 names in L2 and 10,000 in L1: one merged directory of 100,000 entries
    python3 -c "
import os, sys
for i in range(90000): open(sys.argv[1] + '/f%05d' % i, 'w').close()
for i in range(90000, 100000): open(sys.argv[2] + '/f%05d' % i, 'w').close()" "$L2/big" "$L1/big"
    echo top >"$L1/big/f99999"
    snapshot_lowers
    ovl_mount
    local c
    c=$(x ls -f "$M/big" | grep -vc '^\.\.\?$')
    assert_eq "$n" "$c" "entries in a $n-entry merged dir (ls)"
    probe bigdir "$M/big" count "$n"   # each name once, telldir/seekdir replay
    assert_content "$M/big/f99999" $'top\n'
    assert_exists "$M/big/f00000"
    x sh -c "cd '$M/big' && rm f0*" # 10,000 whiteouts
    echo new >"$M/big/f00001"
    c=$(x ls -f "$M/big" | grep -vc '^\.\.\?$')
    assert_eq $((n - 10000 + 1)) "$c" "entries after deleting 10,000"
    ovl_remount
    c=$(x find "$M/big" -mindepth 1 | wc -l)
    assert_eq $((n - 10000 + 1)) "$c" "entries after remount"
    assert_content "$M/big/f00001" $'new\n'
    assert_enoent "$M/big/f00002"
    assert_lowers_unchanged
    figure "big directory: $n entries over 2 lowers, 10,000 whiteouts"
}

tc_trust_hostile_long_names() {
    ovl_init 1
    local n255 n256 i rel=
    n255=$(printf 'N%.0s' $(seq 255))
    n256=${n255}X
    echo long >"$L1/$n255"
    mkdir -p "$L1/$n255.d" 2>/dev/null || mkdir -p "$L1/${n255:0:250}.d"
    # a ~4000-byte relative path of 200-byte components
    local comp
    comp=$(printf 'p%.0s' $(seq 199))
    (cd "$L1" && for i in $(seq 19); do mkdir "$comp$i" && cd "$comp$i"; done && echo deep >deepfile)
    for i in $(seq 19); do rel+="$comp$i/"; done
    rel+=deepfile
    note "deep relative path: ${#rel} bytes; absolute through the mount: $((${#M} + 1 + ${#rel}))"
    snapshot_lowers
    ovl_mount
    assert_content "$M/$n255" $'long\n'
    echo more >>"$M/$n255"
    chmod 600 "$M/$n255"
    assert_content "$M/$n255" $'long\nmore\n'
    sysop "$M" ENAMETOOLONG open "$n256" w,creat >/dev/null
    sysop "$M" ENAMETOOLONG mkdir "$n256"
    sysop "$M" ENAMETOOLONG lstat "$n256" >/dev/null
    # deep path: read, append (copy-up of 19 parents), rename, delete
    assert_content "$M/$rel" $'deep\n'
    echo app >>"$M/$rel"
    assert_content "$M/$rel" $'deep\napp\n'
    assert_content "$U/$rel" $'deep\napp\n'
    mv "$M/$rel" "$M/${rel%deepfile}renamed"
    assert_content "$M/${rel%deepfile}renamed" $'deep\napp\n'
    rm "$M/${rel%deepfile}renamed"
    assert_enoent "$M/$rel"
    mv "$M/$n255" "$M/short"
    rm "$M/short"
    ovl_remount
    assert_enoent "$M/$n255"
    assert_enoent "$M/$rel"
    assert_lowers_unchanged
    figure "long names: 255-byte name, ${#rel}-byte path"
}

tc_trust_hostile_odd_names() {
    ovl_init 1
    local nl=$'new\nline' bad=$'\xff\xfe\x80bad' tab=$'t\tab' esc=$'\e[31mred'
    local names=("$nl" "$bad" "$tab" "$esc" " lead" "trail " '-dash' '*star?' 'back\slash' $'\x01ctl')
    local nm
    for nm in "${names[@]}"; do echo "$nm" >"$L1/$nm"; mkdir -p "$L1/dir$nm"; done
    snapshot_lowers
    ovl_mount
    local got want
    want=$(cd "$L1" && find . -mindepth 1 -print0 | LC_ALL=C sort -z | md5sum)
    got=$(cd "$M" && find . -mindepth 1 -print0 | LC_ALL=C sort -z | md5sum)
    assert_eq "$want" "$got" "listing of odd names (find -print0)"
    for nm in "${names[@]}"; do
        assert_content "$M/$nm" "$nm"$'\n'
        echo x >>"$M/$nm"
        chmod 600 "$M/$nm"
        assert_content "$M/$nm" "$nm"$'\nx\n'
        [ -f "$U/$nm" ] || fail "copy-up of $(printf %q "$nm") not in the upper under the same name"
        echo y >"$M/dir$nm/new$nm"
        rm "$M/$nm"
        assert_enoent "$M/$nm"
    done
    # creating odd names through the mount
    for nm in "${names[@]}"; do echo c >"$M/c$nm"; done
    ovl_remount
    for nm in "${names[@]}"; do
        assert_enoent "$M/$nm"
        assert_content "$M/c$nm" $'c\n'
        assert_content "$M/dir$nm/new$nm" $'y\n'
    done
    assert_lowers_unchanged
    figure "odd names: ${#names[@]} names (newline, invalid UTF-8, control chars)"
}

# hostile tarballs for the store: nothing is written outside the store root, clear error,
# non-zero exit
tc_trust_hostile_tarballs() {
    local C=$T/canary store=$T/store
    make_canary "$C"
    echo target >"$C/hltarget"
    canary_state "$C" >"$T/canary.before"
    mkdir -p "$T/tars" "$store"
    python3 - "$T/tars" "$C" <<'EOF'
import io, sys, tarfile, os
out, canary = sys.argv[1], sys.argv[2]
def tar(name, entries):
    with tarfile.open(os.path.join(out, name + ".tar"), "w", format=tarfile.GNU_FORMAT) as t:
        for e in entries:
            ti = tarfile.TarInfo(e[1])
            ti.mtime = 1700000000
            if e[0] == "f":
                data = e[2].encode(); ti.size = len(data); t.addfile(ti, io.BytesIO(data))
            elif e[0] == "d":
                ti.type = tarfile.DIRTYPE; ti.mode = 0o755; t.addfile(ti)
            elif e[0] == "s":
                ti.type = tarfile.SYMTYPE; ti.linkname = e[2]; t.addfile(ti)
            elif e[0] == "h":
                ti.type = tarfile.LNKTYPE; ti.linkname = e[2]; t.addfile(ti)
rel_up = "../" * 40
tar("dotdot", [("d", "ok"), ("f", "ok/file", "fine"), ("f", "../escape-dotdot", "pwned"),
               ("f", "ok/../../escape-dotdot2", "pwned"), ("f", rel_up + canary.lstrip("/") + "/pwned-dotdot", "pwned")])
tar("absolute", [("f", "fine", "fine"), ("f", canary + "/pwned-abs", "pwned")])
tar("symlink_dir_escape", [("s", "link", canary), ("f", "link/pwned-symlink", "pwned")])
tar("symlink_rel_escape", [("s", "up", rel_up + canary.lstrip("/")), ("f", "up/pwned-relsym", "pwned")])
# a later entry replaces an earlier symlink (GNU tar semantics): may succeed, must not write through
tar("symlink_then_file_replace", [("s", "victim", canary + "/canaryfile"), ("f", "victim", "overwritten")])
tar("symlink_chain", [("d", "a"), ("s", "a/b", "../../.."), ("s", "c", "a/b" + canary), ("f", "c/pwned-chain", "pwned")])
tar("hardlink_escape", [("h", "hl", canary + "/hltarget"), ("f", "x", "x")])
tar("hardlink_rel_escape", [("h", "hl", rel_up + canary.lstrip("/") + "/hltarget")])
tar("hardlink_then_write", [("h", "hl", canary + "/hltarget"), ("f", "hl", "overwritten")])
tar("symlink_then_hardlink", [("s", "s", canary), ("h", "h", "s/hltarget")])
EOF
    local tb name rc out bad=0 tried=0 refused=0
    for tb in "$T"/tars/*.tar; do
        name=$(basename "$tb" .tar)
        tried=$((tried + 1))
        rc=0
        out=$(x "$UNIONFS" image import "$tb" "hostile-$name" --root "$store" 2>&1) || rc=$?
        note "import $name: rc=$rc: $(echo "$out" | head -n 2 | tr '\n' ' ')"
        if ! diff <(canary_state "$C") "$T/canary.before" >/dev/null; then
            note "CANARY CHANGED by $name: $(diff <(canary_state "$C") "$T/canary.before" | head -n 4 | tr '\n' ' ')"
            bad=$((bad + 1))
            rm -rf "$C" && make_canary "$C" && echo target >"$C/hltarget"
            canary_state "$C" >"$T/canary.before"
        fi
        # nothing appeared next to the store or the tar dir either
        for f in "$T/escape-dotdot" "$T/escape-dotdot2" "$T/tars/escape-dotdot" "/escape-dotdot" "/pwned-abs"; do
            [ ! -e "$f" ] || { note "ESCAPE: $f written by $name"; bad=$((bad + 1)); rm -f "$f"; }
        done
        # no hard link from inside the store to a file outside
        if [ "$(stat -c %h "$C/hltarget")" != 1 ]; then
            note "ESCAPE: $name hard-linked $C/hltarget into the store"
            bad=$((bad + 1))
        fi
        if [ "$rc" -eq 0 ] && [ "${name%_replace}" != "$name" ]; then
            refused=$((refused + 1)) # replacing the symlink is fine; the canary check above decides
            note "import of $name succeeded (allowed: the file replaces the symlink)"
        elif [ "$rc" -eq 0 ]; then
            note "NOT REFUSED: import of $name succeeded"
        else
            refused=$((refused + 1))
            [ -n "$out" ] || note "NO MESSAGE: import of $name failed silently"
        fi
    done
    # docker-archive with a hostile manifest / layer name
    mkdir -p "$T/da"
    python3 - "$T/da" "$C" <<'EOF'
import io, sys, tarfile, json, hashlib, os
out, canary = sys.argv[1], sys.argv[2]
layer = io.BytesIO()
with tarfile.open(fileobj=layer, mode="w") as t:
    ti = tarfile.TarInfo("../../../../../../../../../.." + canary + "/pwned-load"); data = b"pwned"; ti.size = len(data); t.addfile(ti, io.BytesIO(data))
ld = layer.getvalue(); lh = hashlib.sha256(ld).hexdigest()
cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": {}, "rootfs": {"type": "layers", "diff_ids": ["sha256:" + lh]}}).encode()
ch = hashlib.sha256(cfg).hexdigest()
def archive(name, manifest, files):
    with tarfile.open(os.path.join(out, name + ".tar"), "w") as t:
        for n, d in files + [("manifest.json", json.dumps(manifest).encode())]:
            ti = tarfile.TarInfo(n); ti.size = len(d); t.addfile(ti, io.BytesIO(d))
archive("load_layer_dotdot", [{"Config": ch + ".json", "RepoTags": ["hostile:1"], "Layers": [lh + "/layer.tar"]}],
        [(ch + ".json", cfg), (lh + "/layer.tar", ld)])
archive("load_manifest_path", [{"Config": "../../../../../../etc/passwd", "RepoTags": ["hostile:2"], "Layers": ["../../../../../../" + canary.lstrip("/") + "/canaryfile"]}],
        [(ch + ".json", cfg)])
EOF
    for tb in "$T"/da/*.tar; do
        name=$(basename "$tb" .tar)
        tried=$((tried + 1))
        rc=0
        out=$(x "$UNIONFS" image load "$tb" --root "$store" 2>&1) || rc=$?
        note "load $name: rc=$rc: $(echo "$out" | head -n 2 | tr '\n' ' ')"
        if ! diff <(canary_state "$C") "$T/canary.before" >/dev/null; then
            note "CANARY CHANGED by $name"
            bad=$((bad + 1))
        fi
        if [ "$rc" -eq 0 ]; then note "NOT REFUSED: load of $name succeeded"; else refused=$((refused + 1)); fi
    done
    # the symlink-then-file tarball: the layer holds a regular file, the canary was untouched
    local cid mp
    cid=$(x "$UNIONFS" container create hostile-symlink_then_file_replace --root "$store") ||
        fail "container create from the symlink-then-file image failed: $cid"
    mp=$(x "$UNIONFS" container mount "$cid" --root "$store") || fail "container mount failed: $mp"
    _register_mount unionfs "$mp"
    assert_type "$mp/victim" "regular file"
    assert_content "$mp/victim" "overwritten"
    x "$UNIONFS" container umount "$cid" --root "$store" >/dev/null
    is_mounted "$mp" && fail "container umount left $mp mounted"
    x "$UNIONFS" container rm "$cid" --root "$store" >/dev/null
    # the store itself is still consistent
    out=$(x "$UNIONFS" system fsck --root "$store" 2>&1) || fail "system fsck after hostile imports failed: $out"
    figure "hostile tarballs: $tried tried, $refused handled (refused or safely replaced), $bad escapes"
    [ "$bad" = 0 ] || fail "$bad hostile tarballs wrote or linked outside the store (see log)"
    [ "$refused" = "$tried" ] || fail "only $refused of $tried hostile tarballs were refused with a non-zero exit (see NOT REFUSED in the log)"
}

# =======================================================================================
# 4. permissions: an unprivileged user on the allow_other mount vs a plain directory

perm_tree() { # DIR
    local d=$1
    mkdir -p "$d/d" "$d/tmp" "$d/priv"
    echo secret >"$d/secret" && chmod 0600 "$d/secret"
    echo pub >"$d/pub" && chmod 0644 "$d/pub"
    echo rf >"$d/d/rootfile" && chmod 0644 "$d/d/rootfile"
    chmod 0755 "$d" "$d/d"
    chmod 1777 "$d/tmp"
    chmod 0700 "$d/priv" && echo p >"$d/priv/p"
    echo other >"$d/tmp/other" && chown nt-trust2: "$d/tmp/other" && chmod 0666 "$d/tmp/other"
    echo s >"$d/suid" && chmod 6777 "$d/suid"
    echo s >"$d/suid2" && chmod 6777 "$d/suid2"
    echo g >"$d/sgid" && chown nt-trust2:nt-trust2 "$d/sgid" && chmod 2777 "$d/sgid"
}

tc_trust_permissions_vs_plain_dir() {
    ensure_user nt-trust
    ensure_user nt-trust2
    chmod go+x "$SCRATCH" "$T" 2>/dev/null || true
    ovl_init 1
    chmod 0755 "$T" "$L1" "$M"
    mkdir -p "$T/plain"
    perm_tree "$T/plain"
    perm_tree "$L1"
    ovl_mount
    chmod 0755 "$M"
    if [ "$IMPL" != kernel ]; then # a FUSE mount needs allow_other to be usable by others
        case $(grep " $M " /proc/self/mountinfo) in
        *allow_other*) ;;
        *) fail "union mount is not allow_other: $(grep " $M " /proc/self/mountinfo)" ;;
        esac
    fi
    local ops=(
        "open secret r" "open secret w" "open pub w" "open pub r" "truncate pub 0"
        "chmod pub 0666" "chown pub 0 0" "chown pub $(id -u nt-trust) $(id -g nt-trust)"
        "utimens pub 1 0 1 0" "setxattr pub user.x v" "unlink d/rootfile" "rename d/rootfile d/moved"
        "mkdir d/sub" "open d/new w,creat" "symlink x d/sym" "link pub d/hl" "rmdir d"
        "lstat priv/p" "open priv/p r" "unlink priv/p"
        "open tmp/mine w,creat,excl" "unlink tmp/other" "rename tmp/other tmp/stolen"
        "rename tmp/mine tmp/other" "open tmp/other w" "unlink tmp/mine" "link secret tmp/hl"
        "mkdir tmp/mydir" "rmdir tmp/mydir" "chmod tmp 0777"
        "append suid data" "write sgid data" "truncate suid2 1"
    )
    local op a b diffs=0 n=0
    for op in "${ops[@]}"; do
        # shellcheck disable=SC2086
        a=$(errno_as nt-trust "$T/plain" $op)
        # shellcheck disable=SC2086
        b=$(errno_as nt-trust "$M" $op)
        n=$((n + 1))
        if [ "$a" != "$b" ]; then
            note "DIFF: '$op' as nt-trust: plain dir $a, union mount $b"
            diffs=$((diffs + 1))
        else
            note "same: '$op' -> $a"
        fi
    done
    # setuid/setgid cleared by a write from a non-owner, like the kernel does on the plain dir
    local f pa pb
    for f in suid sgid suid2 pub secret d/rootfile tmp/other; do
        pa=$(stat -c '%a %u %g %s' "$T/plain/$f" 2>/dev/null || echo gone)
        pb=$(stat -c '%a %u %g %s' "$M/$f" 2>/dev/null || echo gone)
        [ "$pa" = "$pb" ] || { note "DIFF: after the ops, $f is '$pa' on the plain dir, '$pb' on the mount"; diffs=$((diffs + 1)); }
    done
    assert_eq "777" "$(stat -c %a "$T/plain/suid")" "reference: plain dir clears setuid on a non-owner write"
    figure "permissions: ${#ops[@]} ops as an unprivileged user compared, $diffs differences"
    [ "$diffs" = 0 ] || fail "$diffs differences between the union mount and a plain directory (see DIFF lines)"
    ovl_umount
}

# =======================================================================================
# 5. load: 8 processes, mixed ops; no errors, no fd/memory leak, clean unmount

tc_trust_load_8_workers() {
    local secs=20 pid fd0 rss0 fd1 rss1 fd2 rss2
    long && secs=120
    ovl_init 1
    # Upper and work on a filesystem of their own: every write of the load must succeed, so it must not share free
    # space with whatever else runs on the machine (a test elsewhere that fills the disk for a moment makes writes
    # to /tmp fail with ENOSPC or come up short, on kernel overlayfs too).
    tmpfs_at "$T/up" 1g
    U=$T/up/u W=$T/up/w
    mkdir -p "$U" "$W"
    python3 -c "
import sys
for k in range(64): open(sys.argv[1] + '/lf%d' % k, 'wb').write(bytes(((k*7+i)&0xff) for i in range(65536)))
" "$L1"
    mkdir -p "$L1/shared" && echo s >"$L1/shared/x3"
    local i j k
    for i in 0 1 2 3; do for j in 0 1 2 3; do
        mkdir -p "$L1/deep/a$i/b$j"
        for k in 0 1 2 3 4 5 6 7; do echo "m$k" >"$L1/deep/a$i/b$j/m$k"; done
    done; done
    ovl_mount
    if [ "$IMPL" = kernel ]; then # informative run of the load generator only
        pid=$$
    else
        pid=$(daemon_pid "$M") || fail "no daemon for $M"
    fi
    ls -R "$M" >/dev/null
    sleep 1
    fd0=$(ls /proc/"$pid"/fd | wc -l)
    rss0=$(awk '/VmRSS/{print $2}' /proc/"$pid"/status)
    local hrc=0 hseed=${HAMMER_SEED:-$RANDOM}
    timeout -k 5 $((secs + 60)) "$BUILD_DIR/hammer" "$M" 8 "$secs" "$hseed" >"$T/hammer.out" 2>"$T/hammer.err" || hrc=$?
    cat "$T/hammer.out" "$T/hammer.err" >&2
    fd1=$(ls /proc/"$pid"/fd | wc -l)
    rss1=$(awk '/VmRSS/{print $2}' /proc/"$pid"/status)
    # settle: drop the kernel's dentry/inode caches (FORGETs), wait
    sync
    echo 2 >/proc/sys/vm/drop_caches
    sleep 5
    fd2=$(ls /proc/"$pid"/fd | wc -l)
    rss2=$(awk '/VmRSS/{print $2}' /proc/"$pid"/status)
    figure "load ${secs}s: $(cat "$T/hammer.out"); daemon fds $fd0 before, $fd1 right after, $fd2 after settle; VmRSS ${rss0} kB before, ${rss1} kB after, ${rss2} kB after settle"
    [ "$hrc" = 0 ] || fail "load (seed $hseed): $(tail -n 1 "$T/hammer.err")"
    [ "$fd2" -le $((fd0 + 16)) ] || fail "fd leak: daemon had $fd0 fds before the load and $fd2 after settling"
    [ "$rss2" -le $((rss0 + 131072)) ] || fail "memory: daemon RSS grew from $rss0 kB to $rss2 kB"
    # everything still reads back after a remount
    ovl_umount
    if [ "$IMPL" != kernel ] && kill -0 "$pid" 2>/dev/null; then
        sleep 2
        kill -0 "$pid" 2>/dev/null && fail "daemon $pid still running after unmount"
    fi
    ovl_mount
    x find "$M" -type f -exec cat {} + >/dev/null
    ovl_umount
}

# An idle mount costs no CPU: the worker that polls for requests after each one (FuseSession.AwaitRequest)
# must go to sleep once the requests stop.
tc_trust_idle_daemon_sleeps() {
    ovl_init 1
    echo x >"$L1/f"
    ovl_mount
    local pid t0 t1
    pid=$(daemon_pid "$M") || fail "no daemon for $M"
    xs "cd '$M' && for i in \$(seq 300); do echo \$i >n\$i; cat f n\$i >/dev/null; rm n\$i; done"
    sleep 0.5
    t0=$(awk '{print $14 + $15}' /proc/"$pid"/stat)
    sleep 2
    t1=$(awk '{print $14 + $15}' /proc/"$pid"/stat)
    figure "idle daemon: $((t1 - t0)) clock ticks of CPU in 2 s"
    [ $((t1 - t0)) -le 2 ] || fail "the idle daemon used $((t1 - t0)) clock ticks of CPU in 2 s"
    ovl_umount
}

# A union without an upper layer copies nothing up, so its lower files are read through passthrough: data of
# an open file comes from the kernel even while the daemon is stopped (a page-cache read would wait for it).
tc_trust_readonly_union_reads_bypass_daemon() {
    ovl_init 2
    head -c 300000 /dev/urandom >"$L2/f" # (not in the topmost layer, which takes the upper's place)
    snapshot_lowers
    OVL_READONLY=1
    ovl_mount
    local pid rc=0
    pid=$(daemon_pid "$M") || fail "no daemon for $M"
    exec 3<"$M/f"
    kill -STOP "$pid"
    timeout -k 2 5 cat <&3 >"$T/f.read" || rc=$?
    kill -CONT "$pid"
    exec 3<&-
    [ "$rc" = 0 ] || fail "reading an open lower file of a read-only union with the daemon stopped: exit $rc (data not passed through)"
    cmp "$L2/f" "$T/f.read" || fail "the lower file read through passthrough differs from the layer's"
    assert_lowers_unchanged
    ovl_umount
}

# =======================================================================================
# 6. model-based random test: the same random op sequences on unionfs and on kernel
# overlayfs (the model), per-op errno and final tree compared; failures are shrunk and
# printed as JSON; MODEL_RECORD=1 appends them to model-regressions.txt (replayed first)

# The short run (make test, CI) replays the recorded regressions and one fixed seed, so it is repeatable;
# LONG=1 explores new random sequences.
model_seed() { if long; then echo $RANDOM; else echo 20261128; fi; }

tc_trust_model_vs_kernel() {
    grep -qw overlay /proc/filesystems || modprobe overlay || fail "kernel overlayfs not available"
    local seqs=40 len=120 shrink=20 maxf=2
    long && { seqs=400; len=300; shrink=120; maxf=5; }
    local record=(--no-record)
    [ "${MODEL_RECORD:-0}" = 1 ] && record=()
    CMD_TIMEOUT=$((CMD_TIMEOUT * 10)) x python3 "$NT_DIR/model.py" --unionfs "$UNIONFS" --dir "$T/model" \
        --seqs "$seqs" --len "$len" --seed "${MODEL_SEED:-$(model_seed)}" --regressions "$NT_DIR/model-regressions.txt" \
        --shrink-seconds "$shrink" --max-failures "$maxf" "${record[@]}" >&2 ||
        fail "model-based test found differences between unionfs and kernel overlayfs (shrunk sequences in the log)"
}

# races on one name that exists in a lower layer: create (O_CREAT|O_TRUNC) vs unlink vs
# rename vs stat. O_CREAT in an existing dir never fails with ENOENT/ENXIO, stat never gives
# EIO (kernel overlayfs: no errors at all)
tc_trust_race_create_unlink_lower_name() {
    local n=1500
    long && n=20000
    ovl_init 1
    mkdir -p "$L1/shared"
    echo s >"$L1/shared/x3"
    ovl_mount
    bg bash -c "cd $M/shared && for ((i = 0; i < $n; i++)); do rm -f x3 2>/dev/null; done"
    local p1=$BG
    bg bash -c "cd $M/shared && for ((i = 0; i < $n / 3; i++)); do mv x3 x4 2>/dev/null; mv x4 x3 2>/dev/null; done"
    local p2=$BG
    bg bash -c "cd $M/shared && for ((i = 0; i < $n; i++)); do stat x3 >/dev/null 2>>$T/stat.err; done"
    local p3=$BG
    x bash -c "cd $M/shared && for ((i = 0; i < $n; i++)); do : >x3; done" 2>"$T/create.err" || true
    wait "$p1" "$p2" "$p3" 2>/dev/null || true
    local cerr serr
    cerr=$(sed 's/.*: //' "$T/create.err" | sort | uniq -c | tr '\n' ';')
    serr=$(grep -v 'No such file or directory' "$T/stat.err" | sed 's/.*: //' | sort | uniq -c | tr '\n' ';' || true)
    figure "race on a lower name: $n creates vs $n unlinks vs $((2 * n / 3)) renames vs $n stats; create errors: ${cerr:-none}; stat errors: ${serr:-none}"
    [ -z "$cerr" ] || fail "open(O_CREAT) of a lower-backed name racing with unlink/rename failed: $cerr"
    [ -z "$serr" ] || fail "stat of a lower-backed name racing with create/unlink gave: $serr"
    # the mount is still consistent
    echo final >"$M/shared/x3"
    ovl_remount
    assert_content "$M/shared/x3" $'final\n'
}

# a reader of a lower file racing with the copy-up triggered by an append on the same file:
# the reader sees the old or the new data, never an error (kernel overlayfs: no errors)
tc_trust_race_read_during_copyup() {
    local n=200 k
    long && n=2000
    ovl_init 1
    for ((k = 0; k < n; k++)); do head -c 65536 /dev/zero >"$L1/f$k"; done
    ovl_mount
    x bash -c "cd $M && for ((k = 0; k < $n; k++)); do sh -c \"echo a >>f\$k\" & cat f\$k >/dev/null & head -c 100 f\$k >/dev/null & wait; done" >"$T/race.out" 2>&1 || true
    local errs
    errs=$(sed 's/^[^:]*: [^:]*: //' "$T/race.out" | sort | uniq -c | tr '\n' ';')
    figure "read during copy-up: $n files, errors: ${errs:-none}"
    [ -z "$errs" ] || fail "reading a lower file while an append copies it up failed: $errs (e.g. $(head -n 1 "$T/race.out"))"
    for ((k = 0; k < n; k++)); do
        [ "$(stat -c %s "$M/f$k")" = 65538 ] || fail "f$k has size $(stat -c %s "$M/f$k") after the append, expected 65538"
    done
}
