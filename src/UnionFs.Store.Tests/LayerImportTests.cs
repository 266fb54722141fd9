using System.Formats.Tar;
using System.IO.Compression;
using System.Text;
using UnionFs.Posix;
using UnionFs.Store.Content;
using UnionFs.Store.Fs;
using UnionFs.Store.Tar;

namespace UnionFs.Store.Tests;

public class LayerImportTests : IDisposable
{
    readonly TempDir _dir = new();
    readonly Store _store;
    public LayerImportTests() { _store = new Store(_dir["root"]); }
    public void Dispose() { _store.Dispose(); _dir.Dispose(); }

    static byte[] SampleLayer() => new TarBuilder()
        .Dir("etc/")
        .File("etc/hosts", "127.0.0.1 localhost\n", pax: new() { ["SCHILY.xattr.user.note"] = "hi", ["mtime"] = "1600000000.1234567" })
        .File("bin/tool", "#!/bin/sh\n", mode: 0xded) // 06755: setuid+setgid survive the chown
        .Link(TarEntryType.SymbolicLink, "bin/sh", "/bin/tool")
        .Link(TarEntryType.HardLink, "bin/tool2", "bin/tool")
        .Fifo("run/fifo")
        .File(".wh.gone", "")
        .Dir("var/")
        .File("var/.wh..wh..opq", "")
        .File("var/kept", "k")
        .Build();

    [Fact]
    public void Import_writes_overlay_format_and_keeps_metadata()
    {
        var r = _store.ImportLayer(new MemoryStream(SampleLayer()), null, "test");
        Assert.False(r.Existed);
        string d = _store.LayerDiff(r.Layer);

        var gone = FileOps.Lstat(Path.Combine(d, "gone"));
        Assert.True(gone.IsWhiteoutDevice);
        Assert.False(File.Exists(Path.Combine(d, ".wh.gone")));
        Assert.True(FileOps.IsOpaque(Path.Combine(d, "var")));
        Assert.False(File.Exists(Path.Combine(d, "var/.wh..wh..opq")));
        Assert.Equal("k", File.ReadAllText(Path.Combine(d, "var/kept")));

        var hosts = FileOps.Lstat(Path.Combine(d, "etc/hosts"));
        Assert.Equal(1600000000, hosts.MTime.Sec);
        Assert.Equal(123456700u, hosts.MTime.Nsec); // System.Formats.Tar keeps 100 ns ticks
        Assert.Equal("hi"u8.ToArray(), FileOps.GetXattr(Path.Combine(d, "etc/hosts"), "user.note"));

        var tool = FileOps.Lstat(Path.Combine(d, "bin/tool"));
        Assert.Equal(0xdedu, tool.Mode & 0xfffu);
        Assert.Equal(tool.Ino, FileOps.Lstat(Path.Combine(d, "bin/tool2")).Ino);
        Assert.Equal("/bin/tool", FileOps.ReadLink(Path.Combine(d, "bin/sh")));
        Assert.Equal(Libc.S_IFIFO, FileOps.Lstat(Path.Combine(d, "run/fifo")).Type);
        Assert.Equal(1600000000, FileOps.Lstat(Path.Combine(d, "etc")).MTime.Sec); // dir times applied after children

        Assert.Equal(Digest.Of(SampleLayer()), r.Layer.DiffId);
        Assert.Equal(r.Layer.DiffId, r.Layer.ChainId);
    }

    [Fact]
    public void Whiteout_inside_a_whited_out_directory_is_ignored_but_a_file_there_is_refused()
    {
        var ok = new TarBuilder().File(".wh.foo", "").File("foo/.wh.bar", "").Build();
        var d = _store.LayerDiff(_store.ImportLayer(new MemoryStream(ok), null, "t").Layer);
        Assert.True(FileOps.Lstat(Path.Combine(d, "foo")).IsWhiteoutDevice);
        var bad = new TarBuilder().File("plain", "x").File("plain/inner", "y").Build();
        var e = Assert.Throws<NotADirectoryInLayerException>(() => _store.ImportLayer(new MemoryStream(bad), null, "t"));
        Assert.Contains("'plain' is not a directory", e.Message);
    }

