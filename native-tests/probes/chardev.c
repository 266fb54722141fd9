/* chardev DIR nodev|dev: mknod a char device (1,3 = /dev/null) and a block device as root.
 * With "dev" the node must work (write succeeds); with "nodev" (mount has nodev) open
 * must fail with EACCES. */
#include "common.h"
#include <sys/sysmacros.h>

int main(int argc, char **argv)
{
    probe_init(argc, argv, 3, "DIR nodev|dev");
    OK(mknodat(DIRFD, "null", S_IFCHR | 0666, makedev(1, 3)));
    struct stat st = lst("null");
    TRUE(S_ISCHR(st.st_mode), "null is not a char device (mode %o)", st.st_mode);
    EQ(st.st_mode & 07777, 0666, "device mode");
    EQ(major(st.st_rdev), 1, "major of null");
    EQ(minor(st.st_rdev), 3, "minor of null");
    OK(mknodat(DIRFD, "loop", S_IFBLK | 0600, makedev(7, 200)));
    st = lst("loop");
    TRUE(S_ISBLK(st.st_mode), "loop is not a block device (mode %o)", st.st_mode);
    EQ(major(st.st_rdev), 7, "major of block dev");
    EQ(minor(st.st_rdev), 200, "minor of block dev");
    OK(mknodat(DIRFD, "reg", S_IFREG | 0600, 0));
    TRUE(S_ISREG(lst("reg").st_mode), "mknod S_IFREG did not create a regular file");
    ERR(mknodat(DIRFD, "null", S_IFCHR | 0666, makedev(1, 3)), EEXIST);
    if (!strcmp(argv[2], "dev")) {
        int fd = OK(openat(DIRFD, "null", O_WRONLY));
        EQ(OK(write(fd, "discard", 7)), 7, "write to /dev/null node");
        char b[4];
        close(fd);
        fd = OK(openat(DIRFD, "null", O_RDONLY));
        EQ(OK(read(fd, b, sizeof b)), 0, "read from /dev/null node");
        close(fd);
    } else {
        ERR(openat(DIRFD, "null", O_WRONLY), EACCES);
    }
    return 0;
}
