using Microsoft.Extensions.Logging;
using UnionFs.Fuse;
using UnionFs.Fuse.Kernel;
using UnionFs.Posix;

namespace UnionFs.Overlay;

// file: open, read, write and the rest of the data path. The FUSE file handle is the backing descriptor.
public sealed unsafe partial class OverlayFileSystem
{
    static bool WantsWrite(int flags) => (flags & Libc.O_ACCMODE) != Libc.O_RDONLY || (flags & Libc.O_TRUNC) != 0;

    public int Open(in RequestContext ctx, ulong node, int flags, ref OpenOut open)
    {
        if (_nodes.Get(node) is not { } n) return Errno.ESTALE;
        if (WantsWrite(flags))
        {
            if (!HasUpper) return Errno.EROFS;
            // O_TRUNC throws the data away anyway: copy only the metadata.
            int e = CopyUpFile(n, (flags & Libc.O_TRUNC) != 0 ? CopyUpMode.Empty : CopyUpMode.Data);
            if (e != 0) return e;
        }
        bool lowerData = n.Layer != 0 || (n.Metacopy && (flags & Libc.O_ACCMODE) == Libc.O_RDONLY);
        int fd = OpenObject(n, flags & ~(Libc.O_CREAT | Libc.O_EXCL | Libc.O_NOCTTY));
        // The name went away (or became a whiteout) after the kernel looked it up: ESTALE makes the kernel
        // look the path up again, as a local filesystem would have resolved it after the change.
        if (fd is -Errno.ENOENT or -Errno.ENXIO) return Errno.ESTALE;
        if (fd < 0) return -fd;
        if (ctx.KillSuidGid && (flags & Libc.O_TRUNC) != 0) DropSetId(node, fd);
        // The kernel asks for a lower file's data only after our answer has reached the caller and it has called
        // read(2): start the disk read now, so that it overlaps those round trips.
        if (lowerData) Libc.posix_fadvise(fd, 0, LowerReadAhead, Libc.POSIX_FADV_WILLNEED);
        // (Without an upper layer nothing is ever copied up: lower files are then as settled as upper ones.)
        int e2 = Opened(n, fd, lowerData && HasUpper, ref open, writable: WantsWrite(flags));
        if (lowerData && (open.Fh & PassthroughHandle) == 0) open.Fh |= LowerHandle;
        return e2;
    }

    /// <summary>How much of a lower file <see cref="Open"/> asks the backing filesystem to read ahead.</summary>
    const long LowerReadAhead = 128 * 1024;

    /// <summary>Opens a node's object for I/O (never following a symlink out of the layer); -errno on failure.</summary>
    int OpenObject(Node n, int flags)
    {
        // O_DIRECT stays at the FUSE level: the kernel bypasses its page cache for the caller, while the daemon's
        // reply buffers (data after a 16-byte header) could never meet an O_DIRECT descriptor's alignment.
        flags = (flags & ~Libc.O_DIRECT) | Libc.O_NOFOLLOW | Libc.O_CLOEXEC;
        int fd;
        if (n.UnlinkedFd >= 0)
        {
            byte* path = stackalloc byte[32];
            fd = OpenLayerFile(Libc.AT_FDCWD, FsUtil.ProcFdPath(n.UnlinkedFd, path), flags & ~Libc.O_NOFOLLOW, upper: true);
        }
        else if (n.Unlinked) return -Errno.ESTALE;
        else
        {
            var loc = n.Metacopy && (flags & Libc.O_ACCMODE) == Libc.O_RDONLY && n.DataLoc is { } d ? d : n.Loc;
            int dirFd = loc.Parent?.DirFd(loc.Layer) ?? -1;
            if (dirFd < 0) return -Errno.ESTALE;
            fixed (byte* name = loc.NameZ) fd = OpenLayerFile(dirFd, name, flags, _layers[loc.Layer].IsUpper);
        }
        return fd < 0 ? -Errno.Last : fd;
    }

    /// <summary>
    /// Opens a file for a caller's I/O. Lower files are read with O_NOATIME (layers below never change). Upper files
    /// are opened as the caller asked, so reads update their atimes by the rules of the mount they are opened on:
    /// the union's own (see OpenUpperMount); with noatime, O_NOATIME as well, for when there is no such mount.
    /// </summary>
    int OpenLayerFile(int dirFd, byte* name, int flags, bool upper)
    {
        return !upper || _options.Atime == AtimeMode.NoAtime ? OpenNoAtime(dirFd, name, flags) : Libc.openat(dirFd, name, flags, 0);
    }

