using System.Formats.Tar;
using System.Text;
using UnionFs.Store.Content;
using UnionFs.Store.Fs;
using UnionFs.Store.Tar;

namespace UnionFs.Store.Tests;

public class LayerExportTests : IDisposable
{
    readonly TempDir _dir = new();
    public void Dispose() => _dir.Dispose();

    static (string Digest, List<string> Names) Export(IEnumerable<TreeNode> nodes)
    {
        var ms = new MemoryStream();
        LayerTarWriter.Write(ms, nodes);
        var names = new List<string>();
        ms.Position = 0;
        using var r = new TarReader(ms);
        while (r.GetNextEntry() is { } e) names.Add(e.EntryType == TarEntryType.HardLink ? $"{e.Name} => {e.LinkName}" : e.Name);
        return (Digest.Of(ms.ToArray()), names);
    }

    /// <summary>A kernel-overlay style upper: a new file, a deleted lower file (char 0/0), an opaque dir, a hard link pair.</summary>
    string MakeUpper()
    {
        string u = _dir["upper"];
        Sys.Write(Path.Combine(u, "tmp/newfile"), "Hello world\n");
        Directory.CreateDirectory(Path.Combine(u, "etc"));
        Sys.MkWhiteout(Path.Combine(u, "etc/removed"));
        Directory.CreateDirectory(Path.Combine(u, "var/cache"));
        FileOps.SetXattr(Path.Combine(u, "var/cache"), FileOps.OpaqueXattr, "y"u8);
        Sys.Write(Path.Combine(u, "var/cache/fresh"), "f");
        File.CreateSymbolicLink(Path.Combine(u, "tmp/link"), "/etc/hosts");
        unsafe
        {
            fixed (byte* a = FileOps.Z(Path.Combine(u, "tmp/newfile"))) fixed (byte* b = FileOps.Z(Path.Combine(u, "tmp/zhard")))
                Posix.Libc.linkat(Posix.Libc.AT_FDCWD, a, Posix.Libc.AT_FDCWD, b, 0);
        }
        return u;
    }

    [Fact]
    public void Upper_becomes_an_oci_changeset_in_sorted_order()
    {
        var (_, names) = Export(TreeSources.UpperDiff(MakeUpper(), []));
        Assert.Equal(new[]
        {
            "etc/", "etc/.wh.removed", "tmp/", "tmp/link", "tmp/newfile", "tmp/zhard => tmp/newfile",
            "var/", "var/cache/", "var/cache/.wh..wh..opq", "var/cache/fresh",
        }, names);
    }

    [Fact]
    public void Same_upper_gives_the_same_diffId()
    {
        string u = MakeUpper();
        var (a, _) = Export(TreeSources.UpperDiff(u, []));
        Thread.Sleep(20);
        File.ReadAllText(Path.Combine(u, "tmp/newfile")); // atime changes must not matter
        var (b, _) = Export(TreeSources.UpperDiff(u, []));
        Assert.Equal(a, b);
        File.WriteAllText(Path.Combine(u, "tmp/newfile"), "Hello World\n");
        var (c, _) = Export(TreeSources.UpperDiff(u, []));
        Assert.NotEqual(a, c);
    }

    [Fact]
    public void Tar_bytes_do_not_depend_on_the_writing_process()
    {
        // System.Formats.Tar names PAX headers "PaxHeaders.<pid>/..."; two processes must still agree on a diffID.
        var ms = new MemoryStream();
        LayerTarWriter.Write(ms, TreeSources.UpperDiff(MakeUpper(), []));
        string text = System.Text.Encoding.Latin1.GetString(ms.ToArray());
        Assert.DoesNotContain($"PaxHeaders.{Environment.ProcessId}", text);
        Assert.Contains("PaxHeaders.0/", text);
        ms.Position = 0;
        using var r = new TarReader(ms);
        int n = 0;
        while (r.GetNextEntry() is not null) n++; // checksums still valid
        Assert.Equal(10, n);
    }

