using System.Buffers;
using UnionFs.Fuse;
using UnionFs.Posix;

namespace UnionFs.Overlay;

// copy_up: bringing a lower object into the upper before it changes (checklist §7). A copy is built in the work
// directory and renamed into place, so a crash leaves either the lower object or the complete copy, never a part.
public sealed unsafe partial class OverlayFileSystem
{
    /// <summary>A fresh name in the work directory, NUL-terminated.</summary>
    byte[] TempName() => System.Text.Encoding.ASCII.GetBytes($"#{Environment.ProcessId:x}-{Interlocked.Increment(ref _tempCounter):x}\0");

    /// <summary>
    /// Gives directory <paramref name="dir"/> an upper part (copying its ancestors first) and returns the upper
    /// descriptor. Only the directory itself is copied, with its metadata; its children stay where they are.
    /// Takes the parent's lock, one ancestor at a time: the caller must not hold a directory lock,
    /// except that of <paramref name="dir"/>'s parent (see <see cref="LockDir"/>).
    /// </summary>
    int CopyUpDir(Node dir, out int upperFd)
    {
        upperFd = -1;
        if (!HasUpper) return Errno.EROFS;
        while (true)
        {
            var dirs = dir.Dirs;
            if (dirs.Length > 0 && dirs[0].Layer == 0) { upperFd = dirs[0].Fd; return 0; }
            var parent = dir.Loc.Parent;
            if (parent is null) return Errno.ESTALE;
            int e = CopyUpDir(parent, out int parentFd);
            if (e != 0) return e;
            lock (LockDir(parent))
            {
                // A rename may have moved the directory while we waited, or another thread copied it up.
                if (dir.Loc.Parent != parent) continue;
                return CopyUpDirLocked(dir, parent, parentFd, out upperFd);
            }
        }
    }

    int CopyUpDirLocked(Node dir, Node parent, int parentFd, out int upperFd)
    {
        var dirs = dir.Dirs;
        if (dirs.Length > 0 && dirs[0].Layer == 0) { upperFd = dirs[0].Fd; return 0; }
        upperFd = -1;
        var loc = dir.Loc;
        Statx st;
        if (Libc.statx(dirs[0].Fd, Empty, Libc.AT_EMPTY_PATH, Statx.BasicStats, &st) < 0) return Errno.Last;
        fixed (byte* tmp = TempName()) fixed (byte* name = loc.NameZ)
        {
            if (Libc.mkdirat(_workFd, tmp, 0x1C0 /* 0700 */) < 0) return Errno.Last;
            int e = CopyMetadata(dirs[0].Fd, ReadOnlySpan<byte>.Empty, tmp, st, dir.Ino);
            var parentTimes = ParentTimes.Save(parentFd);
            if (e == 0 && Libc.renameat2(_workFd, tmp, parentFd, name, Libc.RENAME_NOREPLACE) < 0) e = Errno.Last;
            if (e != 0) { Libc.unlinkat(_workFd, tmp, Libc.AT_REMOVEDIR); return e; }
            parentTimes.Restore(parentFd);
            int fd = Libc.openat(parentFd, name, Libc.O_PATH | Libc.O_DIRECTORY | Libc.O_NOFOLLOW | Libc.O_CLOEXEC, 0);
            if (fd < 0) return Errno.Last;
            Libc.statx(fd, Empty, Libc.AT_EMPTY_PATH, Statx.BasicStats, &st);
            dir.Dirs = [new LayerDir(0, fd), .. dirs];
            dir.Loc = loc with { Layer = 0 };
            _nodes.Rekey(dir, (0, st.Dev, st.Ino));
            upperFd = fd;
        }
        MarkImpure(parent);
        return 0;
    }

