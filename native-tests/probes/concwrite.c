/* concwrite DIR NPROC STRIPES: NPROC processes open one file independently and write
 * disjoint, interleaved 1000-byte stripes (sharing pages) concurrently; the parent then
 * verifies every byte and the final size. */
#include "common.h"
#include <sys/wait.h>

#define STRIPE 1000

static char val(int p, long k, int j) { return (char)('A' + p + 4 * ((k + j) % 5)); }

int main(int argc, char **argv)
{
    probe_init(argc, argv, 4, "DIR NPROC STRIPES");
    int np = atoi(argv[2]);
    long ns = atol(argv[3]);
    int fd = OK(openat(DIRFD, "shared", O_RDWR | O_CREAT | O_TRUNC, 0644));
    close(fd);
    for (int p = 0; p < np; p++) {
        pid_t pid = fork();
        if (pid < 0) fail("fork: %s", ename(errno));
        if (pid == 0) {
            int f = openat(DIRFD, "shared", O_WRONLY);
            if (f < 0) { fprintf(stderr, "child %d open: %s\n", p, ename(errno)); _exit(1); }
            char b[STRIPE];
            for (long k = 0; k < ns; k++) {
                for (int j = 0; j < STRIPE; j++) b[j] = val(p, k, j);
                off_t off = (k * np + p) * (off_t)STRIPE;
                if (pwrite(f, b, STRIPE, off) != STRIPE) {
                    fprintf(stderr, "child %d pwrite at %lld: %s\n", p, (long long)off, ename(errno));
                    _exit(1);
                }
            }
            if (close(f) < 0) _exit(1);
            _exit(0);
        }
    }
    int bad = 0, status;
    for (int p = 0; p < np; p++) {
        if (wait(&status) < 0) fail("wait: %s", ename(errno));
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) bad++;
    }
    if (bad) fail("%d writer process(es) failed", bad);
    off_t size = (off_t)ns * np * STRIPE;
    EQ(lst("shared").st_size, size, "size of concurrently written file");
    fd = OK(openat(DIRFD, "shared", O_RDONLY));
    char *all = malloc(size);
    EQ(read_at(fd, all, size, 0), size, "bytes read back");
    close(fd);
    for (long k = 0; k < ns; k++)
        for (int p = 0; p < np; p++)
            for (int j = 0; j < STRIPE; j++) {
                off_t off = (k * np + p) * (off_t)STRIPE + j;
                if (all[off] != val(p, k, j))
                    fail("byte %lld (writer %d, stripe %ld): expected '%c', got 0x%02x",
                         (long long)off, p, k, val(p, k, j), (unsigned char)all[off]);
            }
    return 0;
}
