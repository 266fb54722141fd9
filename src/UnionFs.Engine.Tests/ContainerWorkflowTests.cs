using System.Formats.Tar;
using UnionFs.Engine.Containers;
using UnionFs.Engine.Images;
using UnionFs.Store.Fs;

namespace UnionFs.Engine.Tests;

/// <summary>Image import, container diff/commit/export and history, with the union simulated by writing into the upper directly.</summary>
public class ContainerWorkflowTests : IDisposable
{
    readonly Scratch _s = new();
    public void Dispose() => _s.Dispose();

    [Fact]
    public void Import_commit_and_history_share_the_base_layer()
    {
        using var ctx = _s.Open();
        var images = new ImageOps(ctx);
        var (baseId, baseDiff, _) = images.Import(_s.MakeRootfs(), "busybox");
        var containers = new ContainerOps(ctx);
        var c = containers.Create("busybox", "builder");
        Scratch.Write(ctx.Store.ContainerUpper(c.Id), "tmp/newfile", "Hello world\n");
        var (helloId, layer) = containers.Commit("builder", "hello:v1", "add /tmp/newfile");

        var hist = images.History("hello:v1");
        Assert.Equal(2, hist.Count);
        Assert.Equal(helloId, hist[0].ImageId);
        Assert.Equal("add /tmp/newfile", hist[0].Comment);
        Assert.Equal(layer.DiffId, hist[0].DiffId);
        Assert.Equal(baseDiff, hist[1].DiffId);
        Assert.Equal(baseId, hist[1].ImageId); // the base layer is the top of the local busybox image
        Assert.Equal(ctx.Store.ResolveImage("busybox").TopChain, layer.Parent);
        Assert.Equal(2, ctx.Store.ListLayers().Count);
        Assert.Equal("Hello world\n", File.ReadAllText(Path.Combine(ctx.Store.LayerDiff(layer), "tmp/newfile")));
    }

    [Fact]
    public void Diff_reports_added_changed_and_deleted()
    {
        using var ctx = _s.Open();
        new ImageOps(ctx).Import(_s.MakeRootfs(), "base");
        var ops = new ContainerOps(ctx);
        var c = ops.Create("base", null);
        string up = ctx.Store.ContainerUpper(c.Id);
        Scratch.Write(up, "tmp/new", "n");
        Scratch.Write(up, "etc/hostname", "changed\n");
        Scratch.Whiteout(Path.Combine(up, "etc/passwd"));
        var diff = ops.Diff(c.Id).Select(x => $"{x.Kind} {x.Path}");
        Assert.Equal(["C /etc", "C /etc/hostname", "D /etc/passwd", "C /tmp", "A /tmp/new"], diff);
    }

    [Fact]
    public void Identical_uppers_commit_to_the_same_diffId()
    {
        using var ctx = _s.Open();
        new ImageOps(ctx).Import(_s.MakeRootfs(), "base");
        var ops = new ContainerOps(ctx);
        var diffs = new List<string>();
        foreach (var name in new[] { "a", "b" })
        {
            var c = ops.Create("base", name);
            string up = ctx.Store.ContainerUpper(c.Id);
            Scratch.Write(up, "tmp/newfile", "Hello world\n");
            Scratch.Whiteout(Path.Combine(up, "etc/passwd"));
            Scratch.FixTimes(up);
            diffs.Add(ops.Commit(name, null, null).Layer.DiffId);
        }
        Assert.Equal(diffs[0], diffs[1]);
        Assert.Equal(2, ctx.Store.ListLayers().Count); // the second commit reused the stored layer
    }

    [Fact]
    public void Export_flattens_image_and_container_changes()
    {
        using var ctx = _s.Open();
        new ImageOps(ctx).Import(_s.MakeRootfs(), "base");
        var ops = new ContainerOps(ctx);
        var c = ops.Create("base", null);
        string up = ctx.Store.ContainerUpper(c.Id);
        Scratch.Write(up, "tmp/new", "n");
        Scratch.Whiteout(Path.Combine(up, "etc/passwd"));
        string tar = _s["rootfs.tar"];
        ops.Export(c.Id, tar);
        var names = new List<string>();
        using (var r = new TarReader(File.OpenRead(tar))) while (r.GetNextEntry() is { } e) names.Add(e.Name);
        Assert.Equal(["bin/", "bin/sh", "bin/tool", "etc/", "etc/hostname", "tmp/", "tmp/new"], names);
        Assert.DoesNotContain(Directory.GetFiles(_s.Path), f => f.Contains(".tmp-"));
    }

    [Fact]
    public void Remove_deletes_only_the_writable_layer()
    {
        using var ctx = _s.Open();
        new ImageOps(ctx).Import(_s.MakeRootfs(), "base");
        var ops = new ContainerOps(ctx);
        var c = ops.Create("base", "x");
        Scratch.Write(ctx.Store.ContainerUpper(c.Id), "tmp/new", "n");
        ops.Remove("x");
        Assert.False(Directory.Exists(ctx.Store.Layout.ContainerDir(c.Id)));
        Assert.Single(ctx.Store.ListLayers());
        Assert.Empty(ctx.Store.ListContainers());
    }

    [Fact]
    public void Mount_with_kernel_overlay_shows_image_and_keeps_writes_in_upper()
    {
        using var ctx = _s.Open();
        new ImageOps(ctx).Import(_s.MakeRootfs(), "base");
        var ops = new ContainerOps(ctx);
        var c = ops.Create("base", "m");
        string merged = ops.Mount("m");
        Assert.Equal(merged, ops.Mount("m")); // idempotent
        Assert.Equal("box\n", File.ReadAllText(Path.Combine(merged, "etc/hostname")));
        File.WriteAllText(Path.Combine(merged, "tmp/w"), "written");
        File.Delete(Path.Combine(merged, "etc/passwd"));
        Assert.Equal(["D /etc/passwd", "A /tmp/w"], ops.Diff("m").Where(d => d.Kind != 'C').Select(d => $"{d.Kind} {d.Path}"));
        ops.Remove("m"); // unmounts first
        Assert.False(Drivers.MountTable.IsMountPoint(merged));
        var layer = ctx.Store.ListLayers().Single();
        Assert.True(File.Exists(Path.Combine(ctx.Store.LayerDiff(layer), "etc/passwd"))); // the image is unchanged
    }
}