    /// <summary>
    /// A copy-up adds a name to the upper parent, which changes the parent's mtime although the merged view did not
    /// change. As overlayfs does, the parent's atime and mtime are put back afterwards (best effort), so a copy-up
    /// leaves no trace in directory times, in a listing or in a layer committed from the upper.
    /// </summary>
    readonly struct ParentTimes
    {
        readonly StatxTimestamp _atime, _mtime;
        readonly bool _valid;

        ParentTimes(in Statx st) { _atime = st.ATime; _mtime = st.MTime; _valid = true; }

        public static ParentTimes Save(int dirFd)
        {
            Statx st;
            return Libc.statx(dirFd, Empty, Libc.AT_EMPTY_PATH, Statx.BasicStats, &st) == 0 ? new ParentTimes(st) : default;
        }

        public void Restore(int dirFd)
        {
            if (!_valid) return;
            Timespec* ts = stackalloc Timespec[2];
            ts[0] = new Timespec { Sec = _atime.Sec, Nsec = _atime.Nsec };
            ts[1] = new Timespec { Sec = _mtime.Sec, Nsec = _mtime.Nsec };
            byte* path = stackalloc byte[32];
            Libc.utimensat(Libc.AT_FDCWD, FsUtil.ProcFdPath(dirFd, path), ts, 0);
        }
    }

    /// <summary>An upper directory holding copied-up children: their st_ino must be read from the origin xattr.</summary>
    void MarkImpure(Node dir)
    {
        if (dir.Impure) return;
        dir.Impure = true;
        Markers.SetXattr(dir.Dirs[0].Fd, ReadOnlySpan<byte>.Empty, _x.Impure, "y"u8);
    }

    /// <summary>What a change needs of a lower file: its data (write), nothing of it (O_TRUNC, truncate to 0), or only
    /// its metadata (chmod, chown, utimes, xattrs: overlayfs's metacopy — the data stays below until written).</summary>
    enum CopyUpMode { Data, Empty, Metadata }

    /// <summary>Copies a non-directory up as <paramref name="mode"/> asks. Concurrent copy-ups of one node wait for the first.</summary>
    int CopyUpFile(Node node, CopyUpMode mode)
    {
        if (!HasUpper) return Errno.EROFS;
        if (node.IsDir) return CopyUpDir(node, out _);
        lock (node.CopyUpLock)
        {
            if (node.Layer == 0)
                return !node.Metacopy || mode == CopyUpMode.Metadata ? 0
                    : mode == CopyUpMode.Data ? CompleteCopyUp(node) : DropMetacopy(node);
            var loc = node.Loc;
            if (loc.Parent is null || node.Unlinked) return Errno.ESTALE;
            int e = CopyUpDir(loc.Parent, out int parentFd);
            if (e != 0) return e;
            int srcDir = loc.Parent.DirFd(loc.Layer);
            Statx st;
            byte[] tmpName = TempName();
            fixed (byte* name = loc.NameZ) fixed (byte* tmp = tmpName)
            {
                // The name vanished since the kernel looked it up: ESTALE lets the kernel look again.
                if (Libc.statx(srcDir, name, Libc.AT_SYMLINK_NOFOLLOW, Statx.BasicStats, &st) < 0)
                    return Errno.Last == Errno.ENOENT ? Errno.ESTALE : Errno.Last;
                if (st.Type != node.Type) return Errno.ESTALE;
                bool metaOnly = mode == CopyUpMode.Metadata && _options.Metacopy && st.Type == Libc.S_IFREG && st.Size > 0 && st.NLink == 1;
                e = metaOnly ? MakeMetacopy(tmpName, st) : MakeCopy(srcDir, name, tmp, st, withData: mode != CopyUpMode.Empty);
                if (e == 0) e = CopyMetadata(srcDir, loc.Name, tmp, st, node.Ino);
                if (e != 0) { Libc.unlinkat(_workFd, tmp, 0); return e; }
                // The name is the one stat'd above: the node is ours (a rename copies it up first, through this
                // lock), and a removal meanwhile leaves a whiteout or nothing there, which RENAME_NOREPLACE finds.
                lock (LockDir(loc.Parent))
                {
                    var parentTimes = ParentTimes.Save(parentFd);
                    if (Libc.renameat2(_workFd, tmp, parentFd, name, Libc.RENAME_NOREPLACE) < 0)
                    {
                        e = Errno.Last;
                        Libc.unlinkat(_workFd, tmp, 0);
                        return e == Errno.EEXIST ? Errno.ESTALE : e; // the name was removed meanwhile
                    }
                    parentTimes.Restore(parentFd);
                    if (st.NLink > 1 && st.Type == Libc.S_IFREG && (node.Indexed = AddToIndex(parentFd, name, node.Ino)))
                        WriteLowerLinks(parentFd, loc.Name, node.LowerLinks = st.NLink - 1);
                    Libc.statx(parentFd, name, Libc.AT_SYMLINK_NOFOLLOW, Statx.BasicStats, &st);
                    if (metaOnly) { node.DataLoc = loc; node.Metacopy = true; }
                    node.Loc = loc with { Layer = 0 };
                    _nodes.Rekey(node, (0, st.Dev, st.Ino));
                    MarkImpure(loc.Parent);
                }
            }
            return 0;
        }
    }

