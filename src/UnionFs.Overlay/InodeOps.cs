using System.Buffers;
using UnionFs.Fuse;
using UnionFs.Fuse.Kernel;
using UnionFs.Posix;

namespace UnionFs.Overlay;

// inode: attributes and extended attributes (checklist §7-8, §13, §18.9).
public sealed unsafe partial class OverlayFileSystem
{
    public int GetAttr(in RequestContext ctx, ulong node, ulong fh, bool hasFh, ref AttrOut attr)
    {
        if (_nodes.Get(node) is not { } n) return Errno.ESTALE;
        int e;
        Statx st;
        // Not the handle's descriptor: a handle opened before a copy-up still points at the lower file, and its
        // size would shrink the kernel's idea of a file that has grown in the upper since.
        e = StatNode(n, out st);
        if (e != 0) return e;
        (attr.AttrValid, attr.AttrValidNsec) = AttrTimeout(n, st);
        FillAttr(n, st, ref attr.Attr);
        return 0;
    }

    /// <summary>Where an object's attributes can be changed: (dirfd, name) in the upper, or the directory itself.</summary>
    (int DirFd, byte[] NameZ) UpperAt(Node n)
    {
        if (n.IsDir) return (n.Dirs[0].Fd, [0]);
        if (n.UnlinkedFd >= 0) return (n.UnlinkedFd, [0]);
        var loc = n.Loc;
        return (loc.Parent!.DirFd(0), loc.NameZ);
    }

    public int SetAttr(in RequestContext ctx, ulong node, in SetAttrIn s, ref AttrOut attr)
    {
        if (_nodes.Get(node) is not { } n) return Errno.ESTALE;
        if (!HasUpper) return Errno.EROFS;
        bool truncate = (s.Valid & SetAttrValid.Size) != 0;
        int e = CopyUpFile(n, !truncate ? CopyUpMode.Metadata : s.Size > 0 ? CopyUpMode.Data : CopyUpMode.Empty);
        if (e != 0) return e;
        var (dirFd, nameZ) = UpperAt(n);
        bool self = nameZ.Length == 1; // a directory or an unlinked object: reach it through its own descriptor
        fixed (byte* name = nameZ)
        {
            int flags = self ? Libc.AT_EMPTY_PATH : 0;
            // No attribute at all is chown(f, -1, -1): it still changes ctime on a local filesystem, so do the same.
            const uint anyAttr = SetAttrValid.Mode | SetAttrValid.Uid | SetAttrValid.Gid | SetAttrValid.Size | SetAttrValid.ATime
                | SetAttrValid.MTime | SetAttrValid.ATimeNow | SetAttrValid.MTimeNow | SetAttrValid.CTime;
            if ((s.Valid & (SetAttrValid.Uid | SetAttrValid.Gid)) != 0 || (s.Valid & anyAttr) == 0)
            {
                uint uid = (s.Valid & SetAttrValid.Uid) != 0 ? HostUid(s.Uid) : uint.MaxValue;
                uint gid = (s.Valid & SetAttrValid.Gid) != 0 ? HostGid(s.Gid) : uint.MaxValue;
                if (Libc.fchownat(dirFd, name, uid, gid, flags | Libc.AT_SYMLINK_NOFOLLOW) < 0) return Errno.Last;
            }
            if ((s.Valid & SetAttrValid.Mode) != 0 && n.Type != Libc.S_IFLNK)
            {
                byte* path = stackalloc byte[32];
                int r = self ? Libc.fchmodat(Libc.AT_FDCWD, FsUtil.ProcFdPath(dirFd, path), s.Mode & 0xFFF, 0)
                             : Libc.fchmodat(dirFd, name, s.Mode & 0xFFF, 0);
                if (r < 0) return Errno.Last;
            }
            if (truncate)
            {
                int fd = (s.Valid & SetAttrValid.Fh) != 0 ? (int)s.Fh : OpenObject(n, Libc.O_WRONLY);
                if (fd < 0) return -fd;
                int r = Libc.ftruncate(fd, (long)s.Size);
                e = r < 0 ? Errno.Last : 0;
                if (e == 0 && ctx.KillSuidGid) DropSetId(node, fd); // (the reply below carries the new mode)
                if ((s.Valid & SetAttrValid.Fh) == 0) Libc.close(fd);
                if (e != 0) return e;
            }
            if ((s.Valid & (SetAttrValid.ATime | SetAttrValid.MTime | SetAttrValid.ATimeNow | SetAttrValid.MTimeNow)) != 0)
            {
                Timespec* ts = stackalloc Timespec[2];
                ts[0] = Time(s.Valid, SetAttrValid.ATime, SetAttrValid.ATimeNow, s.ATime, s.ATimeNsec);
                ts[1] = Time(s.Valid, SetAttrValid.MTime, SetAttrValid.MTimeNow, s.MTime, s.MTimeNsec);
                byte* path = stackalloc byte[32];
                int r = self ? Libc.utimensat(Libc.AT_FDCWD, FsUtil.ProcFdPath(dirFd, path), ts, 0)
                             : Libc.utimensat(dirFd, name, ts, Libc.AT_SYMLINK_NOFOLLOW);
                if (r < 0) return Errno.Last;
            }
        }
        return GetAttr(ctx, node, 0, false, ref attr);
    }