    /// <summary>Bit 32 of a file handle marks an open that holds a reference to the node's passthrough backing id;
    /// the low 32 bits are the backing descriptor.</summary>
    const ulong PassthroughHandle = 1UL << 32;
    /// <summary>Bit 33: the handle was opened on a lower file (data not yet in the upper).</summary>
    const ulong LowerHandle = 1UL << 33;
    /// <summary>Bit 34: a page-cache open counted in <see cref="Node.CachedOpens"/> (passthrough mounts only).</summary>
    const ulong CachedHandle = 1UL << 34;
    /// <summary>Bit 35: a passthrough open for writing, counted in <see cref="Node.BackingWriters"/>.</summary>
    const ulong WriterHandle = 1UL << 35;

    /// <summary>
    /// Finishes an open: chooses how the kernel does the file's I/O. The kernel keeps one I/O mode per inode:
    /// while any open uses the page cache it refuses passthrough opens, and while any passthrough open exists it
    /// refuses page-cache opens and passthrough opens of another backing file (the open fails with EIO). So:
    /// <list type="bullet">
    /// <item>Files whose data is still in a lower layer use the page cache: a passthrough reader of the lower file
    /// would pin the inode to it, and a writer that copies the file up could then not be given the copy. (A union
    /// without an upper layer copies nothing up: its lower files use passthrough.)</item>
    /// <item>Files whose data is in the upper use passthrough (one backing id per inode, shared by its opens,
    /// closed after the last release) when the kernel offers it, unless page-cache opens of the inode still
    /// exist (a reader from before the copy-up): then they too use the page cache until those are closed.</item>
    /// </list>
    /// Once a file's data is in the upper it stays there, so its backing file never changes.
    /// </summary>
    /// <remarks><paramref name="mode"/>: the file's mode when the caller has just stat'ed it, else -1.</remarks>
    int Opened(Node n, int fd, bool lowerData, ref OpenOut open, int mode = -1, bool writable = true, bool newFile = false)
    {
        open.Fh = (ulong)(uint)fd;
        // Writes reach the layer before they are answered, so close(2) has nothing to flush: NoFlush saves a request.
        if (_session is not { PassthroughEnabled: true })
        {
            // Layers change only through this mount, so the page cache stays valid across opens.
            open.OpenFlags = OpenFlags.KeepCache | OpenFlags.NoFlush;
            return 0;
        }
        lock (n.CopyUpLock)
        {
            // (Once registration has failed for good, _passthrough is off, but opens of inodes that still have a
            // backing file must keep using it: the kernel would refuse them otherwise.)
            // Set-ID files stay on the page cache: the kernel leaves clearing their bits on write to us, and
            // passthrough writes never reach us (see RegisterBacking for files that become set-ID later).
            if (_passthrough && n.BackingRefs == 0 && n.CachedOpens == 0 && !lowerData && !IsSetId(fd, mode))
                RegisterBacking(n, fd);
            if (n.BackingId > 0)
            {
                // Also for a reader that opened the lower file just before a copy-up: the backing file is the copy.
                n.BackingRefs++;
                open.Fh |= PassthroughHandle;
                if (writable)
                {
                    // From now on the file's times may change unseen (see AttrTimeout): drop what the kernel holds
                    // with a long timeout (of a file just made it holds nothing yet).
                    open.Fh |= WriterHandle;
                    if (n.BackingWriters++ == 0 && !newFile) _session?.NotifyInvalidateInode(n.Id, -1, 0);
                }
                open.OpenFlags = OpenFlags.Passthrough | OpenFlags.NoFlush;
                open.BackingId = n.BackingId;
                return 0;
            }
            n.CachedOpens++;
            open.Fh |= CachedHandle;
            // Writes through passthrough bypassed the page cache: let the kernel drop what it holds of the file.
            open.OpenFlags = OpenFlags.NoFlush | (n.PageCacheStale ? 0 : OpenFlags.KeepCache);
            n.PageCacheStale = false;
            return 0;
        }
    }

    /// <summary>
    /// Registers <paramref name="fd"/> as the node's backing file. The kernel opens a backing file of its own for each
    /// passthrough open, from this one's path and with that open's flags, so the descriptor's access mode does not
    /// matter. Caller holds the node's CopyUpLock.
    /// </summary>
    /// <remarks>
    /// The kernel does a passthrough write with the credentials of whoever registered the backing file, and leaves
    /// clearing set-ID bits to us (HANDLE_KILLPRIV_V2) — yet the write never reaches us. So the registration is
    /// made without CAP_FSETID: a file made set-ID while passthrough opens of it exist then loses the bits on the
    /// next write through them, as the backing filesystem clears them for a writer without that capability. (Set-ID
    /// files are never registered, see <see cref="Opened"/>, so root's writes to them keep the bits as usual.)
    /// </remarks>
    void RegisterBacking(Node n, int fd)
    {
        int id;
        using (Capabilities.WithoutFsetid()) id = _session!.OpenBacking(fd);
        if (id > 0) { n.BackingId = id; n.PageCacheStale = true; return; }
        _log.LogWarning("passthrough: registering the backing file of node {Node} failed: {Error}", n.Id, Errno.Describe(-id));
        if (id is -Errno.EPERM or -Errno.EOPNOTSUPP or -Errno.ELOOP or -Errno.ENOTTY)
            _passthrough = false; // not usable on this mount: the daemon serves data from now on
    }

