using System.Text;
using UnionFs.Engine.Registry;

namespace UnionFs.Engine.Tests;

public class ImageReferenceTests
{
    [Theory]
    [InlineData("busybox", "docker.io", "library/busybox", "latest", null)]
    [InlineData("busybox:1.36", "docker.io", "library/busybox", "1.36", null)]
    [InlineData("docker.io/library/busybox", "docker.io", "library/busybox", "latest", null)]
    [InlineData("index.docker.io/user/app:v1", "docker.io", "user/app", "v1", null)]
    [InlineData("user/app", "docker.io", "user/app", "latest", null)]
    [InlineData("127.0.0.1:5000/x:y", "127.0.0.1:5000", "x", "y", null)]
    [InlineData("localhost/a/b/c", "localhost", "a/b/c", "latest", null)]
    [InlineData("localhost:5000/a/b:t", "localhost:5000", "a/b", "t", null)]
    [InlineData("quay.io/org/repo:1.0-rc_1", "quay.io", "org/repo", "1.0-rc_1", null)]
    [InlineData("[::1]:5000/x:1", "[::1]:5000", "x", "1", null)]
    [InlineData("reg.example.com:443/a__b/c-d.e:x", "reg.example.com:443", "a__b/c-d.e", "x", null)]
    public void Parses_registry_repository_and_tag(string text, string registry, string repo, string? tag, string? digest)
    {
        var r = ImageReference.Parse(text);
        Assert.Equal(registry, r.Registry);
        Assert.Equal(repo, r.Repository);
        Assert.Equal(tag, r.Tag);
        Assert.Equal(digest, r.Digest);
    }

    const string D = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    [Fact]
    public void Tag_and_digest_together_and_digest_alone()
    {
        var r = ImageReference.Parse($"host:5000/repo:tag@{D}");
        Assert.Equal(("host:5000", "repo", "tag", D), (r.Registry, r.Repository, r.Tag, r.Digest));
        Assert.Equal(D, r.ManifestReference);
        var d = ImageReference.Parse($"host:5000/repo@{D}");
        Assert.Null(d.Tag);
        Assert.Null(d.LocalTag);
        Assert.Equal(D, d.ManifestReference);
    }

    [Fact]
    public void Scheme_prefix_and_loopback()
    {
        var r = ImageReference.Parse("http://myhost:5000/a:b");
        Assert.Equal("http", r.Scheme);
        Assert.Equal("myhost:5000", r.Registry);
        Assert.False(r.IsLoopback);
        Assert.True(ImageReference.Parse("127.0.0.1:5000/x").IsLoopback);
        Assert.True(ImageReference.Parse("localhost:5000/x").IsLoopback);
        Assert.True(ImageReference.Parse("[::1]:5000/x").IsLoopback);
        Assert.Equal("::1", ImageReference.Parse("[::1]:5000/x").HostName);
        Assert.Null(ImageReference.Parse("docker://127.0.0.1:5000/x").Scheme);
    }

    [Fact]
    public void Local_names_drop_docker_hub_prefixes()
    {
        Assert.Equal("busybox:latest", ImageReference.Parse("busybox").LocalTag);
        Assert.Equal("user/app:v1", ImageReference.Parse("docker.io/user/app:v1").LocalTag);
        Assert.Equal("127.0.0.1:5000/x:y", ImageReference.Parse("127.0.0.1:5000/x:y").LocalTag);
        Assert.Equal("registry-1.docker.io", ImageReference.Parse("busybox").ApiHost);
        Assert.Equal(Store.Store.NormalizeTag("127.0.0.1:5000/x:y"), ImageReference.Parse("127.0.0.1:5000/x:y").LocalTag);
    }

    [Theory]
    [InlineData("")]
    [InlineData("UPPER/case")]
    [InlineData("host:5000/")]
    [InlineData("repo:bad tag")]
    [InlineData("repo:-x")]
    [InlineData("repo@sha256:1234")]
    [InlineData("repo@md5:0123456789abcdef0123456789abcdef")]
    [InlineData("a//b")]
    [InlineData("/abs")]
    [InlineData("a-/b")]
    public void Rejects_malformed_references(string text) => Assert.Throws<StoreException>(() => ImageReference.Parse(text));
}

