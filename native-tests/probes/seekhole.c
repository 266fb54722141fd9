/* seekhole DIR: sparse file layout via lseek(SEEK_DATA/SEEK_HOLE), hole reads, st_blocks. */
#include "common.h"

int main(int argc, char **argv)
{
    probe_init(argc, argv, 2, "DIR");
    const off_t MB = 1 << 20, B = 65536;
    char d[65536];
    memset(d, 'D', sizeof d);
    int fd = OK(openat(DIRFD, "sparse", O_RDWR | O_CREAT | O_TRUNC, 0644));
    write_all(fd, d, B, MB);
    write_all(fd, d, B, 3 * MB);
    OK(ftruncate(fd, 4 * MB));
    OK(fsync(fd));
    close(fd);
    struct stat st = lst("sparse");
    EQ(st.st_size, 4 * MB, "size of sparse file");
    TRUE(st.st_blocks * 512 < 4 * B, "sparse file uses %lld blocks (not sparse?)", (long long)st.st_blocks);

    fd = OK(openat(DIRFD, "sparse", O_RDONLY));
    EQ(OK(lseek(fd, 0, SEEK_DATA)), MB, "SEEK_DATA from 0");
    EQ(OK(lseek(fd, MB, SEEK_HOLE)), MB + B, "SEEK_HOLE from 1MiB");
    EQ(OK(lseek(fd, MB + B, SEEK_DATA)), 3 * MB, "SEEK_DATA from 1MiB+64KiB");
    EQ(OK(lseek(fd, 3 * MB + 10, SEEK_DATA)), 3 * MB + 10, "SEEK_DATA inside data");
    EQ(OK(lseek(fd, 3 * MB, SEEK_HOLE)), 3 * MB + B, "SEEK_HOLE from 3MiB");
    EQ(OK(lseek(fd, 0, SEEK_HOLE)), 0, "SEEK_HOLE from 0");
    ERR(lseek(fd, 3 * MB + B, SEEK_DATA), ENXIO);
    ERR(lseek(fd, 4 * MB, SEEK_DATA), ENXIO);
    ERR(lseek(fd, 4 * MB, SEEK_HOLE), ENXIO);
    EQ(OK(lseek(fd, 4 * MB - 1, SEEK_HOLE)), 4 * MB - 1, "SEEK_HOLE in trailing hole");
    char b[4096];
    EQ(read_at(fd, b, sizeof b, 2 * MB), sizeof b, "read in hole");
    for (size_t i = 0; i < sizeof b; i++)
        if (b[i]) fail("hole byte at %lld is 0x%02x", (long long)(2 * MB + i), (unsigned char)b[i]);
    EQ(read_at(fd, b, sizeof b, MB), sizeof b, "read in data");
    TRUE(b[0] == 'D' && b[4095] == 'D', "data region read back wrong");
    close(fd);
    return 0;
}
