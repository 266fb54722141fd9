using Microsoft.Extensions.Logging;
using UnionFs.Store.Content;
using UnionFs.Store.Fs;
using UnionFs.Store.Metadata;

namespace UnionFs.Store;

public sealed record GcResult(int Layers, int Blobs, int OrphanDirs, int StaleTemps, long BytesFreed);

public sealed record FsckProblem(string Object, string Problem);

public sealed partial class Store
{
    /// <summary>
    /// Removes what nothing references: layers outside every image's and container's stack, blobs no
    /// layer or image needs, directories on disk without a row (a crash between commit and delete), and
    /// leftovers of dead processes. A layer in use is never touched: the reference scan and the row
    /// deletes happen in one write transaction, so no image or container can appear in between.
    /// </summary>
    public GcResult CollectGarbage()
    {
        long freed = 0;
        int stale = 0;
        foreach (var p in Layout.StaleTemps().ToList()) { freed += FileOps.DiskUsage(p).Allocated; FileOps.RemoveTree(p); stale++; }

        List<string> dirs = new();
        List<string> blobFiles = new();
        var (layers, blobs) = Db.Write(() =>
        {
            var unused = UnreferencedLayers();
            dirs = UnregisterLayers(unused);
            var needed = new HashSet<string>(Db.Query("SELECT blob_digest FROM layers WHERE blob_digest IS NOT NULL UNION SELECT id FROM images UNION SELECT image_id FROM containers", r => r.GetString(0)));
            int nblobs = 0;
            foreach (var d in Db.Query("SELECT digest FROM blobs", r => r.GetString(0)))
            {
                if (needed.Contains(d)) continue;
                Db.Exec("DELETE FROM blobs WHERE digest=$d", ("$d", d));
                blobFiles.Add(Layout.BlobPath(d));
                nblobs++;
            }
            // Directories and files with no row at all. Names starting with '.' are in-flight work of live processes.
            var cacheIds = new HashSet<string>(Db.Query("SELECT cache_id FROM layers", r => r.GetString(0)));
            foreach (var name in FileOps.ListDir(Layout.Layers))
                if (!name.StartsWith('.') && !cacheIds.Contains(name) && !dirs.Contains(Layout.LayerDir(name))) dirs.Add(Layout.LayerDir(name));
            var containerIds = new HashSet<string>(Db.Query("SELECT id FROM containers", r => r.GetString(0)));
            foreach (var name in FileOps.ListDir(Layout.Containers))
                if (!name.StartsWith('.') && !containerIds.Contains(name)) dirs.Add(Layout.ContainerDir(name));
            var blobIds = new HashSet<string>(Db.Query("SELECT digest FROM blobs", r => Digest.Hex(r.GetString(0))));
            foreach (var name in FileOps.ListDir(Layout.Blobs))
                if (!name.StartsWith('.') && !blobIds.Contains(name)) blobFiles.Add(Path.Combine(Layout.Blobs, name));
            return (unused.Count, nblobs);
        });
        int orphans = dirs.Count - layers;
        foreach (var d in dirs) freed += FileOps.DiskUsage(d).Allocated;
        RemoveDirs(dirs);
        foreach (var f in blobFiles.Distinct())
        {
            if (FileOps.TryLstat(f, out var st, out _)) freed += (long)st.Blocks * 512;
            FileOps.RemoveTree(f);
        }
        _log.LogInformation("gc: {Layers} layers, {Blobs} blobs, {Orphans} orphan dirs, {Stale} leftovers", layers, blobs, orphans, stale);
        return new GcResult(layers, blobs, orphans, stale, freed);
    }

    /// <summary>
    /// Re-hashes every layer: its stored tarball against the diffID (and blob digest), and its unpacked
    /// directory against the tree digest recorded at import. Reports, never repairs.
    /// </summary>
    public List<FsckProblem> Verify(Action<LayerRecord, long>? onLayer = null, Action<long>? onBytes = null)
    {
        var problems = new List<FsckProblem>();
        foreach (var layer in ListLayers())
        {
            string what = $"layer {Digest.Short(layer.ChainId)} (diff {layer.DiffId})";
            onLayer?.Invoke(layer, layer.TarSize);
            if (!Directory.Exists(LayerDiff(layer))) { problems.Add(new(what, $"directory {LayerDiff(layer)} is missing")); continue; }
            if (layer.BlobDigest is { } blob)
            {
                if (!File.Exists(Layout.BlobPath(blob))) problems.Add(new(what, $"blob {blob} is missing"));
                else
                {
                    using var file = File.OpenRead(Layout.BlobPath(blob));
                    using var compressed = new HashingStream(file, onProgress: onBytes);
                    using var tar = new HashingStream(Compression.Decompress(compressed, out _));
                    try { tar.Drain(); compressed.Drain(); }
                    catch (Exception e) when (e is InvalidDataException or IOException) { problems.Add(new(what, $"blob {blob} is unreadable: {e.Message}")); continue; }
                    if (compressed.Digest() != blob) problems.Add(new(what, $"blob {blob} hashes to {compressed.Digest()}"));
                    if (tar.Digest() != layer.DiffId) problems.Add(new(what, $"tar hashes to {tar.Digest()}, not its diffID"));
                }
            }
            string tree = TreeDigest(LayerDiff(layer));
            if (tree != layer.TreeDigest) problems.Add(new(what, $"content of {LayerDiff(layer)} changed since it was stored"));
        }
        foreach (var image in ListImages())
        {
            if (!File.Exists(Layout.BlobPath(image.Id))) { problems.Add(new($"image {Digest.Short(image.Id)}", "config blob is missing")); continue; }
            if (Digest.Of(ReadBlob(image.Id)) != image.Id) problems.Add(new($"image {Digest.Short(image.Id)}", "config does not hash to the image id"));
        }
        return problems;
    }
}
