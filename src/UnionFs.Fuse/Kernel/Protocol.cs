using System.Runtime.InteropServices;

namespace UnionFs.Fuse.Kernel;

// The FUSE wire format, protocol 7.45 (include/uapi/linux/fuse.h). Every struct is laid out exactly as
// the kernel's; sizes are asserted in UnionFs.Fuse.Tests. Requests are read straight out of the receive
// buffer with MemoryMarshal, so nothing here may contain a reference type.

public enum Opcode : uint
{
    Lookup = 1, Forget = 2, GetAttr = 3, SetAttr = 4, ReadLink = 5, Symlink = 6, MkNod = 8, MkDir = 9,
    Unlink = 10, RmDir = 11, Rename = 12, Link = 13, Open = 14, Read = 15, Write = 16, StatFs = 17,
    Release = 18, Fsync = 20, SetXattr = 21, GetXattr = 22, ListXattr = 23, RemoveXattr = 24, Flush = 25,
    Init = 26, OpenDir = 27, ReadDir = 28, ReleaseDir = 29, FsyncDir = 30, GetLk = 31, SetLk = 32,
    SetLkW = 33, Access = 34, Create = 35, Interrupt = 36, Bmap = 37, Destroy = 38, Ioctl = 39, Poll = 40,
    NotifyReply = 41, BatchForget = 42, Fallocate = 43, ReadDirPlus = 44, Rename2 = 45, Lseek = 46,
    CopyFileRange = 47, SetupMapping = 48, RemoveMapping = 49, SyncFs = 50, TmpFile = 51, Statx = 52,
    CopyFileRange64 = 53,
}

/// <summary>INIT capability bits; bits 32 and up travel in flags2.</summary>
[Flags]
public enum InitFlags : ulong
{
    AsyncRead = 1UL << 0, PosixLocks = 1UL << 1, AtomicOTrunc = 1UL << 3, ExportSupport = 1UL << 4,
    BigWrites = 1UL << 5, DontMask = 1UL << 6, FlockLocks = 1UL << 10, AutoInvalData = 1UL << 12,
    DoReaddirplus = 1UL << 13, ReaddirplusAuto = 1UL << 14, AsyncDio = 1UL << 15, WritebackCache = 1UL << 16,
    ParallelDirops = 1UL << 18, HandleKillpriv = 1UL << 19, PosixAcl = 1UL << 20, AbortError = 1UL << 21,
    MaxPages = 1UL << 22, CacheSymlinks = 1UL << 23, HandleKillprivV2 = 1UL << 28, SetxattrExt = 1UL << 29,
    InitExt = 1UL << 30, SecurityCtx = 1UL << 32, CreateSuppGroup = 1UL << 34, HasExpireOnly = 1UL << 35,
    DirectIoAllowMmap = 1UL << 36, Passthrough = 1UL << 37, NoExportSupport = 1UL << 38,
}

public static class OpenFlags
{
    public const uint DirectIo = 1, KeepCache = 2, NonSeekable = 4, CacheDir = 8, Stream = 16, NoFlush = 32,
        ParallelDirectWrites = 64, Passthrough = 128;
}

/// <summary>fuse_write_in.write_flags.</summary>
public static class WriteFlags
{
    public const uint Cache = 1, LockOwner = 2, KillSuidGid = 4;
}

/// <summary>fuse_open_in.open_flags (OPEN and CREATE).</summary>
public static class OpenInFlags
{
    public const uint KillSuidGid = 1;
}

public static class SetAttrValid
{
    public const uint Mode = 1, Uid = 2, Gid = 4, Size = 8, ATime = 16, MTime = 32, Fh = 64, ATimeNow = 128,
        MTimeNow = 256, LockOwner = 512, CTime = 1024, KillSuidGid = 2048;
}

[StructLayout(LayoutKind.Sequential)]
public struct InHeader
{
    public uint Len; public Opcode Opcode; public ulong Unique; public ulong NodeId;
    public uint Uid, Gid, Pid; public ushort TotalExtLen, Padding;
}

[StructLayout(LayoutKind.Sequential)]
public struct OutHeader { public uint Len; public int Error; public ulong Unique; }

[StructLayout(LayoutKind.Sequential)]
public unsafe struct InitIn { public uint Major, Minor, MaxReadahead, Flags, Flags2; public fixed uint Unused[11]; }

[StructLayout(LayoutKind.Sequential)]
public unsafe struct InitOut
{
    public uint Major, Minor, MaxReadahead, Flags;
    public ushort MaxBackground, CongestionThreshold;
    public uint MaxWrite, TimeGran;
    public ushort MaxPages, MapAlignment;
    public uint Flags2, MaxStackDepth;
    public ushort RequestTimeout;
    public fixed ushort Unused[11];
}

/// <summary>struct fuse_attr: what stat(2) shows through the mount.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct Attr
{
    public ulong Ino, Size, Blocks, ATime, MTime, CTime;
    public uint ATimeNsec, MTimeNsec, CTimeNsec, Mode, NLink, Uid, Gid, RDev, BlkSize, Flags;
}

/// <summary>struct fuse_entry_out: the answer to LOOKUP and to every call that creates a name.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct EntryOut
{
    public ulong NodeId, Generation, EntryValid, AttrValid;
    public uint EntryValidNsec, AttrValidNsec;
    public Attr Attr;
}

