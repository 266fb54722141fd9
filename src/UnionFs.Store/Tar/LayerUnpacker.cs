using System.Formats.Tar;
using System.Globalization;
using System.Text;
using Microsoft.Win32.SafeHandles;
using UnionFs.Posix;
using UnionFs.Store.Fs;

namespace UnionFs.Store.Tar;

/// <summary>
/// Applies an OCI layer tar (already decompressed) to an empty directory, producing the overlayfs
/// on-disk form that both our FUSE union and kernel overlayfs read: `.wh.NAME` becomes a character
/// device 0/0 named NAME, `.wh..wh..opq` becomes trusted.overlay.opaque=y on its directory.
/// Ownership, permissions (with setuid bits), xattrs and nanosecond times are kept.
/// Every write is relative to a directory fd reached without following symlinks (<see cref="BeneathDir"/>),
/// so hostile names (absolute, "..", through a symlink, hard links to outside) fail the whole import.
/// </summary>
public sealed unsafe class LayerUnpacker
{
    const string WhiteoutPrefix = ".wh.";
    const string OpaqueMarker = ".wh..wh..opq";

    readonly string _root;
    // Directory times are applied last: creating children changes a directory's mtime.
    readonly List<(string[] Parts, Timespec MTime, Timespec ATime)> _dirTimes = new();

    public long Entries { get; private set; }
    /// <summary>Bytes of regular-file content written (the layer's "size", as docker reports it).</summary>
    public long ContentBytes { get; private set; }

    public LayerUnpacker(string root) { _root = root; }

    public void Unpack(Stream tar)
    {
        using var root = BeneathDir.OpenRoot(_root);
        using var reader = new TarReader(tar, leaveOpen: true);
        TarEntry? entry;
        while ((entry = reader.GetNextEntry(copyData: false)) is not null)
        {
            if (entry.EntryType is TarEntryType.GlobalExtendedAttributes) continue;
            Apply(root, entry);
            Entries++;
        }
        for (int i = _dirTimes.Count - 1; i >= 0; i--)
        {
            var (parts, mtime, atime) = _dirTimes[i];
            using var parent = BeneathDir.Open(root, parts.AsSpan(0, parts.Length - 1), create: false, string.Join('/', parts));
            SetTimes(parent, parts[^1], mtime, atime);
        }
    }

    void Apply(BeneathDir root, TarEntry entry)
    {
        var parts = SafePath.Split(entry.Name);
        if (parts.Length == 0)
        {
            // "./": the layer root's own attributes.
            if (entry.EntryType != TarEntryType.Directory) throw new LayerFormatException($"entry '{entry.Name}': the root must be a directory");
            using var self = BeneathDir.Open(root, [], false, entry.Name);
            SetOwnerModeXattrs(self, null, entry, isSymlink: false);
            return;
        }
        string name = parts[^1];
        BeneathDir parent;
        try { parent = BeneathDir.Open(root, parts.AsSpan(0, parts.Length - 1), create: true, entry.Name); }
        catch (NotADirectoryInLayerException) when (name.StartsWith(WhiteoutPrefix, StringComparison.Ordinal))
        {
            // Some tools emit ".wh.foo" and then "foo/.wh.bar": the inner whiteout is moot (containers/storage ignores it too).
            return;
        }
        using var _ = parent;

        if (name == OpaqueMarker) { FileOps.SetXattr(parent.ProcPath(), FileOps.OpaqueXattr, "y"u8, followLast: true); return; }
        if (name.StartsWith(WhiteoutPrefix, StringComparison.Ordinal))
        {
            string hidden = name[WhiteoutPrefix.Length..];
            if (hidden.Length == 0) throw new LayerFormatException($"entry '{entry.Name}': whiteout with an empty name");
            if (hidden is "." or "..") throw new LayerFormatException($"entry '{entry.Name}': whiteout of '{hidden}'");
            RemoveExisting(parent, hidden);
            MakeNode(parent, hidden, Libc.S_IFCHR, 0);
            return;
        }

        switch (entry.EntryType)
        {
            case TarEntryType.Directory:
                if (!IsDirectory(parent, name)) { RemoveExisting(parent, name); MkDir(parent, name); }
                SetOwnerModeXattrs(parent, name, entry, isSymlink: false);
                _dirTimes.Add((parts, MTime(entry), ATime(entry)));
                return;
            case TarEntryType.RegularFile or TarEntryType.V7RegularFile or TarEntryType.ContiguousFile:
                RemoveExisting(parent, name);
                WriteFile(parent, name, entry);
                return;
            case TarEntryType.SymbolicLink:
                RemoveExisting(parent, name);
                // The target is stored verbatim and never followed here: inside a container "/x" means the container's root.
                fixed (byte* t = FileOps.Z(entry.LinkName)) fixed (byte* n = FileOps.Z(name))
                    if (Libc.symlinkat(t, parent.Fd, n) < 0) throw new PosixException(Errno.Last, "symlink", entry.Name);
                break;
            case TarEntryType.HardLink:
                RemoveExisting(parent, name);
                Link(root, parent, name, entry);
                return; // a hard link shares the target's inode and attributes
            case TarEntryType.CharacterDevice:
                RemoveExisting(parent, name);
                MakeNode(parent, name, Libc.S_IFCHR | Perm(entry), Dev(entry));
                break;
            case TarEntryType.BlockDevice:
                RemoveExisting(parent, name);
                MakeNode(parent, name, Libc.S_IFBLK | Perm(entry), Dev(entry));
                break;
            case TarEntryType.Fifo:
                RemoveExisting(parent, name);
                MakeNode(parent, name, Libc.S_IFIFO | Perm(entry), 0);
                break;
            default:
                throw new LayerFormatException($"entry '{entry.Name}': unsupported tar entry type {entry.EntryType}");
        }
        bool symlink = entry.EntryType == TarEntryType.SymbolicLink;
        SetOwnerModeXattrs(parent, name, entry, symlink);
        SetTimes(parent, name, MTime(entry), ATime(entry));
    }

