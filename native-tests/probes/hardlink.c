/* hardlink DIR: link(2), same st_ino, nlink accounting, shared data. */
#include "common.h"

int main(int argc, char **argv)
{
    probe_init(argc, argv, 2, "DIR");
    put_file("f", "one", 3, 0644);
    struct stat a = lst("f"), b, st;
    EQ(a.st_nlink, 1, "nlink of new file");
    OK(linkat(DIRFD, "f", DIRFD, "g", 0));
    a = lst("f"), b = lst("g");
    EQ(b.st_ino, a.st_ino, "st_ino of g vs f");
    EQ(a.st_nlink, 2, "nlink of f after link");
    EQ(b.st_nlink, 2, "nlink of g after link");
    int fd = OK(openat(DIRFD, "g", O_WRONLY | O_TRUNC));
    OK(write(fd, "two", 3));
    OK(fstat(fd, &st));
    EQ(st.st_ino, a.st_ino, "fstat st_ino via g");
    OK(close(fd));
    EXPECT_STR("f", "two");
    OK(mkdirat(DIRFD, "sub", 0755));
    OK(linkat(DIRFD, "f", DIRFD, "sub/h", 0));
    EQ(lst("g").st_nlink, 3, "nlink after second link");
    EQ(lst("sub/h").st_ino, a.st_ino, "st_ino of sub/h");
    ERR(linkat(DIRFD, "f", DIRFD, "g", 0), EEXIST);
    ERR(linkat(DIRFD, "sub", DIRFD, "sublink", 0), EPERM);
    ERR(linkat(DIRFD, "missing", DIRFD, "x", 0), ENOENT);
    OK(unlinkat(DIRFD, "f", 0));
    EQ(lst("g").st_nlink, 2, "nlink after unlinking f");
    EXPECT_STR("sub/h", "two");
    OK(unlinkat(DIRFD, "sub/h", 0));
    EQ(lst("g").st_nlink, 1, "nlink after unlinking sub/h");
    return 0;
}
