/* utimens DIR: utimensat/futimens with nanoseconds, UTIME_OMIT, UTIME_NOW, symlinks. */
#include "common.h"
#include <time.h>

static void expect_times(const char *name, long long as, long an, long long ms, long mn)
{
    struct stat st = lst(name);
    EQ(st.st_atim.tv_sec, as, "%s atime sec", name);
    EQ(st.st_atim.tv_nsec, an, "%s atime nsec", name);
    EQ(st.st_mtim.tv_sec, ms, "%s mtime sec", name);
    EQ(st.st_mtim.tv_nsec, mn, "%s mtime nsec", name);
}

int main(int argc, char **argv)
{
    probe_init(argc, argv, 2, "DIR");
    put_file("f", "x", 1, 0644);
    struct timespec ts[2] = {{1000000000, 123456789}, {1234567890, 987654321}};
    OK(utimensat(DIRFD, "f", ts, 0));
    expect_times("f", 1000000000, 123456789, 1234567890, 987654321);

    struct timespec om[2] = {{0, UTIME_OMIT}, {1500000000, 1}};
    OK(utimensat(DIRFD, "f", om, 0));
    expect_times("f", 1000000000, 123456789, 1500000000, 1);

    /* times before 1970 and after 2038 */
    struct timespec far[2] = {{-1000, 500}, {4102444800LL, 999999999}};
    OK(utimensat(DIRFD, "f", far, 0));
    expect_times("f", -1000, 500, 4102444800LL, 999999999);

    int fd = OK(openat(DIRFD, "f", O_RDONLY));
    struct timespec ft[2] = {{1600000000, 111}, {1600000001, 222}};
    OK(futimens(fd, ft));
    close(fd);
    expect_times("f", 1600000000, 111, 1600000001, 222);

    struct timespec now[2] = {{0, UTIME_OMIT}, {0, UTIME_NOW}};
    time_t t0 = time(NULL);
    OK(utimensat(DIRFD, "f", now, 0));
    struct stat st = lst("f");
    TRUE(st.st_mtim.tv_sec >= t0 - 2 && st.st_mtim.tv_sec <= t0 + 2,
         "UTIME_NOW gave mtime %lld, now is %lld", (long long)st.st_mtim.tv_sec, (long long)t0);
    EQ(st.st_atim.tv_sec, 1600000000, "atime kept with UTIME_OMIT");

    /* a write moves mtime forward */
    OK(utimensat(DIRFD, "f", ts, 0));
    fd = OK(openat(DIRFD, "f", O_WRONLY));
    OK(write(fd, "y", 1));
    close(fd);
    TRUE(lst("f").st_mtim.tv_sec >= t0 - 2, "write did not update mtime");

    /* symlink own times vs target */
    OK(symlinkat("f", DIRFD, "l"));
    OK(utimensat(DIRFD, "f", ts, 0));
    struct timespec lt[2] = {{1111111111, 11}, {1222222222, 22}};
    OK(utimensat(DIRFD, "l", lt, AT_SYMLINK_NOFOLLOW));
    expect_times("l", 1111111111, 11, 1222222222, 22);
    expect_times("f", 1000000000, 123456789, 1234567890, 987654321);

    OK(mkdirat(DIRFD, "d", 0755));
    OK(utimensat(DIRFD, "d", ts, 0));
    expect_times("d", 1000000000, 123456789, 1234567890, 987654321);
    ERR(utimensat(DIRFD, "missing", ts, 0), ENOENT);
    return 0;
}
