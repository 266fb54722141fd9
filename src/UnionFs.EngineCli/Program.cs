namespace UnionFs.EngineCli;

/// <summary>unionfs-engine VERB ...: what `unionfs image|container|system|pull|push ...` runs.</summary>
static class Program
{
    static int Main(string[] args)
    {
        if (args.Length == 0)
        {
            Console.Error.WriteLine("usage: unionfs image|container|system ... | pull REF | push IMAGE [REF] (see unionfs --help)");
            return 2;
        }
        return UnionFs.Engine.Cli.EngineCli.Run(args);
    }
}
