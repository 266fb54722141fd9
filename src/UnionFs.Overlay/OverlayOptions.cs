using System.Text;
using UnionFs.Fuse;

namespace UnionFs.Overlay;

/// <summary>
/// The mount options of a union, in fuse-overlayfs's and kernel overlayfs's syntax:
/// <c>lowerdir=L1:L2,upperdir=U,workdir=W,...</c> where L1 is the topmost lower layer.
/// Every option either changes behaviour or is rejected; none is silently ignored.
/// </summary>
public sealed class OverlayOptions
{
    public List<string> LowerDirs { get; } = new();
    bool _appendedLowers;
    public string? UpperDir { get; set; }
    public string? WorkDir { get; set; }
    /// <summary>Skip every fsync (volatile, fsync=0): for throw-away containers and builds.</summary>
    public bool Volatile { get; set; }
    /// <summary>Entry and attribute cache timeout in seconds (layers change only through the mount).</summary>
    public double Timeout { get; set; } = 86400;
    public bool AllowOther { get; set; }
    public bool DefaultPermissions { get; set; } = true;
    public bool ReadOnly { get; set; }
    /// <summary>Whether reads update the atimes of upper files (lower files never change), as the mount(8)
    /// options say; relatime by default, as for any mount. See OverlayFileSystem.OpenUpperMount.</summary>
    public AtimeMode Atime { get; set; }
    public bool NoDirAtime { get; set; }
    public bool NoDev { get; set; }
    public bool NoSuid { get; set; }
    public bool NoExec { get; set; }
    public string? Context { get; set; }
    public bool Acl { get; set; } = true;
    public bool StaticNlink { get; set; }
    /// <summary>redirect_dir=on (default): lower and merged directories can be renamed. off: EXDEV, as the kernel's default.</summary>
    public bool RedirectDir { get; set; } = true;
    /// <summary>metacopy=on: chmod, chown, utimes and setxattr of a lower file copy up its metadata only, and its data
    /// stays below until the first write. off (the default, as in kernel overlayfs and fuse-overlayfs): they copy the
    /// data too, so every upper file is whole. Tools that read the upper directory itself (podman commit with a
    /// mount_program, docker's fuse-overlayfs driver, a tar of the upper) see only whole files; metacopy=on is for
    /// readers that know the marker (this project's engine, kernel overlayfs with metacopy=on).</summary>
    public bool Metacopy { get; set; }
    public IdMapping? UidMapping { get; set; }
    public IdMapping? GidMapping { get; set; }
    public uint? SquashUid { get; set; }
    public uint? SquashGid { get; set; }
    public int Workers { get; set; } = 4;
    /// <summary>FUSE passthrough for the data of upper files, where the kernel offers it and the daemon runs as root
    /// (passthrough=0 turns it off; see FileOps.Opened for which opens use it).</summary>
    public bool Passthrough { get; set; } = true;
    public string? FsName { get; set; }
    /// <summary>noxattrs=1 (fuse-overlayfs): the mount has no extended attributes (and so no ACLs).</summary>
    public bool NoXattrs { get; set; }
    /// <summary>userxattr (kernel overlayfs): markers in user.overlay.* even as root. They are there anyway when the
    /// daemon is not root of the initial user namespace.</summary>
    public bool UserXattr { get; set; }
    /// <summary>ino32_t (fuse-overlayfs): inode numbers cut to 32 bits, for old 32-bit programs.</summary>
    public bool Ino32 { get; set; }
    /// <summary>-o debug (fuse-overlayfs): the same as -d.</summary>
    public bool Debug { get; set; }

    public bool Writable => UpperDir is not null && !ReadOnly;

    /// <summary>Parses one or more -o strings. Throws <see cref="ArgumentException"/> with a one-line reason.</summary>
    public static OverlayOptions Parse(IEnumerable<string> optionStrings, bool asRoot)
    {
        var o = new OverlayOptions
        {
            // As root these are on, as in fuse-overlayfs: processes inside a container run as other users.
            AllowOther = asRoot,
        };
        o.NoDev = !asRoot; o.NoSuid = !asRoot;
        foreach (var s in optionStrings)
            foreach (var opt in Split(s))
                o.Apply(opt, asRoot);
        if (o.LowerDirs.Count == 0) throw new ArgumentException("missing lowerdir= (at least one lower layer is needed)");
        if ((o.UpperDir is null) != (o.WorkDir is null))
            throw new ArgumentException(o.UpperDir is null ? "workdir= given without upperdir=" : "upperdir= needs workdir=");
        return o;
    }

