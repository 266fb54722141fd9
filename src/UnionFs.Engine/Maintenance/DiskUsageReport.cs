using System.Text;
using System.Text.Json.Nodes;
using UnionFs.Engine.Cli;
using UnionFs.Store.Fs;

namespace UnionFs.Engine.Maintenance;

/// <summary>
/// `system df`: images, containers and layers, with how much of the image data is shared. A layer's
/// bytes are counted once however many images stack on it; "shared" is the part used by more than one.
/// </summary>
public sealed class DiskUsageReport(EngineContext ctx)
{
    public sealed record ImageRow(string Id, string Tag, long Size, long Shared, int Containers);
    public sealed record LayerRow(string DiffId, string ChainId, long Size, long Disk, int Images, string CreatedBy);

    public sealed class Result
    {
        public List<ImageRow> Images { get; } = new();
        public List<LayerRow> Layers { get; } = new();
        public int Containers, ContainersMounted;
        public long ContainersSize, LayersSize, LayersDisk, SharedSize, UniqueSize, BlobsSize, Reclaimable;

        public string ToText(bool verbose)
        {
            var sb = new StringBuilder();
            sb.Append(Format.Table(["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"],
            [
                ["Images", Images.Count.ToString(), Images.Count(i => i.Containers > 0).ToString(), Format.Bytes(LayersSize), Format.Bytes(Reclaimable)],
                ["Containers", Containers.ToString(), ContainersMounted.ToString(), Format.Bytes(ContainersSize), ""],
                ["Layers", Layers.Count.ToString(), Layers.Count(l => l.Images > 0).ToString(), Format.Bytes(LayersDisk) + " on disk", ""],
                ["Blobs (tarballs)", "", "", Format.Bytes(BlobsSize), ""],
            ]));
            sb.Append($"\nShared between images: {Layers.Count(l => l.Images > 1)} layers, {Format.Bytes(SharedSize)} (stored once)\n\n");
            sb.Append(Format.Table(["IMAGE", "ID", "SIZE", "SHARED SIZE", "UNIQUE SIZE", "CONTAINERS"],
                Images.Select(i => new[] { i.Tag, Digest.Short(i.Id), Format.Bytes(i.Size), Format.Bytes(i.Shared), Format.Bytes(i.Size - i.Shared), i.Containers.ToString() })));
            sb.Append('\n');
            sb.Append(Format.Table(["LAYER (diffID)", "SIZE", "IMAGES", "CREATED BY"],
                Layers.Select(l => new[] { Digest.Short(l.DiffId), Format.Bytes(l.Size), l.Images.ToString(), verbose || l.CreatedBy.Length < 50 ? l.CreatedBy : l.CreatedBy[..49] + "…" })));
            return sb.ToString();
        }

        public JsonObject ToJson()
        {
            var images = new JsonArray();
            foreach (var i in Images)
                images.Add((JsonNode)new JsonObject { ["Id"] = i.Id, ["Tag"] = i.Tag, ["Size"] = i.Size, ["SharedSize"] = i.Shared, ["Containers"] = i.Containers });
            var layers = new JsonArray();
            foreach (var l in Layers)
                layers.Add((JsonNode)new JsonObject { ["DiffID"] = l.DiffId, ["ChainID"] = l.ChainId, ["Size"] = l.Size, ["DiskUsage"] = l.Disk, ["Images"] = l.Images });
            return new JsonObject
            {
                ["Images"] = images, ["Layers"] = layers, ["Containers"] = Containers, ["ContainersSize"] = ContainersSize,
                ["LayersSize"] = LayersSize, ["LayersDiskUsage"] = LayersDisk, ["SharedSize"] = SharedSize, ["BlobsSize"] = BlobsSize,
            };
        }
    }

    public Result Compute()
    {
        var s = ctx.Store;
        var r = new Result();
        var images = s.ListImages();
        var containers = s.ListContainers();
        var stacks = images.ToDictionary(i => i.Id, i => s.Stack(i.TopChain));
        var useCount = new Dictionary<string, int>();
        foreach (var st in stacks.Values) foreach (var l in st) useCount[l.ChainId] = useCount.GetValueOrDefault(l.ChainId) + 1;

        foreach (var l in s.ListLayers())
        {
            long disk = FileOps.DiskUsage(s.LayerDiff(l)).Allocated;
            int n = useCount.GetValueOrDefault(l.ChainId);
            r.Layers.Add(new LayerRow(l.DiffId, l.ChainId, l.Size, disk, n, l.CreatedBy));
            r.LayersSize += l.Size;
            r.LayersDisk += disk;
            if (n > 1) r.SharedSize += l.Size;
        }
        var tags = s.ListTags().GroupBy(t => t.ImageId).ToDictionary(g => g.Key, g => g.First().Name);
        foreach (var i in images)
        {
            var stack = stacks[i.Id];
            int users = containers.Count(c => c.ImageId == i.Id);
            r.Images.Add(new ImageRow(i.Id, tags.GetValueOrDefault(i.Id) ?? "<none>", stack.Sum(l => l.Size),
                stack.Where(l => useCount[l.ChainId] > 1).Sum(l => l.Size), users));
            if (users == 0) r.Reclaimable += stack.Where(l => useCount[l.ChainId] == 1).Sum(l => l.Size);
        }
        r.Containers = containers.Count;
        foreach (var c in containers)
        {
            r.ContainersSize += FileOps.DiskUsage(s.ContainerUpper(c.Id)).Apparent;
            if (Drivers.MountTable.IsMountPoint(s.ContainerMerged(c.Id))) r.ContainersMounted++;
        }
        foreach (var f in Directory.EnumerateFiles(s.Layout.Blobs)) r.BlobsSize += new FileInfo(f).Length;
        return r;
    }
}
