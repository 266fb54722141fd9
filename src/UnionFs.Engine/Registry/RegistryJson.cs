using System.Text.Json;
using System.Text.Json.Serialization;

namespace UnionFs.Engine.Registry;

/// <summary>Media types of the distribution API (Docker v2 schema 2 and OCI image-spec).</summary>
public static class MediaTypes
{
    public const string OciManifest = "application/vnd.oci.image.manifest.v1+json";
    public const string OciIndex = "application/vnd.oci.image.index.v1+json";
    public const string DockerManifest = "application/vnd.docker.distribution.manifest.v2+json";
    public const string DockerList = "application/vnd.docker.distribution.manifest.list.v2+json";
    public const string DockerSchema1 = "application/vnd.docker.distribution.manifest.v1+json";
    public const string DockerSchema1Signed = "application/vnd.docker.distribution.manifest.v1+prettyjws";
    public const string OciConfig = "application/vnd.oci.image.config.v1+json";
    public const string DockerConfig = "application/vnd.docker.container.image.v1+json";

    public static readonly string[] Accept = [OciIndex, DockerList, OciManifest, DockerManifest];

    public static bool IsIndex(string? m) => m is OciIndex or DockerList;
    public static bool IsManifest(string? m) => m is OciManifest or DockerManifest;
}

/// <summary>An OCI/Docker content descriptor.</summary>
public sealed class Descriptor
{
    [JsonPropertyName("mediaType")] public string? MediaType { get; set; }
    [JsonPropertyName("digest")] public string? Digest { get; set; }
    [JsonPropertyName("size")] public long Size { get; set; }
    [JsonPropertyName("urls")] public List<string>? Urls { get; set; }
    [JsonPropertyName("platform")] public Platform? Platform { get; set; }
    [JsonPropertyName("annotations")] public Dictionary<string, string>? Annotations { get; set; }
}

public sealed class Platform
{
    [JsonPropertyName("architecture")] public string? Architecture { get; set; }
    [JsonPropertyName("os")] public string? Os { get; set; }
    [JsonPropertyName("variant")] public string? Variant { get; set; }
    [JsonPropertyName("os.version")] public string? OsVersion { get; set; }

    public override string ToString() => $"{Os}/{Architecture}{(Variant is null ? "" : "/" + Variant)}";
}

/// <summary>An image manifest or an image index (one type: "manifests" for an index, "config"+"layers" for a manifest).</summary>
public sealed class ManifestDocument
{
    [JsonPropertyName("schemaVersion")] public int SchemaVersion { get; set; }
    [JsonPropertyName("mediaType")] public string? MediaType { get; set; }
    [JsonPropertyName("config")] public Descriptor? Config { get; set; }
    [JsonPropertyName("layers")] public List<Descriptor>? Layers { get; set; }
    [JsonPropertyName("manifests")] public List<Descriptor>? Manifests { get; set; }
    [JsonPropertyName("annotations")] public Dictionary<string, string>? Annotations { get; set; }
}

public sealed class TokenResponse
{
    [JsonPropertyName("token")] public string? Token { get; set; }
    [JsonPropertyName("access_token")] public string? AccessToken { get; set; }
    [JsonPropertyName("expires_in")] public int? ExpiresIn { get; set; }
}

/// <summary>~/.docker/config.json and containers-auth.json(5): "auths": { "host": { "auth": base64("user:pass") } }.</summary>
public sealed class AuthFile
{
    [JsonPropertyName("auths")] public Dictionary<string, AuthEntry>? Auths { get; set; }
}

public sealed class AuthEntry
{
    [JsonPropertyName("auth")] public string? Auth { get; set; }
    [JsonPropertyName("username")] public string? Username { get; set; }
    [JsonPropertyName("password")] public string? Password { get; set; }
    [JsonPropertyName("identitytoken")] public string? IdentityToken { get; set; }
}

public sealed class RegistryErrors
{
    [JsonPropertyName("errors")] public List<RegistryError>? Errors { get; set; }
}

public sealed class RegistryError
{
    [JsonPropertyName("code")] public string? Code { get; set; }
    [JsonPropertyName("message")] public string? Message { get; set; }
}

[JsonSourceGenerationOptions(DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull, ReadCommentHandling = JsonCommentHandling.Skip,
    AllowTrailingCommas = true, NumberHandling = JsonNumberHandling.AllowReadingFromString)]
[JsonSerializable(typeof(ManifestDocument))]
[JsonSerializable(typeof(TokenResponse))]
[JsonSerializable(typeof(AuthFile))]
[JsonSerializable(typeof(RegistryErrors))]
internal sealed partial class RegistryJsonContext : JsonSerializerContext;

public static class RegistryJson
{
    public static ManifestDocument ParseManifest(byte[] bytes, string what)
    {
        try { return JsonSerializer.Deserialize(bytes, RegistryJsonContext.Default.ManifestDocument) ?? throw new StoreException($"{what}: empty manifest"); }
        catch (JsonException e) { throw new StoreException($"{what}: manifest is not valid JSON ({e.Message})"); }
    }

    /// <summary>Writes '+' in media types as itself, not "\u002B" (valid either way, but registries and people read these).</summary>
    static readonly RegistryJsonContext Writer = new(new JsonSerializerOptions(RegistryJsonContext.Default.Options)
    {
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    });

    /// <summary>The exact manifest bytes we push (the digest of these bytes is the manifest's identity).</summary>
    public static byte[] Serialize(ManifestDocument m) => JsonSerializer.SerializeToUtf8Bytes(m, Writer.ManifestDocument);

    public static TokenResponse? ParseToken(byte[] bytes)
    {
        try { return JsonSerializer.Deserialize(bytes, RegistryJsonContext.Default.TokenResponse); }
        catch (JsonException) { return null; }
    }

    public static AuthFile? ParseAuthFile(byte[] bytes)
    {
        try { return JsonSerializer.Deserialize(bytes, RegistryJsonContext.Default.AuthFile); }
        catch (JsonException) { return null; }
    }

    /// <summary>"CODE: message" of a registry error body, or null if the body is not one.</summary>
    public static string? ErrorSummary(byte[] body)
    {
        try
        {
            var e = JsonSerializer.Deserialize(body, RegistryJsonContext.Default.RegistryErrors);
            if (e?.Errors is not { Count: > 0 } list) return null;
            return string.Join("; ", list.Select(x => $"{x.Code}: {x.Message}"));
        }
        catch (JsonException) { return null; }
    }
}