    public int Release(in RequestContext ctx, ulong node, ulong fh, int flags)
    {
        Libc.close((int)fh);
        if (_nodes.Get(node) is not { } n) return 0;
        if ((fh & (PassthroughHandle | CachedHandle)) != 0)
            lock (n.CopyUpLock)
            {
                if ((fh & CachedHandle) != 0) n.CachedOpens--;
                else
                {
                    // The last writer gone: what a mapping wrote is in the upper now, the kernel must read it again.
                    if ((fh & WriterHandle) != 0 && --n.BackingWriters == 0) _session?.NotifyInvalidateInode(n.Id, -1, 0);
                    if (--n.BackingRefs == 0 && n.BackingId > 0)
                    {
                        _session!.CloseBacking(n.BackingId);
                        n.BackingId = 0;
                    }
                }
            }
        return 0;
    }

    public int Read(in RequestContext ctx, ulong node, ulong fh, long offset, Span<byte> buffer, out int bytesRead)
    {
        // A handle opened on a lower file that has since been copied up must read the copy: the kernel keeps one
        // page cache and one size per inode, and a short read from the old file would shrink the file's size.
        if ((fh & LowerHandle) != 0 && _nodes.Get(node) is { Layer: 0, Metacopy: false } copied)
        {
            int fd = OpenObject(copied, Libc.O_RDONLY);
            if (fd >= 0)
                try { return FsUtil.ReadFull(fd, offset, buffer, out bytesRead); }
                finally { Libc.close(fd); }
        }
        return FsUtil.ReadFull((int)fh, offset, buffer, out bytesRead);
    }

    /// <summary>The handle's own descriptor, except where <see cref="Read"/> reads another file (a copy-up's).</summary>
    public int ReadSource(ulong node, ulong fh) =>
        (fh & LowerHandle) != 0 && _nodes.Get(node) is { Layer: 0, Metacopy: false } ? -1 : (int)fh;

    public int Write(in RequestContext ctx, ulong node, ulong fh, long offset, ReadOnlySpan<byte> data, uint writeFlags, out int written)
    {
        // Before the data, as a local filesystem does: a reader never sees new content under the old bits.
        if (ctx.KillSuidGid) DropSetId(node, (int)fh);
        return FsUtil.WriteAt((int)fh, offset, data, out written);
    }

    public int Flush(in RequestContext ctx, ulong node, ulong fh) => 0;

    /// <summary>Whether an open file has set-user-ID or set-group-ID in its mode (or its mode cannot be read);
    /// <paramref name="mode"/> is the mode if already known, else -1.</summary>
    static bool IsSetId(int fd, int mode)
    {
        Statx st;
        if (mode < 0)
        {
            if (Libc.statx(fd, Empty, Libc.AT_EMPTY_PATH, Statx.TypeAndMode, &st) != 0) return true;
            mode = st.Mode;
        }
        return (mode & (Libc.S_ISUID | Libc.S_ISGID)) != 0;
    }

    /// <summary>
    /// What a write, truncate or fallocate by a caller without CAP_FSETID does to a regular file on a local
    /// filesystem: set-user-ID goes, and set-group-ID when the group may execute (without group execute it marks
    /// mandatory locking, not a privilege). security.capability needs nothing here: the backing filesystem drops it
    /// on any write or truncate, including ours.
    /// </summary>
    void DropSetId(ulong node, int fd)
    {
        Statx st;
        if (Libc.statx(fd, Empty, Libc.AT_EMPTY_PATH, Statx.TypeAndMode, &st) != 0 || st.Type != Libc.S_IFREG) return;
        uint mode = st.Mode & 0xFFFu, kept = mode & ~Libc.S_ISUID;
        if ((mode & Libc.S_IXGRP) != 0) kept &= ~Libc.S_ISGID;
        if (kept == mode || Libc.fchmod(fd, kept) != 0) return;
        // The kernel's copy of the mode is now stale, and a write's reply carries no attributes. Dropping cached
        // attributes takes no lock the request in flight holds, so it is safe from inside its handler.
        _session?.NotifyInvalidateInode(node, -1, 0);
    }

