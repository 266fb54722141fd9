using UnionFs.Fuse;
using UnionFs.Overlay;
using UnionFs.Posix;

namespace UnionFs.Cli;

/// <summary>
/// unionfs mount [-f] [-d] -o OPTS MNT, and the fuse-overlayfs command line (-o OPTS MNT) that container tools use
/// as a mount_program. Validation happens before anything is mounted, so a bad call leaves nothing behind.
/// </summary>
static class MountCommand
{
    public static int Run(string[] args)
    {
        var flags = CommonFlags.Parse(args, out var rest);
        var optionStrings = new List<string>();
        var positional = new List<string>();
        for (int i = 0; i < rest.Count; i++)
        {
            string a = rest[i];
            if (a == "-o")
            {
                if (++i >= rest.Count) throw new UsageException("mount: -o needs an option string");
                optionStrings.Add(rest[i]);
            }
            else if (a.StartsWith("-o")) optionStrings.Add(a[2..]);
            else if (a is "--version" or "-V") { Console.Out.WriteLine("fuse-overlayfs: unionfs 0.1.0 (compatible)"); Console.Out.WriteLine("FUSE library version 3.14 (in-process protocol 7.45)"); return 0; }
            else if (a is "--help" or "-h") { Console.Out.WriteLine("usage: unionfs mount [-f] [-d] -o lowerdir=L1:L2,upperdir=U,workdir=W MNT"); return 0; }
            else if (a.StartsWith('-')) throw new UsageException($"mount: unknown flag {a}");
            else positional.Add(a);
        }
        // fuse-overlayfs also accepts "source mountpoint"; the source is informational there too.
        if (positional.Count is < 1 or > 2) throw new UsageException("usage: unionfs mount [-f] [-d] -o lowerdir=L1:L2,upperdir=U,workdir=W MNT");
        string mountpoint = Path.GetFullPath(positional[^1]);
        if (optionStrings.SelectMany(o => o.Split(',')).Contains("remount")) return Remount(optionStrings, mountpoint);

        bool asRoot = Libc.getuid() == 0;
        OverlayOptions options;
        try { options = OverlayOptions.Parse(optionStrings, asRoot); }
        catch (ArgumentException e) { throw new UsageException("mount: " + e.Message); }
        catch (FormatException e) { throw new UsageException("mount: bad option value: " + e.Message); }
        if (options.Debug) flags = flags with { Debug = true, Foreground = true };
        Validate(options, mountpoint);
        if (options.Writable && IsReadOnlyFs(options.UpperDir!))
        {
            // As kernel overlayfs does: the union is still useful, just not writable.
            Daemon.Warn($"unionfs: upperdir {options.UpperDir} is on a read-only filesystem; mounting read-only", flags.Foreground);
            options.ReadOnly = true;
        }

        var log = Logging.Create(flags.Debug);
        var fuseOptions = new FuseMountOptions
        {
            FsName = options.FsName ?? "unionfs",
            Subtype = "unionfs",
            AllowOther = options.AllowOther,
            DefaultPermissions = options.DefaultPermissions,
            ReadOnly = !options.Writable,
            NoSuid = options.NoSuid,
            NoDev = options.NoDev,
            NoExec = options.NoExec,
            Atime = options.Atime,
            NoDirAtime = options.NoDirAtime,
            Context = options.Context,
            Workers = options.Workers,
            PosixAcl = options.Acl,
            Debug = flags.Debug,
        };
        return Daemon.Run(live =>
        {
            // Layers are opened here, in the process that serves them, before the mount goes live.
            var fs = new OverlayFileSystem(options, log);
            fuseOptions.PassthroughStackDepth = fs.PassthroughStackDepth;
            try { return FuseSession.Start(mountpoint, fs, fuseOptions, log, live); }
            catch { fs.Dispose(); throw; }
        }, flags.Foreground, log);
    }

