/* fsx DIR FILE NOPS SEED [INITIAL [SHADOW_OUT [MAXLEN]]]
 *
 * fsx-style data-integrity exerciser. FILE (relative to DIR, usually a file that lives in a
 * lower layer, so the first open for writing triggers a copy-up) is hammered with NOPS random
 * operations: pread, pwrite, ftruncate, mmap read, mmap write (MAP_SHARED + msync),
 * fallocate (0, KEEP_SIZE, PUNCH_HOLE|KEEP_SIZE, ZERO_RANGE), fsync and close/reopen. A
 * shadow copy in memory is updated with the expected effect of every op; after every op the
 * size (fstat) and the touched range are compared with the shadow, and the whole file every
 * 64 ops, after every reopen and at the end.
 *
 * INITIAL: path (absolute, outside the mount) of the file's expected initial content, e.g. the
 *   lower-layer file; default: whatever FILE holds when the probe starts ("-" = same).
 * SHADOW_OUT: the final expected content is written there (so the caller can compare the
 *   upper file on disk / after a remount); "-" = don't.
 * MAXLEN: the file never grows beyond this (default 256 KiB).
 * Environment: FSX_VERBOSE=1 prints every op; FSX_NOMMAP=1 / FSX_NOFALLOC=1 disable op kinds
 * (never used by the suites: an unsupported op is a failure).
 *
 * On a mismatch it prints the last 60 ops of the log (op number, op, offset, length, size),
 * the first differing bytes, the seed, and exits 1.
 */
#include "common.h"
#include <sys/mman.h>
#include <linux/falloc.h>

enum { OP_READ, OP_WRITE, OP_TRUNC, OP_MAPREAD, OP_MAPWRITE, OP_FALLOC, OP_FALLOC_KEEP,
       OP_PUNCH, OP_ZERO, OP_FSYNC, OP_REOPEN, OP_COUNT };
static const char *OPNAME[] = { "read", "write", "truncate", "mapread", "mapwrite",
                                "falloc", "falloc_keep", "punch_hole", "zero_range",
                                "fsync", "reopen" };
/* weights */
static const int WEIGHT[] = { 20, 22, 8, 10, 10, 5, 4, 6, 4, 2, 3 };

struct logent { long n; int op; long long off, len, size_before, size_after; };
static struct logent *LOG;
static long NLOG;
static char *SHADOW, *BUF;
static long long SIZE, MAXLEN;
static int FD = -1;
static const char *FILE_NAME;
static unsigned long long SEED;
static long OPNO;
static long COUNTS[OP_COUNT];
static long PAGE;

/* xorshift64* */
static unsigned long long rng_state;
static unsigned long long rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}
static long long rnd_range(long long n) { return n <= 0 ? 0 : (long long)(rnd() % (unsigned long long)n); }

static void dump_log(void)
{
    long from = NLOG > 60 ? NLOG - 60 : 0;
    fprintf(stderr, "fsx: seed %llu, op log (last %ld of %ld ops):\n", SEED, NLOG - from, NLOG);
    for (long i = from; i < NLOG; i++)
        fprintf(stderr, "  #%ld %-11s off=%lld len=%lld size %lld -> %lld\n", LOG[i].n,
                OPNAME[LOG[i].op], LOG[i].off, LOG[i].len, LOG[i].size_before, LOG[i].size_after);
}

__attribute__((noreturn, format(printf, 1, 2))) static void bad(const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    dump_log();
    fail("op #%ld (%s), seed %llu: %s", OPNO, NLOG ? OPNAME[LOG[NLOG - 1].op] : "start", SEED, msg);
}

static void reopen(void)
{
    if (FD >= 0 && close(FD) < 0)
        bad("close: %s", ename(errno));
    FD = openat(DIRFD, FILE_NAME, O_RDWR);
    if (FD < 0)
        bad("open %s O_RDWR: %s (%s)", FILE_NAME, ename(errno), strerror(errno));
}

static void check_size(void)
{
    struct stat st;
    if (fstat(FD, &st) < 0)
        bad("fstat: %s", ename(errno));
    if (st.st_size != SIZE)
        bad("size: expected %lld, fstat says %lld", SIZE, (long long)st.st_size);
}

static void compare(const char *how, const char *got, long long off, long long len)
{
    for (long long i = 0; i < len; i++)
        if (got[i] != SHADOW[off + i]) {
            long long j = i;
            while (j < len && got[j] != SHADOW[off + j])
                j++;
            bad("%s: data differs at offset %lld (0x%llx): expected 0x%02x, got 0x%02x "
                "(%lld differing bytes from there)", how, off + i, off + i,
                (unsigned char)SHADOW[off + i], (unsigned char)got[i], j - i);
        }
}

