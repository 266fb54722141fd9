using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using UnionFs.Engine.Cli;

namespace UnionFs.Engine.Images;

/// <summary>One line of `image history`: a history entry of the config, and the layer it produced (null for empty layers such as ENV).</summary>
public sealed record HistoryEntry(DateTimeOffset? Created, string CreatedBy, string? Comment, bool EmptyLayer, string? DiffId);

/// <summary>
/// An OCI image config (application/vnd.oci.image.config.v1+json), handled as a JSON tree so that fields
/// we do not model (Env, Cmd, labels, ...) survive a commit unchanged. The exact bytes are what the
/// image id hashes, so a loaded config is stored as received and only new images are serialised here.
/// </summary>
public sealed class ImageConfig
{
    public JsonObject Root { get; }

    public ImageConfig(JsonObject root) { Root = root; }

    public static ImageConfig Parse(byte[] bytes)
    {
        try { return new ImageConfig(JsonNode.Parse(bytes) as JsonObject ?? throw new StoreException("image config is not a JSON object")); }
        catch (JsonException e) { throw new StoreException($"image config is not valid JSON: {e.Message}"); }
    }

    public List<string> DiffIds =>
        (Root["rootfs"]?["diff_ids"] as JsonArray ?? throw new StoreException("image config has no rootfs.diff_ids"))
        .Select(n => Digest.Parse(n!.GetValue<string>())).ToList();

    public DateTimeOffset? Created => Time(Root["created"]);

    public string Platform => $"{Root["os"]?.GetValue<string>() ?? "?"}/{Root["architecture"]?.GetValue<string>() ?? "?"}";

    /// <summary>History lines paired with layers in order; a config without history gets one line per layer.</summary>
    public List<HistoryEntry> History()
    {
        var diffIds = DiffIds;
        var result = new List<HistoryEntry>();
        int layer = 0;
        if (Root["history"] is JsonArray history && history.Count > 0)
        {
            foreach (var h in history)
            {
                bool empty = h?["empty_layer"]?.GetValue<bool>() ?? false;
                string? diff = !empty && layer < diffIds.Count ? diffIds[layer++] : null;
                result.Add(new HistoryEntry(Time(h?["created"]), h?["created_by"]?.GetValue<string>() ?? "", h?["comment"]?.GetValue<string>(), empty, diff));
            }
        }
        for (; layer < diffIds.Count; layer++) result.Add(new HistoryEntry(null, "", null, false, diffIds[layer]));
        return result;
    }

    static DateTimeOffset? Time(JsonNode? n) =>
        n is not null && DateTimeOffset.TryParse(n.GetValue<string>(), System.Globalization.CultureInfo.InvariantCulture, System.Globalization.DateTimeStyles.AssumeUniversal, out var t) ? t : null;

    /// <summary>A single-layer image config for `image import`.</summary>
    public static ImageConfig NewBase(string diffId, string createdBy, DateTimeOffset now) => new(new JsonObject
    {
        ["created"] = Format.ConfigTime(now),
        ["architecture"] = Arch(),
        ["os"] = "linux",
        ["config"] = new JsonObject
        {
            ["Env"] = new JsonArray("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
            ["Cmd"] = new JsonArray("/bin/sh"),
        },
        ["rootfs"] = new JsonObject { ["type"] = "layers", ["diff_ids"] = new JsonArray(JsonValue.Create(diffId)) },
        ["history"] = new JsonArray(new JsonObject { ["created"] = Format.ConfigTime(now), ["created_by"] = createdBy }),
    });

    /// <summary>The config of a commit: the parent's, plus one layer and one history line.</summary>
    public ImageConfig WithLayer(string diffId, string createdBy, string? comment, DateTimeOffset now)
    {
        var copy = (JsonObject)Root.DeepClone();
        copy["created"] = Format.ConfigTime(now);
        var rootfs = copy["rootfs"] as JsonObject ?? new JsonObject { ["type"] = "layers" };
        copy["rootfs"] = rootfs;
        var diffs = rootfs["diff_ids"] as JsonArray ?? new JsonArray();
        rootfs["diff_ids"] = diffs;
        int layersBefore = diffs.Count;
        diffs.Add((JsonNode)JsonValue.Create(diffId));
        if (copy["history"] is not JsonArray history)
        {
            // Synthesize history for the existing layers so entries and layers stay paired.
            history = new JsonArray();
            for (int i = 0; i < layersBefore; i++) history.Add((JsonNode)new JsonObject { ["created_by"] = "" });
            copy["history"] = history;
        }
        var entry = new JsonObject { ["created"] = Format.ConfigTime(now), ["created_by"] = createdBy };
        if (!string.IsNullOrEmpty(comment)) entry["comment"] = comment;
        history.Add((JsonNode)entry);
        return new ImageConfig(copy);
    }

    public byte[] ToBytes() => Format.JsonBytes(Root);

    public static string Arch() => RuntimeInformation.OSArchitecture switch
    {
        Architecture.X64 => "amd64",
        Architecture.Arm64 => "arm64",
        Architecture.Arm => "arm",
        var a => a.ToString().ToLowerInvariant(),
    };
}
