using UnionFs.Fuse;
using UnionFs.Fuse.Kernel;
using UnionFs.Posix;

namespace UnionFs.Overlay;

// dir: create, mkdir, mknod, symlink, link, unlink, rmdir, rename (checklist §10-12).
public sealed unsafe partial class OverlayFileSystem
{
    enum Kind { File, Dir, Node, Symlink }

    /// <summary>What is at a name before a change: the merged view's answer and the upper's own entry.</summary>
    ref struct NameState
    {
        public bool Exists;          // visible in the merged view
        public int TopLayer;         // the layer holding it, when it exists
        public bool UpperWhiteout;   // the upper holds a whiteout (char 0/0) at the name
        public bool UpperAufsWhiteout; // the upper holds ".wh.NAME"
        public bool LowerHasName;    // some lower layer below the upper has the name (whiteouts excluded)
        public Statx Stat;
    }

    /// <summary>
    /// One pass over the layers answers two questions: what the merged view shows at the name (the search stops at
    /// the first object or whiteout), and whether the first lower layer below the upper that mentions the name has a
    /// real object there (then removing the name needs a whiteout, and a directory arriving there must be opaque).
    /// </summary>
    int Probe(Node parent, byte* nameZ, ReadOnlySpan<byte> name, out NameState s)
    {
        s = default;
        s.TopLayer = -1;
        var dirs = parent.Dirs;
        bool upper = HasUpper && dirs.Length > 0 && dirs[0].Layer == 0;
        bool mergedDone = false, lowerDone = dirs.Length <= (upper ? 1 : 0);
        Statx st;
        for (int i = 0; i < dirs.Length && !(mergedDone && lowerDone); i++)
        {
            bool isUpper = upper && i == 0;
            int e = StatName(dirs[i], nameZ, name, &st); // (the upper keeps no name hashes: always asked)
            if (e == 0)
            {
                bool whiteout = st.IsWhiteoutDevice;
                if (!mergedDone)
                {
                    if (!whiteout) { s.Exists = true; s.TopLayer = dirs[i].Layer; s.Stat = st; }
                    mergedDone = true;
                }
                if (isUpper) s.UpperWhiteout = whiteout;
                else if (!lowerDone) { s.LowerHasName = !whiteout; lowerDone = true; }
                continue;
            }
            if (e != Errno.ENOENT)
            {
                if (!mergedDone) return e;
                break;
            }
            bool aufs = isUpper ? dirs[0].AufsMarkers != 1 && Markers.HasAufsWhiteout(dirs[0].Fd, name) : HasAufsWhiteout(dirs[i], name);
            if (!aufs) continue;
            mergedDone = true;
            if (isUpper) s.UpperAufsWhiteout = true;
            else lowerDone = true;
        }
        return 0;
    }

    /// <summary>
    /// The owner a new object gets: the caller, or the directory's group under a set-group-ID directory; and whether
    /// an object the daemon makes in that directory has that owner already (root making its own files), so that
    /// no chown is needed.
    /// </summary>
    (uint Uid, uint Gid, bool AsMade) NewOwner(in RequestContext ctx, int parentUpperFd)
    {
        uint uid = HostUid(ctx.Uid), gid = HostGid(ctx.Gid);
        bool setGid = false;
        Statx st;
        if (Libc.statx(parentUpperFd, Empty, Libc.AT_EMPTY_PATH, Statx.BasicStats, &st) == 0 && (st.Mode & 0x400) != 0)
        {
            gid = st.Gid;
            setGid = true;
        }
        return (uid, gid, uid == _daemonUid && (setGid || gid == _daemonGid));
    }

    /// <summary>
    /// The mode a new object gets: the caller's umask takes bits away, unless the parent directory has a default ACL,
    /// which decides instead (the upper filesystem applies it when the object is made), as on a local filesystem.
    /// The kernel leaves this to us (FUSE_DONT_MASK) because only here is the parent's ACL known.
    /// </summary>
    static uint ApplyUmask(uint mode, uint umask, Node parent, int parentUpperFd)
    {
        if (umask == 0) return mode;
        if (parent.DefaultAcl == 0) parent.DefaultAcl = Markers.HasXattr(parentUpperFd, DefaultAclXattr) ? (byte)2 : (byte)1;
        return parent.DefaultAcl == 2 ? mode : mode & ~(umask & 0x1FF);
    }

    static ReadOnlySpan<byte> DefaultAclXattr => "system.posix_acl_default\0"u8;

