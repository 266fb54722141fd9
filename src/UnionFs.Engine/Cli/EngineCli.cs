using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using UnionFs.Engine.Archives;
using UnionFs.Engine.Containers;
using UnionFs.Engine.Drivers;
using UnionFs.Engine.Images;
using UnionFs.Engine.Maintenance;
using UnionFs.Posix;

namespace UnionFs.Engine.Cli;

/// <summary>
/// `unionfs image|container|system ...`: parses a verb's arguments, runs one workflow, prints the result
/// (human tables, or JSON with --json) and returns the exit status. Errors are one line on stderr:
/// "unionfs: &lt;what failed, on which path&gt;", exit 1 (2 for usage errors).
/// </summary>
public static class EngineCli
{
    public const string Usage = """
        Images:
          image load FILE|-|DIR [--tag NAME]   load a docker-archive or OCI layout (dir or tar)
          image save IMAGE... -o FILE|DIR [--format docker-archive|oci-archive|oci]
          image import DIR|TAR NAME[:TAG]      a root filesystem as a one-layer image
          image ls [--json] [-q]               image history IMAGE [--json]
          image inspect IMAGE...               image tag IMAGE NAME[:TAG]
          image rm IMAGE... [--force]
        Containers:
          container create IMAGE [--name N]    container ls [--json] [-q]
          container mount ID                   container umount ID
          container diff ID [--json]           container commit ID NAME[:TAG] [--message M]
          container export ID -o FILE|-        container rm ID... [--force]
        System:
          system df [--json]   system gc   system fsck   system migrate LEGACY_DIR
        Registry:
          pull REF                             pull from a registry (HOST[:PORT]/REPO[:TAG][@DIGEST])
          push IMAGE [REF]                     push a stored image to a registry
          --user USER:PASSWORD, --authfile FILE, --tls-verify=false, --platform OS/ARCH, --parallel N,
          --chunk-size BYTES (push: larger blobs go up in PATCH chunks); localhost/127.x use http
        Common options: --root DIR (or UNIONFS_ROOT; default /var/lib/unionfs),
          --storage-driver fuse|overlay (or UNIONFS_STORAGE_DRIVER; default fuse), --debug
        """;

    public static int Run(string[] args)
    {
        try
        {
            if (args.Length < 2 || args[1] is "-h" or "--help" or "help") { Console.Out.Write(Usage); return args.Length < 2 ? 2 : 0; }
            bool registryVerb = args[0] is "pull" or "push";
            var a = new Args(registryVerb ? args[1..] : args[2..]);
            Progress.Quiet = a.Flag("-q", "--quiet");
            using var loggerFactory = LoggerFactory.Create(b => b.AddProvider(new StderrLoggerProvider())
                .SetMinimumLevel(a.Flag("--debug") || Environment.GetEnvironmentVariable("UNIONFS_DEBUG") is { Length: > 0 } ? LogLevel.Debug : LogLevel.Warning));
            var log = loggerFactory.CreateLogger("UnionFs.Engine");
            string root = a.Value("--root") ?? NonEmpty(Environment.GetEnvironmentVariable("UNIONFS_ROOT")) ?? Store.Store.DefaultRoot;
            Func<EngineContext> open = () => new EngineContext(new Store.Store(root, log), StorageDrivers.Create(a.Value("--storage-driver")), log);
            return (args[0], args[1]) switch
            {
                ("image", _) => Images(args[1], a, open),
                ("container", _) => Containers(args[1], a, open),
                ("system", _) => SystemVerbs(args[1], a, open),
                ("pull", _) => Registry.RegistryCli.Pull(a, open),
                ("push", _) => Registry.RegistryCli.Push(a, open),
                _ => throw new UsageException($"unknown command '{args[0]}'"),
            };
        }
        catch (UsageException e) { return Fail(e.Message, 2); }
        catch (StoreException e) { return Fail(e.Message, 1); }
        catch (PosixException e) { return Fail(e.Message, 1); }
        catch (IOException e) { return Fail(e.Message, 1); }
        catch (UnauthorizedAccessException e) { return Fail(e.Message, 1); }
        catch (Microsoft.Data.Sqlite.SqliteException e) { return Fail("metadata database: " + e.Message, 1); }
        catch (InvalidDataException e) { return Fail("corrupt data: " + e.Message, 1); }
        catch (System.Text.Json.JsonException e) { return Fail("invalid JSON: " + e.Message, 1); }
        catch (Exception e) when (e is InvalidOperationException or FormatException)
        {
            // Mostly malformed JSON values in a loaded archive (a number where a string belongs, ...).
            return Fail($"unexpected input: {e.Message}", 1);
        }
    }