public class AuthChallengeTests
{
    [Fact]
    public void Bearer_with_quoted_scope_containing_commas()
    {
        var list = AuthChallenge.Parse("Bearer realm=\"https://auth.docker.io/token\",service=\"registry.docker.io\",scope=\"repository:library/busybox:pull,push\"");
        var c = Assert.Single(list);
        Assert.True(c.IsBearer);
        Assert.Equal("https://auth.docker.io/token", c.Realm);
        Assert.Equal("registry.docker.io", c.Service);
        Assert.Equal("repository:library/busybox:pull,push", c.Scope);
    }

    [Fact]
    public void Basic_and_several_challenges_and_odd_spacing()
    {
        var list = AuthChallenge.Parse("Basic realm=\"Registry Realm\" ,  Bearer realm=https://t.example/token , service = svc, error=\"insufficient_scope\"");
        Assert.Equal(2, list.Count);
        Assert.True(list[0].IsBasic);
        Assert.Equal("Registry Realm", list[0].Realm);
        Assert.True(list[1].IsBearer);
        Assert.Equal("https://t.example/token", list[1].Realm);
        Assert.Equal("svc", list[1].Service);
        Assert.Equal("insufficient_scope", list[1].Parameters["error"]);
    }

    [Fact]
    public void Escapes_in_quoted_strings_and_case_insensitive_names()
    {
        var c = Assert.Single(AuthChallenge.Parse("bearer REALM=\"a\\\"b\",Scope=\"x\""));
        Assert.True(c.IsBearer);
        Assert.Equal("a\"b", c.Realm);
        Assert.Equal("x", c.Scope);
    }

    [Fact]
    public void Scheme_without_parameters() => Assert.True(Assert.Single(AuthChallenge.Parse("Basic")).IsBasic);

    [Fact]
    public void Response_challenge_prefers_bearer_over_basic_across_header_lines()
    {
        using var resp = new HttpResponseMessage(System.Net.HttpStatusCode.Unauthorized);
        resp.Headers.TryAddWithoutValidation("WWW-Authenticate", "Basic realm=\"r\"");
        resp.Headers.TryAddWithoutValidation("WWW-Authenticate", "Bearer realm=\"https://t/token\",service=\"s\",scope=\"repository:a:pull\"");
        var c = RegistryClient.Challenge(resp)!;
        Assert.True(c.IsBearer);
        Assert.Equal("repository:a:pull", c.Scope);
        using var none = new HttpResponseMessage(System.Net.HttpStatusCode.Unauthorized);
        Assert.Null(RegistryClient.Challenge(none));
    }
}

public class AuthFileTests
{
    static string B64(string s) => Convert.ToBase64String(Encoding.UTF8.GetBytes(s));

    [Fact]
    public void Decodes_auth_entries_and_finds_by_host_and_repository()
    {
        var json = $$"""
            { "auths": {
                "https://index.docker.io/v1/": { "auth": "{{B64("hub:pw")}}" },
                "127.0.0.1:5000": { "auth": "{{B64("local:p:with:colons")}}" },
                "quay.io/org/special": { "auth": "{{B64("special:s")}}" },
                "quay.io": { "auth": "{{B64("quay:q")}}" },
                "http://old.example.com/v1/": { "username": "u", "password": "p" }
            }, "credsStore": "desktop" }
            """;
        var file = RegistryJson.ParseAuthFile(Encoding.UTF8.GetBytes(json))!;
        Credentials? Find(string r) => AuthFiles.Find(file.Auths!, ImageReference.Parse(r));
        Assert.Equal(new Credentials("hub", "pw"), Find("busybox"));
        Assert.Equal(new Credentials("local", "p:with:colons"), Find("127.0.0.1:5000/x:y"));
        Assert.Equal(new Credentials("special", "s"), Find("quay.io/org/special/sub:1"));
        Assert.Equal(new Credentials("quay", "q"), Find("quay.io/org/other"));
        Assert.Equal(new Credentials("u", "p"), Find("old.example.com/a"));
        Assert.Null(Find("127.0.0.1:5001/x"));
    }

    [Fact]
    public void Bad_entries_are_ignored_and_user_option_is_split_once()
    {
        Assert.Null(Credentials.Decode(new AuthEntry { Auth = "!!notbase64" }));
        Assert.Null(Credentials.Decode(new AuthEntry { Auth = B64("nocolon") }));
        Assert.Equal(new Credentials("a", "b:c"), Credentials.FromUserOption("a:b:c"));
        Assert.Throws<StoreException>(() => Credentials.FromUserOption("justuser"));
        Assert.Equal("dTpw", new Credentials("u", "p").BasicHeader);
        Assert.Null(RegistryJson.ParseAuthFile("not json"u8.ToArray()));
    }