    /// <summary>
    /// Creates one object at parent/name in the upper. Over a whiteout the object is built in the work directory and
    /// renamed over it (a directory is swapped with RENAME_EXCHANGE and made opaque), so the lower object never
    /// reappears, not even after a crash. Returns the open descriptor for files in <paramref name="fileFd"/>.
    /// </summary>
    int CreateObject(in RequestContext ctx, Node parent, ReadOnlySpan<byte> name, Kind kind, uint mode, uint umask, ulong rdev,
                     byte* target, int openFlags, out int fileFd, out Node? file, out Statx fileStat)
    {
        fileFd = -1;
        file = null;
        fileStat = default;
        if (!HasUpper) return Errno.EROFS;
        if (Markers.IsWhiteoutName(name)) return Errno.EINVAL;
        byte* nameZ = stackalloc byte[NameMax + 1];
        if (ToNameZ(name, nameZ) is var tooLong and not 0) return tooLong;
        int e = CopyUpDir(parent, out int pfd);
        if (e != 0) return e;
        lock (LockDir(parent))
        {
            e = Probe(parent, nameZ, name, out var s);
            if (e != 0) return e;
            if (s.Exists) return Errno.EEXIST;
            var owner = NewOwner(ctx, pfd);
            mode = ApplyUmask(mode, umask, parent, pfd);
            Changed(parent, subdirs: kind == Kind.Dir);
            if (!s.UpperWhiteout)
            {
                e = MakeObject(pfd, nameZ, kind, mode, rdev, target, openFlags, owner.AsMade ? null : (owner.Uid, owner.Gid), opaque: false, out fileFd);
                if (e == 0 && s.UpperAufsWhiteout) e = RemoveAufsWhiteout(pfd, name);
                return e == 0 ? RegisterFile(parent, name, ref fileFd, out file, out fileStat) : e;
            }
            fixed (byte* tmp = TempName())
            {
                e = MakeObject(_workFd, tmp, kind, mode, rdev, target, openFlags, (owner.Uid, owner.Gid), opaque: kind == Kind.Dir, out fileFd);
                if (e != 0) return e;
                if (kind == Kind.Dir)
                {
                    if (Libc.renameat2(_workFd, tmp, pfd, nameZ, Libc.RENAME_EXCHANGE) < 0) e = Errno.Last;
                    Libc.unlinkat(_workFd, tmp, e == 0 ? 0 : Libc.AT_REMOVEDIR); // the old whiteout, or our directory
                }
                else if (Libc.renameat2(_workFd, tmp, pfd, nameZ, 0) < 0)
                {
                    e = Errno.Last;
                    Libc.unlinkat(_workFd, tmp, 0);
                }
                if (e != 0 && fileFd >= 0) { Libc.close(fileFd); fileFd = -1; }
                return e == 0 ? RegisterFile(parent, name, ref fileFd, out file, out fileStat) : e;
            }
        }
    }

    /// <summary>
    /// The node of a file just created at parent/name and open as <paramref name="fd"/> (nothing for other kinds).
    /// Made here, under the parent's lock, from the descriptor: the name cannot have changed yet, and a new
    /// object has no origin, so a lookup of the name would only stat it again and read its origin xattr.
    /// </summary>
    int RegisterFile(Node parent, ReadOnlySpan<byte> name, ref int fd, out Node? node, out Statx st)
    {
        node = null;
        st = default;
        if (fd < 0) return 0;
        Statx s;
        if (Libc.statx(fd, Empty, Libc.AT_EMPTY_PATH, Statx.BasicStats, &s) != 0)
        {
            int e = Errno.Last;
            Libc.close(fd);
            fd = -1;
            return e;
        }
        st = s;
        node = _nodes.AddOrAcquire(new Node(Libc.S_IFREG)
        {
            Key = (0, s.Dev, s.Ino), Loc = new Location(parent, Node.MakeNameZ(name), 0), Ino = MakeIno(0, s.Ino),
        }, parent);
        return 0;
    }

    int MakeObject(int dirFd, byte* nameZ, Kind kind, uint mode, ulong rdev, byte* target, int openFlags,
                   (uint Uid, uint Gid)? chownTo, bool opaque, out int fileFd)
    {
        fileFd = -1;
        int r = kind switch
        {
            Kind.Dir => Libc.mkdirat(dirFd, nameZ, mode & 0xFFF),
            Kind.Symlink => Libc.symlinkat(target, dirFd, nameZ),
            Kind.Node => Libc.mknodat(dirFd, nameZ, mode, rdev),
            _ => fileFd = Libc.openat(dirFd, nameZ, (openFlags & ~(Libc.O_EXCL | Libc.O_DIRECT)) | Libc.O_CREAT | Libc.O_EXCL | Libc.O_NOFOLLOW | Libc.O_CLOEXEC, mode & 0xFFF),
        };
        if (r < 0) return Errno.Last;
        int e = 0;
        if (_asRoot && chownTo is { } owner && Libc.fchownat(dirFd, nameZ, owner.Uid, owner.Gid, Libc.AT_SYMLINK_NOFOLLOW) < 0) e = Errno.Last;
        // chown clears set-user-ID and set-group-ID of an executable non-directory, even for root; the mode asked for
        // (the kernel has already dropped a set-group-ID the caller may not have) is what the new object must show.
        if (e == 0 && _asRoot && chownTo is not null && kind is Kind.File or Kind.Node && (mode & (Libc.S_ISUID | Libc.S_ISGID)) != 0
            && Libc.fchmodat(dirFd, nameZ, mode & 0xFFF, 0) < 0) e = Errno.Last;
        if (e == 0 && opaque)
        {
            int len = new ReadOnlySpan<byte>(nameZ, NameMax + 32).IndexOf((byte)0);
            e = Markers.SetXattr(dirFd, new ReadOnlySpan<byte>(nameZ, len), _x.Opaque, "y"u8);
        }
        if (e != 0)
        {
            if (fileFd >= 0) { Libc.close(fileFd); fileFd = -1; }
            Libc.unlinkat(dirFd, nameZ, kind == Kind.Dir ? Libc.AT_REMOVEDIR : 0);
        }
        return e;
    }