    /// <summary>
    /// "mount -o remount,ro MNT" reaches us through mount.fuse3 with the union's options beside it: only the
    /// mount's flags can change (read-only, nosuid, nodev, noexec); the kernel applies them to the live mount, the
    /// daemon keeps serving it. The atime mode stays: the daemon applies it to the upper layer (see
    /// OverlayFileSystem.OpenUpperMount) and learns nothing of a remount, so a different one is refused.
    /// </summary>
    static unsafe int Remount(List<string> optionStrings, string mountpoint)
    {
        int fd = Libc.open(mountpoint, Libc.O_PATH | Libc.O_DIRECTORY | Libc.O_CLOEXEC, 0);
        StatVfs now = default;
        int r = fd < 0 ? -1 : Libc.fstatvfs(fd, &now);
        if (fd >= 0) Libc.close(fd);
        if (r < 0) throw new UsageException($"remount {mountpoint}: {Errno.Describe(Errno.Last)}");
        const ulong ST_NOATIME = 1024, ST_NODIRATIME = 2048, ST_RELATIME = 4096;
        var atime = (now.Flag & ST_NOATIME) != 0 ? AtimeMode.NoAtime : (now.Flag & ST_RELATIME) != 0 ? AtimeMode.Relatime : AtimeMode.StrictAtime;
        ulong flags = Libc.MS_REMOUNT | FuseMountOptions.AtimeFlags(atime, (now.Flag & ST_NODIRATIME) != 0);
        foreach (var o in optionStrings.SelectMany(s => s.Split(',')))
        {
            flags = o switch
            {
                "ro" => flags | Libc.MS_RDONLY, "rw" => flags & ~Libc.MS_RDONLY,
                "nosuid" => flags | Libc.MS_NOSUID, "suid" => flags & ~Libc.MS_NOSUID,
                "nodev" => flags | Libc.MS_NODEV, "dev" => flags & ~Libc.MS_NODEV,
                "noexec" => flags | Libc.MS_NOEXEC, "exec" => flags & ~Libc.MS_NOEXEC,
                _ => flags,
            };
            AtimeMode? asked = o switch
            {
                "noatime" => AtimeMode.NoAtime, "relatime" or "atime" => AtimeMode.Relatime, "strictatime" => AtimeMode.StrictAtime,
                _ => null,
            };
            if (asked is { } a && a != atime)
                throw new UsageException($"remount {mountpoint}: the atime mode cannot change on a mounted union ({Name(atime)} now, {o} asked); unmount and mount again");
        }
        if (Libc.mount("unionfs", mountpoint, "fuse.unionfs", flags, null) == 0) return 0;
        throw new UsageException($"remount {mountpoint}: {Errno.Describe(Errno.Last)}");

        static string Name(AtimeMode m) => m switch { AtimeMode.NoAtime => "noatime", AtimeMode.StrictAtime => "strictatime", _ => "relatime" };
    }

    static unsafe bool IsReadOnlyFs(string path)
    {
        int fd = Libc.open(path, Libc.O_RDONLY | Libc.O_DIRECTORY | Libc.O_CLOEXEC, 0);
        if (fd < 0) return false;
        StatVfs s;
        int r = Libc.fstatvfs(fd, &s);
        Libc.close(fd);
        const ulong ST_RDONLY = 1;
        return r == 0 && (s.Flag & ST_RDONLY) != 0;
    }

    /// <summary>The reasons a mount must be refused, each one line naming the path.</summary>
    static void Validate(OverlayOptions o, string mountpoint)
    {
        static string Real(string p, string what)
        {
            var full = Path.GetFullPath(p);
            if (!Directory.Exists(full)) throw new UsageException($"mount: {what} {p}: no such directory");
            var info = new DirectoryInfo(full);
            return info.ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? full;
        }
        static bool Inside(string a, string b) => a == b || a.StartsWith(b.TrimEnd('/') + "/", StringComparison.Ordinal);

        var lowers = o.LowerDirs.Select(l => Real(l, "lowerdir")).ToList();
        string? upper = o.UpperDir is null ? null : Real(o.UpperDir, "upperdir");
        string? work = o.WorkDir is null ? null : Real(o.WorkDir, "workdir");
        string mnt = Real(mountpoint, "mountpoint");
        foreach (var l in lowers)
        {
            if (Inside(mnt, l)) throw new UsageException($"mount: mountpoint {mountpoint} is inside lowerdir {l}");
            if (upper is not null && Inside(upper, l)) throw new UsageException($"mount: upperdir {upper} is inside lowerdir {l}");
        }
        if (upper is not null)
        {
            if (Inside(mnt, upper)) throw new UsageException($"mount: mountpoint {mountpoint} is inside upperdir {upper}");
            if (Inside(work!, upper) || Inside(upper, work!)) throw new UsageException($"mount: upperdir {upper} and workdir {work} overlap");
        }
    }
}
