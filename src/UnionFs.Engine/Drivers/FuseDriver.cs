using System.Diagnostics;

namespace UnionFs.Engine.Drivers;

/// <summary>
/// Our FUSE union, run as its own daemon per mount: `unionfs mount -o lowerdir=...,upperdir=...,workdir=... TARGET`
/// returns once the mount answers (the daemon stays in the background) and reports failure through its exit status.
/// </summary>
public sealed class FuseDriver : IStorageDriver
{
    public string Name => "fuse";

    public void Mount(IReadOnlyList<string> lowers, string upper, string work, string target)
    {
        // The engine reads metadata-only copies correctly (TreeSources follows the marker to the data below), so
        // chmod and chown in a container cost no data copy.
        string options = StorageDrivers.Options(lowers, upper, work) + ",metacopy=on";
        int rc = Run(Binary(), "mount", "-o", options, target);
        if (rc != 0) throw new StoreException($"mount {target}: '{Binary()} mount' failed with exit status {rc}");
    }

    public void Unmount(string target)
    {
        if (!MountTable.IsMountPoint(target)) return;
        if (MountTable.IsDead(target)) { MountTable.Unmount(target); return; }
        int rc = Run(Binary(), "umount", target);
        if (rc != 0) throw new StoreException($"umount {target}: '{Binary()} umount' failed with exit status {rc}");
    }

    /// <summary>UNIONFS_BIN, else the unionfs executable beside this one (the engine is installed beside the
    /// executable that runs it), else `unionfs` on PATH.</summary>
    public static string Binary()
    {
        if (Environment.GetEnvironmentVariable("UNIONFS_BIN") is { Length: > 0 } env) return env;
        if (Path.GetDirectoryName(Environment.ProcessPath) is { } own && File.Exists(Path.Combine(own, "unionfs")))
            return Path.Combine(own, "unionfs");
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries))
            if (File.Exists(Path.Combine(dir, "unionfs"))) return Path.Combine(dir, "unionfs");
        throw new StoreException("fuse driver: cannot find the unionfs executable (set UNIONFS_BIN, or use --storage-driver overlay)");
    }

    static int Run(string exe, params string[] args)
    {
        var psi = new ProcessStartInfo(exe) { UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        // stdio is inherited, not redirected: the daemon keeps running after its parent exits, and
        // waiting for EOF on a pipe it inherited would hang.
        using var p = Process.Start(psi) ?? throw new StoreException($"cannot start {exe}");
        p.WaitForExit();
        return p.ExitCode;
    }
}
