using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;
using UnionFs.Fuse;
using UnionFs.Fuse.Kernel;
using UnionFs.Posix;

namespace UnionFs.Fuse.Tests;

public class StructLayoutTests
{
    // Sizes from include/uapi/linux/fuse.h at protocol 7.45; a wrong size makes the kernel fail the reply with EINVAL.
    [Theory]
    [InlineData(typeof(InHeader), 40)]
    [InlineData(typeof(OutHeader), 16)]
    [InlineData(typeof(InitIn), 64)]
    [InlineData(typeof(InitOut), 64)]
    [InlineData(typeof(Attr), 88)]
    [InlineData(typeof(EntryOut), 128)]
    [InlineData(typeof(AttrOut), 104)]
    [InlineData(typeof(OpenOut), 16)]
    [InlineData(typeof(StatFsOut), 80)]
    [InlineData(typeof(SetAttrIn), 88)]
    [InlineData(typeof(ReadIn), 40)]
    [InlineData(typeof(CreateIn), 16)]
    [InlineData(typeof(MkNodIn), 16)]
    [InlineData(typeof(Rename2In), 16)]
    [InlineData(typeof(ReleaseIn), 24)]
    [InlineData(typeof(FlushIn), 24)]
    [InlineData(typeof(FallocateIn), 32)]
    [InlineData(typeof(LseekIn), 24)]
    [InlineData(typeof(CopyFileRangeIn), 56)]
    [InlineData(typeof(DirentHeader), 24)]
    [InlineData(typeof(SetXattrIn), 16)]
    [InlineData(typeof(ForgetOne), 16)]
    [InlineData(typeof(BackingMap), 16)]
    [InlineData(typeof(Statx), 256)]
    public void Struct_has_kernel_size(Type type, int size) =>
        Assert.Equal(size, Marshal.SizeOf(type));

    [Fact]
    public void Entry_attr_starts_at_offset_40() =>
        Assert.Equal(40, (int)Marshal.OffsetOf<EntryOut>(nameof(EntryOut.Attr)));
}

/// <summary>A filesystem that records calls, to check what the dispatcher decodes.</summary>
sealed class RecordingFs : IFuseFileSystem
{
    public string? LastName, LastName2;
    public ulong LastNode, LastNewParent;
    public uint LastFlags;
    public List<(ulong, ulong)> Forgets = new();
    public bool? LastKillSuidGid;

    public int Lookup(in RequestContext ctx, ulong parent, ReadOnlySpan<byte> name, ref EntryOut entry)
    {
        LastNode = parent; LastName = Encoding.UTF8.GetString(name);
        if (LastName == "missing") return Errno.ENOENT;
        entry.NodeId = 42; entry.Attr.Mode = Libc.S_IFREG | 0644; entry.Attr.Ino = 7;
        return 0;
    }

    public int Rename(in RequestContext ctx, ulong parent, ReadOnlySpan<byte> name, ulong newParent, ReadOnlySpan<byte> newName, uint flags)
    {
        LastNode = parent; LastName = Encoding.UTF8.GetString(name); LastNewParent = newParent;
        LastName2 = Encoding.UTF8.GetString(newName); LastFlags = flags;
        return 0;
    }

    public void Forget(ulong node, ulong nlookup) => Forgets.Add((node, nlookup));

    public int Write(in RequestContext ctx, ulong node, ulong fh, long offset, ReadOnlySpan<byte> data, uint writeFlags, out int written)
    {
        LastKillSuidGid = ctx.KillSuidGid; written = data.Length; return 0;
    }
    public int SetAttr(in RequestContext ctx, ulong node, in SetAttrIn changes, ref AttrOut attr) { LastKillSuidGid = ctx.KillSuidGid; return 0; }
    public int Read(in RequestContext ctx, ulong node, ulong fh, long offset, Span<byte> buffer, out int bytesRead)
    {
        buffer.Fill((byte)'r'); bytesRead = buffer.Length; return 0;
    }
    /// <summary>Handle 99 has no descriptor to splice from.</summary>
    public int ReadSource(ulong node, ulong fh) => fh == 99 ? -1 : (int)fh;
    public int Open(in RequestContext ctx, ulong node, int flags, ref OpenOut open) { LastKillSuidGid = ctx.KillSuidGid; return 0; }

    public int GetXattr(in RequestContext ctx, ulong node, ReadOnlySpan<byte> name, Span<byte> value, out int size)
    {
        ReadOnlySpan<byte> v = "0123456789"u8;
        size = v.Length;
        if (value.IsEmpty) return 0;
        if (value.Length < v.Length) return Errno.ERANGE;
        v.CopyTo(value);
        return 0;
    }

    public int ReadDir(in RequestContext ctx, ulong node, ulong fh, long offset, ref DirEntryWriter writer)
    {
        for (long i = offset; i < 100; i++)
            if (!writer.TryAdd(Encoding.ASCII.GetBytes($"entry{i}"), (ulong)i + 10, Libc.S_IFREG, i + 1, default)) break;
        return 0;
    }
}

