#!/usr/bin/env bash
# End-to-end tests of the image/container engine through the real `unionfs` binary: the CLI verbs,
# both storage drivers, interoperability with skopeo (docker-archive and OCI layouts both ways, digests
# compared), two processes writing one store, a SIGKILLed import, and error reporting.
# Usage: UNIONFS=bin/unionfs scripts/test-engine.sh    (root; prints "N passed, N failed")
set -uo pipefail
cd "$(dirname "$0")/.."
UNIONFS=$(realpath "${UNIONFS:-bin/unionfs}")
[ -x "$UNIONFS" ] || { echo "test-engine: $UNIONFS not built (make publish)" >&2; exit 1; }
[ -x "$(dirname "$UNIONFS")/unionfs-engine" ] || { echo "test-engine: $(dirname "$UNIONFS")/unionfs-engine not built (make publish)" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "test-engine: needs root" >&2; exit 1; }

T=$(mktemp -d /var/tmp/unionfs-engine-test.XXXXXX)
export UNIONFS_ROOT=$T/store UNIONFS_PROGRESS=plain
cleanup() {
  grep -o " $T/[^ ]*" /proc/self/mountinfo 2>/dev/null | sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
  rm -rf "$T"
}
trap cleanup EXIT

pass=0 fail=0
ok()   { pass=$((pass + 1)); echo "ok   $*"; }
bad()  { fail=$((fail + 1)); echo "FAIL $*"; }
check() { local name=$1; shift; if "$@" >"$T/out" 2>&1; then ok "$name"; else bad "$name"; sed 's/^/     /' "$T/out" | tail -15; fi; }
u() { "$UNIONFS" "$@"; }

rootfs=$T/rootfs
mkdir -p "$rootfs"/{bin,etc,tmp}
cp /bin/busybox "$rootfs/bin/busybox"
for a in sh ls cat echo; do ln -s busybox "$rootfs/bin/$a"; done
echo root:x:0:0::/root:/bin/sh > "$rootfs/etc/passwd"
echo box > "$rootfs/etc/hostname"

# ---- images and containers, per storage driver ----
drivers=(overlay)
mkdir -p "$T/p/"{l,u,w,m}
# The fuse driver is the default: a machine where it cannot mount fails here, loudly, and the overlay driver's
# tests still run.
if u mount -o "lowerdir=$T/p/l,upperdir=$T/p/u,workdir=$T/p/w" "$T/p/m" 2>"$T/p/err"; then u umount "$T/p/m"; drivers+=(fuse)
else bad "fuse driver: unionfs mount failed, its tests cannot run: $(head -1 "$T/p/err")"; fi