    [Fact]
    public void Export_then_import_round_trips_whiteouts_and_opaque_dirs()
    {
        using var store = new Store(_dir["root"]);
        string u = MakeUpper();
        var ms = new MemoryStream();
        LayerTarWriter.Write(ms, TreeSources.UpperDiff(u, []));
        var layer = store.ImportLayer(new MemoryStream(ms.ToArray()), null, "rt").Layer;
        string d = store.LayerDiff(layer);
        Assert.True(FileOps.Lstat(Path.Combine(d, "etc/removed")).IsWhiteoutDevice);
        Assert.True(FileOps.IsOpaque(Path.Combine(d, "var/cache")));
        Assert.Equal("Hello world\n", File.ReadAllText(Path.Combine(d, "tmp/newfile")));
        Assert.Equal(FileOps.Lstat(Path.Combine(d, "tmp/newfile")).Ino, FileOps.Lstat(Path.Combine(d, "tmp/zhard")).Ino);
        Assert.Equal("/etc/hosts", FileOps.ReadLink(Path.Combine(d, "tmp/link")));
        // The unpacked layer exports to exactly the tar it came from.
        var again = new MemoryStream();
        LayerTarWriter.Write(again, TreeSources.UpperDiff(d, []));
        Assert.Equal(layer.DiffId, Digest.Of(again.ToArray()));
    }

    [Fact]
    public void Renamed_directory_is_exported_with_its_full_merged_content()
    {
        string lower = _dir["lower"], upper = _dir["upper"];
        Sys.Write(Path.Combine(lower, "old/a"), "a");
        Sys.Write(Path.Combine(lower, "old/sub/b"), "b");
        Sys.Write(Path.Combine(lower, "old/gone"), "g");
        // What overlayfs with redirect_dir=on leaves after `mv old new; rm new/gone; echo c > new/c`.
        Directory.CreateDirectory(Path.Combine(upper, "new"));
        FileOps.SetXattr(Path.Combine(upper, "new"), FileOps.RedirectXattr, "old"u8);
        Sys.MkWhiteout(Path.Combine(upper, "new/gone"));
        Sys.Write(Path.Combine(upper, "new/c"), "c");
        Sys.MkWhiteout(Path.Combine(upper, "old"));
        var (_, names) = Export(TreeSources.UpperDiff(upper, [lower]));
        Assert.Equal(new[] { "new/", "new/.wh..wh..opq", "new/a", "new/c", "new/sub/", "new/sub/b", ".wh.old" }, names);
    }

    [Fact]
    public void Merged_view_applies_whiteouts_and_opaque_dirs()
    {
        string l2 = _dir["l2"], l1 = _dir["l1"], up = _dir["up"];
        Sys.Write(Path.Combine(l2, "keep"), "k");
        Sys.Write(Path.Combine(l2, "del"), "d");
        Sys.Write(Path.Combine(l2, "dir/old"), "o");
        Sys.Write(Path.Combine(l2, "shadow/x"), "x");
        Directory.CreateDirectory(l1);
        Sys.MkWhiteout(Path.Combine(l1, "del"));
        Directory.CreateDirectory(Path.Combine(l1, "dir"));
        FileOps.SetXattr(Path.Combine(l1, "dir"), FileOps.OpaqueXattr, "y"u8);
        Sys.Write(Path.Combine(l1, "dir/new"), "n");
        Sys.Write(Path.Combine(up, ".wh.shadow"), ""); // AUFS-style whiteout is understood too
        var (_, names) = Export(TreeSources.Merged([up, l1, l2]));
        Assert.Equal(new[] { "dir/", "dir/new", "keep" }, names);
        Assert.True(TreeSources.ExistsIn([l1, l2], "dir/new"));
        Assert.False(TreeSources.ExistsIn([l1, l2], "dir/old"));
        Assert.False(TreeSources.ExistsIn([l1, l2], "del"));
        Assert.True(TreeSources.ExistsIn([l1, l2], "shadow/x"));
    }

    [Fact]
    public void Private_overlay_xattrs_are_not_exported_but_user_ones_are()
    {
        string u = _dir["u"];
        Sys.Write(Path.Combine(u, "f"), "x");
        FileOps.SetXattr(Path.Combine(u, "f"), "trusted.overlay.origin", "abc"u8);
        FileOps.SetXattr(Path.Combine(u, "f"), "user.mine", "v"u8);
        var ms = new MemoryStream();
        LayerTarWriter.Write(ms, TreeSources.UpperDiff(u, []));
        ms.Position = 0;
        var e = (PaxTarEntry)new TarReader(ms).GetNextEntry()!;
        Assert.Equal("v", e.ExtendedAttributes["SCHILY.xattr.user.mine"]);
        Assert.DoesNotContain(e.ExtendedAttributes.Keys, k => k.Contains("overlay"));
        Assert.DoesNotContain("atime", e.ExtendedAttributes.Keys);
    }
}
