using System.Text;
using UnionFs.Fuse;
using UnionFs.Fuse.Kernel;
using UnionFs.Posix;

namespace UnionFs.Overlay;

// namei: finding a name in a merged directory (union-semantics checklist §2).
public sealed unsafe partial class OverlayFileSystem
{
    const int NameMax = 255;

    /// <summary>Copies a name into a NUL-terminated stack buffer of NameMax+1 bytes.</summary>
    static int ToNameZ(ReadOnlySpan<byte> name, byte* buf)
    {
        if (name.Length > NameMax) return Errno.ENAMETOOLONG;
        name.CopyTo(new Span<byte>(buf, NameMax));
        buf[name.Length] = 0;
        return 0;
    }

    public int Lookup(in RequestContext ctx, ulong parent, ReadOnlySpan<byte> name, ref EntryOut entry)
    {
        if (_nodes.Get(parent) is not { } p) return Errno.ESTALE;
        int e = LookupNode(p, name, out var node, out var st);
        if (e == Errno.ENOENT)
        {
            // A cached negative entry: the upper changes only through this mount, which tells the kernel.
            entry.NodeId = 0;
            entry.EntryValid = _entryTimeout;
            entry.EntryValidNsec = _entryTimeoutNsec;
            return 0;
        }
        if (e != 0) return e;
        FillEntry(node!, st, ref entry);
        return 0;
    }

    /// <summary>
    /// Finds <paramref name="name"/> in <paramref name="parent"/> and returns its node with one more lookup count.
    /// Layers are consulted top to bottom: a whiteout ends the search with ENOENT, a non-directory is the answer,
    /// a directory is merged with same-named directories below it until an opaque one.
    /// </summary>
    int LookupNode(Node parent, ReadOnlySpan<byte> name, out Node? node, out Statx st)
    {
        node = null;
        st = default;
        if (!parent.IsDir) return Errno.ENOTDIR;
        if (Markers.IsWhiteoutName(name)) return Errno.ENOENT;
        byte* nameZ = stackalloc byte[NameMax + 1];
        int e = ToNameZ(name, nameZ);
        if (e != 0) return e;
        // Retried while copy-ups and removals change identities under it (rare; see NodeTable.IdentityEpoch).
        for (int attempt = 0; attempt < 16; attempt++)
        {
            e = LookupNodeOnce(parent, name, nameZ, _nodes.IdentityEpoch, out node, out st);
            if (e != Errno.EAGAIN) return e;
        }
        return Errno.ESTALE; // the kernel looks the name up again
    }

    int LookupNodeOnce(Node parent, ReadOnlySpan<byte> name, byte* nameZ, long epoch, out Node? node, out Statx st)
    {
        node = null;
        int e;
        var dirs = parent.Dirs;
        int top = FindTop(dirs, 0, nameZ, name, out st);
        if (top < 0) return -top;
        var ld = dirs[top];
        uint lowerNLink = ld.Layer != 0 ? st.NLink : 0;
        if (ld.Layer != 0 && HasUpper && st.NLink > 1 && st.Type == Libc.S_IFREG
            && LinkUpFromIndex(parent, nameZ, MakeIno(ld.Layer, st.Ino)))
        {
            dirs = parent.Dirs;
            top = FindTop(dirs, 0, nameZ, name, out st);
            if (top < 0) return -top;
            ld = dirs[top];
        }
        var key = (ld.Layer, st.Dev, st.Ino);
        if (_nodes.AcquireExisting(key) is { } existing)
        {
            if (lowerNLink > existing.LowerNLink) existing.LowerNLink = lowerNLink;
            node = existing;
            return 0;
        }

        var fresh = new Node(st.Type)
        {
            Key = key,
            Loc = new Location(parent, Node.MakeNameZ(name), ld.Layer),
            LowerNLink = lowerNLink,
        };
        ulong origin = 0;
        if (_layers[ld.Layer].IsUpper && (parent.Impure || fresh.IsDir))
            origin = Markers.GetOrigin(ld.Fd, name, _x.Origin);
        fresh.Ino = origin != 0 ? origin : MakeIno(ld.Layer, st.Ino);
        fresh.Indexed = origin != 0 && st.NLink > 1 && st.Type == Libc.S_IFREG && IsIndexed(origin);
        if (origin != 0 && st.Type == Libc.S_IFREG && Markers.GetString(ld.Fd, name, _x.Metacopy) is not null)
            FindMetacopyData(fresh, parent, dirs, top, nameZ, name);
        if (fresh.IsDir)
        {
            if (origin != 0 || _layers[ld.Layer].IsUpper) fresh.Impure = IsImpure(ld.Fd, name);
            e = BuildDirs(fresh, parent, dirs, top, nameZ, name);
            if (e != 0) { foreach (var d in fresh.Dirs) Libc.close(d.Fd); return e; }
        }
        node = _nodes.AddOrAcquire(fresh, parent, epoch);
        if (node != fresh) foreach (var d in fresh.Dirs) Libc.close(d.Fd); // lost a race to another lookup
        return node is null ? Errno.EAGAIN : 0;
    }

