# shellcheck shell=bash
# Suite "posix": a plain POSIX directory tree seen through the mount.
# Every case gets S (the backing directory) mounted at M; checks go through M and, where it
# says something about the loopback, also look at S directly.
# IMPL=unionfs: `$UNIONFS loopback S M`; IMPL=bind: `mount --bind S M`.

setup_posix() {
    S=$T/src M=$T/mnt
    export S M
    mkdir -p "$S" "$M"
    # premount_<name>: optional hook that fills S before it is mounted
    if declare -F "premount_$CASE_NAME" >/dev/null; then "premount_$CASE_NAME"; fi
    posix_mount "$S" "$M"
}

# a reference tree (outside any mount) with every file type, odd modes/owners/times,
# hard links, xattrs
make_ref_tree() { # DIR
    local r=$1 i
    mkdir -p "$r/dir/sub/deeper" "$r/empty" "$r/modes"
    printf 'hello\n' >"$r/file"
    head -c 200000 /dev/urandom >"$r/dir/random.bin"
    for i in $(seq 1 30); do printf 'file %s\n' "$i" >"$r/dir/sub/f$i"; done
    printf 'deep\n' >"$r/dir/sub/deeper/leaf"
    ln -s file "$r/link"
    ln -s ../dangling/target "$r/dir/dangling"
    ln "$r/file" "$r/dir/hardlink"
    mkfifo "$r/fifo"
    truncate -s 10M "$r/sparse"
    printf 'tail' | dd of="$r/sparse" bs=1 seek=5000000 conv=notrunc status=none
    printf x >"$r/modes/m4755" && chmod 4755 "$r/modes/m4755"
    printf x >"$r/modes/m0400" && chmod 0400 "$r/modes/m0400"
    chmod 1777 "$r/modes"
    printf x >"$r/owned" && chown 1234:4321 "$r/owned"
    setfattr -n user.color -v blue "$r/file"
    setfattr -n user.empty "$r/dir"
    touch -h -d '2001-02-03 04:05:06.123456789' "$r/link" "$r/owned"
    touch -d '2002-03-04 05:06:07.987654321' "$r/dir/sub/f1" "$r/dir/sub/deeper"
}

# tree_manifest DIR: one line per object with the metadata that copies must keep
tree_manifest() {
    x find "$1" -printf '%P|%y|%m|%U|%G|%n|%s|%T@|%l\n' | LC_ALL=C sort |
        awk -F'|' '$2=="d"{$6="-";$7="-"} {print}' OFS='|'
}

xattr_manifest() { xattr_lines "$1" 'user\.'; }

assert_same_tree() { # A B
    local a b
    a=$(tree_manifest "$1") || fail "find on $1 failed"
    b=$(tree_manifest "$2") || fail "find on $2 failed"
    if [ "$a" != "$b" ]; then
        diff <(echo "$a") <(echo "$b") | head -n 10 >&2 || true
        fail "metadata of $2 differs from $1: $(diff_summary "$a" "$b" 2)"
    fi
    # (fifos are compared by the manifest; diff -r cannot compare them)
    x diff -r --no-dereference -x fifo "$1" "$2" >&2 || fail "diff -r $1 $2 reports differences"
    a=$(xattr_manifest "$1")
    b=$(xattr_manifest "$2")
    if [ "$a" != "$b" ]; then
        diff <(echo "$a") <(echo "$b") | head -n 10 >&2 || true
        fail "user.* xattrs of $2 differ from $1: $(diff_summary "$a" "$b" 2)"
    fi
}

# ---------------------------------------------------------------------------------------

tc_posix_mount_detaches() {
    # the mount is live and the daemon does not hold the mount command's stdout/stderr
    assert_mount_detached
    x ls "$M" >/dev/null
    x stat -f "$M" >/dev/null
}

