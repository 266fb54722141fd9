using System.Text.RegularExpressions;

namespace UnionFs.Engine.Registry;

/// <summary>
/// A registry image reference, "[SCHEME://][HOST[:PORT]/]REPO[:TAG][@sha256:HEX]", parsed as docker's
/// distribution/reference does: the first path component is a registry host only if it contains a '.'
/// or a ':' or is "localhost"; otherwise the image is on Docker Hub ("busybox" is
/// docker.io/library/busybox:latest). An explicit http:// or https:// chooses the scheme.
/// </summary>
public sealed partial record ImageReference(string Registry, string Repository, string? Tag, string? Digest, string? Scheme = null)
{
    public const string DockerHub = "docker.io";

    public static ImageReference Parse(string text)
    {
        string s = text.Trim();
        if (s.Length == 0) throw new StoreException("empty image reference");
        string? scheme = null;
        foreach (var p in new[] { "http://", "https://", "docker://" })
            if (s.StartsWith(p, StringComparison.OrdinalIgnoreCase)) { scheme = p == "docker://" ? null : p[..^3].ToLowerInvariant(); s = s[p.Length..]; break; }

        string? digest = null;
        int at = s.IndexOf('@');
        if (at >= 0)
        {
            digest = s[(at + 1)..];
            s = s[..at];
            if (!UnionFs.Store.Content.Digest.IsValid(digest)) throw new StoreException($"invalid image reference '{text}': bad digest '{digest}' (sha256:<64 hex> expected)");
        }

        string registry = DockerHub, rest = s;
        int slash = s.IndexOf('/');
        if (slash > 0)
        {
            string first = s[..slash];
            if (first.Contains('.') || first.Contains(':') || first == "localhost" || first.Contains('['))
            {
                registry = first;
                rest = s[(slash + 1)..];
            }
        }
        else if (slash == 0) throw new StoreException($"invalid image reference '{text}'");

        string? tag = null;
        int lastSlash = rest.LastIndexOf('/');
        int colon = rest.IndexOf(':', lastSlash + 1);
        if (colon >= 0) { tag = rest[(colon + 1)..]; rest = rest[..colon]; }
        if (tag is not null && !TagRegex().IsMatch(tag)) throw new StoreException($"invalid image reference '{text}': bad tag '{tag}'");
        if (rest.Length == 0 || rest.Split('/').Any(c => !ComponentRegex().IsMatch(c)))
            throw new StoreException($"invalid image reference '{text}': repository names are lowercase letters, digits and separators (. _ __ -)");
        if (registry == DockerHub || registry == "index.docker.io" || registry == "registry-1.docker.io")
        {
            registry = DockerHub;
            if (!rest.Contains('/')) rest = "library/" + rest;
        }
        if (rest.Length > 255) throw new StoreException($"invalid image reference '{text}': repository name too long");
        if (tag is null && digest is null) tag = "latest";
        return new ImageReference(registry, rest, tag, digest, scheme);
    }

    /// <summary>What to ask the manifests endpoint for: the digest if pinned, else the tag.</summary>
    public string ManifestReference => Digest ?? Tag!;

    /// <summary>The host the API is served on (Docker Hub's registry is not docker.io itself).</summary>
    public string ApiHost => Registry == DockerHub ? "registry-1.docker.io" : Registry;

    /// <summary>Host without port, for the "loopback means plain http" rule.</summary>
    public string HostName
    {
        get
        {
            string h = Registry;
            if (h.StartsWith('[')) { int e = h.IndexOf(']'); return e > 0 ? h[1..e] : h; }
            int c = h.LastIndexOf(':');
            return c >= 0 ? h[..c] : h;
        }
    }

    /// <summary>localhost, 127.0.0.0/8 and ::1 registries speak plain http unless https:// is written (as docker and skopeo treat them).</summary>
    public bool IsLoopback => HostName is "localhost" or "::1" || HostName.StartsWith("127.", StringComparison.Ordinal)
        || HostName.EndsWith(".localhost", StringComparison.Ordinal);

    /// <summary>"REGISTRY/REPO" with Docker Hub's prefixes dropped (the name a pulled image is tagged with locally).</summary>
    public string LocalName => Registry == DockerHub
        ? (Repository.StartsWith("library/", StringComparison.Ordinal) ? Repository["library/".Length..] : Repository)
        : $"{Registry}/{Repository}";

    /// <summary>The local tag "NAME:TAG", or null for a digest-only reference.</summary>
    public string? LocalTag => Tag is null ? null : $"{LocalName}:{Tag}";

    public override string ToString() =>
        $"{(Registry == DockerHub ? "docker.io/" : Registry + "/")}{Repository}{(Tag is null ? "" : ":" + Tag)}{(Digest is null ? "" : "@" + Digest)}";

    [GeneratedRegex(@"^[\w][\w.-]{0,127}$")]
    private static partial Regex TagRegex();

    [GeneratedRegex(@"^[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*$")]
    private static partial Regex ComponentRegex();
}
