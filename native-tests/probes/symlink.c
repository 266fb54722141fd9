/* symlink DIR: symlink/readlink exact bytes, lstat vs stat, dangling links, ELOOP. */
#include "common.h"

int main(int argc, char **argv)
{
    probe_init(argc, argv, 2, "DIR");
    const char *t = "some/../odd target//with spaces/";
    char buf[8192];
    OK(symlinkat(t, DIRFD, "l"));
    struct stat st = lst("l");
    TRUE(S_ISLNK(st.st_mode), "l is not a symlink (mode %o)", st.st_mode);
    EQ(st.st_size, strlen(t), "lstat size of symlink");
    ssize_t n = OK(readlinkat(DIRFD, "l", buf, sizeof buf));
    EQ(n, strlen(t), "readlink length");
    TRUE(!memcmp(buf, t, n), "readlink returned '%.*s'", (int)n, buf);
    EQ(OK(readlinkat(DIRFD, "l", buf, 4)), 4, "readlink into 4-byte buffer");
    TRUE(!memcmp(buf, t, 4), "truncated readlink '%.4s'", buf);

    /* dangling link: stat fails, lstat works */
    ERR(fstatat(DIRFD, "l", &st, 0), ENOENT);

    /* a link to a file is followed by stat/open but not by lstat/O_NOFOLLOW */
    put_file("file", "data", 4, 0600);
    OK(symlinkat("file", DIRFD, "tofile"));
    OK(fstatat(DIRFD, "tofile", &st, 0));
    TRUE(S_ISREG(st.st_mode), "stat through symlink is not regular (%o)", st.st_mode);
    EQ(st.st_ino, lst("file").st_ino, "stat through symlink st_ino");
    EXPECT_STR("tofile", "data");
    ERR(openat(DIRFD, "tofile", O_RDONLY | O_NOFOLLOW), ELOOP);
    ERR(symlinkat("other", DIRFD, "tofile"), EEXIST);
    ERR(readlinkat(DIRFD, "file", buf, sizeof buf), EINVAL);

    /* absolute and long targets are stored verbatim */
    OK(symlinkat("/etc/passwd", DIRFD, "abs"));
    n = OK(readlinkat(DIRFD, "abs", buf, sizeof buf));
    TRUE(n == 11 && !memcmp(buf, "/etc/passwd", 11), "abs readlink '%.*s'", (int)n, buf);
    char lt[2001];
    for (int i = 0; i < 2000; i++) lt[i] = (i % 50 == 49) ? '/' : 'a' + i % 26;
    lt[2000] = 0;
    OK(symlinkat(lt, DIRFD, "long"));
    n = OK(readlinkat(DIRFD, "long", buf, sizeof buf));
    TRUE(n == 2000 && !memcmp(buf, lt, 2000), "long readlink length %zd", n);

    /* symlink loop */
    OK(symlinkat("loop2", DIRFD, "loop1"));
    OK(symlinkat("loop1", DIRFD, "loop2"));
    ERR(openat(DIRFD, "loop1", O_RDONLY), ELOOP);

    /* directory symlink used as a path component */
    OK(mkdirat(DIRFD, "d", 0755));
    put_file("d/in", "in", 2, 0644);
    OK(symlinkat("d", DIRFD, "dl"));
    EXPECT_STR("dl/in", "in");
    OK(unlinkat(DIRFD, "dl", 0));
    TRUE(S_ISDIR(lst("d").st_mode), "unlinking a dir symlink removed the dir");
    return 0;
}