    static string? NonEmpty(string? s) => string.IsNullOrEmpty(s) ? null : s;

    static int Fail(string message, int code)
    {
        Console.Error.WriteLine("unionfs: " + message);
        return code;
    }

    static TextWriter Out => Console.Out;

    // ---- image ----

    static int Images(string verb, Args a, Func<EngineContext> open)
    {
        switch (verb)
        {
            case "import":
            {
                a.Allow();
                string src = a.Need(0, "image import DIR|TAR NAME[:TAG]"), name = a.Need(1, "image import DIR|TAR NAME[:TAG]");
                using var ctx = open();
                var (id, _, _) = new ImageOps(ctx).Import(src, name);
                Out.WriteLine(id);
                return 0;
            }
            case "ls" or "list":
            {
                a.Allow("-a");
                using var ctx = open();
                var images = new ImageOps(ctx).List();
                if (a.Flag("--json"))
                {
                    var arr = new JsonArray();
                    foreach (var i in images)
                        arr.Add((JsonNode)new JsonObject
                        {
                            ["Id"] = i.Id, ["RepoTags"] = Strings(i.Tags), ["Created"] = Format.Iso(i.Created), ["Size"] = i.Size,
                            ["Layers"] = i.Layers, ["ChainID"] = i.TopChain,
                        });
                    Out.WriteLine(Format.Json(arr));
                }
                else if (a.Flag("-q", "--quiet")) foreach (var i in images) Out.WriteLine(Digest.Short(i.Id));
                else
                {
                    var rows = images.SelectMany(i => (i.Tags.Count == 0 ? ["<none>:<none>"] : i.Tags).Select(t =>
                    {
                        int c = t.LastIndexOf(':');
                        return new[] { t[..c], t[(c + 1)..], Digest.Short(i.Id), Format.Ago(i.Created), Format.Bytes(i.Size) };
                    }));
                    Out.Write(Format.Table(["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"], rows));
                }
                return 0;
            }
            case "history":
            {
                a.Allow("--no-trunc");
                string reference = a.Need(0, "image history IMAGE");
                using var ctx = open();
                var rows = new ImageOps(ctx).History(reference);
                if (a.Flag("--json"))
                {
                    var arr = new JsonArray();
                    foreach (var h in rows)
                        arr.Add((JsonNode)new JsonObject
                        {
                            ["Id"] = h.ImageId ?? "<missing>", ["Created"] = h.Created is { } c ? Format.Iso(c) : null, ["CreatedBy"] = h.CreatedBy,
                            ["Size"] = h.Size, ["Comment"] = h.Comment ?? "", ["DiffID"] = h.DiffId,
                        });
                    Out.WriteLine(Format.Json(arr));
                    return 0;
                }
                bool full = a.Flag("--no-trunc");
                Out.Write(Format.Table(["IMAGE", "LAYER", "CREATED", "CREATED BY", "SIZE", "COMMENT"], rows.Select(h => new[]
                {
                    h.ImageId is null ? "<missing>" : full ? h.ImageId : Digest.Short(h.ImageId),
                    h.DiffId is null ? "(empty)" : full ? h.DiffId : Digest.Short(h.DiffId),
                    h.Created is { } c ? Format.Ago(c) : "",
                    full || h.CreatedBy.Length <= 45 ? h.CreatedBy : h.CreatedBy[..44] + "…",
                    Format.Bytes(h.Size),
                    h.Comment ?? "",
                })));
                return 0;
            }
            case "inspect":
            {
                a.Allow();
                if (a.Positionals.Count == 0) throw new UsageException("usage: unionfs image inspect IMAGE...");
                using var ctx = open();
                var arr = new JsonArray();
                foreach (var r in a.Positionals) arr.Add((JsonNode)new ImageOps(ctx).Inspect(r));
                Out.WriteLine(Format.Json(arr));
                return 0;
            }
            case "tag":
            {
                a.Allow();
                using var ctx = open();
                new ImageOps(ctx).Tag(a.Need(0, "image tag IMAGE NAME[:TAG]"), a.Need(1, "image tag IMAGE NAME[:TAG]"));
                return 0;
            }
            case "rm" or "remove" or "rmi":
            {
                a.Allow("-f", "--force");
                if (a.Positionals.Count == 0) throw new UsageException("usage: unionfs image rm IMAGE... [--force]");
                using var ctx = open();
                foreach (var r in a.Positionals)
                {
                    var (untagged, id, deleted) = new ImageOps(ctx).Remove(r, a.Flag("-f", "--force"));
                    if (untagged) { Out.WriteLine($"Untagged: {Store.Store.NormalizeTag(r)}"); continue; }
                    Out.WriteLine($"Deleted: {id}");
                    foreach (var l in deleted) Out.WriteLine($"Deleted layer: {l.DiffId}");
                }
                return 0;
            }
            case "load":
            {
                a.Allow("-i", "--input", "--tag");
                string input = a.Positionals.Count > 0 ? a.Positionals[0] : Console.IsInputRedirected ? "-" : throw new UsageException("usage: unionfs image load FILE|-|DIR");
                using var ctx = open();
                var result = new ArchiveLoader(ctx, Out).Load(input, a.Value("--tag"));
                return result.Count > 0 ? 0 : 1;
            }
            case "save":
            {
                a.Allow("-o", "--output", "--format");
                if (a.Positionals.Count == 0) throw new UsageException("usage: unionfs image save IMAGE... -o FILE [--format docker-archive|oci-archive|oci]");
                string output = a.Value("-o", "--output") ?? "-";
                using var ctx = open();
                new ArchiveSaver(ctx).Save(a.Positionals, output, a.Value("--format"));
                return 0;
            }
            default: throw new UsageException($"unknown command 'image {verb}' (see unionfs image --help)");
        }
    }

