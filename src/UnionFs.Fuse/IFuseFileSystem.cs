using UnionFs.Fuse.Kernel;
using UnionFs.Posix;

namespace UnionFs.Fuse;

/// <summary>
/// Who is asking: the caller's fsuid, fsgid and thread-group id (0 for RELEASE, FORGET, writeback).
/// <paramref name="KillSuidGid"/>: the caller lacks CAP_FSETID, so this WRITE, truncating SETATTR or O_TRUNC
/// OPEN/CREATE must clear set-user-ID, and set-group-ID when group-executable (see
/// <see cref="IFuseFileSystem.HandlesKillPriv"/>); on a SETXATTR of an access ACL it asks to clear set-group-ID
/// (the caller is not in the file's group), as setting the mode would.
/// </summary>
public readonly record struct RequestContext(uint Uid, uint Gid, uint Pid, bool KillSuidGid = false);

/// <summary>
/// An inode-based filesystem served over FUSE, in the shape of go-fuse's raw API and fuser's Filesystem trait.
///
/// Node ids: 1 is the root and is never forgotten. Every successful LOOKUP, MKNOD, MKDIR, SYMLINK, LINK, CREATE,
/// TMPFILE reply, and every READDIRPLUS entry that names a node, hands the kernel one reference to that node
/// (its lookup count); <see cref="Forget"/> gives references back. A node must stay valid, and keep meaning the
/// same object, until its count returns to zero. Ids are never reused, so generation stays 0.
///
/// File handles (fh) are opaque 64-bit values chosen by the filesystem at OPEN/CREATE/OPENDIR and echoed back.
///
/// Every method returns 0 or a positive errno; the protocol layer negates it for the wire. Names arrive as raw
/// bytes (Linux names are bytes, not text), with the terminating NUL still in memory just past the span, so they
/// can be handed to *at() syscalls without a copy. Methods may be called concurrently from several worker threads.
/// An operation left at its default answers ENOSYS, which the kernel remembers for some opcodes (see the protocol notes).
/// </summary>
public interface IFuseFileSystem
{
    /// <summary>
    /// The filesystem clears set-user-ID/set-group-ID bits and security.capability itself on write, truncate and
    /// chown (HANDLE_KILLPRIV_V2), as <see cref="RequestContext.KillSuidGid"/> asks. The kernel then trusts an
    /// inode it has once seen without them, instead of asking for security.capability before every write(2).
    /// </summary>
    bool HandlesKillPriv => false;

    /// <summary>
    /// Whether the filesystem applies the caller's umask to new objects itself (FUSE_DONT_MASK): it then gets the mode
    /// unmasked with the umask beside it, and must leave the umask out where the parent directory has a default ACL,
    /// which replaces the umask on a local filesystem.
    /// </summary>
    bool AppliesUmask => false;

    /// <summary>Called once after INIT with what was negotiated.</summary>
    void Initialized(FuseSession session) { }

    int Lookup(in RequestContext ctx, ulong parent, ReadOnlySpan<byte> name, ref EntryOut entry) => Errno.ENOSYS;
    void Forget(ulong node, ulong nlookup) { }
    int GetAttr(in RequestContext ctx, ulong node, ulong fh, bool hasFh, ref AttrOut attr) => Errno.ENOSYS;
    int SetAttr(in RequestContext ctx, ulong node, in SetAttrIn changes, ref AttrOut attr) => Errno.ENOSYS;
    /// <summary>Copies the link target into <paramref name="target"/> (no NUL) and returns its length in <paramref name="length"/>.</summary>
    int ReadLink(in RequestContext ctx, ulong node, Span<byte> target, out int length) { length = 0; return Errno.ENOSYS; }

    int MkNod(in RequestContext ctx, ulong parent, ReadOnlySpan<byte> name, uint mode, uint rdev, uint umask, ref EntryOut entry) => Errno.ENOSYS;
    int MkDir(in RequestContext ctx, ulong parent, ReadOnlySpan<byte> name, uint mode, uint umask, ref EntryOut entry) => Errno.ENOSYS;
    int Symlink(in RequestContext ctx, ulong parent, ReadOnlySpan<byte> name, ReadOnlySpan<byte> target, ref EntryOut entry) => Errno.ENOSYS;
    int Link(in RequestContext ctx, ulong node, ulong newParent, ReadOnlySpan<byte> newName, ref EntryOut entry) => Errno.ENOSYS;
    int Unlink(in RequestContext ctx, ulong parent, ReadOnlySpan<byte> name) => Errno.ENOSYS;
    int RmDir(in RequestContext ctx, ulong parent, ReadOnlySpan<byte> name) => Errno.ENOSYS;
    /// <summary>rename(2)/renameat2(2); flags are RENAME_NOREPLACE, RENAME_EXCHANGE, RENAME_WHITEOUT.</summary>
    int Rename(in RequestContext ctx, ulong parent, ReadOnlySpan<byte> name, ulong newParent, ReadOnlySpan<byte> newName, uint flags) => Errno.ENOSYS;

