using System.Text;
using UnionFs.Store.Content;
using UnionFs.Store.Fs;

namespace UnionFs.Store.Tests;

public class StoreMetadataTests : IDisposable
{
    readonly TempDir _dir = new();
    public void Dispose() => _dir.Dispose();

    static byte[] Layer(string name, string content) => new TarBuilder().File(name, content).Build();

    static string Image(Store s, string top, string tag)
    {
        var (id, _) = s.RegisterImage(Encoding.UTF8.GetBytes($"{{\"top\":\"{top}\",\"tag\":\"{tag}\"}}"), top);
        s.Tag(tag, id);
        return id;
    }

    [Fact]
    public async Task Two_store_instances_on_one_root_write_concurrently()
    {
        string root = _dir["root"];
        using var a = new Store(root);
        using var b = new Store(root);
        // Each writer imports 10 distinct layers plus the same shared one; all must land exactly once.
        var tasks = new[] { a, b }.Select((s, w) => Task.Run(() =>
        {
            for (int i = 0; i < 10; i++)
            {
                s.ImportLayer(new MemoryStream(Layer($"f{w}-{i}", "x")), null, "t");
                s.ImportLayer(new MemoryStream(Layer("shared", "same")), null, "t");
            }
        })).ToArray();
        await Task.WhenAll(tasks);
        using var c = new Store(root);
        Assert.Equal(21, c.ListLayers().Count);
        Assert.Equal(21, Directory.GetDirectories(c.Layout.Layers).Length);
        Assert.Equal(21, Directory.GetFiles(c.Layout.Blobs).Length);
    }

    [Fact]
    public void Tags_resolve_and_default_to_latest()
    {
        using var s = new Store(_dir["root"]);
        var l = s.ImportLayer(new MemoryStream(Layer("a", "a")), null, "t").Layer;
        string id = Image(s, l.ChainId, "busybox");
        Assert.Equal(id, s.ResolveImage("busybox").Id);
        Assert.Equal(id, s.ResolveImage("busybox:latest").Id);
        Assert.Equal(id, s.ResolveImage(Digest.Short(id)).Id);
        Assert.Equal(id, s.ResolveImage(id).Id);
        Assert.Throws<StoreException>(() => s.ResolveImage("nope"));
        Assert.Equal(["busybox:latest"], s.TagsOf(id));
    }

    [Fact]
    public void Image_rm_is_refused_while_a_container_uses_it_and_keeps_shared_layers()
    {
        using var s = new Store(_dir["root"]);
        var baseL = s.ImportLayer(new MemoryStream(Layer("base", "b")), null, "t").Layer;
        var topL = s.ImportLayer(new MemoryStream(Layer("top", "t")), baseL.ChainId, "t").Layer;
        string baseImg = Image(s, baseL.ChainId, "base");
        string topImg = Image(s, topL.ChainId, "top");
        var c = s.CreateContainer(topImg, "c1");
        Assert.True(Directory.Exists(s.ContainerUpper(c.Id)));
        var e = Assert.Throws<StoreException>(() => s.DeleteImage(topImg, force: false));
        Assert.Contains("used by container", e.Message);

        s.DeleteContainer(c.Id);
        Assert.False(Directory.Exists(s.Layout.ContainerDir(c.Id)));
        var removed = s.DeleteImage(topImg, force: false);
        Assert.Equal([topL.ChainId], removed.Select(l => l.ChainId)); // the base layer is still used by the base image
        Assert.True(Directory.Exists(s.LayerDiff(baseL)));
        Assert.False(Directory.Exists(s.LayerDiff(topL)));
        Assert.NotNull(s.GetImage(baseImg));
    }

    [Fact]
    public void Gc_removes_unreferenced_layers_blobs_and_orphans_but_not_used_ones()
    {
        using var s = new Store(_dir["root"]);
        var used = s.ImportLayer(new MemoryStream(Layer("used", "u")), null, "t").Layer;
        var loose = s.ImportLayer(new MemoryStream(Layer("loose", "l")), null, "t").Layer;
        Image(s, used.ChainId, "img");
        Directory.CreateDirectory(Path.Combine(s.Layout.Layers, "orphan-from-a-crash/diff"));
        var r = s.CollectGarbage();
        Assert.Equal(1, r.Layers);
        Assert.Equal(1, r.OrphanDirs);
        Assert.Equal(1, r.Blobs);
        Assert.NotNull(s.GetLayer(used.ChainId));
        Assert.Null(s.GetLayer(loose.ChainId));
        Assert.True(Directory.Exists(s.LayerDiff(used)));
        Assert.False(Directory.Exists(Path.Combine(s.Layout.Layers, "orphan-from-a-crash")));
        Assert.Empty(s.Verify());
    }

    [Fact]
    public void Fsck_reports_a_changed_layer_and_a_corrupted_blob()
    {
        using var s = new Store(_dir["root"]);
        var l = s.ImportLayer(new MemoryStream(Layer("file", "original")), null, "t").Layer;
        Assert.Empty(s.Verify());
        File.WriteAllText(Path.Combine(s.LayerDiff(l), "file"), "tampered");
        var problems = s.Verify();
        Assert.Contains(problems, p => p.Problem.Contains("changed since it was stored"));
        File.AppendAllText(s.BlobPath(l.BlobDigest!), "junk");
        Assert.Contains(s.Verify(), p => p.Problem.Contains("hashes to"));
    }

    [Fact]
    public void Container_names_are_unique()
    {
        using var s = new Store(_dir["root"]);
        var l = s.ImportLayer(new MemoryStream(Layer("a", "a")), null, "t").Layer;
        string img = Image(s, l.ChainId, "x");
        var c = s.CreateContainer(img, "web");
        Assert.Matches("^[0-9a-f]{64}$", c.Id);
        Assert.Throws<StoreException>(() => s.CreateContainer(img, "web"));
        Assert.Equal(c.Id, s.ResolveContainer("web").Id);
        Assert.Equal(c.Id, s.ResolveContainer(c.Id[..8]).Id);
        Assert.Single(Directory.GetDirectories(s.Layout.Containers));
    }
}
