using Microsoft.Extensions.Logging;
using UnionFs.Fuse;
using UnionFs.Fuse.Kernel;
using UnionFs.Posix;

namespace UnionFs.Overlay;

/// <summary>
/// The union: read-only lower layers under one writable upper directory, with overlayfs semantics, served through
/// <see cref="IFuseFileSystem"/>. This file holds the mount-wide state (the "super block"); the operations are split
/// by concern as in Linux fs/overlayfs: Lookup.cs (namei), CopyUp.cs, DirOps.cs, ReadDir.cs, InodeOps.cs, FileOps.cs.
/// Locking: lookups and data I/O take no lock. A change to a directory's upper entries (create, unlink, rename, the
/// copy-up of a child into it) holds that directory's lock (<see cref="LockDir"/>), as the kernel holds the
/// directory's inode lock; there is no lock across the whole mount. A file's copy-up holds that node's lock
/// first, then its parent's for the final rename.
/// </summary>
public sealed unsafe partial class OverlayFileSystem : IFuseFileSystem, IDisposable
{
    readonly OverlayOptions _options;
    readonly ILogger _log;
    readonly Layer[] _layers;
    readonly bool _sameFs;
    readonly NodeTable _nodes = new();
    readonly Markers.XattrNames _x;
    readonly int _workFd = -1;
    /// <summary>W/index: one hard link per copied-up multiply-linked lower file, so its other names join it.</summary>
    readonly int _indexFd = -1;
    readonly bool _asRoot;
    /// <summary>Who owns what the daemon creates, before any chown.</summary>
    readonly uint _daemonUid = Libc.getuid(), _daemonGid = Libc.getgid();
    /// <summary>Root of the initial user namespace: only it may set trusted.* xattrs and register passthrough
    /// backing files. The daemon of a rootless container is uid 0 too, but in the container's user namespace, and
    /// keeps its markers in user.* as kernel overlayfs's userxattr does.</summary>
    readonly bool _privileged;
    readonly ulong _entryTimeout;
    readonly uint _entryTimeoutNsec;
    FuseSession? _session;
    bool _passthrough;
    /// <summary>mknod of char 0/0 failed once (no privilege): write ".wh.NAME" files from then on.</summary>
    bool _aufsWhiteouts;
    bool _noSharedWhiteout;
    long _tempCounter;

    public static readonly byte* Empty = (byte*)System.Runtime.InteropServices.NativeMemory.AllocZeroed(8);

    /// <summary>
    /// The lock for changes to <paramref name="dir"/>'s upper entries and to its children's locations: the
    /// directory's node itself. Order, so that no two threads wait on each other: a file's copy-up lock before any
    /// directory's; a thread holds one directory lock at a time, except a rename, which takes both parents in the
    /// order of their node ids; a directory is copied up (which takes its parent's lock) before its own is taken.
    /// Since no lock spans directories, an upper inode is never freed while a node is keyed by it: an object made
    /// in another directory at the same moment could get its number and be taken for it. A removed or replaced
    /// name leaves its node a descriptor of the object (<see cref="KeepIfStillReachable"/>), a directory's node
    /// holds its own, and a metacopy placeholder is held open across its replacement.
    /// </summary>
    static object LockDir(Node dir) => dir;

    public OverlayFileSystem(OverlayOptions options, ILogger log)
    {
        _options = options;
        _log = log;
        _asRoot = Libc.getuid() == 0;
        _privileged = _asRoot && InInitialUserNamespace();
        _x = new Markers.XattrNames(trusted: _privileged && !options.UserXattr);
        _entryTimeout = (ulong)Math.Floor(options.Timeout);
        _entryTimeoutNsec = (uint)((options.Timeout - Math.Floor(options.Timeout)) * 1e9);
        Libc.umask(0); // modes arrive with the caller's umask applied by the kernel

        var layers = new List<Layer>();
        int workBase = -1;
        try
        {
            // A read-only mount with an upper still shows it, as the topmost layer, but never writes to it.
            if (options.UpperDir is not null)
            {
                (int upperFd, workBase) = OpenUpperMount(options.UpperDir, options.WorkDir);
                layers.Add(MakeLayer(options.UpperDir, upperFd, 0, upper: true));
            }
            for (int i = 0; i < options.LowerDirs.Count; i++)
                layers.Add(MakeLayer(options.LowerDirs[i], OpenLowerMount(options.LowerDirs[i]), (ulong)i + 1, upper: false));
            _layers = layers.ToArray();
            _sameFs = Array.TrueForAll(_layers, l => l.Dev == _layers[0].Dev);
            if (options.Writable)
            {
                _workFd = PrepareWorkDir(options.WorkDir!, workBase, _layers[0]);
                _indexFd = OpenIndexDir(options.WorkDir!, workBase);
            }
        }
        catch
        {
            foreach (var l in layers) Libc.close(l.RootFd);
            throw;
        }
        finally
        {
            if (workBase >= 0) Libc.close(workBase);
        }
        _nodes.AddRoot(MakeRoot());
    }