    /// <summary>
    /// Hard links of lower files (checklist §10): the first name copied up is linked into W/index under the lower
    /// file's identity; the other names of that file, when next looked up, are linked to the same upper inode
    /// (<see cref="LinkUpFromIndex"/>), so all names keep sharing data and st_ino, also after a remount.
    /// </summary>
    bool AddToIndex(int parentFd, byte* name, ulong ino)
    {
        fixed (byte* entry = IndexName(ino))
            return Libc.linkat(parentFd, name, _indexFd, entry, 0) == 0 || Errno.Last == Errno.EEXIST;
    }

    /// <summary>Index entries are named by the st_ino users see, which is the lower file's identity in the stack.</summary>
    static byte[] IndexName(ulong ino) => System.Text.Encoding.ASCII.GetBytes($"{ino:x16}\0");

    bool IsIndexed(ulong ino)
    {
        if (_indexFd < 0) return false;
        Statx st;
        fixed (byte* entry = IndexName(ino)) return Libc.statx(_indexFd, entry, Libc.AT_SYMLINK_NOFOLLOW, Statx.BasicStats, &st) == 0;
    }

    /// <summary>A lower file with several links whose sibling was copied up: link this name to the same upper inode.
    /// The merged view does not change (same data), only where it is stored. Returns true when it did.</summary>
    bool LinkUpFromIndex(Node parent, byte* nameZ, ulong ino)
    {
        if (_indexFd < 0) return false;
        Statx st;
        fixed (byte* entry = IndexName(ino))
        {
            if (Libc.statx(_indexFd, entry, Libc.AT_SYMLINK_NOFOLLOW, Statx.BasicStats, &st) < 0) return false;
            if (CopyUpDir(parent, out int pfd) != 0) return false;
            lock (LockDir(parent))
            {
                if (Libc.linkat(_indexFd, entry, pfd, nameZ, 0) < 0) return Errno.Last == Errno.EEXIST;
                MarkImpure(parent); // the new name's st_ino is its origin's
                var entryName = IndexName(ino).AsSpan(0, 16);
                uint pending = ReadLowerLinks(_indexFd, entryName);
                if (pending > 0) WriteLowerLinks(_indexFd, entryName, pending - 1);
                return true;
            }
        }
    }

    /// <summary>
    /// The link count of a hard-linked lower file after its first copy-up is its upper links (less the index entry)
    /// plus its lower names not linked up yet. Only the copy-up knows how many those are (the lower link count then,
    /// less the name copied), so it is kept in an xattr of the upper inode, and each link-up takes one off. Removing
    /// or renaming a lower name looks it up first, which links it up, so nothing else changes the count.
    /// </summary>
    uint ReadLowerLinks(int dirFd, ReadOnlySpan<byte> name) =>
        uint.TryParse(Markers.GetString(dirFd, name, _x.LowerLinks), out uint n) ? n : 0;

    void WriteLowerLinks(int dirFd, ReadOnlySpan<byte> name, uint n) =>
        Markers.SetXattr(dirFd, name, _x.LowerLinks, System.Text.Encoding.ASCII.GetBytes(n.ToString()));

    /// <summary>A metadata-only copy: a sparse file of the same size (no data blocks) marked as metacopy.</summary>
    int MakeMetacopy(byte[] tmpName, in Statx st)
    {
        fixed (byte* tmp = tmpName)
        {
            int fd = Libc.openat(_workFd, tmp, Libc.O_CREAT | Libc.O_EXCL | Libc.O_WRONLY | Libc.O_CLOEXEC, 0x180 /* 0600 */);
            if (fd < 0) return Errno.Last;
            int e = Libc.ftruncate(fd, (long)st.Size) < 0 ? Errno.Last : 0;
            Libc.close(fd);
            if (e != 0) return e;
        }
        return Markers.SetXattr(_workFd, tmpName.AsSpan(0, tmpName.Length - 1), _x.Metacopy, ReadOnlySpan<byte>.Empty);
    }

