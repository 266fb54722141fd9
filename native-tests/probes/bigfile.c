/* bigfile DIR: a 5 GiB sparse file: writes across the 2 GiB and 4 GiB boundaries and at the
 * end, stat size, read back after reopen, hole reads zero, few blocks used. */
#include "common.h"

int main(int argc, char **argv)
{
    probe_init(argc, argv, 2, "DIR");
    const off_t GB = 1LL << 30, SIZE = 5 * GB;
    char pat[65536], b[65536];
    for (size_t i = 0; i < sizeof pat; i++) pat[i] = (char)(i * 131 + 7);
    const off_t offs[] = {2 * GB - 100, 4 * GB - 3000, 4 * GB + 123457, SIZE - (off_t)sizeof pat};
    int fd = OK(openat(DIRFD, "big5g", O_RDWR | O_CREAT | O_TRUNC, 0644));
    for (int i = 0; i < 4; i++)
        write_all(fd, pat, sizeof pat, offs[i]);
    struct stat st;
    OK(fstat(fd, &st));
    EQ(st.st_size, SIZE, "fstat size of 5 GiB file");
    EQ(OK(lseek(fd, 0, SEEK_END)), SIZE, "lseek SEEK_END");
    OK(close(fd));
    st = lst("big5g");
    EQ(st.st_size, SIZE, "stat size of 5 GiB file");
    TRUE(st.st_blocks * 512 < 64LL << 20, "5 GiB sparse file uses %lld blocks", (long long)st.st_blocks);

    fd = OK(openat(DIRFD, "big5g", O_RDONLY));
    for (int i = 0; i < 4; i++) {
        EQ(read_at(fd, b, sizeof b, offs[i]), sizeof b, "read at %lld", (long long)offs[i]);
        for (size_t j = 0; j < sizeof b; j++)
            if (b[j] != pat[j])
                fail("data at %lld differs (offset %zu in block)", (long long)offs[i], j);
    }
    EQ(read_at(fd, b, 4096, 3 * GB), 4096, "read in hole at 3 GiB");
    for (int j = 0; j < 4096; j++)
        if (b[j]) fail("hole at 3 GiB not zero at %d", j);
    EQ(read_at(fd, b, sizeof b, SIZE - 10), 10, "short read at EOF-10");
    EQ(read_at(fd, b, sizeof b, SIZE), 0, "read at EOF");
    OK(close(fd));
    /* truncate it back below 4 GiB and past again */
    fd = OK(openat(DIRFD, "big5g", O_RDWR));
    OK(ftruncate(fd, 4 * GB + 1));
    OK(fstat(fd, &st));
    EQ(st.st_size, 4 * GB + 1, "size after ftruncate(4 GiB + 1)");
    EQ(read_at(fd, b, 2, 4 * GB - 1), 2, "read across 4 GiB after truncate");
    OK(close(fd));
    return 0;
}