tc_posix_create_read_write() {
    probe rw_basic "$M"
    # the data went to the backing directory
    assert_content "$S/f" "x"
    assert_eq $((1048576 + 333)) "$(stat -c %s "$S/big")" "size of big in the backing dir"
    # the same through shell tools
    xs 'echo hello > "$M/s"; echo world >> "$M/s"'
    assert_content "$M/s" $'hello\nworld\n'
    xs 'printf "%s" abc | dd of="$M/s" bs=1 seek=2 conv=notrunc status=none'
    assert_content "$M/s" $'heabc\nworld\n'
    xs ': > "$M/s"'
    assert_eq 0 "$(stat_of %s "$M/s")" "size after truncation by shell redirect"
    x cp "$S/big" "$M/big.copy"
    x cmp "$M/big" "$M/big.copy" || fail "cp through the mount produced a different file"
}

tc_posix_unlink_rmdir_errno() {
    probe rmerrno "$M"
    x mkdir "$M/d2"
    x touch "$M/d2/f"
    sysop "$M" ENOTEMPTY rmdir d2
    sysop "$M" EISDIR unlink d2
    sysop "$M" ENOTDIR rmdir d2/f
    sysop "$M" ENOENT unlink d2/nope
    if x rm "$M/d2/nope" 2>/dev/null; then fail "rm of a missing file succeeded"; fi
    x rm -r "$M/d2"
    assert_enoent "$M/d2"
    assert_enoent "$S/d2"
}

tc_posix_rename() {
    probe rename2 "$M"
    xs 'echo one > "$M/a"; mkdir -p "$M/x/y"'
    x mv "$M/a" "$M/x/y/b"
    assert_enoent "$M/a"
    assert_content "$M/x/y/b" $'one\n'
    x mv "$M/x" "$M/z"
    assert_content "$M/z/y/b" $'one\n'
    assert_content "$S/z/y/b" $'one\n'
    assert_enoent "$S/x"
}

tc_posix_hardlinks() {
    probe hardlink "$M"
    xs 'echo data > "$M/h1"; ln "$M/h1" "$M/h2"; ln "$M/h2" "$M/h3"'
    assert_eq 3 "$(stat_of %h "$M/h1")" "nlink of h1"
    assert_eq "$(stat_of %i "$M/h1")" "$(stat_of %i "$M/h3")" "st_ino of h1 vs h3"
    x rm "$M/h2"
    assert_eq 2 "$(stat_of %h "$M/h3")" "nlink after rm h2"
    assert_eq 2 "$(stat -c %h "$S/h1")" "nlink in backing dir"
}

tc_posix_symlinks() {
    probe symlink "$M"
    x ln -s "relative/target" "$M/sl"
    assert_eq "relative/target" "$(x readlink "$M/sl")" "readlink sl"
    assert_type "$M/sl" "symbolic link"
    assert_eq "relative/target" "$(readlink "$S/sl")" "readlink in backing dir"
}

tc_posix_fifo() {
    probe fifo "$M"
    x mkfifo -m 0600 "$M/p2"
    assert_type "$M/p2" "fifo"
    assert_eq 600 "$(stat_of %a "$M/p2")" "fifo mode"
    # data through a fifo created on the mount
    xs 'cat "$M/p2" > "$T/fifo.out" & echo through-fifo > "$M/p2"; wait'
    assert_content "$T/fifo.out" $'through-fifo\n'
}

tc_posix_mknod_chardev() {
    local opts want=dev
    opts=$(mountinfo_field "$M" opts)
    case ,$opts, in *,nodev,*) want=nodev ;; esac
    note "mount options: $opts -> expecting device nodes to be $want"
    probe chardev "$M" "$want"
    x mknod -m 0640 "$M/zero" c 1 5
    assert_eq "character special file 1 5 640" "$(stat_of '%F %t %T %a' "$M/zero")" "mknod c 1 5"
    assert_eq "character special file" "$(stat -c %F "$S/zero")" "device node in backing dir"
}

tc_posix_xattr() {
    probe xattr "$M"
    xs 'echo x > "$M/xf"'
    x setfattr -n user.k1 -v v1 "$M/xf"
    x setfattr -n user.k2 -v 0x00ff10 "$M/xf"
    assert_eq v1 "$(getxattr_of "$M/xf" user.k1)" "user.k1 via mount"
    assert_eq v1 "$(getxattr_of "$S/xf" user.k1)" "user.k1 in backing dir"
    assert_eq user.k2=0x00ff10 "$(x getfattr --absolute-names -e hex -n user.k2 "$M/xf" | grep '^user')" "binary user.k2"
    x setfattr -x user.k1 "$M/xf"
    if x getfattr -n user.k1 "$M/xf" >/dev/null 2>&1; then fail "user.k1 still readable after setfattr -x"; fi
    assert_eq "user.k2" "$(x getfattr --absolute-names -d -m - "$M/xf" | grep -o '^user\.[^=]*' | tr '\n' ' ' | sed 's/ $//')" "xattr list after removal"
}

