using Microsoft.Data.Sqlite;

namespace UnionFs.Store.Metadata;

/// <summary>One layer of one stack: its content (diffID, unpacked in layers/CacheId/diff) on top of Parent.</summary>
/// <param name="Size">bytes of file content in the layer.</param>
/// <param name="TarSize">bytes of the uncompressed layer tar (what diffID hashes).</param>
/// <param name="BlobDigest">the stored tarball (possibly compressed) this layer was unpacked from.</param>
/// <param name="TreeDigest">sha256 of the canonical tar of the unpacked directory, which fsck recomputes.</param>
public sealed record LayerRecord(string ChainId, string DiffId, string? Parent, string CacheId, long Size, long TarSize,
    string? BlobDigest, string TreeDigest, string CreatedBy, DateTimeOffset Created)
{
    internal const string Columns = "chain_id, diff_id, parent, cache_id, size, tar_size, blob_digest, tree_digest, created_by, created";

    internal static LayerRecord Read(SqliteDataReader r) => new(r.GetString(0), r.GetString(1), r.IsDBNull(2) ? null : r.GetString(2),
        r.GetString(3), r.GetInt64(4), r.GetInt64(5), r.IsDBNull(6) ? null : r.GetString(6), r.GetString(7), r.GetString(8), Time(r.GetString(9)));

    internal static DateTimeOffset Time(string s) => DateTimeOffset.Parse(s, System.Globalization.CultureInfo.InvariantCulture);
}

/// <summary>An image: its config blob (whose digest is the id) and the chainID of its top layer.</summary>
public sealed record ImageRecord(string Id, string TopChain, DateTimeOffset Created)
{
    internal static ImageRecord Read(SqliteDataReader r) => new(r.GetString(0), r.GetString(1), LayerRecord.Time(r.GetString(2)));
}

public sealed record ContainerRecord(string Id, string? Name, string ImageId, string ChainId, DateTimeOffset Created)
{
    internal static ContainerRecord Read(SqliteDataReader r) => new(r.GetString(0), r.IsDBNull(1) ? null : r.GetString(1),
        r.GetString(2), r.GetString(3), LayerRecord.Time(r.GetString(4)));
}

public sealed record BlobRecord(string Digest, long Size, string MediaType);