    /// <summary>
    /// The first write to a metacopy file: build a full copy (data from the lower file, metadata from the upper
    /// one) in the work directory and rename it over the upper file, so a crash leaves one or the other.
    /// Caller holds the node's copy-up lock.
    /// </summary>
    int CompleteCopyUp(Node node)
    {
        var loc = node.Loc;
        var data = node.DataLoc;
        if (data?.Parent is null || loc.Parent is null) return Errno.ESTALE;
        if (node.UnlinkedFd >= 0) return FillUnlinkedMetacopy(node, data);
        int upperDir = loc.Parent.DirFd(0), dataDir = data.Parent.DirFd(data.Layer);
        Statx st;
        bool removed = false;
        byte[] tmpName = TempName();
        fixed (byte* name = loc.NameZ) fixed (byte* dataName = data.NameZ) fixed (byte* tmp = tmpName)
        {
            if (Libc.statx(upperDir, name, Libc.AT_SYMLINK_NOFOLLOW, Statx.BasicStats, &st) < 0) return Errno.Last;
            int e = MakeCopy(dataDir, dataName, tmp, st, withData: true);
            if (e == 0) e = CopyMetadata(upperDir, loc.Name, tmp, st, node.Ino);
            if (e == 0)
                lock (LockDir(loc.Parent))
                {
                    // A removal of the name meanwhile gave the node a descriptor of the placeholder (and may have
                    // left a whiteout at the name): the copy must not bring the name back.
                    removed = node.UnlinkedFd >= 0;
                    if (!removed) e = ReplacePlaceholder(node, upperDir, name, tmp);
                }
            if (e != 0 || removed) Libc.unlinkat(_workFd, tmp, 0);
            if (removed) return FillUnlinkedMetacopy(node, data);
            if (e != 0) return e;
        }
        node.Metacopy = false;
        node.DataLoc = null;
        return 0;
    }

    /// <summary>
    /// Renames the full copy over the placeholder and gives the node the copy's identity. The placeholder is held
    /// open until then: its inode number would be free from the rename on, and an object created meanwhile in
    /// another directory could get it, then find this node under it (see LockDir). Under the directory's lock.
    /// </summary>
    int ReplacePlaceholder(Node node, int upperDir, byte* name, byte* tmp)
    {
        int placeholder = Libc.openat(upperDir, name, Libc.O_PATH | Libc.O_NOFOLLOW | Libc.O_CLOEXEC, 0);
        if (placeholder < 0) return Errno.Last;
        int e = 0;
        Statx st;
        if (Libc.renameat2(_workFd, tmp, upperDir, name, 0) < 0) e = Errno.Last;
        else if (Libc.statx(upperDir, name, Libc.AT_SYMLINK_NOFOLLOW, Statx.BasicStats, &st) < 0) e = Errno.Last;
        else _nodes.Rekey(node, (0, st.Dev, st.Ino));
        Libc.close(placeholder);
        return e;
    }

    /// <summary>
    /// A metacopy file written to after its name was removed (still open, reopened through /proc): there is no name
    /// to put a copy at, so the lower data goes into the placeholder itself, which the node and the open handles
    /// hold. Its metacopy xattr no longer matters: no lookup reaches it. Caller holds the node's copy-up lock.
    /// </summary>
    int FillUnlinkedMetacopy(Node node, Location data)
    {
        byte* path = stackalloc byte[32];
        int dst = Libc.openat(Libc.AT_FDCWD, FsUtil.ProcFdPath(node.UnlinkedFd, path), Libc.O_WRONLY | Libc.O_CLOEXEC, 0);
        if (dst < 0) return Errno.Last;
        int e;
        fixed (byte* dataName = data.NameZ)
        {
            int src = OpenNoAtime(data.Parent!.DirFd(data.Layer), dataName, Libc.O_RDONLY | Libc.O_NOFOLLOW | Libc.O_CLOEXEC);
            Statx st;
            if (src < 0) e = Errno.Last;
            else
            {
                e = Libc.statx(src, Empty, Libc.AT_EMPTY_PATH, Statx.BasicStats, &st) < 0 ? Errno.Last : CopyData(src, dst, (long)st.Size);
                Libc.close(src);
            }
        }
        Libc.close(dst);
        if (e != 0) return e;
        node.Metacopy = false;
        node.DataLoc = null;
        return 0;
    }

