using System.Text;
using UnionFs.Posix;

namespace UnionFs.Store.Fs;

/// <summary>
/// Path-based metadata calls that never follow a final symlink (lstat, llistxattr, readlink...),
/// with errors turned into <see cref="PosixException"/> naming the call and the path. Layer trees
/// are walked with these; writing into an untrusted tree goes through <see cref="BeneathDir"/> instead.
/// </summary>
public static unsafe class FileOps
{
    public const string OpaqueXattr = "trusted.overlay.opaque";
    public const string RedirectXattr = "trusted.overlay.redirect";

    internal static byte[] Z(string s)
    {
        var b = new byte[Encoding.UTF8.GetByteCount(s) + 1];
        Encoding.UTF8.GetBytes(s, b);
        return b;
    }

    public static Statx Lstat(string path) =>
        TryLstat(path, out var st, out int err) ? st : throw new PosixException(err, "lstat", path);

    public static bool TryLstat(string path, out Statx st, out int errno)
    {
        Statx s;
        fixed (byte* p = Z(path))
        {
            int r = Libc.statx(Libc.AT_FDCWD, p, Libc.AT_SYMLINK_NOFOLLOW, Statx.BasicStats, &s);
            st = s;
            errno = r < 0 ? Errno.Last : 0;
            return r == 0;
        }
    }

    public static bool Exists(string path) => TryLstat(path, out _, out _);

    public static string ReadLink(string path)
    {
        var buf = new byte[4096];
        fixed (byte* p = Z(path)) fixed (byte* b = buf)
        {
            nint n = Libc.readlinkat(Libc.AT_FDCWD, p, b, buf.Length);
            if (n < 0) throw new PosixException(Errno.Last, "readlink", path);
            return Encoding.UTF8.GetString(buf, 0, (int)n);
        }
    }

    /// <summary>The xattr names of an object (not following symlinks), sorted ordinally for reproducible output.</summary>
    public static List<string> ListXattrs(string path)
    {
        var names = new List<string>();
        fixed (byte* p = Z(path))
        {
            nint size = Libc.llistxattr(p, null, 0);
            if (size < 0)
            {
                int e = Errno.Last;
                if (e is Errno.EOPNOTSUPP or Errno.ENODATA) return names;
                throw new PosixException(e, "llistxattr", path);
            }
            if (size == 0) return names;
            var buf = new byte[size];
            fixed (byte* b = buf)
            {
                size = Libc.llistxattr(p, b, buf.Length);
                if (size < 0) throw new PosixException(Errno.Last, "llistxattr", path);
            }
            int start = 0;
            for (int i = 0; i < size; i++)
                if (buf[i] == 0) { if (i > start) names.Add(Encoding.UTF8.GetString(buf, start, i - start)); start = i + 1; }
        }
        names.Sort(StringComparer.Ordinal);
        return names;
    }

    /// <summary>An xattr's value, or null when it is absent.</summary>
    public static byte[]? GetXattr(string path, string name)
    {
        fixed (byte* p = Z(path)) fixed (byte* n = Z(name))
        {
            nint size = Libc.lgetxattr(p, n, null, 0);
            if (size < 0)
            {
                int e = Errno.Last;
                if (e is Errno.ENODATA or Errno.EOPNOTSUPP) return null;
                throw new PosixException(e, $"lgetxattr {name}", path);
            }
            var buf = new byte[size];
            if (size == 0) return buf;
            fixed (byte* b = buf)
            {
                size = Libc.lgetxattr(p, n, b, buf.Length);
                if (size < 0) throw new PosixException(Errno.Last, $"lgetxattr {name}", path);
            }
            return buf.AsSpan(0, (int)size).ToArray();
        }
    }

    public static void SetXattr(string path, string name, ReadOnlySpan<byte> value, bool followLast = false)
    {
        fixed (byte* p = Z(path)) fixed (byte* n = Z(name)) fixed (byte* v = value)
        {
            int r = followLast ? Libc.setxattr(p, n, v, value.Length, 0) : Libc.lsetxattr(p, n, v, value.Length, 0);
            if (r < 0) throw new PosixException(Errno.Last, $"setxattr {name}", path);
        }
    }

    public static bool IsOpaque(string dir) => GetXattr(dir, OpaqueXattr) is [(byte)'y'];

    /// <summary>
    /// Deletes a tree without ever following a symlink (a layer may contain links to "/") and without
    /// crossing into another filesystem: a still-mounted container rootfs below it is an error, not
    /// something to empty.
    /// </summary>
    public static void RemoveTree(string path)
    {
        if (!TryLstat(path, out var st, out int err))
        {
            if (err == Errno.ENOENT) return;
            throw new PosixException(err, "lstat", path);
        }
        RemoveTree(path, st, st.Dev);
    }

    static void RemoveTree(string path, Statx st, ulong dev)
    {
        if (st.IsDir)
        {
            if (st.Dev != dev) throw new PosixException(Errno.EBUSY, "remove (mount point)", path);
            foreach (var child in ListDir(path))
            {
                string c = Path.Combine(path, child);
                if (TryLstat(c, out var cst, out _)) RemoveTree(c, cst, dev);
            }
            fixed (byte* p = Z(path))
                if (Libc.unlinkat(Libc.AT_FDCWD, p, Libc.AT_REMOVEDIR) < 0 && Errno.Last != Errno.ENOENT)
                    throw new PosixException(Errno.Last, "rmdir", path);
        }
        else
        {
            fixed (byte* p = Z(path))
                if (Libc.unlinkat(Libc.AT_FDCWD, p, 0) < 0 && Errno.Last != Errno.ENOENT)
                    throw new PosixException(Errno.Last, "unlink", path);
        }
    }

    /// <summary>Child names of a directory, sorted ordinally (byte order of UTF-8 for ASCII names).</summary>
    public static List<string> ListDir(string dir)
    {
        var names = new List<string>();
        var opts = new EnumerationOptions { RecurseSubdirectories = false, AttributesToSkip = 0, IgnoreInaccessible = false, ReturnSpecialDirectories = false };
        foreach (var full in Directory.EnumerateFileSystemEntries(dir, "*", opts)) names.Add(Path.GetFileName(full));
        names.Sort(StringComparer.Ordinal);
        return names;
    }

    /// <summary>Atomic rename(2) with a clear error.</summary>
    public static void Rename(string from, string to)
    {
        fixed (byte* f = Z(from)) fixed (byte* t = Z(to))
            if (Libc.renameat2(Libc.AT_FDCWD, f, Libc.AT_FDCWD, t, 0) < 0)
                throw new PosixException(Errno.Last, "rename " + from + " ->", to);
    }

    /// <summary>Apparent size and allocated bytes of a tree, not following symlinks, hard links counted once.</summary>
    public static (long Apparent, long Allocated, long Files) DiskUsage(string root)
    {
        long apparent = 0, allocated = 0, files = 0;
        var seen = new HashSet<(ulong, ulong)>();
        void Walk(string p)
        {
            if (!TryLstat(p, out var st, out _)) return;
            if (st.NLink > 1 && !st.IsDir && !seen.Add((st.Dev, st.Ino))) return;
            files++;
            allocated += (long)st.Blocks * 512;
            if (!st.IsDir) apparent += (long)st.Size;
            if (st.IsDir) foreach (var c in ListDir(p)) Walk(Path.Combine(p, c));
        }
        Walk(root);
        return (apparent, allocated, files);
    }
}
