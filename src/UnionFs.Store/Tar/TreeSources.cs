using System.Text;
using UnionFs.Posix;
using UnionFs.Store.Fs;

namespace UnionFs.Store.Tar;

public enum NodeKind
{
    /// <summary>A real object: its type and attributes come from <see cref="TreeNode.Source"/>.</summary>
    Object,
    /// <summary>"This name was deleted": written as `.wh.NAME`.</summary>
    Whiteout,
    /// <summary>"Hide everything below this directory from lower layers": written as `DIR/.wh..wh..opq`.</summary>
    Opaque,
}

/// <param name="Path">relative to the layer root, '/'-separated, never empty.</param>
/// <param name="Source">the object on disk (for Object nodes).</param>
/// <param name="DataSource">where a regular file's data is, when not in <paramref name="Source"/>: a metadata-only
/// copy-up (the union's metacopy xattr) keeps its data in the lower layer until the file is written.</param>
public readonly record struct TreeNode(string Path, string? Source, NodeKind Kind, string? DataSource = null);

/// <summary>
/// The three trees the store turns into tars, each yielded depth-first with children in ordinal
/// order so the same tree always gives the same tar bytes:
/// <list type="bullet">
/// <item><see cref="UpperDiff"/>: a container's upper directory as an OCI changeset (§23 "native diff").</item>
/// <item><see cref="Merged"/>: the flattened view of a stack of layers (container export).</item>
/// <item><see cref="Plain"/>: a directory taken as it is (image import of a rootfs directory).</item>
/// </list>
/// </summary>
public static class TreeSources
{
    const string WhPrefix = ".wh.";
    const string OpaqueFile = ".wh..wh..opq";

    static readonly string[] OpaqueXattrs = ["trusted.overlay.opaque", "user.overlay.opaque", "user.fuseoverlayfs.opaque"];
    static readonly string[] MetacopyXattrs =
        ["trusted.overlay.metacopy", "user.overlay.metacopy", "trusted.unionfs.metacopy", "user.unionfs.metacopy"];

    static bool IsMetacopy(string file)
    {
        foreach (var x in MetacopyXattrs) if (FileOps.GetXattr(file, x) is not null) return true;
        return false;
    }

    /// <summary>The data of a metacopy file: the first of <paramref name="candidates"/> that is a regular file.</summary>
    static string? DataBelow(IEnumerable<string> candidates)
    {
        foreach (var c in candidates)
            if (FileOps.TryLstat(c, out var st, out _))
                return st.Type == Libc.S_IFREG && !IsMetacopy(c) ? c : null;
        return null;
    }

    public static IEnumerable<TreeNode> Plain(string root) => PlainWalk(root, "");

    static IEnumerable<TreeNode> PlainWalk(string dir, string rel)
    {
        foreach (var name in FileOps.ListDir(dir))
        {
            string full = Path.Combine(dir, name), path = Join(rel, name);
            yield return new TreeNode(path, full, NodeKind.Object);
            if (FileOps.Lstat(full).IsDir) foreach (var n in PlainWalk(full, path)) yield return n;
        }
    }

    /// <summary>
    /// A changeset from an upper dir. Whiteouts (char 0/0 or `.wh.` files) become `.wh.` entries,
    /// opaque directories get the marker. A directory carrying trusted.overlay.redirect was renamed
    /// from a lower path: the upper holds only what changed below it, so its full merged content is
    /// read from the lowers at the old path (that is why the lowers are an input).
    /// </summary>
    /// <param name="lowers">layer roots, topmost first.</param>
    public static IEnumerable<TreeNode> UpperDiff(string upper, IReadOnlyList<string> lowers) => UpperWalk(upper, "", lowers);

    static IEnumerable<TreeNode> UpperWalk(string dir, string rel, IReadOnlyList<string> lowers)
    {
        foreach (var name in FileOps.ListDir(dir))
        {
            string full = Path.Combine(dir, name), path = Join(rel, name);
            if (name == OpaqueFile || name == ".wh..opq") continue; // handled with the directory / fuse-overlayfs stray marker
            if (name.StartsWith(WhPrefix, StringComparison.Ordinal)) { yield return new TreeNode(Join(rel, name[WhPrefix.Length..]), null, NodeKind.Whiteout); continue; }
            var st = FileOps.Lstat(full);
            if (st.IsWhiteoutDevice) { yield return new TreeNode(path, null, NodeKind.Whiteout); continue; }
            string? data = st.Type == Libc.S_IFREG && IsMetacopy(full)
                ? DataBelow(lowers.Select(l => Path.Combine(l, path))) ?? throw new IOException($"export {full}: metadata-only copy without its lower data")
                : null;
            yield return new TreeNode(path, full, NodeKind.Object, data);
            if (!st.IsDir) continue;

            if ((FileOps.GetXattr(full, FileOps.RedirectXattr) ?? FileOps.GetXattr(full, "user.overlay.redirect")) is { } redirect)
            {
                string from = ResolveRedirect(rel, Encoding.UTF8.GetString(redirect));
                var sources = new List<string> { full };
                foreach (var lower in lowers) sources.Add(Path.Combine(lower, from));
                yield return new TreeNode(path + "/" + OpaqueFile, null, NodeKind.Opaque);
                foreach (var n in MergedWalk(DirSources(sources), path)) yield return n;
                continue;
            }
            if (IsOpaqueDir(full)) yield return new TreeNode(path + "/" + OpaqueFile, null, NodeKind.Opaque);
            foreach (var n in UpperWalk(full, path, lowers)) yield return n;
        }
    }

