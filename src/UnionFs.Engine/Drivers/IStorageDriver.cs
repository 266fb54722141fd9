namespace UnionFs.Engine.Drivers;

/// <summary>
/// Mounts a container's root filesystem: the image's layer directories (read-only, topmost first),
/// the container's upper and work directories, on a target directory. Layers are in overlayfs's
/// on-disk format, so the same directories work with our FUSE union and with kernel overlayfs.
/// </summary>
public interface IStorageDriver
{
    string Name { get; }
    void Mount(IReadOnlyList<string> lowers, string upper, string work, string target);
    void Unmount(string target);
}

public static class StorageDrivers
{
    public const string EnvVar = "UNIONFS_STORAGE_DRIVER";

    /// <summary>"fuse" (default: `unionfs mount`, our FUSE union) or "overlay" (kernel overlayfs, needs CAP_SYS_ADMIN).</summary>
    public static IStorageDriver Create(string? name) => (name ?? Environment.GetEnvironmentVariable(EnvVar) ?? "fuse") switch
    {
        "fuse" or "unionfs" => new FuseDriver(),
        "overlay" or "overlayfs" => new OverlayDriver(),
        var other => throw new StoreException($"unknown storage driver '{other}' (use fuse or overlay)"),
    };

    /// <summary>The mount option string shared by both drivers (fuse-overlayfs syntax); fails before mount(2) would.</summary>
    internal static string Options(IReadOnlyList<string> lowers, string upper, string work)
    {
        foreach (var p in lowers.Append(upper).Append(work))
            if (p.Contains(':') || p.Contains(','))
                throw new StoreException($"mount: path {p} contains ':' or ',' which the lowerdir syntax cannot express");
        string options = $"lowerdir={string.Join(':', lowers)},upperdir={upper},workdir={work}";
        // mount(2) takes at most one page of options (see docker's overlay2 short-link scheme).
        if (options.Length >= 4000) throw new StoreException($"mount: {lowers.Count} layers make the option string too long ({options.Length} bytes)");
        return options;
    }
}
