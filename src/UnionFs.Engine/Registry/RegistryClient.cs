using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Headers;
using Microsoft.Extensions.Logging;

namespace UnionFs.Engine.Registry;

/// <summary>A failure talking to a registry, with a one-line message naming the registry and the operation.</summary>
public sealed class RegistryException(string message, Exception? inner = null) : StoreException(message, inner);

public sealed class RegistryOptions
{
    public Credentials? Credentials { get; set; }
    public string? AuthFile { get; set; }
    public bool TlsVerify { get; set; } = true;
    public int Parallel { get; set; } = 3;
    /// <summary>Blobs larger than this are uploaded in PATCH chunks of this size; smaller ones in one PUT. 0: always one PUT.</summary>
    public long ChunkSize { get; set; } = 32L << 20;
    public Platform Platform { get; set; } = ManifestSelection.Parse(null);
    /// <summary>How long a request may go without an answer, or a transfer without progress (UNIONFS_REGISTRY_IDLE_TIMEOUT seconds; default 60).</summary>
    public TimeSpan IdleTimeout { get; set; } = TimeSpan.FromSeconds(
        int.TryParse(Environment.GetEnvironmentVariable("UNIONFS_REGISTRY_IDLE_TIMEOUT"), out int s) && s > 0 ? s : 60);
}

/// <summary>
/// The OCI distribution API v2 over HttpClient: /v2/ ping (scheme and auth discovery), manifests and blobs
/// (GET/HEAD/PUT), blob uploads (monolithic PUT, chunked PATCH, cross-repository mount). Authentication
/// follows the registry's challenge: a 401 with "WWW-Authenticate: Bearer realm=..,service=..,scope=.."
/// is answered by fetching a token from the realm (with basic credentials if we have them), "Basic" by
/// sending the credentials; the request is then repeated once.
/// </summary>
public sealed class RegistryClient : IDisposable
{
    readonly HttpClient _http;
    readonly ImageReference _ref;
    readonly RegistryOptions _opts;
    readonly Credentials? _creds;
    readonly ILogger _log;
    readonly ConcurrentDictionary<string, string> _tokens = new();
    readonly SemaphoreSlim _authLock = new(1, 1);
    volatile AuthChallenge? _challenge;
    Uri? _base;

    public string Registry => _ref.Registry;
    public Uri BaseUri => _base ?? throw new InvalidOperationException("registry not pinged");

    public RegistryClient(ImageReference reference, RegistryOptions opts, ILogger log)
    {
        _ref = reference; _opts = opts; _log = log;
        _creds = opts.Credentials ?? AuthFiles.Lookup(reference, opts.AuthFile);
        var handler = new SocketsHttpHandler
        {
            ConnectTimeout = TimeSpan.FromSeconds(30),
            AutomaticDecompression = DecompressionMethods.None,
            AllowAutoRedirect = true, // blob storage redirects; HttpClient drops Authorization on redirect
            PooledConnectionIdleTimeout = TimeSpan.FromSeconds(30),
        };
        if (!opts.TlsVerify) handler.SslOptions.RemoteCertificateValidationCallback = (_, _, _, _) => true;
        _http = new HttpClient(handler) { Timeout = Timeout.InfiniteTimeSpan };
        _http.DefaultRequestHeaders.UserAgent.Add(new ProductInfoHeaderValue("unionfs", "0.1"));
    }

    public void Dispose() => _http.Dispose();

    string Where => $"registry {_ref.Registry}";

    /// <summary>
    /// GET /v2/: finds the scheme (https; http for loopback hosts, for an explicit http://, or as the
    /// fallback with --tls-verify=false) and the authentication challenge.
    /// </summary>
    public async Task PingAsync(CancellationToken ct)
    {
        string[] schemes = _ref.Scheme is { } s ? [s] : _ref.IsLoopback ? ["http"] : _opts.TlsVerify ? ["https"] : ["https", "http"];
        Exception? last = null;
        foreach (var scheme in schemes)
        {
            var baseUri = new Uri($"{scheme}://{_ref.ApiHost}");
            using var wd = new Watchdog(_opts.IdleTimeout, ct);
            try
            {
                using var resp = await _http.GetAsync(new Uri(baseUri, "/v2/"), HttpCompletionOption.ResponseHeadersRead, wd.Token);
                if (resp.StatusCode == HttpStatusCode.Unauthorized)
                    _challenge = Challenge(resp);
                else if (!resp.IsSuccessStatusCode)
                    throw new RegistryException($"{Where}: GET {baseUri}v2/ answered HTTP {(int)resp.StatusCode} (not a v2 registry?)");
                _base = baseUri;
                _log.LogDebug("registry {Host}: {Base}, auth {Scheme}", _ref.Registry, baseUri, _challenge?.Scheme ?? "none");
                return;
            }
            catch (HttpRequestException e) { last = e; _log.LogDebug("ping {Base}: {Error}", baseUri, e.Message); }
            catch (OperationCanceledException) when (wd.Fired)
            {
                last = new TimeoutException($"no answer from {baseUri} within {_opts.IdleTimeout.TotalSeconds:0}s");
            }
        }
        throw new RegistryException($"{Where}: cannot connect: {Message(last!)}", last);
    }