for d in "${drivers[@]}"; do
  export UNIONFS_STORAGE_DRIVER=$d UNIONFS_ROOT=$T/store-$d
  check "$d: import" u image import "$rootfs" busybox
  check "$d: create" u container create busybox --name b
  check "$d: mount" sh -c "m=\$($UNIONFS container mount b) && echo 'Hello world' > \$m/tmp/newfile"
  check "$d: diff shows the addition" sh -c "$UNIONFS container diff b | grep -qx 'A /tmp/newfile'"
  check "$d: commit" u container commit b hello --message 'add /tmp/newfile'
  check "$d: history shares the base layer" sh -c "
    base=\$($UNIONFS image history busybox --json | grep -o '\"DiffID\": \"[^\"]*' | tail -1)
    top=\$($UNIONFS image history hello --json | grep -o '\"DiffID\": \"[^\"]*' | tail -1)
    [ -n \"\$base\" ] && [ \"\$base\" = \"\$top\" ] && [ \$($UNIONFS image history hello --json | grep -c DiffID) = 2 ]"
  check "$d: two containers see their own changes" sh -c "
    $UNIONFS container create hello --name x >/dev/null && $UNIONFS container create hello --name y >/dev/null &&
    mx=\$($UNIONFS container mount x) && my=\$($UNIONFS container mount y) &&
    echo mine > \$mx/tmp/x && [ ! -e \$my/tmp/x ] && [ \"\$(cat \$my/tmp/newfile)\" = 'Hello world' ] &&
    chroot \$mx /bin/sh -c 'cat /tmp/x' | grep -qx mine"
  check "$d: rm unmounts and deletes only the container" sh -c "
    m=\$($UNIONFS container mount x) && $UNIONFS container rm x y >/dev/null && ! grep -q \" \$m \" /proc/self/mountinfo &&
    [ \$($UNIONFS image ls -q | wc -l) = 2 ]"
  check "$d: image rm refused while used" sh -c "! $UNIONFS image rm busybox 2>\$0.err && grep -q 'used by container' \$0.err" "$T/rm"
  check "$d: a renamed lower directory commits with its full content" sh -c "
    $UNIONFS container create busybox --name mv >/dev/null && m=\$($UNIONFS container mount mv) && mv \$m/etc \$m/etc2 &&
    $UNIONFS container commit mv moved >/dev/null && $UNIONFS container rm mv >/dev/null &&
    $UNIONFS container create moved --name chk >/dev/null && c=\$($UNIONFS container mount chk) &&
    [ \"\$(cat \$c/etc2/hostname)\" = box ] && [ ! -e \$c/etc ] && $UNIONFS container rm chk >/dev/null && $UNIONFS image rm moved >/dev/null"
  check "$d: a chmod/chown of a lower file commits with its data" sh -c "
    $UNIONFS container create busybox --name cm >/dev/null && m=\$($UNIONFS container mount cm) &&
    chmod 600 \$m/etc/hostname && chown 7:7 \$m/etc/passwd &&
    $UNIONFS container commit cm chmodded >/dev/null && $UNIONFS container rm cm >/dev/null &&
    $UNIONFS container create chmodded --name chk >/dev/null && c=\$($UNIONFS container mount chk) &&
    [ \"\$(cat \$c/etc/hostname)\" = box ] && [ \$(stat -c %a \$c/etc/hostname) = 600 ] &&
    grep -q root:x \$c/etc/passwd && [ \$(stat -c %u \$c/etc/passwd) = 7 ] &&
    $UNIONFS container rm chk >/dev/null && $UNIONFS image rm chmodded >/dev/null"
  check "$d: export flattens" sh -c "$UNIONFS container export b -o $T/flat-$d.tar && tar tf $T/flat-$d.tar | grep -qx tmp/newfile"
  check "$d: cleanup" sh -c "$UNIONFS container rm b >/dev/null && $UNIONFS image rm hello busybox >/dev/null && [ -z \"\$($UNIONFS image ls -q)\" ] && [ -z \"\$(ls $UNIONFS_ROOT/layers)\" ]"
done
export UNIONFS_STORAGE_DRIVER=overlay UNIONFS_ROOT=$T/store

# ---- skopeo interoperability ----
u image import "$rootfs" busybox >/dev/null
u container create busybox --name c >/dev/null
sh -c "echo hi > \$($UNIONFS container mount c)/tmp/f"
u container commit c app:v1 >/dev/null
if command -v skopeo >/dev/null; then
  u image save app:v1 -o "$T/app.tar"
  check "skopeo inspect docker-archive (config digest matches)" sh -c "
    skopeo inspect --config docker-archive:$T/app.tar | grep -q diff_ids &&
    [ \"\$(skopeo inspect --raw docker-archive:$T/app.tar | grep -o 'sha256:[0-9a-f]*' | head -1)\" = \"\$($UNIONFS image inspect app:v1 | grep -o '\"Id\": \"[^\"]*' | cut -d'\"' -f4)\" ]"
  check "skopeo copy docker-archive -> oci" skopeo copy -q "docker-archive:$T/app.tar" "oci:$T/sk-oci:v1"
  u image save app:v1 -o "$T/ours-oci/"
  check "skopeo inspect our OCI layout" skopeo inspect "oci:$T/ours-oci:v1"
  u image save app:v1 --format oci-archive -o "$T/ours-oci.tar"
  check "skopeo inspect our oci-archive" skopeo inspect "oci-archive:$T/ours-oci.tar:v1"
  check "skopeo layers = our diffIDs" sh -c "
    [ \"\$(skopeo inspect --format '{{range .Layers}}{{println .}}{{end}}' docker-archive:$T/app.tar | grep . | sort -u)\" = \"\$($UNIONFS image inspect app:v1 | grep -o '\"DiffID\": \"sha256:[0-9a-f]*' | cut -d'\"' -f4 | sort -u)\" ]"
  skopeo copy -q "oci:$T/sk-oci:v1" "docker-archive:$T/sk.tar:sk/app:v2"
  skopeo copy -q --dest-compress-format zstd "oci:$T/sk-oci:v1" "oci-archive:$T/skz.tar:v3"
  for src in "$T/sk-oci" "$T/sk.tar" "$T/skz.tar"; do
    check "load skopeo output $(basename "$src") into an empty store" sh -c "
      UNIONFS_ROOT=$T/s-\$(basename $src) $UNIONFS image load $src | grep -q 'Loaded image' &&
      UNIONFS_ROOT=$T/s-\$(basename $src) $UNIONFS system fsck"
  done
  check "load reports existing layers" sh -c "$UNIONFS image load $T/sk.tar | grep -c 'already exists' | grep -qx 2"
  check "same image id after a skopeo round trip" sh -c "
    a=\$($UNIONFS image inspect app:v1 | grep -m1 -o 'sha256:[0-9a-f]*'); b=\$($UNIONFS image inspect sk/app:v2 | grep -m1 -o 'sha256:[0-9a-f]*')
    echo \"app:v1=\$a sk/app:v2=\$b\"; [ -n \"\$a\" ] && [ \"\$a\" = \"\$b\" ]"
else
  bad "skopeo checks cannot run: skopeo is not installed (scripts/install-deps.sh installs it)"
fi
check "load from stdin" sh -c "$UNIONFS image save app:v1 -o - | UNIONFS_ROOT=$T/stdin $UNIONFS image load - | grep -q 'Loaded image: app:v1'"

# ---- concurrency and crashes ----
check "two processes load into one store" sh -c "
  (UNIONFS_ROOT=$T/conc $UNIONFS image load $T/app.tar >/dev/null & UNIONFS_ROOT=$T/conc $UNIONFS image load $T/app.tar >/dev/null; wait) &&
  [ \$(UNIONFS_ROOT=$T/conc $UNIONFS system df --json | grep -c '\"DiffID\"') = 2 ] && UNIONFS_ROOT=$T/conc $UNIONFS system fsck"
mkdir -p "$T/big"; for i in $(seq 1 40); do head -c 4000000 /dev/urandom > "$T/big/f$i"; done
check "SIGKILL during import leaves nothing registered" sh -c "
  UNIONFS_ROOT=$T/crash $UNIONFS image import $T/big big >/dev/null 2>&1 & pid=\$!; sleep 0.3; kill -9 \$pid; wait \$pid
  ls -a $T/crash/layers $T/crash/tmp $T/crash/blobs/sha256 | grep -q '^\.tmp-' || echo '(import finished before the kill)'
  UNIONFS_ROOT=$T/crash $UNIONFS image ls -q | grep -q . && exit 1
  UNIONFS_ROOT=$T/crash $UNIONFS system gc >/dev/null && [ -z \"\$(find $T/crash/layers $T/crash/tmp $T/crash/blobs/sha256 -mindepth 1)\" ]"

# ---- errors ----
check "missing file: one line naming it, exit 1" sh -c "! $UNIONFS image load $T/nothere.tar 2>$T/err && [ \$(wc -l < $T/err) = 1 ] && grep -q '$T/nothere.tar' $T/err"
check "hostile tarball refused" sh -c "
  python3 -c 'import tarfile,io,sys; t=tarfile.open(fileobj=sys.stdout.buffer,mode=\"w|\"); i=tarfile.TarInfo(\"../evil\"); i.size=1; t.addfile(i,io.BytesIO(b\"x\")); t.close()' > $T/evil.tar &&
  ! $UNIONFS image import $T/evil.tar evil 2>$T/err && grep -q \"'..' escapes the layer\" $T/err && ! $UNIONFS image ls | grep -q evil"
check "save to an unwritable place leaves nothing" sh -c "! $UNIONFS image save app:v1 -o /proc/nope.tar 2>/dev/null && ! ls /proc/nope.tar* 2>/dev/null"
check "engine verbs without the engine beside unionfs: one line naming it, exit 1" sh -c "
  mkdir -p $T/alone && cp $UNIONFS $T/alone/unionfs && $T/alone/unionfs image ls 2>$T/err; [ \$? = 1 ] &&
  [ \$(wc -l < $T/err) = 1 ] && grep -q '$T/alone/unionfs-engine: no such file' $T/err"
check "migrate a legacy layout" sh -c "
  mkdir -p $T/legacy/aaa/layer/etc $T/legacy/bbb/layer/etc && echo x > $T/legacy/aaa/layer/etc/x && touch $T/legacy/bbb/layer/etc/.wh.x &&
  echo aaa > $T/legacy/bbb/parent && $UNIONFS system migrate $T/legacy | grep -q 'MB/s' && $UNIONFS image ls | grep -q migrated-bbb"

echo
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
