using System.Globalization;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using UnionFs.Store.Content;
using UnionFs.Store.Fs;
using UnionFs.Store.Metadata;

namespace UnionFs.Store;

/// <summary>
/// The content-addressed store: blobs, layers, images, containers (one partial file per concern).
/// Several Store instances, in one process or several, may share a root: the database serialises
/// metadata changes, and files are made visible only by a rename done inside the transaction that
/// registers them.
/// </summary>
public sealed partial class Store : IDisposable
{
    public const string DefaultRoot = "/var/lib/unionfs";

    public StoreLayout Layout { get; }
    internal StoreDb Db { get; }
    readonly ILogger _log;

    public Store(string root, ILogger? logger = null)
    {
        _log = logger ?? NullLogger.Instance;
        Layout = new StoreLayout(root);
        try { Layout.Create(); }
        catch (Exception e) when (e is UnauthorizedAccessException or IOException)
        {
            throw new StoreException($"create store {Layout.Root}: {e.Message}");
        }
        Db = new StoreDb(Layout.Database);
        int stale = Layout.RemoveStaleTemps();
        if (stale > 0) _log.LogInformation("removed {Count} leftovers of interrupted operations under {Root}", stale, Layout.Root);
    }

    public void Dispose() => Db.Dispose();

    internal static string Now() => DateTimeOffset.UtcNow.ToString("O", CultureInfo.InvariantCulture);

    // ---- blobs ----

    public bool HasBlob(string digest) => Db.Scalar("SELECT 1 FROM blobs WHERE digest=$d", ("$d", digest)) is not null;

    public string BlobPath(string digest) => Layout.BlobPath(digest);

    public BlobRecord? GetBlob(string digest) => Db.Query("SELECT digest, size, media_type FROM blobs WHERE digest=$d",
        r => new BlobRecord(r.GetString(0), r.GetInt64(1), r.GetString(2)), ("$d", digest)).FirstOrDefault();

    public Stream OpenBlob(string digest)
    {
        try { return File.OpenRead(Layout.BlobPath(digest)); }
        catch (FileNotFoundException) { throw new StoreException($"blob {digest}: missing from {Layout.Blobs} (run 'unionfs system fsck')"); }
    }

    public byte[] ReadBlob(string digest) => File.ReadAllBytes(Layout.BlobPath(digest));

    /// <summary>Stores small content (configs); returns its digest. Idempotent.</summary>
    public string PutBlob(byte[] data, string mediaType)
    {
        string digest = Digest.Of(data);
        if (HasBlob(digest) && File.Exists(Layout.BlobPath(digest))) return digest;
        string tmp = StoreLayout.TempName(Layout.Blobs);
        File.WriteAllBytes(tmp, data);
        Db.Write(() => { CommitBlob(tmp, digest, data.Length, mediaType); return 0; });
        return digest;
    }

    /// <summary>Inside a write transaction: moves a finished temp file into place and records it.</summary>
    void CommitBlob(string tmpPath, string digest, long size, string mediaType)
    {
        string final = Layout.BlobPath(digest);
        if (File.Exists(final)) File.Delete(tmpPath); // same digest, same bytes
        else FileOps.Rename(tmpPath, final);
        Db.Exec("INSERT OR IGNORE INTO blobs(digest, size, media_type, created) VALUES($d, $s, $m, $c)",
            ("$d", digest), ("$s", size), ("$m", mediaType), ("$c", Now()));
    }
}
