using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using UnionFs.Engine.Cli;
using UnionFs.Engine.Images;
using UnionFs.Store.Fs;
using UnionFs.Store.Tar;

namespace UnionFs.Engine.Maintenance;

/// <summary>
/// `system migrate LEGACY_DIR`: imports a pre-content-addressable layout, where layers are directories
/// named by random ids that point at their parent (Docker before 1.10: graph/&lt;id&gt; + aufs/diff/&lt;id&gt;):
/// <code>
/// LEGACY_DIR/&lt;id&gt;/layer/     the layer's files (AUFS `.wh.` whiteouts or overlay char 0/0 ones); `diff/` is accepted too
/// LEGACY_DIR/&lt;id&gt;/parent     the parent's id (optional; or "parent" in &lt;id&gt;/json)
/// LEGACY_DIR/&lt;id&gt;/json       optional v1 metadata: parent, created, container_config.Cmd (history text)
/// LEGACY_DIR/repositories     optional {"name": {"tag": "&lt;id&gt;"}} naming images
/// </code>
/// Each layer is serialised to a changeset tar (computing its diffID), imported on top of its parent's
/// chain, and every named id (or, without a repositories file, every leaf) becomes an image. The legacy
/// directory is only read.
/// </summary>
public sealed class LegacyMigrator(EngineContext ctx, TextWriter output)
{
    sealed record Legacy(string Id, string Content, string? Parent, DateTimeOffset? Created, string CreatedBy);

