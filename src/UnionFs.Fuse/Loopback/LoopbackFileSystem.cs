using System.Collections.Concurrent;
using UnionFs.Fuse.Kernel;
using UnionFs.Posix;

namespace UnionFs.Fuse.Loopback;

/// <summary>
/// Mirrors one directory through FUSE, in the manner of libfuse's passthrough_hp: each node holds an O_PATH
/// descriptor of its object, every call is an *at() call on a descriptor (never a joined path), and open files
/// are real descriptors used as the FUSE file handle. It is the reference client of the protocol layer and the
/// yardstick for its overhead; the union filesystem lives in UnionFs.Overlay.
/// </summary>
public sealed unsafe class LoopbackFileSystem : IFuseFileSystem, IDisposable
{
    sealed class Node
    {
        public required ulong Id;
        public required int Fd;          // O_PATH | O_NOFOLLOW
        public required (ulong Dev, ulong Ino) Key;
        public required uint Type;
        public long Lookups;
    }

    /// <summary>A snapshot of the listing: cookies stay valid while the directory changes; rewinddir re-reads it.</summary>
    sealed class DirHandle { public required int Fd; public required List<(byte[] Name, ulong Ino, uint Type)> Entries; public bool Served; }

    const ulong Timeout = 1; // seconds; the source may change behind the mount

    readonly ConcurrentDictionary<ulong, Node> _nodes = new();
    readonly Dictionary<(ulong, ulong), Node> _byKey = new();
    readonly ConcurrentDictionary<ulong, DirHandle> _dirs = new();
    readonly Lock _lock = new();
    long _nextId = 1, _nextDirHandle;

    public LoopbackFileSystem(string source)
    {
        int fd = PosixException.Check(Libc.open(source, Libc.O_PATH | Libc.O_DIRECTORY | Libc.O_CLOEXEC, 0), "open", source);
        Statx st;
        Libc.statx(fd, Empty, Libc.AT_EMPTY_PATH, Statx.BasicStats, &st);
        var root = new Node { Id = 1, Fd = fd, Key = (st.Dev, st.Ino), Type = Libc.S_IFDIR, Lookups = 1 };
        _nodes[1] = root;
        _byKey[root.Key] = root;
        Libc.umask(0);
    }

    static readonly byte* Empty = (byte*)System.Runtime.InteropServices.NativeMemory.AllocZeroed(1);

    Node? Get(ulong id) => _nodes.TryGetValue(id, out var n) ? n : null;

    int Stat(Node n, out Statx st)
    {
        fixed (Statx* p = &st)
            return FsUtil.Err(Libc.statx(n.Fd, Empty, Libc.AT_EMPTY_PATH | Libc.AT_SYMLINK_NOFOLLOW, Statx.BasicStats, p));
    }

    int MakeEntry(Node parent, ReadOnlySpan<byte> name, ref EntryOut entry)
    {
        int fd;
        fixed (byte* p = name) fd = Libc.openat(parent.Fd, p, Libc.O_PATH | Libc.O_NOFOLLOW | Libc.O_CLOEXEC, 0);
        if (fd < 0) return Errno.Last;
        Statx st;
        if (Libc.statx(fd, Empty, Libc.AT_EMPTY_PATH | Libc.AT_SYMLINK_NOFOLLOW, Statx.BasicStats, &st) < 0)
        {
            int e = Errno.Last; Libc.close(fd); return e;
        }
        Node node;
        lock (_lock)
        {
            if (_byKey.TryGetValue((st.Dev, st.Ino), out var existing))
            {
                Libc.close(fd);
                node = existing;
            }
            else
            {
                node = new Node { Id = (ulong)Interlocked.Increment(ref _nextId), Fd = fd, Key = (st.Dev, st.Ino), Type = st.Type };
                _byKey[node.Key] = node;
                _nodes[node.Id] = node;
            }
            node.Lookups++;
        }
        entry.NodeId = node.Id;
        entry.EntryValid = entry.AttrValid = Timeout;
        FsUtil.ToAttr(st, st.Ino, ref entry.Attr);
        return 0;
    }

    public int Lookup(in RequestContext ctx, ulong parent, ReadOnlySpan<byte> name, ref EntryOut entry) =>
        Get(parent) is { } p ? MakeEntry(p, name, ref entry) : Errno.ESTALE;