    public OverlayOptions Options => _options;
    public bool HasUpper => _options.Writable;
    /// <summary>Set-ID bits are cleared in FileOps (DropSetId); capabilities and chown's clearing are the upper
    /// filesystem's own doing on our writes, truncates and chowns.</summary>
    public bool HandlesKillPriv => true;
    /// <summary>New objects get the caller's umask here, or the parent's default ACL instead (see ApplyUmask).</summary>
    public bool AppliesUmask => true;
    internal NodeTable Nodes => _nodes;

    static int OpenDir(string path, string what)
    {
        int fd = Libc.open(path, Libc.O_PATH | Libc.O_DIRECTORY | Libc.O_CLOEXEC, 0);
        return fd >= 0 ? fd : throw new ArgumentException($"{what} {path}: {Errno.Describe(Errno.Last)}");
    }

    static Layer MakeLayer(string path, int fd, ulong tag, bool upper)
    {
        Statx st;
        Libc.statx(fd, Empty, Libc.AT_EMPTY_PATH, Statx.BasicStats, &st);
        return new Layer { Path = path, RootFd = fd, Tag = tag, IsUpper = upper, Dev = st.Dev };
    }

    /// <summary>
    /// Opens the upper directory and the work directory through a private, detached copy of their mount whose atime
    /// flags are the union's, as kernel overlayfs does with its upper mount. Reading an upper file through the union
    /// then updates its atime by the union's rules (noatime, relatime, strictatime), not the upper filesystem's,
    /// whether the daemon reads it or the kernel does through passthrough (its backing files are opened on the
    /// registered file's mount). A read-only union's copy is read-only. Without the right to copy a mount
    /// (CAP_SYS_ADMIN over the mount namespace), or when upper and work are on different mounts, the directories
    /// are used as they are and the upper filesystem's atime rules apply. Returns (upper, work or -1).
    /// </summary>
    (int Upper, int Work) OpenUpperMount(string upperDir, string? workDir)
    {
        int upper = OpenDir(upperDir, "upperdir");
        int work = -1;
        try
        {
            if (workDir is not null) work = OpenDir(workDir, "workdir");
            if (CloneUpperMount(upper, work) is { } clone)
            {
                Libc.close(upper);
                if (work >= 0) Libc.close(work);
                return clone;
            }
            return (upper, work);
        }
        catch
        {
            Libc.close(upper);
            if (work >= 0) Libc.close(work);
            throw;
        }
    }

    (int, int)? CloneUpperMount(int upper, int work)
    {
        string? upperPath = FsUtil.RealPath(upper), workPath = work < 0 ? null : FsUtil.RealPath(work);
        if (upperPath is null || (work >= 0 && workPath is null)) return null;
        string top = workPath is null ? upperPath : CommonAncestor(upperPath, workPath);
        ulong attr = !_options.Writable ? Libc.MOUNT_ATTR_RDONLY | Libc.MOUNT_ATTR_NOATIME : _options.Atime switch
        {
            AtimeMode.NoAtime => Libc.MOUNT_ATTR_NOATIME,
            AtimeMode.StrictAtime => Libc.MOUNT_ATTR_STRICTATIME,
            _ => Libc.MOUNT_ATTR_RELATIME,
        };
        if (_options.NoDirAtime) attr |= Libc.MOUNT_ATTR_NODIRATIME;
        int tree = CloneMount(top, attr);
        if (tree < 0) return null;
        try
        {
            int u = OpenBelow(tree, top, upperPath, upper);
            int w = workPath is null ? -1 : OpenBelow(tree, top, workPath, work);
            if (u >= 0 && (w >= 0 || workPath is null)) return (u, w);
            // Upper and work on different mounts of one filesystem: the copy holds only the one at the top.
            if (u >= 0) Libc.close(u);
            if (w >= 0) Libc.close(w);
            _log.LogDebug("upper used without a private mount: {Upper} and {Work} are on different mounts", upperPath, workPath);
            return null;
        }
        finally { Libc.close(tree); }
    }