public class DispatcherTests
{
    static byte[] Request(Opcode op, ulong node, params byte[][] body)
    {
        int len = 40 + body.Sum(b => b.Length);
        var buf = new byte[len];
        var h = new InHeader { Len = (uint)len, Opcode = op, Unique = 1234, NodeId = node, Uid = 1, Gid = 2, Pid = 3 };
        MemoryMarshal.Write(buf, in h);
        int at = 40;
        foreach (var b in body) { b.CopyTo(buf, at); at += b.Length; }
        return buf;
    }

    static byte[] Z(string s) => Encoding.UTF8.GetBytes(s + "\0");
    static byte[] Bytes<T>(T v) where T : unmanaged { var b = new byte[Unsafe.SizeOf<T>()]; MemoryMarshal.Write(b, in v); return b; }

    readonly RecordingFs _fs = new();
    readonly byte[] _reply = new byte[1 << 20];

    (OutHeader Header, byte[] Payload) Run(byte[] request)
    {
        int n = new RequestDispatcher(_fs) { SetxattrExt = true }.Dispatch(request, _reply);
        Assert.True(n >= 16, "expected a reply");
        var h = MemoryMarshal.Read<OutHeader>(_reply);
        Assert.Equal((uint)n, h.Len);
        return (h, _reply[16..n]);
    }

    [Fact]
    public void Lookup_decodes_name_and_encodes_entry()
    {
        var (h, payload) = Run(Request(Opcode.Lookup, 1, Z("hello")));
        Assert.Equal(0, h.Error);
        Assert.Equal(1234UL, h.Unique);
        Assert.Equal("hello", _fs.LastName);
        Assert.Equal(128, payload.Length);
        Assert.Equal(42UL, MemoryMarshal.Read<EntryOut>(payload).NodeId);
    }

    [Fact]
    public void Errors_are_negative_and_header_only()
    {
        var (h, payload) = Run(Request(Opcode.Lookup, 1, Z("missing")));
        Assert.Equal(-Errno.ENOENT, h.Error);
        Assert.Empty(payload);
    }

    [Fact]
    public void Rename2_carries_flags_and_both_names()
    {
        var (h, _) = Run(Request(Opcode.Rename2, 5, Bytes(new Rename2In { NewDir = 9, Flags = 2 }), Z("a"), Z("b")));
        Assert.Equal(0, h.Error);
        Assert.Equal(("a", "b", 9UL, 2U), (_fs.LastName, _fs.LastName2, _fs.LastNewParent, _fs.LastFlags));
    }

    [Fact]
    public void Kill_suid_flags_of_write_setattr_and_open_reach_the_context()
    {
        byte[] data = [1, 2, 3, 4];
        Run(Request(Opcode.Write, 5, Bytes(new ReadIn { Size = 4, ReadFlags = WriteFlags.KillSuidGid }), data));
        Assert.True(_fs.LastKillSuidGid);
        Run(Request(Opcode.Write, 5, Bytes(new ReadIn { Size = 4, ReadFlags = WriteFlags.LockOwner }), data));
        Assert.False(_fs.LastKillSuidGid);
        Run(Request(Opcode.SetAttr, 5, Bytes(new SetAttrIn { Valid = SetAttrValid.Size | SetAttrValid.KillSuidGid })));
        Assert.True(_fs.LastKillSuidGid);
        Run(Request(Opcode.SetAttr, 5, Bytes(new SetAttrIn { Valid = SetAttrValid.Size })));
        Assert.False(_fs.LastKillSuidGid);
        Run(Request(Opcode.Open, 5, Bytes(new OpenIn { Flags = 0x200, OpenFlags = OpenInFlags.KillSuidGid })));
        Assert.True(_fs.LastKillSuidGid);
        Run(Request(Opcode.Open, 5, Bytes(new OpenIn { Flags = 0x200 })));
        Assert.False(_fs.LastKillSuidGid);
    }

    [Fact]
    public void Forget_and_batch_forget_take_no_reply()
    {
        var d = new RequestDispatcher(_fs);
        Assert.Equal(0, d.Dispatch(Request(Opcode.Forget, 7, Bytes(new ForgetIn { NLookup = 3 })), _reply));
        Assert.Equal(0, d.Dispatch(Request(Opcode.BatchForget, 0, Bytes(new BatchForgetIn { Count = 2 }),
            Bytes(new ForgetOne { NodeId = 8, NLookup = 1 }), Bytes(new ForgetOne { NodeId = 9, NLookup = 2 })), _reply));
        Assert.Equal(new[] { (7UL, 3UL), (8UL, 1UL), (9UL, 2UL) }, _fs.Forgets);
    }

    [Fact]
    public void Getxattr_size_probe_and_erange()
    {
        var (h, payload) = Run(Request(Opcode.GetXattr, 1, Bytes(new GetXattrIn { Size = 0 }), Z("user.x")));
        Assert.Equal(0, h.Error);
        Assert.Equal(10u, MemoryMarshal.Read<GetXattrOut>(payload).Size);
        (h, _) = Run(Request(Opcode.GetXattr, 1, Bytes(new GetXattrIn { Size = 4 }), Z("user.x")));
        Assert.Equal(-Errno.ERANGE, h.Error);
        (h, payload) = Run(Request(Opcode.GetXattr, 1, Bytes(new GetXattrIn { Size = 100 }), Z("user.x")));
        Assert.Equal("0123456789", Encoding.ASCII.GetString(payload));
    }

