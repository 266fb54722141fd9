using Microsoft.Extensions.Logging;

namespace UnionFs.Engine.Registry;

/// <summary>
/// `unionfs push IMAGE REF`: an OCI image manifest over the stored layer tarballs (exactly the bytes the
/// layers were loaded or pulled as, so their digests are unchanged) and the config (whose digest is the
/// image id). Each blob is HEADed first and skipped if the registry has it; else mounted from another
/// repository of the same registry that is known to hold it; else uploaded, in one PUT or in PATCH
/// chunks. Every byte read from the store is hashed on the way out, so a damaged local blob is refused.
/// The manifest goes last, so the tag never points at missing blobs.
/// </summary>
public sealed class Pusher(EngineContext ctx, RegistryOptions opts, TextWriter output)
{
    Store.Store S => ctx.Store;

    public sealed record Result(string ManifestDigest, int Size, int Pushed, int Existed, int Mounted);

    sealed record BlobToPush(string Digest, long Size, string MediaType, bool IsConfig);

    public Result Push(string image, string? destination)
    {
        var img = S.ResolveImage(image);
        string dest = destination ?? image;
        if (destination is null && dest.StartsWith(Digest.Prefix, StringComparison.Ordinal))
            throw new StoreException("push: give a destination reference (unionfs push IMAGE REGISTRY/REPO[:TAG])");
        var reference = ImageReference.Parse(dest);
        if (reference.Digest is not null) throw new StoreException($"push {dest}: push to a tag, not a digest");
        byte[] config = S.ReadConfig(img.Id);
        if (Digest.Of(config) != img.Id) throw new StoreException($"image {Digest.Short(img.Id)}: config does not hash to the image id (run 'unionfs system fsck')");

        var blobs = new List<BlobToPush>();
        foreach (var l in S.Stack(img.TopChain))
        {
            var rec = S.GetBlob(l.BlobDigest ?? throw new StoreException($"layer {l.DiffId}: no stored tarball to push"))
                ?? throw new StoreException($"layer {l.DiffId}: blob {l.BlobDigest} is not in the store (run 'unionfs system fsck')");
            blobs.Add(new BlobToPush(rec.Digest, rec.Size, OciLayerMedia(rec.MediaType), false));
        }
        var (manifestBytes, manifestType) = PulledManifest(img.Id, blobs) ?? Generate(img.Id, config, blobs);
        var all = blobs.Append(new BlobToPush(img.Id, config.Length, MediaTypes.OciConfig, true)).DistinctBy(b => b.Digest).ToList();

        using var client = new RegistryClient(reference, opts, ctx.Log);
        using var cts = new CancellationTokenSource();
        return RunAsync(client, reference, all, config, manifestBytes, manifestType, cts.Token).GetAwaiter().GetResult();
    }

    /// <summary>
    /// The manifest the image was pulled with, if it describes exactly these blobs: pushing it unchanged keeps
    /// the manifest digest (a mirror keeps digests, as skopeo does; signatures stay valid).
    /// </summary>
    (byte[], string)? PulledManifest(string imageId, List<BlobToPush> blobs)
    {
        foreach (var (digest, mediaType, bytes) in S.ManifestsOf(imageId))
        {
            if (Digest.Of(bytes) != digest || !MediaTypes.IsManifest(mediaType)) continue;
            ManifestDocument m;
            try { m = RegistryJson.ParseManifest(bytes, "stored manifest"); ManifestSelection.Validate(m, mediaType, "stored manifest"); }
            catch (StoreException) { continue; }
            if (m.Config!.Digest != imageId || m.Layers!.Count != blobs.Count) continue;
            if (m.Layers.Select(l => l.Digest).SequenceEqual(blobs.Select(b => b.Digest)) && m.Layers.Zip(blobs).All(p => p.First.Size == p.Second.Size))
            {
                ctx.Log.LogDebug("pushing the manifest {Digest} the image was pulled with", digest);
                return (bytes, mediaType);
            }
        }
        return null;
    }

    static (byte[], string) Generate(string imageId, byte[] config, List<BlobToPush> blobs)
    {
        var manifest = new ManifestDocument
        {
            SchemaVersion = 2,
            MediaType = MediaTypes.OciManifest,
            Config = new Descriptor { MediaType = MediaTypes.OciConfig, Digest = imageId, Size = config.Length },
            Layers = blobs.Select(b => new Descriptor { MediaType = b.MediaType, Digest = b.Digest, Size = b.Size }).ToList(),
        };
        return (RegistryJson.Serialize(manifest), MediaTypes.OciManifest);
    }

    static string OciLayerMedia(string stored) => stored switch
    {
        var m when m.EndsWith("gzip", StringComparison.Ordinal) => "application/vnd.oci.image.layer.v1.tar+gzip",
        var m when m.EndsWith("zstd", StringComparison.Ordinal) => "application/vnd.oci.image.layer.v1.tar+zstd",
        _ => "application/vnd.oci.image.layer.v1.tar",
    };

