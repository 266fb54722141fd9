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
    /// <summary>A new node's place until it is given one (shared: locations are never changed, only replaced).</summary>
    public static readonly Location Nowhere = new(null, [0], 0);
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

    /// <summary>
    /// The sorted hashes of every name in the directory, once a lower layer's directory has been listed (null
    /// before, and always in the upper layer, which changes). Lower layers never change, so a name whose hash is
    /// missing is not there: a lookup skips the layer without asking its filesystem, for which a name that is not
    /// there costs a search of the whole directory. A hash that is there proves nothing (the name is looked up).
    /// </summary>
    public uint[]? NameHashes;

    /// <summary>Whether the directory certainly has no entry <paramref name="name"/> (see <see cref="NameHashes"/>).</summary>
    public bool Lacks(ReadOnlySpan<byte> name) => NameHashes is { } h && Array.BinarySearch(h, HashName(name)) < 0;

    /// <summary>Whether the directory certainly has no ".wh.NAME" marker for <paramref name="name"/>.</summary>
    public bool LacksWhiteoutOf(ReadOnlySpan<byte> name) =>
        NameHashes is { } h && Array.BinarySearch(h, Fnv1a(Fnv1a(FnvBasis, ".wh."u8), name)) < 0;

    public static uint HashName(ReadOnlySpan<byte> name) => Fnv1a(FnvBasis, name);

    const uint FnvBasis = 2166136261;
    static uint Fnv1a(uint hash, ReadOnlySpan<byte> bytes)
    {
        foreach (byte b in bytes) hash = (hash ^ b) * 16777619;
        return hash;
    }
}

/// <summary>
/// A node the kernel knows by id. Non-directories are addressed as (parent's descriptor in <see cref="Layer"/>, name),
/// never by a joined path; directories keep an O_PATH descriptor for every layer that contributes to them.
/// </summary>
/// <remarks>
/// There is one of these for every entry the kernel has seen (READDIRPLUS hands out a node per name listed), so its
/// size is most of the daemon's heap: only what a lookup, a getattr and an open need is stored here. State that only
/// renamed, removed, metacopy or xattr-changed objects and merged directories need lives in <see cref="NodeExtra"/>,
/// made when first needed; the properties below keep the field names, and read a default while there is none.
/// </remarks>
public sealed class Node
{
    public Node(uint type) { Type = type; }

    /// <summary>The FUSE node id; given by <see cref="NodeTable"/> when the node is registered.</summary>
    public ulong Id { get; internal set; }
    /// <summary>S_IFMT bits; never changes for a node id (the kernel marks the inode bad if it did).</summary>
    public uint Type { get; }
    public bool IsDir => Type == Libc.S_IFDIR;

    // Everything below is written under the lock of the directory the node's name is in (OverlayFileSystem.LockDir);
    // readers take snapshots.
    /// <summary>Where the object is: replaced whole (rename, copy-up), so a reader never sees half an update.</summary>
    public volatile Location Loc = Location.Nowhere;
    public Node? Parent => Loc.Parent;
    public int Layer => Loc.Layer;
    public ReadOnlySpan<byte> Name => Loc.NameZ.AsSpan(0, Loc.NameZ.Length - 1);
    /// <summary>st_ino as users see it: stable across copy-up and remount.</summary>
    public ulong Ino;
    /// <summary>Directories: contributing layers, topmost first. Replaced whole, never mutated in place.</summary>
    public LayerDir[] Dirs = [];
    /// <summary>The identity key in the node table: (layer, st_dev, st_ino) of the topmost object.
    /// Changed only through <see cref="NodeTable.Rekey"/>, which takes the node out of the table first.
    /// Kept as three fields: a (int, ulong, ulong) field would carry 4 bytes of padding into every node.</summary>
    public (int Layer, ulong Dev, ulong Ino) Key
    {
        get => (_keyLayer, _keyDev, _keyIno);
        set => (_keyLayer, _keyDev, _keyIno) = value;
    }
    int _keyLayer;
    ulong _keyDev, _keyIno;
    /// <summary>Upper directory holding copied-up children, whose st_ino comes from an origin xattr.</summary>
    public bool Impure;
    /// <summary>For a directory: whether its upper part has a default ACL: 0 not known yet, 1 no, 2 yes (see
    /// ApplyUmask). Only a setxattr or removexattr through this mount changes it.</summary>
    public byte DefaultAcl;
    /// <summary>A metadata-only copy-up: attributes live in the upper, data is still read from <see cref="DataLoc"/>.</summary>
    public volatile bool Metacopy;
    /// <summary>An upper file that also has an entry in the hard-link index.</summary>
    public bool Indexed;
    /// <summary>For an indexed (copied-up hard-linked) file: its lower names not linked into the upper yet, which count
    /// in its link count (see OverlayFileSystem.LowerLinks).</summary>
    public uint LowerLinks;
    /// <summary>The object is known to have no security.capability xattr (xattrs change only through this mount);
    /// <see cref="XattrChanges"/> counts setxattr calls, so a lookup that raced with one does not record it.
    /// Written under <see cref="CopyUpLock"/>.</summary>
    public volatile bool NoCapability;
    /// <summary>The name is gone (unlinked or replaced); only open handles still reach the object.</summary>
    public bool Unlinked;

