using System.Formats.Tar;
using System.Text;
using System.Text.Json.Nodes;
using UnionFs.Engine.Archives;
using UnionFs.Engine.Cli;
using UnionFs.Engine.Containers;
using UnionFs.Engine.Images;
using UnionFs.Engine.Maintenance;
using UnionFs.Store.Fs;

namespace UnionFs.Engine.Tests;

public class ArchiveTests : IDisposable
{
    readonly Scratch _s = new();
    public void Dispose() => _s.Dispose();

    /// <summary>busybox (one layer) and hello (busybox + one committed layer) in the store at root.</summary>
    (string Base, string Hello) TwoImages(EngineContext ctx)
    {
        var (b, _, _) = new ImageOps(ctx).Import(_s.MakeRootfs(), "busybox");
        var ops = new ContainerOps(ctx);
        var c = ops.Create("busybox", null);
        Scratch.Write(ctx.Store.ContainerUpper(c.Id), "tmp/newfile", "Hello world\n");
        var (h, _) = ops.Commit(c.Id, "hello", null);
        ops.Remove(c.Id);
        return (b, h);
    }

    [Theory]
    [InlineData("docker-archive", "out.tar")]
    [InlineData("oci-archive", "out-oci.tar")]
    [InlineData("oci", "out-oci-dir")]
    public void Save_then_load_into_another_store_keeps_ids_and_skips_known_layers(string format, string output)
    {
        string file = _s[output];
        string baseId, helloId;
        using (var ctx = _s.Open())
        {
            (baseId, helloId) = TwoImages(ctx);
            new ArchiveSaver(ctx).Save(["hello", "busybox"], file, format);
        }
        Assert.DoesNotContain(Directory.GetFileSystemEntries(_s.Path), f => f.Contains(".tmp-"));

        var other = new Scratch();
        try
        {
            using var ctx2 = new EngineContext(new Store.Store(other.Root), new Drivers.OverlayDriver());
            ctx2.NewProgress = (l, t) => new Progress(l, t, TextWriter.Null, tty: false);
            var log = new StringWriter();
            var ids = new ArchiveLoader(ctx2, log).Load(file, null);
            Assert.Equal([helloId, baseId], ids);
            Assert.Contains("Loaded layer", log.ToString());
            Assert.Contains("Layer " , log.ToString()); // busybox's only layer was already loaded with hello
            Assert.Equal(helloId, ctx2.Store.ResolveImage("hello:latest").Id);
            Assert.Equal(2, ctx2.Store.ListLayers().Count);
            Assert.Empty(ctx2.Store.Verify());

            var again = new StringWriter();
            new ArchiveLoader(ctx2, again).Load(file, null);
            Assert.DoesNotContain("Loaded layer", again.ToString());
            Assert.Contains("already exists", again.ToString());
        }
        finally { other.Dispose(); }
    }

    [Fact]
    public void Docker_archive_layers_are_named_by_diffId_and_hash_to_it()
    {
        string file = _s["out.tar"];
        using var ctx = _s.Open();
        TwoImages(ctx);
        new ArchiveSaver(ctx).Save(["hello"], file, null);
        using var r = new TarReader(File.OpenRead(file));
        int layers = 0;
        while (r.GetNextEntry() is { } e)
        {
            if (!e.Name.EndsWith(".tar")) continue;
            var ms = new MemoryStream();
            e.DataStream!.CopyTo(ms);
            Assert.Equal("sha256:" + e.Name[..^4], Digest.Of(ms.ToArray()));
            layers++;
        }
        Assert.Equal(2, layers);
    }

