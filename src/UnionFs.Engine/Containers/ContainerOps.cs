using Microsoft.Extensions.Logging;
using UnionFs.Engine.Drivers;
using UnionFs.Engine.Images;
using UnionFs.Store.Fs;
using UnionFs.Store.Metadata;
using UnionFs.Store.Tar;

namespace UnionFs.Engine.Containers;

/// <param name="Dead">mounted, but the FUSE daemon is gone (ENOTCONN); `container mount` or `umount` cleans it up.</param>
public sealed record ContainerSummary(ContainerRecord Record, List<string> ImageTags, bool Mounted, bool Dead, string MergedPath, long UpperSize);

public sealed record Change(char Kind, string Path);

/// <summary>Container workflows: a thin writable layer (upper/work) on top of an image's stack.</summary>
public sealed class ContainerOps(EngineContext ctx)
{
    Store.Store S => ctx.Store;

    public ContainerRecord Create(string image, string? name) => S.CreateContainer(S.ResolveImage(image).Id, name);

    public List<ContainerSummary> List() => S.ListContainers().Select(c => new ContainerSummary(c, S.TagsOf(c.ImageId),
        MountTable.IsMountPoint(S.ContainerMerged(c.Id)), MountTable.IsDead(S.ContainerMerged(c.Id)), S.ContainerMerged(c.Id),
        FileOps.DiskUsage(S.ContainerUpper(c.Id)).Apparent)).ToList();

    /// <summary>Mounts the container's rootfs on containers/ID/merged (idempotent) and returns that path.</summary>
    public string Mount(string reference)
    {
        var c = S.ResolveContainer(reference);
        string merged = S.ContainerMerged(c.Id);
        if (MountTable.IsDead(merged)) { ctx.Log.LogInformation("cleaning up dead mount {Merged}", merged); MountTable.Unmount(merged); }
        if (MountTable.IsMountPoint(merged)) return merged;
        ctx.Driver.Mount(S.LowerDirs(c.ChainId), S.ContainerUpper(c.Id), S.ContainerWork(c.Id), merged);
        return merged;
    }

    public bool Unmount(string reference)
    {
        var c = S.ResolveContainer(reference);
        string merged = S.ContainerMerged(c.Id);
        if (MountTable.IsDead(merged)) { MountTable.Unmount(merged); return true; }
        if (!MountTable.IsMountPoint(merged)) return false;
        ctx.Driver.Unmount(merged);
        return true;
    }

    /// <summary>
    /// What the container changed, like `docker diff`: A (added: not in the image), C (changed: also in the image,
    /// includes directories whose children changed), D (deleted: a whiteout). Read from the upper directory.
    /// </summary>
    public List<Change> Diff(string reference)
    {
        var c = S.ResolveContainer(reference);
        var lowers = S.LowerDirs(c.ChainId);
        var changes = new List<Change>();
        foreach (var node in TreeSources.UpperDiff(S.ContainerUpper(c.Id), lowers))
        {
            switch (node.Kind)
            {
                case NodeKind.Whiteout: changes.Add(new('D', "/" + node.Path)); break;
                case NodeKind.Object: changes.Add(new(TreeSources.ExistsIn(lowers, node.Path) ? 'C' : 'A', "/" + node.Path)); break;
            }
        }
        return changes.OrderBy(ch => ch.Path, StringComparer.Ordinal).ToList();
    }

    /// <summary>
    /// `container commit`: the upper dir becomes a layer tar (whiteouts as .wh. entries, renamed directories
    /// in full), which is imported on top of the container's stack; the image config gains that layer
    /// and a history line. Safe while mounted (the upper is read, not moved).
    /// </summary>
    public (string ImageId, LayerRecord Layer) Commit(string reference, string? name, string? message)
    {
        var c = S.ResolveContainer(reference);
        var parentConfig = ImageConfig.Parse(S.ReadConfig(c.ImageId));
        var lowers = S.LowerDirs(c.ChainId);
        string upper = S.ContainerUpper(c.Id);
        var progress = ctx.NewProgress("Committing " + Digest.Short(c.Id), FileOps.DiskUsage(upper).Apparent);
        var (tmp, diffId, _) = ctx.WriteLayerTar(TreeSources.UpperDiff(upper, lowers), progress);
        string createdBy = $"unionfs container commit {Digest.Short(c.Id)}";
        LayerRecord layer;
        try
        {
            using var f = File.OpenRead(tmp);
            layer = S.ImportLayer(f, c.ChainId, createdBy, expectedDiffId: diffId).Layer;
        }
        finally { File.Delete(tmp); }
        var config = parentConfig.WithLayer(layer.DiffId, createdBy, message, DateTimeOffset.UtcNow);
        var (id, _) = S.RegisterImage(config.ToBytes(), layer.ChainId);
        if (name is not null) S.Tag(name, id);
        progress.Finish(Digest.Short(id));
        return (id, layer);
    }

    /// <summary>`container export`: the flattened root filesystem (image layers + upper, whiteouts applied) as a tar.</summary>
    public long Export(string reference, string output)
    {
        var c = S.ResolveContainer(reference);
        var layers = new List<string> { S.ContainerUpper(c.Id) };
        layers.AddRange(S.LowerDirs(c.ChainId));
        var progress = ctx.NewProgress("Exporting " + Digest.Short(c.Id), S.Stack(c.ChainId).Sum(l => l.Size) + FileOps.DiskUsage(layers[0]).Apparent);
        long bytes = OutputFile.Write(output, stream => LayerTarWriter.Write(stream, TreeSources.Merged(layers), progress.Add));
        progress.Finish();
        return bytes;
    }

    /// <summary>`container rm`: unmounts first, then deletes the record and the writable layer only.</summary>
    public string Remove(string reference)
    {
        var c = S.ResolveContainer(reference);
        string merged = S.ContainerMerged(c.Id);
        if (MountTable.IsMountPoint(merged) || MountTable.IsDead(merged)) ctx.Driver.Unmount(merged);
        if (MountTable.IsMountPoint(merged)) throw new StoreException($"container rm {Digest.Short(c.Id)}: {merged} is still mounted");
        S.DeleteContainer(c.Id);
        return c.Id;
    }
}