    public void Forget(ulong id, ulong nlookup)
    {
        lock (_lock)
        {
            if (id == 1 || !_nodes.TryGetValue(id, out var n)) return;
            n.Lookups -= (long)nlookup;
            if (n.Lookups > 0) return;
            _nodes.TryRemove(id, out _);
            _byKey.Remove(n.Key);
            Libc.close(n.Fd);
        }
    }

    public int GetAttr(in RequestContext ctx, ulong node, ulong fh, bool hasFh, ref AttrOut attr)
    {
        if (Get(node) is not { } n) return Errno.ESTALE;
        int err = Stat(n, out var st);
        if (err != 0) return err;
        attr.AttrValid = Timeout;
        FsUtil.ToAttr(st, st.Ino, ref attr.Attr);
        return 0;
    }

    public int SetAttr(in RequestContext ctx, ulong node, in SetAttrIn s, ref AttrOut attr)
    {
        if (Get(node) is not { } n) return Errno.ESTALE;
        byte* path = stackalloc byte[32];
        FsUtil.ProcFdPath(n.Fd, path);
        if ((s.Valid & SetAttrValid.Mode) != 0 && Libc.fchmodat(Libc.AT_FDCWD, path, s.Mode & 0xFFF, 0) < 0) return Errno.Last;
        if ((s.Valid & (SetAttrValid.Uid | SetAttrValid.Gid)) != 0)
        {
            uint uid = (s.Valid & SetAttrValid.Uid) != 0 ? s.Uid : uint.MaxValue;
            uint gid = (s.Valid & SetAttrValid.Gid) != 0 ? s.Gid : uint.MaxValue;
            if (Libc.fchownat(n.Fd, Empty, uid, gid, Libc.AT_EMPTY_PATH | Libc.AT_SYMLINK_NOFOLLOW) < 0) return Errno.Last;
        }
        if ((s.Valid & SetAttrValid.Size) != 0)
        {
            int fd = (s.Valid & SetAttrValid.Fh) != 0 ? (int)s.Fh : Libc.openat(Libc.AT_FDCWD, path, Libc.O_WRONLY | Libc.O_CLOEXEC, 0);
            if (fd < 0) return Errno.Last;
            int r = Libc.ftruncate(fd, (long)s.Size);
            int e = r < 0 ? Errno.Last : 0;
            if ((s.Valid & SetAttrValid.Fh) == 0) Libc.close(fd);
            if (e != 0) return e;
        }
        if ((s.Valid & (SetAttrValid.ATime | SetAttrValid.MTime)) != 0)
        {
            Timespec* ts = stackalloc Timespec[2];
            ts[0] = TimeFrom(s.Valid, SetAttrValid.ATime, SetAttrValid.ATimeNow, s.ATime, s.ATimeNsec);
            ts[1] = TimeFrom(s.Valid, SetAttrValid.MTime, SetAttrValid.MTimeNow, s.MTime, s.MTimeNsec);
            if (Libc.utimensat(Libc.AT_FDCWD, path, ts, 0) < 0) return Errno.Last;
        }
        return GetAttr(ctx, node, 0, false, ref attr);
    }

    internal static Timespec TimeFrom(uint valid, uint set, uint now, ulong sec, uint nsec) =>
        (valid & now) != 0 ? new Timespec { Nsec = Timespec.UTIME_NOW }
        : (valid & set) != 0 ? new Timespec { Sec = (long)sec, Nsec = nsec }
        : new Timespec { Nsec = Timespec.UTIME_OMIT };

    public int ReadLink(in RequestContext ctx, ulong node, Span<byte> target, out int length)
    {
        length = 0;
        if (Get(node) is not { } n) return Errno.ESTALE;
        fixed (byte* t = target)
        {
            nint r = Libc.readlinkat(n.Fd, Empty, t, target.Length);
            if (r < 0) return Errno.Last;
            length = (int)r;
        }
        return 0;
    }

    /// <summary>Creates run as the daemon (root); hand the new object to the caller, as a local fs would.</summary>
    int Chown(Node parent, ReadOnlySpan<byte> name, in RequestContext ctx)
    {
        if (Libc.getuid() != 0) return 0;
        fixed (byte* p = name)
            return FsUtil.Err(Libc.fchownat(parent.Fd, p, ctx.Uid, ctx.Gid, Libc.AT_SYMLINK_NOFOLLOW));
    }

