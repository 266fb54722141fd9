namespace UnionFs.Fuse;

/// <summary>When reading a file updates its access time, as the mount(8) options of the same names.</summary>
public enum AtimeMode { Relatime, NoAtime, StrictAtime }

/// <summary>How the kernel side of a FUSE mount is set up: mount(2) flags and the fuse option string.</summary>
public sealed class FuseMountOptions
{
    /// <summary>The first column of /proc/mounts.</summary>
    public string FsName { get; set; } = "unionfs";
    /// <summary>The type column becomes fuse.SUBTYPE.</summary>
    public string Subtype { get; set; } = "unionfs";
    public bool AllowOther { get; set; }
    /// <summary>The kernel checks permissions against the attributes we report (recommended).</summary>
    public bool DefaultPermissions { get; set; }
    public bool ReadOnly { get; set; }
    public bool NoSuid { get; set; } = true;
    public bool NoDev { get; set; } = true;
    public bool NoExec { get; set; }
    public AtimeMode Atime { get; set; }
    public bool NoDirAtime { get; set; }
    /// <summary>An LSM option passed through to the kernel (context=...).</summary>
    public string? Context { get; set; }
    public uint MaxRead { get; set; }
    /// <summary>Reader threads, each on its own cloned /dev/fuse descriptor.</summary>
    public int Workers { get; set; } = 4;
    /// <summary>Negotiate kernel POSIX ACL enforcement (needs DefaultPermissions).</summary>
    public bool PosixAcl { get; set; }
    /// <summary>FUSE passthrough stack depth: 0 = off, 1 = backing files on a plain fs, 2 = on a stacked fs.</summary>
    public uint PassthroughStackDepth { get; set; }
    /// <summary>One log line per request and reply.</summary>
    public bool Debug { get; set; }

    internal string KernelOptions(int fd, uint uid, uint gid)
    {
        var s = $"fd={fd},rootmode=40000,user_id={uid},group_id={gid}";
        if (AllowOther) s += ",allow_other";
        if (DefaultPermissions) s += ",default_permissions";
        if (MaxRead > 0) s += $",max_read={MaxRead}";
        if (Context is not null) s += $",context={Context}";
        return s;
    }

    internal ulong MountFlags()
    {
        ulong f = 0;
        if (ReadOnly) f |= Posix.Libc.MS_RDONLY;
        if (NoSuid) f |= Posix.Libc.MS_NOSUID;
        if (NoDev) f |= Posix.Libc.MS_NODEV;
        if (NoExec) f |= Posix.Libc.MS_NOEXEC;
        f |= AtimeFlags(Atime, NoDirAtime);
        return f;
    }

    /// <summary>The -o string for fusermount3 (it adds fd/rootmode/user_id/group_id itself).</summary>
    internal string FusermountOptions()
    {
        var parts = new List<string> { $"fsname={FsName}", $"subtype={Subtype}" };
        if (AllowOther) parts.Add("allow_other");
        if (DefaultPermissions) parts.Add("default_permissions");
        if (ReadOnly) parts.Add("ro");
        parts.Add(NoSuid ? "nosuid" : "suid");
        parts.Add(NoDev ? "nodev" : "dev");
        if (NoExec) parts.Add("noexec");
        parts.Add(Atime switch { AtimeMode.NoAtime => "noatime", AtimeMode.StrictAtime => "strictatime", _ => "relatime" });
        if (NoDirAtime) parts.Add("nodiratime");
        if (MaxRead > 0) parts.Add($"max_read={MaxRead}");
        return string.Join(',', parts);
    }

    /// <summary>The mount(2) flags of an atime mode (relatime is what the kernel gives when none is set).</summary>
    public static ulong AtimeFlags(AtimeMode mode, bool noDirAtime) =>
        (mode switch { AtimeMode.NoAtime => Posix.Libc.MS_NOATIME, AtimeMode.StrictAtime => Posix.Libc.MS_STRICTATIME, _ => 0UL })
        | (noDirAtime ? Posix.Libc.MS_NODIRATIME : 0);
}