    /// <summary>open(2) flags without O_CREAT/O_EXCL/O_NOCTTY; O_TRUNC is included (ATOMIC_O_TRUNC).</summary>
    int Open(in RequestContext ctx, ulong node, int flags, ref OpenOut open) => Errno.ENOSYS;
    /// <summary>open(O_CREAT): create the file, or open it if it exists and O_EXCL is not set.</summary>
    int Create(in RequestContext ctx, ulong parent, ReadOnlySpan<byte> name, int flags, uint mode, uint umask, ref EntryOut entry, ref OpenOut open) => Errno.ENOSYS;
    /// <summary>open(O_TMPFILE) in directory <paramref name="parent"/>: an unnamed file.</summary>
    int TmpFile(in RequestContext ctx, ulong parent, int flags, uint mode, uint umask, ref EntryOut entry, ref OpenOut open) => Errno.EOPNOTSUPP;
    /// <summary>Fills <paramref name="buffer"/> from <paramref name="offset"/>; a short count means end of file.</summary>
    int Read(in RequestContext ctx, ulong node, ulong fh, long offset, Span<byte> buffer, out int bytesRead) { bytesRead = 0; return Errno.ENOSYS; }
    /// <summary>
    /// A descriptor whose bytes at any offset are this open file's, as <see cref="Read"/> would return them, or -1.
    /// The session then splices READ data from it: the kernel takes the pages straight from the descriptor's page
    /// cache, and the data never passes through the daemon's memory.
    /// </summary>
    int ReadSource(ulong node, ulong fh) => -1;
    int Write(in RequestContext ctx, ulong node, ulong fh, long offset, ReadOnlySpan<byte> data, uint writeFlags, out int written) { written = 0; return Errno.ENOSYS; }
    int Flush(in RequestContext ctx, ulong node, ulong fh) => 0;
    int Release(in RequestContext ctx, ulong node, ulong fh, int flags) => 0;
    int Fsync(in RequestContext ctx, ulong node, ulong fh, bool dataOnly) => 0;
    int Fallocate(in RequestContext ctx, ulong node, ulong fh, long offset, long length, int mode) => Errno.EOPNOTSUPP;
    /// <summary>SEEK_DATA / SEEK_HOLE only; ordinary seeks never reach the daemon.</summary>
    int Lseek(in RequestContext ctx, ulong node, ulong fh, long offset, int whence, out long result) { result = 0; return Errno.ENOSYS; }
    int CopyFileRange(in RequestContext ctx, ulong nodeIn, ulong fhIn, long offIn, ulong nodeOut, ulong fhOut, long offOut, long length, out long copied) { copied = 0; return Errno.ENOSYS; }

    int OpenDir(in RequestContext ctx, ulong node, int flags, ref OpenOut open) => Errno.ENOSYS;
    /// <summary>
    /// Adds entries after cookie <paramref name="offset"/> (0 = from the start) until <paramref name="writer"/> is full.
    /// Cookies must stay valid for the life of the handle even while the directory changes. With
    /// <see cref="DirEntryWriter.Plus"/>, each entry added with a node id counts as a lookup.
    /// </summary>
    int ReadDir(in RequestContext ctx, ulong node, ulong fh, long offset, ref DirEntryWriter writer) => Errno.ENOSYS;
    int ReleaseDir(in RequestContext ctx, ulong node, ulong fh) => 0;
    int FsyncDir(in RequestContext ctx, ulong node, ulong fh, bool dataOnly) => 0;

    int StatFs(in RequestContext ctx, ulong node, ref StatFsOut statfs) => Errno.ENOSYS;
    int SetXattr(in RequestContext ctx, ulong node, ReadOnlySpan<byte> name, ReadOnlySpan<byte> value, int flags) => Errno.EOPNOTSUPP;
    /// <summary>An empty <paramref name="value"/> is a size probe: report the size only.</summary>
    int GetXattr(in RequestContext ctx, ulong node, ReadOnlySpan<byte> name, Span<byte> value, out int size) { size = 0; return Errno.EOPNOTSUPP; }
    /// <summary>NUL-separated names; an empty <paramref name="list"/> is a size probe.</summary>
    int ListXattr(in RequestContext ctx, ulong node, Span<byte> list, out int size) { size = 0; return Errno.EOPNOTSUPP; }
    int RemoveXattr(in RequestContext ctx, ulong node, ReadOnlySpan<byte> name) => Errno.EOPNOTSUPP;
    int Access(in RequestContext ctx, ulong node, int mask) => Errno.ENOSYS;

    /// <summary>The connection is gone (unmounted or aborted); release everything.</summary>
    void Destroyed() { }
}