    public void Migrate(string legacyDir)
    {
        legacyDir = Path.GetFullPath(legacyDir);
        if (!Directory.Exists(legacyDir)) throw new StoreException($"migrate {legacyDir}: no such directory");
        var layers = Discover(legacyDir);
        var order = TopologicalOrder(layers);
        long total = order.Sum(l => FileOps.DiskUsage(l.Content).Apparent);
        var progress = ctx.NewProgress($"Migrating {order.Count} layers", total);
        var chainOf = new Dictionary<string, string>();
        var diffOf = new Dictionary<string, string>();
        foreach (var l in order)
        {
            string? parentChain = l.Parent is null ? null : chainOf[l.Parent];
            var (tmp, diffId, _) = ctx.WriteLayerTar(TreeSources.UpperDiff(l.Content, []), progress);
            try
            {
                using var f = File.OpenRead(tmp);
                var r = ctx.Store.ImportLayer(f, parentChain, l.CreatedBy, expectedDiffId: diffId);
                chainOf[l.Id] = r.Layer.ChainId;
                diffOf[l.Id] = r.Layer.DiffId;
                if (!Progress.Interactive) output.WriteLine($"layer {Short(l.Id)} -> {r.Layer.DiffId}{(r.Existed ? " (already stored)" : "")}");
            }
            finally { File.Delete(tmp); }
        }
        progress.Finish($"{order.Count} layers");
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"Migrated {order.Count} layers, {Format.Bytes(progress.Done)} in {progress.Seconds:0.00}s ({progress.Done / 1e6 / Math.Max(progress.Seconds, 1e-3):0.0} MB/s)"));

        foreach (var (id, tags) in ImagesToCreate(legacyDir, layers))
        {
            var chain = new List<Legacy>();
            for (Legacy? l = layers[id]; l is not null; l = l.Parent is null ? null : layers[l.Parent]) chain.Add(l);
            chain.Reverse();
            ImageConfig config = ImageConfig.NewBase(diffOf[chain[0].Id], chain[0].CreatedBy, chain[0].Created ?? DateTimeOffset.UnixEpoch);
            foreach (var l in chain.Skip(1)) config = config.WithLayer(diffOf[l.Id], l.CreatedBy, null, l.Created ?? DateTimeOffset.UnixEpoch);
            var (imageId, _) = ctx.Store.RegisterImage(config.ToBytes(), chainOf[id]);
            foreach (var t in tags) ctx.Store.Tag(t, imageId);
            output.WriteLine($"image {string.Join(", ", tags)}: {imageId} ({chain.Count} layers)");
        }
    }

    static string Short(string id) => id.Length > 12 ? id[..12] : id;

    static Dictionary<string, Legacy> Discover(string dir)
    {
        var result = new Dictionary<string, Legacy>();
        foreach (var id in FileOps.ListDir(dir))
        {
            string d = Path.Combine(dir, id);
            if (!Directory.Exists(d) || id.StartsWith('.')) continue;
            string? content = new[] { "layer", "diff" }.Select(c => Path.Combine(d, c)).FirstOrDefault(Directory.Exists);
            if (content is null) continue;
            JsonNode? json = null;
            if (File.Exists(Path.Combine(d, "json")))
            {
                try { json = JsonNode.Parse(File.ReadAllBytes(Path.Combine(d, "json"))); }
                catch (JsonException e) { throw new StoreException($"migrate {Path.Combine(d, "json")}: invalid JSON ({e.Message})"); }
            }
            string? parent = File.Exists(Path.Combine(d, "parent")) ? File.ReadAllText(Path.Combine(d, "parent")).Trim() : json?["parent"]?.GetValue<string>();
            if (parent?.Length == 0) parent = null;
            DateTimeOffset? created = json?["created"]?.GetValue<string>() is { } c && DateTimeOffset.TryParse(c, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var t) ? t : null;
            string createdBy = json?["container_config"]?["Cmd"] is JsonArray cmd ? string.Join(' ', cmd.Select(x => x?.GetValue<string>())) : $"unionfs system migrate {Short(id)}";
            result[id] = new Legacy(id, content, parent, created, createdBy);
        }
        if (result.Count == 0) throw new StoreException($"migrate {dir}: no legacy layers found (expected <id>/layer directories)");
        foreach (var l in result.Values)
            if (l.Parent is not null && !result.ContainsKey(l.Parent))
                throw new StoreException($"migrate {Path.Combine(dir, l.Id)}: parent {l.Parent} is missing");
        return result;
    }

    /// <summary>Parents before children; a cycle is an error (it cannot be a layer stack).</summary>
    static List<Legacy> TopologicalOrder(Dictionary<string, Legacy> layers)
    {
        var order = new List<Legacy>();
        var state = new Dictionary<string, int>(); // 1 = visiting, 2 = done
        void Visit(Legacy l)
        {
            if (state.GetValueOrDefault(l.Id) == 2) return;
            if (state.GetValueOrDefault(l.Id) == 1) throw new StoreException($"migrate: parent pointers form a cycle at {l.Id}");
            state[l.Id] = 1;
            if (l.Parent is not null) Visit(layers[l.Parent]);
            state[l.Id] = 2;
            order.Add(l);
        }
        foreach (var l in layers.Values.OrderBy(l => l.Id, StringComparer.Ordinal)) Visit(l);
        return order;
    }

    static List<(string Id, List<string> Tags)> ImagesToCreate(string dir, Dictionary<string, Legacy> layers)
    {
        var byId = new Dictionary<string, List<string>>();
        string repos = Path.Combine(dir, "repositories");
        if (File.Exists(repos))
        {
            var root = JsonNode.Parse(File.ReadAllBytes(repos)) as JsonObject ?? throw new StoreException($"{repos}: not a JSON object");
            foreach (var (name, tagsNode) in root)
                foreach (var (tag, idNode) in tagsNode as JsonObject ?? [])
                {
                    string id = idNode!.GetValue<string>();
                    if (!layers.ContainsKey(id)) throw new StoreException($"{repos}: {name}:{tag} names unknown layer {id}");
                    (byId.TryGetValue(id, out var l) ? l : byId[id] = new()).Add($"{name}:{tag}");
                }
        }
        else
        {
            var parents = new HashSet<string>(layers.Values.Where(l => l.Parent is not null).Select(l => l.Parent!));
            foreach (var leaf in layers.Keys.Where(k => !parents.Contains(k)).Order(StringComparer.Ordinal)) byId[leaf] = [$"migrated-{Short(leaf)}:latest"];
        }
        return byId.Select(kv => (kv.Key, kv.Value)).ToList();
    }
}
