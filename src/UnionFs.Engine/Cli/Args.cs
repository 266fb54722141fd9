namespace UnionFs.Engine.Cli;

/// <summary>
/// The verb's arguments: positionals and options, options allowed anywhere (`image ls --json`,
/// `image save busybox -o x.tar`). Options that take a value are declared, so `-o FILE` is never
/// mistaken for a positional.
/// </summary>
public sealed class Args
{
    static readonly HashSet<string> WithValue = ["--root", "--storage-driver", "-o", "--output", "--name", "-m", "--message", "--format", "--tag", "-t", "--log-level",
        "--user", "--creds", "--authfile", "--platform", "--parallel", "--chunk-size"];

    public List<string> Positionals { get; } = new();
    readonly Dictionary<string, string> _values = new();
    readonly HashSet<string> _flags = new();

    public Args(IEnumerable<string> args)
    {
        using var it = args.GetEnumerator();
        bool rest = false;
        while (it.MoveNext())
        {
            string a = it.Current;
            if (rest || a == "-" || !a.StartsWith('-')) { Positionals.Add(a); continue; }
            if (a == "--") { rest = true; continue; }
            int eq = a.IndexOf('=');
            if (a.StartsWith("--") && eq > 0) { _values[a[..eq]] = a[(eq + 1)..]; continue; }
            if (WithValue.Contains(a))
            {
                if (!it.MoveNext()) throw new UsageException($"option {a} needs a value");
                _values[a] = it.Current;
                continue;
            }
            _flags.Add(a);
        }
    }

    public string? Value(params string[] names)
    {
        foreach (var n in names) if (_values.TryGetValue(n, out var v)) return v;
        return null;
    }

    public bool Flag(params string[] names) => names.Any(_flags.Contains);

    /// <summary>Refuses options the verb does not know, so a typo is an error rather than ignored.</summary>
    public void Allow(params string[] known)
    {
        var all = new HashSet<string>(known) { "--root", "--storage-driver", "--debug", "--json", "-q", "--quiet", "--log-level" };
        foreach (var k in _values.Keys.Concat(_flags))
            if (!all.Contains(k)) throw new UsageException($"unknown option {k}");
    }

    public string Need(int index, string usage) =>
        index < Positionals.Count ? Positionals[index] : throw new UsageException("usage: unionfs " + usage);
}

public sealed class UsageException(string message) : Exception(message);
