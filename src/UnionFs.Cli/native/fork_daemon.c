/*
 * `unionfs mount` (without -f/-d) splits into a waiting foreground process and the daemon here, before the .NET
 * runtime starts: an ELF constructor runs ahead of main(), while the process has one thread and fork() is safe.
 * Starting the daemon as a second copy of the executable instead (Daemon.SpawnAndWait, still the fallback) pays the
 * runtime's start-up twice, about half of the mount latency.
 *
 * The child goes on into the runtime with UNIONFS_DAEMON_STATUS_FD naming a pipe, exactly as a re-executed daemon
 * child does (see Daemon.cs). It writes warning lines, then "OK" once the mount is live, or one error line and
 * exits. The parent never starts the runtime: it relays those lines to stderr and exits 0 on "OK", otherwise with
 * the child's exit status.
 *
 * Only the plainest command lines fork here: "unionfs mount ..." or "unionfs -o ...", with none of the arguments
 * that keep the command in the foreground or make it print something. Anything else runs as before.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define STATUS_VAR "UNIONFS_DAEMON_STATUS_FD"

static int is_mount(int argc, char **argv)
{
    return argc >= 2 && (strcmp(argv[1], "mount") == 0 || strcmp(argv[1], "-o") == 0 || strcmp(argv[1], "loopback") == 0);
}

static int is_background_mount(int argc, char **argv)
{
    static const char *const stay[] = { "-f", "--foreground", "-d", "--debug", "-h", "--help", "-V", "--version" };
    if (argc < 3 || strcmp(argv[1], "loopback") == 0 || !is_mount(argc, argv)) return 0;
    for (int i = 1; i < argc; i++)
        for (size_t k = 0; k < sizeof stay / sizeof stay[0]; k++)
            if (strcmp(argv[i], stay[k]) == 0) return 0;
    return 1;
}

/* The parent's side: relay the child's report, return the exit status for the mount command. */
static int wait_for_daemon(int fd, pid_t child)
{
    char buf[4096];
    size_t len = 0;
    for (;;) {
        ssize_t n = read(fd, buf + len, sizeof buf - 1 - len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        len += (size_t)n;
        if (len == sizeof buf - 1) break;
    }
    buf[len] = 0;
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == ' ')) buf[--len] = 0;

    /* Success is a last line of "OK"; the lines before it are warnings. */
    char *last = strrchr(buf, '\n');
    char *final = last ? last + 1 : buf;
    if (strcmp(final, "OK") == 0) {
        if (last) { *last = 0; fprintf(stderr, "%s\n", buf); }
        return 0;
    }
    fprintf(stderr, "%s\n", len > 0 ? buf : "unionfs: the daemon exited before the mount was ready");
    int status = 0;
    while (waitpid(child, &status, 0) < 0 && errno == EINTR) { }
    return WIFEXITED(status) && WEXITSTATUS(status) != 0 ? WEXITSTATUS(status) : 1;
}

__attribute__((constructor)) static void fork_daemon(int argc, char **argv, char **envp)
{
    (void)envp;
    /* A FUSE daemon's GC: the default gen0 budget follows the L3 size (16 MiB here), and a find over 17,000 files
     * left 14 MB of garbage resident without a single collection. 1 MiB (hex, as the runtime reads it) keeps the
     * heap near its live size for a dozen cheap gen0 collections. Set here, before the runtime reads its
     * configuration, for the serving processes only (the engine is another executable, unionfs-engine, with the
     * default budget). A value already in the environment wins. */
    if (is_mount(argc, argv)) setenv("DOTNET_GCGen0MaxBudget", "100000", 0);
    if (getenv(STATUS_VAR) != NULL || !is_background_mount(argc, argv)) return;
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0) return;
    pid_t pid = fork();
    if (pid < 0) { close(fds[0]); close(fds[1]); return; } /* the runtime's own spawn path takes over */
    if (pid == 0) {
        char value[16];
        close(fds[0]);
        snprintf(value, sizeof value, "%d", fds[1]);
        setenv(STATUS_VAR, value, 1);
        return; /* on into the runtime and Main, as the daemon */
    }
    close(fds[1]);
    _exit(wait_for_daemon(fds[0], pid));
}