    void WriteFile(BeneathDir parent, string name, TarEntry entry)
    {
        int fd;
        fixed (byte* n = FileOps.Z(name))
            fd = Libc.openat(parent.Fd, n, Libc.O_WRONLY | Libc.O_CREAT | Libc.O_EXCL | Libc.O_NOFOLLOW | Libc.O_CLOEXEC, 0x180);
        if (fd < 0) throw new PosixException(Errno.Last, "create", entry.Name);
        using var handle = new SafeFileHandle(fd, ownsHandle: true);
        if (entry.DataStream is { } data)
        {
            var buf = new byte[128 * 1024];
            long offset = 0;
            int r;
            while ((r = data.Read(buf, 0, buf.Length)) > 0)
            {
                RandomAccess.Write(handle, buf.AsSpan(0, r), offset);
                offset += r;
            }
            ContentBytes += offset;
        }
        // chown before chmod: chown clears setuid/setgid.
        if (Libc.fchown(fd, (uint)entry.Uid, (uint)entry.Gid) < 0) throw new PosixException(Errno.Last, "chown", entry.Name);
        if (Libc.fchmod(fd, Perm(entry)) < 0) throw new PosixException(Errno.Last, "chmod", entry.Name);
        foreach (var (key, value) in Xattrs(entry)) FileOps.SetXattr(parent.ProcPath(name), key, value);
        var times = stackalloc Timespec[2];
        times[0] = ATime(entry); times[1] = MTime(entry);
        if (Libc.futimens(fd, times) < 0) throw new PosixException(Errno.Last, "utimens", entry.Name);
    }

    void Link(BeneathDir root, BeneathDir parent, string name, TarEntry entry)
    {
        string[] target;
        try { target = SafePath.Split(entry.LinkName, $"hard link '{entry.Name}' ->"); }
        catch (LayerFormatException e) { throw new LayerFormatException(e.Message + " (hard link target outside the layer)"); }
        if (target.Length == 0) throw new LayerFormatException($"hard link '{entry.Name}' points at the layer root");
        using var targetDir = BeneathDir.Open(root, target.AsSpan(0, target.Length - 1), create: false, entry.LinkName);
        fixed (byte* o = FileOps.Z(target[^1])) fixed (byte* n = FileOps.Z(name))
        {
            // flags 0: never follow a symlink target; linking to a directory fails with EPERM.
            if (Libc.linkat(targetDir.Fd, o, parent.Fd, n, 0) < 0)
            {
                int e = Errno.Last;
                if (e == Errno.ENOENT) throw new LayerFormatException($"hard link '{entry.Name}' -> '{entry.LinkName}': target is not in this layer");
                throw new PosixException(e, "link " + entry.LinkName + " ->", entry.Name);
            }
        }
    }

    static bool IsDirectory(BeneathDir parent, string name)
    {
        Statx st;
        fixed (byte* n = FileOps.Z(name))
            return Libc.statx(parent.Fd, n, Libc.AT_SYMLINK_NOFOLLOW, Statx.BasicStats, &st) == 0 && st.IsDir;
    }

    static void RemoveExisting(BeneathDir parent, string name)
    {
        Statx st;
        fixed (byte* n = FileOps.Z(name))
        {
            if (Libc.statx(parent.Fd, n, Libc.AT_SYMLINK_NOFOLLOW, Statx.BasicStats, &st) < 0) return;
            if (!st.IsDir) { if (Libc.unlinkat(parent.Fd, n, 0) < 0) throw new PosixException(Errno.Last, "unlink", name); return; }
        }
        // A directory replaced by a non-directory (or a whiteout): delete the subtree, never following links.
        FileOps.RemoveTree(parent.ProcPath(name));
    }

    static void MkDir(BeneathDir parent, string name)
    {
        fixed (byte* n = FileOps.Z(name))
            if (Libc.mkdirat(parent.Fd, n, 0x1c0) < 0) throw new PosixException(Errno.Last, "mkdir", name);
    }

