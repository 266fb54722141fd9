using UnionFs.Posix;
using UnionFs.Store.Tar;

namespace UnionFs.Store.Fs;

/// <summary>
/// A directory fd reached from a root fd one component at a time with openat2(RESOLVE_BENEATH |
/// RESOLVE_NO_SYMLINKS): a symlink anywhere on the way (even one pointing inside the layer) makes
/// the walk fail with ELOOP, so an entry can never be written through a link, and ".." cannot
/// climb out. Every *at() call of the unpacker is relative to one of these.
/// </summary>
public sealed unsafe class BeneathDir : IDisposable
{
    public int Fd { get; private set; }
    public string Display { get; }

    BeneathDir(int fd, string display) { Fd = fd; Display = display; }

    const ulong Resolve = Libc.RESOLVE_BENEATH | Libc.RESOLVE_NO_SYMLINKS | Libc.RESOLVE_NO_MAGICLINKS;

    public static BeneathDir OpenRoot(string path)
    {
        fixed (byte* p = FileOps.Z(path))
        {
            int fd = Libc.openat(Libc.AT_FDCWD, p, Libc.O_PATH | Libc.O_DIRECTORY | Libc.O_CLOEXEC, 0);
            if (fd < 0) throw new PosixException(Errno.Last, "open", path);
            return new BeneathDir(fd, path);
        }
    }

    /// <summary>Opens the directory at <paramref name="parts"/> below root, creating missing ones (mode 0755) if asked.</summary>
    public static BeneathDir Open(BeneathDir root, ReadOnlySpan<string> parts, bool create, string entryName)
    {
        int fd = Dup(root.Fd);
        string shown = "";
        try
        {
            foreach (var part in parts)
            {
                shown = shown.Length == 0 ? part : shown + "/" + part;
                int next = OpenComponent(fd, part);
                if (next < 0 && Errno.Last == Errno.ENOENT && create)
                {
                    fixed (byte* c = FileOps.Z(part))
                        if (Libc.mkdirat(fd, c, 0x1ed) < 0 && Errno.Last != Errno.EEXIST)
                            throw new PosixException(Errno.Last, "mkdir", shown);
                    next = OpenComponent(fd, part);
                }
                if (next < 0)
                {
                    int e = Errno.Last;
                    if (e == Errno.ELOOP || e == Errno.EXDEV)
                        throw new LayerFormatException($"entry '{entryName}': '{shown}' is a symlink; refusing to write through it");
                    if (e == Errno.ENOTDIR)
                        throw new NotADirectoryInLayerException($"entry '{entryName}': '{shown}' is not a directory");
                    throw new PosixException(e, "openat2", shown);
                }
                Libc.close(fd);
                fd = next;
            }
            return new BeneathDir(fd, shown);
        }
        catch { Libc.close(fd); throw; }
    }

    static int OpenComponent(int dirfd, string name)
    {
        fixed (byte* c = FileOps.Z(name))
            return Libc.openat2(dirfd, c, (ulong)(Libc.O_PATH | Libc.O_DIRECTORY | Libc.O_CLOEXEC), 0, Resolve);
    }

    static int Dup(int fd)
    {
        const int F_DUPFD_CLOEXEC = 1030;
        int r = Libc.fcntl(fd, F_DUPFD_CLOEXEC, 0);
        return r < 0 ? throw new PosixException(Errno.Last, "dup") : r;
    }

    /// <summary>A path usable by path-only calls (lsetxattr): the magic link of this fd plus a child name.</summary>
    public string ProcPath(string? child = null) => child is null ? $"/proc/self/fd/{Fd}" : $"/proc/self/fd/{Fd}/{child}";

    public void Dispose()
    {
        if (Fd >= 0) { Libc.close(Fd); Fd = -1; }
    }
}

/// <summary>A path component that must be a directory is something else (a file, a whiteout).</summary>
public sealed class NotADirectoryInLayerException(string message) : LayerFormatException(message);
