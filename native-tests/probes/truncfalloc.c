/* truncfalloc DIR: truncate/ftruncate grow+shrink, fallocate modes incl.
 * PUNCH_HOLE|KEEP_SIZE (range reads as zeros, blocks freed, size kept). */
#include "common.h"
#include <linux/falloc.h>

static void expect_bytes(int fd, off_t off, size_t len, int byte, const char *what)
{
    char *b = malloc(len);
    EQ(read_at(fd, b, len, off), len, "%s: bytes read", what);
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)b[i] != byte)
            fail("%s: byte %lld is 0x%02x, expected 0x%02x", what, (long long)(off + i),
                 (unsigned char)b[i], byte);
    free(b);
}

int main(int argc, char **argv)
{
    probe_init(argc, argv, 2, "DIR");
    char buf[10000];
    memset(buf, 'x', sizeof buf);
    put_file("t", buf, sizeof buf, 0644);
    char p[4096];
    snprintf(p, sizeof p, "%s/t", argv[1]);
    OK(truncate(p, 5000));
    EQ(lst("t").st_size, 5000, "size after truncate(5000)");
    OK(truncate(p, 20000));
    EQ(lst("t").st_size, 20000, "size after truncate(20000)");
    int fd = OK(openat(DIRFD, "t", O_RDWR));
    expect_bytes(fd, 0, 5000, 'x', "kept part after shrink+grow");
    expect_bytes(fd, 5000, 15000, 0, "grown part");
    OK(ftruncate(fd, 100));
    struct stat st;
    OK(fstat(fd, &st));
    EQ(st.st_size, 100, "fstat size after ftruncate(100)");
    ERR(ftruncate(fd, -1), EINVAL);
    OK(ftruncate(fd, 0));
    EQ(lst("t").st_size, 0, "size after ftruncate(0)");
    close(fd);
    ERR(truncate(p, -5), EINVAL);
    fd = OK(openat(DIRFD, "t", O_RDONLY));
    TRUE(ftruncate(fd, 10) < 0 && (errno == EINVAL || errno == EBADF),
         "ftruncate on O_RDONLY fd: expected EINVAL/EBADF, got %s", errno ? ename(errno) : "success");
    close(fd);

    /* fallocate mode 0 allocates and extends */
    const off_t MB = 1 << 20;
    fd = OK(openat(DIRFD, "fa", O_RDWR | O_CREAT | O_TRUNC, 0644));
    OK(fallocate(fd, 0, 0, MB));
    OK(fstat(fd, &st));
    EQ(st.st_size, MB, "size after fallocate(0, 1MiB)");
    TRUE(st.st_blocks * 512 >= MB, "fallocate(0,1MiB) allocated only %lld blocks", (long long)st.st_blocks);
    expect_bytes(fd, 0, MB, 0, "fallocated range");
    /* KEEP_SIZE beyond EOF: size unchanged, more blocks */
    blkcnt_t before = st.st_blocks;
    OK(fallocate(fd, FALLOC_FL_KEEP_SIZE, MB, MB));
    OK(fstat(fd, &st));
    EQ(st.st_size, MB, "size after KEEP_SIZE fallocate");
    TRUE(st.st_blocks >= before + MB / 512, "KEEP_SIZE fallocate: blocks %lld -> %lld",
         (long long)before, (long long)st.st_blocks);
    close(fd);

    /* punch a hole in a data-filled file */
    char *d = malloc(MB);
    memset(d, 0xAB, MB);
    fd = OK(openat(DIRFD, "ph", O_RDWR | O_CREAT | O_TRUNC, 0644));
    write_all(fd, d, MB, 0);
    OK(fsync(fd));
    ERR(fallocate(fd, FALLOC_FL_PUNCH_HOLE, MB / 4, MB / 4), EOPNOTSUPP);
    OK(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, MB / 4, MB / 4));
    OK(fstat(fd, &st));
    EQ(st.st_size, MB, "size after punch hole");
    /* 1 MiB written, 256 KiB punched: at most 768 KiB (+ slack for metadata) allocated */
    TRUE(st.st_blocks * 512 <= 3 * MB / 4 + 65536, "punch hole freed too little: %lld blocks left",
         (long long)st.st_blocks);
    expect_bytes(fd, 0, MB / 4, 0xAB, "before hole");
    expect_bytes(fd, MB / 4, MB / 4, 0, "punched range");
    expect_bytes(fd, MB / 2, MB / 2, 0xAB, "after hole");
    close(fd);
    return 0;
}
