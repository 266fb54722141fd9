using System.Reflection;
using Microsoft.Extensions.Logging;
using UnionFs.Fuse;
using UnionFs.Fuse.Loopback;

namespace UnionFs.Cli;

static class Program
{
    const string Usage = """
        Usage: unionfs COMMAND [ARGS]

        Union mounts (overlayfs semantics over FUSE):
          mount [-f] [-d] -o lowerdir=L1:L2,upperdir=U,workdir=W[,OPTS] MNT
                                   mount a union; L1 is the topmost lower layer.
                                   Without upperdir the mount is read-only.
          umount MNT               unmount (fusermount3 -u MNT works too)
          -o OPTS MNT              the same as mount (fuse-overlayfs command line)
          SOURCE MNT -o OPTS       the same, as mount.fuse3 runs it for "mount -t fuse.unionfs"

        Images and containers (a content-addressed layer store; see unionfs image --help):
          image load|save|import|ls|history|inspect|tag|rm ...
          container create|ls|mount|umount|diff|commit|export|rm ...
          system df|gc|fsck|migrate ...
          pull REF, push IMAGE [REF]   move images through an OCI registry

        Options:
          -f, --foreground         stay in the foreground
          -d, --debug              log every FUSE request and reply
          -h, --help               this text
          -V, --version            print the version

        Run as fuse-overlayfs (a symlink of that name) it takes fuse-overlayfs's command line.
        """;

    static int Main(string[] args)
    {
        Daemon.DetachIfDaemonChild();
        try
        {
            // The name it was run as (argv[0]), not ProcessPath, which resolves a fuse-overlayfs symlink to unionfs.
            string self = Path.GetFileName(Environment.GetCommandLineArgs().FirstOrDefault() ?? "unionfs");
            if (self == "fuse-overlayfs" || IsMountHelperCall(args)) return MountCommand.Run(args);
            if (args.Length == 0) { Console.Error.Write(Usage); return 2; }
            return args[0] switch
            {
                "-h" or "--help" or "help" => Help(),
                "-V" or "--version" or "version" => Version(),
                "mount" => MountCommand.Run(args[1..]),
                "umount" or "unmount" => Umount(args[1..]),
                "loopback" => Loopback(args[1..]),
                "image" or "container" or "system" or "pull" or "push" => EngineCommand.Exec(args),
                _ => Fail($"unknown command '{args[0]}' (see unionfs --help)", 2),
            };
        }
        catch (UsageException e) { return Fail(e.Message, 2); }
        catch (IOException e) { return Fail(e.Message, 1); }
    }

    /// <summary>
    /// "-o OPTS MNT" (fuse-overlayfs's command line) or "SOURCE MNT -o OPTS", the form mount.fuse3 uses for
    /// "mount -t fuse.unionfs SOURCE MNT -o OPTS" and fstab entries. Verbs never take -o, so this cannot shadow one.
    /// </summary>
    static bool IsMountHelperCall(string[] args) =>
        args.Length > 0 && (args[0].StartsWith("-o") || (!IsVerb(args[0]) && Array.Exists(args, a => a.StartsWith("-o"))));

    static bool IsVerb(string a) => a is "mount" or "umount" or "unmount" or "loopback" or "image" or "container" or "system" or "pull" or "push";

    internal static int Fail(string message, int code)
    {
        // A daemon child forked before validation (native/fork_daemon.c) tells its waiting parent.
        if (Daemon.ReportFailure("unionfs: " + message)) return code;
        Console.Error.WriteLine("unionfs: " + message);
        return code;
    }

    static int Help() { Console.Out.Write(Usage); return 0; }

    static int Version()
    {
        var v = typeof(Program).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "0";
        Console.Out.WriteLine($"unionfs version {v.Split('+')[0]}");
        Console.Out.WriteLine("FUSE protocol 7.45 (kernel interface implemented in-process)");
        return 0;
    }

    static int Umount(string[] args)
    {
        if (args.Length != 1) throw new UsageException("usage: unionfs umount MNT");
        string mountpoint = Path.GetFullPath(args[0]);
        var daemons = Daemon.ServingProcesses(mountpoint);
        FuseMount.Unmount(mountpoint);
        // Like umount of a kernel filesystem, return once the daemon has let go of its layers, so the caller
        // can unmount or delete what lies beneath them right away.
        Daemon.WaitForExit(daemons, TimeSpan.FromSeconds(10));
        return 0;
    }

    /// <summary>unionfs loopback [-f] [-d] SRC MNT: the protocol layer's reference filesystem (not a union).</summary>
    static int Loopback(string[] args)
    {
        var flags = CommonFlags.Parse(args, out var rest);
        if (rest.Count != 2) throw new UsageException("usage: unionfs loopback [-f] [-d] SRC MNT");
        string src = Path.GetFullPath(rest[0]), mnt = Path.GetFullPath(rest[1]);
        if (!Directory.Exists(src)) throw new UsageException($"loopback: source {src}: no such directory");
        if (!Directory.Exists(mnt)) throw new UsageException($"loopback: mountpoint {mnt}: no such directory");
        var log = Logging.Create(flags.Debug);
        var options = new FuseMountOptions
        {
            FsName = src, Subtype = "unionfs-loopback", AllowOther = true, DefaultPermissions = true,
            NoSuid = false, NoDev = false, Debug = flags.Debug,
        };
        return Daemon.Run(live => FuseSession.Start(mnt, new LoopbackFileSystem(src), options, log, live), flags.Foreground, log);
    }
}

sealed class UsageException(string message) : Exception(message);

record struct CommonFlags(bool Foreground, bool Debug)
{
    /// <summary>Takes -f/-d out of <paramref name="args"/>; what remains is returned in <paramref name="rest"/>.</summary>
    public static CommonFlags Parse(string[] args, out List<string> rest)
    {
        var flags = new CommonFlags();
        rest = new List<string>();
        foreach (var a in args)
        {
            switch (a)
            {
                case "-f" or "--foreground": flags.Foreground = true; break;
                case "-d" or "--debug": flags.Debug = true; flags.Foreground = true; break;
                default: rest.Add(a); break;
            }
        }
        return flags;
    }
}

/// <summary>
/// Log lines go straight to stderr, one synchronous write each. Microsoft.Extensions.Logging.Console cost about
/// 5 ms at every start (options binding, formatter set-up, a queue-processing thread) in both the mount command
/// and its daemon child, and the daemon only writes here with -f/-d (otherwise stderr is /dev/null).
/// </summary>
static class Logging
{
    public static ILogger Create(bool debug, string category = "unionfs") =>
        new StderrLogger(category, debug ? LogLevel.Debug : LogLevel.Warning);

    sealed class StderrLogger(string category, LogLevel minimum) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(LogLevel level) => level >= minimum && level != LogLevel.None;

        public void Log<TState>(LogLevel level, EventId id, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (!IsEnabled(level)) return;
            string lvl = level switch
            {
                LogLevel.Trace => "trce", LogLevel.Debug => "dbug", LogLevel.Information => "info",
                LogLevel.Warning => "warn", LogLevel.Error => "fail", _ => "crit",
            };
            string line = $"{DateTime.Now:HH:mm:ss.ffffff} {lvl}: {category}[{id.Id}] {formatter(state, exception)}";
            if (exception is not null) line += Environment.NewLine + exception;
            Console.Error.WriteLine(line);
        }
    }
}
