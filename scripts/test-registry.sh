#!/usr/bin/env bash
# End-to-end tests of `unionfs pull` / `unionfs push` against a real registry (the CNCF distribution
# server, `registry` / Debian's `docker-registry`, filesystem storage, loopback only):
# push from one store root and pull into an empty one, mount a container from it and read the files;
# re-push / re-pull move nothing; skopeo interoperability both ways (docker-archive, OCI multi-arch
# index, zstd and plain layers) with digests compared; chunked upload; cross-repository mount; faults:
# the registry killed mid-pull (then the pull resumes), a blob corrupted on the registry's disk, a
# manifest pointing at a deleted blob. After each fault: a clear error, `system fsck` clean, no image.
# Usage: UNIONFS=bin/unionfs scripts/test-registry.sh     (root; prints "N passed, N failed")
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
UNIONFS=$(realpath "${UNIONFS:-bin/unionfs}")
[ -x "$UNIONFS" ] || { echo "test-registry: $UNIONFS not built (make publish)" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "test-registry: needs root" >&2; exit 1; }
REGISTRY_BIN=$(command -v registry || command -v docker-registry) || { echo "test-registry: no registry binary (apt-get install docker-registry)" >&2; exit 1; }
command -v skopeo >/dev/null || { echo "test-registry: skopeo missing" >&2; exit 1; }

T=$(mktemp -d /var/tmp/unionfs-registry-test.XXXXXX)
export UNIONFS_PROGRESS=plain
unset UNIONFS_ROOT
REG_PID="" AUTH_PID="" BEARER_PID="" TOKEN_PID=""

