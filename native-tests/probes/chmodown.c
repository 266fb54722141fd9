/* chmodown DIR: chmod/fchmod/chown/fchown/lchown (run as root). */
#include "common.h"
#include <time.h>

int main(int argc, char **argv)
{
    probe_init(argc, argv, 2, "DIR");
    put_file("f", "x", 1, 0644);
    OK(fchmodat(DIRFD, "f", 0751, 0));
    EQ(lst("f").st_mode & 07777, 0751, "mode after chmod 0751");
    int fd = OK(openat(DIRFD, "f", O_RDONLY));
    OK(fchmod(fd, 0600));
    struct stat st;
    OK(fstat(fd, &st));
    EQ(st.st_mode & 07777, 0600, "fstat mode after fchmod 0600");
    OK(fchmodat(DIRFD, "f", 04755, 0));
    EQ(lst("f").st_mode & 07777, 04755, "mode after chmod 04755 (setuid)");
    OK(fchmodat(DIRFD, "f", 02755, 0));
    EQ(lst("f").st_mode & 07777, 02755, "mode after chmod 02755 (setgid)");

    OK(fchownat(DIRFD, "f", 1234, 5678, 0));
    st = lst("f");
    EQ(st.st_uid, 1234, "uid after chown");
    EQ(st.st_gid, 5678, "gid after chown");
    OK(fchown(fd, -1, 42));
    OK(fstat(fd, &st));
    EQ(st.st_uid, 1234, "uid kept by fchown(-1, 42)");
    EQ(st.st_gid, 42, "gid after fchown(-1, 42)");
    close(fd);

    OK(mkdirat(DIRFD, "d", 0755));
    OK(fchmodat(DIRFD, "d", 01777, 0));
    EQ(lst("d").st_mode & 07777, 01777, "dir mode after chmod 01777 (sticky)");
    OK(fchownat(DIRFD, "d", 99, 98, 0));
    EQ(lst("d").st_uid, 99, "dir uid");

    OK(symlinkat("f", DIRFD, "l"));
    OK(fchownat(DIRFD, "l", 11, 22, AT_SYMLINK_NOFOLLOW));
    st = lst("l");
    EQ(st.st_uid, 11, "symlink uid after lchown");
    EQ(st.st_gid, 22, "symlink gid after lchown");
    EQ(lst("f").st_uid, 1234, "target uid unchanged by lchown");
    ERR(fchmodat(DIRFD, "missing", 0644, 0), ENOENT);

    /* a time-ordered ctime change */
    struct stat before = lst("f");
    struct timespec d = {0, 20 * 1000 * 1000};
    nanosleep(&d, NULL);
    OK(fchmodat(DIRFD, "f", 0640, 0));
    st = lst("f");
    TRUE(st.st_ctim.tv_sec > before.st_ctim.tv_sec ||
         (st.st_ctim.tv_sec == before.st_ctim.tv_sec && st.st_ctim.tv_nsec > before.st_ctim.tv_nsec),
         "ctime did not advance on chmod");
    return 0;
}
