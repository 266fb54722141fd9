using Microsoft.Extensions.Logging;
using UnionFs.Engine.Images;

namespace UnionFs.Engine.Registry;

/// <summary>
/// `unionfs pull REF`: manifest (through an index if need be, choosing this platform), config, then only
/// the layers whose stack (chainID) is not in the store. Blobs download in parallel (a bounded number at a
/// time) into blobs/ under temp names, hashed as they stream; a blob is registered only once its size and
/// digest check out, so an interrupted pull keeps the finished blobs and does not fetch them again.
/// Layers are unpacked (verified against their diffIDs) only after every blob has arrived, and the image
/// and its tag are registered in one transaction at the very end: a failed pull leaves no layer, image
/// or tag behind.
/// </summary>
public sealed class Puller(EngineContext ctx, RegistryOptions opts, TextWriter output)
{
    Store.Store S => ctx.Store;
    readonly object _db = new(); // the store's SQLite connection is used by one thread at a time

    public sealed record Result(string ImageId, string ManifestDigest, string? Tag, int Downloaded, int Existing);

    public Result Pull(string text)
    {
        var reference = ImageReference.Parse(text);
        using var client = new RegistryClient(reference, opts, ctx.Log);
        using var cts = new CancellationTokenSource();
        return RunAsync(client, reference, cts.Token).GetAwaiter().GetResult();
    }