    /// <summary>
    /// A lower layer is read through a private, read-only, noatime copy of its mount, as kernel overlayfs reads its
    /// lower layers: the daemon cannot change a layer even by mistake, and the layer's own mount is not kept busy,
    /// so it can be unmounted as soon as the union is (the daemon may still be closing its descriptors then).
    /// Like the kernel's, the copy does not include mounts below the layer directory. Without the right to copy a
    /// mount the directory is used as it is.
    /// </summary>
    int OpenLowerMount(string lowerDir)
    {
        int fd = OpenDir(lowerDir, "lowerdir");
        string? path = FsUtil.RealPath(fd);
        int tree = path is null ? -1 : CloneMount(path, Libc.MOUNT_ATTR_RDONLY | Libc.MOUNT_ATTR_NOATIME);
        if (tree < 0) return fd;
        if (SameObject(tree, fd)) { Libc.close(fd); return tree; }
        Libc.close(tree);
        return fd;
    }

    /// <summary>open_tree(OPEN_TREE_CLONE) of <paramref name="path"/> with the MOUNT_ATTR_* bits <paramref name="attr"/>
    /// (its atime mode replacing the original's); -1, logged, if the kernel refuses.</summary>
    int CloneMount(string path, ulong attr)
    {
        int tree;
        fixed (byte* p = System.Text.Encoding.UTF8.GetBytes(path + "\0")) tree = Libc.OpenTreeClone(p);
        if (tree < 0)
        {
            _log.LogDebug("{Path} used without a private mount (open_tree: {Error}); its own mount's rules apply", path, Errno.Describe(Errno.Last));
            return -1;
        }
        if (Libc.MountSetAttr(tree, attr, Libc.MOUNT_ATTR__ATIME | Libc.MOUNT_ATTR_NODIRATIME) == 0) return tree;
        _log.LogDebug("{Path} used without a private mount (mount_setattr: {Error})", path, Errno.Describe(Errno.Last));
        Libc.close(tree);
        return -1;
    }

    static bool SameObject(int a, int b)
    {
        Statx x, y;
        return Libc.statx(a, Empty, Libc.AT_EMPTY_PATH, Statx.BasicStats, &x) == 0 && Libc.statx(b, Empty, Libc.AT_EMPTY_PATH, Statx.BasicStats, &y) == 0
            && x.Dev == y.Dev && x.Ino == y.Ino;
    }

    static string CommonAncestor(string a, string b)
    {
        var pa = a.Split('/', StringSplitOptions.RemoveEmptyEntries);
        var pb = b.Split('/', StringSplitOptions.RemoveEmptyEntries);
        int n = 0;
        while (n < pa.Length && n < pb.Length && pa[n] == pb[n]) n++;
        return "/" + string.Join('/', pa.Take(n));
    }

    /// <summary>Opens <paramref name="path"/> (below <paramref name="top"/>) in the copied mount; -1 unless it is
    /// the same directory as <paramref name="sameAs"/>.</summary>
    static int OpenBelow(int tree, string top, string path, int sameAs)
    {
        string rel = path.Length == top.Length ? "." : path[(top.Length == 1 ? 1 : top.Length + 1)..];
        int fd;
        fixed (byte* p = System.Text.Encoding.UTF8.GetBytes(rel + "\0"))
            fd = Libc.openat(tree, p, Libc.O_PATH | Libc.O_DIRECTORY | Libc.O_NOFOLLOW | Libc.O_CLOEXEC, 0);
        if (fd < 0) return -1;
        if (SameObject(fd, sameAs)) return fd;
        Libc.close(fd);
        return -1;
    }