    [Fact]
    public void Lookup_reads_an_explicit_auth_file()
    {
        string path = Path.GetTempFileName();
        try
        {
            File.WriteAllText(path, "{\"auths\":{\"localhost:5000\":{\"auth\":\"" + B64("x:y") + "\"}}}");
            Assert.Equal(new Credentials("x", "y"), AuthFiles.Lookup(ImageReference.Parse("localhost:5000/r"), path));
            Assert.Null(AuthFiles.Lookup(ImageReference.Parse("localhost:5001/r"), path));
        }
        finally { File.Delete(path); }
    }

    [Theory]
    [InlineData("https://index.docker.io/v1/", "docker.io")]
    [InlineData("registry-1.docker.io", "docker.io")]
    [InlineData("http://host:5000", "host:5000")]
    [InlineData("host:5000/v2/", "host:5000")]
    [InlineData("quay.io/org/repo", "quay.io/org/repo")]
    public void Normalizes_auth_file_keys(string key, string expected) => Assert.Equal(expected, AuthFiles.NormalizeKey(key));
}

public class ManifestSelectionTests
{
    const string Amd = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const string Arm = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const string Arm7 = "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";
    const string Att = "sha256:dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd";

    static ManifestDocument Index() => RegistryJson.ParseManifest(Encoding.UTF8.GetBytes($$"""
        { "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
          { "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "{{Arm7}}", "size": 1, "platform": { "architecture": "arm", "os": "linux", "variant": "v7" } },
          { "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "{{Arm}}", "size": 1, "platform": { "architecture": "arm64", "os": "linux", "variant": "v8" } },
          { "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "{{Att}}", "size": 1, "platform": { "architecture": "unknown", "os": "unknown" } },
          { "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "{{Amd}}", "size": 1, "platform": { "architecture": "amd64", "os": "linux" } }
        ] }
        """), "test");

    [Fact]
    public void Selects_linux_amd64_and_variants()
    {
        Assert.Equal(Amd, ManifestSelection.Select(Index(), ManifestSelection.Parse("linux/amd64"), "t").Digest);
        Assert.Equal(Arm, ManifestSelection.Select(Index(), ManifestSelection.Parse("linux/arm64"), "t").Digest);
        Assert.Equal(Arm, ManifestSelection.Select(Index(), ManifestSelection.Parse("linux/arm64/v8"), "t").Digest);
        Assert.Equal(Arm7, ManifestSelection.Select(Index(), ManifestSelection.Parse("linux/arm/v7"), "t").Digest);
    }

    [Fact]
    public void Missing_platform_lists_what_the_index_offers()
    {
        var e = Assert.Throws<StoreException>(() => ManifestSelection.Select(Index(), ManifestSelection.Parse("linux/s390x"), "t"));
        Assert.Contains("linux/amd64", e.Message);
        Assert.Contains("linux/arm64/v8", e.Message);
        Assert.Throws<StoreException>(() => ManifestSelection.Parse("linux"));
    }

    [Fact]
    public void Docker_manifest_list_and_media_type_detection()
    {
        var list = RegistryJson.ParseManifest(Encoding.UTF8.GetBytes($$"""
            { "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json", "manifests": [
              { "mediaType": "application/vnd.docker.distribution.manifest.v2+json", "digest": "{{Amd}}", "size": 7, "platform": { "architecture": "amd64", "os": "linux" } } ] }
            """), "t");
        Assert.Equal(MediaTypes.DockerList, ManifestSelection.EffectiveMediaType(null, list));
        Assert.Equal(MediaTypes.DockerList, ManifestSelection.EffectiveMediaType("application/vnd.docker.distribution.manifest.list.v2+json; charset=utf-8", list));
        Assert.Equal(Amd, ManifestSelection.Select(list, ManifestSelection.Parse("linux/amd64"), "t").Digest);
        // An OCI index without mediaType fields and without platforms: its only manifest.
        var bare = RegistryJson.ParseManifest(Encoding.UTF8.GetBytes($$"""{"schemaVersion":2,"manifests":[{"digest":"{{Amd}}","size":3}]}"""), "t");
        Assert.Equal(MediaTypes.OciIndex, ManifestSelection.EffectiveMediaType("application/json", bare));
        Assert.Equal(Amd, ManifestSelection.Select(bare, ManifestSelection.Parse("linux/amd64"), "t").Digest);
    }