    /// <summary>The challenge to answer: Bearer if offered, else Basic. Raw header values, parsed by <see cref="AuthChallenge.Parse"/>.</summary>
    internal static AuthChallenge? Challenge(HttpResponseMessage resp)
    {
        if (!resp.Headers.NonValidated.TryGetValues("WWW-Authenticate", out var values)) return null;
        var all = values.SelectMany(AuthChallenge.Parse).ToList();
        return all.FirstOrDefault(c => c.IsBearer) ?? all.FirstOrDefault(c => c.IsBasic) ?? all.FirstOrDefault();
    }

    /// <summary>The most specific message of an exception chain ("Connection refused", "Broken pipe"), not .NET's generic wrappers.</summary>
    internal static string Message(Exception e)
    {
        for (Exception? x = e; x is not null; x = x.InnerException)
            if (x is HttpIOException { HttpRequestError: HttpRequestError.ResponseEnded }) return "connection closed by the registry";
        var inner = e;
        while (inner.InnerException is { Message.Length: > 0 } next) inner = next;
        return inner.Message.TrimEnd('.');
    }

    public static string PullScope(string repo) => $"repository:{repo}:pull";
    public static string PushScope(string repo) => $"repository:{repo}:pull,push";

    /// <summary>Sends a request built by <paramref name="make"/> with credentials for <paramref name="scopes"/>; on 401, authenticates and sends it once more.</summary>
    /// <param name="streamingBody">the request uploads a blob: the caller watches its progress, so no answer timeout applies here.</param>
    public async Task<HttpResponseMessage> SendAsync(Func<HttpRequestMessage> make, string[] scopes, CancellationToken ct,
        HttpCompletionOption completion = HttpCompletionOption.ResponseHeadersRead, bool retryOn401 = true, bool streamingBody = false)
    {
        var req = make();
        Authorize(req, scopes);
        var resp = await Send(req, completion, ct, streamingBody);
        if (resp.StatusCode != HttpStatusCode.Unauthorized || !retryOn401) return resp;
        var challenge = Challenge(resp) ?? _challenge;
        resp.Dispose();
        if (challenge is null) throw new RegistryException($"{Where}: {req.Method} {req.RequestUri?.AbsolutePath}: unauthorized, and the registry sent no WWW-Authenticate challenge");
        await AuthenticateAsync(challenge, scopes, ct);
        req = make();
        Authorize(req, scopes);
        resp = await Send(req, completion, ct, streamingBody);
        if (resp.StatusCode == HttpStatusCode.Unauthorized)
        {
            resp.Dispose();
            throw new RegistryException($"{Where}: {req.Method} {req.RequestUri?.AbsolutePath}: authentication failed" +
                (_creds is null ? " (no credentials: use --user USER:PASSWORD or log in with docker/podman)" : $" for user {_creds.Username}"));
        }
        return resp;
    }

    /// <summary>One HTTP exchange; until the response headers arrive it may take at most the idle timeout (unless it streams a body).</summary>
    async Task<HttpResponseMessage> Send(HttpRequestMessage req, HttpCompletionOption completion, CancellationToken ct, bool streamingBody)
    {
        using var wd = streamingBody ? null : new Watchdog(_opts.IdleTimeout, ct);
        try { return await _http.SendAsync(req, completion, wd?.Token ?? ct); }
        catch (HttpRequestException e) { throw new RegistryException($"{Where}: {req.Method} {req.RequestUri?.AbsolutePath}: {Message(e)}", e); }
        catch (OperationCanceledException e) when (wd is { Fired: true })
        {
            throw new RegistryException($"{Where}: {req.Method} {req.RequestUri?.AbsolutePath}: no answer within {_opts.IdleTimeout.TotalSeconds:0}s", e);
        }
    }

    static string ScopeKey(string[] scopes) => string.Join(' ', scopes.Order(StringComparer.Ordinal));

