/* tmpfile DIR: O_TMPFILE creates an unnamed file (nlink 0, not listed), linkat with
 * AT_EMPTY_PATH gives it a name; O_TMPFILE|O_EXCL cannot be linked. */
#include "common.h"

static int count_entries(const char *sub)
{
    int fd = OK(openat(DIRFD, sub, O_RDONLY | O_DIRECTORY));
    DIR *d = fdopendir(fd);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

int main(int argc, char **argv)
{
    probe_init(argc, argv, 2, "DIR");
    OK(mkdirat(DIRFD, "t", 0755));
    int fd = OK(openat(DIRFD, "t", O_TMPFILE | O_RDWR, 0640));
    EQ(OK(write(fd, "tmpdata", 7)), 7, "write to O_TMPFILE");
    struct stat st;
    OK(fstat(fd, &st));
    EQ(st.st_nlink, 0, "nlink of O_TMPFILE file");
    TRUE(S_ISREG(st.st_mode), "O_TMPFILE is not regular (mode %o)", st.st_mode);
    EQ(st.st_mode & 07777, 0640, "mode of O_TMPFILE file");
    EQ(count_entries("t"), 0, "entries in dir holding an unnamed O_TMPFILE");
    OK(linkat(fd, "", DIRFD, "t/named", AT_EMPTY_PATH));
    OK(fstat(fd, &st));
    EQ(st.st_nlink, 1, "nlink after linkat");
    EQ(lst("t/named").st_ino, st.st_ino, "st_ino of linked name vs fd");
    EXPECT_STR("t/named", "tmpdata");
    EQ(OK(pwrite(fd, "T", 1, 0)), 1, "write after linkat");
    close(fd);
    EXPECT_STR("t/named", "Tmpdata");

    fd = OK(openat(DIRFD, "t", O_TMPFILE | O_EXCL | O_WRONLY, 0600));
    ERR(linkat(fd, "", DIRFD, "t/nope", AT_EMPTY_PATH), ENOENT);
    close(fd);
    fd = OK(openat(DIRFD, "t", O_TMPFILE | O_WRONLY, 0600));
    close(fd); /* never linked: must vanish */
    EQ(count_entries("t"), 1, "entries after an unlinked O_TMPFILE was closed");
    return 0;
}