    public int Fsync(in RequestContext ctx, ulong node, ulong fh, bool dataOnly) =>
        _options.Volatile ? 0 : FsUtil.Err(dataOnly ? Libc.fdatasync((int)fh) : Libc.fsync((int)fh));

    public int Fallocate(in RequestContext ctx, ulong node, ulong fh, long offset, long length, int mode)
    {
        // The kernel sends no kill flag with FALLOCATE and COPY_FILE_RANGE, and has left the bits to us: a caller
        // other than root stands for one without CAP_FSETID.
        if (ctx.Uid != 0) DropSetId(node, (int)fh);
        return FsUtil.Err(Libc.fallocate((int)fh, mode, offset, length));
    }

    public int Lseek(in RequestContext ctx, ulong node, ulong fh, long offset, int whence, out long result)
    {
        result = Libc.lseek((int)fh, offset, whence);
        return result < 0 ? Errno.Last : 0;
    }

    public int CopyFileRange(in RequestContext ctx, ulong nodeIn, ulong fhIn, long offIn, ulong nodeOut, ulong fhOut, long offOut, long length, out long copied)
    {
        if (ctx.Uid != 0) DropSetId(nodeOut, (int)fhOut);
        nint r = Libc.copy_file_range((int)fhIn, &offIn, (int)fhOut, &offOut, (nint)length, 0);
        copied = r;
        return r < 0 ? Errno.Last : 0;
    }

    public int ReadLink(in RequestContext ctx, ulong node, Span<byte> target, out int length)
    {
        length = 0;
        if (_nodes.Get(node) is not { } n) return Errno.ESTALE;
        var loc = n.Loc;
        int dirFd = n.UnlinkedFd >= 0 ? n.UnlinkedFd : loc.Parent?.DirFd(loc.Layer) ?? -1;
        if (dirFd < 0) return Errno.ESTALE;
        fixed (byte* t = target) fixed (byte* name = n.UnlinkedFd >= 0 ? [0] : loc.NameZ)
        {
            nint r = Libc.readlinkat(dirFd, name, t, target.Length);
            if (r < 0) return Errno.Last;
            length = (int)r;
        }
        return 0;
    }

    public int TmpFile(in RequestContext ctx, ulong parent, int flags, uint mode, uint umask, ref EntryOut entry, ref OpenOut open)
    {
        if (_nodes.Get(parent) is not { } p) return Errno.ESTALE;
        if (!HasUpper) return Errno.EROFS;
        // No directory lock: an unnamed file changes no directory's entries.
        int e = CopyUpDir(p, out int pfd);
        if (e != 0) return e;
        mode = ApplyUmask(mode, umask, p, pfd);
        int fd = Libc.openat(pfd, DotZ, (flags & ~Libc.O_CREAT) | Libc.O_TMPFILE | Libc.O_CLOEXEC, mode & 0xFFF);
        if (fd < 0) return Errno.Last;
        if (_asRoot)
        {
            var owner = NewOwner(ctx, pfd); // (a set-group-ID directory gives its group, as for any new file)
            Libc.fchown(fd, owner.Uid, owner.Gid);
            if ((mode & (Libc.S_ISUID | Libc.S_ISGID)) != 0) Libc.fchmod(fd, mode & 0xFFF);
        }
        return OpenedUnnamed(p, fd, ref entry, ref open);
    }

    /// <summary>A node for an open file that has no name (O_TMPFILE).</summary>
    int OpenedUnnamed(Node parent, int fd, ref EntryOut entry, ref OpenOut open)
    {
        Statx st;
        Libc.statx(fd, Empty, Libc.AT_EMPTY_PATH, Statx.BasicStats, &st);
        var node = new Node(Libc.S_IFREG)
        {
            Key = (0, st.Dev, st.Ino), Loc = new Location(parent, [0], 0), Ino = MakeIno(0, st.Ino),
        };
        node.UnlinkedFd = OpenProcPath(fd); // an unnamed file is reached only through its descriptor
        node = _nodes.AddOrAcquire(node, parent);
        int e = Opened(node, fd, lowerData: false, ref open, st.Mode, newFile: true);
        FillEntry(node, st, ref entry);
        return e;
    }

    static int OpenProcPath(int fd)
    {
        byte* path = stackalloc byte[32];
        return Libc.openat(Libc.AT_FDCWD, FsUtil.ProcFdPath(fd, path), Libc.O_PATH | Libc.O_CLOEXEC, 0);
    }
}
