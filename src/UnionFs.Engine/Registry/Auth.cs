using System.Text;

namespace UnionFs.Engine.Registry;

/// <summary>One challenge of a WWW-Authenticate header: a scheme ("Bearer", "Basic") and its auth-params.</summary>
public sealed record AuthChallenge(string Scheme, IReadOnlyDictionary<string, string> Parameters)
{
    public string? Realm => Parameters.GetValueOrDefault("realm");
    public string? Service => Parameters.GetValueOrDefault("service");
    public string? Scope => Parameters.GetValueOrDefault("scope");
    public bool IsBearer => Scheme.Equals("Bearer", StringComparison.OrdinalIgnoreCase);
    public bool IsBasic => Scheme.Equals("Basic", StringComparison.OrdinalIgnoreCase);

    /// <summary>
    /// Parses a WWW-Authenticate value (RFC 7235): one or more challenges, each a scheme followed by
    /// comma-separated name=value pairs whose values may be quoted strings containing commas and
    /// backslash escapes (scope="repository:a/b:pull,push").
    /// </summary>
    public static List<AuthChallenge> Parse(string header)
    {
        var result = new List<AuthChallenge>();
        int i = 0, n = header.Length;
        string? scheme = null;
        var ps = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        while (i < n)
        {
            while (i < n && (header[i] == ' ' || header[i] == ',' || header[i] == '\t')) i++;
            if (i >= n) break;
            int start = i;
            while (i < n && header[i] is not (' ' or '=' or ',' or '\t')) i++;
            string token = header[start..i];
            int j = i;
            while (j < n && header[j] is ' ' or '\t') j++;
            if (j < n && header[j] == '=' && scheme is not null)
            {
                // name=value
                i = j + 1;
                while (i < n && header[i] is ' ' or '\t') i++;
                string value;
                if (i < n && header[i] == '"')
                {
                    var sb = new StringBuilder();
                    i++;
                    while (i < n && header[i] != '"')
                    {
                        if (header[i] == '\\' && i + 1 < n) i++;
                        sb.Append(header[i++]);
                    }
                    i++; // closing quote
                    value = sb.ToString();
                }
                else
                {
                    int vs = i;
                    while (i < n && header[i] != ',') i++;
                    value = header[vs..i].Trim();
                }
                ps[token] = value;
            }
            else
            {
                if (scheme is not null) result.Add(new AuthChallenge(scheme, ps));
                scheme = token;
                ps = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
                i = j;
            }
        }
        if (scheme is not null) result.Add(new AuthChallenge(scheme, ps));
        return result;
    }
}

/// <summary>A user name and password (or identity token) for one registry.</summary>
public sealed record Credentials(string Username, string Password)
{
    public string BasicHeader => Convert.ToBase64String(Encoding.UTF8.GetBytes($"{Username}:{Password}"));

    /// <summary>"USER:PASSWORD" as given to --user / --creds.</summary>
    public static Credentials FromUserOption(string value)
    {
        int c = value.IndexOf(':');
        if (c <= 0) throw new StoreException("--user: expected USER:PASSWORD");
        return new Credentials(value[..c], value[(c + 1)..]);
    }

    /// <summary>The base64 "auth" value of an auth file entry: base64("user:password").</summary>
    public static Credentials? Decode(AuthEntry entry)
    {
        if (!string.IsNullOrEmpty(entry.Auth))
        {
            string plain;
            try { plain = Encoding.UTF8.GetString(Convert.FromBase64String(entry.Auth.Trim())); }
            catch (FormatException) { return null; }
            int c = plain.IndexOf(':');
            if (c <= 0) return null;
            return new Credentials(plain[..c], plain[(c + 1)..]);
        }
        if (!string.IsNullOrEmpty(entry.Username) && entry.Password is not null) return new Credentials(entry.Username, entry.Password);
        return null;
    }
}

/// <summary>
/// Finds stored credentials the way podman/skopeo and docker do: $REGISTRY_AUTH_FILE (or --authfile),
/// $XDG_RUNTIME_DIR/containers/auth.json, $XDG_CONFIG_HOME/containers/auth.json, then
/// $DOCKER_CONFIG/config.json or ~/.docker/config.json. Keys may be "host", "host/repo" (most specific
/// wins), or URLs like "https://index.docker.io/v1/".
/// </summary>
public static class AuthFiles
{
    public static IEnumerable<string> DefaultPaths(string? explicitFile)
    {
        if (!string.IsNullOrEmpty(explicitFile)) { yield return explicitFile; yield break; }
        if (Environment.GetEnvironmentVariable("REGISTRY_AUTH_FILE") is { Length: > 0 } f) yield return f;
        if (Environment.GetEnvironmentVariable("XDG_RUNTIME_DIR") is { Length: > 0 } run) yield return Path.Combine(run, "containers", "auth.json");
        string home = Environment.GetEnvironmentVariable("HOME") is { Length: > 0 } h ? h : Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
        string xdgConfig = Environment.GetEnvironmentVariable("XDG_CONFIG_HOME") is { Length: > 0 } x ? x : Path.Combine(home, ".config");
        yield return Path.Combine(xdgConfig, "containers", "auth.json");
        if (Environment.GetEnvironmentVariable("DOCKER_CONFIG") is { Length: > 0 } dc) yield return Path.Combine(dc, "config.json");
        yield return Path.Combine(home, ".docker", "config.json");
    }

    public static Credentials? Lookup(ImageReference reference, string? explicitFile = null)
    {
        foreach (var path in DefaultPaths(explicitFile))
        {
            byte[] bytes;
            try { bytes = File.ReadAllBytes(path); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { continue; }
            if (RegistryJson.ParseAuthFile(bytes) is { Auths: { } auths } && Find(auths, reference) is { } c) return c;
        }
        return null;
    }

    /// <summary>The entry for this reference: "host/repo/..." prefixes first (longest wins), then the host.</summary>
    public static Credentials? Find(IReadOnlyDictionary<string, AuthEntry> auths, ImageReference reference)
    {
        var normalized = auths.Select(kv => (Key: NormalizeKey(kv.Key), kv.Value)).ToList();
        string full = $"{reference.Registry}/{reference.Repository}";
        string? path = full;
        while (path is not null)
        {
            foreach (var (key, value) in normalized)
                if (key == path && Credentials.Decode(value) is { } c) return c;
            int slash = path.LastIndexOf('/');
            path = slash > 0 ? path[..slash] : null;
        }
        return null;
    }

    /// <summary>"https://index.docker.io/v1/" → "docker.io"; "http://host:5000/" → "host:5000".</summary>
    public static string NormalizeKey(string key)
    {
        string k = key.Trim();
        int scheme = k.IndexOf("://", StringComparison.Ordinal);
        bool url = scheme >= 0;
        if (url) k = k[(scheme + 3)..];
        k = k.TrimEnd('/');
        if (url || k.EndsWith("/v1", StringComparison.Ordinal) || k.EndsWith("/v2", StringComparison.Ordinal))
        {
            int slash = k.IndexOf('/');
            if (slash >= 0 && (url || k.EndsWith("/v1", StringComparison.Ordinal) || k.EndsWith("/v2", StringComparison.Ordinal))) k = k[..slash];
        }
        if (k is "index.docker.io" or "registry-1.docker.io" or "registry.hub.docker.com") k = ImageReference.DockerHub;
        return k;
    }
}
