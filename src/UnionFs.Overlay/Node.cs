using UnionFs.Posix;

namespace UnionFs.Overlay;

/// <summary>One directory of the layer stack: a layer's root, read-only unless it is the upper.</summary>
public sealed class Layer
{
    public required string Path { get; init; }
    /// <summary>O_PATH descriptor of the layer root; everything below is reached with *at() calls from it.</summary>
    public required int RootFd { get; init; }
    /// <summary>Position in the stack: 0 is the upper (when there is one), then L1, L2, ... The high bits of st_ino.</summary>
    public required ulong Tag { get; init; }
    public required bool IsUpper { get; init; }
    public required ulong Dev { get; init; }
}

/// <summary>One name of a merged directory listing, with the inode number and type readdir shows.</summary>
public readonly record struct DirEntry(byte[] Name, ulong Ino, uint Type);

/// <summary>A node's place: parent, NUL-terminated name, and the index of the topmost layer holding the object
/// (0 = upper when the mount is writable).</summary>
public sealed record Location(Node? Parent, byte[] NameZ, int Layer)
{
    public ReadOnlySpan<byte> Name => NameZ.AsSpan(0, NameZ.Length - 1);
}

/// <summary>A directory's presence in one layer: an O_PATH descriptor, and what we learnt about its whiteout style.</summary>
public sealed class LayerDir
{
    public LayerDir(int layer, int fd) { Layer = layer; Fd = fd; }
    public int Layer { get; }
    public int Fd { get; }
    /// <summary>Whether this directory holds AUFS/OCI-style ".wh.NAME" markers: 0 unknown, 1 none, 2 some.
    /// Lower layers never change, so a miss needs the extra ".wh.NAME" probe only where markers exist.</summary>
    public int AufsMarkers;
}

/// <summary>
/// A node the kernel knows by id. Non-directories are addressed as (parent's descriptor in <see cref="Layer"/>, name),
/// never by a joined path; directories keep an O_PATH descriptor for every layer that contributes to them.
/// </summary>
public sealed class Node
{
    public Node(ulong id, uint type) { Id = id; Type = type; }

    public ulong Id { get; }
    /// <summary>S_IFMT bits; never changes for a node id (the kernel marks the inode bad if it did).</summary>
    public uint Type { get; }
    public bool IsDir => Type == Libc.S_IFDIR;

    // Everything below is guarded by the filesystem's namespace lock when written; readers take snapshots.
    /// <summary>Where the object is: replaced whole (rename, copy-up), so a reader never sees half an update.</summary>
    public volatile Location Loc = new(null, [0], 0);
    public Node? Parent => Loc.Parent;
    public int Layer => Loc.Layer;
    public ReadOnlySpan<byte> Name => Loc.NameZ.AsSpan(0, Loc.NameZ.Length - 1);
    /// <summary>For a renamed (redirected) directory: the path of its lower part from the layer roots.</summary>
    public string? RedirectPath;
    /// <summary>A descriptor kept for an object whose name was removed while it was open.</summary>
    public int UnlinkedFd = -1;
    /// <summary>st_ino as users see it: stable across copy-up and remount.</summary>
    public ulong Ino;
    /// <summary>Directories: contributing layers, topmost first. Replaced whole, never mutated in place.</summary>
    public LayerDir[] Dirs = [];
    /// <summary>The identity key in the node table: (layer, st_dev, st_ino) of the topmost object.</summary>
    public (int Layer, ulong Dev, ulong Ino) Key;
    /// <summary>Upper directory holding copied-up children, whose st_ino comes from an origin xattr.</summary>
    public bool Impure;
    /// <summary>A metadata-only copy-up: attributes live in the upper, data is still read from <see cref="DataLoc"/>.</summary>
    public volatile bool Metacopy;
    public Location? DataLoc;
    /// <summary>An upper file that also has an entry in the hard-link index.</summary>
    public bool Indexed;
    /// <summary>The lower file's link count when this node met it: names a not yet linked-up sibling still has.</summary>
    public uint LowerNLink;
    /// <summary>Directories: the merged listing being served, and whether the directory changed since it was built.</summary>
    public List<DirEntry>? Listing;
    public volatile bool ListingStale;
    /// <summary>The object is known to have no security.capability xattr (xattrs change only through this mount);
    /// <see cref="XattrChanges"/> counts setxattr calls, so a lookup that raced with one does not record it.
    /// Written under <see cref="CopyUpLock"/>.</summary>
    public volatile bool NoCapability;
    public int XattrChanges;
    /// <summary>The name is gone (unlinked or replaced); only open handles still reach the object.</summary>
    public bool Unlinked;

    /// <summary>The kernel's references (lookup count) and the children that point at this node as parent.</summary>
    public long Lookups, ChildRefs;

    /// <summary>Open handles, and a descriptor of the object kept while any is open (for unlinked nodes).</summary>
    public int OpenCount;
    /// <summary>Passthrough: the kernel's backing id and the opens sharing it; the opens that use the page cache
    /// instead; and whether passthrough writes may have left the page cache behind the file.
    /// Guarded by <see cref="CopyUpLock"/>.</summary>
    public int BackingId, BackingRefs, CachedOpens;
    public bool PageCacheStale;
    /// <summary>Serializes copy-up and the passthrough fields above. Made on first use: most nodes are only looked up
    /// and read, and one Lock per node was about half a megabyte of a 17,000-entry tree's heap.</summary>
    public Lock CopyUpLock => _copyUpLock ?? Interlocked.CompareExchange(ref _copyUpLock, new Lock(), null) ?? _copyUpLock!;
    Lock? _copyUpLock;

    /// <summary>The descriptor of this directory in <paramref name="layer"/>, or -1.</summary>
    public int DirFd(int layer)
    {
        foreach (var d in Dirs) if (d.Layer == layer) return d.Fd;
        return -1;
    }

    public static byte[] MakeNameZ(ReadOnlySpan<byte> name)
    {
        var z = new byte[name.Length + 1];
        name.CopyTo(z);
        return z;
    }
}