static void check_range(long long off, long long len)
{
    if (off >= SIZE)
        return;
    if (off + len > SIZE)
        len = SIZE - off;
    long long done = 0;
    while (done < len) {
        ssize_t n = pread(FD, BUF + done, len - done, off + done);
        if (n < 0)
            bad("pread(%lld, %lld): %s", off + done, len - done, ename(errno));
        if (n == 0)
            bad("pread at %lld: unexpected EOF (expected size %lld)", off + done, SIZE);
        done += n;
    }
    compare("pread", BUF, off, len);
    /* nothing beyond EOF */
    char c;
    ssize_t n = pread(FD, &c, 1, SIZE);
    if (n != 0)
        bad("pread at EOF (%lld) returned %zd, expected 0", SIZE, n);
}

static void check_all(void)
{
    check_size();
    check_range(0, SIZE);
}

static void fill_random(char *p, long long len)
{
    /* recognisable data: op number in the high bits, random in the low ones */
    for (long long i = 0; i < len; i++)
        p[i] = (char)((rnd() & 0x3f) | ((OPNO & 3) << 6));
    if (len > 0 && p[0] == 0)
        p[0] = 1;
}

static void do_op(int op)
{
    long long off = 0, len = 0;
    switch (op) {
    case OP_READ:
    case OP_MAPREAD:
        if (SIZE == 0) {
            op = OP_READ;
            off = 0, len = 0;
            break;
        }
        off = rnd_range(SIZE);
        len = 1 + rnd_range(SIZE - off < 65536 ? SIZE - off : 65536);
        break;
    case OP_WRITE:
    case OP_MAPWRITE:
    case OP_FALLOC:
    case OP_FALLOC_KEEP:
        off = rnd_range(MAXLEN - 1);
        len = 1 + rnd_range(MAXLEN - off < 65536 ? MAXLEN - off : 65536);
        break;
    case OP_PUNCH:
    case OP_ZERO:
        if (SIZE == 0) {
            op = OP_TRUNC;
            off = rnd_range(MAXLEN);
            break;
        }
        off = rnd_range(SIZE);
        len = 1 + rnd_range(SIZE - off < 131072 ? SIZE - off : 131072);
        break;
    case OP_TRUNC:
        off = rnd_range(MAXLEN + 1);
        if (rnd() % 8 == 0)
            off = 0;
        break;
    }
    LOG[NLOG] = (struct logent){ OPNO, op, off, len, SIZE, SIZE };
    NLOG++;
    COUNTS[op]++;
    if (getenv("FSX_VERBOSE"))
        fprintf(stderr, "#%ld %s off=%lld len=%lld size=%lld\n", OPNO, OPNAME[op], off, len, SIZE);

    switch (op) {
    case OP_READ:
        check_range(off, len);
        break;
    case OP_WRITE:
        fill_random(BUF, len);
        for (long long done = 0; done < len;) {
            ssize_t n = pwrite(FD, BUF + done, len - done, off + done);
            if (n <= 0)
                bad("pwrite(%lld, %lld): %s (%s)", off + done, len - done, n < 0 ? ename(errno) : "0",
                    n < 0 ? strerror(errno) : "returned 0");
            done += n;
        }
        if (off > SIZE)
            memset(SHADOW + SIZE, 0, off - SIZE);
        memcpy(SHADOW + off, BUF, len);
        if (off + len > SIZE)
            SIZE = off + len;
        break;
    case OP_TRUNC:
        if (ftruncate(FD, off) < 0)
            bad("ftruncate(%lld): %s (%s)", off, ename(errno), strerror(errno));
        if (off > SIZE)
            memset(SHADOW + SIZE, 0, off - SIZE);
        SIZE = off;
        break;
    case OP_MAPREAD: {
        long long pgoff = off & ~(PAGE - 1);
        long long maplen = off + len - pgoff;
        char *p = mmap(NULL, maplen, PROT_READ, MAP_SHARED, FD, pgoff);
        if (p == MAP_FAILED)
            bad("mmap(PROT_READ, off %lld, len %lld): %s", pgoff, maplen, ename(errno));
        compare("mmap read", p + (off - pgoff), off, len);
        if (munmap(p, maplen) < 0)
            bad("munmap: %s", ename(errno));
        break;
    }
    case OP_MAPWRITE: {
        if (off + len > SIZE) { /* grow first, as fsx does */
            if (ftruncate(FD, off + len) < 0)
                bad("ftruncate(%lld) before mapwrite: %s", off + len, ename(errno));
            memset(SHADOW + SIZE, 0, off + len - SIZE);
            SIZE = off + len;
        }
        long long pgoff = off & ~(PAGE - 1);
        long long maplen = off + len - pgoff;
        char *p = mmap(NULL, maplen, PROT_READ | PROT_WRITE, MAP_SHARED, FD, pgoff);
        if (p == MAP_FAILED)
            bad("mmap(PROT_WRITE, off %lld, len %lld): %s", pgoff, maplen, ename(errno));
        fill_random(BUF, len);
        memcpy(p + (off - pgoff), BUF, len);
        memcpy(SHADOW + off, BUF, len);
        if (msync(p, maplen, MS_SYNC) < 0)
            bad("msync: %s (%s)", ename(errno), strerror(errno));
        if (munmap(p, maplen) < 0)
            bad("munmap: %s", ename(errno));
        break;
    }
    case OP_FALLOC:
    case OP_FALLOC_KEEP:
    case OP_PUNCH:
    case OP_ZERO: {
        int mode = op == OP_FALLOC ? 0
                 : op == OP_FALLOC_KEEP ? FALLOC_FL_KEEP_SIZE
                 : op == OP_PUNCH ? (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE)
                 : FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;
        if (fallocate(FD, mode, off, len) < 0)
            bad("fallocate(mode 0x%x, %lld, %lld): %s (%s)", mode, off, len, ename(errno),
                strerror(errno));
        if (op == OP_FALLOC) {
            if (off + len > SIZE) {
                memset(SHADOW + SIZE, 0, off + len - SIZE);
                SIZE = off + len;
            }
        } else if (op == OP_PUNCH || op == OP_ZERO) {
            long long end = off + len > SIZE ? SIZE : off + len;
            if (end > off)
                memset(SHADOW + off, 0, end - off);
        }
        break;
    }
    case OP_FSYNC:
        if (fsync(FD) < 0)
            bad("fsync: %s", ename(errno));
        break;
    case OP_REOPEN:
        reopen();
        break;
    }
    LOG[NLOG - 1].size_after = SIZE;

    /* check after every step */
    check_size();
    if (op == OP_REOPEN || OPNO % 64 == 0)
        check_all();
    else if (len > 0)
        check_range(off > 4096 ? off - 4096 : 0, len + 8192);
}

