/* rw_basic DIR: create/read/write, O_APPEND, O_TRUNC, O_EXCL, two-fd coherency, 1 MiB
 * unaligned writes. */
#include "common.h"

int main(int argc, char **argv)
{
    probe_init(argc, argv, 2, "DIR");
    int fd = OK(openat(DIRFD, "f", O_WRONLY | O_CREAT | O_EXCL, 0640));
    EQ(OK(write(fd, "hello ", 6)), 6, "write 6 bytes");
    OK(close(fd));
    struct stat st = lst("f");
    TRUE(S_ISREG(st.st_mode), "f is not a regular file (mode %o)", st.st_mode);
    EQ(st.st_mode & 07777, 0640, "mode of new file");
    EQ(st.st_size, 6, "size after first write");
    EXPECT_STR("f", "hello ");

    ERR(openat(DIRFD, "f", O_WRONLY | O_CREAT | O_EXCL, 0600), EEXIST);
    ERR(openat(DIRFD, "nonexistent", O_RDONLY), ENOENT);
    ERR(openat(DIRFD, "f/x", O_RDONLY), ENOTDIR);

    /* O_APPEND ignores the file position */
    fd = OK(openat(DIRFD, "f", O_WRONLY | O_APPEND));
    OK(lseek(fd, 0, SEEK_SET));
    EQ(OK(write(fd, "world\n", 6)), 6, "append write");
    EQ(OK(lseek(fd, 0, SEEK_CUR)), 12, "position after append");
    OK(close(fd));
    EXPECT_STR("f", "hello world\n");

    /* overwrite in place with O_RDWR + pwrite, pread back */
    fd = OK(openat(DIRFD, "f", O_RDWR));
    EQ(OK(pwrite(fd, "J", 1, 0)), 1, "pwrite at 0");
    char b[16] = {0};
    EQ(OK(pread(fd, b, 5, 6)), 5, "pread 5 at 6");
    TRUE(!memcmp(b, "world", 5), "pread at 6 returned '%.5s'", b);
    EQ(OK(pread(fd, b, 16, 12)), 0, "pread at EOF");
    ERR(write(OK(openat(DIRFD, "f", O_RDONLY)), "x", 1), EBADF);
    OK(close(fd));
    EXPECT_STR("f", "Jello world\n");

    /* two descriptors: a write through one is visible through the other at once */
    int w = OK(openat(DIRFD, "f", O_WRONLY));
    int r = OK(openat(DIRFD, "f", O_RDONLY));
    EQ(OK(pread(r, b, 5, 0)), 5, "pread before");
    EQ(OK(pwrite(w, "HELLO", 5, 0)), 5, "pwrite via second fd");
    EQ(OK(pread(r, b, 5, 0)), 5, "pread after");
    TRUE(!memcmp(b, "HELLO", 5), "reader saw '%.5s' instead of HELLO", b);
    OK(close(w));
    OK(close(r));

    /* O_TRUNC */
    fd = OK(openat(DIRFD, "f", O_WRONLY | O_TRUNC));
    EQ(lst("f").st_size, 0, "size after O_TRUNC");
    EQ(OK(write(fd, "x", 1)), 1, "write after O_TRUNC");
    OK(close(fd));
    EXPECT_STR("f", "x");

    /* 1 MiB with odd-sized, unaligned writes */
    size_t len = (1 << 20) + 333;
    char *data = malloc(len);
    for (size_t i = 0; i < len; i++)
        data[i] = (char)(i * 7 + (i >> 9));
    fd = OK(openat(DIRFD, "big", O_RDWR | O_CREAT | O_TRUNC, 0644));
    for (size_t off = 0; off < len;) {
        size_t chunk = 4093;
        if (chunk > len - off) chunk = len - off;
        EQ(OK(write(fd, data + off, chunk)), chunk, "write chunk at %zu", off);
        off += chunk;
    }
    OK(close(fd));
    EQ(lst("big").st_size, len, "size of big");
    expect_content("big", data, len);
    return 0;
}
