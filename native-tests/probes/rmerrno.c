/* rmerrno DIR: errno of unlink/rmdir/mkdir in the classic error cases. */
#include "common.h"

int main(int argc, char **argv)
{
    probe_init(argc, argv, 2, "DIR");
    OK(mkdirat(DIRFD, "d", 0755));
    put_file("d/f", "x", 1, 0644);
    ERR(unlinkat(DIRFD, "d", AT_REMOVEDIR), ENOTEMPTY);
    ERR(unlinkat(DIRFD, "nonexistent", AT_REMOVEDIR), ENOENT);
    ERR(unlinkat(DIRFD, "nonexistent", 0), ENOENT);
    ERR(unlinkat(DIRFD, "d/nonexistent/x", 0), ENOENT);
    ERR(unlinkat(DIRFD, "d/f", AT_REMOVEDIR), ENOTDIR);
    ERR(unlinkat(DIRFD, "d/f/x", 0), ENOTDIR);
    ERR(unlinkat(DIRFD, "d", 0), EISDIR);
    ERR(mkdirat(DIRFD, "d", 0755), EEXIST);
    ERR(mkdirat(DIRFD, "d/f", 0755), EEXIST);
    ERR(mkdirat(DIRFD, "d/nonexistent/x", 0755), ENOENT);
    ERR(unlinkat(DIRFD, "d/.", AT_REMOVEDIR), EINVAL);
    OK(unlinkat(DIRFD, "d/f", 0));
    ERR(unlinkat(DIRFD, "d/f", 0), ENOENT);
    OK(unlinkat(DIRFD, "d", AT_REMOVEDIR));
    struct stat st;
    ERR(fstatat(DIRFD, "d", &st, AT_SYMLINK_NOFOLLOW), ENOENT);
    /* an open file survives its unlink */
    put_file("g", "still here", 10, 0644);
    int fd = OK(openat(DIRFD, "g", O_RDWR));
    OK(unlinkat(DIRFD, "g", 0));
    ERR(fstatat(DIRFD, "g", &st, AT_SYMLINK_NOFOLLOW), ENOENT);
    char b[16] = {0};
    EQ(OK(pread(fd, b, sizeof b, 0)), 10, "read unlinked-but-open file");
    TRUE(!memcmp(b, "still here", 10), "unlinked file content '%s'", b);
    EQ(OK(pwrite(fd, "S", 1, 0)), 1, "write unlinked-but-open file");
    OK(fstat(fd, &st));
    EQ(st.st_nlink, 0, "st_nlink of unlinked open file");
    OK(close(fd));
    return 0;
}