    [Fact]
    public void Same_layer_is_stored_once()
    {
        var a = _store.ImportLayer(new MemoryStream(SampleLayer()), null, "a");
        var b = _store.ImportLayer(new MemoryStream(SampleLayer()), null, "b");
        Assert.True(b.Existed);
        Assert.Equal(a.Layer.CacheId, b.Layer.CacheId);
        Assert.Single(_store.ListLayers());
        Assert.Single(Directory.GetDirectories(_store.Layout.Layers));
    }

    [Fact]
    public void Known_diffId_skips_reading_the_input()
    {
        var a = _store.ImportLayer(new MemoryStream(SampleLayer()), null, "a");
        var b = _store.ImportLayer(new ThrowingStream(new MemoryStream(), 0), null, "b", expectedDiffId: a.Layer.DiffId);
        Assert.True(b.Existed);
    }

    [Fact]
    public void Stacked_layer_gets_chainId_and_parent()
    {
        var a = _store.ImportLayer(new MemoryStream(SampleLayer()), null, "a");
        var top = new TarBuilder().File("x", "y").Build();
        var b = _store.ImportLayer(new MemoryStream(top), a.Layer.ChainId, "b");
        Assert.Equal(Digest.ChainId(a.Layer.ChainId, Digest.Of(top)), b.Layer.ChainId);
        Assert.Equal(a.Layer.ChainId, b.Layer.Parent);
        Assert.Equal([a.Layer.ChainId, b.Layer.ChainId], _store.Stack(b.Layer.ChainId).Select(l => l.ChainId));
    }

    [Theory]
    [InlineData("gzip")]
    [InlineData("zstd")]
    public void Compressed_layers_have_the_diffId_of_the_uncompressed_tar(string kind)
    {
        var tar = SampleLayer();
        var ms = new MemoryStream();
        using (Stream c = kind == "gzip" ? new GZipStream(ms, CompressionLevel.Fastest, true) : new ZstdSharp.CompressionStream(ms, 3, leaveOpen: true))
            c.Write(tar);
        var r = _store.ImportLayer(new MemoryStream(ms.ToArray()), null, "c");
        Assert.Equal(Digest.Of(tar), r.Layer.DiffId);
        Assert.Equal(Digest.Of(ms.ToArray()), r.Layer.BlobDigest);
        Assert.EndsWith(kind, _store.GetBlob(r.Layer.BlobDigest!)!.MediaType);
    }

    [Fact]
    public void Digest_mismatch_rejects_the_layer()
    {
        var e = Assert.Throws<StoreException>(() =>
            _store.ImportLayer(new MemoryStream(SampleLayer()), null, "x", expectedDiffId: Digest.Of("something else")));
        Assert.Contains("digest mismatch", e.Message);
        AssertNothingRegistered();
    }

    public static TheoryData<string, byte[]> Malicious() => new()
    {
        { "dotdot", new TarBuilder().File("../evil", "x").Build() },
        { "nested dotdot", new TarBuilder().Dir("a/").File("a/../../evil", "x").Build() },
        { "absolute", new TarBuilder().File("/etc/evil", "x").Build() },
        { "write through absolute symlink", new TarBuilder().Link(TarEntryType.SymbolicLink, "etc", "/etc").File("etc/evil", "x").Build() },
        { "write through relative symlink", new TarBuilder().Link(TarEntryType.SymbolicLink, "up", "../../..").File("up/evil", "x").Build() },
        { "write through inner symlink", new TarBuilder().Dir("d/").Link(TarEntryType.SymbolicLink, "l", "d").File("l/evil", "x").Build() },
        { "hardlink dotdot", new TarBuilder().Link(TarEntryType.HardLink, "h", "../../../etc/passwd").Build() },
        { "hardlink absolute", new TarBuilder().Link(TarEntryType.HardLink, "h", "/etc/passwd").Build() },
        { "hardlink through symlink", new TarBuilder().Link(TarEntryType.SymbolicLink, "etc", "/etc").Link(TarEntryType.HardLink, "h", "etc/passwd").Build() },
        { "hardlink to missing", new TarBuilder().Link(TarEntryType.HardLink, "h", "nothere").Build() },
        { "empty whiteout", new TarBuilder().File(".wh.", "").Build() },
        { "truncated", new TarBuilder().File("a", new string('a', 5000)).Build()[..1500] },
    };

