#!/usr/bin/env bash
# Builds the benchmark's layer stack once into $BENCH_DIR (default /var/tmp/unionfs-bench) and
# reuses it afterwards. The stack, bottom to top (docker-image-like):
#   base/  debootstrap --variant=minbase bookworm (falls back to a copy of the host's /usr and /etc
#          when debootstrap cannot reach the mirror; base.source says which)
#   tool/  "RUN apt-get install gcc libc6-dev make" over base: the upper dir of a kernel overlay in
#          which apt installed the toolchain, so the chroot compile workload has a compiler
#          (tool.source says whether that worked)
#   mid/   a few hundred modified files, ~100 whiteouts (char 0/0) of files and a directory, an
#          opaque directory (trusted.overlay.opaque=y), a C project in /src/proj, 8,000 small files
#          in /bench/del (the "delete lower files" workload), /bench/big/big1g (1 GiB of written,
#          non-sparse data) and /bench/big/f64m (64 MiB)
# plus tarballs of small files for the untar workload. Remove $BENCH_DIR to rebuild.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

mkdir -p "$BENCH_DIR"
cd "$BENCH_DIR"

build_base() {
  [ -f base.source ] && [ -d base ] && return 0
  rm -rf base base.tmp
  local mirror; mirror=$(apt_mirror)
  log "layers: debootstrap --variant=minbase bookworm from $mirror (about a minute)"
  if debootstrap --variant=minbase bookworm base.tmp "$mirror" > debootstrap.log 2>&1; then
    echo "debootstrap --variant=minbase bookworm ($mirror)" > base.source.tmp
  else
    log "layers: debootstrap failed (see $BENCH_DIR/debootstrap.log); FALLBACK: copying the host's /usr and /etc into the base layer"
    rm -rf base.tmp; mkdir -p base.tmp
    cp -a /usr /etc base.tmp/
    for l in bin sbin lib lib64; do [ -L /$l ] && cp -a /$l base.tmp/; done
    mkdir -p base.tmp/{tmp,var/tmp,srv,dev,proc,sys,root}
    chmod 1777 base.tmp/tmp base.tmp/var/tmp
    echo "FALLBACK copy of the host's /usr and /etc (debootstrap failed)" > base.source.tmp
  fi
  mv base.tmp base && mv base.source.tmp base.source
}