    int Created(int e, Node parent, ReadOnlySpan<byte> name, ref EntryOut entry)
    {
        if (e != 0) return e;
        e = LookupNode(parent, name, out var node, out var st);
        if (e != 0) return e;
        FillEntry(node!, st, ref entry);
        return 0;
    }

    public int MkDir(in RequestContext ctx, ulong parent, ReadOnlySpan<byte> name, uint mode, uint umask, ref EntryOut entry)
    {
        if (_nodes.Get(parent) is not { } p) return Errno.ESTALE;
        return Created(CreateObject(ctx, p, name, Kind.Dir, mode, umask, 0, null, 0, out _, out _, out _), p, name, ref entry);
    }

    public int MkNod(in RequestContext ctx, ulong parent, ReadOnlySpan<byte> name, uint mode, uint rdev, uint umask, ref EntryOut entry)
    {
        if (_nodes.Get(parent) is not { } p) return Errno.ESTALE;
        if (name.Length > NameMax) return Errno.ENAMETOOLONG;
        // The kernel's 32-bit rdev is the new_encode_dev() form: minor low byte, major, then minor high bits.
        ulong dev = Libc.MakeDev((rdev >> 8) & 0xfff, (rdev & 0xff) | ((rdev >> 12) & 0xfff00));
        if ((mode & Libc.S_IFMT) == Libc.S_IFCHR && dev == 0) return Errno.EPERM; // char 0/0 is a whiteout, never a device
        var kind = (mode & Libc.S_IFMT) == Libc.S_IFREG ? Kind.File : Kind.Node;
        int e = CreateObject(ctx, p, name, kind, mode, umask, dev, null, Libc.O_WRONLY, out int fd, out var file, out var st);
        if (fd >= 0) Libc.close(fd);
        if (file is null) return Created(e, p, name, ref entry);
        FillEntry(file, st, ref entry);
        return 0;
    }

    public int Symlink(in RequestContext ctx, ulong parent, ReadOnlySpan<byte> name, ReadOnlySpan<byte> target, ref EntryOut entry)
    {
        if (_nodes.Get(parent) is not { } p) return Errno.ESTALE;
        if (target.Length >= 4096) return Errno.ENAMETOOLONG;
        byte* t = stackalloc byte[target.Length + 1];
        target.CopyTo(new Span<byte>(t, target.Length));
        t[target.Length] = 0;
        return Created(CreateObject(ctx, p, name, Kind.Symlink, 0x1FF, 0, 0, t, 0, out _, out _, out _), p, name, ref entry);
    }

    public int Create(in RequestContext ctx, ulong parent, ReadOnlySpan<byte> name, int flags, uint mode, uint umask, ref EntryOut entry, ref OpenOut open)
    {
        if (_nodes.Get(parent) is not { } p) return Errno.ESTALE;
        for (int attempt = 0; ; attempt++)
        {
            int e = CreateObject(ctx, p, name, Kind.File, mode | Libc.S_IFREG, umask, 0, null, flags & ~Libc.O_TRUNC,
                                 out int fd, out var node, out var created);
            if (e == 0)
            {
                node!.NoCapability = true; // a new file has no xattrs but those this mount sets
                // Opened first: whether the entry's attributes may be cached depends on how the file is opened.
                e = Opened(node, fd, lowerData: false, ref open, created.Mode, WantsWrite(flags), newFile: true);
                FillEntry(node, created, ref entry);
                return e;
            }
            if (fd >= 0) Libc.close(fd); // (made, but a later step failed)
            if (e != Errno.EEXIST || (flags & Libc.O_EXCL) != 0) return e;
            // open(O_CREAT) of a name that exists after all (another process created it meanwhile): open it,
            // unless it disappears again before we get there, then try to create it once more.
            e = LookupNode(p, name, out var existing, out var st);
            if (e == Errno.ENOENT && attempt < 8) continue;
            if (e != 0) return e;
            e = Open(ctx, existing!.Id, flags & ~(Libc.O_CREAT | Libc.O_EXCL), ref open);
            if (e == Errno.ESTALE && attempt < 8) { _nodes.Forget(existing.Id, 1); continue; }
            if (e != 0) { _nodes.Forget(existing.Id, 1); return e; }
            FillEntry(existing, st, ref entry);
            return 0;
        }
    }

