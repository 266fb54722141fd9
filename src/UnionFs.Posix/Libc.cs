using System.Runtime.InteropServices;

namespace UnionFs.Posix;

/// <summary>
/// Raw libc entry points. Every function returns what libc returns; the errno of a failed call is
/// read with <see cref="Errno.Last"/>. Hot-path callers (FUSE request handlers) turn it into a
/// negative errno for the reply; set-up code uses <see cref="PosixException.Check(int,string,string?)"/>.
/// Only the calls Mono.Posix lacks or that must not allocate live here.
/// </summary>
public static unsafe partial class Libc
{
    const string L = "libc";

    // open(2) flags (x86-64 and arm64 generic values).
    public const int O_RDONLY = 0, O_WRONLY = 1, O_RDWR = 2, O_ACCMODE = 3;
    public const int O_CREAT = 0x40, O_EXCL = 0x80, O_NOCTTY = 0x100, O_TRUNC = 0x200, O_APPEND = 0x400;
    public const int O_NONBLOCK = 0x800, O_DIRECTORY = 0x10000, O_NOFOLLOW = 0x20000, O_CLOEXEC = 0x80000;
    public const int O_PATH = 0x200000, O_TMPFILE = 0x410000, O_LARGEFILE = 0x8000, O_DIRECT = 0x4000, O_NOATIME = 0x40000;

    public const int AT_FDCWD = -100, AT_SYMLINK_NOFOLLOW = 0x100, AT_REMOVEDIR = 0x200, AT_SYMLINK_FOLLOW = 0x400,
        AT_EMPTY_PATH = 0x1000, AT_STATX_DONT_SYNC = 0x4000;

    public const uint RENAME_NOREPLACE = 1, RENAME_EXCHANGE = 2, RENAME_WHITEOUT = 4;
    public const ulong RESOLVE_NO_XDEV = 1, RESOLVE_NO_MAGICLINKS = 2, RESOLVE_NO_SYMLINKS = 4, RESOLVE_BENEATH = 8, RESOLVE_IN_ROOT = 0x10;

    public const uint S_IFMT = 0xF000, S_IFSOCK = 0xC000, S_IFLNK = 0xA000, S_IFREG = 0x8000, S_IFBLK = 0x6000,
        S_IFDIR = 0x4000, S_IFCHR = 0x2000, S_IFIFO = 0x1000, S_ISUID = 0x800, S_ISGID = 0x400, S_IXGRP = 0x8;

    public const int SEEK_SET = 0, SEEK_CUR = 1, SEEK_END = 2, SEEK_DATA = 3, SEEK_HOLE = 4;
    public const int MNT_FORCE = 1, MNT_DETACH = 2;
    public const ulong MS_RDONLY = 1, MS_NOSUID = 2, MS_NODEV = 4, MS_NOEXEC = 8, MS_REMOUNT = 32, MS_NOATIME = 1024, MS_NODIRATIME = 2048,
        MS_STRICTATIME = 1UL << 24;
    public const int XATTR_CREATE = 1, XATTR_REPLACE = 2;
    public const uint FICLONE = 0x40049409;
    /// <summary>Inode flags (chattr); FS_CASEFOLD_FL marks a directory whose name lookups ignore case.</summary>
    public const uint FS_IOC_GETFLAGS = 0x80086601;
    public const int FS_CASEFOLD_FL = 0x40000000;
    public const int FALLOC_FL_KEEP_SIZE = 1, FALLOC_FL_PUNCH_HOLE = 2;

