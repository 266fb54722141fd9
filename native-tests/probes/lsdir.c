/* lsdir DIR [SUB] [--check-ino]: print every readdir entry of DIR/SUB as "TYPE NAME"
 * (TYPE from d_type: d f l p c b s ?), in readdir order, including "." and "..".
 * Fails if a name appears twice. With --check-ino, each entry's d_ino must equal the
 * st_ino that lstat reports (except ".." of the mount root). */
#include "common.h"

int main(int argc, char **argv)
{
    probe_init(argc, argv, 2, "DIR [SUB] [--check-ino]");
    const char *sub = ".";
    int check = 0;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--check-ino")) check = 1;
        else sub = argv[i];
    }
    int fd = OK(openat(DIRFD, sub, O_RDONLY | O_DIRECTORY));
    int sfd = OK(dup(fd));
    DIR *d = fdopendir(fd);
    struct dirent *e;
    char **names = NULL;
    size_t n = 0;
    while ((errno = 0, e = readdir(d))) {
        for (size_t i = 0; i < n; i++)
            if (!strcmp(names[i], e->d_name)) fail("name '%s' listed twice", e->d_name);
        names = realloc(names, (n + 1) * sizeof *names);
        names[n++] = strdup(e->d_name);
        char t = '?';
        switch (e->d_type) {
        case DT_DIR: t = 'd'; break;
        case DT_REG: t = 'f'; break;
        case DT_LNK: t = 'l'; break;
        case DT_FIFO: t = 'p'; break;
        case DT_CHR: t = 'c'; break;
        case DT_BLK: t = 'b'; break;
        case DT_SOCK: t = 's'; break;
        }
        printf("%c %s\n", t, e->d_name);
        if (check && strcmp(e->d_name, "..")) {
            struct stat st;
            if (fstatat(sfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                fail("lstat of listed entry %s: %s", e->d_name, ename(errno));
            if (st.st_ino != e->d_ino)
                fail("%s: d_ino %llu != st_ino %llu", e->d_name, (unsigned long long)e->d_ino,
                     (unsigned long long)st.st_ino);
        }
    }
    if (errno) fail("readdir: %s", ename(errno));
    closedir(d);
    return 0;
}