    static Timespec Time(uint valid, uint set, uint now, ulong sec, uint nsec) =>
        (valid & now) != 0 ? new Timespec { Nsec = Timespec.UTIME_NOW }
        : (valid & set) != 0 ? new Timespec { Sec = (long)sec, Nsec = nsec }
        : new Timespec { Nsec = Timespec.UTIME_OMIT };

    /// <summary>The /proc path of a node's object, and whether it must be followed.</summary>
    static bool ProcPath(Node n, byte* buf)
    {
        if (n.IsDir) { Markers.AtPath(n.Dirs[0].Fd, ReadOnlySpan<byte>.Empty, buf); return true; }
        if (n.UnlinkedFd >= 0) { Markers.AtPath(n.UnlinkedFd, ReadOnlySpan<byte>.Empty, buf); return true; }
        var loc = n.Loc;
        Markers.AtPath(loc.Parent?.DirFd(loc.Layer) ?? -1, loc.Name, buf);
        return false;
    }

    /// <summary>A node's object for the xattr calls; <paramref name="buf"/> holds its path.</summary>
    static Markers.XattrTarget XattrTarget(Node n, byte* buf)
    {
        if (n.IsDir) return Markers.Target(n.Dirs[0].Fd, ReadOnlySpan<byte>.Empty, buf);
        if (n.UnlinkedFd >= 0) return Markers.Target(n.UnlinkedFd, ReadOnlySpan<byte>.Empty, buf, selfIsDir: false);
        var loc = n.Loc;
        return Markers.Target(loc.Parent?.DirFd(loc.Layer) ?? -1, loc.Name, buf);
    }

    public int GetXattr(in RequestContext ctx, ulong node, ReadOnlySpan<byte> name, Span<byte> value, out int size)
    {
        size = 0;
        if (_options.NoXattrs) return Errno.ENOSYS; // the kernel then stops asking: no xattrs on this mount
        if (_nodes.Get(node) is not { } n) return Errno.ESTALE;
        if (Markers.IsPrivateXattr(name)) return Errno.ENODATA;
        // The kernel asks for security.capability before every write and chown: answer from memory once known.
        bool capability = name.SequenceEqual("security.capability"u8);
        if (capability && n.NoCapability) return Errno.ENODATA;
        int xattrChanges = n.XattrChanges;
        byte* path = stackalloc byte[Markers.PathBufferSize];
        var target = XattrTarget(n, path);
        fixed (byte* nm = name) fixed (byte* v = value)
        {
            nint r = target.Get(nm, v, value.Length);
            if (r < 0)
            {
                int e = Errno.Last;
                if (capability && e == Errno.ENODATA)
                    lock (n.CopyUpLock) n.NoCapability = n.XattrChanges == xattrChanges; // no set raced with us
                return e;
            }
            size = (int)r;
        }
        return 0;
    }