    int Created(int result, Node parent, ReadOnlySpan<byte> name, in RequestContext ctx, ref EntryOut entry)
    {
        if (result < 0) return Errno.Last;
        int e = Chown(parent, name, ctx);
        return e != 0 ? e : MakeEntry(parent, name, ref entry);
    }

    public int MkNod(in RequestContext ctx, ulong parent, ReadOnlySpan<byte> name, uint mode, uint rdev, uint umask, ref EntryOut entry)
    {
        if (Get(parent) is not { } p) return Errno.ESTALE;
        fixed (byte* n = name) return Created(Libc.mknodat(p.Fd, n, mode, Libc.MakeDev(rdev >> 8 & 0xfff, (rdev & 0xff) | (rdev >> 12 & 0xfff00))), p, name, ctx, ref entry);
    }

    public int MkDir(in RequestContext ctx, ulong parent, ReadOnlySpan<byte> name, uint mode, uint umask, ref EntryOut entry)
    {
        if (Get(parent) is not { } p) return Errno.ESTALE;
        fixed (byte* n = name) return Created(Libc.mkdirat(p.Fd, n, mode), p, name, ctx, ref entry);
    }

    public int Symlink(in RequestContext ctx, ulong parent, ReadOnlySpan<byte> name, ReadOnlySpan<byte> target, ref EntryOut entry)
    {
        if (Get(parent) is not { } p) return Errno.ESTALE;
        fixed (byte* n = name) fixed (byte* t = target) return Created(Libc.symlinkat(t, p.Fd, n), p, name, ctx, ref entry);
    }

    public int Link(in RequestContext ctx, ulong node, ulong newParent, ReadOnlySpan<byte> newName, ref EntryOut entry)
    {
        if (Get(node) is not { } n || Get(newParent) is not { } p) return Errno.ESTALE;
        fixed (byte* nn = newName)
            if (Libc.linkat(n.Fd, Empty, p.Fd, nn, Libc.AT_EMPTY_PATH) < 0) return Errno.Last;
        return MakeEntry(p, newName, ref entry);
    }

    public int Unlink(in RequestContext ctx, ulong parent, ReadOnlySpan<byte> name)
    {
        if (Get(parent) is not { } p) return Errno.ESTALE;
        fixed (byte* n = name) return FsUtil.Err(Libc.unlinkat(p.Fd, n, 0));
    }

    public int RmDir(in RequestContext ctx, ulong parent, ReadOnlySpan<byte> name)
    {
        if (Get(parent) is not { } p) return Errno.ESTALE;
        fixed (byte* n = name) return FsUtil.Err(Libc.unlinkat(p.Fd, n, Libc.AT_REMOVEDIR));
    }

    public int Rename(in RequestContext ctx, ulong parent, ReadOnlySpan<byte> name, ulong newParent, ReadOnlySpan<byte> newName, uint flags)
    {
        if (Get(parent) is not { } p || Get(newParent) is not { } np) return Errno.ESTALE;
        fixed (byte* a = name) fixed (byte* b = newName) return FsUtil.Err(Libc.renameat2(p.Fd, a, np.Fd, b, flags));
    }

    public int Open(in RequestContext ctx, ulong node, int flags, ref OpenOut open)
    {
        if (Get(node) is not { } n) return Errno.ESTALE;
        byte* path = stackalloc byte[32];
        // O_DIRECT stays at the FUSE level: reply buffers are not aligned for an O_DIRECT backing descriptor.
        int fd = Libc.openat(Libc.AT_FDCWD, FsUtil.ProcFdPath(n.Fd, path), (flags & ~(Libc.O_NOFOLLOW | Libc.O_DIRECT)) | Libc.O_CLOEXEC, 0);
        if (fd < 0) return Errno.Last;
        open.Fh = (ulong)fd;
        return 0;
    }

    public int Create(in RequestContext ctx, ulong parent, ReadOnlySpan<byte> name, int flags, uint mode, uint umask, ref EntryOut entry, ref OpenOut open)
    {
        if (Get(parent) is not { } p) return Errno.ESTALE;
        int fd;
        fixed (byte* n = name) fd = Libc.openat(p.Fd, n, (flags & ~Libc.O_DIRECT) | Libc.O_CREAT | Libc.O_NOFOLLOW | Libc.O_CLOEXEC, mode);
        if (fd < 0) return Errno.Last;
        int e = Chown(p, name, ctx);
        if (e == 0) e = MakeEntry(p, name, ref entry);
        if (e != 0) { Libc.close(fd); return e; }
        open.Fh = (ulong)fd;
        return 0;
    }

