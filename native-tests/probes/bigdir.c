/* bigdir DIR create N | count N | drain N
 *   create: make N empty files f00000.. in DIR
 *   count:  readdir must return exactly N names + "." + "..", each once; telldir/seekdir
 *           must replay the same names
 *   drain:  unlink every entry as soon as readdir returns it; no name may come twice, all N
 *           must be seen, the directory must end up empty */
#include "common.h"

static int cmpstr(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
    probe_init(argc, argv, 4, "DIR create|count|drain N");
    const char *mode = argv[2];
    int n = atoi(argv[3]);
    char name[32];
    if (!strcmp(mode, "create")) {
        for (int i = 0; i < n; i++) {
            snprintf(name, sizeof name, "f%05d", i);
            int fd = openat(DIRFD, name, O_WRONLY | O_CREAT | O_EXCL, 0644);
            if (fd < 0) fail("create %s: %s", name, ename(errno));
            close(fd);
        }
        return 0;
    }
    char *seen = calloc(n, 1);
    int fd = OK(dup(DIRFD));
    DIR *d = fdopendir(fd);
    TRUE(d != NULL, "fdopendir: %s", ename(errno));
    int total = 0, dots = 0, dotdots = 0;
    long pos = -1;
    char **replay = calloc(11, sizeof(char *));
    int replayed = 0;
    struct dirent *e;
    int drain = !strcmp(mode, "drain");
    for (;;) {
        errno = 0;
        e = readdir(d);
        if (!e) {
            if (errno) fail("readdir: %s", ename(errno));
            break;
        }
        if (!strcmp(e->d_name, ".")) { dots++; continue; }
        if (!strcmp(e->d_name, "..")) { dotdots++; continue; }
        int idx;
        char tail;
        if (sscanf(e->d_name, "f%5d%c", &idx, &tail) != 1 || idx < 0 || idx >= n)
            fail("unexpected name '%s' in listing", e->d_name);
        if (seen[idx])
            fail("name '%s' returned twice by readdir (after %d entries)", e->d_name, total);
        seen[idx] = 1;
        total++;
        if (drain) {
            if (unlinkat(DIRFD, e->d_name, 0) < 0)
                fail("unlink %s during iteration: %s", e->d_name, ename(errno));
        } else {
            if (total == n / 2) pos = telldir(d);
            else if (pos >= 0 && replayed < 10) replay[replayed++] = strdup(e->d_name);
        }
    }
    EQ(total, n, "number of names returned by readdir");
    EQ(dots, 1, "number of '.' entries");
    EQ(dotdots, 1, "number of '..' entries");
    if (!drain && pos >= 0) {
        seekdir(d, pos);
        for (int i = 0; i < replayed; i++) {
            e = readdir(d);
            TRUE(e != NULL, "readdir after seekdir ended early at %d", i);
            TRUE(!strcmp(e->d_name, replay[i]), "seekdir replay #%d: expected %s, got %s", i,
                 replay[i], e->d_name);
        }
    }
    if (drain) {
        rewinddir(d);
        int left = 0;
        char *names[8];
        while ((e = readdir(d)))
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
                if (left < 8) names[left++] = strdup(e->d_name);
        if (left) {
            qsort(names, left, sizeof *names, cmpstr);
            fail("directory not empty after draining: first leftover %s (%d+ left)", names[0], left);
        }
    }
    closedir(d);
    return 0;
}