int main(int argc, char **argv)
{
    probe_init(argc, argv, 5, "DIR FILE NOPS SEED [INITIAL|- [SHADOW_OUT|- [MAXLEN]]]");
    FILE_NAME = argv[2];
    long nops = atol(argv[3]);
    SEED = strtoull(argv[4], NULL, 0);
    rng_state = SEED * 0x9E3779B97F4A7C15ULL + 1;
    MAXLEN = argc > 7 ? atoll(argv[7]) : 256 * 1024;
    PAGE = sysconf(_SC_PAGESIZE);
    LOG = calloc(nops + 1, sizeof *LOG);
    int nomap = getenv("FSX_NOMMAP") != NULL, nofalloc = getenv("FSX_NOFALLOC") != NULL;

    /* the expected initial content */
    const char *init = argc > 5 && strcmp(argv[5], "-") ? argv[5] : NULL;
    int ifd = init ? open(init, O_RDONLY) : openat(DIRFD, FILE_NAME, O_RDONLY);
    if (ifd < 0)
        fail("open initial content %s: %s", init ? init : FILE_NAME, ename(errno));
    struct stat st;
    OK(fstat(ifd, &st));
    if (st.st_size > MAXLEN)
        MAXLEN = st.st_size;
    SHADOW = calloc(MAXLEN + 65536, 1);
    BUF = malloc(MAXLEN + 65536);
    SIZE = read_at(ifd, SHADOW, st.st_size, 0);
    if (SIZE != st.st_size)
        fail("short read of initial content: %lld of %lld", SIZE, (long long)st.st_size);
    close(ifd);

    /* before any write: the merged file must show the initial content (read-only open) */
    FD = openat(DIRFD, FILE_NAME, O_RDONLY);
    if (FD < 0)
        fail("open %s O_RDONLY: %s", FILE_NAME, ename(errno));
    check_all();
    close(FD);
    FD = -1;
    reopen(); /* O_RDWR: copy-up */
    check_all();

    int total = 0;
    for (int i = 0; i < OP_COUNT; i++)
        total += WEIGHT[i];
    for (OPNO = 1; OPNO <= nops; OPNO++) {
        int op;
        do {
            long long r = rnd_range(total);
            for (op = 0; op < OP_COUNT; op++) {
                if (r < WEIGHT[op])
                    break;
                r -= WEIGHT[op];
            }
        } while ((nomap && (op == OP_MAPREAD || op == OP_MAPWRITE)) ||
                 (nofalloc && op >= OP_FALLOC && op <= OP_ZERO));
        do_op(op);
    }
    OPNO = nops;
    reopen();
    check_all();
    OK(fsync(FD));
    OK(close(FD));

    if (argc > 6 && strcmp(argv[6], "-")) {
        int ofd = open(argv[6], O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (ofd < 0)
            fail("create %s: %s", argv[6], ename(errno));
        write_all(ofd, SHADOW, SIZE, 0);
        close(ofd);
    }
    printf("fsx: %ld ops ok (seed %llu, final size %lld):", nops, SEED, SIZE);
    for (int i = 0; i < OP_COUNT; i++)
        printf(" %s=%ld", OPNAME[i], COUNTS[i]);
    printf("\n");
    return 0;
}
