using System.Runtime.InteropServices;

namespace UnionFs.Posix;

/// <summary>errno values (Linux generic ABI) and the one place that reads the last errno.</summary>
public static partial class Errno
{
    public const int EPERM = 1, ENOENT = 2, ESRCH = 3, EINTR = 4, EIO = 5, ENXIO = 6, E2BIG = 7, EBADF = 9,
        EAGAIN = 11, ENOMEM = 12, EACCES = 13, EFAULT = 14, EBUSY = 16, EEXIST = 17, EXDEV = 18, ENODEV = 19,
        ENOTDIR = 20, EISDIR = 21, EINVAL = 22, ENFILE = 23, EMFILE = 24, ENOTTY = 25, ETXTBSY = 26, EFBIG = 27,
        ENOSPC = 28, ESPIPE = 29, EROFS = 30, EMLINK = 31, ERANGE = 34, ENAMETOOLONG = 36, ENOSYS = 38,
        ENOTEMPTY = 39, ELOOP = 40, ENODATA = 61, EPROTO = 71, EOVERFLOW = 75, EOPNOTSUPP = 95,
        ECONNABORTED = 103, ENOTSUP = 95, ENOTCONN = 107, ESTALE = 116;

    /// <summary>The errno of the last failed P/Invoke on this thread.</summary>
    public static int Last => Marshal.GetLastPInvokeError();

    [LibraryImport("libc", EntryPoint = "strerror")]
    private static partial nint strerror(int errnum);

    public static string Describe(int errno) => Marshal.PtrToStringUTF8(strerror(errno)) ?? $"errno {errno}";
}

/// <summary>A failed system call: the errno, the operation and the path it was about.</summary>
public sealed class PosixException : IOException
{
    public int Errno { get; }
    public string Operation { get; }
    public string? Path { get; }

    public PosixException(int errno, string operation, string? path = null)
        : base(path is null ? $"{operation}: {Posix.Errno.Describe(errno)}" : $"{operation} {path}: {Posix.Errno.Describe(errno)}")
    {
        Errno = errno; Operation = operation; Path = path;
    }

    /// <summary>Throws for a negative libc return value, using the thread's errno.</summary>
    public static int Check(int result, string operation, string? path = null) =>
        result < 0 ? throw new PosixException(Posix.Errno.Last, operation, path) : result;

    public static long Check(long result, string operation, string? path = null) =>
        result < 0 ? throw new PosixException(Posix.Errno.Last, operation, path) : result;
}