    [Theory]
    [MemberData(nameof(Malicious))]
    public void Hostile_tarballs_are_refused_and_nothing_is_registered(string why, byte[] tar)
    {
        // Always the one-line user error type, never a raw I/O or parser exception.
        Assert.ThrowsAny<StoreException>(() => _store.ImportLayer(new MemoryStream(tar), null, why));
        Assert.False(File.Exists("/etc/evil"));
        AssertNothingRegistered();
    }

    [Fact]
    public void Symlink_escape_error_names_the_path()
    {
        var tar = new TarBuilder().Link(TarEntryType.SymbolicLink, "etc", "/etc").File("etc/evil", "x").Build();
        var e = Assert.Throws<LayerFormatException>(() => _store.ImportLayer(new MemoryStream(tar), null, "x"));
        Assert.Contains("'etc' is a symlink", e.Message);
    }

    [Fact]
    public void Crash_in_the_middle_of_an_import_leaves_nothing()
    {
        var tar = new TarBuilder().File("big", new string('b', 300_000)).File("after", "x").Build();
        Assert.Throws<IOException>(() => _store.ImportLayer(new ThrowingStream(new MemoryStream(tar), 100_000), null, "x"));
        AssertNothingRegistered();
    }

    [Fact]
    public void Leftovers_of_a_dead_process_are_cleaned_on_open_and_never_registered()
    {
        // What a SIGKILLed import leaves: a half-unpacked layer dir and a half-written blob, named by a dead pid.
        string deadLayer = Path.Combine(_store.Layout.Layers, ".tmp-999999999-abc");
        Sys.Write(Path.Combine(deadLayer, "diff/half"), "x");
        string deadBlob = Path.Combine(_store.Layout.Blobs, ".tmp-999999999-def");
        Sys.Write(deadBlob, "partial");
        // ... and a live process's in-flight work, which must be left alone.
        string live = Path.Combine(_store.Layout.Layers, $".tmp-{Environment.ProcessId}-live");
        Directory.CreateDirectory(live);
        using var second = new Store(_dir["root"]);
        Assert.False(Directory.Exists(deadLayer));
        Assert.False(File.Exists(deadBlob));
        Assert.True(Directory.Exists(live));
        Assert.Empty(second.ListLayers());
    }

    void AssertNothingRegistered()
    {
        Assert.Empty(_store.ListLayers());
        Assert.Empty(Directory.GetFileSystemEntries(_store.Layout.Layers));
        Assert.Empty(Directory.GetFileSystemEntries(_store.Layout.Blobs));
    }
}

/// <summary>Fails with an I/O error after a number of bytes, like a dying disk or a killed producer.</summary>
sealed class ThrowingStream(Stream inner, long failAfter) : Stream
{
    long _pos;
    public override int Read(byte[] buffer, int offset, int count)
    {
        if (_pos >= failAfter) throw new IOException("simulated crash");
        int n = inner.Read(buffer, offset, (int)Math.Min(count, failAfter - _pos));
        _pos += n;
        return n;
    }
    public override bool CanRead => true; public override bool CanSeek => false; public override bool CanWrite => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => _pos; set => throw new NotSupportedException(); }
    public override void Flush() { }
    public override long Seek(long o, SeekOrigin s) => throw new NotSupportedException();
    public override void SetLength(long v) => throw new NotSupportedException();
    public override void Write(byte[] b, int o, int c) => throw new NotSupportedException();
}
