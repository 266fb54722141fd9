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
        bool linkedUp = false;
        if (ld.Layer != 0 && HasUpper && st.NLink > 1 && st.Type == Libc.S_IFREG
            && LinkUpFromIndex(parent, nameZ, MakeIno(ld.Layer, st.Ino)))
        {
            linkedUp = true;
            dirs = parent.Dirs;
            top = FindTop(dirs, 0, nameZ, name, out st);
            if (top < 0) return -top;
            ld = dirs[top];
        }
        var key = (ld.Layer, st.Dev, st.Ino);
        if (_nodes.AcquireExisting(key) is { } existing)
        {
            if (linkedUp && existing.Indexed) existing.LowerLinks = ReadLowerLinks(ld.Fd, name);
            // Another name of a hard-linked file: remembered, so the file can live on there (KeepIfStillReachable).
            if (st.NLink > 1 && !existing.IsDir && existing.Loc is var loc && (loc.Parent != parent || !loc.Name.SequenceEqual(name)))
                existing.OtherName = new OtherLink(parent.Id, Node.MakeNameZ(name), ld.Layer);
            node = existing;
            return 0;
        }

        var fresh = new Node(st.Type)
        {
            Key = key,
            Loc = new Location(parent, Node.MakeNameZ(name), ld.Layer),
        };
        ulong origin = 0;
        if (_layers[ld.Layer].IsUpper && (parent.Impure || fresh.IsDir))
            origin = Markers.GetOrigin(ld.Fd, name, _x.Origin);
        fresh.Ino = origin != 0 ? origin : MakeIno(ld.Layer, st.Ino);
        fresh.Indexed = origin != 0 && st.NLink > 1 && st.Type == Libc.S_IFREG && IsIndexed(origin);
        if (fresh.Indexed) fresh.LowerLinks = ReadLowerLinks(ld.Fd, name);
        if (origin != 0 && st.Type == Libc.S_IFREG
            && (Markers.GetString(ld.Fd, name, _x.Metacopy) ?? Markers.GetString(ld.Fd, name, _x.LegacyMetacopy)) is not null)
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
                int e = StatName(ld, nameZ, name, stp);
                if (e != 0)
                {
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

    /// <summary>statx of a name in one layer's directory (not following a symlink); 0 or an errno. A lower layer's
    /// directory that has been listed answers ENOENT for a name it lacks without a system call.</summary>
    static int StatName(LayerDir ld, byte* nameZ, ReadOnlySpan<byte> name, Statx* st)
    {
        if (ld.Lacks(name)) return Errno.ENOENT;
        return Libc.statx(ld.Fd, nameZ, Libc.AT_SYMLINK_NOFOLLOW | Libc.AT_STATX_DONT_SYNC, Statx.BasicStats, st) < 0 ? Errno.Last : 0;
    }

    static bool HasAufsWhiteout(LayerDir ld, ReadOnlySpan<byte> name)
    {
        if (ld.AufsMarkers == 0) ld.AufsMarkers = Markers.ScanForAufsMarkers(ld.Fd) ? 2 : 1;
        return ld.AufsMarkers == 2 && !ld.LacksWhiteoutOf(name) && Markers.HasAufsWhiteout(ld.Fd, name);
    }

    /// <summary>
    /// Opens the directory in every layer that contributes to it, from <paramref name="top"/> down, as overlayfs's
    /// lookup does: below a directory the search goes on under the same name in the parent's directories, unless
    /// the directory is opaque (the merge ends there) or records a redirect (it goes on where the redirect points).
    /// A whiteout or a non-directory ends the merge. Redirects are honoured in every layer, not just the upper: a
    /// layer that was the upper of an earlier mount keeps its renamed directories whole under a new upper.
    /// </summary>
    int BuildDirs(Node dir, Node parent, LayerDir[] pdirs, int top, byte* nameZ, ReadOnlySpan<byte> name)
    {
        var list = new List<LayerDir>();
        try
        {
            for (int i = top; i < pdirs.Length; i++)
            {
                var ld = pdirs[i];
                var found = i == top ? Below.Dir : Probe(ld, nameZ, name);
                if (found == Below.Missing) continue;
                if (found == Below.End) break;
                int fd = Libc.openat(ld.Fd, nameZ, Libc.O_PATH | Libc.O_DIRECTORY | Libc.O_NOFOLLOW | Libc.O_CLOEXEC, 0);
                if (fd < 0)
                {
                    if (i == top) return Errno.Last;
                    break;
                }
                list.Add(new LayerDir(ld.Layer, fd));
                if (Markers.ReadDirMarkers(ld.Fd, name, fd, _x.Redirect, out string? redirect)) break;
                if (redirect is null) continue;
                if (i == top && _layers[ld.Layer].IsUpper)
                    dir.RedirectPath = redirect.StartsWith('/') ? redirect : LowerPath(parent) + "/" + redirect;
                FollowRedirect(list, pdirs, ld.Layer, redirect);
                break;
            }
            return 0;
        }
        finally { dir.Dirs = list.ToArray(); }
    }

    /// <summary>What a layer below holds under the name being merged.</summary>
    enum Below { Missing, Dir, End }

    Below Probe(LayerDir ld, byte* nameZ, ReadOnlySpan<byte> name)
    {
        Statx st;
        int e = StatName(ld, nameZ, name, &st);
        if (e != 0) return e != Errno.ENOENT || HasAufsWhiteout(ld, name) ? Below.End : Below.Missing;
        return st.IsDir ? Below.Dir : Below.End; // a whiteout or a non-directory below ends the merge
    }

    /// <summary>
    /// Continues a directory's merge below <paramref name="layer"/> at a redirect's target. A relative target is a
    /// name in the parent's directories; an absolute one is a path from the layer roots, walked one component at a
    /// time (a whiteout or a non-directory on the way ends the merge, an opaque directory on the way makes this layer
    /// the last, a redirect on the way moves the rest of the path). Redirects met below are followed in turn, so a
    /// directory renamed in several generations of layers is found in all of them.
    /// </summary>
    void FollowRedirect(List<LayerDir> list, LayerDir[] pdirs, int layer, string redirect)
    {
        string? relative = null, absolute = null;
        if (!Retarget(redirect, ref relative, ref absolute)) return;
        for (int l = layer + 1; l < _layers.Length; l++)
        {
            bool last = false;
            string? next = null;
            int fd;
            if (absolute is null)
            {
                var pd = Array.Find(pdirs, d => d.Layer == l);
                if (pd is null) continue;
                var found = OpenComponent(pd, relative!, out fd, out last, out next);
                if (found == Below.Missing) continue;
                if (found == Below.End) return;
            }
            else
            {
                var found = WalkFromRoot(l, ref absolute, out fd, out last, out next);
                if (found == Below.Missing && !last) continue; // (an opaque directory on the way still ends it)
                if (found != Below.Dir) return;
            }
            list.Add(new LayerDir(l, fd));
            if (last) return;
            if (next is not null && !Retarget(next, ref relative, ref absolute)) return;
        }
    }

    /// <summary>Applies a redirect to the search: absolute replaces the path, relative replaces the last name.
    /// A malformed redirect (empty names, "." or "..", a slash in a relative one) ends the merge.</summary>
    static bool Retarget(string redirect, ref string? relative, ref string? absolute)
    {
        if (!IsValidRedirect(redirect)) return false;
        if (redirect.StartsWith('/')) { absolute = redirect; relative = null; }
        else if (absolute is null) relative = redirect;
        else absolute = DropLast(absolute, 1) + "/" + redirect;
        return true;
    }

    static bool IsValidRedirect(string redirect)
    {
        if (!redirect.StartsWith('/')) return redirect is not ("" or "." or "..") && !redirect.Contains('/');
        foreach (var c in redirect[1..].Split('/'))
            if (c is "" or "." or "..") return false;
        return true;
    }

    /// <summary>"/a/b/c" without its last <paramref name="count"/> names ("" when none is left).</summary>
    static string DropLast(string path, int count)
    {
        int end = path.Length;
        for (int i = 0; i < count && end > 0; i++) end = path.LastIndexOf('/', end - 1);
        return end <= 0 ? "" : path[..end];
    }

    /// <summary>Opens (dir, name) as a directory of the merge and reads its markers.</summary>
    Below OpenComponent(LayerDir dir, string name, out int fd, out bool opaque, out string? redirect)
    {
        fd = -1;
        opaque = false;
        redirect = null;
        var bytes = Encoding.UTF8.GetBytes(name + "\0");
        var n = bytes.AsSpan(0, bytes.Length - 1);
        fixed (byte* z = bytes)
        {
            var found = Probe(dir, z, n);
            if (found != Below.Dir) return found;
            fd = Libc.openat(dir.Fd, z, Libc.O_PATH | Libc.O_DIRECTORY | Libc.O_NOFOLLOW | Libc.O_CLOEXEC, 0);
            if (fd < 0) return Below.End;
        }
        opaque = Markers.ReadDirMarkers(dir.Fd, n, fd, _x.Redirect, out redirect);
        return Below.Dir;
    }

    /// <summary>Walks an absolute path in one layer. A redirect on an intermediate directory moves the path that
    /// later layers walk (<paramref name="path"/>), as overlayfs moves the prefix; an opaque one makes this layer
    /// the last.</summary>
    Below WalkFromRoot(int layer, ref string path, out int fd, out bool last, out string? redirect)
    {
        last = false;
        redirect = null;
        var names = path[1..].Split('/');
        fd = Libc.openat(_layers[layer].RootFd, DotZ, Libc.O_PATH | Libc.O_DIRECTORY | Libc.O_CLOEXEC, 0);
        if (fd < 0) return Below.End;
        for (int k = 0; k < names.Length; k++)
        {
            var found = OpenComponent(new LayerDir(layer, fd), names[k], out int child, out bool opaque, out string? r);
            Libc.close(fd);
            fd = child;
            if (found != Below.Dir) return found;
            last |= opaque;
            if (k == names.Length - 1) { redirect = r; break; }
            if (r is null || opaque) continue;
            if (!IsValidRedirect(r)) { last = true; continue; }
            // The path so far ends with names[k..]; its part up to names[k] is replaced by where that directory's
            // lower part lives.
            string moved = r.StartsWith('/') ? r : DropLast(path, names.Length - k) + "/" + r;
            path = moved + "/" + string.Join('/', names[(k + 1)..]);
        }
        return Below.Dir;
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
