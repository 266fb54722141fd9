using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using UnionFs.Fuse.Kernel;
using UnionFs.Posix;

namespace UnionFs.Fuse;

/// <summary>
/// Decodes one request and encodes its reply. Pure: bytes in, bytes out, no I/O of its own, so it can be
/// driven by tests and fuzzers without a kernel. The request and reply buffers belong to one worker.
/// </summary>
public sealed class RequestDispatcher
{
    static readonly int InHeaderSize = Unsafe.SizeOf<InHeader>();
    static readonly int OutHeaderSize = Unsafe.SizeOf<OutHeader>();

    readonly IFuseFileSystem _fs;
    readonly ILogger? _debugLog;

    public RequestDispatcher(IFuseFileSystem fs, ILogger? debugLog = null)
    {
        _fs = fs;
        _debugLog = debugLog;
    }

    /// <summary>Whether READ replies may be spliced: the worker has a pipe (see <see cref="PendingSplice"/>).</summary>
    public bool SpliceReads { get; set; }

    /// <summary>
    /// Set when <see cref="Dispatch"/> returned 0 for a READ whose reply the worker is to splice from a descriptor
    /// (see <see cref="IFuseFileSystem.ReadSource"/>); the worker clears it.
    /// </summary>
    public SplicedRead? PendingSplice;

    /// <summary>A spliced reply takes four calls (statx, header, splice in, splice out) to a copied one's two (pread,
    /// write); below this many bytes the copy is cheaper.</summary>
    public const int MinSpliceBytes = 32 * 1024;

    /// <summary>Kernel minor version in force (features such as SETXATTR_EXT change request layouts).</summary>
    public bool SetxattrExt { get; set; }

    /// <summary>
    /// Handles <paramref name="request"/> and writes the reply into <paramref name="reply"/>.
    /// Returns the reply length, or 0 when the request takes no reply (FORGET, INTERRUPT, garbage without a header).
    /// </summary>
    public int Dispatch(ReadOnlySpan<byte> request, Span<byte> reply)
    {
        if (request.Length < InHeaderSize) return 0;
        InHeader h = MemoryMarshal.Read<InHeader>(request);
        long start = _debugLog is null ? 0 : Stopwatch.GetTimestamp();
        int payload = 0;
        int err;
        int bodyEnd = (int)h.Len - 8 * h.TotalExtLen;
        if (h.Len != request.Length || bodyEnd < InHeaderSize)
            err = Errno.EINVAL;
        else
        {
            var ctx = new RequestContext(h.Uid, h.Gid, h.Pid);
            err = Handle(in h, in ctx, request[InHeaderSize..bodyEnd], reply[OutHeaderSize..], ref payload);
        }
        if (err < 0)
        {
            if (PendingSplice is { } read && _debugLog is not null)
                _debugLog.LogDebug("{Op} unique={Unique} node={Node} -> up to {Size} bytes of descriptor {Fd} at {Offset}",
                    h.Opcode, h.Unique, h.NodeId, read.Size, read.Fd, read.Offset);
            return 0; // no reply, or the worker answers
        }
        if (_debugLog is not null)
            _debugLog.LogDebug("{Op} unique={Unique} node={Node} -> {Result} ({Micros} us)", h.Opcode, h.Unique, h.NodeId,
                err == 0 ? "ok" : Errno.Describe(err), Stopwatch.GetElapsedTime(start).TotalMicroseconds.ToString("F0"));
        if (err != 0) payload = 0;
        var outHeader = new OutHeader { Len = (uint)(OutHeaderSize + payload), Error = -err, Unique = h.Unique };
        MemoryMarshal.Write(reply, in outHeader);
        return OutHeaderSize + payload;
    }

