using System.Text;
using UnionFs.Fuse;
using UnionFs.Fuse.Kernel;
using UnionFs.Posix;

namespace UnionFs.Overlay;

// readdir: the merged listing (checklist §6).
public sealed unsafe partial class OverlayFileSystem
{
    /// <summary>
    /// Lists a merged directory: each name once, the topmost layer deciding its type and inode, whiteouts and marker
    /// files hidden, lower layers cut off where the directory's merge stops. "." and ".." come first.
    /// </summary>
    List<DirEntry> ReadMerged(Node dir, bool withInodes)
    {
        var entries = new List<DirEntry> { new("."u8.ToArray(), dir.Ino, Libc.S_IFDIR), new(".."u8.ToArray(), dir.Parent?.Ino ?? dir.Ino, Libc.S_IFDIR) };
        var seen = new HashSet<string>(StringComparer.Ordinal);
        byte[] buf = System.Buffers.ArrayPool<byte>.Shared.Rent(65536);
        try
        {
            foreach (var ld in dir.Dirs)
            {
                bool checkOrigin = withInodes && _layers[ld.Layer].IsUpper && dir.Impure;
                int fd = OpenNoAtime(ld.Fd, DotZ, Libc.O_RDONLY | Libc.O_DIRECTORY | Libc.O_CLOEXEC);
                if (fd < 0) continue;
                try
                {
                    var layerWhiteouts = new List<string>();
                    // A lower layer's names, remembered for lookups (see LayerDir.NameHashes).
                    var hashes = ld.NameHashes is null && !_layers[ld.Layer].IsUpper && !IsCaseFolded(fd) ? new List<uint>() : null;
                    bool markers = false;
                    fixed (byte* b = buf)
                    {
                        while (true)
                        {
                            nint n = Libc.getdents64(fd, b, buf.Length);
                            if (n < 0) hashes = null; // not the whole directory
                            if (n <= 0) break;
                            for (int at = 0; at < n;)
                            {
                                at = FsUtil.NextDirent(buf.AsSpan(0, (int)n), at, out ulong ino, out byte dtype, out var name);
                                if (FsUtil.IsDotOrDotDot(name)) continue;
                                hashes?.Add(LayerDir.HashName(name));
                                if (Markers.IsWhiteoutName(name))
                                {
                                    // ".wh.NAME" hides NAME below this layer; ".wh..wh..opq" is the opaque marker.
                                    markers = true;
                                    if (!name.SequenceEqual(Markers.OpaqueMarker)) layerWhiteouts.Add(Encoding.Latin1.GetString(name[4..]));
                                    continue;
                                }
                                string key = Encoding.Latin1.GetString(name);
                                if (!seen.Add(key)) continue;
                                uint type = (uint)dtype << 12;
                                if (dtype is 2 or 0) // DT_CHR may be a whiteout; DT_UNKNOWN needs a stat
                                {
                                    Statx st;
                                    fixed (byte* nz = Node.MakeNameZ(name))
                                        if (Libc.statx(fd, nz, Libc.AT_SYMLINK_NOFOLLOW, Statx.BasicStats, &st) < 0) continue;
                                    if (st.IsWhiteoutDevice) continue;
                                    type = st.Type;
                                }
                                ulong shown = MakeIno(ld.Layer, ino);
                                if (checkOrigin && Markers.GetOrigin(ld.Fd, name, _x.Origin) is var origin and not 0) shown = origin;
                                entries.Add(new DirEntry(name.ToArray(), shown, type));
                            }
                        }
                    }
                    foreach (var w in layerWhiteouts) seen.Add(w);
                    if (hashes is not null)
                    {
                        hashes.Sort();
                        if (ld.AufsMarkers == 0) ld.AufsMarkers = markers ? 2 : 1;
                        ld.NameHashes = hashes.ToArray();
                    }
                }
                finally { Libc.close(fd); }
            }
        }
        finally { System.Buffers.ArrayPool<byte>.Shared.Return(buf); }
        return entries;
    }

    /// <summary>Whether a directory's lookups ignore case (ext4/f2fs casefold): then a name can be found under
    /// spellings its listing does not show, and the listing cannot answer for missing names.</summary>
    static bool IsCaseFolded(int dirFd)
    {
        int flags = 0;
        return Libc.ioctl(dirFd, Libc.FS_IOC_GETFLAGS, &flags) == 0 && (flags & Libc.FS_CASEFOLD_FL) != 0;
    }