stop_registry() {
  if [ -n "$REG_PID" ]; then kill "$REG_PID" 2>/dev/null; { wait "$REG_PID"; } 2>/dev/null; REG_PID=; fi
}
cleanup() {
  stop_registry
  for p in $AUTH_PID $BEARER_PID $TOKEN_PID; do kill "$p" 2>/dev/null; { wait "$p"; } 2>/dev/null; done
  grep -o " $T/[^ ]*" /proc/self/mountinfo 2>/dev/null | sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
  rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pass=0 fail=0
ok()  { pass=$((pass + 1)); echo "ok - $1"; }
note() { grep -m1 '^unionfs: ' "$1" | sed 's/^/#   /'; }
bad() { fail=$((fail + 1)); echo "FAIL - $1: $2"; [ -s "$T/out" ] && sed 's/^/    /' "$T/out" | tail -8; }
# check NAME CMD...: ok if CMD succeeds; output in $T/out.
check() { local name=$1; shift; if "$@" >"$T/out" 2>&1; then ok "$name"; else bad "$name" "command failed: $*"; fi; }
u() { "$UNIONFS" "$@"; }

# ---- the registry ----
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# Ports are picked below the kernel's ephemeral range (32768 and up), so an outgoing connection cannot take
# one between the check and the server's bind.
PORT=
for p in $(shuf -i 20000-32000 -n 50); do if port_free "$p"; then PORT=$p; break; fi; done
[ -n "$PORT" ] || { echo "test-registry: no free port" >&2; exit 1; }
REG=127.0.0.1:$PORT
STORAGE=$T/registry
cat >"$T/registry.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $STORAGE
  delete:
    enabled: true
  cache:
    blobdescriptor: ""
http:
  addr: $REG
EOF
start_registry() {
  "$REGISTRY_BIN" serve "$T/registry.yml" >>"$T/registry.log" 2>&1 &
  REG_PID=$!
  for _ in $(seq 100); do
    if ! port_free "$PORT"; then return 0; fi
    kill -0 "$REG_PID" 2>/dev/null || break
    sleep 0.05
  done
  echo "test-registry: registry did not start:" >&2; cat "$T/registry.log" >&2; exit 1
}
start_registry

fault_after() { # NAME ROOT: store consistent, no image left
  check "$1: fsck clean" u system fsck --root "$2"
  check "$1: no image or tag left" sh -c "[ -z \"\$($UNIONFS image ls -q --root $2)\" ]"
}

# ---- content ----
# A root filesystem (busybox so a chroot works), imported into root A as one layer.
rootfs=$T/rootfs
mkdir -p "$rootfs"/{bin,etc,data/sub}
cp /bin/busybox "$rootfs/bin/busybox"
for a in sh ls cat; do ln -s busybox "$rootfs/bin/$a"; done
echo box > "$rootfs/etc/hostname"
head -c 3000000 /dev/urandom > "$rootfs/data/random.bin"
echo "nested" > "$rootfs/data/sub/file.txt"
ln -s ../etc/hostname "$rootfs/data/link"

# A hand-made OCI layout: a multi-arch index (linux/amd64 + linux/arm64) over three layers:
# gzip, zstd, and a large uncompressed one (for the kill-mid-pull test).
tarit() { tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$1" -cf "$2" .; }
sha() { sha256sum "$1" | cut -d' ' -f1; }
size() { stat -c %s "$1"; }
OCI=$T/multi-oci
mkdir -p "$OCI/blobs/sha256" "$T/l1" "$T/l2/z" "$T/l3/big"
echo '{"imageLayoutVersion":"1.0.0"}' > "$OCI/oci-layout"
echo "gzip layer" > "$T/l1/one.txt"; mkdir -p "$T/l1/etc"; echo multi > "$T/l1/etc/hostname"
echo "zstd layer" > "$T/l2/z/two.txt"; head -c 200000 /dev/urandom > "$T/l2/z/r.bin"
head -c 100000000 /dev/urandom > "$T/l3/big/large.bin"
tarit "$T/l1" "$T/l1.tar"; tarit "$T/l2" "$T/l2.tar"; tarit "$T/l3" "$T/l3.tar"
gzip -n -c "$T/l1.tar" > "$T/l1.tgz"; zstd -q -c "$T/l2.tar" > "$T/l2.tzst"
addblob() { local d; d=$(sha "$1"); cp "$1" "$OCI/blobs/sha256/$d"; echo "$d"; }
L1=$(addblob "$T/l1.tgz"); L2=$(addblob "$T/l2.tzst"); L3=$(addblob "$T/l3.tar")
D1=$(sha "$T/l1.tar"); D2=$(sha "$T/l2.tar"); D3=$L3  # a plain layer's blob is its tar
layers_json="[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:$L1\",\"size\":$(size "$T/l1.tgz")},
 {\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+zstd\",\"digest\":\"sha256:$L2\",\"size\":$(size "$T/l2.tzst")},
 {\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"sha256:$L3\",\"size\":$(size "$T/l3.tar")}]"
mkimage() { # ARCH -> prints "MANIFEST_DIGEST MANIFEST_SIZE CONFIG_DIGEST"
  printf '{"architecture":"%s","os":"linux","config":{"Env":["PATH=/bin"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s","sha256:%s","sha256:%s"]},"history":[{"created_by":"l1"},{"created_by":"l2"},{"created_by":"l3"}]}' \
    "$1" "$D1" "$D2" "$D3" > "$T/config-$1.json"
  local c; c=$(addblob "$T/config-$1.json")
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":%s}' \
    "$c" "$(size "$T/config-$1.json")" "$layers_json" > "$T/manifest-$1.json"
  echo "$(addblob "$T/manifest-$1.json") $(size "$T/manifest-$1.json") $c"
}
read -r M_AMD S_AMD C_AMD < <(mkimage amd64)
read -r M_ARM S_ARM C_ARM < <(mkimage arm64)
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"platform":{"architecture":"arm64","os":"linux","variant":"v8"}},{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"platform":{"architecture":"amd64","os":"linux"}}]}' \
  "$M_ARM" "$S_ARM" "$M_AMD" "$S_AMD" > "$T/index.json"
IDX=$(addblob "$T/index.json")
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"multi"}}]}' \
  "$IDX" "$(size "$T/index.json")" > "$OCI/index.json"

A=$T/A B=$T/B C=$T/C K=$T/K D=$T/D E=$T/E F=$T/F
u image import "$rootfs" app:1 --root "$A" >"$T/app.id" 2>/dev/null || { echo "test-registry: import failed" >&2; exit 1; }
APP_ID=$(cat "$T/app.id")

# ---- push from A, pull into an empty B, mount and read ----
check "push to a fresh repository" u push app:1 "$REG/test/app:1" --root "$A"
PUSHED=$(grep -o 'digest: sha256:[0-9a-f]*' "$T/out" | cut -d' ' -f2)
grep -q ': pushed' "$T/out" || bad "push uploads the blobs" "no 'pushed' line"

check "pull into an empty root" u pull "$REG/test/app:1" --root "$B"
if [ "$(tail -1 "$T/out")" = "$APP_ID" ] && u image ls --root "$B" | grep -q "$REG/test/app *1"; then ok "pulled image has the pushed id and tag"
else bad "pulled image has the pushed id and tag" "expected $APP_ID"; fi

