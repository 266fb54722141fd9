using System.Globalization;
using UnionFs.Engine.Cli;

namespace UnionFs.Engine.Registry;

/// <summary>`unionfs pull REF` and `unionfs push IMAGE [REF]` (called from <see cref="EngineCli"/>).</summary>
public static class RegistryCli
{
    static readonly string[] Options = ["--user", "--creds", "--authfile", "--tls-verify", "--platform", "--parallel", "--chunk-size"];

    public static int Pull(Args a, Func<EngineContext> open)
    {
        a.Allow(Options);
        string reference = a.Need(0, "pull REF [--user U:P] [--tls-verify=false] [--platform OS/ARCH]");
        if (a.Positionals.Count > 1) throw new UsageException("usage: unionfs pull REF");
        var opts = ParseOptions(a);
        using var ctx = open();
        var result = Run(reference, () => new Puller(ctx, opts, Console.Out).Pull(reference));
        Console.Out.WriteLine(result.ImageId);
        return 0;
    }

    public static int Push(Args a, Func<EngineContext> open)
    {
        a.Allow(Options);
        string image = a.Need(0, "push IMAGE [REF] [--user U:P] [--tls-verify=false] [--chunk-size BYTES]");
        if (a.Positionals.Count > 2) throw new UsageException("usage: unionfs push IMAGE [REF]");
        string? dest = a.Positionals.Count > 1 ? a.Positionals[1] : null;
        var opts = ParseOptions(a);
        using var ctx = open();
        Run(dest ?? image, () => new Pusher(ctx, opts, Console.Out).Push(image, dest));
        return 0;
    }

    static RegistryOptions ParseOptions(Args a)
    {
        var o = new RegistryOptions();
        if (a.Value("--user", "--creds") is { } user) o.Credentials = Credentials.FromUserOption(user);
        o.AuthFile = a.Value("--authfile");
        if (a.Value("--tls-verify") is { } tv)
            o.TlsVerify = tv.ToLowerInvariant() switch
            {
                "true" or "1" or "yes" => true,
                "false" or "0" or "no" => false,
                _ => throw new UsageException($"--tls-verify={tv}: expected true or false"),
            };
        if (a.Value("--platform") is { } p) o.Platform = ManifestSelection.Parse(p);
        if (a.Value("--parallel") is { } n)
            o.Parallel = int.TryParse(n, NumberStyles.None, CultureInfo.InvariantCulture, out int v) && v is > 0 and <= 32 ? v : throw new UsageException("--parallel: a number from 1 to 32");
        if (a.Value("--chunk-size") is { } c) o.ChunkSize = ParseSize(c);
        return o;
    }

    /// <summary>"1048576", "64k", "16M", "1G"; 0 disables chunked uploads.</summary>
    public static long ParseSize(string s)
    {
        long mult = 1;
        string t = s.Trim();
        if (t.Length > 0 && char.IsLetter(t[^1]))
        {
            mult = char.ToLowerInvariant(t[^1]) switch { 'k' => 1L << 10, 'm' => 1L << 20, 'g' => 1L << 30, _ => throw new UsageException($"size '{s}': unknown unit") };
            t = t[..^1];
        }
        return long.TryParse(t, NumberStyles.None, CultureInfo.InvariantCulture, out long v) ? v * mult : throw new UsageException($"size '{s}': not a number");
    }

    /// <summary>Network failures become one line naming the reference; everything else flows to EngineCli's handlers.</summary>
    static T Run<T>(string reference, Func<T> body)
    {
        try { return body(); }
        catch (HttpRequestException e) { throw new RegistryException($"{reference}: {RegistryClient.Message(e)}", e); }
        catch (UriFormatException e) { throw new RegistryException($"{reference}: not a usable registry address ({e.Message})", e); }
        catch (TaskCanceledException e) { throw new RegistryException($"{reference}: timed out ({e.Message})", e); }
        catch (OperationCanceledException e) { throw new RegistryException($"{reference}: cancelled ({e.Message})", e); }
    }
}