    [Fact]
    public void Readdir_fills_whole_aligned_records_and_resumes_from_cookie()
    {
        var (_, payload) = Run(Request(Opcode.ReadDir, 1, Bytes(new ReadIn { Size = 200 })));
        Assert.True(payload.Length <= 200 && payload.Length % 8 == 0 && payload.Length > 0);
        long lastCookie = 0;
        for (int at = 0; at < payload.Length;)
        {
            var d = MemoryMarshal.Read<DirentHeader>(payload.AsSpan(at));
            Assert.Equal(8u, d.Type);
            lastCookie = (long)d.Off;
            at += (24 + (int)d.NameLen + 7) & ~7;
        }
        var (_, next) = Run(Request(Opcode.ReadDir, 1, Bytes(new ReadIn { Size = 4096, Offset = (ulong)lastCookie })));
        var first = MemoryMarshal.Read<DirentHeader>(next);
        Assert.Equal($"entry{lastCookie}", Encoding.ASCII.GetString(next, 24, (int)first.NameLen));
    }

    [Fact]
    public void Large_reads_from_a_descriptor_are_left_to_the_worker_to_splice()
    {
        var d = new RequestDispatcher(_fs) { SpliceReads = true };
        int n = d.Dispatch(Request(Opcode.Read, 5, Bytes(new ReadIn { Fh = 7, Offset = 4096, Size = 65536 })), _reply);
        Assert.Equal(0, n);
        Assert.Equal(new SplicedRead(1234, 7, 4096, 65536), d.PendingSplice);
        // Small reads, handles without a descriptor, and workers without a pipe get the copy.
        foreach (var (splice, fh, size) in new[] { (true, 7UL, 4096u), (true, 99UL, 65536u), (false, 7UL, 65536u) })
        {
            var e = new RequestDispatcher(_fs) { SpliceReads = splice };
            int m = e.Dispatch(Request(Opcode.Read, 5, Bytes(new ReadIn { Fh = fh, Size = size })), _reply);
            Assert.Equal(16 + (int)size, m);
            Assert.Null(e.PendingSplice);
            Assert.Equal((byte)'r', _reply[16 + (int)size - 1]);
        }
    }

    [Fact]
    public void Unknown_opcode_is_enosys()
    {
        var (h, _) = Run(Request((Opcode)999, 1));
        Assert.Equal(-Errno.ENOSYS, h.Error);
    }

    [Fact]
    public void Name_without_nul_is_einval()
    {
        var (h, _) = Run(Request(Opcode.Lookup, 1, Encoding.ASCII.GetBytes("abc")));
        Assert.Equal(-Errno.EINVAL, h.Error);
    }

    [Fact]
    public void Length_mismatch_is_einval()
    {
        var req = Request(Opcode.Lookup, 1, Z("x"));
        var (h, _) = Run(req.Concat(new byte[8]).ToArray());
        Assert.Equal(-Errno.EINVAL, h.Error);
    }

    /// <summary>Random and mutated requests: the decoder must never throw, and every reply must be well formed.</summary>
    [Fact]
    public void Garbage_never_crashes_the_decoder()
    {
        var rng = new Random(12345);
        var d = new RequestDispatcher(_fs) { SetxattrExt = true };
        var seeds = new[]
        {
            Request(Opcode.Lookup, 1, Z("hello")),
            Request(Opcode.Rename2, 5, Bytes(new Rename2In { NewDir = 9 }), Z("a"), Z("b")),
            Request(Opcode.GetXattr, 1, Bytes(new GetXattrIn { Size = 100 }), Z("user.x")),
            Request(Opcode.ReadDir, 1, Bytes(new ReadIn { Size = 4096 })),
            Request(Opcode.BatchForget, 0, Bytes(new BatchForgetIn { Count = 1000 })),
        };
        for (int i = 0; i < 20000; i++)
        {
            byte[] req;
            if (i % 3 == 0) { req = new byte[rng.Next(0, 200)]; rng.NextBytes(req); }
            else
            {
                req = (byte[])seeds[rng.Next(seeds.Length)].Clone();
                for (int k = rng.Next(1, 6); k > 0; k--) req[rng.Next(req.Length)] = (byte)rng.Next(256);
            }
            if (req.Length >= 40 && i % 2 == 0) BitConverter.TryWriteBytes(req.AsSpan(0, 4), (uint)req.Length);
            int n = d.Dispatch(req, _reply);
            if (n == 0) continue;
            var h = MemoryMarshal.Read<OutHeader>(_reply);
            Assert.Equal((uint)n, h.Len);
            Assert.True(h.Error <= 0 && h.Error > -512);
            if (h.Error != 0) Assert.Equal(16, n);
        }
    }
}