    async Task<Result> RunAsync(RegistryClient client, ImageReference r, List<BlobToPush> blobs, byte[] config, byte[] manifestBytes, string manifestType, CancellationToken ct)
    {
        string repo = r.Repository;
        await client.PingAsync(ct);

        // Which blobs the registry lacks (HEAD), and where each could be mounted from; store reads happen here, on this thread.
        var status = new string[blobs.Count];
        var sources = blobs.Select(b => S.BlobSources(b.Digest, r.Registry).Where(s => s != repo).ToList()).ToList();
        var board = new ProgressBoard();
        int pushed = 0, existed = 0, mounted = 0;
        await ParallelTransfers.RunAll(blobs, opts.Parallel, ct, async (b, i, token) =>
        {
            var have = await client.HeadBlobAsync(repo, b.Digest, [RegistryClient.PushScope(repo)], token);
            if (have is not null && (have < 0 || have == b.Size)) { status[i] = "already exists"; Interlocked.Increment(ref existed); return; }
            Uri? upload = null;
            foreach (var from in sources[i])
            {
                var (ok, session) = await client.MountBlobAsync(repo, b.Digest, from, token);
                if (ok) { status[i] = $"mounted from {from}"; Interlocked.Increment(ref mounted); return; }
                upload = session;
                break; // the registry opened an upload session instead; use it
            }
            upload ??= await client.StartUploadAsync(repo, token);
            var bar = board.Add((b.IsConfig ? "Pushing config " : "Pushing ") + Digest.Short(b.Digest), b.Size);
            await Upload(client, repo, upload, b, config, bar, token);
            bar.Finish("pushed");
            status[i] = "pushed";
            Interlocked.Increment(ref pushed);
        });
        for (int i = 0; i < blobs.Count; i++)
            output.WriteLine($"{(blobs[i].IsConfig ? "Config" : "Layer")} {Digest.Short(blobs[i].Digest)}: {status[i]}");

        string manifestDigest = Digest.Of(manifestBytes);
        string? reported = await client.PutManifestAsync(repo, r.Tag!, manifestBytes, manifestType, ct);
        if (reported is not null && reported != manifestDigest)
            throw new RegistryException($"registry {r.Registry}: stored the manifest as {reported}, expected {manifestDigest}");
        S.RecordBlobSources(r.Registry, repo, blobs.Select(b => b.Digest));
        output.WriteLine($"{r.Tag}: digest: {manifestDigest} size: {manifestBytes.Length}");
        ctx.Log.LogDebug("pushed {Ref}: {Pushed} pushed, {Existed} present, {Mounted} mounted", r, pushed, existed, mounted);
        return new Result(manifestDigest, manifestBytes.Length, pushed, existed, mounted);
    }

    /// <summary>Uploads one blob from the store, hashing it as it is read; monolithic up to the chunk size, chunked above it.</summary>
    async Task Upload(RegistryClient client, string repo, Uri upload, BlobToPush b, byte[] config, Cli.Progress bar, CancellationToken ct)
    {
        Stream source = b.IsConfig ? new MemoryStream(config) : File.OpenRead(S.BlobPath(b.Digest));
        using var watchdog = new Watchdog(opts.IdleTimeout, ct); // the registry must keep taking bytes
        using var hashing = new HashingStream(source, onProgress: n => { bar.Add(n); watchdog.Kick(); });
        try
        {
            if (opts.ChunkSize > 0 && b.Size > opts.ChunkSize)
                await client.PatchBlobAsync(repo, upload, b.Digest, hashing, b.Size, opts.ChunkSize, watchdog.Token);
            else
                await client.PutBlobAsync(repo, upload, b.Digest, hashing, b.Size, watchdog.Token);
        }
        catch (OperationCanceledException e) when (watchdog.Fired)
        {
            throw new RegistryException(hashing.BytesRead == b.Size
                ? $"registry {client.Registry}: upload of blob {b.Digest}: all {b.Size} bytes sent, but no answer within {opts.IdleTimeout.TotalSeconds:0}s"
                : $"registry {client.Registry}: upload of blob {b.Digest} stalled: no progress for {opts.IdleTimeout.TotalSeconds:0}s after {hashing.BytesRead} of {b.Size} bytes", e);
        }
        catch (RegistryException e) when (e.InnerException is HttpRequestException or IOException && !ct.IsCancellationRequested)
        {
            throw new RegistryException($"registry {client.Registry}: upload of blob {b.Digest} interrupted after {hashing.BytesRead} of {b.Size} bytes ({RegistryClient.Message(e)})", e);
        }
        if (hashing.BytesRead != b.Size || hashing.Digest() != b.Digest)
            throw new StoreException($"blob {b.Digest}: the stored copy is damaged (hashes to {hashing.Digest()}; run 'unionfs system fsck')");
    }
}