tc_posix_truncate_fallocate() {
    probe truncfalloc "$M"
    xs 'printf 0123456789 > "$M/tr"'
    x truncate -s 4 "$M/tr"
    assert_content "$M/tr" "0123"
    x truncate -s 8 "$M/tr"
    assert_content "$M/tr" $'0123\0\0\0\0'
    x fallocate -l 2M "$M/fa2"
    assert_eq 2097152 "$(stat_of %s "$M/fa2")" "size after fallocate -l 2M"
    x fallocate -p -o 0 -l 1M "$M/fa2"
    assert_eq 2097152 "$(stat_of %s "$M/fa2")" "size after punching"
}

tc_posix_sparse_seek() {
    probe seekhole "$M"
    # the backing file is sparse too
    assert_eq 4194304 "$(stat -c %s "$S/sparse")" "backing sparse size"
    [ "$(stat -c %b "$S/sparse")" -lt 1024 ] || fail "backing file not sparse: $(stat -c %b "$S/sparse") blocks"
    x cp --sparse=always "$M/sparse" "$M/sparse.copy"
    x cmp "$M/sparse" "$M/sparse.copy" || fail "sparse copy differs"
    [ "$(stat_of %b "$M/sparse.copy")" -lt 1024 ] || fail "cp --sparse=always through mount wrote $(stat_of %b "$M/sparse.copy") blocks"
}

tc_posix_mmap() {
    probe mmapio "$M"
}

tc_posix_utimens() {
    probe utimens "$M"
    xs 'touch "$M/tt"'
    x touch -m -d '@1234567890.123456789' "$M/tt"
    assert_eq "1234567890.123456789" "$(stat_of %.9Y "$M/tt")" "mtime via touch -d"
    assert_eq "1234567890.123456789" "$(stat -c %.9Y "$S/tt")" "mtime in backing dir"
}

tc_posix_chmod_chown() {
    probe chmodown "$M"
    xs 'touch "$M/co"'
    x chmod 2711 "$M/co"
    x chown 4242:2424 "$M/co"
    # Linux clears setgid (group-executable) and setuid on chown of a regular file
    assert_eq "711 4242 2424" "$(stat_of '%a %u %g' "$M/co")" "mode/owner via mount after chown of a 2711 file"
    x chmod 6711 "$M/co"
    assert_eq "6711 4242 2424" "$(stat_of '%a %u %g' "$M/co")" "mode/owner via mount after chmod 6711"
    x chown 4243 "$M/co"
    assert_eq "711 4243 2424" "$(stat_of '%a %u %g' "$M/co")" "mode after chown of a 6711 file"
    x chown 4242:2424 "$M/co"
    x chmod 2711 "$M/co"
    assert_eq "2711 4242 2424" "$(stat_of '%a %u %g' "$M/co")" "mode/owner via mount"
    assert_eq "2711 4242 2424" "$(stat -c '%a %u %g' "$S/co")" "mode/owner in backing dir"
}

tc_posix_bigfile_5g() {
    probe bigfile "$M"
    x truncate -s 5G "$M/big5g"
    assert_eq 5368709120 "$(stat_of %s "$M/big5g")" "size of 5 GiB file"
    xs 'printf END | dd of="$M/big5g" bs=1 seek=$((5*1024*1024*1024 - 3)) conv=notrunc status=none'
    assert_eq END "$(x dd if="$M/big5g" bs=1 skip=$((5 * 1024 * 1024 * 1024 - 3)) count=3 status=none)" "last 3 bytes"
    assert_eq 5368709120 "$(stat -c %s "$S/big5g")" "size in backing dir"
}

