using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using UnionFs.Engine.Cli;
using UnionFs.Store.Metadata;
using UnionFs.Store.Tar;

namespace UnionFs.Engine.Images;

public sealed record ImageSummary(string Id, List<string> Tags, DateTimeOffset Created, long Size, int Layers, string TopChain);

public sealed record HistoryRow(string? ImageId, DateTimeOffset? Created, string CreatedBy, long Size, string? Comment, string? DiffId);

/// <summary>Image workflows: import a rootfs, list, history, inspect, tag, remove.</summary>
public sealed class ImageOps(EngineContext ctx)
{
    Store.Store S => ctx.Store;

    /// <summary>`image import DIR|TAR NAME[:TAG]`: a root filesystem becomes a one-layer image.</summary>
    public (string ImageId, string DiffId, bool LayerExisted) Import(string source, string name)
    {
        string tag = Store.Store.NormalizeTag(name);
        string createdBy = $"unionfs image import {Path.GetFileName(Path.TrimEndingDirectorySeparator(source))}";
        LayerImportResult layer;
        if (Directory.Exists(source))
        {
            var (size, _, _) = Store.Fs.FileOps.DiskUsage(source);
            var p = ctx.NewProgress("Importing " + Path.GetFileName(Path.TrimEndingDirectorySeparator(source)), size);
            var (tmp, diffId, _) = ctx.WriteLayerTar(TreeSources.Plain(Path.GetFullPath(source)), p);
            try
            {
                using var f = File.OpenRead(tmp);
                layer = S.ImportLayer(f, null, createdBy, expectedDiffId: diffId);
            }
            finally { File.Delete(tmp); }
            p.Finish(Digest.Short(layer.Layer.DiffId));
        }
        else
        {
            using var f = OpenInput(source);
            var p = ctx.NewProgress("Importing " + Path.GetFileName(source), f.CanSeek ? f.Length : 0);
            layer = S.ImportLayer(f, null, createdBy, onProgress: p.Add);
            p.Finish(Digest.Short(layer.Layer.DiffId));
        }
        var config = ImageConfig.NewBase(layer.Layer.DiffId, createdBy, DateTimeOffset.UtcNow);
        var (id, _) = S.RegisterImage(config.ToBytes(), layer.Layer.ChainId);
        S.Tag(tag, id);
        ctx.Log.LogInformation("imported {Source} as {Tag} ({Id})", source, tag, id);
        return (id, layer.Layer.DiffId, layer.Existed);
    }

    internal static Stream OpenInput(string path)
    {
        if (path == "-") return Console.OpenStandardInput();
        try { return File.OpenRead(path); }
        catch (FileNotFoundException) { throw new StoreException($"open {path}: no such file or directory"); }
        catch (DirectoryNotFoundException) { throw new StoreException($"open {path}: no such file or directory"); }
        catch (UnauthorizedAccessException) { throw new StoreException($"open {path}: permission denied"); }
    }

    public List<ImageSummary> List()
    {
        var tags = S.ListTags().GroupBy(t => t.ImageId).ToDictionary(g => g.Key, g => g.Select(t => t.Name).ToList());
        return S.ListImages().Select(i =>
        {
            var stack = S.Stack(i.TopChain);
            var config = ImageConfig.Parse(S.ReadConfig(i.Id));
            return new ImageSummary(i.Id, tags.GetValueOrDefault(i.Id) ?? [], config.Created ?? i.Created, stack.Sum(l => l.Size), stack.Count, i.TopChain);
        }).ToList();
    }

    /// <summary>Newest first, like docker history; layers that are the top of a local image show that image's id.</summary>
    public List<HistoryRow> History(string reference)
    {
        var image = S.ResolveImage(reference);
        var config = ImageConfig.Parse(S.ReadConfig(image.Id));
        var stack = S.Stack(image.TopChain);
        var byChainTop = S.ListImages().GroupBy(i => i.TopChain).ToDictionary(g => g.Key, g => g.First().Id);
        var rows = new List<HistoryRow>();
        int layer = 0;
        foreach (var h in config.History())
        {
            LayerRecord? l = h.DiffId is null ? null : layer < stack.Count ? stack[layer++] : null;
            string? imageId = l is not null && byChainTop.TryGetValue(l.ChainId, out var id) ? id : null;
            rows.Add(new HistoryRow(imageId, h.Created, h.CreatedBy, l?.Size ?? 0, h.Comment, h.DiffId));
        }
        rows.Reverse();
        // The top line always names the image itself (an empty-layer line can be on top).
        if (rows.Count > 0) rows[0] = rows[0] with { ImageId = image.Id };
        return rows;
    }

    public JsonObject Inspect(string reference)
    {
        var image = S.ResolveImage(reference);
        var configBytes = S.ReadConfig(image.Id);
        var config = ImageConfig.Parse(configBytes);
        var stack = S.Stack(image.TopChain);
        var layers = new JsonArray();
        foreach (var l in stack)
            layers.Add((JsonNode)new JsonObject
            {
                ["DiffID"] = l.DiffId, ["ChainID"] = l.ChainId, ["Size"] = l.Size, ["TarSize"] = l.TarSize,
                ["Blob"] = l.BlobDigest, ["Directory"] = S.LayerDiff(l), ["CreatedBy"] = l.CreatedBy,
            });
        var tags = new JsonArray();
        foreach (var t in S.TagsOf(image.Id)) tags.Add((JsonNode)JsonValue.Create(t));
        return new JsonObject
        {
            ["Id"] = image.Id,
            ["RepoTags"] = tags,
            ["Created"] = Format.Iso(config.Created ?? image.Created),
            ["Platform"] = config.Platform,
            ["Size"] = stack.Sum(l => l.Size),
            ["Layers"] = layers,
            ["Config"] = config.Root.DeepClone(),
        };
    }

    public void Tag(string source, string target) => S.Tag(target, S.ResolveImage(source).Id);

    /// <summary>
    /// `image rm REF`: removing a tag of an image with several tags only untags it (as docker does);
    /// otherwise the image goes, with the layers nothing else uses.
    /// </summary>
    public (bool Untagged, string ImageId, List<LayerRecord> Deleted) Remove(string reference, bool force)
    {
        var image = S.ResolveImage(reference);
        var tags = S.TagsOf(image.Id);
        string normalized = SafeNormalize(reference);
        if (tags.Count > 1 && tags.Contains(normalized) && !force)
        {
            S.Untag(normalized);
            return (true, image.Id, []);
        }
        return (false, image.Id, S.DeleteImage(image.Id, force));
    }

    static string SafeNormalize(string r) { try { return Store.Store.NormalizeTag(r); } catch (StoreException) { return r; } }
}
