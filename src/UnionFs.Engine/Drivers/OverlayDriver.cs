using UnionFs.Posix;

namespace UnionFs.Engine.Drivers;

/// <summary>Kernel overlayfs: mount -t overlay overlay -o lowerdir=...,upperdir=...,workdir=... TARGET.</summary>
public sealed class OverlayDriver : IStorageDriver
{
    public string Name => "overlay";

    public void Mount(IReadOnlyList<string> lowers, string upper, string work, string target)
    {
        string options = StorageDrivers.Options(lowers, upper, work);
        if (Libc.mount("overlay", target, "overlay", 0, options) < 0)
            throw new PosixException(Errno.Last, "mount -t overlay", target);
    }

    public void Unmount(string target) => MountTable.Unmount(target);
}