    static void MakeNode(BeneathDir parent, string name, uint mode, ulong dev)
    {
        fixed (byte* n = FileOps.Z(name))
            if (Libc.mknodat(parent.Fd, n, mode, dev) < 0) throw new PosixException(Errno.Last, "mknod", name);
    }

    /// <param name="name">the child of <paramref name="parent"/>, or null for the directory itself (the "./" entry).</param>
    static void SetOwnerModeXattrs(BeneathDir parent, string? name, TarEntry entry, bool isSymlink)
    {
        fixed (byte* n = FileOps.Z(name ?? ""))
        {
            int flags = Libc.AT_SYMLINK_NOFOLLOW | (name is null ? Libc.AT_EMPTY_PATH : 0);
            if (Libc.fchownat(parent.Fd, n, (uint)entry.Uid, (uint)entry.Gid, flags) < 0)
                throw new PosixException(Errno.Last, "chown", entry.Name);
        }
        if (!isSymlink)
        {
            // fchmodat has no AT_EMPTY_PATH: reach the directory itself through its /proc magic link.
            fixed (byte* p = FileOps.Z(name is null ? parent.ProcPath() : name))
                if (Libc.fchmodat(name is null ? Libc.AT_FDCWD : parent.Fd, p, Perm(entry), 0) < 0)
                    throw new PosixException(Errno.Last, "chmod", entry.Name);
        }
        string path = parent.ProcPath(name);
        foreach (var (key, value) in Xattrs(entry))
        {
            try { FileOps.SetXattr(path, key, value, followLast: name is null); }
            // user.* xattrs cannot exist on symlinks; the tar can still carry them.
            catch (PosixException e) when (isSymlink && e.Errno == Errno.EPERM) { }
        }
    }

    static void SetTimes(BeneathDir parent, string name, Timespec mtime, Timespec atime)
    {
        var times = stackalloc Timespec[2];
        times[0] = atime; times[1] = mtime;
        fixed (byte* n = FileOps.Z(name))
            if (Libc.utimensat(parent.Fd, n, times, Libc.AT_SYMLINK_NOFOLLOW) < 0)
                throw new PosixException(Errno.Last, "utimensat", name);
    }

    static ulong Dev(TarEntry e) => e is PosixTarEntry p ? Libc.MakeDev((uint)p.DeviceMajor, (uint)p.DeviceMinor)
        : throw new LayerFormatException($"entry '{e.Name}': device in a V7 tar has no numbers");

    static uint Perm(TarEntry e) => (uint)e.Mode & 0xfff;

    /// <summary>PAX "SCHILY.xattr.NAME" (text) and "LIBARCHIVE.xattr.NAME" (base64, exact bytes) records.</summary>
    internal static IEnumerable<(string Name, byte[] Value)> Xattrs(TarEntry e)
    {
        if (e is not PaxTarEntry pax) yield break;
        foreach (var (k, v) in pax.ExtendedAttributes)
        {
            if (k.StartsWith("SCHILY.xattr.", StringComparison.Ordinal))
            {
                string name = k["SCHILY.xattr.".Length..];
                if (!pax.ExtendedAttributes.ContainsKey("LIBARCHIVE.xattr." + name)) yield return (name, Encoding.UTF8.GetBytes(v));
            }
            else if (k.StartsWith("LIBARCHIVE.xattr.", StringComparison.Ordinal))
                yield return (Uri.UnescapeDataString(k["LIBARCHIVE.xattr.".Length..]), Convert.FromBase64String(v));
        }
    }

    /// <summary>mtime with nanoseconds: the PAX record when present (DateTimeOffset keeps only 100 ns ticks).</summary>
    internal static Timespec MTime(TarEntry e) => PaxTime(e, "mtime") ?? FromDate(e.ModificationTime);

    static Timespec ATime(TarEntry e) => PaxTime(e, "atime") ?? MTime(e);

    static Timespec? PaxTime(TarEntry e, string key)
    {
        if (e is not PaxTarEntry pax || !pax.ExtendedAttributes.TryGetValue(key, out var s)) return null;
        var dot = s.IndexOf('.');
        if (!long.TryParse(dot < 0 ? s : s[..dot], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long sec)) return null;
        long nsec = 0;
        if (dot >= 0)
        {
            var frac = s[(dot + 1)..];
            frac = frac.Length > 9 ? frac[..9] : frac.PadRight(9, '0');
            if (!long.TryParse(frac, NumberStyles.None, CultureInfo.InvariantCulture, out nsec)) return null;
        }
        if (sec < 0 && nsec > 0) { sec--; nsec = 1_000_000_000 - nsec; }
        return new Timespec { Sec = sec, Nsec = nsec };
    }

    static Timespec FromDate(DateTimeOffset t)
    {
        long ticks = t.UtcTicks - DateTimeOffset.UnixEpoch.UtcTicks;
        long sec = Math.DivRem(ticks, TimeSpan.TicksPerSecond, out long rem);
        if (rem < 0) { sec--; rem += TimeSpan.TicksPerSecond; }
        return new Timespec { Sec = sec, Nsec = rem * 100 };
    }
}
