/* noxattrat CMD [ARG...]: runs CMD with the *xattrat calls of Linux 6.13 (setxattrat, getxattrat, listxattrat,
 * removexattrat) failing with ENOSYS, as under a container runtime's seccomp profile that predates them or on an
 * older kernel; the filter is inherited by everything CMD starts. Needs CAP_SYS_ADMIN (or runs with no_new_privs). */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>

int main(int argc, char **argv)
{
    if (argc < 2) { fprintf(stderr, "usage: noxattrat CMD [ARG...]\n"); return 2; }
    /* The numbers are those of the common syscall table, the same on every architecture. */
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 463, 0, 2),
        BPF_JUMP(BPF_JMP | BPF_JGT | BPF_K, 466, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = { .len = sizeof filter / sizeof filter[0], .filter = filter };
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) {
        fprintf(stderr, "noxattrat: seccomp filter: %s\n", strerror(errno));
        return 1;
    }
    execvp(argv[1], argv + 1);
    fprintf(stderr, "noxattrat: %s: %s\n", argv[1], strerror(errno));
    return 127;
}
