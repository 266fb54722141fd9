/* churn DIR N: creates N files of 100 bytes in DIR (which must exist), renames each within DIR,
 * unlinks each; prints one line per phase: "create SECONDS", "rename SECONDS", "delete SECONDS".
 * Exits non-zero with the failing call on the first error. Used by scripts/bench/run.sh. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
static void fail(const char *op, const char *p) { fprintf(stderr, "churn: %s %s: %s\n", op, p, strerror(errno)); exit(1); }

int main(int argc, char **argv) {
  if (argc != 3) { fprintf(stderr, "usage: churn DIR N\n"); return 2; }
  int n = atoi(argv[2]);
  int dfd = open(argv[1], O_RDONLY | O_DIRECTORY);
  if (dfd < 0) fail("open", argv[1]);
  char a[64], b[64], data[100];
  memset(data, 'c', sizeof data);
  double t0 = now();
  for (int i = 0; i < n; i++) {
    snprintf(a, sizeof a, "churn-%05d.tmp", i);
    int fd = openat(dfd, a, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0) fail("create", a);
    if (write(fd, data, sizeof data) != (ssize_t)sizeof data) fail("write", a);
    if (close(fd) < 0) fail("close", a);
  }
  double t1 = now();
  for (int i = 0; i < n; i++) {
    snprintf(a, sizeof a, "churn-%05d.tmp", i);
    snprintf(b, sizeof b, "churn-%05d.dat", i);
    if (renameat(dfd, a, dfd, b) < 0) fail("rename", a);
  }
  double t2 = now();
  for (int i = 0; i < n; i++) {
    snprintf(b, sizeof b, "churn-%05d.dat", i);
    if (unlinkat(dfd, b, 0) < 0) fail("unlink", b);
  }
  double t3 = now();
  printf("create %.3f\nrename %.3f\ndelete %.3f\n", t1 - t0, t2 - t1, t3 - t2);
  return 0;
}