    // ---- container ----

    static int Containers(string verb, Args a, Func<EngineContext> open)
    {
        switch (verb)
        {
            case "create":
            {
                a.Allow("--name");
                using var ctx = open();
                var c = new ContainerOps(ctx).Create(a.Need(0, "container create IMAGE [--name N]"), a.Value("--name"));
                Out.WriteLine(c.Id);
                return 0;
            }
            case "ls" or "list" or "ps":
            {
                a.Allow("-a");
                using var ctx = open();
                var list = new ContainerOps(ctx).List();
                if (a.Flag("--json"))
                {
                    var arr = new JsonArray();
                    foreach (var c in list)
                        arr.Add((JsonNode)new JsonObject
                        {
                            ["Id"] = c.Record.Id, ["Name"] = c.Record.Name, ["Image"] = c.Record.ImageId, ["ImageTags"] = Strings(c.ImageTags),
                            ["Created"] = Format.Iso(c.Record.Created), ["Mounted"] = c.Mounted && !c.Dead, ["DeadMount"] = c.Dead, ["MergedDir"] = c.MergedPath, ["UpperSize"] = c.UpperSize,
                        });
                    Out.WriteLine(Format.Json(arr));
                }
                else if (a.Flag("-q", "--quiet")) foreach (var c in list) Out.WriteLine(Digest.Short(c.Record.Id));
                else Out.Write(Format.Table(["CONTAINER ID", "NAME", "IMAGE", "CREATED", "MOUNTED", "SIZE"], list.Select(c => new[]
                {
                    Digest.Short(c.Record.Id), c.Record.Name ?? "", c.ImageTags.FirstOrDefault() ?? Digest.Short(c.Record.ImageId),
                    Format.Ago(c.Record.Created), c.Dead ? "dead (daemon gone)" : c.Mounted ? c.MergedPath : "no", Format.Bytes(c.UpperSize),
                })));
                return 0;
            }
            case "mount":
            {
                a.Allow();
                using var ctx = open();
                Out.WriteLine(new ContainerOps(ctx).Mount(a.Need(0, "container mount ID")));
                return 0;
            }
            case "umount" or "unmount":
            {
                a.Allow();
                using var ctx = open();
                new ContainerOps(ctx).Unmount(a.Need(0, "container umount ID"));
                return 0;
            }
            case "diff":
            {
                a.Allow();
                using var ctx = open();
                var changes = new ContainerOps(ctx).Diff(a.Need(0, "container diff ID"));
                if (a.Flag("--json"))
                {
                    var arr = new JsonArray();
                    foreach (var ch in changes) arr.Add((JsonNode)new JsonObject { ["Kind"] = ch.Kind.ToString(), ["Path"] = ch.Path });
                    Out.WriteLine(Format.Json(arr));
                }
                else foreach (var ch in changes) Out.WriteLine($"{ch.Kind} {ch.Path}");
                return 0;
            }
            case "commit":
            {
                a.Allow("-m", "--message");
                string id = a.Need(0, "container commit ID [NAME[:TAG]] [--message M]");
                string? name = a.Positionals.Count > 1 ? a.Positionals[1] : null;
                using var ctx = open();
                var (image, _) = new ContainerOps(ctx).Commit(id, name, a.Value("-m", "--message"));
                Out.WriteLine(image);
                return 0;
            }
            case "export":
            {
                a.Allow("-o", "--output");
                using var ctx = open();
                new ContainerOps(ctx).Export(a.Need(0, "container export ID -o FILE"), a.Value("-o", "--output") ?? "-");
                return 0;
            }
            case "rm" or "remove":
            {
                a.Allow("-f", "--force");
                if (a.Positionals.Count == 0) throw new UsageException("usage: unionfs container rm ID...");
                using var ctx = open();
                foreach (var r in a.Positionals) Out.WriteLine(new ContainerOps(ctx).Remove(r));
                return 0;
            }
            default: throw new UsageException($"unknown command 'container {verb}' (see unionfs container --help)");
        }
    }