    [Fact]
    public void Validates_image_manifests()
    {
        var good = RegistryJson.ParseManifest(Encoding.UTF8.GetBytes($$"""
            { "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
              "config": { "mediaType": "application/vnd.docker.container.image.v1+json", "digest": "{{Amd}}", "size": 10 },
              "layers": [ { "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": "{{Arm}}", "size": 20 } ] }
            """), "t");
        ManifestSelection.Validate(good, MediaTypes.DockerManifest, "t");
        Assert.Equal(MediaTypes.DockerManifest, ManifestSelection.EffectiveMediaType(null, good));
        var schema1 = RegistryJson.ParseManifest("""{"schemaVersion":1,"name":"x","fsLayers":[]}"""u8.ToArray(), "t");
        Assert.Contains("schema 1", Assert.Throws<StoreException>(() => ManifestSelection.Validate(schema1, MediaTypes.DockerSchema1Signed, "t")).Message);
        var badDigest = RegistryJson.ParseManifest(Encoding.UTF8.GetBytes($$"""
            { "schemaVersion": 2, "config": { "digest": "{{Amd}}", "size": 1 }, "layers": [ { "digest": "sha256:xyz", "size": 1 } ] }
            """), "t");
        Assert.Throws<StoreException>(() => ManifestSelection.Validate(badDigest, MediaTypes.OciManifest, "t"));
        Assert.Throws<StoreException>(() => RegistryJson.ParseManifest("{"u8.ToArray(), "t"));
    }

    [Fact]
    public void Registry_error_bodies_are_summarized()
    {
        Assert.Equal("BLOB_UNKNOWN: blob unknown to registry",
            RegistryJson.ErrorSummary("""{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to registry","detail":"sha256:x"}]}"""u8.ToArray()));
        Assert.Null(RegistryJson.ErrorSummary("<html>"u8.ToArray()));
    }

    [Fact]
    public void Pushed_manifest_serialization_omits_nulls()
    {
        var m = new ManifestDocument
        {
            SchemaVersion = 2, MediaType = MediaTypes.OciManifest,
            Config = new Descriptor { MediaType = MediaTypes.OciConfig, Digest = Amd, Size = 5 },
            Layers = [new Descriptor { MediaType = "application/vnd.oci.image.layer.v1.tar", Digest = Arm, Size = 9 }],
        };
        string json = Encoding.UTF8.GetString(RegistryJson.Serialize(m));
        Assert.Equal($$"""{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{{Amd}}","size":5},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{{Arm}}","size":9}]}""", json);
    }

    [Theory]
    [InlineData("1048576", 1048576L)]
    [InlineData("64k", 65536L)]
    [InlineData("16M", 16777216L)]
    [InlineData("0", 0L)]
    public void Chunk_sizes(string text, long expected) => Assert.Equal(expected, RegistryCli.ParseSize(text));
}

/// <summary>The store additions registry pull/push rely on, and the CLI's handling of the verbs (no network).</summary>
public class RegistryStoreTests : IDisposable
{
    readonly Scratch _s = new();
    public void Dispose() => _s.Dispose();

    [Fact]
    public void Image_and_tags_register_together_and_a_failure_leaves_neither()
    {
        using var ctx = _s.Open();
        var (imageId, _, _) = new Images.ImageOps(ctx).Import(_s.MakeRootfs(), "base:1");
        var top = ctx.Store.ResolveImage(imageId).TopChain;
        byte[] config = Encoding.UTF8.GetBytes("{\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]},\"x\":1}");
        var (id, existed) = ctx.Store.RegisterImage(config, top, ["reg.example:5000/a/b:1", "c"]);
        Assert.False(existed);
        Assert.Equal(["c:latest", "reg.example:5000/a/b:1"], ctx.Store.TagsOf(id));
        // A missing top layer: nothing at all is registered, not even the tag.
        byte[] other = Encoding.UTF8.GetBytes("{\"other\":true}");
        Assert.Throws<StoreException>(() => ctx.Store.RegisterImage(other, Digest.Of("nope"), ["dangling:1"]));
        Assert.Null(ctx.Store.GetImage(Digest.Of(other)));
        Assert.DoesNotContain(ctx.Store.ListTags(), t => t.Name == "dangling:1");
        Assert.Empty(ctx.Store.Verify());
    }

