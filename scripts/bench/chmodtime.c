/* chmodtime PATH MODE: chmod(2) of PATH to MODE (octal); prints the seconds the call alone took.
 * Timing the call and not the chmod command keeps process start-up out of the figure: after the bench drops
 * caches, starting bash and chmod from disk takes several milliseconds, more than a metadata-only copy-up.
 * Exits non-zero with the error if the call fails. Used by scripts/bench/run.sh. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }

int main(int argc, char **argv) {
  if (argc != 3) { fprintf(stderr, "usage: chmodtime PATH MODE\n"); return 2; }
  mode_t mode = (mode_t)strtoul(argv[2], NULL, 8);
  double t0 = now();
  if (chmod(argv[1], mode) != 0) { fprintf(stderr, "chmodtime: chmod %s: %s\n", argv[1], strerror(errno)); return 1; }
  printf("%.6f\n", now() - t0);
  return 0;
}