    public int TmpFile(in RequestContext ctx, ulong parent, int flags, uint mode, uint umask, ref EntryOut entry, ref OpenOut open)
    {
        if (Get(parent) is not { } p) return Errno.ESTALE;
        int fd;
        fixed (byte* dot = ".\0"u8) fd = Libc.openat(p.Fd, dot, (flags & ~Libc.O_CREAT) | Libc.O_TMPFILE | Libc.O_CLOEXEC, mode);
        if (fd < 0) return Errno.Last;
        if (Libc.getuid() == 0) Libc.fchown(fd, ctx.Uid, ctx.Gid);
        byte* path = stackalloc byte[32];
        int pathFd = Libc.openat(Libc.AT_FDCWD, FsUtil.ProcFdPath(fd, path), Libc.O_PATH | Libc.O_CLOEXEC, 0);
        Statx st;
        if (pathFd < 0 || Libc.statx(pathFd, Empty, Libc.AT_EMPTY_PATH, Statx.BasicStats, &st) < 0)
        {
            int e = Errno.Last; Libc.close(fd); if (pathFd >= 0) Libc.close(pathFd); return e;
        }
        var node = new Node { Id = (ulong)Interlocked.Increment(ref _nextId), Fd = pathFd, Key = (st.Dev, st.Ino), Type = st.Type, Lookups = 1 };
        lock (_lock) { _byKey[node.Key] = node; _nodes[node.Id] = node; }
        entry.NodeId = node.Id;
        entry.EntryValid = entry.AttrValid = Timeout;
        FsUtil.ToAttr(st, st.Ino, ref entry.Attr);
        open.Fh = (ulong)fd;
        return 0;
    }

    public int Read(in RequestContext ctx, ulong node, ulong fh, long offset, Span<byte> buffer, out int bytesRead) =>
        FsUtil.ReadFull((int)fh, offset, buffer, out bytesRead);

    public int ReadSource(ulong node, ulong fh) => (int)fh;

    public int Write(in RequestContext ctx, ulong node, ulong fh, long offset, ReadOnlySpan<byte> data, uint writeFlags, out int written) =>
        FsUtil.WriteAt((int)fh, offset, data, out written);

    public int Release(in RequestContext ctx, ulong node, ulong fh, int flags) => FsUtil.Err(Libc.close((int)fh));
    public int Fsync(in RequestContext ctx, ulong node, ulong fh, bool dataOnly) =>
        FsUtil.Err(dataOnly ? Libc.fdatasync((int)fh) : Libc.fsync((int)fh));
    public int Fallocate(in RequestContext ctx, ulong node, ulong fh, long offset, long length, int mode) =>
        FsUtil.Err(Libc.fallocate((int)fh, mode, offset, length));

    public int Lseek(in RequestContext ctx, ulong node, ulong fh, long offset, int whence, out long result)
    {
        result = Libc.lseek((int)fh, offset, whence);
        return result < 0 ? Errno.Last : 0;
    }

    public int CopyFileRange(in RequestContext ctx, ulong nodeIn, ulong fhIn, long offIn, ulong nodeOut, ulong fhOut, long offOut, long length, out long copied)
    {
        nint r = Libc.copy_file_range((int)fhIn, &offIn, (int)fhOut, &offOut, (nint)length, 0);
        copied = r;
        return r < 0 ? Errno.Last : 0;
    }

    public int OpenDir(in RequestContext ctx, ulong node, int flags, ref OpenOut open)
    {
        if (Get(node) is not { } n) return Errno.ESTALE;
        int fd;
        fixed (byte* dot = ".\0"u8) fd = Libc.openat(n.Fd, dot, Libc.O_RDONLY | Libc.O_DIRECTORY | Libc.O_CLOEXEC, 0);
        if (fd < 0) return Errno.Last;
        var entries = new List<(byte[], ulong, uint)>();
        int e = List(fd, entries);
        if (e != 0) { Libc.close(fd); return e; }
        ulong id = (ulong)Interlocked.Increment(ref _nextDirHandle);
        _dirs[id] = new DirHandle { Fd = fd, Entries = entries };
        open.Fh = id;
        return 0;
    }

