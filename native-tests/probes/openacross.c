/* openacross DIR: opens of one file that span its copy-up. DIR/f must be a lower file of 3 pages + 100
 * bytes of the pattern 'a' + i % 23. A reader opens and maps the lower file, then writers copy it up and
 * write through write(2) and a shared mapping, while the reader is still open and after it is gone; two
 * writers overlap; every view must show every write, and no open may fail (a FUSE daemon must keep one
 * I/O mode per inode: page cache or passthrough, never both at once). */
#include "common.h"
#include <sys/mman.h>

static long pg;
static size_t len;
static char *want;

static void put(int fd, const char *s, off_t off)
{
    EQ(OK(pwrite(fd, s, strlen(s), off)), (ssize_t)strlen(s), "pwrite at %lld", (long long)off);
    memcpy(want + off, s, strlen(s));
}

static void check_fd(int fd, const char *what)
{
    char *b = malloc(len + 1);
    EQ(read_at(fd, b, len + 1, 0), len, "read(2) length %s", what);
    for (size_t i = 0; i < len; i++)
        if (b[i] != want[i]) fail("read(2) %s differs at byte %zu", what, i);
    free(b);
}

static void check_map(const char *p, const char *what)
{
    for (size_t i = 0; i < len; i++)
        if (p[i] != want[i]) fail("mapping %s differs at byte %zu", what, i);
}

int main(int argc, char **argv)
{
    probe_init(argc, argv, 2, "DIR");
    pg = sysconf(_SC_PAGESIZE);
    len = 3 * pg + 100;
    want = malloc(len);
    for (size_t i = 0; i < len; i++) want[i] = 'a' + i % 23;

    /* a reader of the lower file, mapped */
    int r = OK(openat(DIRFD, "f", O_RDONLY));
    char *rp = mmap(NULL, len, PROT_READ, MAP_SHARED, r, 0);
    TRUE(rp != MAP_FAILED, "mmap of the lower file failed: %s", ename(errno));
    check_map(rp, "of the lower file");

    /* a writer copies the file up while the reader is open */
    int w = OK(openat(DIRFD, "f", O_RDWR));
    put(w, "WRITE1", 5);
    char *wp = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, w, 0);
    TRUE(wp != MAP_FAILED, "shared writable mmap after copy-up failed: %s", ename(errno));
    memcpy(wp + pg + 3, "MMAP1", 5), memcpy(want + pg + 3, "MMAP1", 5);
    OK(msync(wp, len, MS_SYNC));
    check_fd(r, "through the reader opened before copy-up");
    check_map(rp, "of the reader opened before copy-up");
    check_fd(w, "through the writer");

    /* the reader goes; a second writer overlaps the first */
    OK(munmap(rp, len));
    close(r);
    int w2 = OK(openat(DIRFD, "f", O_RDWR));
    put(w2, "WRITE2", 2 * pg - 2);
    check_map(wp, "of the first writer after the second wrote");
    close(w2);
    OK(munmap(wp, len));
    close(w);

    /* all closed: fresh opens of the copied-up file */
    w = OK(openat(DIRFD, "f", O_RDWR));
    put(w, "WRITE3", 7);
    wp = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, w, 0);
    TRUE(wp != MAP_FAILED, "shared writable mmap of the copy failed: %s", ename(errno));
    memcpy(wp + 3 * pg, "MMAP3", 5), memcpy(want + 3 * pg, "MMAP3", 5);
    OK(msync(wp, len, MS_SYNC));
    r = OK(openat(DIRFD, "f", O_RDONLY));
    check_fd(r, "through a reader opened after copy-up");
    int w3 = OK(openat(DIRFD, "f", O_WRONLY | O_APPEND));
    EQ(OK(write(w3, "TAIL", 4)), 4, "append");
    want = realloc(want, len + 4);
    memcpy(want + len, "TAIL", 4);
    len += 4;
    close(w3);
    check_fd(r, "after an append by another open");
    check_fd(w, "through the writer after an append");
    close(r);
    OK(munmap(wp, len - 4));
    close(w);
    expect_content("f", want, len);

    /* a read-only open first, then writers while it is open (the first open of a file may set up its I/O) */
    r = OK(openat(DIRFD, "f", O_RDONLY));
    w = OK(openat(DIRFD, "f", O_WRONLY | O_APPEND));
    EQ(OK(write(w, "END", 3)), 3, "append while a read-only open is the first");
    want = realloc(want, len + 3);
    memcpy(want + len, "END", 3);
    len += 3;
    close(w);
    w = OK(openat(DIRFD, "f", O_RDWR));
    put(w, "RW", 1);
    check_fd(r, "through the first, read-only open");
    close(w);
    close(r);
    expect_content("f", want, len);
    return 0;
}