    // ---- system ----

    static int SystemVerbs(string verb, Args a, Func<EngineContext> open)
    {
        switch (verb)
        {
            case "df":
            {
                a.Allow("-v", "--verbose");
                using var ctx = open();
                var df = new DiskUsageReport(ctx).Compute();
                Out.Write(a.Flag("--json") ? Format.Json(df.ToJson()) + "\n" : df.ToText(a.Flag("-v", "--verbose")));
                return 0;
            }
            case "gc" or "prune":
            {
                a.Allow();
                using var ctx = open();
                var r = ctx.Store.CollectGarbage();
                Out.WriteLine($"Removed {r.Layers} layers, {r.Blobs} blobs, {r.OrphanDirs} orphaned directories, {r.StaleTemps} leftovers of interrupted operations");
                Out.WriteLine($"Total reclaimed space: {Format.Bytes(r.BytesFreed)}");
                return 0;
            }
            case "fsck":
            {
                a.Allow();
                using var ctx = open();
                var layers = ctx.Store.ListLayers();
                var p = ctx.NewProgress("Verifying layers", layers.Sum(l => l.TarSize));
                var problems = ctx.Store.Verify(onBytes: p.Add);
                p.Finish($"{layers.Count} layers checked");
                foreach (var pr in problems) Out.WriteLine($"{pr.Object}: {pr.Problem}");
                if (problems.Count == 0) Out.WriteLine($"ok: {layers.Count} layers, {ctx.Store.ListImages().Count} images verified");
                return problems.Count == 0 ? 0 : 1;
            }
            case "migrate":
            {
                a.Allow("--tag");
                string dir = a.Need(0, "system migrate LEGACY_DIR");
                using var ctx = open();
                new LegacyMigrator(ctx, Out).Migrate(dir);
                return 0;
            }
            default: throw new UsageException($"unknown command 'system {verb}' (see unionfs system --help)");
        }
    }

    static JsonArray Strings(IEnumerable<string> items)
    {
        var arr = new JsonArray();
        foreach (var s in items) arr.Add((JsonNode)JsonValue.Create(s));
        return arr;
    }
}
