using Microsoft.Extensions.Logging;
using UnionFs.Store.Content;
using UnionFs.Store.Fs;
using UnionFs.Store.Metadata;
using UnionFs.Store.Tar;

namespace UnionFs.Store;

public sealed record LayerImportResult(LayerRecord Layer, bool Existed);

public sealed partial class Store
{
    public LayerRecord? GetLayer(string chainId) =>
        Db.Query($"SELECT {LayerRecord.Columns} FROM layers WHERE chain_id=$c", LayerRecord.Read, ("$c", chainId)).FirstOrDefault();

    public List<LayerRecord> ListLayers() => Db.Query($"SELECT {LayerRecord.Columns} FROM layers ORDER BY created", LayerRecord.Read);

    /// <summary>The stack ending at <paramref name="topChainId"/>, bottom layer first.</summary>
    public List<LayerRecord> Stack(string topChainId)
    {
        var stack = new List<LayerRecord>();
        for (string? c = topChainId; c is not null;)
        {
            var l = GetLayer(c) ?? throw new StoreException($"layer {c}: not in the store");
            stack.Add(l);
            c = l.Parent;
        }
        stack.Reverse();
        return stack;
    }

    public string LayerDiff(LayerRecord layer) => Layout.LayerDiff(layer.CacheId);

    /// <summary>The diff directories of a stack, topmost first (overlay's lowerdir order).</summary>
    public List<string> LowerDirs(string topChainId) => Stack(topChainId).Select(LayerDiff).Reverse().ToList();