    [Fact]
    public void Tampered_layer_is_rejected_and_nothing_is_registered()
    {
        string dir = _s["archive"];
        using (var ctx = _s.Open())
        {
            TwoImages(ctx);
            new ArchiveSaver(ctx).Save(["hello"], dir, "oci");
        }
        // Replace the top layer blob's content (keeping its name): the digest check must catch it.
        var manifest = Directory.GetFiles(Path.Combine(dir, "blobs/sha256")).Select(File.ReadAllBytes)
            .Where(b => b.Length > 0 && b[0] == (byte)'{').Select(b => JsonNode.Parse(b) as JsonObject)
            .First(j => j?["layers"] is not null)!;
        string layerBlob = Path.Combine(dir, "blobs/sha256", Digest.Hex(manifest["layers"]![1]!["digest"]!.GetValue<string>()));
        var tar = new MemoryStream();
        using (var w = new TarWriter(tar, leaveOpen: true))
            w.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, "evil") { DataStream = new MemoryStream("x"u8.ToArray()) });
        File.WriteAllBytes(layerBlob, tar.ToArray());

        var other = new Scratch();
        try
        {
            using var ctx2 = new EngineContext(new Store.Store(other.Root), new Drivers.OverlayDriver());
            ctx2.NewProgress = (l, t) => new Progress(l, t, TextWriter.Null, tty: false);
            var e = Assert.Throws<StoreException>(() => new ArchiveLoader(ctx2, TextWriter.Null).Load(dir, null));
            Assert.Contains("digest mismatch", e.Message);
            Assert.Empty(ctx2.Store.ListImages());
            Assert.Single(ctx2.Store.ListLayers()); // the verified base layer may stay; the bad one never lands
        }
        finally { other.Dispose(); }
    }

    [Fact]
    public void History_includes_empty_layers_from_a_loaded_config()
    {
        // A docker-archive built by hand: one layer, three history lines (two of them ENV/CMD-like empty layers).
        var layer = new MemoryStream();
        using (var w = new TarWriter(layer, TarEntryFormat.Pax, leaveOpen: true))
            w.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, "f") { DataStream = new MemoryStream("data"u8.ToArray()), ModificationTime = DateTimeOffset.UnixEpoch });
        string diff = Digest.Of(layer.ToArray());
        var config = Encoding.UTF8.GetBytes($$"""
            {"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["{{diff}}"]},
             "history":[{"created_by":"ADD file"},{"created_by":"ENV A=1","empty_layer":true},{"created_by":"CMD [\"sh\"]","empty_layer":true}]}
            """);
        string archive = _s["hand.tar"];
        using (var f = File.Create(archive))
        using (var w = new TarWriter(f, TarEntryFormat.Pax))
        {
            void Add(string name, byte[] data) => w.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, name) { DataStream = new MemoryStream(data) });
            Add("layer.tar", layer.ToArray());
            Add("config.json", config);
            Add("manifest.json", Encoding.UTF8.GetBytes("""[{"Config":"config.json","RepoTags":["hand:1"],"Layers":["layer.tar"]}]"""));
        }
        using var ctx = _s.Open();
        new ArchiveLoader(ctx, TextWriter.Null).Load(archive, null);
        var rows = new ImageOps(ctx).History("hand:1");
        Assert.Equal(["CMD [\"sh\"]", "ENV A=1", "ADD file"], rows.Select(r => r.CreatedBy));
        Assert.Equal([null, null, diff], rows.Select(r => r.DiffId));
        Assert.Equal(4, rows[2].Size);
        Assert.Equal(Digest.Of(config), rows[0].ImageId);
    }

    [Fact]
    public void Migrate_imports_a_legacy_layout_with_parent_pointers()
    {
        string legacy = _s["legacy"];
        string baseId = "a1b2c3d4e5f6a1b2c3d4e5f6", childId = "ffeeddccbbaa99887766";
        Scratch.Write(legacy, $"{baseId}/layer/etc/passwd", "root\n");
        Scratch.Write(legacy, $"{baseId}/layer/etc/motd", "hi\n");
        Scratch.Write(legacy, $"{childId}/layer/etc/.wh.motd", "");   // AUFS-style deletion
        Scratch.Write(legacy, $"{childId}/layer/app/run", "go\n");
        File.WriteAllText(Path.Combine(legacy, childId, "parent"), baseId + "\n");
        File.WriteAllText(Path.Combine(legacy, "repositories"), "{\"app\":{\"v1\":\"" + childId + "\"}}");
        using var ctx = _s.Open();
        var log = new StringWriter();
        new LegacyMigrator(ctx, log).Migrate(legacy);
        Assert.Contains("Migrated 2 layers", log.ToString());
        Assert.Contains("MB/s", log.ToString());
        var image = ctx.Store.ResolveImage("app:v1");
        var stack = ctx.Store.Stack(image.TopChain);
        Assert.Equal(2, stack.Count);
        Assert.True(FileOps.Lstat(Path.Combine(ctx.Store.LayerDiff(stack[1]), "etc/motd")).IsWhiteoutDevice);
        Assert.Equal(Digest.ChainId(stack[0].DiffId, stack[1].DiffId), image.TopChain);
        Assert.Empty(ctx.Store.Verify());
        Assert.True(File.Exists(Path.Combine(legacy, baseId, "layer/etc/motd"))); // the legacy tree is only read
    }

    [Fact]
    public void Migrate_refuses_a_missing_parent()
    {
        string legacy = _s["legacy"];
        Scratch.Write(legacy, "child/layer/f", "x");
        File.WriteAllText(Path.Combine(legacy, "child", "parent"), "ghost");
        using var ctx = _s.Open();
        var e = Assert.Throws<StoreException>(() => new LegacyMigrator(ctx, TextWriter.Null).Migrate(legacy));
        Assert.Contains("parent ghost is missing", e.Message);
        Assert.Empty(ctx.Store.ListLayers());
    }

    [Fact]
    public void Disk_usage_counts_the_shared_base_layer_once()
    {
        using var ctx = _s.Open();
        TwoImages(ctx);
        var df = new DiskUsageReport(ctx).Compute();
        var baseLayer = df.Layers.Single(l => l.Images == 2);
        Assert.Equal(df.SharedSize, baseLayer.Size);
        Assert.Equal(df.Layers.Sum(l => l.Size), df.LayersSize);
        Assert.Contains("Shared between images: 1 layers", df.ToText(false));
    }
}