    /// <summary>A metacopy file's data is the same name's regular file in the first lower layer that has it.</summary>
    void FindMetacopyData(Node node, Node parent, LayerDir[] dirs, int top, byte* nameZ, ReadOnlySpan<byte> name)
    {
        int k = FindTop(dirs, top + 1, nameZ, name, out var st);
        if (k < 0 || st.Type != Libc.S_IFREG) return; // no data below: the (sparse) upper file is all there is
        node.DataLoc = new Location(parent, Node.MakeNameZ(name), dirs[k].Layer);
        node.Metacopy = true;
    }

    bool IsImpure(int dirFd, ReadOnlySpan<byte> name) => Markers.GetString(dirFd, name, _x.Impure) is not null;

    /// <summary>The index in <paramref name="dirs"/> of the topmost layer holding the name, or -errno.</summary>
    int FindTop(LayerDir[] dirs, int from, byte* nameZ, ReadOnlySpan<byte> name, out Statx st)
    {
        fixed (Statx* stp = &st)
        {
            for (int i = from; i < dirs.Length; i++)
            {
                var ld = dirs[i];
                if (Libc.statx(ld.Fd, nameZ, Libc.AT_SYMLINK_NOFOLLOW | Libc.AT_STATX_DONT_SYNC, Statx.BasicStats, stp) < 0)
                {
                    int e = Errno.Last;
                    if (e != Errno.ENOENT) return -e;
                    if (HasAufsWhiteout(ld, name)) return -Errno.ENOENT;
                    continue;
                }
                if (stp->IsWhiteoutDevice) return -Errno.ENOENT;
                return i;
            }
        }
        return -Errno.ENOENT;
    }

    static bool HasAufsWhiteout(LayerDir ld, ReadOnlySpan<byte> name)
    {
        if (ld.AufsMarkers == 0) ld.AufsMarkers = Markers.ScanForAufsMarkers(ld.Fd) ? 2 : 1;
        return ld.AufsMarkers == 2 && Markers.HasAufsWhiteout(ld.Fd, name);
    }

    /// <summary>Opens the directory in every layer that contributes to it, from <paramref name="top"/> down.</summary>
    int BuildDirs(Node dir, Node parent, LayerDir[] pdirs, int top, byte* nameZ, ReadOnlySpan<byte> name)
    {
        var list = new List<LayerDir>();
        try
        {
            var first = pdirs[top];
            int fd = Libc.openat(first.Fd, nameZ, Libc.O_PATH | Libc.O_DIRECTORY | Libc.O_NOFOLLOW | Libc.O_CLOEXEC, 0);
            if (fd < 0) return Errno.Last;
            list.Add(new LayerDir(first.Layer, fd));
            if (_layers[first.Layer].IsUpper)
            {
                string? redirect = Markers.GetString(first.Fd, name, _x.Redirect);
                if (redirect is not null)
                {
                    dir.RedirectPath = redirect.StartsWith('/') ? redirect : LowerPath(parent) + "/" + redirect;
                    AddRedirectedLowers(list, dir.RedirectPath);
                    return 0;
                }
            }
            if (Markers.IsOpaque(first.Fd, name, fd)) return 0;
            Statx st;
            for (int i = top + 1; i < pdirs.Length; i++)
            {
                var ld = pdirs[i];
                if (Libc.statx(ld.Fd, nameZ, Libc.AT_SYMLINK_NOFOLLOW | Libc.AT_STATX_DONT_SYNC, Statx.BasicStats, &st) < 0)
                {
                    if (Errno.Last != Errno.ENOENT || HasAufsWhiteout(ld, name)) break;
                    continue;
                }
                if (!st.IsDir) break; // a whiteout or a non-directory below ends the merge
                fd = Libc.openat(ld.Fd, nameZ, Libc.O_PATH | Libc.O_DIRECTORY | Libc.O_NOFOLLOW | Libc.O_CLOEXEC, 0);
                if (fd < 0) break;
                list.Add(new LayerDir(ld.Layer, fd));
                if (Markers.IsOpaque(ld.Fd, name, fd)) break;
            }
            return 0;
        }
        finally { dir.Dirs = list.ToArray(); }
    }