    public int Link(in RequestContext ctx, ulong node, ulong newParent, ReadOnlySpan<byte> newName, ref EntryOut entry)
    {
        if (_nodes.Get(node) is not { } n || _nodes.Get(newParent) is not { } np) return Errno.ESTALE;
        if (n.IsDir) return Errno.EPERM;
        if (Markers.IsWhiteoutName(newName)) return Errno.EINVAL;
        byte* nameZ = stackalloc byte[NameMax + 1];
        int e = ToNameZ(newName, nameZ);
        if (e != 0) return e;
        e = CopyUpFile(n, CopyUpMode.Data);
        if (e != 0) return e;
        e = CopyUpDir(np, out int pfd);
        if (e != 0) return e;
        lock (LockDir(np))
        {
            e = Probe(np, nameZ, newName, out var s);
            if (e != 0) return e;
            if (s.Exists) return Errno.EEXIST;
            Changed(np);
            var loc = n.Loc;
            int srcDir = n.UnlinkedFd >= 0 ? n.UnlinkedFd : loc.Parent?.DirFd(0) ?? -1;
            if (srcDir < 0) return Errno.ESTALE;
            fixed (byte* srcName = n.UnlinkedFd >= 0 ? [0] : loc.NameZ)
            {
                int flags = n.UnlinkedFd >= 0 ? Libc.AT_EMPTY_PATH : 0;
                if (!s.UpperWhiteout)
                {
                    if (Libc.linkat(srcDir, srcName, pfd, nameZ, flags) < 0) return Errno.Last;
                    if (s.UpperAufsWhiteout) RemoveAufsWhiteout(pfd, newName);
                }
                else fixed (byte* tmp = TempName())
                {
                    if (Libc.linkat(srcDir, srcName, _workFd, tmp, flags) < 0) return Errno.Last;
                    if (Libc.renameat2(_workFd, tmp, pfd, nameZ, 0) < 0) { e = Errno.Last; Libc.unlinkat(_workFd, tmp, 0); return e; }
                }
            }
            MarkImpure(np);
        }
        e = StatNode(n, out var st);
        if (e != 0) return e;
        _nodes.Acquire(n);
        FillEntry(n, st, ref entry);
        return 0;
    }

    public int Unlink(in RequestContext ctx, ulong parent, ReadOnlySpan<byte> name) => Remove(parent, name, dir: false);
    public int RmDir(in RequestContext ctx, ulong parent, ReadOnlySpan<byte> name) => Remove(parent, name, dir: true);

    /// <summary>
    /// unlink/rmdir. A name that exists only in the upper is removed; a name that a lower layer also has becomes a
    /// whiteout, atomically (RENAME_WHITEOUT moves the upper object away and leaves the whiteout in one step).
    /// A lower object's data is never copied.
    /// </summary>
    int Remove(ulong parentId, ReadOnlySpan<byte> name, bool dir)
    {
        if (_nodes.Get(parentId) is not { } parent) return Errno.ESTALE;
        if (!HasUpper) return Errno.EROFS;
        int e = LookupNode(parent, name, out var node, out var st);
        if (e != 0) return e;
        try
        {
            if (dir && !node!.IsDir) return Errno.ENOTDIR;
            if (!dir && node!.IsDir) return Errno.EISDIR;
            byte* nameZ = stackalloc byte[NameMax + 1];
            ToNameZ(name, nameZ);
            // A directory that is not empty stays where it is, and so does its parent (as on kernel overlayfs);
            // asked again below, under the lock, where it counts.
            if (dir && parent.Dirs[0].Layer != 0 && !IsMergedDirEmpty(node!)) return Errno.ENOTEMPTY;
            e = CopyUpDir(parent, out int pfd);
            if (e != 0) return e;
            lock (LockDir(parent))
            {
                if (dir && !IsMergedDirEmpty(node!)) return Errno.ENOTEMPTY;
                e = Probe(parent, nameZ, name, out var s);
                if (e != 0) return e;
                if (!s.Exists) return Errno.ENOENT;
                KeepIfStillReachable(node!, parent, name);
                Changed(parent, subdirs: dir);
                bool inUpper = s.TopLayer == 0;
                if (!inUpper) e = WriteWhiteout(pfd, nameZ, name);
                else if (!s.LowerHasName) e = dir ? RemoveUpperDir(pfd, nameZ) : FsUtil.Err(Libc.unlinkat(pfd, nameZ, 0));
                else e = ReplaceWithWhiteout(pfd, nameZ, name, dir);
                if (e == 0 && (st.NLink <= 1 || dir)) _nodes.Detach(node!);
                return e;
            }
        }
        finally { _nodes.Forget(node!.Id, 1); }
    }

