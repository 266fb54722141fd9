using System.Diagnostics;
using UnionFs.Posix;

namespace UnionFs.Fuse;

/// <summary>Attaching a /dev/fuse descriptor to a mountpoint, and detaching it.</summary>
public static unsafe class FuseMount
{
    /// <summary>
    /// Opens /dev/fuse and mounts it on <paramref name="mountpoint"/>: mount(2) as root, fusermount3 otherwise.
    /// A dead FUSE mount left on the mountpoint (ENOTCONN) is detached first. Returns the device fd.
    /// </summary>
    public static int Mount(string mountpoint, FuseMountOptions options)
    {
        CleanUpDeadMount(mountpoint);
        return Libc.getuid() == 0 ? MountDirect(mountpoint, options) : MountWithFusermount(mountpoint, options);
    }

    static int MountDirect(string mountpoint, FuseMountOptions options)
    {
        int fd = PosixException.Check(Libc.open("/dev/fuse", Libc.O_RDWR | Libc.O_CLOEXEC, 0), "open", "/dev/fuse");
        string data = options.KernelOptions(fd, Libc.getuid(), Libc.getgid());
        if (Libc.mount(options.FsName, mountpoint, "fuse." + options.Subtype, options.MountFlags(), data) < 0)
        {
            int err = Errno.Last;
            Libc.close(fd);
            throw new PosixException(err, "mount", mountpoint);
        }
        return fd;
    }

    static int MountWithFusermount(string mountpoint, FuseMountOptions options)
    {
        int* sv = stackalloc int[2];
        PosixException.Check(Libc.socketpair(Libc.AF_UNIX, Libc.SOCK_STREAM, 0, sv), "socketpair");
        try
        {
            // Our end must not leak into fusermount3; its end must be inherited (no CLOEXEC).
            Libc.fcntl(sv[1], Libc.F_SETFD, Libc.FD_CLOEXEC);
            var psi = new ProcessStartInfo("fusermount3") { UseShellExecute = false, RedirectStandardError = true };
            psi.ArgumentList.Add("-o"); psi.ArgumentList.Add(options.FusermountOptions());
            psi.ArgumentList.Add("--"); psi.ArgumentList.Add(mountpoint);
            psi.Environment["_FUSE_COMMFD"] = sv[0].ToString();
            using var proc = Process.Start(psi) ?? throw new IOException("fusermount3: could not start");
            Libc.close(sv[0]); sv[0] = -1;
            int fd = Libc.ReceiveFd(sv[1]);
            string stderr = proc.StandardError.ReadToEnd();
            proc.WaitForExit();
            if (fd < 0)
                throw new IOException($"mount {mountpoint}: fusermount3 failed: {stderr.Trim()}");
            Libc.fcntl(fd, Libc.F_SETFD, Libc.FD_CLOEXEC);
            return fd;
        }
        finally
        {
            if (sv[0] >= 0) Libc.close(sv[0]);
            Libc.close(sv[1]);
        }
    }

    /// <summary>Unmounts; a busy mount is detached lazily so the daemon can still finish.</summary>
    public static void Unmount(string mountpoint, bool lazy = false)
    {
        if (Libc.getuid() != 0)
        {
            var psi = new ProcessStartInfo("fusermount3") { UseShellExecute = false, RedirectStandardError = true };
            psi.ArgumentList.Add(lazy ? "-uz" : "-u"); psi.ArgumentList.Add(mountpoint);
            using var p = Process.Start(psi)!;
            string err = p.StandardError.ReadToEnd();
            p.WaitForExit();
            if (p.ExitCode != 0) throw new IOException($"umount {mountpoint}: {err.Trim()}");
            return;
        }
        if (Libc.umount2(mountpoint, lazy ? Libc.MNT_DETACH : 0) == 0) return;
        int e = Errno.Last;
        if (e == Errno.EBUSY && !lazy && Libc.umount2(mountpoint, Libc.MNT_DETACH) == 0) return;
        throw new PosixException(e, "umount", mountpoint);
    }

    /// <summary>A daemon that died leaves a mount answering ENOTCONN; detach it so the path can be reused.</summary>
    public static bool CleanUpDeadMount(string mountpoint)
    {
        if (Stat(mountpoint, 0, out _) != Errno.ENOTCONN) return false;
        Unmount(mountpoint, lazy: true);
        return true;
    }

    /// <summary>statx(2) of a path with the given AT_ flags: 0 or an errno.</summary>
    internal static int Stat(string path, int flags, out Statx st)
    {
        var bytes = System.Text.Encoding.UTF8.GetBytes(path + "\0");
        fixed (byte* p = bytes) fixed (Statx* s = &st)
            return Libc.statx(Libc.AT_FDCWD, p, flags, Statx.BasicStats, s) == 0 ? 0 : Errno.Last;
    }
}
