using System.Collections.Concurrent;
using System.Text;
using UnionFs.Fuse;
using UnionFs.Fuse.Kernel;
using UnionFs.Posix;

namespace UnionFs.Overlay;

// readdir: the merged listing (checklist §6).
public sealed unsafe partial class OverlayFileSystem
{
    readonly record struct DirEntry(byte[] Name, ulong Ino, uint Type);

    /// <summary>An open directory: a snapshot of the merged listing, so cookies (index + 1) stay valid while the
    /// directory changes; rebuilt when the listing is read again from the start (rewinddir).</summary>
    sealed class DirHandle
    {
        public required Node Node;
        /// <summary>Built at the first READDIR: when the kernel serves a listing from its cache, none comes.</summary>
        public List<DirEntry>? Entries;
    }

    readonly ConcurrentDictionary<ulong, DirHandle> _dirHandles = new();
    long _nextDirHandle;

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
                int fd = Libc.openat(ld.Fd, DotZ, Libc.O_RDONLY | Libc.O_DIRECTORY | Libc.O_CLOEXEC, 0);
                if (fd < 0) continue;
                try
                {
                    var layerWhiteouts = new List<string>();
                    fixed (byte* b = buf)
                    {
                        while (true)
                        {
                            nint n = Libc.getdents64(fd, b, buf.Length);
                            if (n <= 0) break;
                            for (int at = 0; at < n;)
                            {
                                at = FsUtil.NextDirent(buf.AsSpan(0, (int)n), at, out ulong ino, out byte dtype, out var name);
                                if (FsUtil.IsDotOrDotDot(name)) continue;
                                if (Markers.IsWhiteoutName(name))
                                {
                                    // ".wh.NAME" hides NAME below this layer; ".wh..wh..opq" is the opaque marker.
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
                }
                finally { Libc.close(fd); }
            }
        }
        finally { System.Buffers.ArrayPool<byte>.Shared.Return(buf); }
        return entries;
    }

    public int OpenDir(in RequestContext ctx, ulong node, int flags, ref OpenOut open)
    {
        if (_nodes.Get(node) is not { } n) return Errno.ESTALE;
        if (!n.IsDir) return Errno.ENOTDIR;
        ulong id = (ulong)Interlocked.Increment(ref _nextDirHandle);
        _dirHandles[id] = new DirHandle { Node = n };
        open.Fh = id;
        // The kernel may keep the listing in its page cache across opens: every change to a directory goes
        // through this mount, and the kernel drops the cached listing itself when it changes one.
        open.OpenFlags = OpenFlags.CacheDir | OpenFlags.KeepCache;
        return 0;
    }

    public int ReadDir(in RequestContext ctx, ulong node, ulong fh, long offset, ref DirEntryWriter writer)
    {
        if (!_dirHandles.TryGetValue(fh, out var h)) return Errno.EBADF;
        if (offset == 0 || h.Entries is null) h.Entries = ReadMerged(h.Node, withInodes: true);
        var entries = h.Entries;
        for (int i = (int)Math.Max(0, offset); i < entries.Count; i++)
        {
            var d = entries[i];
            if (!writer.Fits(d.Name.Length)) break;
            var entry = new EntryOut();
            if (writer.Plus && i >= 2)
            {
                // READDIRPLUS instantiates the entry: one more lookup of that node, exactly like LOOKUP.
                if (LookupNode(h.Node, d.Name, out var child, out var st) == 0) FillEntry(child!, st, ref entry);
            }
            if (!writer.TryAdd(d.Name, d.Ino, d.Type, i + 1, entry))
            {
                if (entry.NodeId != 0) _nodes.Forget(entry.NodeId, 1);
                break;
            }
        }
        return 0;
    }

    public int ReleaseDir(in RequestContext ctx, ulong node, ulong fh)
    {
        _dirHandles.TryRemove(fh, out _);
        return 0;
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