    async Task<Result> RunAsync(RegistryClient client, ImageReference r, CancellationToken ct)
    {
        string repo = r.Repository, what = r.ToString();
        await client.PingAsync(ct);

        var m = await client.GetManifestAsync(repo, r.ManifestReference, ct);
        string manifestDigest = Digest.Of(m.Bytes);
        if (r.Digest is not null && manifestDigest != r.Digest)
            throw new RegistryException($"{what}: manifest digest mismatch: content hashes to {manifestDigest}");
        if (r.Digest is null && m.DigestHeader is { } hd && hd.StartsWith(Digest.Prefix, StringComparison.Ordinal) && hd != manifestDigest)
            throw new RegistryException($"{what}: manifest digest mismatch: registry says {hd}, content hashes to {manifestDigest}");
        var doc = RegistryJson.ParseManifest(m.Bytes, what);
        string mediaType = ManifestSelection.EffectiveMediaType(m.ContentType, doc);
        string referenceDigest = manifestDigest; // what the tag names (an index, for multi-platform images), as docker reports it
        string? platformLine = null;
        if (MediaTypes.IsIndex(mediaType))
        {
            var chosen = ManifestSelection.Select(doc, opts.Platform, what);
            m = await client.GetManifestAsync(repo, chosen.Digest!, ct);
            manifestDigest = Digest.Of(m.Bytes);
            if (manifestDigest != chosen.Digest) throw new RegistryException($"{what}: manifest {chosen.Digest} hashes to {manifestDigest}");
            doc = RegistryJson.ParseManifest(m.Bytes, what);
            mediaType = ManifestSelection.EffectiveMediaType(m.ContentType ?? chosen.MediaType, doc);
            if (MediaTypes.IsIndex(mediaType)) throw new RegistryException($"{what}: nested image indexes are not supported");
            platformLine = $"Manifest: {chosen.Platform} {chosen.Digest}";
        }
        ManifestSelection.Validate(doc, mediaType, what);
        var layers = doc.Layers!;

        // The config: small, verified in memory.
        string configDigest = doc.Config!.Digest!;
        byte[] configBytes;
        if (S.HasBlobFile(configDigest) && Digest.Of(S.ReadBlob(configDigest)) == configDigest) configBytes = S.ReadBlob(configDigest);
        else configBytes = await FetchSmall(client, repo, doc.Config, ct);
        var config = ImageConfig.Parse(configBytes);
        var diffIds = config.DiffIds;
        if (diffIds.Count != layers.Count) throw new RegistryException($"{what}: manifest lists {layers.Count} layers but the config has {diffIds.Count} diff_ids");
        if (layers.Count == 0) throw new RegistryException($"{what}: image has no layers");
        if (config.Platform != $"{opts.Platform.Os}/{opts.Platform.Architecture}")
            ctx.Log.LogWarning("{Ref}: image is for {Platform}, not {Want}", what, config.Platform, $"{opts.Platform.Os}/{opts.Platform.Architecture}");

        var chains = Digest.ChainIds(diffIds);
        var present = chains.Select(c => S.GetLayer(c) is not null).ToArray();
        var fetch = new List<Descriptor>();
        var kept = new HashSet<string>();
        for (int i = 0; i < layers.Count; i++)
        {
            string blob = layers[i].Digest!;
            if (present[i]) output.WriteLine($"Layer {Digest.Short(blob)}: already exists");
            else if (S.HasBlobFile(blob)) { kept.Add(blob); output.WriteLine($"Layer {Digest.Short(blob)}: blob already downloaded"); }
            else if (fetch.All(d => d.Digest != blob)) fetch.Add(layers[i]);
        }

        // Download what is missing, a few at a time; the first failure cancels the rest.
        if (fetch.Count > 0)
        {
            var board = new ProgressBoard();
            var bars = fetch.Select(d => board.Add("Downloading " + Digest.Short(d.Digest!), d.Size)).ToList();
            await ParallelTransfers.RunAll(fetch, opts.Parallel, ct, (d, i, token) => Download(client, repo, d, bars[i], token));
        }

        // Unpack, bottom up; nothing below is visible as an image until the final transaction.
        var createdBy = config.History().Where(h => !h.EmptyLayer).Select(h => h.CreatedBy).ToList();
        string? parent = null;
        int unpacked = 0;
        for (int i = 0; i < layers.Count; i++)
        {
            if (!present[i])
            {
                string blob = layers[i].Digest!;
                using var f = S.OpenBlob(blob);
                var p = ctx.NewProgress("Extracting " + Digest.Short(blob), f.Length);
                try
                {
                    var res = S.ImportLayer(f, parent, i < createdBy.Count ? createdBy[i] : "", diffIds[i], blob, p.Add, inputIsStoredBlob: true);
                    if (res.Layer.ChainId != chains[i]) throw new RegistryException($"{what}: layer {blob} registered as {res.Layer.ChainId}, expected {chains[i]}");
                }
                catch (StoreException e) when (e is not RegistryException)
                {
                    string hint = kept.Contains(blob) ? " (the copy kept from an earlier pull is damaged: 'unionfs system gc' removes it, then pull again)" : "";
                    throw new RegistryException($"{what}: layer {Digest.Short(blob)}: {e.Message}{hint}", e);
                }
                p.Finish(Digest.Short(diffIds[i]));
                output.WriteLine($"Layer {Digest.Short(blob)}: pull complete");
                unpacked++;
            }
            parent = chains[i];
        }

        var tags = r.LocalTag is { } t ? new[] { t } : [];
        var (id, existed) = S.RegisterImage(configBytes, chains[^1], tags);
        S.RecordBlobSources(r.Registry, repo, layers.Select(l => l.Digest!).Append(configDigest));
        S.RecordManifest(id, m.Bytes, mediaType);
        output.WriteLine($"Digest: {referenceDigest}");
        if (platformLine is not null) output.WriteLine(platformLine);
        output.WriteLine(existed && unpacked == 0 && fetch.Count == 0
            ? $"Status: Image is up to date for {r.LocalTag ?? what}"
            : $"Status: Downloaded newer image for {r.LocalTag ?? what}");
        return new Result(id, manifestDigest, r.LocalTag, fetch.Count, present.Count(x => x));
    }