    /// <summary>
    /// No OPENDIR: answering ENOSYS tells the kernel that directory opens need no daemon state, saves two round
    /// trips per directory, and lets the kernel keep listings in its page cache (every change to a directory goes
    /// through this mount, and the kernel drops a cached listing itself when it changes the directory).
    /// </summary>
    public int OpenDir(in RequestContext ctx, ulong node, int flags, ref OpenOut open) => Errno.ENOSYS;

    /// <summary>The listings being served, by directory. Few directories are in the middle of a listing at a time,
    /// so this is not a field of every node; an entry goes away with its node if a listing is never finished.</summary>
    readonly System.Runtime.CompilerServices.ConditionalWeakTable<Node, DirListing> _listings = new();

    /// <summary>
    /// Serves the merged listing from a snapshot kept for the directory: cookies are indexes + 1 into it, so
    /// they stay valid while a listing is in progress even if the directory changes. A change marks the snapshot
    /// stale; it is rebuilt when a listing starts again from the beginning, and dropped once read to the end.
    /// </summary>
    public int ReadDir(in RequestContext ctx, ulong node, ulong fh, long offset, ref DirEntryWriter writer)
    {
        if (_nodes.Get(node) is not { } dir) return Errno.ESTALE;
        if (!dir.IsDir) return Errno.ENOTDIR;
        // The listing state is made here, before the directory is read: a change that Changed() could not mark
        // stale because the state did not exist yet happened before this read.
        var listing = _listings.GetValue(dir, static _ => new DirListing());
        var entries = listing.Entries;
        if (entries is null || (offset == 0 && listing.Stale))
        {
            listing.Stale = false;
            listing.Entries = entries = ReadMerged(dir, withInodes: true);
        }
        if (offset >= entries.Count)
        {
            _listings.Remove(dir); // read to the end: the kernel has it now
            return 0;
        }
        for (int i = (int)Math.Max(0, offset); i < entries.Count; i++)
        {
            var d = entries[i];
            if (!writer.Fits(d.Name.Length)) break;
            var entry = new EntryOut();
            if (writer.Plus && i >= 2)
            {
                // READDIRPLUS instantiates the entry: one more lookup of that node, exactly like LOOKUP.
                if (LookupNode(dir, d.Name, out var child, out var st) == 0) FillEntry(child!, st, ref entry);
            }
            if (!writer.TryAdd(d.Name, _options.Ino32 ? d.Ino & 0xFFFF_FFFF : d.Ino, d.Type, i + 1, entry))
            {
                if (entry.NodeId != 0) _nodes.Forget(entry.NodeId, 1);
                break;
            }
        }
        return 0;
    }

    /// <summary>A directory's entries changed through the mount (<paramref name="subdirs"/>: a directory was among
    /// them). Caller holds the directory's lock.</summary>
    void Changed(Node dir, bool subdirs = false)
    {
        if (_listings.TryGetValue(dir, out var listing)) listing.Stale = true;
        if (subdirs) dir.Subdirs = -1;
    }

    const int KeptListingMax = 256;

    /// <summary>
    /// A merged directory's link count: 2 plus its subdirectories in the merged view, as a local filesystem counts
    /// (find and other tree walkers rely on it); no single layer's count is right. Counted when first asked and kept
    /// until a directory is added or removed in it, so creating files costs no recount.
    /// </summary>
    uint MergedDirNLink(Node dir)
    {
        int n = dir.Subdirs;
        if (n >= 0) return (uint)n + 2;
        lock (LockDir(dir))
        {
            if ((n = dir.Subdirs) >= 0) return (uint)n + 2;
            n = 0;
            var entries = ReadMerged(dir, withInodes: dir.Impure);
            foreach (var d in entries) if (d.Type == Libc.S_IFDIR) n++;
            dir.Subdirs = n -= 2; // "." and ".."
            // A walk lists a directory right after asking for its attributes: keep the listing for ReadDir, which
            // would otherwise read the same layers again (small ones only: it stays until the kernel has read it).
            if (entries.Count <= KeptListingMax) _listings.TryAdd(dir, new DirListing { Entries = entries });
            return (uint)n + 2;
        }
    }

    public int FsyncDir(in RequestContext ctx, ulong node, ulong fh, bool dataOnly)
    {
        if (_options.Volatile || _nodes.Get(node) is not { } n || n.Dirs[0].Layer != 0 || !HasUpper) return 0;
        int fd = Libc.openat(n.Dirs[0].Fd, DotZ, Libc.O_RDONLY | Libc.O_DIRECTORY | Libc.O_CLOEXEC, 0);
        if (fd < 0) return Errno.Last;
        int r = Libc.fsync(fd);
        Libc.close(fd);
        return r < 0 ? Errno.Last : 0;
    }
}
