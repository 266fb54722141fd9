/* rename2 DIR: rename(2) and renameat2() with RENAME_NOREPLACE / RENAME_EXCHANGE. */
#include "common.h"
#include <linux/fs.h>
#include <sys/syscall.h>

static long ren2(const char *a, const char *b, unsigned fl)
{
    return syscall(SYS_renameat2, DIRFD, a, DIRFD, b, fl);
}

int main(int argc, char **argv)
{
    probe_init(argc, argv, 2, "DIR");
    struct stat st;
    put_file("a", "A", 1, 0644);
    put_file("b", "B", 1, 0644);
    ino_t ino_a = lst("a").st_ino;

    OK(renameat(DIRFD, "a", DIRFD, "c"));               /* plain rename */
    ERR(fstatat(DIRFD, "a", &st, AT_SYMLINK_NOFOLLOW), ENOENT);
    EXPECT_STR("c", "A");
    EQ(lst("c").st_ino, ino_a, "st_ino kept by rename");
    OK(renameat(DIRFD, "c", DIRFD, "b"));               /* replaces b */
    ERR(fstatat(DIRFD, "c", &st, AT_SYMLINK_NOFOLLOW), ENOENT);
    EXPECT_STR("b", "A");
    ERR(renameat(DIRFD, "nonexistent", DIRFD, "z"), ENOENT);

    put_file("a", "A2", 2, 0644);
    ERR(ren2("a", "b", RENAME_NOREPLACE), EEXIST);
    EXPECT_STR("a", "A2");
    EXPECT_STR("b", "A");
    OK(ren2("a", "n", RENAME_NOREPLACE));
    ERR(fstatat(DIRFD, "a", &st, AT_SYMLINK_NOFOLLOW), ENOENT);
    EXPECT_STR("n", "A2");

    OK(ren2("n", "b", RENAME_EXCHANGE));
    EXPECT_STR("n", "A");
    EXPECT_STR("b", "A2");
    ERR(ren2("n", "missing", RENAME_EXCHANGE), ENOENT);
    ERR(ren2("n", "b", RENAME_EXCHANGE | RENAME_NOREPLACE), EINVAL);

    /* exchange a file with a directory */
    OK(mkdirat(DIRFD, "d", 0755));
    put_file("d/inner", "I", 1, 0644);
    OK(ren2("n", "d", RENAME_EXCHANGE));
    TRUE(S_ISREG(lst("d").st_mode), "after exchange d should be a file");
    TRUE(S_ISDIR(lst("n").st_mode), "after exchange n should be a dir");
    EXPECT_STR("d", "A");
    EXPECT_STR("n/inner", "I");

    /* directory renames and their errors */
    OK(mkdirat(DIRFD, "e", 0755));
    ERR(renameat(DIRFD, "e", DIRFD, "n"), ENOTEMPTY);   /* over non-empty dir */
    ERR(renameat(DIRFD, "b", DIRFD, "n"), EISDIR);      /* file over dir */
    ERR(renameat(DIRFD, "e", DIRFD, "b"), ENOTDIR);     /* dir over file */
    ERR(renameat(DIRFD, "n", DIRFD, "n/sub"), EINVAL);  /* into itself */
    OK(renameat(DIRFD, "n", DIRFD, "e"));               /* dir over empty dir */
    EXPECT_STR("e/inner", "I");
    ERR(fstatat(DIRFD, "n", &st, AT_SYMLINK_NOFOLLOW), ENOENT);
    OK(mkdirat(DIRFD, "e/sub", 0755));
    OK(renameat(DIRFD, "b", DIRFD, "e/sub/b2"));         /* across directories */
    EXPECT_STR("e/sub/b2", "A2");

    /* rename onto another name of the same inode: success, nothing changes */
    OK(linkat(DIRFD, "d", DIRFD, "d_link", 0));
    OK(renameat(DIRFD, "d", DIRFD, "d_link"));
    EQ(lst("d").st_nlink, 2, "nlink after rename onto own hard link");
    EXPECT_STR("d_link", "A");
    return 0;
}
