/* Shared helpers for the probes. Each probe is one small program that performs exact
 * syscalls and exits 0 on success, or prints ONE line "probe: what: expected X, got Y"
 * on stderr and exits 1. argv[1] is always the directory to work in; every path a probe
 * uses is relative to that directory (resolved with the *at() calls on DIRFD). */
#ifndef PROBE_COMMON_H
#define PROBE_COMMON_H
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

static const char *PROG = "probe";
static int DIRFD = -1;

static __attribute__((unused)) const char *ename(int e)
{
    const char *n = strerrorname_np(e);
    return n ? n : "E???";
}

__attribute__((noreturn, format(printf, 1, 2))) static void fail(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", PROG);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

/* OK(expr): expr must not return a negative value; evaluates to its result. */
#define OK(expr)                                                                        \
    ({                                                                                  \
        errno = 0;                                                                      \
        long long _r = (long long)(expr);                                               \
        if (_r < 0)                                                                     \
            fail("%s: expected success, got %s (%s) [line %d]", #expr, ename(errno),    \
                 strerror(errno), __LINE__);                                            \
        _r;                                                                             \
    })

/* ERR(expr, E): expr must fail with errno E. */
#define ERR(expr, E)                                                                    \
    do {                                                                                \
        errno = 0;                                                                      \
        long long _r = (long long)(expr);                                               \
        int _e = errno;                                                                 \
        if (_r >= 0)                                                                    \
            fail("%s: expected %s, got success (%lld) [line %d]", #expr, ename(E), _r,  \
                 __LINE__);                                                             \
        if (_e != (E))                                                                  \
            fail("%s: expected %s, got %s (%s) [line %d]", #expr, ename(E), ename(_e),  \
                 strerror(_e), __LINE__);                                               \
    } while (0)

/* EQ(actual, expected, what...): integer equality. */
#define EQ(actual, expected, ...)                                                       \
    do {                                                                                \
        long long _a = (long long)(actual), _x = (long long)(expected);                 \
        if (_a != _x) {                                                                 \
            char _w[512];                                                               \
            snprintf(_w, sizeof _w, __VA_ARGS__);                                       \
            fail("%s: expected %lld, got %lld [line %d]", _w, _x, _a, __LINE__);        \
        }                                                                               \
    } while (0)

#define TRUE(cond, ...)                                                                 \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            char _w[512];                                                               \
            snprintf(_w, sizeof _w, __VA_ARGS__);                                       \
            fail("%s [%s, line %d]", _w, #cond, __LINE__);                              \
        }                                                                               \
    } while (0)

static __attribute__((unused)) void probe_init(int argc, char **argv, int min_args, const char *usage)
{
    const char *p = strrchr(argv[0], '/');
    PROG = p ? p + 1 : argv[0];
    if (argc < min_args) {
        fprintf(stderr, "%s: usage: %s %s\n", PROG, PROG, usage);
        exit(2);
    }
    DIRFD = open(argv[1], O_RDONLY | O_DIRECTORY);
    if (DIRFD < 0)
        fail("open work dir %s: %s", argv[1], ename(errno));
    umask(0);
}

static __attribute__((unused)) void write_all(int fd, const void *buf, size_t len, off_t off)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = pwrite(fd, p, len, off);
        if (n < 0)
            fail("pwrite at %lld: %s (%s)", (long long)off, ename(errno), strerror(errno));
        if (n == 0)
            fail("pwrite at %lld returned 0", (long long)off);
        p += n, len -= n, off += n;
    }
}

/* read exactly len bytes at off (short only at EOF); returns bytes read */
static __attribute__((unused)) size_t read_at(int fd, void *buf, size_t len, off_t off)
{
    char *p = buf;
    size_t got = 0;
    while (got < len) {
        ssize_t n = pread(fd, p + got, len - got, off + got);
        if (n < 0)
            fail("pread at %lld: %s (%s)", (long long)(off + got), ename(errno), strerror(errno));
        if (n == 0)
            break;
        got += n;
    }
    return got;
}

/* create/replace NAME with exactly DATA */
static __attribute__((unused)) void put_file(const char *name, const char *data, size_t len, mode_t mode)
{
    int fd = openat(DIRFD, name, O_WRONLY | O_CREAT | O_TRUNC, mode);
    if (fd < 0)
        fail("create %s: %s (%s)", name, ename(errno), strerror(errno));
    write_all(fd, data, len, 0);
    if (close(fd) < 0)
        fail("close %s: %s", name, ename(errno));
}

/* the file NAME must contain exactly DATA (len bytes) */
static __attribute__((unused)) void expect_content(const char *name, const char *data, size_t len)
{
    int fd = openat(DIRFD, name, O_RDONLY);
    if (fd < 0)
        fail("open %s for reading: %s (%s)", name, ename(errno), strerror(errno));
    char *buf = malloc(len + 2);
    size_t got = read_at(fd, buf, len + 1, 0);
    close(fd);
    if (got != len)
        fail("content of %s: expected %zu bytes, got %zu", name, len, got);
    for (size_t i = 0; i < len; i++)
        if (buf[i] != data[i])
            fail("content of %s differs at byte %zu: expected 0x%02x, got 0x%02x", name, i,
                 (unsigned char)data[i], (unsigned char)buf[i]);
    free(buf);
}
#define EXPECT_STR(name, s) expect_content(name, s, strlen(s))

static __attribute__((unused)) struct stat lst(const char *name)
{
    struct stat st;
    if (fstatat(DIRFD, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        fail("lstat %s: %s (%s)", name, ename(errno), strerror(errno));
    return st;
}

static __attribute__((unused)) int errno_by_name(const char *name)
{
    for (int e = 1; e < 4096; e++) {
        const char *n = strerrorname_np(e);
        if (n && strcmp(n, name) == 0)
            return e;
    }
    return -1;
}
#endif