    /// <summary>The kernel's references (lookup count) and the children that point at this node as parent.
    /// Guarded by the node table's lock.</summary>
    public long Lookups;
    public int ChildRefs;

    NodeExtra? _extra;
    /// <summary>The rarely needed state, made on first use.</summary>
    NodeExtra Extra => _extra ?? Interlocked.CompareExchange(ref _extra, new NodeExtra(), null) ?? _extra!;

    /// <summary>For a renamed (redirected) directory: the path of its lower part from the layer roots.</summary>
    public string? RedirectPath
    {
        get => _extra?.RedirectPath;
        set { if (value is not null || _extra is not null) Extra.RedirectPath = value; }
    }
    /// <summary>A descriptor kept for an object whose name was removed while it was open.</summary>
    public int UnlinkedFd
    {
        get => _extra?.UnlinkedFd ?? -1;
        set { if (value >= 0 || _extra is not null) Extra.UnlinkedFd = value; }
    }
    /// <summary>For a file with several hard links: another name the kernel found it under (by the parent's node
    /// id, which goes stale with the parent), where it can live on if the name in <see cref="Loc"/> is removed.</summary>
    public OtherLink? OtherName
    {
        get => _extra?.OtherName;
        set { if (value is not null || _extra is not null) Extra.OtherName = value; }
    }
    /// <summary>For a merged directory: how many subdirectories its merged view has, or -1 when not counted yet.</summary>
    public int Subdirs
    {
        get => _extra?.Subdirs ?? -1;
        set { if (value >= 0 || _extra is not null) Extra.Subdirs = value; }
    }
    public Location? DataLoc
    {
        get => _extra?.DataLoc;
        set { if (value is not null || _extra is not null) Extra.DataLoc = value; }
    }
    public int XattrChanges
    {
        get => _extra?.XattrChanges ?? 0;
        set => Extra.XattrChanges = value;
    }
    /// <summary>Passthrough: the kernel's backing id and the opens sharing it; the opens that use the page cache
    /// instead; and whether passthrough writes may have left the page cache behind the file. In the node itself,
    /// not in <see cref="NodeExtra"/>: every file that is opened needs them (a tar or an untar opens them all).
    /// Guarded by <see cref="CopyUpLock"/>.</summary>
    public int BackingId, BackingRefs, CachedOpens;
    /// <summary>Passthrough opens for writing: a write through a shared mapping of one changes the file's times
    /// without any request reaching the daemon.</summary>
    public int BackingWriters;
    public bool PageCacheStale;
    public bool HasBackingOpens => BackingRefs > 0;
    public bool HasBackingWriters => BackingWriters > 0;
    /// <summary>Serializes copy-up, the passthrough fields above and <see cref="NoCapability"/>: the node's own
    /// monitor, since a lock object of its own would cost every opened node about 40 bytes more.</summary>
    public object CopyUpLock => this;

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

/// <summary>The part of a <see cref="Node"/> that few nodes need (see its remarks); the same locks guard it.</summary>
public sealed class NodeExtra
{
    public string? RedirectPath;
    public int UnlinkedFd = -1;
    public int Subdirs = -1;
    public Location? DataLoc;
    public OtherLink? OtherName;
    public int XattrChanges;
}

/// <summary>A name of a hard-linked file besides its <see cref="Node.Loc"/>: parent node id, NUL-terminated name, layer.</summary>
public sealed record OtherLink(ulong ParentId, byte[] NameZ, int Layer)
{
    public ReadOnlySpan<byte> Name => NameZ.AsSpan(0, NameZ.Length - 1);
}

/// <summary>A directory listing being served (see ReadDir): the snapshot, and whether the directory changed since it
/// was built.</summary>
public sealed class DirListing
{
    public volatile List<DirEntry>? Entries;
    public volatile bool Stale;
}
