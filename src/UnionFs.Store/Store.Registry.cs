using UnionFs.Store.Content;

namespace UnionFs.Store;

/// <summary>
/// What registry push/pull needs beyond load/save: registering a verified blob file that was streamed
/// into blobs/ under a temp name, registering an image together with its tags in one transaction, and
/// remembering which registry repositories hold a blob (so a push can ask for a cross-repository mount),
/// and keeping the manifests images were pulled with (so pushing them again keeps their digests).
/// </summary>
public sealed partial class Store
{
    /// <summary>Moves a complete, verified temp file (named by <see cref="StoreLayout.TempName"/> in blobs/) into place and records it, in one transaction.</summary>
    public void AddBlobFile(string tmpPath, string digest, long size, string mediaType) =>
        Db.Write(() => { CommitBlob(tmpPath, digest, size, mediaType); return 0; });

    /// <summary>Whether a blob is both recorded and on disk (a blob kept from an earlier, interrupted pull counts).</summary>
    public bool HasBlobFile(string digest) => HasBlob(digest) && File.Exists(Layout.BlobPath(digest));

    /// <summary>Registers an image and points tags at it in a single transaction: either all of it is visible or none.</summary>
    public (string Id, bool Existed) RegisterImage(byte[] config, string topChainId, IReadOnlyCollection<string> tags)
    {
        var names = tags.Select(NormalizeTag).ToList();
        string id = Digest.Of(config);
        string tmp = StoreLayout.TempName(Layout.Blobs);
        File.WriteAllBytes(tmp, config);
        try
        {
            bool existed = Db.Write(() =>
            {
                if (GetLayer(topChainId) is null) throw new StoreException($"layer {topChainId}: not in the store");
                CommitBlob(tmp, id, config.Length, ConfigMediaType);
                bool had = GetImage(id) is not null;
                if (!had) Db.Exec("INSERT INTO images(id, top_chain, created) VALUES($i, $t, $c)", ("$i", id), ("$t", topChainId), ("$c", Now()));
                foreach (var name in names)
                    Db.Exec("INSERT INTO tags(name, image_id) VALUES($n, $i) ON CONFLICT(name) DO UPDATE SET image_id=$i", ("$n", name), ("$i", id));
                return had;
            });
            return (id, existed);
        }
        finally { if (File.Exists(tmp)) File.Delete(tmp); }
    }

    bool _sourcesTable;

    /// <summary>Inside a write transaction: the registry tables, created on first use (stores without them stay readable by older builds).</summary>
    void EnsureSourcesTable()
    {
        if (_sourcesTable) return;
        Db.Exec("CREATE TABLE IF NOT EXISTS blob_sources(digest TEXT NOT NULL, registry TEXT NOT NULL, repository TEXT NOT NULL, " +
                "created TEXT NOT NULL, PRIMARY KEY(digest, registry, repository))");
        Db.Exec("CREATE TABLE IF NOT EXISTS image_manifests(image_id TEXT NOT NULL, digest TEXT NOT NULL, media_type TEXT NOT NULL, " +
                "bytes BLOB NOT NULL, created TEXT NOT NULL, PRIMARY KEY(image_id, digest))");
        _sourcesTable = true;
    }

    bool RegistryTablesExist()
    {
        if (!_sourcesTable && Db.Scalar("SELECT 1 FROM sqlite_master WHERE type='table' AND name='image_manifests'") is null) return false;
        _sourcesTable = true;
        return true;
    }

    /// <summary>Keeps the manifest an image was pulled with (exact bytes; small, so in the database rather than as a blob gc would collect).</summary>
    public void RecordManifest(string imageId, byte[] manifest, string mediaType)
    {
        string digest = Digest.Of(manifest);
        Db.Write(() =>
        {
            EnsureSourcesTable();
            return Db.Exec("INSERT INTO image_manifests(image_id, digest, media_type, bytes, created) VALUES($i, $d, $m, $b, $c) " +
                "ON CONFLICT DO UPDATE SET created=$c", ("$i", imageId), ("$d", digest), ("$m", mediaType), ("$b", manifest), ("$c", Now()));
        });
    }

    /// <summary>Manifests recorded for an image, most recent first.</summary>
    public List<(string Digest, string MediaType, byte[] Bytes)> ManifestsOf(string imageId)
    {
        if (!RegistryTablesExist()) return [];
        return Db.Query("SELECT digest, media_type, bytes FROM image_manifests WHERE image_id=$i ORDER BY created DESC",
            r => (r.GetString(0), r.GetString(1), (byte[])r.GetValue(2)), ("$i", imageId));
    }

    /// <summary>Remembers that <paramref name="registry"/>/<paramref name="repository"/> holds these blobs (after a pull or push).</summary>
    public void RecordBlobSources(string registry, string repository, IEnumerable<string> digests)
    {
        var list = digests.Distinct().ToList();
        Db.Write(() =>
        {
            EnsureSourcesTable();
            foreach (var d in list)
                Db.Exec("INSERT INTO blob_sources(digest, registry, repository, created) VALUES($d, $r, $p, $c) ON CONFLICT DO UPDATE SET created=$c",
                    ("$d", d), ("$r", registry), ("$p", repository), ("$c", Now()));
            return 0;
        });
    }

    /// <summary>Repositories of <paramref name="registry"/> known to hold <paramref name="digest"/>, most recent first.</summary>
    public List<string> BlobSources(string digest, string registry)
    {
        if (!RegistryTablesExist()) return [];
        return Db.Query("SELECT repository FROM blob_sources WHERE digest=$d AND registry=$r ORDER BY created DESC",
            r => r.GetString(0), ("$d", digest), ("$r", registry));
    }
}
