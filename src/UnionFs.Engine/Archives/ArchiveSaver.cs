using System.Formats.Tar;
using System.Text.Json.Nodes;
using UnionFs.Engine.Cli;
using UnionFs.Store.Fs;
using UnionFs.Store.Metadata;

namespace UnionFs.Engine.Archives;

/// <summary>
/// `image save`: writes images as a docker-archive (default; `docker load` and `skopeo ... docker-archive:`
/// read it), an OCI layout directory (`--format oci`), or a tar of one (`--format oci-archive`).
/// Layers are the stored tarballs, so their digests are the diffIDs (docker-archive, uncompressed) or
/// the original blob digests (OCI). Output appears under its name only once complete.
/// </summary>
public sealed class ArchiveSaver(EngineContext ctx)
{
    Store.Store S => ctx.Store;
    const string ManifestMedia = "application/vnd.oci.image.manifest.v1+json";

    sealed record Selected(ImageRecord Image, List<string> Tags, List<LayerRecord> Stack, byte[] Config);

    public void Save(IReadOnlyList<string> references, string output, string? format)
    {
        var images = references.Select(r =>
        {
            var img = S.ResolveImage(r);
            var tags = S.TagsOf(img.Id);
            string? asTag = TryTag(r);
            var chosen = asTag is not null && tags.Contains(asTag) ? [asTag] : tags;
            return new Selected(img, chosen, S.Stack(img.TopChain), S.ReadConfig(img.Id));
        }).ToList();
        format ??= output.EndsWith('/') || Directory.Exists(output) ? "oci" : "docker-archive";
        long total = images.SelectMany(i => i.Stack).DistinctBy(l => l.ChainId).Sum(l => l.TarSize);
        var progress = ctx.NewProgress("Saving " + string.Join(", ", references), total);
        switch (format)
        {
            case "docker-archive" or "docker":
                OutputFile.Write(output, s => { using var sink = new TarSink(s); WriteDockerArchive(sink, images, progress); });
                break;
            case "oci-archive":
                OutputFile.Write(output, s => { using var sink = new TarSink(s); WriteOci(sink, images, progress); });
                break;
            case "oci" or "oci-dir":
                WriteOciDir(output, images, progress);
                break;
            default: throw new StoreException($"unknown format '{format}' (docker-archive, oci-archive or oci)");
        }
        progress.Finish(output);
    }

    static string? TryTag(string r) { try { return Store.Store.NormalizeTag(r); } catch (StoreException) { return null; } }

    void WriteDockerArchive(TarSink sink, List<Selected> images, Progress progress)
    {
        var manifest = new JsonArray();
        var written = new HashSet<string>();
        foreach (var img in images)
        {
            string configName = Digest.Hex(img.Image.Id) + ".json";
            if (written.Add(configName)) sink.Add(configName, new MemoryStream(img.Config));
            var layerNames = new JsonArray();
            foreach (var l in img.Stack)
            {
                string name = Digest.Hex(l.DiffId) + ".tar";
                layerNames.Add((JsonNode)JsonValue.Create(name));
                if (!written.Add(name)) continue;
                using var tar = OpenUncompressed(l, out string? scratch);
                try { sink.Add(name, tar); }
                finally { if (scratch is not null) File.Delete(scratch); }
                progress.Add(l.TarSize);
            }
            var tags = new JsonArray();
            foreach (var t in img.Tags) tags.Add((JsonNode)JsonValue.Create(t));
            manifest.Add((JsonNode)new JsonObject { ["Config"] = configName, ["RepoTags"] = tags, ["Layers"] = layerNames });
        }
        sink.Add("manifest.json", new MemoryStream(Format.JsonBytes(manifest)));
    }

    /// <summary>The layer's tar exactly as its diffID hashes it: the blob itself, or the blob decompressed into a scratch file (tar headers need the size up front).</summary>
    Stream OpenUncompressed(LayerRecord l, out string? scratch)
    {
        scratch = null;
        string blob = l.BlobDigest ?? throw new StoreException($"layer {l.DiffId}: no stored tarball");
        var raw = S.OpenBlob(blob);
        var plain = Compression.Decompress(raw, out var kind);
        if (kind == CompressionKind.None) { plain.Dispose(); return S.OpenBlob(blob); }
        scratch = ctx.TempFile();
        using (var f = File.Create(scratch)) using (plain) plain.CopyTo(f);
        return File.OpenRead(scratch);
    }