    void Apply(string opt, bool asRoot)
    {
        int eq = opt.IndexOf('=');
        string key = eq < 0 ? opt : opt[..eq];
        string? value = eq < 0 ? null : opt[(eq + 1)..];
        string Need() => value ?? throw new ArgumentException($"option {key} needs a value");
        switch (key)
        {
            case "lowerdir":
                if (_appendedLowers) throw new ArgumentException("lowerdir= and lowerdir+= cannot be mixed");
                foreach (var l in SplitLayers(Need())) LowerDirs.Add(l);
                break;
            case "lowerdir+":
                // The kernel's newer form (mount API): one layer per option, topmost first, no ':' splitting.
                if (LowerDirs.Count > 0 && !_appendedLowers) throw new ArgumentException("lowerdir= and lowerdir+= cannot be mixed");
                _appendedLowers = true;
                string layer = Unescape(Need());
                LowerDirs.Add(layer.Length > 0 ? layer : throw new ArgumentException("lowerdir+=: empty layer path"));
                break;
            case "datadir+":
                throw new ArgumentException("datadir+= (data-only lower layers) is not supported");
            case "upperdir": UpperDir = Unescape(Need()); break;
            case "workdir": WorkDir = Unescape(Need()); break;
            case "volatile": Volatile = true; break;
            case "fsync" or "sync": Volatile = Need() == "0"; break;
            case "timeout": Timeout = double.Parse(Need(), System.Globalization.CultureInfo.InvariantCulture); break;
            case "noatime": Atime = AtimeMode.NoAtime; break;
            case "relatime" or "atime" or "nostrictatime": Atime = AtimeMode.Relatime; break;
            case "strictatime": Atime = AtimeMode.StrictAtime; break;
            case "nodiratime": NoDirAtime = true; break;
            case "diratime": NoDirAtime = false; break;
            case "nodev": NoDev = true; break;
            case "dev": NoDev = false; break;
            case "nosuid": NoSuid = true; break;
            case "suid": NoSuid = false; break;
            case "noexec": NoExec = true; break;
            case "exec": NoExec = false; break;
            case "ro": ReadOnly = true; break;
            case "rw": ReadOnly = false; break;
            case "context" or "fscontext" or "defcontext" or "rootcontext": Context = Need().Trim('"'); break;
            case "allow_other": AllowOther = true; break;
            case "allow_root": AllowOther = true; break;
            case "default_permissions": DefaultPermissions = true; break;
            case "noacl": Acl = false; break;
            case "static_nlink": StaticNlink = true; break;
            case "redirect_dir":
                RedirectDir = Need() switch
                {
                    "on" or "follow" => true,
                    "off" or "nofollow" => false,
                    var v => throw new ArgumentException($"redirect_dir={v}: expected on or off"),
                };
                break;
            case "xino":
                if (Need() is not ("on" or "off" or "auto")) throw new ArgumentException($"xino={value}: expected on, off or auto");
                break; // inode numbers are always unique across layers here (layer index in the high bits)
            case "index":
                if (Need() != "off") throw new ArgumentException("index=on is not supported");
                break;
            case "metacopy":
                Metacopy = Need() switch
                {
                    "on" => true,
                    "off" => false,
                    var v => throw new ArgumentException($"metacopy={v}: expected on or off"),
                };
                break;
            case "userxattr": UserXattr = true; break;
            case "squash_to_root": SquashUid = 0; SquashGid = 0; break;
            case "squash_to_uid": SquashUid = uint.Parse(Need()); break;
            case "squash_to_gid": SquashGid = uint.Parse(Need()); break;
            case "uidmapping": UidMapping = IdMapping.Parse(Need(), key); break;
            case "gidmapping": GidMapping = IdMapping.Parse(Need(), key); break;
            case "threads" or "workers": Workers = Math.Clamp(int.Parse(Need()), 1, 64); break;
            case "passthrough": Passthrough = Need() != "0" && value != "off"; break;
            case "fsname": FsName = Need(); break;
            case "max_idle_threads" or "max_threads" or "clone_fd" or "subtype" or "auto_unmount":
                break; // libfuse tuning options: meaningless for this daemon's worker model
            case "threaded" or "fast_ino" or "fast_ino_check":
                Need();
                break; // fuse-overlayfs tuning options: this daemon is always threaded and never rescans for inodes
            case "noxattrs": NoXattrs = Need() != "0"; if (NoXattrs) Acl = false; break;
            case "ino32_t": Ino32 = true; break;
            case "debug": Debug = true; break;
            case "xattr_permissions":
                if (Need() != "0") throw new ArgumentException($"xattr_permissions={value} is not supported (ownership and modes are stored as they are)");
                break;
            default:
                throw new ArgumentException($"unknown option '{opt}'");
        }
    }