    /// <summary>Open with O_TRUNC or truncate to 0 of a metacopy file: the lower data is no longer wanted.</summary>
    int DropMetacopy(Node node)
    {
        var loc = node.Loc;
        if (loc.Parent is null) return Errno.ESTALE;
        int e = Markers.RemoveXattr(loc.Parent.DirFd(0), loc.Name, _x.Metacopy);
        if (e == Errno.ENODATA) e = Markers.RemoveXattr(loc.Parent.DirFd(0), loc.Name, _x.LegacyMetacopy);
        if (e != 0 && e != Errno.ENODATA) return e;
        node.Metacopy = false;
        node.DataLoc = null;
        return 0;
    }

    /// <summary>Creates the copy's object in the work directory: data for files, target for links, rdev for nodes.</summary>
    int MakeCopy(int srcDir, byte* name, byte* tmp, in Statx st, bool withData)
    {
        switch (st.Type)
        {
            case Libc.S_IFREG:
            {
                int dst = Libc.openat(_workFd, tmp, Libc.O_CREAT | Libc.O_EXCL | Libc.O_WRONLY | Libc.O_CLOEXEC, 0x180 /* 0600 */);
                if (dst < 0) return Errno.Last;
                int e = 0;
                if (withData && st.Size > 0)
                {
                    int src = OpenNoAtime(srcDir, name, Libc.O_RDONLY | Libc.O_NOFOLLOW | Libc.O_CLOEXEC);
                    if (src < 0) e = Errno.Last;
                    else { e = CopyData(src, dst, (long)st.Size); Libc.close(src); }
                }
                if (e == 0 && !_options.Volatile && Libc.fsync(dst) < 0) e = Errno.Last;
                Libc.close(dst);
                return e;
            }
            case Libc.S_IFLNK:
            {
                byte* target = stackalloc byte[4097];
                nint n = Libc.readlinkat(srcDir, name, target, 4096);
                if (n < 0) return Errno.Last;
                target[n] = 0;
                return Libc.symlinkat(target, _workFd, tmp) < 0 ? Errno.Last : 0;
            }
            default: // fifo, socket, device: the node itself, no data
                return Libc.mknodat(_workFd, tmp, st.Mode, st.RDev) < 0 ? Errno.Last : 0;
        }
    }

    /// <summary>
    /// Copies file data keeping holes: FICLONE (reflink) where the filesystem can, else copy_file_range over the
    /// data extents found with SEEK_DATA/SEEK_HOLE, else read/write.
    /// </summary>
    static int CopyData(int src, int dst, long size)
    {
        if (Libc.ioctl(dst, Libc.FICLONE, (nint)src) == 0) return 0;
        long offset = 0;
        while (offset < size)
        {
            long data = Libc.lseek(src, offset, Libc.SEEK_DATA);
            if (data < 0) { if (Errno.Last == Errno.ENXIO) break; data = offset; }
            long hole = Libc.lseek(src, data, Libc.SEEK_HOLE);
            if (hole < 0) hole = size;
            int e = CopyRange(src, dst, data, hole - data);
            if (e != 0) return e;
            offset = hole;
        }
        return Libc.ftruncate(dst, size) < 0 ? Errno.Last : 0;
    }

    static int CopyRange(int src, int dst, long offset, long length)
    {
        long inOff = offset, outOff = offset, left = length;
        while (left > 0)
        {
            nint n = Libc.copy_file_range(src, &inOff, dst, &outOff, (nint)Math.Min(left, 1L << 30), 0);
            if (n > 0) { left -= n; continue; }
            if (n == 0) return 0;
            int e = Errno.Last;
            if (e == Errno.EINTR) continue;
            if (e is Errno.EXDEV or Errno.EINVAL or Errno.ENOSYS or Errno.EOPNOTSUPP) return ReadWriteCopy(src, dst, inOff, left);
            return e;
        }
        return 0;
    }