build_tool() {
  [ -f tool.source ] && [ -d tool ] && return 0
  rm -rf tool tool.tmp tool.work mnt-build
  mkdir -p tool.tmp tool.work mnt-build
  if grep -q FALLBACK base.source; then
    echo "none (base is a host copy; compile uses the gcc found in it, if any)" > tool.source; mv tool.tmp tool; rm -rf tool.work mnt-build; return 0
  fi
  log "layers: installing gcc, libc6-dev, make into an overlay layer over base (a minute or two)"
  local m=$BENCH_DIR/mnt-build ok=1
  mount -t overlay overlay -o lowerdir="$BENCH_DIR/base",upperdir="$BENCH_DIR/tool.tmp",workdir="$BENCH_DIR/tool.work",redirect_dir=off,metacopy=off,index=off "$m"
  trap 'umount "$BENCH_DIR/mnt-build/proc" 2>/dev/null; umount "$BENCH_DIR/mnt-build" 2>/dev/null' EXIT
  mount -t proc proc "$m/proc"
  cp /etc/resolv.conf "$m/etc/resolv.conf" 2>/dev/null || true
  if ! { chroot "$m" /usr/bin/env DEBIAN_FRONTEND=noninteractive PATH=/usr/sbin:/usr/bin:/sbin:/bin apt-get update -qq &&
         chroot "$m" /usr/bin/env DEBIAN_FRONTEND=noninteractive PATH=/usr/sbin:/usr/bin:/sbin:/bin \
           apt-get install -y -qq --no-install-recommends gcc libc6-dev make &&
         chroot "$m" /usr/bin/env PATH=/usr/sbin:/usr/bin:/sbin:/bin apt-get clean; } > tool-apt.log 2>&1; then
    ok=0
  fi
  rm -rf "$m"/var/lib/apt/lists/* 2>/dev/null || true
  umount "$m/proc"; umount "$m"; trap - EXIT
  rm -rf tool.work mnt-build
  if [ $ok = 1 ]; then
    echo "apt-get install gcc libc6-dev make over base (kernel overlay upper dir)" > tool.source
  else
    log "layers: apt-get in the chroot failed (see $BENCH_DIR/tool-apt.log); tool layer left empty, compile runs host gcc"
    rm -rf tool.tmp; mkdir tool.tmp
    echo "none (apt-get in chroot failed: compile uses host gcc on sources in the mount)" > tool.source
  fi
  mv tool.tmp tool
}

gen_c_project() { # $1 = dir
  mkdir -p "$1"
  perl -e '
    my $d = shift; my $n = 24;
    for my $i (0..$n-1) {
      open my $f, ">", "$d/m$i.c" or die;
      print $f "#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n#include <math.h>\n#include <errno.h>\n#include <unistd.h>\n#include <sys/stat.h>\n#include <fcntl.h>\n#include <pthread.h>\n#include <signal.h>\n#include <time.h>\n#include \"common.h\"\n\n";
      for my $j (0..39) {
        print $f "static int cmp_${i}_$j(const void *a, const void *b) { const struct rec *x = a, *y = b; return (x->k > y->k) - (x->k < y->k); }\n";
        print $f "double work_${i}_$j(struct rec *r, size_t n, const char *s) {\n  double acc = 0; char buf[128];\n  qsort(r, n, sizeof *r, cmp_${i}_$j);\n  for (size_t k = 0; k < n; k++) { acc += sqrt((double)r[k].k + $j) * (k % 7); snprintf(buf, sizeof buf, \"%s-%zu-%d\", s, k, $i); acc += strlen(buf); }\n  if (acc > 1e9) fprintf(stderr, \"%s\\n\", strerror(errno));\n  return acc;\n}\n";
      }
      close $f;
    }
    open my $h, ">", "$d/common.h" or die; print $h "struct rec { long k; char name[32]; };\n"; close $h;
    open my $mk, ">", "$d/Makefile" or die;
    my @o = map { "m$_.o" } 0..$n-1;
    print $mk "CC ?= gcc\nCFLAGS = -O2 -pipe -Wall\nOBJS = @o\nall: libproj.a\nlibproj.a: \$(OBJS)\n\tar rcs \$@ \$(OBJS)\n%.o: %.c common.h\n\t\$(CC) \$(CFLAGS) -c \$< -o \$@\nclean:\n\trm -f \$(OBJS) libproj.a\n";
    close $mk;
  ' "$1"
}

build_mid() {
  [ -f mid.done ] && [ -d mid ] && return 0
  rm -rf mid mid.tmp; mkdir mid.tmp
  log "layers: building the second layer (modified files, whiteouts, opaque dir, 8,000 small files, 1 GiB file)"
  ( cd base
    # a few hundred modified files: docs and configuration, spread over the tree
    find usr/share/doc etc -type f -size -64k | sort | awk 'NR%2==1 && ++n<=300' > ../mid-modified.list
    # ~100 whiteouts of files elsewhere in usr/share (never what a compiler needs)
    find usr/share -type f -not -path 'usr/share/doc/*' -not -path 'usr/share/zoneinfo/America/*' |
      sort | awk 'NR%17==3 && ++n<=100' > ../mid-whiteout.list )
  local n=0 f
  while read -r f; do
    mkdir -p "mid.tmp/$(dirname "$f")"
    cp -a "base/$f" "mid.tmp/$f"
    n=$((n+1))
    if [ $((n % 60)) = 1 ]; then echo "# modified in the bench layer: UNIONFS_BENCH_NEEDLE $n" >> "mid.tmp/$f"
    else echo "# modified in the bench layer ($n)" >> "mid.tmp/$f"; fi
  done < mid-modified.list
  while read -r f; do
    mkdir -p "mid.tmp/$(dirname "$f")"; mknod "mid.tmp/$f" c 0 0
  done < mid-whiteout.list
  # a whiteout of a whole directory
  f=$(cd base && ls -d usr/share/doc/*/ | sed 's:/$::' | grep -vxF -f <(cut -d/ -f1-4 ../mid-modified.list) | awk 'NR==1' || true)
  [ -n "$f" ] && { mkdir -p "mid.tmp/$(dirname "$f")"; mknod "mid.tmp/$f" c 0 0; }
  # an opaque directory: hides the lower zoneinfo/America (≈150 entries), shows 3 new files
  mkdir -p mid.tmp/usr/share/zoneinfo/America
  setfattr -n trusted.overlay.opaque -v y mid.tmp/usr/share/zoneinfo/America
  for f in Opaque_One Opaque_Two Opaque_Three; do echo "$f" > "mid.tmp/usr/share/zoneinfo/America/$f"; done
  gen_c_project mid.tmp/src/proj
  # 8,000 small lower files to delete, 40 directories of 200
  perl -e 'my $d = shift; for my $i (0..39) { my $dd = sprintf("%s/d%02d", $d, $i); mkdir $dd or die;
             for my $j (0..199) { open my $f, ">", sprintf("%s/f%03d", $dd, $j) or die; print $f ("x" x (200 + ($i*7+$j) % 800)); close $f } }' \
    "$(mkdir -p mid.tmp/bench/del && echo mid.tmp/bench/del)"
  mkdir -p mid.tmp/bench/big
  dd if=/dev/urandom of=mid.tmp/bench/big/big1g bs=1M count=1024 status=none
  dd if=/dev/urandom of=mid.tmp/bench/big/f64m bs=1M count=64 status=none
  sync
  mv mid.tmp mid && touch mid.done
}

# tarball of $1 small files (100 B .. 4 KiB) in directories of 200
build_tarball() {
  local n=$1 t=$BENCH_DIR/untar-$1.tar
  [ -f "$t" ] && return 0
  log "layers: tarball of $n small files"
  rm -rf tar.tmp; mkdir -p tar.tmp/t
  perl -e 'my ($d,$n) = @ARGV; for my $i (0..$n-1) { my $dd = sprintf("%s/d%03d", $d, int($i/200)); mkdir $dd unless -d $dd;
           open my $f, ">", sprintf("%s/file%05d.txt", $dd, $i) or die; print $f (join(",", map { $_ * $i } 1..(20 + $i % 700)), "\n"); close $f }' tar.tmp/t "$n"
  tar -C tar.tmp -cf "$t.tmp" t && mv "$t.tmp" "$t"
  rm -rf tar.tmp
}

build_base
build_tool
build_mid
build_tarball 20000
build_tarball 5000
for helper in churn chmodtime; do
  [ -x "$BENCH_DIR/$helper" ] && [ "$BENCH_DIR/$helper" -nt "$BENCH_SCRIPTS/$helper.c" ] ||
    gcc -O2 -Wall -o "$BENCH_DIR/$helper" "$BENCH_SCRIPTS/$helper.c"
done