    /// <summary>
    /// Before a non-directory's name is removed or replaced, its node gets a descriptor of the object. The kernel may
    /// still hold the node (the object is open, has other links, or a path walk just found it): a stat or open that
    /// races with the removal then reaches the object, as on a local filesystem, instead of failing with ESTALE.
    /// </summary>
    void KeepIfStillReachable(Node node, Node parent, ReadOnlySpan<byte> name)
    {
        if (node.IsDir || node.UnlinkedFd >= 0) return;
        if (node.OtherName is { } other && other.ParentId == parent.Id && other.Name.SequenceEqual(name)) node.OtherName = null;
        var loc = node.Loc;
        if (loc.Parent != parent || !loc.Name.SequenceEqual(name)) return;
        if (node.OtherName is { } alias && MoveToOtherName(node, alias)) return;
        fixed (byte* n = loc.NameZ)
            node.UnlinkedFd = Libc.openat(parent.DirFd(loc.Layer), n, Libc.O_PATH | Libc.O_NOFOLLOW | Libc.O_CLOEXEC, 0);
    }

    /// <summary>
    /// A hard link removed while the file keeps another name the kernel found it under: the node lives on at that
    /// name, as the inode does on a local filesystem (a stat reaches it, a copy-up goes there), if the name still
    /// leads to this object in the merged view. Under the lock of the directory the name is removed from.
    /// </summary>
    bool MoveToOtherName(Node node, OtherLink other)
    {
        node.OtherName = null;
        if (_nodes.Get(other.ParentId) is not { IsDir: true } p) return false;
        var dirs = p.Dirs;
        fixed (byte* nameZ = other.NameZ)
        {
            int top = FindTop(dirs, 0, nameZ, other.Name, out var st);
            if (top < 0 || dirs[top].Layer != other.Layer || st.Dev != node.Key.Dev || st.Ino != node.Key.Ino) return false;
        }
        _nodes.Reparent(node, p, other.NameZ, other.Layer);
        return true;
    }

    int ReplaceWithWhiteout(int pfd, byte* nameZ, ReadOnlySpan<byte> name, bool dir)
    {
        fixed (byte* tmp = TempName())
        {
            // A whiteout made beside the object, then swapped with it: the name never shows the lower object.
            if (!_aufsWhiteouts && LinkSharedWhiteout(_workFd, tmp) == 0)
            {
                if (Libc.renameat2(_workFd, tmp, pfd, nameZ, Libc.RENAME_EXCHANGE) == 0)
                {
                    RemoveTreeAt(_workFd, tmp);
                    return 0;
                }
                Libc.unlinkat(_workFd, tmp, 0);
            }
            if (!_aufsWhiteouts && Libc.renameat2(pfd, nameZ, _workFd, tmp, Libc.RENAME_WHITEOUT) == 0)
            {
                RemoveTreeAt(_workFd, tmp);
                return 0;
            }
            // No RENAME_WHITEOUT here (or no privilege for it): move away, then write the whiteout.
            if (Libc.renameat2(pfd, nameZ, _workFd, tmp, 0) < 0) return Errno.Last;
            int e = WriteWhiteout(pfd, nameZ, name);
            if (e != 0) { Libc.renameat2(_workFd, tmp, pfd, nameZ, Libc.RENAME_NOREPLACE); return e; }
            RemoveTreeAt(_workFd, tmp);
            return 0;
        }
    }

    /// <summary>Writes a whiteout: char 0/0 as overlayfs does, or ".wh.NAME" where mknod is not allowed.</summary>
    int WriteWhiteout(int pfd, byte* nameZ, ReadOnlySpan<byte> name)
    {
        if (!_aufsWhiteouts)
        {
            int e = LinkSharedWhiteout(pfd, nameZ);
            if (e is 0 or Errno.EEXIST or Errno.ENOENT or Errno.ENOSPC) return e;
            if (Libc.mknodat(pfd, nameZ, Libc.S_IFCHR, 0) == 0) return 0;
            e = Errno.Last;
            if (e is not (Errno.EPERM or Errno.EOPNOTSUPP)) return e;
            _aufsWhiteouts = true;
        }
        byte* wh = stackalloc byte[NameMax + 8];
        Markers.WhPrefix.CopyTo(new Span<byte>(wh, 4));
        name.CopyTo(new Span<byte>(wh + 4, name.Length));
        wh[name.Length + 4] = 0;
        int fd = Libc.openat(pfd, wh, Libc.O_CREAT | Libc.O_WRONLY | Libc.O_CLOEXEC, 0);
        if (fd < 0) return Errno.Last;
        Libc.close(fd);
        return 0;
    }