    /// <summary>overlay.redirect: an absolute path from the layer root, or a name in the same parent.</summary>
    static string ResolveRedirect(string parentRel, string redirect)
    {
        string rel = redirect.StartsWith('/') ? redirect.TrimStart('/') : Join(parentRel, redirect);
        return SafePath.Normalize(rel, "redirect");
    }

    /// <summary>The flattened view of layers (topmost first): what a container sees, without markers.</summary>
    public static IEnumerable<TreeNode> Merged(IReadOnlyList<string> layers) => MergedWalk(DirSources(layers), "");

    /// <summary>Keeps the leading directories of a path's layer list down to (and including) the first opaque one.</summary>
    static List<string> DirSources(IEnumerable<string> candidates)
    {
        var result = new List<string>();
        foreach (var c in candidates)
        {
            if (!FileOps.TryLstat(c, out var st, out _)) continue;
            if (!st.IsDir) break; // a non-directory (or whiteout) at this name hides everything below
            result.Add(c);
            if (IsOpaqueDir(c)) break;
        }
        return result;
    }

    static IEnumerable<TreeNode> MergedWalk(List<string> sources, string rel)
    {
        var names = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var s in sources) foreach (var n in FileOps.ListDir(s)) if (n != OpaqueFile && n != ".wh..opq") names.Add(n);
        foreach (var name in names)
        {
            if (name.StartsWith(WhPrefix, StringComparison.Ordinal)) continue;
            string path = Join(rel, name);
            // The topmost layer that mentions the name decides: a whiteout (device or `.wh.` file) hides it.
            string? top = null;
            int topIndex = -1;
            for (int i = 0; i < sources.Count && top is null; i++)
            {
                string candidate = Path.Combine(sources[i], name);
                if (FileOps.Exists(Path.Combine(sources[i], WhPrefix + name))) break;
                if (!FileOps.TryLstat(candidate, out var st, out _)) continue;
                if (st.IsWhiteoutDevice) break;
                top = candidate; topIndex = i;
            }
            if (top is null) continue;
            var topStat = FileOps.Lstat(top);
            string? data = topStat.Type == Libc.S_IFREG && IsMetacopy(top)
                ? DataBelow(sources.Skip(topIndex + 1).Select(s => Path.Combine(s, name)))
                : null;
            yield return new TreeNode(path, top, NodeKind.Object, data);
            if (!topStat.IsDir) continue;
            var below = new List<string> { top };
            if (!IsOpaqueDir(top))
                below.AddRange(DirSources(sources.Skip(topIndex + 1).Select(s => Path.Combine(s, name)).TakeWhile(p => !IsWhiteoutAt(p))));
            foreach (var n in MergedWalk(below, path)) yield return n;
        }
    }

    static bool IsWhiteoutAt(string path) =>
        (FileOps.TryLstat(path, out var st, out _) && st.IsWhiteoutDevice) ||
        FileOps.Exists(Path.Combine(Path.GetDirectoryName(path)!, WhPrefix + Path.GetFileName(path)));

    public static bool IsOpaqueDir(string dir)
    {
        foreach (var x in OpaqueXattrs) if (FileOps.GetXattr(dir, x) is [(byte)'y']) return true;
        return FileOps.Exists(Path.Combine(dir, OpaqueFile));
    }

    /// <summary>Whether a path exists in the merged view of some layers (used by container diff for A vs C).</summary>
    public static bool ExistsIn(IReadOnlyList<string> layers, string rel)
    {
        var parts = rel.Split('/');
        var sources = DirSources(layers);
        for (int depth = 0; depth < parts.Length; depth++)
        {
            string name = parts[depth];
            string? top = null; int topIndex = -1;
            for (int i = 0; i < sources.Count && top is null; i++)
            {
                if (FileOps.Exists(Path.Combine(sources[i], WhPrefix + name))) break;
                string c = Path.Combine(sources[i], name);
                if (!FileOps.TryLstat(c, out var st, out _)) continue;
                if (st.IsWhiteoutDevice) break;
                top = c; topIndex = i;
            }
            if (top is null) return false;
            if (depth == parts.Length - 1) return true;
            if (!FileOps.Lstat(top).IsDir) return false;
            var below = new List<string> { top };
            if (!IsOpaqueDir(top))
                below.AddRange(DirSources(sources.Skip(topIndex + 1).Select(s => Path.Combine(s, name)).TakeWhile(p => !IsWhiteoutAt(p))));
            sources = below;
        }
        return true;
    }

    static string Join(string rel, string name) => rel.Length == 0 ? name : rel + "/" + name;
}