    void Authorize(HttpRequestMessage req, string[] scopes)
    {
        var c = _challenge;
        if (c is null) return;
        if (c.IsBearer && _tokens.TryGetValue(ScopeKey(scopes), out var token)) req.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        else if (c.IsBasic && _creds is not null) req.Headers.Authorization = new AuthenticationHeaderValue("Basic", _creds.BasicHeader);
    }

    async Task AuthenticateAsync(AuthChallenge challenge, string[] scopes, CancellationToken ct)
    {
        _challenge = challenge;
        if (challenge.IsBasic)
        {
            if (_creds is null) throw new RegistryException($"{Where}: authentication required (use --user USER:PASSWORD or an auth file)");
            return;
        }
        if (!challenge.IsBearer) throw new RegistryException($"{Where}: unsupported authentication scheme '{challenge.Scheme}'");
        if (challenge.Realm is not { Length: > 0 } realm || !Uri.TryCreate(realm, UriKind.Absolute, out var realmUri))
            throw new RegistryException($"{Where}: Bearer challenge without a usable realm");
        await _authLock.WaitAsync(ct);
        try
        {
            var all = scopes.ToList();
            if (challenge.Scope is { Length: > 0 } asked && !all.Contains(asked)) all.Add(asked);
            var query = new List<string>();
            if (challenge.Service is { Length: > 0 } svc) query.Add("service=" + Uri.EscapeDataString(svc));
            foreach (var s in all) query.Add("scope=" + Uri.EscapeDataString(s));
            var ub = new UriBuilder(realmUri);
            ub.Query = string.Join('&', (ub.Query.TrimStart('?') is { Length: > 0 } q ? [q] : Array.Empty<string>()).Concat(query));
            using var req = new HttpRequestMessage(HttpMethod.Get, ub.Uri);
            if (_creds is not null) req.Headers.Authorization = new AuthenticationHeaderValue("Basic", _creds.BasicHeader);
            HttpResponseMessage resp;
            using var wd = new Watchdog(_opts.IdleTimeout, ct);
            try { resp = await _http.SendAsync(req, wd.Token); }
            catch (HttpRequestException e) { throw new RegistryException($"{Where}: token server {realmUri.Host}: {Message(e)}", e); }
            catch (OperationCanceledException e) when (wd.Fired)
            { throw new RegistryException($"{Where}: token server {realmUri.Host}: no answer within {_opts.IdleTimeout.TotalSeconds:0}s", e); }
            using (resp)
            {
                var body = await resp.Content.ReadAsByteArrayAsync(ct);
                if (!resp.IsSuccessStatusCode)
                    throw new RegistryException($"{Where}: token server {realmUri.Host} refused {(_creds is null ? "anonymous access" : "user " + _creds.Username)}: HTTP {(int)resp.StatusCode}");
                var tok = RegistryJson.ParseToken(body);
                string? token = tok?.Token is { Length: > 0 } t ? t : tok?.AccessToken;
                if (string.IsNullOrEmpty(token)) throw new RegistryException($"{Where}: token server {realmUri.Host} returned no token");
                _tokens[ScopeKey(scopes)] = token;
            }
        }
        finally { _authLock.Release(); }
    }

    Uri Api(string path) => new(BaseUri, path);

    /// <summary>A one-line error for a failed response: HTTP status plus the registry's error codes if the body has them.</summary>
    public async Task<RegistryException> ErrorAsync(HttpResponseMessage resp, string what, CancellationToken ct)
    {
        string detail = "";
        try
        {
            var body = await resp.Content.ReadAsByteArrayAsync(ct);
            detail = RegistryJson.ErrorSummary(body) is { } s ? $" ({s})" : "";
        }
        catch (Exception e) when (e is HttpRequestException or IOException) { }
        return new RegistryException($"{Where}: {what}: HTTP {(int)resp.StatusCode} {resp.ReasonPhrase}{detail}");
    }

    // ---- manifests ----

    public sealed record ManifestResponse(byte[] Bytes, string? ContentType, string? DigestHeader);

