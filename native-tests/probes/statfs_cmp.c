/* statfs_cmp DIR REFDIR [rw|ro]: statvfs(DIR) must describe the same filesystem as
 * statvfs(REFDIR): same fragment size and total blocks/inodes, free space close; the
 * name limit sane. With "ro" the mount must report ST_RDONLY, with "rw" it must not. */
#include "common.h"
#include <sys/statvfs.h>

int main(int argc, char **argv)
{
    probe_init(argc, argv, 3, "DIR REFDIR [rw|ro]");
    struct statvfs a, r;
    OK(statvfs(argv[1], &a));
    OK(statvfs(argv[2], &r));
    TRUE(a.f_bsize > 0 && a.f_frsize > 0, "zero block size (bsize %lu frsize %lu)", a.f_bsize, a.f_frsize);
    EQ((unsigned long long)a.f_blocks * a.f_frsize, (unsigned long long)r.f_blocks * r.f_frsize,
       "total bytes (f_blocks*f_frsize) vs reference fs");
    EQ(a.f_files, r.f_files, "f_files vs reference fs");
    long long fa = (long long)a.f_bfree * a.f_frsize, fr = (long long)r.f_bfree * r.f_frsize;
    long long tol = (long long)(r.f_blocks * r.f_frsize) / 50 + (64LL << 20);
    TRUE(llabs(fa - fr) <= tol, "free bytes %lld vs reference %lld", fa, fr);
    TRUE(a.f_bavail <= a.f_bfree, "f_bavail %lu > f_bfree %lu", a.f_bavail, a.f_bfree);
    TRUE(a.f_namemax >= 200 && a.f_namemax <= r.f_namemax, "f_namemax %lu (reference %lu)",
         a.f_namemax, r.f_namemax);
    if (argc > 3 && !strcmp(argv[3], "ro"))
        TRUE(a.f_flag & ST_RDONLY, "ST_RDONLY not set in f_flag (0x%lx)", a.f_flag);
    if (argc > 3 && !strcmp(argv[3], "rw"))
        TRUE(!(a.f_flag & ST_RDONLY), "ST_RDONLY set on a writable mount (0x%lx)", a.f_flag);
    return 0;
}
