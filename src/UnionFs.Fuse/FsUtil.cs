using System.Runtime.CompilerServices;
using UnionFs.Fuse.Kernel;
using UnionFs.Posix;

namespace UnionFs.Fuse;

/// <summary>Small conversions shared by filesystems built on this layer.</summary>
public static unsafe class FsUtil
{
    /// <summary>Fills a FUSE attr from statx; <paramref name="ino"/> is the st_ino users will see.</summary>
    public static void ToAttr(in Statx st, ulong ino, ref Attr attr)
    {
        attr.Ino = ino;
        attr.Size = st.Size;
        attr.Blocks = st.Blocks;
        attr.ATime = (ulong)st.ATime.Sec; attr.ATimeNsec = st.ATime.Nsec;
        attr.MTime = (ulong)st.MTime.Sec; attr.MTimeNsec = st.MTime.Nsec;
        attr.CTime = (ulong)st.CTime.Sec; attr.CTimeNsec = st.CTime.Nsec;
        attr.Mode = st.Mode;
        attr.NLink = st.NLink;
        attr.Uid = st.Uid;
        attr.Gid = st.Gid;
        attr.RDev = (uint)Libc.MakeDev(st.RDevMajor, st.RDevMinor);
        attr.BlkSize = st.BlkSize;
        attr.Flags = 0;
    }

    public static void ToStatFs(in StatVfs s, ref StatFsOut o)
    {
        o.Blocks = s.Blocks; o.BFree = s.BFree; o.BAvail = s.BAvail; o.Files = s.Files; o.FFree = s.FFree;
        o.BSize = (uint)s.BSize; o.FrSize = (uint)s.FrSize; o.NameLen = (uint)s.NameMax;
    }

    /// <summary>The path a descriptor was opened at, with every symlink resolved (as realpath(3)); null if unknown.</summary>
    public static string? RealPath(int fd)
    {
        byte* proc = stackalloc byte[32];
        byte* buf = stackalloc byte[4096];
        nint n = Libc.readlinkat(Libc.AT_FDCWD, ProcFdPath(fd, proc), buf, 4096);
        return n <= 0 || n >= 4096 || buf[0] != '/' ? null : System.Text.Encoding.UTF8.GetString(buf, (int)n);
    }

    /// <summary>Writes "/proc/self/fd/N\0" into <paramref name="buffer"/> (at least 32 bytes) and returns a pointer to it.
    /// The way to reach an O_PATH descriptor with calls that take only a path (xattrs, reopen, utimes).</summary>
    public static byte* ProcFdPath(int fd, byte* buffer)
    {
        ReadOnlySpan<byte> prefix = "/proc/self/fd/"u8;
        var span = new Span<byte>(buffer, 32);
        prefix.CopyTo(span);
        fd.TryFormat(span[prefix.Length..], out int n);
        span[prefix.Length + n] = 0;
        return buffer;
    }

    /// <summary>(len, ino, off, type, name) of each linux_dirent64 record in a getdents64 buffer.</summary>
    public static int NextDirent(ReadOnlySpan<byte> buf, int at, out ulong ino, out byte type, out ReadOnlySpan<byte> name)
    {
        ino = Unsafe.ReadUnaligned<ulong>(ref Unsafe.AsRef(in buf[at]));
        ushort reclen = Unsafe.ReadUnaligned<ushort>(ref Unsafe.AsRef(in buf[at + 16]));
        type = buf[at + 18];
        var raw = buf.Slice(at + 19, reclen - 19);
        name = raw[..raw.IndexOf((byte)0)];
        return at + reclen;
    }

    public static bool IsDotOrDotDot(ReadOnlySpan<byte> name) =>
        (name.Length == 1 && name[0] == '.') || (name.Length == 2 && name[0] == '.' && name[1] == '.');

    /// <summary>pread until <paramref name="buffer"/> is full or end of file: a short READ reply means EOF to the kernel.</summary>
    public static int ReadFull(int fd, long offset, Span<byte> buffer, out int bytesRead)
    {
        bytesRead = 0;
        fixed (byte* b = buffer)
        {
            while (bytesRead < buffer.Length)
            {
                nint r = Libc.pread(fd, b + bytesRead, buffer.Length - bytesRead, offset + bytesRead);
                if (r < 0) { if (Errno.Last == Errno.EINTR) continue; return Errno.Last; }
                if (r == 0) break;
                bytesRead += (int)r;
            }
        }
        return 0;
    }

    /// <summary>One pwrite, retried on EINTR; the count written goes back to the kernel.</summary>
    public static int WriteAt(int fd, long offset, ReadOnlySpan<byte> data, out int written)
    {
        written = 0;
        fixed (byte* b = data)
        {
            nint r;
            do r = Libc.pwrite(fd, b, data.Length, offset); while (r < 0 && Errno.Last == Errno.EINTR);
            if (r < 0) return Errno.Last;
            written = (int)r;
        }
        return 0;
    }

    public static int Err(int result) => result < 0 ? Errno.Last : 0;
    public static int Err(nint result) => result < 0 ? Errno.Last : 0;
}
