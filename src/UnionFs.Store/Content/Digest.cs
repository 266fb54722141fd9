using System.Security.Cryptography;
using System.Text;

namespace UnionFs.Store.Content;

/// <summary>
/// Content identifiers in the OCI form "sha256:&lt;64 hex&gt;". Everything the store names by content
/// (blobs, diffIDs, chainIDs, image ids) goes through here so there is one spelling and one check.
/// </summary>
public static class Digest
{
    public const string Prefix = "sha256:";

    public static string Of(ReadOnlySpan<byte> data) => Prefix + Convert.ToHexStringLower(SHA256.HashData(data));

    public static string Of(string text) => Of(Encoding.UTF8.GetBytes(text));

    public static string FromHash(byte[] hash) => Prefix + Convert.ToHexStringLower(hash);

    /// <summary>The stack identity: ChainID(L0) = DiffID(L0); ChainID(L0..n) = sha256(ChainID(L0..n-1) + " " + DiffID(n)).</summary>
    public static string ChainId(string? parentChainId, string diffId) =>
        parentChainId is null ? diffId : Of(parentChainId + " " + diffId);

    /// <summary>The chainIDs of every prefix of a diffID list, bottom first.</summary>
    public static List<string> ChainIds(IEnumerable<string> diffIds)
    {
        var result = new List<string>();
        string? parent = null;
        foreach (var d in diffIds) result.Add(parent = ChainId(parent, d));
        return result;
    }

    public static bool IsValid(string? digest) =>
        digest is { Length: 71 } && digest.StartsWith(Prefix, StringComparison.Ordinal) &&
        digest.AsSpan(7).IndexOfAnyExcept("0123456789abcdef") < 0;

    /// <summary>Accepts "sha256:hex" or bare 64-hex; throws a readable error otherwise.</summary>
    public static string Parse(string s)
    {
        var d = s.StartsWith(Prefix, StringComparison.Ordinal) ? s : Prefix + s;
        return IsValid(d) ? d : throw new StoreException($"invalid digest '{s}'");
    }

    public static string Hex(string digest) => digest.StartsWith(Prefix, StringComparison.Ordinal) ? digest[7..] : digest;

    /// <summary>The 12-character form shown in listings, as docker does.</summary>
    public static string Short(string digest) => Hex(digest)[..Math.Min(12, Hex(digest).Length)];

    /// <summary>A random 64-hex id (containers, on-disk cache ids): never derived from content.</summary>
    public static string RandomId() => Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(32));
}