    /// <summary>Splits on commas outside double quotes (SELinux contexts contain commas).</summary>
    static IEnumerable<string> Split(string s)
    {
        var sb = new StringBuilder();
        bool quoted = false;
        for (int i = 0; i < s.Length; i++)
        {
            char c = s[i];
            if (c == '\\' && i + 1 < s.Length) { sb.Append(c).Append(s[++i]); continue; }
            if (c == '"') quoted = !quoted;
            if (c == ',' && !quoted) { if (sb.Length > 0) yield return sb.ToString(); sb.Clear(); continue; }
            sb.Append(c);
        }
        if (sb.Length > 0) yield return sb.ToString();
    }

    /// <summary>Splits lowerdir on ':' honouring '\:' escapes; "::" (data-only layers) is refused.</summary>
    static IEnumerable<string> SplitLayers(string s)
    {
        var sb = new StringBuilder();
        for (int i = 0; i < s.Length; i++)
        {
            char c = s[i];
            if (c == '\\' && i + 1 < s.Length) { sb.Append(s[++i]); continue; }
            if (c == ':')
            {
                if (sb.Length == 0) throw new ArgumentException("lowerdir: empty layer (data-only layers '::' are not supported)");
                yield return sb.ToString(); sb.Clear(); continue;
            }
            sb.Append(c);
        }
        if (sb.Length == 0) throw new ArgumentException("lowerdir: empty layer path");
        yield return sb.ToString();
    }

    static string Unescape(string s) => s.Replace("\\:", ":").Replace("\\,", ",").Replace("\\\\", "\\");
}

/// <summary>
/// uidmapping=/gidmapping= triples "stored:shown:length[:...]", read the way fuse-overlayfs 1.10 reads them:
/// ids stored..stored+length-1 in the layers show as shown..shown+length-1 in the mount, and ids written through
/// the mount are stored mapped back. (Checked side by side: with 100000:0:65536 both show a file stored as
/// 100005 as 5 and store root's new files as 100000.)
/// </summary>
public sealed class IdMapping
{
    readonly (uint Stored, uint Shown, uint Length)[] _ranges;
    IdMapping((uint, uint, uint)[] ranges) => _ranges = ranges;

    public static IdMapping Parse(string s, string option)
    {
        // Empty fields are skipped, as fuse-overlayfs does: containers/storage writes ":0:100000:65536".
        var parts = s.Split(':', StringSplitOptions.RemoveEmptyEntries);
        if (parts.Length % 3 != 0) throw new ArgumentException($"{option}={s}: expected stored:shown:length triples");
        var ranges = new (uint, uint, uint)[parts.Length / 3];
        for (int i = 0; i < ranges.Length; i++)
        {
            if (!uint.TryParse(parts[3 * i], out var a) || !uint.TryParse(parts[3 * i + 1], out var b) || !uint.TryParse(parts[3 * i + 2], out var c))
                throw new ArgumentException($"{option}={s}: not a number");
            ranges[i] = (a, b, c);
        }
        return new IdMapping(ranges);
    }

    /// <summary>Id stored in the layers to the id shown in the mount; unmapped ids show as overflow (65534).</summary>
    public uint ToInside(uint host)
    {
        foreach (var (stored, shown, length) in _ranges)
            if (host >= stored && host - stored < length) return shown + (host - stored);
        return 65534;
    }

    /// <summary>Id from inside the mount to the id stored on disk; unmapped ids are stored as overflow (65534).</summary>
    public uint ToHost(uint inside)
    {
        foreach (var (stored, shown, length) in _ranges)
            if (inside >= shown && inside - shown < length) return stored + (inside - shown);
        return 65534;
    }
}