    public async Task<ManifestResponse> GetManifestAsync(string repo, string reference, CancellationToken ct)
    {
        using var resp = await SendAsync(() =>
        {
            var r = new HttpRequestMessage(HttpMethod.Get, Api($"/v2/{repo}/manifests/{reference}"));
            foreach (var m in MediaTypes.Accept) r.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue(m));
            return r;
        }, [PullScope(repo)], ct);
        if (resp.StatusCode == HttpStatusCode.NotFound) throw new RegistryException($"{Where}: manifest {repo}:{reference} not found");
        if (!resp.IsSuccessStatusCode) throw await ErrorAsync(resp, $"GET manifest {repo}:{reference}", ct);
        if (resp.Content.Headers.ContentLength is > 4 << 20) throw new RegistryException($"{Where}: manifest {repo}:{reference} is implausibly large");
        byte[] bytes;
        try { bytes = await resp.Content.ReadAsByteArrayAsync(ct); }
        catch (HttpRequestException e) { throw new RegistryException($"{Where}: GET manifest {repo}:{reference}: {Message(e)}", e); }
        return new ManifestResponse(bytes, resp.Content.Headers.ContentType?.MediaType,
            resp.Headers.TryGetValues("Docker-Content-Digest", out var d) ? d.FirstOrDefault() : null);
    }

    /// <summary>PUT /v2/REPO/manifests/REF; returns the digest the registry reports.</summary>
    public async Task<string?> PutManifestAsync(string repo, string reference, byte[] manifest, string mediaType, CancellationToken ct)
    {
        using var resp = await SendAsync(() =>
        {
            var content = new ByteArrayContent(manifest);
            content.Headers.ContentType = new MediaTypeHeaderValue(mediaType);
            return new HttpRequestMessage(HttpMethod.Put, Api($"/v2/{repo}/manifests/{reference}")) { Content = content };
        }, [PushScope(repo)], ct);
        if (resp.StatusCode != HttpStatusCode.Created && !resp.IsSuccessStatusCode) throw await ErrorAsync(resp, $"PUT manifest {repo}:{reference}", ct);
        return resp.Headers.TryGetValues("Docker-Content-Digest", out var d) ? d.FirstOrDefault() : null;
    }

    // ---- blobs ----

    /// <summary>HEAD /v2/REPO/blobs/DIGEST: the size if the registry has it, null if not.</summary>
    public async Task<long?> HeadBlobAsync(string repo, string digest, string[] scopes, CancellationToken ct)
    {
        using var resp = await SendAsync(() => new HttpRequestMessage(HttpMethod.Head, Api($"/v2/{repo}/blobs/{digest}")), scopes, ct);
        if (resp.StatusCode == HttpStatusCode.NotFound) return null;
        if (!resp.IsSuccessStatusCode) throw await ErrorAsync(resp, $"HEAD blob {Digest.Short(digest)}", ct);
        return resp.Content.Headers.ContentLength ?? -1;
    }

    /// <summary>GET /v2/REPO/blobs/DIGEST; the caller reads (and verifies) the body.</summary>
    public async Task<HttpResponseMessage> GetBlobAsync(string repo, string digest, CancellationToken ct)
    {
        var resp = await SendAsync(() => new HttpRequestMessage(HttpMethod.Get, Api($"/v2/{repo}/blobs/{digest}")), [PullScope(repo)], ct);
        if (resp.IsSuccessStatusCode) return resp;
        using (resp)
        {
            if (resp.StatusCode == HttpStatusCode.NotFound)
            {
                string code = (await ErrorAsync(resp, "", ct)).Message is var m && m.Contains('(') ? " " + m[(m.LastIndexOf('(') + 1)..].TrimEnd(')') : "";
                throw new RegistryException($"{Where}: blob {digest} of {repo} is missing on the registry (HTTP 404{code})");
            }
            throw await ErrorAsync(resp, $"GET blob {Digest.Short(digest)}", ct);
        }
    }

    /// <summary>
    /// POST /v2/REPO/blobs/uploads/?mount=DIGEST&amp;from=OTHER: true if the registry linked the blob
    /// (201); otherwise the upload session it opened instead (202), to be used for a normal upload.
    /// </summary>
    public async Task<(bool Mounted, Uri? Upload)> MountBlobAsync(string repo, string digest, string from, CancellationToken ct)
    {
        using var resp = await SendAsync(() => new HttpRequestMessage(HttpMethod.Post,
            Api($"/v2/{repo}/blobs/uploads/?mount={Uri.EscapeDataString(digest)}&from={Uri.EscapeDataString(from)}")),
            [PushScope(repo), PullScope(from)], ct);
        if (resp.StatusCode == HttpStatusCode.Created) return (true, null);
        if (resp.StatusCode == HttpStatusCode.Accepted) return (false, Location(resp));
        throw await ErrorAsync(resp, $"mount blob {Digest.Short(digest)} from {from}", ct);
    }

    /// <summary>POST /v2/REPO/blobs/uploads/: opens an upload session.</summary>
    public async Task<Uri> StartUploadAsync(string repo, CancellationToken ct)
    {
        using var resp = await SendAsync(() => new HttpRequestMessage(HttpMethod.Post, Api($"/v2/{repo}/blobs/uploads/")) { Content = new ByteArrayContent([]) },
            [PushScope(repo)], ct);
        if (resp.StatusCode != HttpStatusCode.Accepted) throw await ErrorAsync(resp, "start blob upload", ct);
        return Location(resp);
    }

    Uri Location(HttpResponseMessage resp)
    {
        var loc = resp.Headers.Location ?? throw new RegistryException($"{Where}: upload response without a Location header");
        return loc.IsAbsoluteUri ? loc : new Uri(resp.RequestMessage?.RequestUri ?? BaseUri, loc);
    }

    static Uri WithDigest(Uri upload, string digest)
    {
        var ub = new UriBuilder(upload);
        string q = ub.Query.TrimStart('?');
        ub.Query = (q.Length > 0 ? q + "&" : "") + "digest=" + Uri.EscapeDataString(digest);
        return ub.Uri;
    }

    /// <summary>Monolithic upload: PUT UPLOAD?digest=D with the whole blob as the body.</summary>
    public async Task PutBlobAsync(string repo, Uri upload, string digest, Stream content, long size, CancellationToken ct)
    {
        bool sent = false;
        using var resp = await SendAsync(() =>
        {
            if (sent) throw new RegistryException($"{Where}: upload of {Digest.Short(digest)} needs re-authentication mid-stream");
            sent = true;
            var body = new StreamContent(new NonDisposingStream(content), 1 << 20);
            body.Headers.ContentLength = size;
            body.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
            return new HttpRequestMessage(HttpMethod.Put, WithDigest(upload, digest)) { Content = body };
        }, [PushScope(repo)], ct, retryOn401: false, streamingBody: true);
        await CheckUploadDone(resp, digest, ct);
    }

    /// <summary>Chunked upload: PATCH UPLOAD with Content-Range for each chunk, then PUT UPLOAD?digest=D with no body.</summary>
    public async Task PatchBlobAsync(string repo, Uri upload, string digest, Stream content, long size, long chunkSize, CancellationToken ct)
    {
        long offset = 0;
        while (offset < size)
        {
            long n = Math.Min(chunkSize, size - offset);
            long start = offset;
            using var resp = await SendAsync(() =>
            {
                var body = new StreamContent(new BoundedStream(content, n), 1 << 20);
                body.Headers.ContentLength = n;
                body.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
                var r = new HttpRequestMessage(HttpMethod.Patch, upload) { Content = body };
                r.Content.Headers.TryAddWithoutValidation("Content-Range", $"{start}-{start + n - 1}");
                return r;
            }, [PushScope(repo)], ct, retryOn401: false, streamingBody: true);
            if (resp.StatusCode != HttpStatusCode.Accepted) throw await ErrorAsync(resp, $"upload chunk {start}-{start + n - 1} of {Digest.Short(digest)}", ct);
            upload = Location(resp);
            offset += n;
        }
        using var done = await SendAsync(() => new HttpRequestMessage(HttpMethod.Put, WithDigest(upload, digest)) { Content = new ByteArrayContent([]) },
            [PushScope(repo)], ct, retryOn401: false, streamingBody: true); // the registry may hash a large blob before it answers
        await CheckUploadDone(done, digest, ct);
    }

    async Task CheckUploadDone(HttpResponseMessage resp, string digest, CancellationToken ct)
    {
        if (resp.StatusCode != HttpStatusCode.Created) throw await ErrorAsync(resp, $"finish upload of {Digest.Short(digest)}", ct);
        if (resp.Headers.TryGetValues("Docker-Content-Digest", out var d) && d.FirstOrDefault() is { } got && got != digest)
            throw new RegistryException($"{Where}: stored blob as {got}, expected {digest}");
    }

    /// <summary>Reads at most <c>count</c> bytes of the inner stream; never disposes it.</summary>
    sealed class BoundedStream(Stream inner, long count) : Stream
    {
        readonly long _count = count;
        long _left = count;
        public override int Read(byte[] buffer, int offset, int c) => Read(buffer.AsSpan(offset, c));
        public override int Read(Span<byte> buffer)
        {
            if (_left <= 0) return 0;
            int n = inner.Read(buffer[..(int)Math.Min(buffer.Length, _left)]);
            if (n == 0) throw new IOException("local blob ended early");
            _left -= n;
            return n;
        }
        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => _count;
        public override long Position { get => _count - _left; set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int c) => throw new NotSupportedException();
    }

    sealed class NonDisposingStream(Stream inner) : Stream
    {
        public override int Read(byte[] buffer, int offset, int c) => inner.Read(buffer, offset, c);
        public override int Read(Span<byte> buffer) => inner.Read(buffer);
        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int c) => throw new NotSupportedException();
    }
}