    /// <summary>
    /// Whiteouts are hard links of one char 0/0 inode kept in the work directory, as overlayfs makes them: a link
    /// allocates no inode, which is most of what a whiteout costs on a large filesystem. A full link count gets a
    /// fresh shared inode. Returns 0 or an errno; EPERM or EXDEV (no links here) turns the scheme off, and the
    /// caller makes a whiteout of its own. Two threads may find the shared inode full at once: each makes a fresh
    /// one, and the second rename wins, which is as good.
    /// </summary>
    int LinkSharedWhiteout(int dirFd, byte* nameZ)
    {
        if (_noSharedWhiteout) return Errno.EPERM;
        fixed (byte* shared = SharedWhiteoutName)
            for (int attempt = 0; ; attempt++)
            {
                if (Libc.linkat(_workFd, shared, dirFd, nameZ, 0) == 0) return 0;
                int e = Errno.Last;
                if (e is Errno.EPERM or Errno.EXDEV or Errno.EOPNOTSUPP) { _noSharedWhiteout = true; return e; }
                if (e is not (Errno.ENOENT or Errno.EMLINK) || attempt > 0) return e;
                fixed (byte* tmp = TempName())
                {
                    if (Libc.mknodat(_workFd, tmp, Libc.S_IFCHR, 0) < 0) { e = Errno.Last; _noSharedWhiteout = e is Errno.EPERM; return e; }
                    if (Libc.renameat2(_workFd, tmp, _workFd, shared, 0) < 0) { e = Errno.Last; Libc.unlinkat(_workFd, tmp, 0); return e; }
                }
            }
    }

    static readonly byte[] SharedWhiteoutName = "whiteout\0"u8.ToArray();

    int RemoveAufsWhiteout(int pfd, ReadOnlySpan<byte> name)
    {
        byte* wh = stackalloc byte[NameMax + 8];
        Markers.WhPrefix.CopyTo(new Span<byte>(wh, 4));
        name.CopyTo(new Span<byte>(wh + 4, name.Length));
        wh[name.Length + 4] = 0;
        return FsUtil.Err(Libc.unlinkat(pfd, wh, 0));
    }

    /// <summary>Removes an upper directory that is logically empty but may still hold whiteouts.</summary>
    int RemoveUpperDir(int pfd, byte* nameZ)
    {
        if (Libc.unlinkat(pfd, nameZ, Libc.AT_REMOVEDIR) == 0) return 0;
        if (Errno.Last != Errno.ENOTEMPTY) return Errno.Last;
        fixed (byte* tmp = TempName())
        {
            if (Libc.renameat2(pfd, nameZ, _workFd, tmp, 0) < 0) return Errno.Last;
            RemoveTreeAt(_workFd, tmp);
        }
        return 0;
    }

    /// <summary>Deletes a tree inside the work directory (our own scratch copies and moved-away whiteouts).</summary>
    static void RemoveTreeAt(int dirFd, byte* nameZ)
    {
        if (Libc.unlinkat(dirFd, nameZ, 0) == 0) return;
        int fd = OpenNoAtime(dirFd, nameZ, Libc.O_RDONLY | Libc.O_DIRECTORY | Libc.O_NOFOLLOW | Libc.O_CLOEXEC);
        if (fd < 0) return;
        byte* buf = stackalloc byte[8192];
        byte* c = stackalloc byte[NameMax + 1];
        // Delete what one pass lists, then list again from the start: removing entries while reading on shifts
        // the directory's offsets. Stop when a pass removes nothing.
        bool removed = true;
        while (removed)
        {
            removed = false;
            Libc.lseek(fd, 0, Libc.SEEK_SET);
            nint n;
            while ((n = Libc.getdents64(fd, buf, 8192)) > 0)
            {
                var span = new ReadOnlySpan<byte>(buf, (int)n);
                for (int at = 0; at < n;)
                {
                    at = FsUtil.NextDirent(span, at, out _, out _, out var child);
                    if (FsUtil.IsDotOrDotDot(child) || ToNameZ(child, c) != 0) continue;
                    RemoveTreeAt(fd, c);
                    removed = true;
                }
            }
        }
        Libc.close(fd);
        Libc.unlinkat(dirFd, nameZ, Libc.AT_REMOVEDIR);
    }

    bool IsMergedDirEmpty(Node dir)
    {
        var listing = ReadMerged(dir, withInodes: false);
        return listing.Count <= 2; // "." and ".."
    }