    public int ListXattr(in RequestContext ctx, ulong node, Span<byte> list, out int size)
    {
        size = 0;
        if (_options.NoXattrs) return Errno.ENOSYS; // the kernel then stops asking: no xattrs on this mount
        if (_nodes.Get(node) is not { } n) return Errno.ESTALE;
        byte* path = stackalloc byte[Markers.PathBufferSize];
        var target = XattrTarget(n, path);
        byte[] all = ArrayPool<byte>.Shared.Rent(65536);
        try
        {
            nint r;
            fixed (byte* a = all) r = target.List(a, all.Length);
            if (r < 0) return Errno.Last;
            // Copy the names users may see; a size probe (empty list) only counts them.
            int at = 0, total = 0;
            while (at < r)
            {
                int len = all.AsSpan(at, (int)r - at).IndexOf((byte)0);
                if (len < 0) break;
                var xname = all.AsSpan(at, len + 1);
                at += len + 1;
                if (Markers.IsPrivateXattr(xname[..^1])) continue;
                if (!list.IsEmpty)
                {
                    if (total + xname.Length > list.Length) return Errno.ERANGE;
                    xname.CopyTo(list[total..]);
                }
                total += xname.Length;
            }
            size = total;
            return 0;
        }
        finally { ArrayPool<byte>.Shared.Return(all); }
    }

    public int SetXattr(in RequestContext ctx, ulong node, ReadOnlySpan<byte> name, ReadOnlySpan<byte> value, int flags)
    {
        if (_options.NoXattrs) return Errno.ENOSYS; // the kernel then stops asking: no xattrs on this mount
        if (_nodes.Get(node) is not { } n) return Errno.ESTALE;
        if (Markers.IsPrivateXattr(name)) return Errno.EPERM;
        if (!HasUpper) return Errno.EROFS;
        int e = CopyUpFile(n, CopyUpMode.Metadata);
        if (e != 0) return e;
        byte* path = stackalloc byte[Markers.PathBufferSize];
        fixed (byte* nm = name) fixed (byte* v = value)
            e = FsUtil.Err(XattrTarget(n, path).Set(nm, v, value.Length, flags));
        lock (n.CopyUpLock) { n.XattrChanges++; n.NoCapability = false; }
        if (name.SequenceEqual(DefaultAclXattr[..^1])) n.DefaultAcl = 0;
        // An access ACL set by someone outside the file's group clears set-group-ID, as chmod would; the daemon sets
        // it as root, so the upper filesystem would not.
        if (e == 0 && ctx.KillSuidGid && name.SequenceEqual("system.posix_acl_access"u8)) ClearSetGid(n);
        return e;
    }

    void ClearSetGid(Node n)
    {
        byte* path = stackalloc byte[Markers.PathBufferSize];
        bool follow = ProcPath(n, path);
        Statx st;
        if (Libc.statx(Libc.AT_FDCWD, path, follow ? 0 : Libc.AT_SYMLINK_NOFOLLOW, Statx.TypeAndMode, &st) != 0) return;
        if ((st.Mode & Libc.S_ISGID) == 0 || st.Type == Libc.S_IFLNK) return;
        if (Libc.fchmodat(Libc.AT_FDCWD, path, (uint)(st.Mode & 0xFFF & ~Libc.S_ISGID), 0) == 0)
            _session?.NotifyInvalidateInode(n.Id, -1, 0);
    }

    public int RemoveXattr(in RequestContext ctx, ulong node, ReadOnlySpan<byte> name)
    {
        if (_options.NoXattrs) return Errno.ENOSYS; // the kernel then stops asking: no xattrs on this mount
        if (_nodes.Get(node) is not { } n) return Errno.ESTALE;
        if (Markers.IsPrivateXattr(name)) return Errno.ENODATA;
        if (!HasUpper) return Errno.EROFS;
        int e = CopyUpFile(n, CopyUpMode.Metadata);
        if (e != 0) return e;
        byte* path = stackalloc byte[Markers.PathBufferSize];
        if (name.SequenceEqual(DefaultAclXattr[..^1])) n.DefaultAcl = 0;
        fixed (byte* nm = name)
            return FsUtil.Err(XattrTarget(n, path).Remove(nm));
    }
}
