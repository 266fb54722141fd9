namespace UnionFs.Engine.Registry;

/// <summary>Choosing the image manifest for this machine from an image index / manifest list, and checking a manifest.</summary>
public static class ManifestSelection
{
    /// <summary>"linux/amd64" (or "linux/arm64/v8"): this machine's platform, or the --platform value.</summary>
    public static Platform Parse(string? text)
    {
        if (string.IsNullOrEmpty(text)) return new Platform { Os = "linux", Architecture = Images.ImageConfig.Arch() };
        var parts = text.Split('/');
        if (parts.Length is < 2 or > 3 || parts.Any(p => p.Length == 0)) throw new StoreException($"--platform '{text}': expected OS/ARCH[/VARIANT]");
        return new Platform { Os = parts[0], Architecture = parts[1], Variant = parts.Length == 3 ? parts[2] : null };
    }

    /// <summary>
    /// The index entry for <paramref name="want"/>: same os and architecture, and the variant if one was asked
    /// for (arm64 without a variant matches "v8"). Entries that are not image manifests (attestations,
    /// "unknown/unknown") are never chosen. Throws, listing what the index offers, when nothing fits.
    /// </summary>
    public static Descriptor Select(ManifestDocument index, Platform want, string what)
    {
        var entries = index.Manifests ?? throw new StoreException($"{what}: image index has no manifests");
        var candidates = entries.Where(d => d.Platform is { } p &&
            string.Equals(p.Os, want.Os, StringComparison.OrdinalIgnoreCase) &&
            string.Equals(p.Architecture, want.Architecture, StringComparison.OrdinalIgnoreCase) &&
            (want.Variant is null || string.Equals(p.Variant ?? DefaultVariant(p.Architecture), want.Variant, StringComparison.OrdinalIgnoreCase)) &&
            (d.MediaType is null || MediaTypes.IsManifest(d.MediaType) || MediaTypes.IsIndex(d.MediaType))).ToList();
        // Prefer the default variant (arm64/v8) over others when none was asked for.
        var best = candidates.OrderBy(d => d.Platform!.Variant is null || d.Platform.Variant == DefaultVariant(d.Platform.Architecture) ? 0 : 1).FirstOrDefault();
        if (best is not null) return best;
        // An index without platforms (e.g. a single-manifest OCI index) gives its only manifest.
        var plain = entries.Where(d => d.Platform is null && (d.MediaType is null || MediaTypes.IsManifest(d.MediaType))).ToList();
        if (plain.Count == 1 && entries.All(d => d.Platform is null)) return plain[0];
        string offered = string.Join(", ", entries.Where(d => d.Platform is not null).Select(d => d.Platform!.ToString()).Distinct());
        throw new StoreException($"{what}: no image for {want} in the index (it has: {(offered.Length == 0 ? "no platforms" : offered)})");
    }

    static string? DefaultVariant(string? arch) => arch == "arm64" ? "v8" : null;

    /// <summary>Checks that a manifest is a schema 2 image manifest with a config and layers whose digests are well-formed.</summary>
    public static void Validate(ManifestDocument m, string mediaType, string what)
    {
        if (mediaType is MediaTypes.DockerSchema1 or MediaTypes.DockerSchema1Signed || m.SchemaVersion == 1)
            throw new StoreException($"{what}: Docker schema 1 manifests are not supported (re-push the image with a current client)");
        if (m.SchemaVersion != 2) throw new StoreException($"{what}: unsupported manifest schemaVersion {m.SchemaVersion}");
        if (m.Config?.Digest is null || !Digest.IsValid(m.Config.Digest)) throw new StoreException($"{what}: manifest has no valid config descriptor");
        if (m.Layers is null) throw new StoreException($"{what}: manifest has no layers");
        foreach (var l in m.Layers)
        {
            if (!Digest.IsValid(l.Digest)) throw new StoreException($"{what}: layer descriptor with invalid digest '{l.Digest}'");
            if (l.Size < 0) throw new StoreException($"{what}: layer {l.Digest} has a negative size");
            if (l.MediaType is { } mt && (mt.Contains("nondistributable") || mt.Contains("foreign")) && l.Urls is { Count: > 0 })
                throw new StoreException($"{what}: layer {l.Digest} is non-distributable (served from {l.Urls[0]}), which is not supported");
        }
    }

    /// <summary>The media type a response declares, falling back to the document's own mediaType field.</summary>
    public static string EffectiveMediaType(string? contentType, ManifestDocument m)
    {
        string? ct = contentType?.Split(';')[0].Trim();
        if (MediaTypes.IsIndex(ct) || MediaTypes.IsManifest(ct) || ct is MediaTypes.DockerSchema1 or MediaTypes.DockerSchema1Signed) return ct!;
        if (m.MediaType is { Length: > 0 } own) return own;
        return m.Manifests is not null ? MediaTypes.OciIndex : MediaTypes.OciManifest;
    }
}