    static int ReadWriteCopy(int src, int dst, long offset, long length)
    {
        byte[] buf = ArrayPool<byte>.Shared.Rent(1 << 20);
        try
        {
            fixed (byte* b = buf)
            {
                while (length > 0)
                {
                    nint n = Libc.pread(src, b, (nint)Math.Min(length, buf.Length), offset);
                    if (n < 0) { if (Errno.Last == Errno.EINTR) continue; return Errno.Last; }
                    if (n == 0) return 0;
                    for (nint done = 0; done < n;)
                    {
                        nint w = Libc.pwrite(dst, b + done, n - done, offset + done);
                        if (w < 0) { if (Errno.Last == Errno.EINTR) continue; return Errno.Last; }
                        done += w;
                    }
                    offset += n; length -= n;
                }
            }
        }
        finally { ArrayPool<byte>.Shared.Return(buf); }
        return 0;
    }

    /// <summary>
    /// Gives the copy (work/tmp) the source's owner, xattrs (not the union's private ones), origin, mode and times,
    /// in that order: chown may clear set-id bits, and every change bumps ctime/mtime, so mode and times go last.
    /// <paramref name="srcName"/> empty means <paramref name="srcDir"/> is the source itself (a directory).
    /// </summary>
    int CopyMetadata(int srcDir, ReadOnlySpan<byte> srcName, byte* tmp, in Statx st, ulong ino)
    {
        if (Libc.fchownat(_workFd, tmp, st.Uid, st.Gid, Libc.AT_SYMLINK_NOFOLLOW) < 0) return Errno.Last;
        int tmpLen = new ReadOnlySpan<byte>(tmp, 300).IndexOf((byte)0);
        var tmpName = new ReadOnlySpan<byte>(tmp, tmpLen);
        int e = CopyXattrs(srcDir, srcName, tmpName);
        if (e != 0) return e;
        Markers.SetXattr(_workFd, tmpName, _x.Origin, new ReadOnlySpan<byte>(&ino, 8));
        if (st.Type != Libc.S_IFLNK && Libc.fchmodat(_workFd, tmp, st.Mode & 0xFFFu, 0) < 0) return Errno.Last;
        Timespec* ts = stackalloc Timespec[2];
        ts[0] = new Timespec { Sec = st.ATime.Sec, Nsec = st.ATime.Nsec };
        ts[1] = new Timespec { Sec = st.MTime.Sec, Nsec = st.MTime.Nsec };
        return Libc.utimensat(_workFd, tmp, ts, Libc.AT_SYMLINK_NOFOLLOW) < 0 ? Errno.Last : 0;
    }

    int CopyXattrs(int srcDir, ReadOnlySpan<byte> srcName, ReadOnlySpan<byte> tmpName)
    {
        byte* srcPath = stackalloc byte[Markers.PathBufferSize];
        byte* dstPath = stackalloc byte[Markers.PathBufferSize];
        var src = Markers.Target(srcDir, srcName, srcPath);
        var dst = Markers.Target(_workFd, tmpName, dstPath);
        byte[] list = ArrayPool<byte>.Shared.Rent(65536);
        byte[] value = ArrayPool<byte>.Shared.Rent(65536);
        try
        {
            fixed (byte* l = list) fixed (byte* v = value)
            {
                nint n = src.List(l, list.Length);
                if (n < 0) return Errno.Last is Errno.EOPNOTSUPP or Errno.ENOTSUP ? 0 : Errno.Last;
                for (int at = 0; at < n;)
                {
                    int len = new ReadOnlySpan<byte>(l + at, (int)n - at).IndexOf((byte)0);
                    if (len < 0) break;
                    var name = new ReadOnlySpan<byte>(l + at, len);
                    byte* nameZ = l + at;
                    at += len + 1;
                    if (Markers.IsPrivateXattr(name)) continue;
                    nint vlen = src.Get(nameZ, v, value.Length);
                    if (vlen < 0) continue;
                    if (dst.Set(nameZ, v, vlen, 0) < 0)
                    {
                        int e = Errno.Last;
                        // File capabilities whose root id cannot be mapped, or a backing fs without that namespace.
                        if (e is Errno.EOVERFLOW or Errno.EOPNOTSUPP or Errno.EPERM or Errno.EINVAL) continue;
                        return e;
                    }
                }
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(list);
            ArrayPool<byte>.Shared.Return(value);
        }
        return 0;
    }
}

