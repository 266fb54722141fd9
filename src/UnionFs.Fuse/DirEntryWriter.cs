using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using UnionFs.Fuse.Kernel;

namespace UnionFs.Fuse;

/// <summary>
/// Packs fuse_dirent (READDIR) or fuse_direntplus (READDIRPLUS) records into the reply buffer.
/// Records are 8-byte aligned and never split: a record that does not fit is left for the next call,
/// which resumes from the cookie of the last record written.
/// </summary>
public ref struct DirEntryWriter
{
    readonly Span<byte> _buffer;
    int _used;

    public DirEntryWriter(Span<byte> buffer, bool plus) { _buffer = buffer; Plus = plus; _used = 0; }

    /// <summary>READDIRPLUS: each entry carries an entry_out and counts as a lookup of its node.</summary>
    public bool Plus { get; }
    public int Length => _used;

    static int RecordSize(int nameLength, bool plus) =>
        ((plus ? Unsafe.SizeOf<EntryOut>() : 0) + Unsafe.SizeOf<DirentHeader>() + nameLength + 7) & ~7;

    /// <summary>Whether a record for a name of this length still fits; ask before doing a lookup for it.</summary>
    public readonly bool Fits(int nameLength) => _used + RecordSize(nameLength, Plus) <= _buffer.Length;

    /// <summary>Adds one record. <paramref name="nextCookie"/> is where the listing resumes after it (never 0).
    /// In plus mode <paramref name="entry"/> is written too (node id 0 = listed but not instantiated).</summary>
    public bool TryAdd(ReadOnlySpan<byte> name, ulong ino, uint fileType, long nextCookie, in EntryOut entry)
    {
        int size = RecordSize(name.Length, Plus);
        if (_used + size > _buffer.Length) return false;
        Span<byte> record = _buffer.Slice(_used, size);
        int at = 0;
        if (Plus)
        {
            MemoryMarshal.Write(record, in entry);
            at = Unsafe.SizeOf<EntryOut>();
        }
        var header = new DirentHeader { Ino = ino, Off = (ulong)nextCookie, NameLen = (uint)name.Length, Type = (fileType & 0xF000) >> 12 };
        MemoryMarshal.Write(record[at..], in header);
        at += Unsafe.SizeOf<DirentHeader>();
        name.CopyTo(record[at..]);
        record[(at + name.Length)..].Clear();
        _used += size;
        return true;
    }
}
