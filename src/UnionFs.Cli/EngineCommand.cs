using System.Runtime.InteropServices;
using UnionFs.Posix;

namespace UnionFs.Cli;

/// <summary>
/// The image, container, system, pull and push verbs are a second executable, unionfs-engine, installed beside this
/// one; this one execs it. The reason is the mount daemon's memory. A NativeAOT process maps and faults in the pages
/// of the code it runs and of their neighbours, and rebuilds the type data of everything its executable contains at
/// start. The engine (layer store, archives, registry client, SQLite, JSON) was two thirds of one executable, and a
/// daemon that never runs it paid for it: 10.0 MiB resident when fresh, 5.7 MiB without it.
/// </summary>
static class EngineCommand
{
    public const string ExecutableName = "unionfs-engine";

    /// <summary>Replaces this process with the engine, given the same arguments: its exit status, signals and
    /// terminal are then the caller's own, as if it had been run directly.</summary>
    public static unsafe int Exec(string[] args)
    {
        string self = Environment.ProcessPath ?? "unionfs";
        string engine = Path.Combine(Path.GetDirectoryName(self) ?? ".", ExecutableName);
        if (!File.Exists(engine))
            return Program.Fail($"{args[0]}: {engine}: no such file (the engine executable is installed beside {self}; `make install` installs both)", 1);
        var argv = new nint[args.Length + 2]; // NULL-terminated
        argv[0] = Marshal.StringToCoTaskMemUTF8(engine);
        for (int i = 0; i < args.Length; i++) argv[i + 1] = Marshal.StringToCoTaskMemUTF8(args[i]);
        fixed (nint* p = argv) Libc.execv(engine, p);
        return Program.Fail($"{args[0]}: exec {engine}: {Errno.Describe(Marshal.GetLastPInvokeError())}", 1);
    }
}