tc_posix_bigdir_10000() {
    local n=10000
    x mkdir "$M/big"
    probe bigdir "$M/big" create $n
    assert_eq $n "$(x ls "$M/big" | wc -l)" "ls | wc -l"
    assert_eq $((n + 2)) "$(x ls -f "$M/big" | wc -l)" "ls -f | wc -l (with . and ..)"
    assert_eq $n "$(x ls "$M/big" | sort -u | wc -l)" "distinct names from ls"
    assert_eq $n "$(ls "$S/big" | wc -l)" "entries in backing dir"
    assert_eq $n "$(x find "$M/big" -type f | wc -l)" "find -type f count"
    probe bigdir "$M/big" count $n
    probe bigdir "$M/big" drain $n
    assert_eq 0 "$(x ls -A "$M/big" | wc -l)" "entries left after draining"
    sysop "$M" ok rmdir big
}

tc_posix_concurrent_writers() {
    probe concwrite "$M" 4 4000
    assert_eq 16000000 "$(stat -c %s "$S/shared")" "size in backing dir"
}

tc_posix_tmpfile() {
    probe tmpfile "$M"
    assert_content "$S/t/named" "Tmpdata"
}

tc_posix_statfs() {
    probe statfs_cmp "$M" "$S" rw
    local a b
    a=$(x df -P -k "$M" | awk 'NR==2{print $2}')
    b=$(df -P -k "$S" | awk 'NR==2{print $2}')
    assert_eq "$b" "$a" "df total size of mount vs backing fs"
    x stat -f "$M" >/dev/null
}

tc_posix_readdir_types() {
    x mkdir "$M/rt" "$M/rt/dir"
    xs 'echo > "$M/rt/file"; ln -s file "$M/rt/link"; mkfifo "$M/rt/fifo"; mknod "$M/rt/chr" c 1 3'
    local got
    got=$(probe lsdir "$M" rt --check-ino | LC_ALL=C sort | tr '\n' ',')
    assert_eq "c chr,d .,d ..,d dir,f file,l link,p fifo," "$got" "readdir names and d_type"
}

tc_posix_cp_a_tree() {
    make_ref_tree "$T/ref"
    x cp -a "$T/ref" "$M/copy"
    assert_same_tree "$T/ref" "$M/copy"
    assert_same_tree "$T/ref" "$S/copy"
    # and back out of the mount
    x cp -a "$M/copy" "$T/back"
    assert_same_tree "$T/ref" "$T/back"
    [ "$(stat_of %b "$M/copy/sparse")" -lt 1024 ] || fail "cp -a did not keep sparse file sparse through mount"
}

tc_posix_tar_roundtrip() {
    make_ref_tree "$T/ref"
    x mkdir "$M/x" "$T/back"
    x tar --xattrs --xattrs-include='user.*' -C "$T/ref" -cf - . |
        x tar --xattrs --xattrs-include='user.*' --same-owner -C "$M/x" -xpf -
    assert_same_tree "$T/ref" "$M/x"
    x tar --xattrs --xattrs-include='user.*' -C "$M/x" -cf - . |
        x tar --xattrs --xattrs-include='user.*' --same-owner -C "$T/back" -xpf -
    assert_same_tree "$T/ref" "$T/back"
}

premount_find_count() { # an existing tree in the source, before mounting
    local d f
    for d in $(seq 1 30); do
        mkdir -p "$S/t/d$d/sub"
        for f in $(seq 1 20); do echo "$d $f" >"$S/t/d$d/f$f"; done
        ln -s f1 "$S/t/d$d/sub/l"
    done
}

tc_posix_find_count() {
    assert_eq 600 "$(x find "$M/t" -type f | wc -l)" "find -type f through mount"
    assert_eq 61 "$(x find "$M/t" -type d | wc -l)" "find -type d through mount"
    local a b
    a=$(x find "$M/t" -printf '%y %P %s\n' | LC_ALL=C sort)
    b=$(find "$S/t" -printf '%y %P %s\n' | LC_ALL=C sort)
    [ "$a" == "$b" ] || fail "find listing through mount differs from backing dir"
    assert_eq "$(find "$S" | wc -l)" "$(x find "$M" | wc -l)" "total find count"
}
