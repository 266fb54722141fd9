/* sysop DIR EXPECT OP ARGS...
 * Performs exactly one syscall and checks its outcome. EXPECT is "ok" or an errno name
 * (ENOENT, EEXIST, ...). Paths are relative to DIR. Ops and their outputs (on stdout,
 * only when the call succeeded):
 *   open PATH FLAGS [MODE]     FLAGS: comma list of r,w,rw,creat,excl,trunc,append,
 *                              nonblock,directory,nofollow,tmpfile,path (default mode 0644)
 *   mkdir PATH [MODE] | rmdir PATH | unlink PATH
 *   rename A B | rename_noreplace A B | rename_exchange A B | rename_whiteout A B
 *   link A B | symlink TARGET PATH | mkfifo PATH [MODE] | mknod PATH c|b MAJ MIN
 *   truncate PATH LEN | chmod PATH MODE | chown PATH UID GID (no follow)
 *   utimens PATH ASEC ANSEC MSEC MNSEC (no follow)
 *   stat PATH | lstat PATH     prints "<octal mode> <ino> <nlink> <size>"
 *   readlink PATH              prints the target
 *   setxattr PATH NAME VALUE [create|replace] | getxattr PATH NAME (prints value)
 *   removexattr PATH NAME | listxattr PATH (prints one name per line)
 *   write PATH DATA [OFFSET]   open O_WRONLY (no O_TRUNC), pwrite DATA at OFFSET (0)
 *   append PATH DATA           open O_WRONLY|O_APPEND, write DATA
 */
#include "common.h"
#include <linux/fs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

static int parse_flags(const char *s)
{
    int f = 0, acc = O_RDONLY;
    char *copy = strdup(s), *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (!strcmp(t, "r")) acc = O_RDONLY;
        else if (!strcmp(t, "w")) acc = O_WRONLY;
        else if (!strcmp(t, "rw")) acc = O_RDWR;
        else if (!strcmp(t, "creat")) f |= O_CREAT;
        else if (!strcmp(t, "excl")) f |= O_EXCL;
        else if (!strcmp(t, "trunc")) f |= O_TRUNC;
        else if (!strcmp(t, "append")) f |= O_APPEND;
        else if (!strcmp(t, "nonblock")) f |= O_NONBLOCK;
        else if (!strcmp(t, "directory")) f |= O_DIRECTORY;
        else if (!strcmp(t, "nofollow")) f |= O_NOFOLLOW;
        else if (!strcmp(t, "tmpfile")) f |= O_TMPFILE;
        else if (!strcmp(t, "path")) f |= O_PATH;
        else { fprintf(stderr, "sysop: unknown open flag %s\n", t); exit(2); }
    }
    free(copy);
    return f | acc;
}

static void need(int argc, int n, const char *op)
{
    if (argc < n) {
        fprintf(stderr, "sysop: %s: missing arguments\n", op);
        exit(2);
    }
}