    [LibraryImport(L, EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int open(string path, int flags, uint mode);
    [LibraryImport(L, EntryPoint = "openat", SetLastError = true)]
    public static partial int openat(int dirfd, byte* path, int flags, uint mode);
    [LibraryImport(L, EntryPoint = "close", SetLastError = true)]
    public static partial int close(int fd);
    [LibraryImport(L, EntryPoint = "read", SetLastError = true)]
    public static partial nint read(int fd, byte* buf, nint count);
    [LibraryImport(L, EntryPoint = "write", SetLastError = true)]
    public static partial nint write(int fd, byte* buf, nint count);
    [LibraryImport(L, EntryPoint = "writev", SetLastError = true)]
    public static partial nint writev(int fd, IoVec* iov, int iovcnt);
    [LibraryImport(L, EntryPoint = "pread64", SetLastError = true)]
    public static partial nint pread(int fd, byte* buf, nint count, long offset);
    [LibraryImport(L, EntryPoint = "pwrite64", SetLastError = true)]
    public static partial nint pwrite(int fd, byte* buf, nint count, long offset);
    [LibraryImport(L, EntryPoint = "lseek64", SetLastError = true)]
    public static partial long lseek(int fd, long offset, int whence);
    [LibraryImport(L, EntryPoint = "fsync", SetLastError = true)]
    public static partial int fsync(int fd);
    [LibraryImport(L, EntryPoint = "fdatasync", SetLastError = true)]
    public static partial int fdatasync(int fd);
    [LibraryImport(L, EntryPoint = "syncfs", SetLastError = true)]
    public static partial int syncfs(int fd);
    [LibraryImport(L, EntryPoint = "ftruncate64", SetLastError = true)]
    public static partial int ftruncate(int fd, long length);
    /// <summary>Returns 0 or an errno (not -1 with errno set).</summary>
    [LibraryImport(L, EntryPoint = "posix_fadvise64")]
    public static partial int posix_fadvise(int fd, long offset, long len, int advice);
    public const int POSIX_FADV_WILLNEED = 3;

    [LibraryImport(L, EntryPoint = "fallocate64", SetLastError = true)]
    public static partial int fallocate(int fd, int mode, long offset, long len);
    [LibraryImport(L, EntryPoint = "copy_file_range", SetLastError = true)]
    public static partial nint copy_file_range(int fdIn, long* offIn, int fdOut, long* offOut, nint len, uint flags);
    [LibraryImport(L, EntryPoint = "ioctl", SetLastError = true)]
    public static partial int ioctl(int fd, nuint request, void* arg);
    [LibraryImport(L, EntryPoint = "capget", SetLastError = true)]
    public static partial int capget(CapHeader* header, CapData* data);
    [LibraryImport(L, EntryPoint = "capset", SetLastError = true)]
    public static partial int capset(CapHeader* header, CapData* data);
    [LibraryImport(L, EntryPoint = "ioctl", SetLastError = true)]
    public static partial int ioctl(int fd, nuint request, nint arg);
    [LibraryImport(L, EntryPoint = "fcntl", SetLastError = true)]
    public static partial int fcntl(int fd, int cmd, int arg);

    [LibraryImport(L, EntryPoint = "statx", SetLastError = true)]
    public static partial int statx(int dirfd, byte* path, int flags, uint mask, Statx* buf);
    [LibraryImport(L, EntryPoint = "fstatvfs", SetLastError = true)]
    public static partial int fstatvfs(int fd, StatVfs* buf);
    [LibraryImport(L, EntryPoint = "mkdirat", SetLastError = true)]
    public static partial int mkdirat(int dirfd, byte* path, uint mode);
    [LibraryImport(L, EntryPoint = "mknodat", SetLastError = true)]
    public static partial int mknodat(int dirfd, byte* path, uint mode, ulong dev);
    [LibraryImport(L, EntryPoint = "symlinkat", SetLastError = true)]
    public static partial int symlinkat(byte* target, int dirfd, byte* path);
    [LibraryImport(L, EntryPoint = "readlinkat", SetLastError = true)]
    public static partial nint readlinkat(int dirfd, byte* path, byte* buf, nint size);
    [LibraryImport(L, EntryPoint = "linkat", SetLastError = true)]
    public static partial int linkat(int olddirfd, byte* oldpath, int newdirfd, byte* newpath, int flags);
    [LibraryImport(L, EntryPoint = "unlinkat", SetLastError = true)]
    public static partial int unlinkat(int dirfd, byte* path, int flags);
    [LibraryImport(L, EntryPoint = "renameat2", SetLastError = true)]
    public static partial int renameat2(int olddirfd, byte* oldpath, int newdirfd, byte* newpath, uint flags);
    [LibraryImport(L, EntryPoint = "fchmodat", SetLastError = true)]
    public static partial int fchmodat(int dirfd, byte* path, uint mode, int flags);
    [LibraryImport(L, EntryPoint = "fchmod", SetLastError = true)]
    public static partial int fchmod(int fd, uint mode);
    [LibraryImport(L, EntryPoint = "fchownat", SetLastError = true)]
    public static partial int fchownat(int dirfd, byte* path, uint uid, uint gid, int flags);
    [LibraryImport(L, EntryPoint = "fchown", SetLastError = true)]
    public static partial int fchown(int fd, uint uid, uint gid);
    [LibraryImport(L, EntryPoint = "utimensat", SetLastError = true)]
    public static partial int utimensat(int dirfd, byte* path, Timespec* times, int flags);
    [LibraryImport(L, EntryPoint = "futimens", SetLastError = true)]
    public static partial int futimens(int fd, Timespec* times);
    [LibraryImport(L, EntryPoint = "getdents64", SetLastError = true)]
    public static partial nint getdents64(int fd, byte* buf, nint size);

    [LibraryImport(L, EntryPoint = "fgetxattr", SetLastError = true)]
    public static partial nint fgetxattr(int fd, byte* name, byte* value, nint size);
    [LibraryImport(L, EntryPoint = "fsetxattr", SetLastError = true)]
    public static partial int fsetxattr(int fd, byte* name, byte* value, nint size, int flags);
    [LibraryImport(L, EntryPoint = "flistxattr", SetLastError = true)]
    public static partial nint flistxattr(int fd, byte* list, nint size);
    [LibraryImport(L, EntryPoint = "fremovexattr", SetLastError = true)]
    public static partial int fremovexattr(int fd, byte* name);
    [LibraryImport(L, EntryPoint = "lgetxattr", SetLastError = true)]
    public static partial nint lgetxattr(byte* path, byte* name, byte* value, nint size);
    [LibraryImport(L, EntryPoint = "lsetxattr", SetLastError = true)]
    public static partial int lsetxattr(byte* path, byte* name, byte* value, nint size, int flags);
    [LibraryImport(L, EntryPoint = "llistxattr", SetLastError = true)]
    public static partial nint llistxattr(byte* path, byte* list, nint size);
    [LibraryImport(L, EntryPoint = "lremovexattr", SetLastError = true)]
    public static partial int lremovexattr(byte* path, byte* name);

    [LibraryImport(L, EntryPoint = "mount", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int mount(string source, string target, string fstype, ulong flags, string? data);
    [LibraryImport(L, EntryPoint = "umount2", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int umount2(string target, int flags);
    [LibraryImport(L, EntryPoint = "syscall", SetLastError = true)]
    public static partial long syscall4(long number, long a, long b, long c, long d);
    [LibraryImport(L, EntryPoint = "syscall", SetLastError = true)]
    public static partial long syscall6(long number, long a, long b, long c, long d, long e, long f);

    public const int F_SETFL = 4;
    public const short POLLIN = 1;
    /// <summary>poll(2) on one descriptor for <paramref name="events"/>; returns the revents, 0 on timeout, -1 on error.</summary>
    public static int PollOne(int fd, short events, int timeoutMs)
    {
        long pfd = (uint)fd | ((long)(ushort)events << 32); // struct pollfd { int fd; short events; short revents; }
        int r = poll(&pfd, 1, timeoutMs);
        return r <= 0 ? r : (ushort)(pfd >> 48);
    }
    [LibraryImport(L, EntryPoint = "poll", SetLastError = true)]
    private static partial int poll(long* fds, nuint count, int timeoutMs);

    [LibraryImport(L, EntryPoint = "getuid")] public static partial uint getuid();
    [LibraryImport(L, EntryPoint = "getgid")] public static partial uint getgid();
    [LibraryImport(L, EntryPoint = "getpid")] public static partial int getpid();
    [LibraryImport(L, EntryPoint = "umask")] public static partial uint umask(uint mask);
    [LibraryImport(L, EntryPoint = "setsid", SetLastError = true)] public static partial int setsid();
    [LibraryImport(L, EntryPoint = "fork", SetLastError = true)] public static partial int fork();
    [LibraryImport(L, EntryPoint = "_exit")] public static partial void _exit(int status);
    [LibraryImport(L, EntryPoint = "execv", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int execv(string path, nint* argv);
    [LibraryImport(L, EntryPoint = "pipe2", SetLastError = true)] public static partial int pipe2(int* fds, int flags);
    [LibraryImport(L, EntryPoint = "splice", SetLastError = true)]
    public static partial nint splice(int fdIn, long* offIn, int fdOut, long* offOut, nuint length, uint flags);
    public const uint SPLICE_F_NONBLOCK = 2;
    public const int F_SETPIPE_SZ = 1031, F_GETPIPE_SZ = 1032;
    [LibraryImport(L, EntryPoint = "dup2", SetLastError = true)] public static partial int dup2(int oldfd, int newfd);
    [LibraryImport(L, EntryPoint = "setrlimit", SetLastError = true)] public static partial int setrlimit(int resource, RLimit* rlim);
    [LibraryImport(L, EntryPoint = "getrlimit", SetLastError = true)] public static partial int getrlimit(int resource, RLimit* rlim);
    [LibraryImport(L, EntryPoint = "kill", SetLastError = true)] public static partial int kill(int pid, int sig);

    /// <summary>openat2(2) through syscall(2): glibc 2.36 has no wrapper.</summary>
    public static int openat2(int dirfd, byte* path, ulong flags, ulong mode, ulong resolve)
    {
        OpenHow how = new() { Flags = flags, Mode = mode, Resolve = resolve };
        const long SYS_openat2 = 437; // the same number on every architecture (new syscall table)
        return (int)syscall4(SYS_openat2, dirfd, (long)path, (long)&how, sizeof(OpenHow));
    }

    /// <summary>struct xattr_args of the *xattrat calls.</summary>
    struct XattrArgs { public ulong Value; public uint Size; public uint Flags; }
    // The *xattrat calls of Linux 6.13 (glibc 2.36 has no wrappers; the numbers are the same on every architecture).
    const long SYS_setxattrat = 463, SYS_getxattrat = 464, SYS_listxattrat = 465, SYS_removexattrat = 466;

    public static nint getxattrat(int dirfd, byte* path, int atFlags, byte* name, byte* value, nint size)
    {
        var args = new XattrArgs { Value = (ulong)value, Size = (uint)size };
        return (nint)syscall6(SYS_getxattrat, dirfd, (long)path, atFlags, (long)name, (long)&args, sizeof(XattrArgs));
    }

    public static int setxattrat(int dirfd, byte* path, int atFlags, byte* name, byte* value, nint size, int flags)
    {
        var args = new XattrArgs { Value = (ulong)value, Size = (uint)size, Flags = (uint)flags };
        return (int)syscall6(SYS_setxattrat, dirfd, (long)path, atFlags, (long)name, (long)&args, sizeof(XattrArgs));
    }

    public static nint listxattrat(int dirfd, byte* path, int atFlags, byte* list, nint size) =>
        (nint)syscall6(SYS_listxattrat, dirfd, (long)path, atFlags, (long)list, size, 0);

    public static int removexattrat(int dirfd, byte* path, int atFlags, byte* name) =>
        (int)syscall4(SYS_removexattrat, dirfd, (long)path, atFlags, (long)name);

    /// <summary>Whether the *xattrat calls exist here: not before Linux 6.13, and a seccomp filter that predates
    /// them answers ENOSYS or EPERM.</summary>
    public static bool XattrAtWorks()
    {
        byte* root = stackalloc byte[] { (byte)'/', 0 };
        fixed (byte* name = "user.unionfs.probe\0"u8)
            return getxattrat(AT_FDCWD, root, 0, name, null, 0) >= 0 || Errno.Last is not (Errno.ENOSYS or Errno.EPERM);
    }

    public const int OPEN_TREE_CLONE = 1;
    public const ulong MOUNT_ATTR_RDONLY = 1, MOUNT_ATTR_RELATIME = 0, MOUNT_ATTR_NOATIME = 0x10, MOUNT_ATTR_STRICTATIME = 0x20, MOUNT_ATTR__ATIME = 0x70,
        MOUNT_ATTR_NODIRATIME = 0x80;

    /// <summary>open_tree(2) with OPEN_TREE_CLONE: a detached, private copy of the mount of <paramref name="path"/>,
    /// rooted there (glibc 2.36 has no wrapper).</summary>
    public static int OpenTreeClone(byte* path)
    {
        const long SYS_open_tree = 428;
        return (int)syscall4(SYS_open_tree, AT_FDCWD, (long)path, OPEN_TREE_CLONE | O_CLOEXEC, 0);
    }

    /// <summary>mount_setattr(2) on the mount <paramref name="fd"/> refers to: clears the MOUNT_ATTR_* bits in
    /// <paramref name="clear"/>, then sets those in <paramref name="set"/>.</summary>
    public static int MountSetAttr(int fd, ulong set, ulong clear)
    {
        const long SYS_mount_setattr = 442;
        ulong* attr = stackalloc ulong[4] { set, clear, 0, 0 }; // struct mount_attr (MOUNT_ATTR_SIZE_VER0)
        byte empty = 0;
        long r = syscall6(SYS_mount_setattr, fd, (long)&empty, AT_EMPTY_PATH, (long)attr, 32, 0);
        return (int)r;
    }

    public static ulong MakeDev(uint major, uint minor) =>
        ((ulong)(major & 0xfffff000) << 32) | ((ulong)(major & 0xfff) << 8) | ((ulong)(minor & 0xffffff00) << 12) | (minor & 0xff);
    public static uint Major(ulong dev) => (uint)(((dev >> 32) & 0xfffff000) | ((dev >> 8) & 0xfff));
    public static uint Minor(ulong dev) => (uint)(((dev >> 12) & 0xffffff00) | (dev & 0xff));
}

[StructLayout(LayoutKind.Sequential)]
public struct IoVec { public nint Base; public nint Length; }

[StructLayout(LayoutKind.Sequential)]
public struct Timespec
{
    public long Sec; public long Nsec;
    public const long UTIME_NOW = (1L << 30) - 1, UTIME_OMIT = (1L << 30) - 2;
}

[StructLayout(LayoutKind.Sequential)]
public struct RLimit { public ulong Cur; public ulong Max; }

[StructLayout(LayoutKind.Sequential)]
struct OpenHow { public ulong Flags; public ulong Mode; public ulong Resolve; }

[StructLayout(LayoutKind.Sequential)]
public struct StatxTimestamp { public long Sec; public uint Nsec; public int Reserved; }

/// <summary>struct statx: the same layout on every architecture, which is why it is used instead of struct stat.</summary>
[StructLayout(LayoutKind.Sequential, Size = 256)]
public struct Statx
{
    public uint Mask, BlkSize;
    public ulong Attributes;
    public uint NLink, Uid, Gid;
    public ushort Mode, Spare0;
    public ulong Ino, Size, Blocks, AttributesMask;
    public StatxTimestamp ATime, BTime, CTime, MTime;
    public uint RDevMajor, RDevMinor, DevMajor, DevMinor;

    public const uint BasicStats = 0x7ff, TypeAndMode = 0x3, SizeOnly = 0x200;
    public readonly uint Type => Mode & Libc.S_IFMT;
    public readonly bool IsDir => Type == Libc.S_IFDIR;
    public readonly bool IsWhiteoutDevice => Type == Libc.S_IFCHR && RDevMajor == 0 && RDevMinor == 0;
    public readonly ulong Dev => Libc.MakeDev(DevMajor, DevMinor);
    public readonly ulong RDev => Libc.MakeDev(RDevMajor, RDevMinor);
}

/// <summary>struct __user_cap_header_struct; pid 0 is the calling thread.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct CapHeader { public uint Version; public int Pid; public const uint Version3 = 0x20080522; }

/// <summary>struct __user_cap_data_struct; version 3 takes two of them (capabilities 0-31 and 32-63).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct CapData { public uint Effective, Permitted, Inheritable; }

/// <summary>struct statvfs on 64-bit Linux.</summary>
[StructLayout(LayoutKind.Sequential)]
public unsafe struct StatVfs
{
    public ulong BSize, FrSize, Blocks, BFree, BAvail, Files, FFree, FAvail, Fsid, Flag, NameMax;
    public fixed int Spare[6];
}

public static unsafe partial class Libc
{
    public const int AF_UNIX = 1, SOCK_STREAM = 1, SOL_SOCKET = 1, SCM_RIGHTS = 1, F_SETFD = 2, FD_CLOEXEC = 1;

    [LibraryImport("libc", EntryPoint = "socketpair", SetLastError = true)]
    public static partial int socketpair(int domain, int type, int protocol, int* sv);
    [LibraryImport("libc", EntryPoint = "recvmsg", SetLastError = true)]
    public static partial nint recvmsg(int fd, MsgHdr* msg, int flags);

    /// <summary>Receives one file descriptor sent with SCM_RIGHTS (fusermount3's _FUSE_COMMFD protocol); -1 on EOF.</summary>
    public static int ReceiveFd(int socket)
    {
        byte data;
        IoVec iov = new() { Base = (nint)(&data), Length = 1 };
        byte* control = stackalloc byte[64];
        new Span<byte>(control, 64).Clear();
        MsgHdr msg = new() { Iov = &iov, IovLen = 1, Control = control, ControlLen = 24 };
        nint n;
        do n = recvmsg(socket, &msg, 0); while (n < 0 && Errno.Last == Errno.EINTR);
        if (n <= 0) return -1;
        // struct cmsghdr { size_t len; int level; int type; } followed by the int.
        if (*(int*)(control + 8) != SOL_SOCKET || *(int*)(control + 12) != SCM_RIGHTS) return -1;
        return *(int*)(control + 16);
    }
}

[StructLayout(LayoutKind.Sequential)]
public unsafe struct MsgHdr
{
    public void* Name; public uint NameLen; public IoVec* Iov; public nint IovLen;
    public void* Control; public nint ControlLen; public int Flags;
}

public static unsafe partial class Libc
{
    // Path-following xattr calls: used on /proc/self/fd/N magic links, which must be followed to reach the object.
    [LibraryImport("libc", EntryPoint = "getxattr", SetLastError = true)]
    public static partial nint getxattr(byte* path, byte* name, byte* value, nint size);
    [LibraryImport("libc", EntryPoint = "setxattr", SetLastError = true)]
    public static partial int setxattr(byte* path, byte* name, byte* value, nint size, int flags);
    [LibraryImport("libc", EntryPoint = "listxattr", SetLastError = true)]
    public static partial nint listxattr(byte* path, byte* list, nint size);
    [LibraryImport("libc", EntryPoint = "removexattr", SetLastError = true)]
    public static partial int removexattr(byte* path, byte* name);
}

public static unsafe partial class Libc
{
    [LibraryImport("libc", EntryPoint = "fstatfs", SetLastError = true)]
    private static partial int fstatfs(int fd, byte* buf);

    /// <summary>The filesystem magic (f_type of struct statfs) of the filesystem holding <paramref name="fd"/>, or 0.</summary>
    public static long FsType(int fd)
    {
        byte* buf = stackalloc byte[256];
        return fstatfs(fd, buf) < 0 ? 0 : *(long*)buf;
    }

    public const long OVERLAYFS_MAGIC = 0x794c7630, FUSE_MAGIC = 0x65735546, ECRYPTFS_MAGIC = 0xf15f;
}