    /// <summary>A renamed directory finds its lower part at the path recorded when it moved (overlayfs redirect_dir).</summary>
    void AddRedirectedLowers(List<LayerDir> list, string path)
    {
        var rel = Encoding.UTF8.GetBytes(path.TrimStart('/') + "\0");
        fixed (byte* r = rel)
        {
            for (int layer = _layers[0].IsUpper ? 1 : 0; layer < _layers.Length; layer++)
            {
                int fd = rel.Length == 1
                    ? Libc.openat(_layers[layer].RootFd, DotZ, Libc.O_PATH | Libc.O_DIRECTORY | Libc.O_CLOEXEC, 0)
                    : Libc.openat2(_layers[layer].RootFd, r, (ulong)(Libc.O_PATH | Libc.O_NOFOLLOW | Libc.O_CLOEXEC), 0,
                        Libc.RESOLVE_BENEATH | Libc.RESOLVE_NO_SYMLINKS);
                if (fd < 0) continue;
                Statx st;
                Libc.statx(fd, Empty, Libc.AT_EMPTY_PATH, Statx.BasicStats, &st);
                if (!st.IsDir) { Libc.close(fd); break; }
                list.Add(new LayerDir(layer, fd));
                // The opaque marker is an xattr of the directory itself: reach it through its own descriptor.
                if (Markers.IsOpaque(fd, ReadOnlySpan<byte>.Empty, fd)) break;
            }
        }
    }

    /// <summary>Where a directory's lower part lives, from the layer roots ("" for the root).</summary>
    string LowerPath(Node dir)
    {
        if (dir.Id == 1 || dir.Parent is null) return "";
        return dir.RedirectPath ?? LowerPath(dir.Parent) + "/" + Encoding.UTF8.GetString(dir.Name);
    }

    /// <summary>
    /// statx of a node's object wherever it lives now. A name that went away, or now holds something of another
    /// type (a whiteout), answers ESTALE: the kernel then looks the path up again instead of marking the inode bad.
    /// </summary>
    int StatNode(Node n, out Statx st)
    {
        int e = StatObject(n, out st);
        return e == 0 && st.Type != n.Type ? Errno.ESTALE : e == Errno.ENOENT ? Errno.ESTALE : e;
    }

    int StatObject(Node n, out Statx st)
    {
        fixed (Statx* p = &st)
        {
            if (n.IsDir)
                return FsUtil.Err(Libc.statx(n.Dirs[0].Fd, Empty, Libc.AT_EMPTY_PATH | Libc.AT_SYMLINK_NOFOLLOW, Statx.BasicStats, p));
            if (n.UnlinkedFd >= 0)
                return FsUtil.Err(Libc.statx(n.UnlinkedFd, Empty, Libc.AT_EMPTY_PATH | Libc.AT_SYMLINK_NOFOLLOW, Statx.BasicStats, p));
            if (n.Unlinked) return Errno.ESTALE;
            var loc = n.Loc;
            int dirFd = loc.Parent?.DirFd(loc.Layer) ?? -1;
            if (dirFd < 0) return Errno.ESTALE;
            fixed (byte* name = loc.NameZ)
                return FsUtil.Err(Libc.statx(dirFd, name, Libc.AT_SYMLINK_NOFOLLOW, Statx.BasicStats, p));
        }
    }
}