driver=fuse
mountcheck() { # ROOT IMAGE FILE... : create+mount a container, compare files with $rootfs or layer sources, umount
  local root=$1 image=$2 id m; shift 2
  id=$(u container create "$image" --root "$root" --storage-driver "$driver") || return 1
  m=$(u container mount "$id" --root "$root" --storage-driver "$driver") || { u container rm "$id" --root "$root" >/dev/null 2>&1; return 1; }
  local rc=0
  for pair in "$@"; do cmp "${pair%%=*}" "$m/${pair#*=}" || rc=1; done
  u container umount "$id" --root "$root" --storage-driver "$driver" || rc=1
  u container rm "$id" --root "$root" --storage-driver "$driver" >/dev/null || rc=1
  return $rc
}
app_files=("$rootfs/etc/hostname=etc/hostname" "$rootfs/data/random.bin=data/random.bin" "$rootfs/data/sub/file.txt=data/sub/file.txt"
           "$rootfs/bin/busybox=bin/busybox" "$rootfs/etc/hostname=data/link")
if mountcheck "$B" "$REG/test/app:1" "${app_files[@]}" >"$T/out" 2>&1; then ok "container from the pulled image (fuse) reads the same files"
else
  bad "container from the pulled image (fuse) reads the same files" "FUSE driver misbehaved; retrying with --storage-driver overlay"
  driver=overlay
  check "container from the pulled image (overlay) reads the same files" mountcheck "$B" "$REG/test/app:1" "${app_files[@]}"
fi

# ---- nothing moves twice ----
check "second push skips every blob" u push app:1 "$REG/test/app:1" --root "$A"
if grep -q ': pushed' "$T/out" || [ "$(grep -c 'already exists' "$T/out")" -ne 2 ]; then bad "second push uploads nothing" "$(tr '\n' ' ' < "$T/out")"; else ok "second push uploads nothing"; fi
check "second pull" u pull "$REG/test/app:1" --root "$B"
if grep -q 'Layer .*: already exists' "$T/out" && grep -q 'Image is up to date' "$T/out" && ! grep -q 'pull complete' "$T/out"; then ok "second pull downloads no layer"
else bad "second pull downloads no layer" "$(tr '\n' ' ' < "$T/out")"; fi