    void WriteOciDir(string output, List<Selected> images, Progress progress)
    {
        string full = Path.GetFullPath(output.TrimEnd('/'));
        if (Directory.Exists(full) && Directory.EnumerateFileSystemEntries(full).Any())
            throw new StoreException($"save {full}: directory exists and is not empty");
        string tmp = $"{full}.tmp-{Environment.ProcessId}";
        try
        {
            Directory.CreateDirectory(tmp);
            using (var sink = new DirSink(tmp)) WriteOci(sink, images, progress);
            if (Directory.Exists(full)) Directory.Delete(full);
            Directory.Move(tmp, full);
        }
        catch (UnauthorizedAccessException) { throw new StoreException($"save {full}: permission denied"); }
        finally { FileOps.RemoveTree(tmp); }
    }

    void WriteOci(ILayoutSink sink, List<Selected> images, Progress progress)
    {
        var written = new HashSet<string>();
        void Blob(string digest, Func<Stream> open)
        {
            if (!written.Add(digest)) return;
            using var s = open();
            sink.Add("blobs/sha256/" + Digest.Hex(digest), s);
        }
        sink.Add("oci-layout", new MemoryStream("{\"imageLayoutVersion\":\"1.0.0\"}"u8.ToArray()));
        var manifests = new JsonArray();
        foreach (var img in images)
        {
            Blob(img.Image.Id, () => new MemoryStream(img.Config));
            var layers = new JsonArray();
            foreach (var l in img.Stack)
            {
                var blob = S.GetBlob(l.BlobDigest ?? throw new StoreException($"layer {l.DiffId}: no stored tarball"))!;
                layers.Add((JsonNode)new JsonObject { ["mediaType"] = OciLayerMedia(blob.MediaType), ["digest"] = blob.Digest, ["size"] = blob.Size });
                if (!written.Contains(blob.Digest)) progress.Add(l.TarSize);
                Blob(blob.Digest, () => S.OpenBlob(blob.Digest));
            }
            var manifest = Format.JsonBytes(new JsonObject
            {
                ["schemaVersion"] = 2,
                ["mediaType"] = ManifestMedia,
                ["config"] = new JsonObject { ["mediaType"] = Store.Store.ConfigMediaType, ["digest"] = img.Image.Id, ["size"] = img.Config.Length },
                ["layers"] = layers,
            });
            string manifestDigest = Digest.Of(manifest);
            Blob(manifestDigest, () => new MemoryStream(manifest));
            foreach (var tag in img.Tags.Count > 0 ? img.Tags.Cast<string?>() : [null])
            {
                var desc = new JsonObject { ["mediaType"] = ManifestMedia, ["digest"] = manifestDigest, ["size"] = manifest.Length };
                if (tag is not null)
                    desc["annotations"] = new JsonObject { ["io.containerd.image.name"] = tag, ["org.opencontainers.image.ref.name"] = tag[(tag.LastIndexOf(':') + 1)..] };
                manifests.Add((JsonNode)desc);
            }
        }
        sink.Add("index.json", new MemoryStream(Format.JsonBytes(new JsonObject
        {
            ["schemaVersion"] = 2, ["mediaType"] = "application/vnd.oci.image.index.v1+json", ["manifests"] = manifests,
        })));
    }

    static string OciLayerMedia(string stored) => stored switch
    {
        var m when m.EndsWith("gzip") => "application/vnd.oci.image.layer.v1.tar+gzip",
        var m when m.EndsWith("zstd") => "application/vnd.oci.image.layer.v1.tar+zstd",
        _ => "application/vnd.oci.image.layer.v1.tar",
    };

    interface ILayoutSink : IDisposable { void Add(string name, Stream data); }

    /// <summary>Archive members with fixed owner, mode and time: the same images always give the same archive.</summary>
    sealed class TarSink(Stream output) : ILayoutSink
    {
        readonly TarWriter _w = new(new Store.Tar.ReproducibleTarStream(output), TarEntryFormat.Pax, leaveOpen: true);
        readonly HashSet<string> _dirs = new();

        public void Add(string name, Stream data)
        {
            for (int i = name.IndexOf('/'); i > 0; i = name.IndexOf('/', i + 1))
                if (_dirs.Add(name[..i])) _w.WriteEntry(Entry(TarEntryType.Directory, name[..i] + "/", 0x1ed));
            var e = Entry(TarEntryType.RegularFile, name, 0x1a4);
            e.DataStream = data;
            _w.WriteEntry(e);
        }

        static PaxTarEntry Entry(TarEntryType type, string name, int mode) =>
            new(type, name) { Mode = (UnixFileMode)mode, ModificationTime = DateTimeOffset.UnixEpoch, Uid = 0, Gid = 0, UserName = "", GroupName = "" };

        public void Dispose() => _w.Dispose();
    }

    sealed class DirSink(string root) : ILayoutSink
    {
        public void Add(string name, Stream data)
        {
            string path = Path.Combine(root, name);
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            using var f = File.Create(path);
            data.CopyTo(f);
        }
        public void Dispose() { }
    }
}
