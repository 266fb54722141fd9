using System.Text.Json;
using System.Text.Json.Nodes;
using UnionFs.Engine.Images;
using UnionFs.Store.Fs;
using UnionFs.Store.Tar;

namespace UnionFs.Engine.Archives;

/// <summary>
/// `image load`: a docker-archive (what `docker save` and `skopeo copy ... docker-archive:` write) or an
/// OCI image layout (a directory, or a tar of one, as `skopeo copy ... oci:` / `oci-archive:` write).
/// A plain tar file is read in place (<see cref="ArchiveSource"/>); stdin and compressed archives are
/// first unpacked into the store's tmp/ with the same hostile-name checks as layers (manifest.json is
/// often the last member, and a pipe cannot seek). Each layer is verified
/// against its diffID (and, for OCI, its blob digest) while it streams into the store; a layer whose
/// chainID is already stored is not read at all.
/// </summary>
public sealed class ArchiveLoader(EngineContext ctx, TextWriter output)
{
    Store.Store S => ctx.Store;

    public List<string> Load(string input, string? tagOverride)
    {
        string full = input == "-" ? input : Path.GetFullPath(input);
        if (Directory.Exists(full))
        {
            using var dir = ArchiveSource.Directory(full);
            return LoadFrom(dir, tagOverride, Path.GetFileName(Path.TrimEndingDirectorySeparator(full)));
        }
        string stem = input == "-" ? "stdin" : Path.GetFileNameWithoutExtension(input);
        if (input != "-" && IsPlainFile(full))
        {
            using var tar = ArchiveSource.TarFile(full);
            return LoadFrom(tar, tagOverride, stem);
        }
        // stdin or a compressed archive: unpack it into tmp/ first (manifest.json is often the last member).
        string spool = ctx.TempFile();
        try
        {
            Directory.CreateDirectory(spool);
            using (var stream = ImageOps.OpenInput(input))
            {
                var p = ctx.NewProgress("Reading " + (input == "-" ? "stdin" : Path.GetFileName(input)), stream.CanSeek ? stream.Length : 0);
                using var counted = new HashingStream(stream, leaveOpen: true, onProgress: p.Add);
                try { new LayerUnpacker(spool).Unpack(Compression.Decompress(counted, out _)); }
                catch (InvalidDataException e) { throw new StoreException($"load {input}: not a tar archive ({e.Message})"); }
                catch (EndOfStreamException) { throw new StoreException($"load {input}: not a tar archive (truncated)"); }
                catch (LayerFormatException e) { throw new StoreException($"load {input}: {e.Message}"); }
                p.Finish();
            }
            using var dir = ArchiveSource.Directory(spool);
            return LoadFrom(dir, tagOverride, stem);
        }
        finally { FileOps.RemoveTree(spool); }
    }

    /// <summary>A regular file whose first bytes are not a compression magic (a plain tar can be read in place).</summary>
    static bool IsPlainFile(string path)
    {
        if (!File.Exists(path)) return false;
        using var f = ImageOps.OpenInput(path);
        var head = new byte[4];
        int n = f.ReadAtLeast(head, 4, throwOnEndOfStream: false);
        return Compression.Sniff(head.AsSpan(0, n)) == CompressionKind.None;
    }

    List<string> LoadFrom(ArchiveSource src, string? tagOverride, string stem)
    {
        if (src.Exists("index.json") || src.Exists("oci-layout")) return LoadOci(src, tagOverride, stem);
        if (src.Exists("manifest.json")) return LoadDockerArchive(src, tagOverride);
        throw new StoreException($"load {src.Display}: neither a docker-archive (manifest.json) nor an OCI layout (index.json)");
    }

    // ---- docker-archive ----

    List<string> LoadDockerArchive(ArchiveSource src, string? tagOverride)
    {
        var manifest = ParseJson(src, "manifest.json") as JsonArray ?? throw new StoreException("manifest.json: not a JSON array");
        var loaded = new List<string>();
        foreach (var item in manifest)
        {
            string configPath = Str(item?["Config"], "manifest.json Config");
            byte[] configBytes = src.ReadAll(configPath);
            var config = ImageConfig.Parse(configBytes);
            var layerFiles = (item?["Layers"] as JsonArray ?? throw new StoreException("manifest.json: no Layers")).Select(n => Str(n, "Layers")).ToList();
            var layers = config.DiffIds.Select((d, i) => new LayerSource(d, i < layerFiles.Count ? layerFiles[i] : null, null)).ToList();
            if (layerFiles.Count != layers.Count) throw new StoreException($"{configPath}: {layers.Count} diff_ids but manifest.json lists {layerFiles.Count} layers");
            var tags = tagOverride is not null ? [tagOverride] : (item?["RepoTags"] as JsonArray)?.Select(t => Str(t, "RepoTags")).ToList() ?? [];
            loaded.Add(Register(src, configBytes, config, layers, tags));
        }
        return loaded;
    }

    // ---- OCI layout ----

    const string IndexMedia = "application/vnd.oci.image.index.v1+json", DockerList = "application/vnd.docker.distribution.manifest.list.v2+json";