    /// <summary>
    /// Unpacks a layer tarball (plain, gzip or zstd) and registers it on top of <paramref name="parentChainId"/>.
    /// The tarball is kept as a blob (so `image save` can hand out the exact bytes whose digest is the diffID).
    /// If <paramref name="expectedDiffId"/> is given and that stack already exists, nothing is read.
    /// Any failure (bad digest, hostile entry, I/O) leaves nothing registered and removes the temp files.
    /// </summary>
    /// <param name="inputIsStoredBlob">the input is the stored blob <paramref name="expectedBlobDigest"/> itself (a registry pull
    /// registers blobs before unpacking them): it is verified but not copied again.</param>
    public LayerImportResult ImportLayer(Stream input, string? parentChainId, string createdBy,
        string? expectedDiffId = null, string? expectedBlobDigest = null, Action<long>? onProgress = null, bool inputIsStoredBlob = false)
    {
        if (inputIsStoredBlob && expectedBlobDigest is null) throw new ArgumentException("a stored blob needs its digest", nameof(expectedBlobDigest));
        if (parentChainId is not null && GetLayer(parentChainId) is null) throw new StoreException($"parent layer {parentChainId}: not in the store");
        if (expectedDiffId is not null && GetLayer(Digest.ChainId(parentChainId, expectedDiffId)) is { } known)
            return new LayerImportResult(known, true);

        string tmpDir = StoreLayout.TempName(Layout.Layers);
        string tmpBlob = StoreLayout.TempName(Layout.Blobs);
        try
        {
            Directory.CreateDirectory(Path.Combine(tmpDir, "diff"));
            string diffId, blobDigest; long tarSize, blobSize, contentBytes;
            CompressionKind kind;
            using (var blobFile = inputIsStoredBlob ? null : new FileStream(tmpBlob, FileMode.CreateNew, FileAccess.Write))
            {
                using var compressed = new HashingStream(input, copyTo: blobFile, leaveOpen: true, onProgress: onProgress);
                using var tar = new HashingStream(Compression.Decompress(compressed, out kind));
                var unpacker = new LayerUnpacker(Path.Combine(tmpDir, "diff"));
                try { unpacker.Unpack(tar); }
                catch (InvalidDataException e) { throw new LayerFormatException($"not a valid layer tar: {e.Message}"); }
                catch (EndOfStreamException) { throw new LayerFormatException("not a valid layer tar: it ends in the middle of an entry"); }
                tar.Drain();
                compressed.Drain();
                diffId = tar.Digest(); tarSize = tar.BytesRead;
                blobDigest = compressed.Digest(); blobSize = compressed.BytesRead;
                contentBytes = unpacker.ContentBytes;
                blobFile?.Flush(flushToDisk: true);
            }
            if (expectedDiffId is not null && diffId != expectedDiffId)
                throw new StoreException($"layer digest mismatch: expected {expectedDiffId}, content hashes to {diffId}");
            if (expectedBlobDigest is not null && blobDigest != expectedBlobDigest)
                throw new StoreException($"blob digest mismatch: expected {expectedBlobDigest}, content hashes to {blobDigest}");

            string treeDigest = TreeDigest(Path.Combine(tmpDir, "diff"));
            string chainId = Digest.ChainId(parentChainId, diffId);
            var (record, existed) = Db.Write(() =>
            {
                if (GetLayer(chainId) is { } other) return (other, true); // another process got there first
                string cacheId = Digest.RandomId();
                if (!inputIsStoredBlob) CommitBlob(tmpBlob, blobDigest, blobSize, Compression.MediaType(kind));
                else if (!HasBlobFile(blobDigest)) throw new StoreException($"blob {blobDigest}: removed while it was being unpacked (a concurrent 'system gc'?)");
                FileOps.Rename(tmpDir, Layout.LayerDir(cacheId));
                var rec = new LayerRecord(chainId, diffId, parentChainId, cacheId, contentBytes, tarSize, blobDigest, treeDigest, createdBy, DateTimeOffset.UtcNow);
                try
                {
                    Db.Exec($"INSERT INTO layers({LayerRecord.Columns}) VALUES($c,$d,$p,$k,$s,$t,$b,$g,$by,$at)",
                        ("$c", rec.ChainId), ("$d", rec.DiffId), ("$p", rec.Parent), ("$k", cacheId), ("$s", rec.Size), ("$t", rec.TarSize),
                        ("$b", rec.BlobDigest), ("$g", treeDigest), ("$by", createdBy), ("$at", Now()));
                }
                catch { FileOps.Rename(Layout.LayerDir(cacheId), tmpDir); throw; }
                return (rec, false);
            });
            _log.LogDebug("layer {Chain} ({Diff}) {State}", chainId, diffId, existed ? "already present" : "registered");
            return new LayerImportResult(record, existed);
        }
        finally
        {
            FileOps.RemoveTree(tmpDir);
            FileOps.RemoveTree(tmpBlob);
        }
    }

    /// <summary>The canonical digest of an unpacked layer directory (independent of the tar it came from).</summary>
    public static string TreeDigest(string diffDir)
    {
        using var sink = new HashingWriteStream(null);
        LayerTarWriter.Write(sink, TreeSources.UpperDiff(diffDir, []));
        return sink.Digest();
    }

    /// <summary>
    /// Deletes layer rows (call inside a write transaction) and returns their directories, to be removed
    /// after the commit: a crash in between leaves an unregistered directory, which gc removes.
    /// </summary>
    List<string> UnregisterLayers(IEnumerable<LayerRecord> layers)
    {
        var dirs = new List<string>();
        foreach (var l in layers)
        {
            Db.Exec("DELETE FROM layers WHERE chain_id=$c", ("$c", l.ChainId));
            dirs.Add(Layout.LayerDir(l.CacheId));
        }
        return dirs;
    }

    /// <summary>Removes directories after their rows are gone: renamed to a ".del-" name first so a half-deleted tree is recognisable.</summary>
    void RemoveDirs(IEnumerable<string> dirs)
    {
        foreach (var dir in dirs)
        {
            if (!Directory.Exists(dir)) continue;
            string del = StoreLayout.TempName(Path.GetDirectoryName(dir)!, "del");
            FileOps.Rename(dir, del);
            FileOps.RemoveTree(del);
        }
    }
}
