using System.Formats.Tar;
using System.Text;
using UnionFs.Posix;

namespace UnionFs.Store.Tests;

/// <summary>A scratch directory under /var/tmp (a real disk filesystem: trusted.* xattrs and device nodes work there), removed afterwards.</summary>
public sealed class TempDir : IDisposable
{
    public string Path { get; } = System.IO.Path.Combine("/var/tmp", "unionfs-test-" + Guid.NewGuid().ToString("N")[..12]);
    public TempDir() { Directory.CreateDirectory(Path); }
    public string this[string rel] => System.IO.Path.Combine(Path, rel);
    public void Dispose() { try { Fs.FileOps.RemoveTree(Path); } catch { } }
}

/// <summary>Builds layer tarballs in memory entry by entry.</summary>
public sealed class TarBuilder
{
    readonly MemoryStream _ms = new();
    readonly TarWriter _w;
    public TarBuilder() { _w = new TarWriter(_ms, TarEntryFormat.Pax, leaveOpen: true); }

    public TarBuilder Dir(string name, int mode = 0x1ed, Dictionary<string, string>? pax = null)
    {
        var e = new PaxTarEntry(TarEntryType.Directory, name, pax ?? new()) { Mode = (UnixFileMode)mode, ModificationTime = T0 };
        _w.WriteEntry(e); return this;
    }

    public TarBuilder File(string name, string content, int mode = 0x1a4, Dictionary<string, string>? pax = null, int uid = 0)
    {
        var e = new PaxTarEntry(TarEntryType.RegularFile, name, pax ?? new())
        { Mode = (UnixFileMode)mode, Uid = uid, DataStream = new MemoryStream(Encoding.UTF8.GetBytes(content)) };
        // System.Formats.Tar writes mtime from this property (100 ns ticks), not from the dictionary.
        e.ModificationTime = pax?.TryGetValue("mtime", out var m) == true
            ? DateTimeOffset.UnixEpoch.AddTicks((long)(decimal.Parse(m, System.Globalization.CultureInfo.InvariantCulture) * TimeSpan.TicksPerSecond))
            : T0;
        _w.WriteEntry(e); return this;
    }

    public TarBuilder Link(TarEntryType type, string name, string target)
    {
        var e = new PaxTarEntry(type, name) { LinkName = target, ModificationTime = T0, Mode = (UnixFileMode)0x1ff };
        _w.WriteEntry(e); return this;
    }

    public TarBuilder Fifo(string name)
    {
        _w.WriteEntry(new PaxTarEntry(TarEntryType.Fifo, name) { Mode = (UnixFileMode)0x1a4, ModificationTime = T0 }); return this;
    }

    public static readonly DateTimeOffset T0 = DateTimeOffset.FromUnixTimeSeconds(1_600_000_000);

    public byte[] Build() { _w.Dispose(); return _ms.ToArray(); }
}

public static class Sys
{
    public static unsafe void MkWhiteout(string path)
    {
        fixed (byte* p = Fs.FileOps.Z(path)) PosixException.Check(Libc.mknodat(Libc.AT_FDCWD, p, Libc.S_IFCHR, 0), "mknod", path);
    }

    public static void Write(string path, string content)
    {
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(path)!);
        System.IO.File.WriteAllText(path, content);
    }
}