    public int Rename(in RequestContext ctx, ulong parentId, ReadOnlySpan<byte> name, ulong newParentId, ReadOnlySpan<byte> newName, uint flags)
    {
        if (_nodes.Get(parentId) is not { } parent || _nodes.Get(newParentId) is not { } newParent) return Errno.ESTALE;
        if (!HasUpper) return Errno.EROFS;
        if ((flags & ~(Libc.RENAME_NOREPLACE | Libc.RENAME_EXCHANGE)) != 0) return Errno.EINVAL;
        if ((flags & Libc.RENAME_NOREPLACE) != 0 && (flags & Libc.RENAME_EXCHANGE) != 0) return Errno.EINVAL;
        if (Markers.IsWhiteoutName(newName)) return Errno.EINVAL;
        if (newName.Length > NameMax) return Errno.ENAMETOOLONG;
        int e = LookupNode(parent, name, out var src, out _);
        if (e != 0) return e;
        Node? dst = null;
        try
        {
            e = LookupNode(newParent, newName, out dst, out var dstStat);
            if (e != 0 && e != Errno.ENOENT) return e;
            if (dst == src) return 0; // two names of one object: nothing to do
            bool exchange = (flags & Libc.RENAME_EXCHANGE) != 0;
            if (dst is null && exchange) return Errno.ENOENT;
            if (dst is not null)
            {
                if ((flags & Libc.RENAME_NOREPLACE) != 0) return Errno.EEXIST;
                if (!exchange)
                {
                    if (src!.IsDir && !dst.IsDir) return Errno.ENOTDIR;
                    if (!src.IsDir && dst.IsDir) return Errno.EISDIR;
                }
            }
            // Data copy-up happens before the directories are locked: it takes their locks itself. A hard-linked lower
            // file is one node under several names: copy it up under the name being renamed.
            if (!src!.IsDir && (e = CopyUpAs(src, parent, name)) != 0) return e;
            if (exchange && !dst!.IsDir && (e = CopyUpAs(dst, newParent, newName)) != 0) return e;
            // Both parents get their upper parts before their locks are taken (a copy-up takes the grandparent's),
            // unless the rename is bound to fail, which leaves them where they are, as on kernel overlayfs.
            if (CannotMove(src) || (exchange && CannotMove(dst!))) return Errno.EXDEV;
            if ((parent.Dirs[0].Layer != 0 || newParent.Dirs[0].Layer != 0) && dst is { IsDir: true } && !exchange && !IsMergedDirEmpty(dst))
                return Errno.ENOTEMPTY;
            if ((e = CopyUpDir(parent, out _)) != 0 || (e = CopyUpDir(newParent, out _)) != 0) return e;
            var (first, second) = parent.Id <= newParent.Id ? (parent, newParent) : (newParent, parent);
            lock (LockDir(first))
            lock (LockDir(second))
                return RenameLocked(parent, name, src, newParent, newName, dst, exchange);
        }
        finally
        {
            _nodes.Forget(src!.Id, 1);
            if (dst is not null) _nodes.Forget(dst.Id, 1);
        }
    }

    int CopyUpAs(Node node, Node parent, ReadOnlySpan<byte> name)
    {
        var loc = node.Loc;
        if (loc.Layer != 0 && (loc.Parent != parent || !loc.Name.SequenceEqual(name)))
            _nodes.Reparent(node, parent, Node.MakeNameZ(name), node.Key.Layer);
        return CopyUpFile(node, CopyUpMode.Data);
    }

    int RenameLocked(Node parent, ReadOnlySpan<byte> name, Node src, Node newParent, ReadOnlySpan<byte> newName, Node? dst, bool exchange)
    {
        byte* nameZ = stackalloc byte[NameMax + 1];
        byte* newNameZ = stackalloc byte[NameMax + 1];
        ToNameZ(name, nameZ);
        ToNameZ(newName, newNameZ);
        if (dst is not null && dst.IsDir && !exchange && !IsMergedDirEmpty(dst)) return Errno.ENOTEMPTY;
        int e = PrepareDirMove(src);
        if (e != 0) return e;
        if (exchange && dst!.IsDir && (e = PrepareDirMove(dst)) != 0) return e;
        int pfd = parent.Dirs[0].Fd, npfd = newParent.Dirs[0].Fd; // (both copied up by the caller)
        if ((e = Probe(parent, nameZ, name, out var from)) != 0) return e;
        if ((e = Probe(newParent, newNameZ, newName, out var to)) != 0) return e;
        bool dirs = src.IsDir || dst?.IsDir == true;
        Changed(parent, dirs);
        Changed(newParent, dirs);

        if (exchange)
        {
            // Each directory arriving where a lower layer has the name must not merge with it.
            if (src.IsDir && src.RedirectPath is null && to.LowerHasName && (e = Markers.SetXattr(pfd, name, _x.Opaque, "y"u8)) != 0) return e;
            if (dst!.IsDir && dst.RedirectPath is null && from.LowerHasName && (e = Markers.SetXattr(npfd, newName, _x.Opaque, "y"u8)) != 0) return e;
            if (Libc.renameat2(pfd, nameZ, npfd, newNameZ, Libc.RENAME_EXCHANGE) < 0) return Errno.Last;
            var srcLoc = src.Loc; var dstLoc = dst!.Loc;
            _nodes.Reparent(src, newParent, Node.MakeNameZ(newName), 0);
            _nodes.Reparent(dst, parent, Node.MakeNameZ(name), 0);
            MarkImpure(parent); MarkImpure(newParent);
            return 0;
        }

        // A directory arriving where a lower layer has the name must not merge with it, unless it follows a redirect.
        if (src.IsDir && src.RedirectPath is null && (to.LowerHasName || to.UpperWhiteout))
        {
            e = Markers.SetXattr(pfd, name, _x.Opaque, "y"u8);
            if (e != 0) return e;
        }
        if (dst is not null && dst.IsDir && to.Exists && to.TopLayer == 0)
        {
            // The target directory is logically empty but its upper part may hold whiteouts.
            e = ClearWhiteouts(npfd, newNameZ);
            if (e != 0) return e;
        }
        if (to.UpperAufsWhiteout) RemoveAufsWhiteout(npfd, newName);

        uint dstLinks = 0;
        if (dst is not null)
        {
            // Before the name is taken over: the target keeps a descriptor of its own.
            Statx st = default;
            if (!dst.IsDir) StatNode(dst, out st);
            dstLinks = st.NLink;
            KeepIfStillReachable(dst, newParent, newName);
        }

        if (to.UpperWhiteout && src.IsDir)
        {
            // rename(2) cannot put a directory over a device node: swap them, so the old name keeps the whiteout,
            // which is exactly what it needs when a lower layer has it; otherwise remove it.
            if (Libc.renameat2(pfd, nameZ, npfd, newNameZ, Libc.RENAME_EXCHANGE) < 0) return Errno.Last;
            if (!from.LowerHasName) Libc.unlinkat(pfd, nameZ, 0);
        }
        else if (from.LowerHasName)
        {
            bool atomic = !_aufsWhiteouts && Libc.renameat2(pfd, nameZ, npfd, newNameZ, Libc.RENAME_WHITEOUT) == 0;
            if (!atomic)
            {
                if (Libc.renameat2(pfd, nameZ, npfd, newNameZ, 0) < 0) return Errno.Last;
                if ((e = WriteWhiteout(pfd, nameZ, name)) != 0) return e;
            }
        }
        else if (Libc.renameat2(pfd, nameZ, npfd, newNameZ, 0) < 0) return Errno.Last;

        // A target with other hard links lives on under them; only its replaced name is gone.
        if (dst is not null && (dst.IsDir || dstLinks <= 1)) _nodes.Detach(dst);
        _nodes.Reparent(src, newParent, Node.MakeNameZ(newName), 0);
        MarkImpure(newParent);
        return 0;
    }