    /// <summary>
    /// The work directory is private scratch space on the upper's filesystem: copies are built there and renamed
    /// into place, so a crash leaves the old view or the new one. Leftovers of a previous run are removed.
    /// <paramref name="workBase"/> is the work directory as opened by <see cref="OpenUpperMount"/>, on the upper's mount.
    /// </summary>
    static int PrepareWorkDir(string workDir, int workBase, Layer upper)
    {
        Statx st;
        Libc.statx(workBase, Empty, Libc.AT_EMPTY_PATH, Statx.BasicStats, &st);
        if (st.Dev != upper.Dev) throw new ArgumentException($"workdir {workDir} and upperdir {upper.Path} must be on the same filesystem");
        string work = Path.Combine(workDir, "work");
        if (Directory.Exists(work)) RemoveTree(work);
        Directory.CreateDirectory(work);
        return OpenBelowWork(workBase, "work"u8, work);
    }

    static int OpenIndexDir(string workDir, int workBase)
    {
        string index = Path.Combine(workDir, "index");
        Directory.CreateDirectory(index);
        return OpenBelowWork(workBase, "index"u8, index);
    }

    static int OpenBelowWork(int workBase, ReadOnlySpan<byte> name, string path)
    {
        byte* z = stackalloc byte[16];
        name.CopyTo(new Span<byte>(z, 15));
        z[name.Length] = 0;
        int fd = Libc.openat(workBase, z, Libc.O_PATH | Libc.O_DIRECTORY | Libc.O_NOFOLLOW | Libc.O_CLOEXEC, 0);
        return fd >= 0 ? fd : throw new ArgumentException($"workdir {path}: {Errno.Describe(Errno.Last)}");
    }