    [Fact]
    public void Blob_files_are_registered_by_rename_and_sources_remembered()
    {
        using var ctx = _s.Open();
        byte[] data = Encoding.UTF8.GetBytes("some blob");
        string digest = Digest.Of(data);
        Assert.False(ctx.Store.HasBlobFile(digest));
        Assert.Empty(ctx.Store.BlobSources(digest, "r:5000"));
        string tmp = StoreLayout.TempName(ctx.Store.Layout.Blobs);
        File.WriteAllBytes(tmp, data);
        ctx.Store.AddBlobFile(tmp, digest, data.Length, "application/octet-stream");
        Assert.False(File.Exists(tmp));
        Assert.True(ctx.Store.HasBlobFile(digest));
        Assert.Equal(data, ctx.Store.ReadBlob(digest));
        ctx.Store.RecordBlobSources("r:5000", "team/app", [digest, digest]);
        ctx.Store.RecordBlobSources("r:5000", "other", [digest]);
        ctx.Store.RecordBlobSources("elsewhere:1", "x", [digest]);
        Assert.Equal(["other", "team/app"], ctx.Store.BlobSources(digest, "r:5000").Order());
        // Unreferenced, so gc takes it (a kept download is only a cache).
        ctx.Store.CollectGarbage();
        Assert.False(ctx.Store.HasBlobFile(digest));
    }

    [Fact]
    public void Pull_and_push_usage_and_connection_errors_are_one_line()
    {
        Assert.Equal(2, CliRunner.Run("pull", "--root", _s.Root).Code);
        Assert.Equal(2, CliRunner.Run("push", "--root", _s.Root).Code);
        Assert.Equal(2, CliRunner.Run("pull", "x", "--bogus", "--root", _s.Root).Code);
        Assert.Equal(2, CliRunner.Run("pull", "x", "--tls-verify=maybe", "--root", _s.Root).Code);
        var bad = CliRunner.Run("pull", "UPPER/x", "--root", _s.Root);
        Assert.Equal(1, bad.Code);
        Assert.StartsWith("unionfs: invalid image reference 'UPPER/x'", bad.Err);
        // Port 9 on loopback (discard) is not a registry: refused at once.
        var (code, stdout, err) = CliRunner.Run("pull", "127.0.0.1:9/x:1", "--root", _s.Root);
        Assert.Equal(1, code);
        Assert.Equal("", stdout);
        Assert.StartsWith("unionfs: registry 127.0.0.1:9: cannot connect:", err);
        Assert.Single(err.TrimEnd('\n').Split('\n'));
        var push = CliRunner.Run("push", "nope:1", "127.0.0.1:9/x:1", "--root", _s.Root);
        Assert.Equal("unionfs: image 'nope:1': no such image\n", push.Err);
    }
}

public class RegistryManifestStoreTests : IDisposable
{
    readonly Scratch _s = new();
    public void Dispose() => _s.Dispose();

    [Fact]
    public void Pulled_manifests_are_kept_per_image_newest_first()
    {
        using var ctx = _s.Open();
        string image = Digest.Of("config");
        Assert.Empty(ctx.Store.ManifestsOf(image));
        byte[] m1 = "{\"schemaVersion\":2,\"a\":1}"u8.ToArray(), m2 = "{\"schemaVersion\":2,\"b\":2}"u8.ToArray();
        ctx.Store.RecordManifest(image, m1, MediaTypes.DockerManifest);
        Thread.Sleep(5);
        ctx.Store.RecordManifest(image, m2, MediaTypes.OciManifest);
        ctx.Store.RecordManifest(image, m2, MediaTypes.OciManifest); // idempotent
        var list = ctx.Store.ManifestsOf(image);
        Assert.Equal(2, list.Count);
        Assert.Equal((Digest.Of(m2), MediaTypes.OciManifest), (list[0].Digest, list[0].MediaType));
        Assert.Equal(m1, list[1].Bytes);
        Assert.Empty(ctx.Store.ManifestsOf(Digest.Of("other")));
    }
}