# ---- skopeo reads what we pushed ----
check "skopeo inspect sees our manifest digest" sh -c "skopeo inspect --tls-verify=false docker://$REG/test/app:1 | grep -q '\"Digest\": \"$PUSHED\"'"
check "skopeo inspect --config: config digest is the image id" sh -c "
  [ \"sha256:\$(skopeo inspect --tls-verify=false --config --raw docker://$REG/test/app:1 | sha256sum | cut -d' ' -f1)\" = $APP_ID ]"
check "skopeo copy back out to oci: keeps the manifest digest" sh -c "
  skopeo copy -q --preserve-digests --dest-oci-accept-uncompressed-layers --src-tls-verify=false docker://$REG/test/app:1 oci:$T/back:app &&
  grep -q '\"digest\":\"$PUSHED\"' $T/back/index.json"
check "skopeo's copy has the layer blobs we store" sh -c "
  for l in \$(skopeo inspect --tls-verify=false docker://$REG/test/app:1 | grep -o 'sha256:[0-9a-f]\{64\}' | sort -u); do
    [ \$l = $PUSHED ] && continue
    [ -f $T/back/blobs/sha256/\${l#sha256:} ] || exit 1; [ -f $A/blobs/sha256/\${l#sha256:} ] || exit 1
  done"

# ---- skopeo pushes, we pull (Docker schema 2 from a docker-archive; OCI index with zstd) ----
u image save app:1 -o "$T/app-archive.tar" --root "$A" 2>/dev/null
check "skopeo copy docker-archive to the registry" skopeo copy -q --dest-tls-verify=false "docker-archive:$T/app-archive.tar" "docker://$REG/sk/app:2"
check "pull the skopeo-pushed Docker schema 2 image into an empty root" u pull "$REG/sk/app:2" --root "$C"
check "its image id is the original one" test "$(tail -1 "$T/out")" = "$APP_ID"
check "re-pushing a pulled image keeps its manifest digest (Docker schema 2)" sh -c "
  $UNIONFS push $REG/sk/app:2 $REG/sk/copy:2 --root $C >/dev/null &&
  a=\$(skopeo inspect --tls-verify=false docker://$REG/sk/app:2 | grep '\"Digest\"') && [ -n \"\$a\" ] &&
  [ \"\$a\" = \"\$(skopeo inspect --tls-verify=false docker://$REG/sk/copy:2 | grep '\"Digest\"')\" ] &&
  skopeo inspect --tls-verify=false --raw docker://$REG/sk/copy:2 | grep -q 'application/vnd.docker.distribution.manifest.v2+json'"
check "skopeo copy --all an OCI multi-arch index (gzip, zstd, plain layers)" \
  skopeo copy -q --all --preserve-digests --dest-tls-verify=false "oci:$OCI:multi" "docker://$REG/multi:1"

# ---- the registry dies mid-pull; the next pull resumes ----
u pull "$REG/multi:1" --root "$K" >"$T/kill.out" 2>&1 &
PULL_PID=$!
killed=no
for _ in $(seq 2000); do
  # the two small blobs verified and registered, the large one under way
  if [ -f "$K/blobs/sha256/$L1" ] && [ -f "$K/blobs/sha256/$L2" ] &&
     find "$K/blobs/sha256" -maxdepth 1 -name '.tmp-*' -size +2M 2>/dev/null | grep -q .; then
    disown "$REG_PID"; kill -9 "$REG_PID"; killed=yes; break
  fi
  kill -0 "$PULL_PID" 2>/dev/null || break
  sleep 0.01
done
if [ $killed = yes ]; then
  for _ in $(seq 100); do kill -0 "$REG_PID" 2>/dev/null || break; sleep 0.05; done  # disowned: bash reaps it
  REG_PID=""
fi
wait "$PULL_PID"; rc=$?
cp "$T/kill.out" "$T/out"; note "$T/out"
if [ $killed = yes ] && [ $rc -ne 0 ] && grep -q 'unionfs: .*interrupted' "$T/kill.out"; then ok "registry killed mid-pull: clear error"
else bad "registry killed mid-pull: clear error" "killed=$killed rc=$rc"; fi
check "after the kill: fsck clean" u system fsck --root "$K"
check "after the kill: no image, no tag" sh -c "[ -z \"\$($UNIONFS image ls -q --root $K)\" ] && ! ls $K/blobs/sha256/.tmp-* 2>/dev/null"
[ -n "$REG_PID" ] || start_registry
check "pull after the restart resumes" u pull "$REG/multi:1" --root "$K"
if grep -q 'blob already downloaded' "$T/out" && [ "$(grep -c '^Downloading.*verified' "$T/out")" -lt 3 ]; then ok "resumed pull does not download finished blobs again"
else bad "resumed pull does not download finished blobs again" "$(tr '\n' ' ' < "$T/out")"; fi
check "index: linux/amd64 chosen (image id is its config)" test "$(tail -1 "$T/out")" = "sha256:$C_AMD"
check "zstd, gzip and plain layers read back through a container" mountcheck "$K" "$REG/multi:1" \
  "$T/l1/one.txt=one.txt" "$T/l2/z/two.txt=z/two.txt" "$T/l2/z/r.bin=z/r.bin" "$T/l3/big/large.bin=big/large.bin"
check "pull by digest" sh -c "$UNIONFS pull $REG/multi@sha256:$M_AMD --root $K | grep -q 'Image is up to date'"
check "pull --platform linux/arm64 picks the arm64 manifest" sh -c "
  $UNIONFS pull $REG/multi:1 --platform linux/arm64 --root $K 2>/dev/null > $T/arm.out && grep -q 'Manifest: linux/arm64/v8 sha256:$M_ARM' $T/arm.out &&
  [ \"\$(tail -1 $T/arm.out)\" = sha256:$C_ARM ]"

# ---- two pulls of the same image into one root at once ----
Q=$T/Q
u pull "$REG/multi:1" --root "$Q" >"$T/q1.out" 2>&1 & q1=$!
u pull "$REG/multi:1" --root "$Q" --parallel 1 >"$T/q2.out" 2>&1 & q2=$!
wait "$q1"; r1=$?; wait "$q2"; r2=$?
cat "$T/q1.out" "$T/q2.out" > "$T/out"
check "two concurrent pulls into one root both succeed" test "$r1$r2" = 00
check "two concurrent pulls: one image, fsck clean" sh -c "[ \$($UNIONFS image ls -q --root $Q | wc -l) = 1 ] && $UNIONFS system fsck --root $Q"

# ---- the registry stalls mid-pull (SIGSTOP): the idle timeout gives up ----
S=$T/S
UNIONFS_REGISTRY_IDLE_TIMEOUT=2 "$UNIONFS" pull "$REG/multi:1" --root "$S" >"$T/stall.out" 2>&1 &
PULL_PID=$!
stopped=no
for _ in $(seq 2000); do
  if [ -f "$S/blobs/sha256/$L1" ] && [ -f "$S/blobs/sha256/$L2" ] &&
     find "$S/blobs/sha256" -maxdepth 1 -name '.tmp-*' -size +2M 2>/dev/null | grep -q .; then kill -STOP "$REG_PID"; stopped=yes; break; fi
  kill -0 "$PULL_PID" 2>/dev/null || break
  sleep 0.01
done
wait "$PULL_PID"; rc=$?
kill -CONT "$REG_PID"
cp "$T/stall.out" "$T/out"; note "$T/out"
if [ $stopped = yes ] && [ $rc -ne 0 ] && grep -qE 'unionfs: .*(stalled|no answer within)' "$T/out"; then ok "registry stalls mid-pull: gives up with a clear error"
else bad "registry stalls mid-pull: gives up with a clear error" "stopped=$stopped rc=$rc"; fi
fault_after "stalled pull" "$S"

# ---- a registry that accepts connections but never answers; one that stops taking an upload ----
kill -STOP "$REG_PID"
UNIONFS_REGISTRY_IDLE_TIMEOUT=1 "$UNIONFS" pull "$REG/multi:1" --root "$S" >"$T/out" 2>&1; rc=$?
kill -CONT "$REG_PID"
note "$T/out"
if [ $rc -ne 0 ] && grep -q "unionfs: registry $REG: cannot connect: no answer from http://$REG/ within 1s" "$T/out"; then ok "registry that never answers: timeout with a clear error"
else bad "registry that never answers: timeout with a clear error" "rc=$rc"; fi
mkdir -p "$T/rootfs4/data"; head -c 60000000 /dev/urandom > "$T/rootfs4/data/big.bin"
u image import "$T/rootfs4" stallpush:1 --root "$D" >/dev/null 2>&1
UNIONFS_REGISTRY_IDLE_TIMEOUT=2 "$UNIONFS" push stallpush:1 "$REG/stallpush:1" --root "$D" >"$T/out" 2>&1 &
PUSH_PID=$!
stopped=no
for _ in $(seq 2000); do
  if find "$STORAGE/docker/registry/v2/repositories/stallpush/_uploads" -name data -size +2M 2>/dev/null | grep -q .; then
    kill -STOP "$REG_PID"; stopped=yes; break; fi
  kill -0 "$PUSH_PID" 2>/dev/null || break
  sleep 0.01
done
wait "$PUSH_PID"; rc=$?
kill -CONT "$REG_PID"
note "$T/out"
if [ $stopped = yes ] && [ $rc -ne 0 ] && grep -qE 'unionfs: .*upload of blob .* (stalled|no answer within)' "$T/out"; then ok "registry stops taking an upload: the push gives up with a clear error"
else bad "registry stops taking an upload: the push gives up with a clear error" "stopped=$stopped rc=$rc"; fi
check "after the stalled push: no tag on the registry, the next push completes" sh -c "
  ! skopeo inspect --tls-verify=false docker://$REG/stallpush:1 >/dev/null 2>&1 &&
  $UNIONFS push stallpush:1 $REG/stallpush:1 --root $D >/dev/null && skopeo inspect --tls-verify=false docker://$REG/stallpush:1 >/dev/null"

# ---- unionfs itself SIGKILLed mid-pull: the store stays consistent, the next pull completes ----
P=$T/P
"$UNIONFS" pull "$REG/multi:1" --root "$P" >/dev/null 2>&1 &
PULL_PID=$!
shot=no
for _ in $(seq 2000); do
  if find "$P/blobs/sha256" -maxdepth 1 -name '.tmp-*' -size +2M 2>/dev/null | grep -q .; then kill -9 "$PULL_PID"; shot=yes; break; fi
  kill -0 "$PULL_PID" 2>/dev/null || break
  sleep 0.01
done
{ wait "$PULL_PID"; } 2>/dev/null
check "pull SIGKILLed mid-download: fsck clean (leftovers removed)" sh -c "
  [ $shot = yes ] && $UNIONFS system fsck --root $P && [ -z \"\$($UNIONFS image ls -q --root $P)\" ] && ! ls $P/blobs/sha256/.tmp-* 2>/dev/null"
check "pull SIGKILLed mid-download: the next pull completes" sh -c "
  $UNIONFS pull $REG/multi:1 --root $P | tail -1 | grep -qx sha256:$C_AMD && $UNIONFS system fsck --root $P"

# ---- we push what skopeo pushed (zstd layer), skopeo reads it back ----
check "push an image with a zstd layer to a new repository" u push "sha256:$C_AMD" "$REG/again/multi:1" --root "$K"
AGAIN=$(grep -o 'digest: sha256:[0-9a-f]*' "$T/out" | cut -d' ' -f2)
if grep -q 'mounted from multi' "$T/out"; then ok "cross-repository mount used for blobs the registry has elsewhere"
else bad "cross-repository mount used for blobs the registry has elsewhere" "no 'mounted from' line"; fi
check "the pushed manifest is the one pulled (digest kept)" test "$AGAIN" = "sha256:$M_AMD"
check "skopeo copy it out to oci: with the same manifest and layer digests" sh -c "
  skopeo copy -q --preserve-digests --dest-oci-accept-uncompressed-layers --src-tls-verify=false docker://$REG/again/multi:1 oci:$T/again:m && grep -q '\"digest\":\"$AGAIN\"' $T/again/index.json &&
  for l in $L1 $L2 $L3 $C_AMD; do [ \"\$(sha256sum $T/again/blobs/sha256/\$l | cut -d' ' -f1)\" = \$l ] || exit 1; done"

# ---- chunked upload ----
mkdir -p "$T/rootfs2/data"; head -c 5000000 /dev/urandom > "$T/rootfs2/data/chunky.bin"
u image import "$T/rootfs2" chunky:1 --root "$D" >/dev/null 2>&1
check "chunked push (--chunk-size 1M)" u push chunky:1 "$REG/chunky:1" --chunk-size 1M --root "$D"
check "chunked blob pulls back intact" sh -c "$UNIONFS pull $REG/chunky:1 --root $E >/dev/null && $UNIONFS system fsck --root $E >/dev/null"
check "chunked image mounts with the same content" mountcheck "$E" "$REG/chunky:1" "$T/rootfs2/data/chunky.bin=data/chunky.bin"

# ---- the registry killed mid-push: clear error, no tag on the registry, the next push completes ----
mkdir -p "$T/rootfs3/data"; head -c 80000000 /dev/urandom > "$T/rootfs3/data/big.bin"
u image import "$T/rootfs3" bigpush:1 --root "$D" >/dev/null 2>&1
u push bigpush:1 "$REG/bigpush:1" --root "$D" >"$T/out" 2>&1 &
PUSH_PID=$!
killed=no
for _ in $(seq 2000); do
  if find "$STORAGE/docker/registry/v2/repositories/bigpush/_uploads" -name data -size +2M 2>/dev/null | grep -q .; then
    disown "$REG_PID"; kill -9 "$REG_PID"; killed=yes; break; fi
  kill -0 "$PUSH_PID" 2>/dev/null || break
  sleep 0.01
done
wait "$PUSH_PID"; rc=$?
note "$T/out"
if [ $killed = yes ]; then
  for _ in $(seq 100); do kill -0 "$REG_PID" 2>/dev/null || break; sleep 0.05; done
  REG_PID=""
  start_registry
fi
if [ $killed = yes ] && [ $rc -ne 0 ] && [ "$(grep -c '^unionfs: ' "$T/out")" = 1 ]; then ok "registry killed mid-push: one clear error"
else bad "registry killed mid-push: one clear error" "killed=$killed rc=$rc"; fi
check "registry killed mid-push: no tag on the registry" sh -c "! skopeo inspect --tls-verify=false docker://$REG/bigpush:1 >/dev/null 2>&1"
check "registry killed mid-push: the next push completes" sh -c "
  $UNIONFS push bigpush:1 $REG/bigpush:1 --root $D >/dev/null && skopeo inspect --tls-verify=false docker://$REG/bigpush:1 >/dev/null"

# ---- faults on the registry's disk ----
blobdata() { echo "$STORAGE/docker/registry/v2/blobs/sha256/${1:0:2}/$1/data"; }
unique_image() { # NAME: a one-layer image with unique content in root D, pushed; prints its layer blob's hex digest
  mkdir -p "$T/$1"; head -c 400000 /dev/urandom > "$T/$1/f.bin"
  u image import "$T/$1" "$1:1" --root "$D" >/dev/null 2>&1 && u push "$1:1" "$REG/$1:1" --root "$D" >/dev/null 2>&1 &&
    u image inspect "$1:1" --root "$D" | grep -o '"Blob": "sha256:[0-9a-f]*' | cut -d: -f3
}
bad_layer=$(unique_image corrupt)
if [ -n "$bad_layer" ] && [ -f "$(blobdata "$bad_layer")" ]; then
  printf '\xde\xad\xbe\xef' | dd of="$(blobdata "$bad_layer")" bs=1 seek=1000 conv=notrunc status=none
  u pull "$REG/corrupt:1" --root "$F" >"$T/out" 2>&1; rc=$?; note "$T/out"
  if [ $rc -eq 0 ]; then bad "corrupt blob on the registry: pull refused" "pull succeeded"
  elif grep -q 'unionfs: .*digest mismatch' "$T/out"; then ok "corrupt blob on the registry: pull refused with a digest mismatch"
  else bad "corrupt blob on the registry: pull refused with a digest mismatch" "unexpected message"; fi
  fault_after "corrupt blob" "$F"
else bad "corrupt blob on the registry" "could not find the layer blob in $STORAGE"; fi

gone_layer=$(unique_image missing)
if [ -n "$gone_layer" ] && [ -f "$(blobdata "$gone_layer")" ]; then
  rm -f "$(blobdata "$gone_layer")"
  u pull "$REG/missing:1" --root "$F" >"$T/out" 2>&1; rc=$?; note "$T/out"
  if [ $rc -eq 0 ]; then bad "manifest pointing at a missing blob: pull refused" "pull succeeded"
  elif [ "$(grep -c '^unionfs: ' "$T/out")" = 1 ] && grep -q "unionfs: .*sha256:$gone_layer" "$T/out"; then ok "manifest pointing at a missing blob: one clear error naming the blob"
  else bad "manifest pointing at a missing blob: one clear error naming the blob" "unexpected message"; fi
  fault_after "missing blob" "$F"
else bad "missing blob on the registry" "could not find the layer blob in $STORAGE"; fi

# ---- basic auth (a second registry with an htpasswd file) ----
if command -v htpasswd >/dev/null; then
  APORT=
  for p in $(shuf -i 20000-32000 -n 50); do if [ "$p" != "$PORT" ] && port_free "$p"; then APORT=$p; break; fi; done
  AREG=127.0.0.1:$APORT
  htpasswd -Bbn tester s3cret > "$T/htpasswd" 2>/dev/null
  sed -e "s|$STORAGE|$T/registry-auth|" -e "s|addr: $REG|addr: $AREG|" "$T/registry.yml" > "$T/registry-auth.yml"
  printf 'auth:\n  htpasswd:\n    realm: unionfs-test\n    path: %s\n' "$T/htpasswd" >> "$T/registry-auth.yml"
  "$REGISTRY_BIN" serve "$T/registry-auth.yml" >>"$T/registry-auth.log" 2>&1 &
  AUTH_PID=$!
  for _ in $(seq 100); do port_free "$APORT" || break; sleep 0.05; done
  check "auth: push without credentials is refused clearly" sh -c "
    ! $UNIONFS push app:1 $AREG/private/app:1 --root $A >$T/a.out 2>&1 && grep -q 'unionfs: registry $AREG: authentication required' $T/a.out"
  check "auth: push with --user" u push app:1 "$AREG/private/app:1" --user tester:s3cret --root "$A"
  check "auth: wrong password is refused clearly" sh -c "
    ! $UNIONFS pull $AREG/private/app:1 --user tester:wrong --root $F >$T/a.out 2>&1 && grep -q 'authentication failed for user tester' $T/a.out"
  printf '{"auths":{"%s":{"auth":"%s"}}}' "$AREG" "$(printf tester:s3cret | base64)" > "$T/auth.json"
  check "auth: pull with credentials from an auth file (REGISTRY_AUTH_FILE)" sh -c "
    REGISTRY_AUTH_FILE=$T/auth.json $UNIONFS pull $AREG/private/app:1 --root $T/G | tail -1 | grep -qx $APP_ID"
  check "auth: skopeo reads what we pushed with the same credentials" skopeo inspect --tls-verify=false --creds tester:s3cret "docker://$AREG/private/app:1"
  kill "$AUTH_PID"; { wait "$AUTH_PID"; } 2>/dev/null; AUTH_PID=
else : > "$T/out"; bad "basic-auth tests" "htpasswd is not installed (apache2-utils; scripts/install-deps.sh installs it)"; fi

# ---- bearer tokens: the registry's token auth, with a small token server signing JWTs (python3 + openssl) ----
if command -v python3 >/dev/null && command -v openssl >/dev/null; then
  free_port() { for p in $(shuf -i 20000-32000 -n 50); do if [ "$p" != "$PORT" ] && [ "$p" != "${1:-}" ] && port_free "$p"; then echo "$p"; return; fi; done; }
  TPORT=$(free_port); BPORT=$(free_port "$TPORT")
  BREG=127.0.0.1:$BPORT
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/token.key" -out "$T/token.crt" -days 1 -subj /CN=unionfs-token 2>/dev/null
  cat >"$T/tokenserver.py" <<'PY'
import base64, http.server, json, os, subprocess, sys, time, urllib.parse
key, crt, port, log = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
der = subprocess.run(["openssl", "x509", "-in", crt, "-outform", "DER"], capture_output=True, check=True).stdout
def b64u(b): return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        q = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
        authed = self.headers.get("Authorization", "") == "Basic " + base64.b64encode(b"tester:s3cret").decode()
        if self.headers.get("Authorization") and not authed:
            self.send_response(401); self.end_headers(); return
        access = []
        for s in q.get("scope", []):
            typ, rest = s.split(":", 1); name, actions = rest.rsplit(":", 1)
            acts = actions.split(",") if authed else [a for a in actions.split(",") if a == "pull" and name.startswith("public/")]
            access.append({"type": typ, "name": name, "actions": acts})
        with open(log, "a") as f: f.write(("user " if authed else "anon ") + " ".join(q.get("scope", [])) + "\n")
        now = int(time.time())
        hdr = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(der).decode()]}
        claims = {"iss": "unionfs-test-issuer", "sub": "tester" if authed else "", "aud": q.get("service", [""])[0],
                  "exp": now + 300, "nbf": now - 10, "iat": now, "jti": os.urandom(8).hex(), "access": access}
        signing = b64u(json.dumps(hdr).encode()) + "." + b64u(json.dumps(claims).encode())
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key], input=signing.encode(), capture_output=True, check=True).stdout
        body = json.dumps({"token": signing + "." + b64u(sig), "expires_in": 300}).encode()
        self.send_response(200); self.send_header("Content-Type", "application/json"); self.send_header("Content-Length", str(len(body)))
        self.end_headers(); self.wfile.write(body)
http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
PY
  python3 "$T/tokenserver.py" "$T/token.key" "$T/token.crt" "$TPORT" "$T/token.log" 2>>"$T/token.err" &
  TOKEN_PID=$!
  sed -e "s|$STORAGE|$T/registry-bearer|" -e "s|addr: $REG|addr: $BREG|" "$T/registry.yml" > "$T/registry-bearer.yml"
  printf 'auth:\n  token:\n    realm: http://127.0.0.1:%s/token\n    service: unionfs-test\n    issuer: unionfs-test-issuer\n    rootcertbundle: %s\n' \
    "$TPORT" "$T/token.crt" >> "$T/registry-bearer.yml"
  "$REGISTRY_BIN" serve "$T/registry-bearer.yml" >>"$T/registry-bearer.log" 2>&1 &
  BEARER_PID=$!
  for _ in $(seq 300); do port_free "$BPORT" || port_free "$TPORT" || break; sleep 0.05; done
  # Say so loudly if a server did not come up, rather than failing every check below with "connection refused".
  port_free "$TPORT" && echo "# token server not listening on $TPORT after 15 s: $(tail -n 3 "$T/token.err" 2>/dev/null | tr '\n' ' ')"
  port_free "$BPORT" && echo "# bearer registry not listening on $BPORT after 15 s: $(tail -n 3 "$T/registry-bearer.log" | tr '\n' ' ')"
  check "bearer: anonymous push is refused clearly" sh -c "
    ! $UNIONFS push app:1 $BREG/team/app:1 --root $A >$T/b.out 2>&1 && grep -q 'unionfs: registry $BREG: .*authentication failed (no credentials' $T/b.out"
  check "bearer: push with --user gets a push token" sh -c "
    $UNIONFS push app:1 $BREG/team/app:1 --user tester:s3cret --root $A >/dev/null && grep -q '^user repository:team/app:pull,push' $T/token.log"
  check "bearer: cross-repository mount asks for both scopes" sh -c "
    $UNIONFS push app:1 $BREG/public/app:1 --user tester:s3cret --root $A | grep -q 'mounted from team/app' &&
    grep -q '^user .*repository:public/app:pull,push.*repository:team/app:pull\|^user .*repository:team/app:pull.*repository:public/app:pull,push' $T/token.log"
  check "bearer: anonymous pull of a public repository" sh -c "$UNIONFS pull $BREG/public/app:1 --root $T/H | tail -1 | grep -qx $APP_ID"
  check "bearer: anonymous pull of a private repository is refused clearly" sh -c "
    ! $UNIONFS pull $BREG/team/app:1 --root $T/H2 >$T/b.out 2>&1 && grep -q 'unionfs: registry $BREG: .*authentication failed' $T/b.out &&
    [ -z \"\$($UNIONFS image ls -q --root $T/H2)\" ]"
  check "bearer: skopeo reads what we pushed through the same token server" \
    skopeo inspect --tls-verify=false --creds tester:s3cret "docker://$BREG/team/app:1"
  kill "$BEARER_PID" "$TOKEN_PID" 2>/dev/null; { wait "$BEARER_PID" "$TOKEN_PID"; } 2>/dev/null; BEARER_PID="" TOKEN_PID=""
else : > "$T/out"; bad "bearer-token tests" "python3 or openssl is not installed (scripts/install-deps.sh installs them)"; fi

# ---- plain errors ----
check "unknown tag: clear error" sh -c "! $UNIONFS pull $REG/test/app:nope --root $F >$T/nope.out 2>&1 && grep -q 'unionfs: .*manifest test/app:nope not found' $T/nope.out"
stop_registry
check "registry down: clear error" sh -c "$UNIONFS pull $REG/test/app:1 --root $F 2>&1 | grep -q 'unionfs: registry $REG: cannot connect'"
check "after all faults: fsck clean on every root" sh -c "for r in $A $B $C $K $D $E $F $S $P $Q; do $UNIONFS system fsck --root \$r >/dev/null || exit 1; done"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