int main(int argc, char **argv)
{
    probe_init(argc, argv, 4, "DIR EXPECT OP ARGS...");
    const char *expect = argv[2], *op = argv[3];
    int want = 0;
    if (strcmp(expect, "ok") != 0) {
        want = errno_by_name(expect);
        if (want < 0) {
            fprintf(stderr, "sysop: unknown errno name %s\n", expect);
            return 2;
        }
    }
    char **a = argv + 4;
    int n = argc - 4;
    long long r = -1;
    char out[65536];
    size_t outlen = 0;
    int e = 0;
    errno = 0;

    if (!strcmp(op, "open")) {
        need(n, 2, op);
        mode_t mode = n > 2 ? strtol(a[2], NULL, 8) : 0644;
        r = openat(DIRFD, a[0], parse_flags(a[1]), mode);
    } else if (!strcmp(op, "mkdir")) {
        need(n, 1, op);
        r = mkdirat(DIRFD, a[0], n > 1 ? strtol(a[1], NULL, 8) : 0755);
    } else if (!strcmp(op, "rmdir")) {
        need(n, 1, op);
        r = unlinkat(DIRFD, a[0], AT_REMOVEDIR);
    } else if (!strcmp(op, "unlink")) {
        need(n, 1, op);
        r = unlinkat(DIRFD, a[0], 0);
    } else if (!strcmp(op, "rename")) {
        need(n, 2, op);
        r = renameat(DIRFD, a[0], DIRFD, a[1]);
    } else if (!strcmp(op, "rename_noreplace") || !strcmp(op, "rename_exchange") ||
               !strcmp(op, "rename_whiteout")) {
        need(n, 2, op);
        unsigned fl = op[7] == 'n' ? RENAME_NOREPLACE
                      : op[7] == 'e' ? RENAME_EXCHANGE : RENAME_WHITEOUT;
        r = syscall(SYS_renameat2, DIRFD, a[0], DIRFD, a[1], fl);
    } else if (!strcmp(op, "link")) {
        need(n, 2, op);
        r = linkat(DIRFD, a[0], DIRFD, a[1], 0);
    } else if (!strcmp(op, "symlink")) {
        need(n, 2, op);
        r = symlinkat(a[0], DIRFD, a[1]);
    } else if (!strcmp(op, "mkfifo")) {
        need(n, 1, op);
        r = mkfifoat(DIRFD, a[0], n > 1 ? strtol(a[1], NULL, 8) : 0644);
    } else if (!strcmp(op, "mknod")) {
        need(n, 4, op);
        mode_t t = a[1][0] == 'b' ? S_IFBLK : S_IFCHR;
        r = mknodat(DIRFD, a[0], t | 0644, makedev(atoi(a[2]), atoi(a[3])));
    } else if (!strcmp(op, "truncate")) {
        need(n, 2, op);
        int fd = openat(DIRFD, a[0], O_WRONLY);
        r = fd < 0 ? fd : ftruncate(fd, strtoll(a[1], NULL, 0));
        e = errno;
        if (fd >= 0) close(fd);
        errno = e;
    } else if (!strcmp(op, "chmod")) {
        need(n, 2, op);
        r = fchmodat(DIRFD, a[0], strtol(a[1], NULL, 8), 0);
    } else if (!strcmp(op, "chown")) {
        need(n, 3, op);
        r = fchownat(DIRFD, a[0], atoi(a[1]), atoi(a[2]), AT_SYMLINK_NOFOLLOW);
    } else if (!strcmp(op, "utimens")) {
        need(n, 5, op);
        struct timespec ts[2] = {{atoll(a[1]), atol(a[2])}, {atoll(a[3]), atol(a[4])}};
        r = utimensat(DIRFD, a[0], ts, AT_SYMLINK_NOFOLLOW);
    } else if (!strcmp(op, "stat") || !strcmp(op, "lstat")) {
        need(n, 1, op);
        struct stat st;
        r = fstatat(DIRFD, a[0], &st, op[0] == 'l' ? AT_SYMLINK_NOFOLLOW : 0);
        if (r == 0)
            outlen = snprintf(out, sizeof out, "%o %llu %llu %lld\n", st.st_mode,
                              (unsigned long long)st.st_ino, (unsigned long long)st.st_nlink,
                              (long long)st.st_size);
    } else if (!strcmp(op, "readlink")) {
        need(n, 1, op);
        r = readlinkat(DIRFD, a[0], out, sizeof out - 1);
        if (r >= 0) { outlen = r; out[outlen++] = '\n'; }
    } else if (!strcmp(op, "setxattr") || !strcmp(op, "getxattr") || !strcmp(op, "removexattr") ||
               !strcmp(op, "listxattr")) {
        need(n, 1, op);
        /* path-based xattr calls on "DIR/PATH" (no follow) */
        char p[8192];
        snprintf(p, sizeof p, "%s/%s", argv[1], a[0]);
        if (op[0] == 's') {
            need(n, 3, op);
            int fl = n > 3 ? (!strcmp(a[3], "create") ? XATTR_CREATE : XATTR_REPLACE) : 0;
            r = lsetxattr(p, a[1], a[2], strlen(a[2]), fl);
        } else if (op[0] == 'g') {
            need(n, 2, op);
            r = lgetxattr(p, a[1], out, sizeof out - 1);
            if (r >= 0) { outlen = r; out[outlen++] = '\n'; }
        } else if (op[0] == 'r') {
            need(n, 2, op);
            r = lremovexattr(p, a[1]);
        } else {
            r = llistxattr(p, out, sizeof out);
            if (r >= 0) {
                outlen = r;
                for (size_t i = 0; i < outlen; i++)
                    if (out[i] == 0) out[i] = '\n';
            }
        }
    } else if (!strcmp(op, "write") || !strcmp(op, "append")) {
        need(n, 2, op);
        int ap = op[0] == 'a';
        int fd = openat(DIRFD, a[0], O_WRONLY | (ap ? O_APPEND : 0));
        if (fd < 0)
            r = fd;
        else {
            off_t off = n > 2 ? strtoll(a[2], NULL, 0) : 0;
            r = ap ? write(fd, a[1], strlen(a[1])) : pwrite(fd, a[1], strlen(a[1]), off);
            e = errno;
            if (r >= 0 && (size_t)r != strlen(a[1])) { r = -1; e = EIO; }
            if (close(fd) < 0 && r >= 0) { r = -1; e = errno; }
            errno = e;
        }
    } else {
        fprintf(stderr, "sysop: unknown op %s\n", op);
        return 2;
    }
    e = errno;

    char what[1024];
    int wl = snprintf(what, sizeof what, "%s", op);
    for (int i = 0; i < n && wl < (int)sizeof what - 64; i++)
        wl += snprintf(what + wl, sizeof what - wl, " %s", a[i]);
    if (want == 0 && r < 0)
        fail("%s: expected success, got %s (%s)", what, ename(e), strerror(e));
    if (want != 0 && r >= 0)
        fail("%s: expected %s, got success", what, ename(want));
    if (want != 0 && e != want)
        fail("%s: expected %s, got %s (%s)", what, ename(want), ename(e), strerror(e));
    if (outlen)
        fwrite(out, 1, outlen, stdout);
    return 0;
}