    static void RemoveTree(string path)
    {
        // Directory.Delete follows neither symlinks nor mounts; leftovers are our own temporary copies.
        try { Directory.Delete(path, recursive: true); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }

    Node MakeRoot()
    {
        var dirs = new List<LayerDir>();
        for (int i = 0; i < _layers.Length; i++)
        {
            int fd = Libc.openat(_layers[i].RootFd, DotZ, Libc.O_PATH | Libc.O_DIRECTORY | Libc.O_CLOEXEC, 0);
            dirs.Add(new LayerDir(i, fd));
        }
        Statx st;
        Libc.statx(dirs[0].Fd, Empty, Libc.AT_EMPTY_PATH, Statx.BasicStats, &st);
        var root = new Node(Libc.S_IFDIR)
        {
            Dirs = dirs.ToArray(), Key = (0, st.Dev, st.Ino), Ino = 1,
            Impure = _layers[0].IsUpper && Markers.GetString(dirs[0].Fd, ReadOnlySpan<byte>.Empty, _x.Impure) is not null,
        };
        return root;
    }

    static readonly byte* DotZ = (byte*)System.Runtime.InteropServices.NativeMemory.AllocZeroed(2);
    static OverlayFileSystem() { DotZ[0] = (byte)'.'; }

    public void Initialized(FuseSession session)
    {
        _session = session;
        _passthrough = session.PassthroughEnabled;
    }

    /// <summary>
    /// openat with O_NOATIME: reading a layer through the union must not change it, not even its atimes (lower layers
    /// are read-only by contract, and the mount's own atime options are not the layers'). Without the right to
    /// O_NOATIME (not the owner, no CAP_FOWNER) the open goes ahead without it.
    /// </summary>
    internal static int OpenNoAtime(int dirFd, byte* name, int flags, uint mode = 0)
    {
        int fd = Libc.openat(dirFd, name, flags | Libc.O_NOATIME, mode);
        return fd < 0 && Errno.Last == Errno.EPERM ? Libc.openat(dirFd, name, flags, mode) : fd;
    }

    /// <summary>Whether uid 0 here is the host's root: /proc/self/uid_map maps the whole id range onto itself.</summary>
    static bool InInitialUserNamespace()
    {
        try
        {
            var fields = File.ReadAllText("/proc/self/uid_map").Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
            return fields is ["0", "0", "4294967295"];
        }
        catch (IOException) { return true; } // no /proc: assume the plain case
    }

    /// <summary>
    /// The FUSE passthrough stack depth this union needs: 1 when every layer is on a plain filesystem, 2 when one is
    /// itself stacked (overlayfs, FUSE), 0 (off) when passthrough is disabled or the daemon may not use it.
    /// </summary>
    public uint PassthroughStackDepth
    {
        get
        {
            if (!_options.Passthrough || !_privileged) return 0;
            uint depth = 1;
            foreach (var l in _layers)
            {
                long type = Libc.FsType(l.RootFd);
                if (type is Libc.OVERLAYFS_MAGIC or Libc.FUSE_MAGIC or Libc.ECRYPTFS_MAGIC) depth = 2;
            }
            return depth;
        }
    }

    /// <summary>
    /// The st_ino shown for an object of a layer. When every layer is on one filesystem its own inode numbers are
    /// already unique, and are shown unchanged, as kernel overlayfs and fuse-overlayfs do (tools that compare
    /// st_ino with the layers see the same number); otherwise the layer's tag goes into the high bits.
    /// </summary>
    ulong MakeIno(int layer, ulong ino) => _sameFs ? ino : (_layers[layer].Tag << 48) | (ino & 0xFFFF_FFFF_FFFF);

    void FillEntry(Node node, in Statx st, ref EntryOut entry)
    {
        entry.NodeId = node.Id;
        entry.Generation = 0;
        entry.EntryValid = entry.AttrValid = _entryTimeout;
        entry.EntryValidNsec = entry.AttrValidNsec = _entryTimeoutNsec;
        FillAttr(node, st, ref entry.Attr);
        (entry.AttrValid, entry.AttrValidNsec) = AttrTimeout(node, st);
    }

    /// <summary>
    /// How long the kernel may keep a node's attributes. Long, as the layers change only through this mount, except
    /// where they change without a request reaching us: a set-ID file with passthrough opens (a write through one
    /// clears the bits in the upper, see RegisterBacking) is never cached; a file with passthrough opens for writing
    /// (a write through a shared mapping sets mtime and ctime in the upper) for a second, like NFS's close-to-open
    /// attributes: 0 would cost a GETATTR before every first write, and the last writer's release drops the cache
    /// anyway (write(2) itself updates the kernel's copy).
    /// </summary>
    (ulong Seconds, uint Nsec) AttrTimeout(Node node, in Statx st)
    {
        if ((st.Mode & (Libc.S_ISUID | Libc.S_ISGID)) != 0 && node.HasBackingOpens) return (0, 0);
        if (node.HasBackingWriters) return (Math.Min(_entryTimeout, 1), _entryTimeout >= 1 ? 0 : _entryTimeoutNsec);
        return (_entryTimeout, _entryTimeoutNsec);
    }

    void FillAttr(Node node, in Statx st, ref Attr attr)
    {
        FsUtil.ToAttr(st, node.Ino, ref attr);
        // The index entry is not a name users can see; siblings still only in the lower are.
        if (node.Indexed) attr.NLink = Math.Max(attr.NLink, 2) - 1 + node.LowerLinks;
        if (_options.Ino32) attr.Ino &= 0xFFFF_FFFF;
        if (node.IsDir && _options.StaticNlink) attr.NLink = 1;
        else if (node.IsDir && node.Dirs.Length > 1) attr.NLink = MergedDirNLink(node);
        if (_options.UidMapping is { } um) attr.Uid = um.ToInside(st.Uid);
        if (_options.GidMapping is { } gm) attr.Gid = gm.ToInside(st.Gid);
        if (_options.SquashUid is { } su) attr.Uid = su;
        if (_options.SquashGid is { } sg) attr.Gid = sg;
    }

    uint HostUid(uint uid) => _options.UidMapping?.ToHost(uid) ?? uid;
    uint HostGid(uint gid) => _options.GidMapping?.ToHost(gid) ?? gid;

    public void Forget(ulong node, ulong nlookup) => _nodes.Forget(node, nlookup);

    public int StatFs(in RequestContext ctx, ulong node, ref StatFsOut statfs)
    {
        // The upper's numbers (free space is what matters for writes); the top lower's on a read-only union.
        int fd = Libc.openat(_layers[0].RootFd, DotZ, Libc.O_RDONLY | Libc.O_DIRECTORY | Libc.O_CLOEXEC, 0);
        if (fd < 0) return Errno.Last;
        StatVfs s;
        int r = Libc.fstatvfs(fd, &s);
        Libc.close(fd);
        if (r < 0) return Errno.Last;
        FsUtil.ToStatFs(s, ref statfs);
        return 0;
    }

    public void Destroyed() { }

    public void Dispose()
    {
        foreach (var l in _layers) Libc.close(l.RootFd);
        if (_workFd >= 0) Libc.close(_workFd);
        if (_indexFd >= 0) Libc.close(_indexFd);
    }
}
