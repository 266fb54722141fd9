using System.Formats.Tar;
using System.Text;
using UnionFs.Engine.Cli;
using UnionFs.Engine.Drivers;
using UnionFs.Posix;
using UnionFs.Store.Fs;

[assembly: CollectionBehavior(DisableTestParallelization = true)] // the CLI tests swap Console.Out/Error

namespace UnionFs.Engine.Tests;

/// <summary>A scratch store root and a small root filesystem, torn down afterwards (unmounting anything left).</summary>
public sealed class Scratch : IDisposable
{
    public string Path { get; } = System.IO.Path.Combine("/var/tmp", "unionfs-etest-" + Guid.NewGuid().ToString("N")[..12]);
    public string Root => this["store"];
    public string this[string rel] => System.IO.Path.Combine(Path, rel);

    public Scratch() { Directory.CreateDirectory(Path); }

    public EngineContext Open(IStorageDriver? driver = null)
    {
        var ctx = new EngineContext(new Store.Store(Root), driver ?? new OverlayDriver());
        ctx.NewProgress = (label, total) => new Progress(label, total, TextWriter.Null, tty: false);
        return ctx;
    }

    /// <summary>A tiny rootfs with fixed times, so the same content always gives the same layer.</summary>
    public string MakeRootfs(string name = "rootfs")
    {
        string r = this[name];
        Write(r, "bin/tool", "#!/bin/sh\necho tool\n");
        Write(r, "etc/passwd", "root:x:0:0::/root:/bin/sh\n");
        Write(r, "etc/hostname", "box\n");
        Directory.CreateDirectory(System.IO.Path.Combine(r, "tmp"));
        File.CreateSymbolicLink(System.IO.Path.Combine(r, "bin/sh"), "tool");
        FixTimes(r);
        return r;
    }

    public static void Write(string root, string rel, string content)
    {
        string p = System.IO.Path.Combine(root, rel);
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(p)!);
        File.WriteAllText(p, content);
    }

    public static unsafe void Whiteout(string path)
    {
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(path)!);
        fixed (byte* p = FileOps.Z(path)) PosixException.Check(Libc.mknodat(Libc.AT_FDCWD, p, Libc.S_IFCHR, 0), "mknod", path);
    }

    /// <summary>Sets every mtime below root (symlinks included) to a fixed instant.</summary>
    public static unsafe void FixTimes(string root)
    {
        var times = stackalloc Timespec[2];
        times[0] = times[1] = new Timespec { Sec = 1_700_000_000 };
        foreach (var p in Directory.EnumerateFileSystemEntries(root, "*", SearchOption.AllDirectories).Append(root).OrderByDescending(x => x.Length))
            fixed (byte* b = FileOps.Z(p)) Libc.utimensat(Libc.AT_FDCWD, b, times, Libc.AT_SYMLINK_NOFOLLOW);
    }

    public void Dispose()
    {
        foreach (var line in File.ReadAllLines("/proc/self/mountinfo"))
        {
            var mp = line.Split(' ')[4];
            if (mp.StartsWith(Path, StringComparison.Ordinal)) Libc.umount2(mp, Libc.MNT_DETACH);
        }
        try { FileOps.RemoveTree(Path); } catch { }
    }
}

/// <summary>Runs the CLI in-process and captures what it prints.</summary>
public static class CliRunner
{
    public static (int Code, string Out, string Err) Run(params string[] args)
    {
        var (oldOut, oldErr) = (Console.Out, Console.Error);
        var (o, e) = (new StringWriter(), new StringWriter());
        Console.SetOut(o); Console.SetError(e);
        Environment.SetEnvironmentVariable("UNIONFS_PROGRESS", "plain");
        try { return (EngineCli.Run(args), o.ToString(), e.ToString()); }
        finally { Console.SetOut(oldOut); Console.SetError(oldErr); }
    }
}
