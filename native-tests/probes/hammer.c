/* hammer DIR WORKERS SECONDS SEED
 *
 * Load generator: WORKERS processes hammer DIR for SECONDS with mixed metadata and data ops.
 * Each worker owns DIR/w<i>/ (ops there must always succeed and data is verified) and shares
 * DIR/shared/ (ops race with the other workers; only the errnos a race can explain are
 * accepted: ENOENT, EEXIST, ENOTEMPTY, ENOTDIR, EISDIR). DIR/lf<k> (k < 64), if present, are
 * files that start in a lower layer with 65536 bytes of byte (k*7+i)&0xff; workers append
 * to them and chmod them (concurrent copy-ups) and check the first 65536 bytes never change.
 * DIR/shared2/ is a second shared directory: names and empty directories move between it and
 * DIR/shared/ (renames across directories, racing with the changes inside both). DIR/deep/a<i>/b<j>/
 * (i, j < 4), if present, are lower directories holding lower files m<k> (k < 8): workers create and
 * remove private files in them (concurrent copy-ups of the same ancestors) and move the m<k> between
 * them (copy-up of a lower file, then a rename across two directories).
 * Prints "hammer: N ops, E errors" (sum over workers) and exits 1 if E > 0 (the first errors
 * are printed on stderr).
 */
#include "common.h"
#include <signal.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>

static unsigned long long rs;
static unsigned rnd(void)
{
    rs ^= rs >> 12;
    rs ^= rs << 25;
    rs ^= rs >> 27;
    return (unsigned)((rs * 2685821657736338717ULL) >> 32);
}

static int worker_id, has_deep;
static long errors, ops;

static void err(const char *what, const char *path, int e)
{
    errors++;
    if (errors <= 5)
        fprintf(stderr, "hammer: worker %d: %s %s: %s (%s)\n", worker_id, what, path, ename(e),
                strerror(e));
}

/* A failed or short transfer, with how much it moved and the free space under DIR: a short write sets no errno,
 * and one from a full disk (something else on the machine filling it) must be told apart from a bug. */
static void io_err(const char *what, const char *path, ssize_t got, int want)
{
    int e = errno;
    struct statvfs sv;
    errors++;
    if (errors > 5)
        return;
    unsigned long long freek = fstatvfs(DIRFD, &sv) == 0 ? (unsigned long long)sv.f_bavail * sv.f_frsize / 1024 : 0;
    fprintf(stderr, "hammer: worker %d: %s %s: %zd of %d bytes, %s; %llu KiB free\n", worker_id, what, path, got,
            want, got < 0 ? strerror(e) : "short", freek);
}

static int race_ok(int e)
{
    return e == ENOENT || e == EEXIST || e == ENOTEMPTY || e == ENOTDIR || e == EISDIR;
}

#define PRIV(rc, what, path)                                                             \
    do {                                                                               \
        if ((rc) < 0)                                                                  \
            err(what, path, errno);                                                    \
    } while (0)
#define SHARED(rc, what, path)                                                           \
    do {                                                                               \
        if ((rc) < 0 && !race_ok(errno))                                               \
            err(what, path, errno);                                                    \
    } while (0)

static void fill(char *b, int len, unsigned seed)
{
    for (int i = 0; i < len; i++)
        b[i] = (char)(seed + i * 31);
}