    List<string> LoadOci(ArchiveSource dir, string? tagOverride, string stem)
    {
        var index = ParseJson(dir, "index.json");
        var loaded = new List<string>();
        foreach (var (manifestDesc, annotations) in Manifests(dir, index))
        {
            var manifest = JsonNode.Parse(ReadBlob(dir, manifestDesc)) ?? throw new StoreException("manifest is empty");
            var configDesc = manifest["config"] ?? throw new StoreException($"manifest {Str(manifestDesc["digest"], "digest")}: no config");
            byte[] configBytes = ReadBlob(dir, configDesc);
            var config = ImageConfig.Parse(configBytes);
            var descs = manifest["layers"] as JsonArray ?? throw new StoreException("manifest: no layers");
            var diffIds = config.DiffIds;
            if (descs.Count != diffIds.Count) throw new StoreException($"manifest lists {descs.Count} layers but its config has {diffIds.Count} diff_ids");
            var layers = diffIds.Select((d, i) =>
            {
                string blob = Digest.Parse(Str(descs[i]?["digest"], "layer digest"));
                return new LayerSource(d, BlobPath(blob), blob);
            }).ToList();
            var tags = new List<string>();
            if (tagOverride is not null) tags.Add(tagOverride);
            else if (annotations?["io.containerd.image.name"]?.GetValue<string>() is { } full) tags.Add(full);
            else if (annotations?["org.opencontainers.image.ref.name"]?.GetValue<string>() is { } refName)
                tags.Add(refName.Contains(':') || refName.Contains('/') ? refName : $"{stem}:{refName}");
            loaded.Add(Register(dir, configBytes, config, layers, tags));
        }
        return loaded;
    }

    /// <summary>Image manifests of an index, descending into nested indexes; for multi-platform indexes, the ones for this machine.</summary>
    IEnumerable<(JsonNode Desc, JsonNode? Annotations)> Manifests(ArchiveSource dir, JsonNode index, JsonNode? inherited = null)
    {
        var list = (index["manifests"] as JsonArray ?? throw new StoreException("index.json: no manifests")).Where(m => m is not null).Select(m => m!).ToList();
        var platformMatches = list.Where(m => m["platform"] is { } p && p["os"]?.GetValue<string>() == "linux" &&
            p["architecture"]?.GetValue<string>() == ImageConfig.Arch()).ToList();
        if (list.Any(m => m["platform"] is not null) && platformMatches.Count > 0) list = platformMatches;
        foreach (var m in list)
        {
            string media = m["mediaType"]?.GetValue<string>() ?? "";
            var annotations = m["annotations"] ?? inherited;
            if (media is IndexMedia or DockerList)
            {
                foreach (var inner in Manifests(dir, JsonNode.Parse(ReadBlob(dir, m))!, annotations)) yield return inner;
            }
            else yield return (m, annotations);
        }
    }

    static string BlobPath(string digest) => "blobs/sha256/" + Digest.Hex(digest);

    /// <summary>Reads a small blob (manifest, config) and checks it against its descriptor's digest.</summary>
    static byte[] ReadBlob(ArchiveSource dir, JsonNode desc)
    {
        string digest = Digest.Parse(Str(desc["digest"], "descriptor digest"));
        string name = BlobPath(digest);
        if (!dir.Exists(name)) throw new StoreException($"{dir.Display}: blob {digest} missing from the OCI layout");
        var bytes = dir.ReadAll(name);
        if (Digest.Of(bytes) != digest) throw new StoreException($"{dir.Display}: {name} does not match its digest");
        return bytes;
    }

    // ---- common ----

    sealed record LayerSource(string DiffId, string? File, string? BlobDigest);

    string Register(ArchiveSource src, byte[] configBytes, ImageConfig config, List<LayerSource> layers, List<string> tags)
    {
        var createdBy = config.History().Where(h => !h.EmptyLayer).Select(h => h.CreatedBy).ToList();
        string? parent = null;
        for (int i = 0; i < layers.Count; i++)
        {
            var l = layers[i];
            string chain = Digest.ChainId(parent, l.DiffId);
            if (S.GetLayer(chain) is not null) output.WriteLine($"Layer {Digest.Short(l.DiffId)}: already exists");
            else
            {
                using var f = src.Open(l.File!);
                var p = ctx.NewProgress("Loading layer " + Digest.Short(l.DiffId), f.Length);
                var r = S.ImportLayer(f, parent, i < createdBy.Count ? createdBy[i] : "", l.DiffId, l.BlobDigest, p.Add);
                p.Finish();
                output.WriteLine(r.Existed ? $"Layer {Digest.Short(l.DiffId)}: already exists" : $"Loaded layer {Digest.Short(l.DiffId)}");
            }
            parent = chain;
        }
        if (parent is null) throw new StoreException("image has no layers");
        var (id, _) = S.RegisterImage(configBytes, parent);
        foreach (var t in tags) { S.Tag(t, id); output.WriteLine($"Loaded image: {Store.Store.NormalizeTag(t)}"); }
        if (tags.Count == 0) output.WriteLine($"Loaded image ID: {id}");
        return id;
    }

    static string Str(JsonNode? n, string what)
    {
        try { return n?.GetValue<string>() ?? throw new StoreException($"missing {what}"); }
        catch (InvalidOperationException) { throw new StoreException($"{what}: not a string"); }
    }

    static JsonNode ParseJson(ArchiveSource src, string name)
    {
        try { return JsonNode.Parse(src.ReadAll(name)) ?? throw new StoreException($"{src.Display}: {name} is empty"); }
        catch (JsonException e) { throw new StoreException($"{src.Display}: {name} is invalid JSON ({e.Message})"); }
    }
}