[StructLayout(LayoutKind.Sequential)]
public struct AttrOut { public ulong AttrValid; public uint AttrValidNsec, Dummy; public Attr Attr; }

[StructLayout(LayoutKind.Sequential)]
public struct OpenOut { public ulong Fh; public uint OpenFlags; public int BackingId; }

[StructLayout(LayoutKind.Sequential)]
public struct StatFsOut
{
    public ulong Blocks, BFree, BAvail, Files, FFree;
    public uint BSize, NameLen, FrSize, Padding;
    public uint Spare0, Spare1, Spare2, Spare3, Spare4, Spare5;
}

[StructLayout(LayoutKind.Sequential)] public struct GetAttrIn { public uint GetAttrFlags, Dummy; public ulong Fh; }

[StructLayout(LayoutKind.Sequential)]
public struct SetAttrIn
{
    public uint Valid, Padding; public ulong Fh, Size, LockOwner, ATime, MTime, CTime;
    public uint ATimeNsec, MTimeNsec, CTimeNsec, Mode, Unused4, Uid, Gid, Unused5;
}

[StructLayout(LayoutKind.Sequential)] public struct MkNodIn { public uint Mode, RDev, Umask, Padding; }
[StructLayout(LayoutKind.Sequential)] public struct MkDirIn { public uint Mode, Umask; }
[StructLayout(LayoutKind.Sequential)] public struct RenameIn { public ulong NewDir; }
[StructLayout(LayoutKind.Sequential)] public struct Rename2In { public ulong NewDir; public uint Flags, Padding; }
[StructLayout(LayoutKind.Sequential)] public struct LinkIn { public ulong OldNodeId; }
[StructLayout(LayoutKind.Sequential)] public struct OpenIn { public uint Flags, OpenFlags; }
[StructLayout(LayoutKind.Sequential)] public struct CreateIn { public uint Flags, Mode, Umask, OpenFlags; }

/// <summary>fuse_read_in and fuse_write_in share this layout (READ, WRITE, READDIR, READDIRPLUS).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct ReadIn { public ulong Fh, Offset; public uint Size, ReadFlags; public ulong LockOwner; public uint Flags, Padding; }

[StructLayout(LayoutKind.Sequential)] public struct WriteOut { public uint Size, Padding; }
[StructLayout(LayoutKind.Sequential)] public struct ReleaseIn { public ulong Fh; public uint Flags, ReleaseFlags; public ulong LockOwner; }
[StructLayout(LayoutKind.Sequential)] public struct FlushIn { public ulong Fh; public uint Unused, Padding; public ulong LockOwner; }
[StructLayout(LayoutKind.Sequential)] public struct FsyncIn { public ulong Fh; public uint FsyncFlags, Padding; }
[StructLayout(LayoutKind.Sequential)] public struct SetXattrIn { public uint Size, Flags, SetXattrFlags, Padding; }
/// <summary>fuse_setxattr_in.setxattr_flags.</summary>
public static class SetXattrFlags { public const uint AclKillSgid = 1; }
[StructLayout(LayoutKind.Sequential)] public struct GetXattrIn { public uint Size, Padding; }
[StructLayout(LayoutKind.Sequential)] public struct GetXattrOut { public uint Size, Padding; }
[StructLayout(LayoutKind.Sequential)] public struct AccessIn { public uint Mask, Padding; }
[StructLayout(LayoutKind.Sequential)] public struct ForgetIn { public ulong NLookup; }
[StructLayout(LayoutKind.Sequential)] public struct BatchForgetIn { public uint Count, Dummy; }
[StructLayout(LayoutKind.Sequential)] public struct ForgetOne { public ulong NodeId, NLookup; }
[StructLayout(LayoutKind.Sequential)] public struct InterruptIn { public ulong Unique; }
[StructLayout(LayoutKind.Sequential)] public struct FallocateIn { public ulong Fh, Offset, Length; public uint Mode, Padding; }
[StructLayout(LayoutKind.Sequential)] public struct LseekIn { public ulong Fh, Offset; public uint Whence, Padding; }
[StructLayout(LayoutKind.Sequential)] public struct LseekOut { public ulong Offset; }
[StructLayout(LayoutKind.Sequential)]
public struct CopyFileRangeIn { public ulong FhIn, OffIn, NodeIdOut, FhOut, OffOut, Len, Flags; }
[StructLayout(LayoutKind.Sequential)] public struct CopyFileRangeOut { public ulong BytesCopied; }
[StructLayout(LayoutKind.Sequential)] public struct DirentHeader { public ulong Ino, Off; public uint NameLen, Type; }
[StructLayout(LayoutKind.Sequential)] public struct NotifyInvalInodeOut { public ulong Ino; public long Off, Len; }
[StructLayout(LayoutKind.Sequential)] public struct NotifyInvalEntryOut { public ulong Parent; public uint NameLen, Flags; }
[StructLayout(LayoutKind.Sequential)] public struct BackingMap { public int Fd; public uint Flags; public ulong Padding; }

public static class Ioctl
{
    public const uint DevClone = 0x8004E500, BackingOpen = 0x4010E501, BackingClose = 0x4004E502;
}