    /// <summary>
    /// A directory that has lower parts can move only by recording where its lower part is (overlayfs's
    /// redirect_dir): the directory itself is copied up, not its subtree. With redirect_dir=off: EXDEV, as the
    /// kernel does by default.
    /// </summary>
    int PrepareDirMove(Node dir)
    {
        if (!dir.IsDir) return 0;
        bool pureUpper = dir.Dirs.Length == 1 && dir.Dirs[0].Layer == 0;
        if (pureUpper) return 0;
        if (CannotMove(dir)) return Errno.EXDEV;
        if (dir.RedirectPath is not null)
        {
            // A relative redirect (as the kernel writes for a rename within one directory) would point elsewhere
            // from a new parent: record the absolute path it stands for.
            var upper = dir.Dirs[0].Fd;
            if (Markers.GetString(upper, ReadOnlySpan<byte>.Empty, _x.Redirect) is { } r && !r.StartsWith('/'))
                return Markers.SetXattr(upper, ReadOnlySpan<byte>.Empty, _x.Redirect, System.Text.Encoding.UTF8.GetBytes(dir.RedirectPath));
            return 0;
        }
        string path = LowerPath(dir);
        int e = CopyUpDir(dir, out _);
        if (e != 0) return e;
        e = Markers.SetXattr(dir.Dirs[0].Fd, ReadOnlySpan<byte>.Empty, _x.Redirect, System.Text.Encoding.UTF8.GetBytes(path));
        if (e != 0) return e;
        dir.RedirectPath = path;
        return 0;
    }

    /// <summary>A directory with lower parts and no redirect of its own, on a mount without redirect_dir.</summary>
    bool CannotMove(Node dir) =>
        dir.IsDir && !_options.RedirectDir && dir.RedirectPath is null && !(dir.Dirs.Length == 1 && dir.Dirs[0].Layer == 0);

    static int ClearWhiteouts(int pfd, byte* nameZ)
    {
        int fd = OpenNoAtime(pfd, nameZ, Libc.O_RDONLY | Libc.O_DIRECTORY | Libc.O_NOFOLLOW | Libc.O_CLOEXEC);
        if (fd < 0) return Errno.Last;
        byte* buf = stackalloc byte[8192];
        byte* c = stackalloc byte[NameMax + 1];
        try
        {
            while (true)
            {
                nint n = Libc.getdents64(fd, buf, 8192);
                if (n < 0) return Errno.Last;
                if (n == 0) return 0;
                var span = new ReadOnlySpan<byte>(buf, (int)n);
                for (int at = 0; at < n;)
                {
                    at = FsUtil.NextDirent(span, at, out _, out _, out var child);
                    if (FsUtil.IsDotOrDotDot(child) || ToNameZ(child, c) != 0) continue;
                    Libc.unlinkat(fd, c, 0);
                }
            }
        }
        finally { Libc.close(fd); }
    }
}