    async Task<byte[]> FetchSmall(RegistryClient client, string repo, Descriptor d, CancellationToken ct)
    {
        if (d.Size > 64 << 20) throw new RegistryException($"config {d.Digest}: implausibly large ({d.Size} bytes)");
        using var resp = await client.GetBlobAsync(repo, d.Digest!, ct);
        byte[] bytes;
        try { bytes = await resp.Content.ReadAsByteArrayAsync(ct); }
        catch (Exception e) when (e is HttpRequestException or IOException)
        { throw new RegistryException($"registry {client.Registry}: config {d.Digest}: download interrupted: {RegistryClient.Message(e)}", e); }
        if (bytes.Length != d.Size && d.Size > 0)
            throw new RegistryException($"registry {client.Registry}: config {d.Digest}: got {bytes.Length} bytes, the manifest says {d.Size}");
        if (Digest.Of(bytes) != d.Digest) throw new RegistryException($"registry {client.Registry}: config {d.Digest}: digest mismatch (content hashes to {Digest.Of(bytes)})");
        return bytes;
    }

    /// <summary>
    /// Streams one blob into blobs/.tmp-PID-X, hashing it on the way (the store's <see cref="HashingWriteStream"/>);
    /// registers it only if size and digest match. Reads are asynchronous and cancellable: a watchdog ends a
    /// download that receives nothing for the idle timeout, and the first failure elsewhere cancels it.
    /// </summary>
    async Task Download(RegistryClient client, string repo, Descriptor d, Cli.Progress bar, CancellationToken ct)
    {
        string digest = d.Digest!;
        string where = $"registry {client.Registry}: blob {digest}";
        string tmp = StoreLayout.TempName(S.Layout.Blobs);
        try
        {
            HttpResponseMessage resp;
            try { resp = await client.GetBlobAsync(repo, digest, ct); }
            catch (RegistryException e) when (e.InnerException is HttpRequestException)
            { throw new RegistryException($"{where}: download failed ({RegistryClient.Message(e)})", e); }
            using var _ = resp;
            if (resp.Content.Headers.ContentLength is { } len && len != d.Size)
                throw new RegistryException($"{where}: registry sends {len} bytes, the manifest says {d.Size}");
            using var watchdog = new Watchdog(opts.IdleTimeout, ct);
            string got, kind;
            long total;
            using (var file = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20))
            {
                using var net = await resp.Content.ReadAsStreamAsync(ct);
                using var hashing = new HashingWriteStream(file, onProgress: bar.Add);
                var buf = new byte[1 << 18];
                byte[] head = new byte[4];
                int headLen = 0;
                while (true)
                {
                    int n;
                    try { n = await net.ReadAsync(buf, watchdog.Token); }
                    catch (OperationCanceledException e) when (watchdog.Fired && !ct.IsCancellationRequested)
                    {
                        throw new RegistryException($"{where}: download stalled: no data for {opts.IdleTimeout.TotalSeconds:0}s after {hashing.BytesWritten} of {d.Size} bytes", e);
                    }
                    catch (Exception e) when (e is IOException or HttpRequestException && !ct.IsCancellationRequested)
                    {
                        throw new RegistryException($"{where}: download interrupted after {hashing.BytesWritten} of {d.Size} bytes ({RegistryClient.Message(e)})", e);
                    }
                    if (n == 0) break;
                    watchdog.Kick();
                    if (hashing.BytesWritten + n > d.Size) throw new RegistryException($"{where}: registry sent more than the {d.Size} bytes the manifest says");
                    if (headLen < 4) { int c = Math.Min(4 - headLen, n); Array.Copy(buf, 0, head, headLen, c); headLen += c; }
                    hashing.Write(buf, 0, n);
                }
                total = hashing.BytesWritten;
                got = hashing.Digest();
                kind = Compression.MediaType(Compression.Sniff(head.AsSpan(0, headLen)));
                file.Flush(flushToDisk: true);
            }
            if (total < d.Size) throw new RegistryException($"{where}: download truncated at {total} of {d.Size} bytes");
            if (got != digest) throw new RegistryException($"{where}: digest mismatch, content hashes to {got} (corrupt blob on the registry?)");
            lock (_db) S.AddBlobFile(tmp, digest, total, kind);
            bar.Finish("verified");
        }
        finally { if (File.Exists(tmp)) File.Delete(tmp); }
    }
}