    /// <summary>Returns a positive errno, 0 with <paramref name="length"/> bytes of payload written, or -1 for "no reply".</summary>
    int Handle(in InHeader h, in RequestContext ctx, ReadOnlySpan<byte> body, Span<byte> output, ref int length)
    {
        ulong node = h.NodeId;
        switch (h.Opcode)
        {
            case Opcode.Lookup:
            {
                if (!Name(body, out var name, out _)) return Errno.EINVAL;
                return _fs.Lookup(ctx, node, name, ref Out<EntryOut>(output, ref length));
            }
            case Opcode.Forget:
                if (Read(body, out ForgetIn forget, out _)) _fs.Forget(node, forget.NLookup);
                return -1;
            case Opcode.BatchForget:
            {
                if (!Read(body, out BatchForgetIn batch, out var rest)) return -1;
                var ones = MemoryMarshal.Cast<byte, ForgetOne>(rest);
                int count = (int)Math.Min(batch.Count, (uint)ones.Length);
                for (int i = 0; i < count; i++) _fs.Forget(ones[i].NodeId, ones[i].NLookup);
                return -1;
            }
            case Opcode.GetAttr:
            {
                Read(body, out GetAttrIn g, out _);
                return _fs.GetAttr(ctx, node, g.Fh, (g.GetAttrFlags & 1) != 0, ref Out<AttrOut>(output, ref length));
            }
            case Opcode.SetAttr:
            {
                if (!Read(body, out SetAttrIn s, out _)) return Errno.EINVAL;
                var c = ctx with { KillSuidGid = (s.Valid & SetAttrValid.KillSuidGid) != 0 };
                return _fs.SetAttr(c, node, s, ref Out<AttrOut>(output, ref length));
            }
            case Opcode.ReadLink:
            {
                int err = _fs.ReadLink(ctx, node, output[..Math.Min(output.Length, 4096)], out int n);
                length = n;
                return err;
            }
            case Opcode.Symlink:
            {
                if (!Name(body, out var name, out var rest) || !Name(rest, out var target, out _)) return Errno.EINVAL;
                return _fs.Symlink(ctx, node, name, target, ref Out<EntryOut>(output, ref length));
            }
            case Opcode.MkNod:
            {
                if (!Read(body, out MkNodIn m, out var rest) || !Name(rest, out var name, out _)) return Errno.EINVAL;
                return _fs.MkNod(ctx, node, name, m.Mode, m.RDev, m.Umask, ref Out<EntryOut>(output, ref length));
            }
            case Opcode.MkDir:
            {
                if (!Read(body, out MkDirIn m, out var rest) || !Name(rest, out var name, out _)) return Errno.EINVAL;
                return _fs.MkDir(ctx, node, name, m.Mode, m.Umask, ref Out<EntryOut>(output, ref length));
            }
            case Opcode.Unlink:
                return Name(body, out var unlinkName, out _) ? _fs.Unlink(ctx, node, unlinkName) : Errno.EINVAL;
            case Opcode.RmDir:
                return Name(body, out var rmdirName, out _) ? _fs.RmDir(ctx, node, rmdirName) : Errno.EINVAL;
            case Opcode.Rename:
            {
                if (!Read(body, out RenameIn r, out var rest) || !Name(rest, out var from, out rest) || !Name(rest, out var to, out _))
                    return Errno.EINVAL;
                return _fs.Rename(ctx, node, from, r.NewDir, to, 0);
            }
            case Opcode.Rename2:
            {
                if (!Read(body, out Rename2In r, out var rest) || !Name(rest, out var from, out rest) || !Name(rest, out var to, out _))
                    return Errno.EINVAL;
                return _fs.Rename(ctx, node, from, r.NewDir, to, r.Flags);
            }
            case Opcode.Link:
            {
                if (!Read(body, out LinkIn l, out var rest) || !Name(rest, out var name, out _)) return Errno.EINVAL;
                return _fs.Link(ctx, l.OldNodeId, node, name, ref Out<EntryOut>(output, ref length));
            }
            case Opcode.Open:
            {
                if (!Read(body, out OpenIn o, out _)) return Errno.EINVAL;
                var c = ctx with { KillSuidGid = (o.OpenFlags & OpenInFlags.KillSuidGid) != 0 };
                return _fs.Open(c, node, (int)o.Flags, ref Out<OpenOut>(output, ref length));
            }
            case Opcode.Create:
            case Opcode.TmpFile:
            {
                if (!Read(body, out CreateIn c, out var rest)) return Errno.EINVAL;
                ref EntryOut entry = ref Out<EntryOut>(output, ref length);
                ref OpenOut open = ref Out<OpenOut>(output, ref length);
                var cc = ctx with { KillSuidGid = (c.OpenFlags & OpenInFlags.KillSuidGid) != 0 };
                int err;
                if (h.Opcode == Opcode.TmpFile)
                    err = _fs.TmpFile(cc, node, (int)c.Flags, c.Mode, c.Umask, ref entry, ref open);
                else if (!Name(rest, out var name, out _)) return Errno.EINVAL;
                else err = _fs.Create(cc, node, name, (int)c.Flags, c.Mode, c.Umask, ref entry, ref open);
                return err;
            }
            case Opcode.Read:
            {
                if (!Read(body, out ReadIn r, out _)) return Errno.EINVAL;
                int size = (int)Math.Min(r.Size, (uint)output.Length);
                if (SpliceReads && size >= MinSpliceBytes && _fs.ReadSource(node, r.Fh) is var source and >= 0)
                {
                    PendingSplice = new SplicedRead(h.Unique, source, (long)r.Offset, size);
                    return -1; // the worker answers
                }
                int err = _fs.Read(ctx, node, r.Fh, (long)r.Offset, output[..size], out int n);
                length = err == 0 ? Math.Clamp(n, 0, size) : 0;
                return err;
            }
            case Opcode.Write:
            {
                if (!Read(body, out ReadIn w, out var data) || w.Size > (uint)data.Length) return Errno.EINVAL;
                var c = ctx with { KillSuidGid = (w.ReadFlags & WriteFlags.KillSuidGid) != 0 };
                int err = _fs.Write(c, node, w.Fh, (long)w.Offset, data[..(int)w.Size], w.ReadFlags, out int n);
                if (err == 0) Out<WriteOut>(output, ref length).Size = (uint)n;
                return err;
            }
            case Opcode.StatFs:
                return _fs.StatFs(ctx, node, ref Out<StatFsOut>(output, ref length));
            case Opcode.Release:
            case Opcode.ReleaseDir:
            {
                if (!Read(body, out ReleaseIn r, out _)) return Errno.EINVAL;
                return h.Opcode == Opcode.Release ? _fs.Release(ctx, node, r.Fh, (int)r.Flags) : _fs.ReleaseDir(ctx, node, r.Fh);
            }
            case Opcode.Fsync:
            case Opcode.FsyncDir:
            {
                if (!Read(body, out FsyncIn f, out _)) return Errno.EINVAL;
                bool dataOnly = (f.FsyncFlags & 1) != 0;
                return h.Opcode == Opcode.Fsync ? _fs.Fsync(ctx, node, f.Fh, dataOnly) : _fs.FsyncDir(ctx, node, f.Fh, dataOnly);
            }
            case Opcode.Flush:
                return Read(body, out FlushIn fl, out _) ? _fs.Flush(ctx, node, fl.Fh) : Errno.EINVAL;
            case Opcode.SetXattr:
            {
                ReadOnlySpan<byte> rest;
                uint size, flags, extFlags = 0;
                if (SetxattrExt) { if (!Read(body, out SetXattrIn x, out rest)) return Errno.EINVAL; size = x.Size; flags = x.Flags; extFlags = x.SetXattrFlags; }
                else { if (!Read(body, out GetXattrIn x, out rest)) return Errno.EINVAL; size = x.Size; flags = x.Padding; }
                if (!Name(rest, out var name, out var value) || size > (uint)value.Length) return Errno.EINVAL;
                var c = ctx with { KillSuidGid = (extFlags & SetXattrFlags.AclKillSgid) != 0 };
                return _fs.SetXattr(c, node, name, value[..(int)size], (int)flags);
            }
            case Opcode.GetXattr:
            {
                if (!Read(body, out GetXattrIn g, out var rest) || !Name(rest, out var name, out _)) return Errno.EINVAL;
                if (g.Size == 0)
                {
                    int err = _fs.GetXattr(ctx, node, name, Span<byte>.Empty, out int size);
                    if (err == 0) Out<GetXattrOut>(output, ref length).Size = (uint)size;
                    return err;
                }
                int cap = (int)Math.Min(g.Size, (uint)output.Length);
                int e = _fs.GetXattr(ctx, node, name, output[..cap], out int n);
                if (e == 0 && n > cap) return Errno.ERANGE;
                length = e == 0 ? n : 0;
                return e;
            }
            case Opcode.ListXattr:
            {
                if (!Read(body, out GetXattrIn g, out _)) return Errno.EINVAL;
                if (g.Size == 0)
                {
                    int err = _fs.ListXattr(ctx, node, Span<byte>.Empty, out int size);
                    if (err == 0) Out<GetXattrOut>(output, ref length).Size = (uint)size;
                    return err;
                }
                int cap = (int)Math.Min(g.Size, (uint)output.Length);
                int e = _fs.ListXattr(ctx, node, output[..cap], out int n);
                if (e == 0 && n > cap) return Errno.ERANGE;
                length = e == 0 ? n : 0;
                return e;
            }
            case Opcode.RemoveXattr:
                return Name(body, out var xname, out _) ? _fs.RemoveXattr(ctx, node, xname) : Errno.EINVAL;
            case Opcode.Access:
                return Read(body, out AccessIn a, out _) ? _fs.Access(ctx, node, (int)a.Mask) : Errno.EINVAL;
            case Opcode.OpenDir:
                return Read(body, out OpenIn od, out _) ? _fs.OpenDir(ctx, node, (int)od.Flags, ref Out<OpenOut>(output, ref length)) : Errno.EINVAL;
            case Opcode.ReadDir:
            case Opcode.ReadDirPlus:
            {
                if (!Read(body, out ReadIn r, out _)) return Errno.EINVAL;
                var writer = new DirEntryWriter(output[..(int)Math.Min(r.Size, (uint)output.Length)], h.Opcode == Opcode.ReadDirPlus);
                int err = _fs.ReadDir(ctx, node, r.Fh, (long)r.Offset, ref writer);
                length = err == 0 ? writer.Length : 0;
                return err;
            }
            case Opcode.Fallocate:
                return Read(body, out FallocateIn fa, out _) ? _fs.Fallocate(ctx, node, fa.Fh, (long)fa.Offset, (long)fa.Length, (int)fa.Mode) : Errno.EINVAL;
            case Opcode.Lseek:
            {
                if (!Read(body, out LseekIn l, out _)) return Errno.EINVAL;
                int err = _fs.Lseek(ctx, node, l.Fh, (long)l.Offset, (int)l.Whence, out long result);
                if (err == 0) Out<LseekOut>(output, ref length).Offset = (ulong)result;
                return err;
            }
            case Opcode.CopyFileRange:
            case Opcode.CopyFileRange64:
            {
                if (!Read(body, out CopyFileRangeIn c, out _)) return Errno.EINVAL;
                long len = h.Opcode == Opcode.CopyFileRange ? (long)Math.Min(c.Len, uint.MaxValue & ~4095UL) : (long)Math.Min(c.Len, long.MaxValue);
                int err = _fs.CopyFileRange(ctx, node, c.FhIn, (long)c.OffIn, c.NodeIdOut, c.FhOut, (long)c.OffOut, len, out long copied);
                if (err != 0) return err;
                if (h.Opcode == Opcode.CopyFileRange) Out<WriteOut>(output, ref length).Size = (uint)copied;
                else Out<CopyFileRangeOut>(output, ref length).BytesCopied = (ulong)copied;
                return 0;
            }
            case Opcode.Interrupt:
                // Handlers finish promptly (no blocking lock waits are implemented), so an interrupt needs no
                // action: the original request completes on its own and the caller sees its result.
                return -1;
            case Opcode.NotifyReply:
                return -1;
            case Opcode.Destroy:
                return 0;
            case Opcode.Init:
                return Errno.EPROTO; // INIT is handled by the session before workers start
            default:
                // GETLK/SETLK (locks stay in the kernel), IOCTL, POLL, BMAP, SYNCFS, STATX, DAX mapping.
                return Errno.ENOSYS;
        }
    }

