using System.Formats.Tar;
using System.Globalization;
using System.Text;
using UnionFs.Posix;
using UnionFs.Store.Fs;

namespace UnionFs.Store.Tar;

/// <summary>
/// Writes tree nodes as a PAX tar with normalised headers, so the same tree always yields the same
/// bytes (and so the same diffID): numeric owners only (no user/group names), no atime/ctime, mtime
/// (to 100 ns: System.Formats.Tar keeps DateTimeOffset ticks), whiteouts as empty mode-0 files dated at the epoch, hard links as typeflag '1'
/// entries pointing at the first path of the inode. Overlay's private xattrs are never exported.
/// </summary>
public static class LayerTarWriter
{
    // The same private namespaces the union hides from the container (UnionFs.Overlay Markers).
    static readonly string[] PrivateXattrPrefixes =
        ["trusted.overlay.", "user.overlay.", "trusted.unionfs.", "user.unionfs.", "user.fuseoverlayfs.", "security.fuseoverlayfs."];

    public sealed class Stats { public long Entries; public long ContentBytes; }

    public static Stats Write(Stream output, IEnumerable<TreeNode> nodes, Action<long>? onContent = null)
    {
        var stats = new Stats();
        var firstPathOfInode = new Dictionary<(ulong Dev, ulong Ino), string>();
        var filtered = new ReproducibleTarStream(output);
        using var writer = new TarWriter(filtered, TarEntryFormat.Pax, leaveOpen: true);
        foreach (var node in nodes)
        {
            switch (node.Kind)
            {
                case NodeKind.Whiteout:
                    writer.WriteEntry(Marker(ParentOf(node.Path) + ".wh." + NameOf(node.Path)));
                    break;
                case NodeKind.Opaque:
                    writer.WriteEntry(Marker(node.Path));
                    break;
                default:
                    if (WriteObject(writer, node, firstPathOfInode, stats, onContent) is false) continue;
                    break;
            }
            stats.Entries++;
        }
        return stats;
    }

    static PaxTarEntry Marker(string path)
    {
        var e = new PaxTarEntry(TarEntryType.RegularFile, path);
        e.Mode = 0; e.Uid = 0; e.Gid = 0; e.UserName = ""; e.GroupName = "";
        e.ModificationTime = DateTimeOffset.UnixEpoch;
        return e;
    }

    static bool WriteObject(TarWriter writer, TreeNode node, Dictionary<(ulong, ulong), string> firstPath, Stats stats, Action<long>? onContent)
    {
        var st = FileOps.Lstat(node.Source!);
        var pax = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var name in FileOps.ListXattrs(node.Source!))
        {
            if (PrivateXattrPrefixes.Any(p => name.StartsWith(p, StringComparison.Ordinal))) continue;
            var value = FileOps.GetXattr(node.Source!, name);
            if (value is null) continue;
            if (IsText(value)) pax["SCHILY.xattr." + name] = Encoding.UTF8.GetString(value);
            else pax["LIBARCHIVE.xattr." + Uri.EscapeDataString(name)] = Convert.ToBase64String(value); // exact bytes for binary values
        }

        string name0 = node.Path;
        TarEntryType type;
        string? link = null;
        bool hasData = false;
        switch (st.Type)
        {
            case Libc.S_IFDIR: type = TarEntryType.Directory; name0 += "/"; break;
            case Libc.S_IFLNK: type = TarEntryType.SymbolicLink; link = FileOps.ReadLink(node.Source!); break;
            case Libc.S_IFCHR: type = TarEntryType.CharacterDevice; break;
            case Libc.S_IFBLK: type = TarEntryType.BlockDevice; break;
            case Libc.S_IFIFO: type = TarEntryType.Fifo; break;
            case Libc.S_IFREG:
                if (st.NLink > 1 && firstPath.TryGetValue((st.Dev, st.Ino), out var first)) { type = TarEntryType.HardLink; link = first; }
                else { type = TarEntryType.RegularFile; hasData = true; if (st.NLink > 1) firstPath[(st.Dev, st.Ino)] = node.Path; }
                break;
            default: return false; // sockets are not part of an image
        }

        var entry = new PaxTarEntry(type, name0, pax)
        {
            Mode = (UnixFileMode)(st.Mode & 0xfff),
            Uid = (int)st.Uid,
            Gid = (int)st.Gid,
            UserName = "",
            GroupName = "",
            ModificationTime = DateTimeOffset.FromUnixTimeSeconds(st.MTime.Sec).AddTicks(st.MTime.Nsec / 100),
        };
        if (link is not null) entry.LinkName = link;
        if (type is TarEntryType.CharacterDevice or TarEntryType.BlockDevice)
        {
            entry.DeviceMajor = (int)st.RDevMajor;
            entry.DeviceMinor = (int)st.RDevMinor;
        }
        if (hasData)
        {
            using var data = new FileStream(node.DataSource ?? node.Source!, new FileStreamOptions { Mode = FileMode.Open, Access = FileAccess.Read, Options = FileOptions.SequentialScan });
            if (data.Length != (long)st.Size) throw new IOException($"read {node.Source}: file changed while being exported");
            entry.DataStream = data;
            writer.WriteEntry(entry);
            stats.ContentBytes += data.Length;
            onContent?.Invoke(data.Length);
        }
        else writer.WriteEntry(entry);
        return true;
    }

    static bool IsText(byte[] v)
    {
        if (v.AsSpan().IndexOf((byte)0) >= 0) return false;
        try { new UTF8Encoding(false, true).GetString(v); return true; }
        catch (DecoderFallbackException) { return false; }
    }

    static string ParentOf(string path) { int i = path.LastIndexOf('/'); return i < 0 ? "" : path[..(i + 1)]; }
    static string NameOf(string path) => path[(path.LastIndexOf('/') + 1)..];
}
