/* mmapio DIR: mmap read, MAP_SHARED write + msync, read back through read(2);
 * MAP_PRIVATE writes must not reach the file. */
#include "common.h"
#include <sys/mman.h>

int main(int argc, char **argv)
{
    probe_init(argc, argv, 2, "DIR");
    long pg = sysconf(_SC_PAGESIZE);
    size_t len = 3 * pg + 100;
    char *data = malloc(len), *b = malloc(len);
    for (size_t i = 0; i < len; i++) data[i] = 'a' + i % 23;
    put_file("m", data, len, 0644);

    int fd = OK(openat(DIRFD, "m", O_RDONLY));
    char *p = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
    TRUE(p != MAP_FAILED, "mmap PROT_READ failed: %s", ename(errno));
    for (size_t i = 0; i < len; i++)
        if (p[i] != data[i]) fail("mmap read differs at %zu", i);
    OK(munmap(p, len));
    close(fd);

    fd = OK(openat(DIRFD, "m", O_RDWR));
    p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    TRUE(p != MAP_FAILED, "mmap MAP_SHARED rw failed: %s", ename(errno));
    memcpy(p + 10, "SHARED0", 7), memcpy(data + 10, "SHARED0", 7);
    memcpy(p + 2 * pg - 3, "SHARED2", 7), memcpy(data + 2 * pg - 3, "SHARED2", 7);
    memcpy(p + len - 7, "LASTPG!", 7), memcpy(data + len - 7, "LASTPG!", 7);
    OK(msync(p, len, MS_SYNC));
    /* read(2) on another descriptor while still mapped */
    int r = OK(openat(DIRFD, "m", O_RDONLY));
    EQ(read_at(r, b, len, 0), len, "read while mapped");
    for (size_t i = 0; i < len; i++)
        if (b[i] != data[i]) fail("read() after msync differs at byte %zu", i);
    close(r);
    OK(munmap(p, len));
    close(fd);
    EQ(lst("m").st_size, len, "size after MAP_SHARED write");
    expect_content("m", data, len);

    /* MAP_PRIVATE is copy-on-write */
    fd = OK(openat(DIRFD, "m", O_RDONLY));
    p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    TRUE(p != MAP_FAILED, "mmap MAP_PRIVATE failed: %s", ename(errno));
    memcpy(p, "PRIVATE", 7);
    OK(munmap(p, len));
    close(fd);
    expect_content("m", data, len);

    /* write(2) then read through a fresh mapping */
    fd = OK(openat(DIRFD, "m", O_RDWR));
    EQ(OK(pwrite(fd, "VIAWRITE", 8, pg + 1)), 8, "pwrite");
    p = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
    TRUE(p != MAP_FAILED, "mmap after write failed: %s", ename(errno));
    TRUE(!memcmp(p + pg + 1, "VIAWRITE", 8), "mapping does not show data written by pwrite");
    OK(munmap(p, len));
    close(fd);
    return 0;
}
