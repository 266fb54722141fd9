/* xattr DIR: user.* set/get/list/remove, size probes, ERANGE, ENODATA, create/replace
 * flags, binary and empty values, fd-based calls, directories, symlinks (EPERM). */
#include "common.h"
#include <sys/xattr.h>

static const char *base;
static const char *path(const char *name)
{
    static char p[4][4096];
    static int i;
    i = (i + 1) % 4;
    snprintf(p[i], sizeof p[i], "%s/%s", base, name);
    return p[i];
}

static int list_has(const char *list, ssize_t len, const char *name)
{
    for (ssize_t i = 0; i < len; i += strlen(list + i) + 1)
        if (!strcmp(list + i, name))
            return 1;
    return 0;
}

int main(int argc, char **argv)
{
    probe_init(argc, argv, 2, "DIR");
    base = argv[1];
    char buf[8192];
    put_file("f", "data", 4, 0644);
    const char *f = path("f");

    ERR(getxattr(f, "user.test", buf, sizeof buf), ENODATA);
    OK(setxattr(f, "user.test", "value1", 6, 0));
    EQ(OK(getxattr(f, "user.test", NULL, 0)), 6, "getxattr size probe");
    ERR(getxattr(f, "user.test", buf, 3), ERANGE);
    EQ(OK(getxattr(f, "user.test", buf, sizeof buf)), 6, "getxattr length");
    TRUE(!memcmp(buf, "value1", 6), "getxattr value '%.6s'", buf);

    ERR(setxattr(f, "user.test", "v", 1, XATTR_CREATE), EEXIST);
    ERR(setxattr(f, "user.other", "v", 1, XATTR_REPLACE), ENODATA);
    OK(setxattr(f, "user.test", "value-two", 9, XATTR_REPLACE));
    EQ(OK(getxattr(f, "user.test", buf, sizeof buf)), 9, "getxattr after replace");
    TRUE(!memcmp(buf, "value-two", 9), "replaced value '%.9s'", buf);

    /* binary value with NULs, empty value, many attributes */
    char bin[256];
    for (int i = 0; i < 256; i++) bin[i] = (char)i;
    OK(setxattr(f, "user.bin", bin, sizeof bin, XATTR_CREATE));
    EQ(OK(getxattr(f, "user.bin", buf, sizeof buf)), 256, "binary xattr length");
    TRUE(!memcmp(buf, bin, 256), "binary xattr value differs");
    OK(setxattr(f, "user.empty", "", 0, 0));
    EQ(OK(getxattr(f, "user.empty", buf, sizeof buf)), 0, "empty xattr length");
    for (int i = 0; i < 20; i++) {
        char n[32], v[32];
        snprintf(n, sizeof n, "user.many%02d", i);
        snprintf(v, sizeof v, "v%d", i * i);
        OK(setxattr(f, n, v, strlen(v), 0));
    }

    /* listxattr: size probe, ERANGE, content */
    ssize_t need = OK(listxattr(f, NULL, 0));
    TRUE(need > 0, "listxattr size probe returned %zd", need);
    ERR(listxattr(f, buf, 5), ERANGE);
    ssize_t len = OK(listxattr(f, buf, sizeof buf));
    EQ(len, need, "listxattr length vs size probe");
    TRUE(list_has(buf, len, "user.test"), "user.test missing from listxattr");
    TRUE(list_has(buf, len, "user.bin"), "user.bin missing from listxattr");
    TRUE(list_has(buf, len, "user.empty"), "user.empty missing from listxattr");
    for (int i = 0; i < 20; i++) {
        char n[32];
        snprintf(n, sizeof n, "user.many%02d", i);
        TRUE(list_has(buf, len, n), "%s missing from listxattr", n);
        char v[32];
        snprintf(v, sizeof v, "v%d", i * i);
        EQ(OK(getxattr(f, n, buf + 4096, 4096)), strlen(v), "length of %s", n);
        TRUE(!memcmp(buf + 4096, v, strlen(v)), "value of %s", n);
    }

    /* remove */
    OK(removexattr(f, "user.test"));
    ERR(removexattr(f, "user.test"), ENODATA);
    ERR(getxattr(f, "user.test", buf, sizeof buf), ENODATA);
    len = OK(listxattr(f, buf, sizeof buf));
    TRUE(!list_has(buf, len, "user.test"), "user.test still listed after removexattr");

    /* fd based */
    int fd = OK(openat(DIRFD, "f", O_RDONLY));
    OK(fsetxattr(fd, "user.fd", "viafd", 5, 0));
    EQ(OK(fgetxattr(fd, "user.fd", buf, sizeof buf)), 5, "fgetxattr length");
    EQ(OK(getxattr(f, "user.fd", buf, sizeof buf)), 5, "getxattr of fsetxattr value");
    OK(fremovexattr(fd, "user.fd"));
    close(fd);

    /* directories carry user xattrs; symlinks may not (EPERM) */
    OK(mkdirat(DIRFD, "d", 0755));
    OK(setxattr(path("d"), "user.dir", "dv", 2, 0));
    EQ(OK(getxattr(path("d"), "user.dir", buf, sizeof buf)), 2, "dir xattr length");
    OK(symlinkat("f", DIRFD, "l"));
    ERR(lsetxattr(path("l"), "user.link", "x", 1, 0), EPERM);
    /* getxattr through the symlink reaches the target */
    EQ(OK(getxattr(path("l"), "user.bin", buf, sizeof buf)), 256, "getxattr through symlink");
    ERR(getxattr(path("missing"), "user.x", buf, sizeof buf), ENOENT);
    EXPECT_STR("f", "data");
    return 0;
}