    static ref T Out<T>(Span<byte> output, ref int length) where T : unmanaged
    {
        int size = Unsafe.SizeOf<T>();
        ref T value = ref MemoryMarshal.AsRef<T>(output.Slice(length, size));
        value = default;
        length += size;
        return ref value;
    }

    static bool Read<T>(ReadOnlySpan<byte> body, out T value, out ReadOnlySpan<byte> rest) where T : unmanaged
    {
        int size = Unsafe.SizeOf<T>();
        if (body.Length < size) { value = default; rest = default; return false; }
        value = MemoryMarshal.Read<T>(body);
        rest = body[size..];
        return true;
    }

    /// <summary>A NUL-terminated, non-empty name without '/'.</summary>
    static bool Name(ReadOnlySpan<byte> body, out ReadOnlySpan<byte> name, out ReadOnlySpan<byte> rest)
    {
        int nul = body.IndexOf((byte)0);
        if (nul <= 0) { name = default; rest = default; return false; }
        name = body[..nul];
        rest = body[(nul + 1)..];
        return true;
    }
}

/// <summary>A READ to be answered with up to <see cref="Size"/> bytes at <see cref="Offset"/> of <see cref="Fd"/>.</summary>
public readonly record struct SplicedRead(ulong Unique, int Fd, long Offset, int Size);