static void worker(int id, int secs)
{
    worker_id = id;
    char wd[64], p[256], q[256], buf[65536], exp[65536];
    snprintf(wd, sizeof wd, "w%d", id);
    if (mkdirat(DIRFD, wd, 0755) < 0 && errno != EEXIST)
        err("mkdir", wd, errno);
    time_t end = time(NULL) + secs;
    while (time(NULL) < end) {
        for (int burst = 0; burst < 50; burst++) {
            ops++;
            int k = rnd() % 16, op = rnd() % 24;
            switch (op) {
            case 0: case 1: case 2: { /* private file: write, read back */
                snprintf(p, sizeof p, "%s/f%d", wd, k);
                int len = 1 + rnd() % 20000;
                unsigned s = rnd();
                fill(exp, len, s);
                int fd = openat(DIRFD, p, O_RDWR | O_CREAT | O_TRUNC, 0644);
                if (fd < 0) { err("create", p, errno); break; }
                errno = 0;
                ssize_t wr = pwrite(fd, exp, len, 0);
                if (wr != len) {
                    io_err("pwrite", p, wr, len);
                    PRIV(close(fd), "close", p);
                    break; /* the read-back would only repeat the same error */
                }
                ssize_t rd = pread(fd, buf, sizeof buf, 0);
                if (rd != len || memcmp(buf, exp, len))
                    io_err("read back", p, rd, len);
                PRIV(close(fd), "close", p);
                break;
            }
            case 3: { /* private rename */
                snprintf(p, sizeof p, "%s/f%d", wd, k);
                snprintf(q, sizeof q, "%s/f%d", wd, (int)(rnd() % 16));
                if (renameat(DIRFD, p, DIRFD, q) < 0 && errno != ENOENT) err("rename", p, errno);
                break;
            }
            case 4: { /* private link + unlink */
                snprintf(p, sizeof p, "%s/f%d", wd, k);
                snprintf(q, sizeof q, "%s/l%d", wd, k);
                if (linkat(DIRFD, p, DIRFD, q, 0) < 0 && errno != ENOENT && errno != EEXIST)
                    err("link", p, errno);
                if (unlinkat(DIRFD, q, 0) < 0 && errno != ENOENT) err("unlink", q, errno);
                break;
            }
            case 5: { /* private mkdir/rmdir */
                snprintf(p, sizeof p, "%s/d%d", wd, k);
                if (mkdirat(DIRFD, p, 0755) < 0 && errno != EEXIST) err("mkdir", p, errno);
                if (rnd() % 2 && unlinkat(DIRFD, p, AT_REMOVEDIR) < 0) err("rmdir", p, errno);
                break;
            }
            case 6: { /* private symlink */
                snprintf(p, sizeof p, "%s/s%d", wd, k);
                unlinkat(DIRFD, p, 0);
                PRIV(symlinkat("target/of/symlink", DIRFD, p), "symlink", p);
                ssize_t n = readlinkat(DIRFD, p, buf, sizeof buf);
                if (n != 17 || memcmp(buf, "target/of/symlink", 17)) err("readlink", p, EIO);
                break;
            }
            case 7: { /* chmod + stat */
                snprintf(p, sizeof p, "%s/f%d", wd, k);
                struct stat st;
                if (fchmodat(DIRFD, p, 0600 | (rnd() % 2 ? 044 : 0), 0) < 0 && errno != ENOENT)
                    err("chmod", p, errno);
                if (fstatat(DIRFD, p, &st, AT_SYMLINK_NOFOLLOW) < 0 && errno != ENOENT)
                    err("stat", p, errno);
                break;
            }
            case 8: { /* truncate */
                snprintf(p, sizeof p, "%s/f%d", wd, k);
                int fd = openat(DIRFD, p, O_WRONLY);
                if (fd < 0) { if (errno != ENOENT) err("open", p, errno); break; }
                PRIV(ftruncate(fd, rnd() % 30000), "ftruncate", p);
                close(fd);
                break;
            }
            case 9: { /* xattr */
                snprintf(p, sizeof p, "%s/f%d", wd, k);
                char full[512];
                snprintf(full, sizeof full, "/proc/self/fd/%d/%s", DIRFD, p);
                if (lsetxattr(full, "user.h", "v", 1, 0) < 0 && errno != ENOENT)
                    err("setxattr", p, errno);
                break;
            }
            case 10: case 11: { /* shared create/unlink */
                snprintf(p, sizeof p, "shared/x%d", k);
                int fd = openat(DIRFD, p, O_WRONLY | O_CREAT, 0644);
                if (fd < 0) SHARED(-1, "create", p);
                else { write(fd, "abc", 3); close(fd); }
                if (rnd() % 2) SHARED(unlinkat(DIRFD, p, 0), "unlink", p);
                break;
            }
            case 12: { /* shared rename */
                snprintf(p, sizeof p, "shared/x%d", k);
                snprintf(q, sizeof q, "shared/x%d", (int)(rnd() % 16));
                SHARED(renameat(DIRFD, p, DIRFD, q), "rename", p);
                break;
            }
            case 13: { /* shared mkdir/rmdir */
                snprintf(p, sizeof p, "shared/d%d", k % 4);
                SHARED(mkdirat(DIRFD, p, 0755), "mkdir", p);
                SHARED(unlinkat(DIRFD, p, AT_REMOVEDIR), "rmdir", p);
                break;
            }
            case 14: { /* shared readdir */
                int fd = openat(DIRFD, "shared", O_RDONLY | O_DIRECTORY);
                if (fd < 0) { err("open", "shared", errno); break; }
                DIR *d = fdopendir(fd);
                errno = 0;
                while (readdir(d)) {}
                if (errno) err("readdir", "shared", errno);
                closedir(d);
                break;
            }
            case 15: case 16: case 17: { /* lower files: append, check prefix */
                int lf = rnd() % 64;
                snprintf(p, sizeof p, "lf%d", lf);
                int fd = openat(DIRFD, p, op == 15 ? (O_WRONLY | O_APPEND) : O_RDONLY);
                if (fd < 0) { if (errno != ENOENT) err("open", p, errno); break; }
                if (op == 15 && write(fd, "appended", 8) != 8) err("append", p, errno);
                if (op != 15) {
                    ssize_t n = pread(fd, buf, 65536, 0);
                    if (n != 65536) err("read lower prefix", p, n < 0 ? errno : EIO);
                    else
                        for (int i = 0; i < 65536; i++)
                            if ((unsigned char)buf[i] != ((lf * 7 + i) & 0xff)) {
                                err("lower prefix content changed", p, EIO);
                                break;
                            }
                }
                close(fd);
                break;
            }
            case 18: { /* lower files: chmod (metadata copy-up) */
                snprintf(p, sizeof p, "lf%d", (int)(rnd() % 64));
                if (fchmodat(DIRFD, p, 0644 | (rnd() % 2 ? 0100 : 0), 0) < 0 && errno != ENOENT)
                    err("chmod", p, errno);
                break;
            }
            case 19: { /* shared names and empty directories move between two directories */
                if (rnd() % 2) {
                    snprintf(p, sizeof p, "shared/x%d", k);
                    snprintf(q, sizeof q, "shared2/y%d", (int)(rnd() % 16));
                } else {
                    snprintf(p, sizeof p, "shared/d%d", k % 4);
                    snprintf(q, sizeof q, "shared2/e%d", (int)(rnd() % 4));
                }
                if (rnd() % 2) SHARED(renameat(DIRFD, p, DIRFD, q), "rename", p);
                else SHARED(renameat(DIRFD, q, DIRFD, p), "rename", q);
                break;
            }
            case 20: { /* private files in deep lower directories: their ancestors are copied up at once */
                if (!has_deep) break;
                snprintf(p, sizeof p, "deep/a%d/b%d/w%d_%d", k % 4, (int)(rnd() % 4), id, k);
                int fd = openat(DIRFD, p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
                if (fd < 0) { err("create", p, errno); break; }
                if (write(fd, "deep", 4) != 4) err("write", p, errno);
                PRIV(close(fd), "close", p);
                if (rnd() % 2) PRIV(unlinkat(DIRFD, p, 0), "unlink", p);
                break;
            }
            case 21: { /* lower files move between deep directories */
                if (!has_deep) break;
                snprintf(p, sizeof p, "deep/a%d/b%d/m%d", k % 4, (int)(rnd() % 4), k % 8);
                snprintf(q, sizeof q, "deep/a%d/b%d/m%d", (int)(rnd() % 4), (int)(rnd() % 4), k % 8);
                SHARED(renameat(DIRFD, p, DIRFD, q), "rename", p);
                break;
            }
            default: { /* stat a few names */
                struct stat st;
                snprintf(p, sizeof p, "shared/x%d", k);
                SHARED(fstatat(DIRFD, p, &st, AT_SYMLINK_NOFOLLOW), "stat", p);
                snprintf(p, sizeof p, "%s", wd);
                PRIV(fstatat(DIRFD, p, &st, 0), "stat", p);
            }
            }
        }
    }
}

int main(int argc, char **argv)
{
    probe_init(argc, argv, 5, "DIR WORKERS SECONDS SEED");
    int n = atoi(argv[2]), secs = atoi(argv[3]);
    unsigned long long seed = strtoull(argv[4], NULL, 0);
    if (mkdirat(DIRFD, "shared", 0755) < 0 && errno != EEXIST)
        fail("mkdir shared: %s", ename(errno));
    if (mkdirat(DIRFD, "shared2", 0755) < 0 && errno != EEXIST)
        fail("mkdir shared2: %s", ename(errno));
    has_deep = faccessat(DIRFD, "deep", F_OK, 0) == 0;
    int pipes[64][2];
    pid_t pids[64];
    for (int i = 0; i < n && i < 64; i++) {
        OK(pipe(pipes[i]));
        pids[i] = fork();
        if (pids[i] == 0) {
            close(pipes[i][0]);
            rs = seed * 1000003ULL + i * 7919ULL + 1;
            worker(i, secs);
            long r[2] = { ops, errors };
            write(pipes[i][1], r, sizeof r);
            _exit(0);
        }
        close(pipes[i][1]);
    }
    long tops = 0, terr = 0;
    for (int i = 0; i < n && i < 64; i++) {
        long r[2] = { 0, 1 };
        if (read(pipes[i][0], r, sizeof r) != sizeof r) {
            fprintf(stderr, "hammer: worker %d died without a report\n", i);
            r[1] = 1;
        }
        int status;
        waitpid(pids[i], &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status))
            r[1]++;
        tops += r[0], terr += r[1];
    }
    printf("hammer: %ld ops, %ld errors\n", tops, terr);
    if (terr)
        fail("%ld errors in %ld ops (first ones above)", terr, tops);
    return 0;
}