    static int List(int fd, List<(byte[], ulong, uint)> entries)
    {
        entries.Clear();
        Libc.lseek(fd, 0, Libc.SEEK_SET);
        byte[] buf = new byte[32768];
        fixed (byte* b = buf)
        {
            while (true)
            {
                nint r = Libc.getdents64(fd, b, buf.Length);
                if (r < 0) return Errno.Last;
                if (r == 0) return 0;
                for (int at = 0; at < r;)
                {
                    at = FsUtil.NextDirent(buf.AsSpan(0, (int)r), at, out ulong ino, out byte type, out var name);
                    entries.Add((name.ToArray(), ino, (uint)type << 12));
                }
            }
        }
    }

    public int ReadDir(in RequestContext ctx, ulong node, ulong fh, long offset, ref DirEntryWriter writer)
    {
        if (!_dirs.TryGetValue(fh, out var dir) || Get(node) is not { } n) return Errno.EBADF;
        if (offset == 0 && dir.Served && List(dir.Fd, dir.Entries) is var e && e != 0) return e;
        dir.Served = true;
        for (int i = (int)offset; i < dir.Entries.Count; i++)
        {
            var (name, ino, type) = dir.Entries[i];
            if (!writer.Fits(name.Length)) break;
            var entry = new EntryOut();
            if (writer.Plus && !FsUtil.IsDotOrDotDot(name))
            {
                if (MakeEntry(n, name, ref entry) != 0) entry = default; // vanished since OPENDIR: list it, don't instantiate
            }
            if (!writer.TryAdd(name, ino, type, i + 1, entry)) break;
        }
        return 0;
    }

    public int ReleaseDir(in RequestContext ctx, ulong node, ulong fh)
    {
        if (_dirs.TryRemove(fh, out var dir)) Libc.close(dir.Fd);
        return 0;
    }

    public int StatFs(in RequestContext ctx, ulong node, ref StatFsOut statfs)
    {
        var root = _nodes[1];
        byte* path = stackalloc byte[32];
        int fd = Libc.openat(Libc.AT_FDCWD, FsUtil.ProcFdPath(root.Fd, path), Libc.O_RDONLY | Libc.O_DIRECTORY | Libc.O_CLOEXEC, 0);
        if (fd < 0) return Errno.Last;
        StatVfs s;
        int r = Libc.fstatvfs(fd, &s);
        Libc.close(fd);
        if (r < 0) return Errno.Last;
        FsUtil.ToStatFs(s, ref statfs);
        return 0;
    }

    // Extended attributes go through /proc/self/fd/N because O_PATH descriptors refuse f*xattr().
    public int SetXattr(in RequestContext ctx, ulong node, ReadOnlySpan<byte> name, ReadOnlySpan<byte> value, int flags)
    {
        if (Get(node) is not { } n) return Errno.ESTALE;
        byte* path = stackalloc byte[32];
        fixed (byte* nm = name) fixed (byte* v = value)
            return FsUtil.Err(Libc.setxattr(FsUtil.ProcFdPath(n.Fd, path), nm, v, value.Length, flags));
    }

    public int GetXattr(in RequestContext ctx, ulong node, ReadOnlySpan<byte> name, Span<byte> value, out int size)
    {
        size = 0;
        if (Get(node) is not { } n) return Errno.ESTALE;
        byte* path = stackalloc byte[32];
        fixed (byte* nm = name) fixed (byte* v = value)
        {
            nint r = Libc.getxattr(FsUtil.ProcFdPath(n.Fd, path), nm, v, value.Length);
            if (r < 0) return Errno.Last;
            size = (int)r;
        }
        return 0;
    }

    public int ListXattr(in RequestContext ctx, ulong node, Span<byte> list, out int size)
    {
        size = 0;
        if (Get(node) is not { } n) return Errno.ESTALE;
        byte* path = stackalloc byte[32];
        fixed (byte* l = list)
        {
            nint r = Libc.listxattr(FsUtil.ProcFdPath(n.Fd, path), l, list.Length);
            if (r < 0) return Errno.Last;
            size = (int)r;
        }
        return 0;
    }

    public int RemoveXattr(in RequestContext ctx, ulong node, ReadOnlySpan<byte> name)
    {
        if (Get(node) is not { } n) return Errno.ESTALE;
        byte* path = stackalloc byte[32];
        fixed (byte* nm = name) return FsUtil.Err(Libc.removexattr(FsUtil.ProcFdPath(n.Fd, path), nm));
    }

    public void Dispose()
    {
        foreach (var n in _nodes.Values) Libc.close(n.Fd);
        _nodes.Clear();
    }
}
