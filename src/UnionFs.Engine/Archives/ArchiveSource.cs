using System.Formats.Tar;
using UnionFs.Store.Tar;

namespace UnionFs.Engine.Archives;

/// <summary>
/// The members of an image archive, by '/'-separated name: a directory (OCI layout, unpacked
/// docker-archive), or an uncompressed tar file read in place: indexed once, then each member is read
/// at its offset, so a multi-gigabyte `docker save` file is not copied before its layers are stored.
/// </summary>
public abstract class ArchiveSource : IDisposable
{
    public abstract string Display { get; }
    public abstract bool Exists(string name);
    protected abstract Stream OpenMember(string name);

    public Stream Open(string name)
    {
        if (!Exists(name)) throw new StoreException($"{Display}: member '{name}' is missing");
        return OpenMember(name);
    }

    public byte[] ReadAll(string name)
    {
        using var s = Open(name);
        var ms = new MemoryStream();
        s.CopyTo(ms);
        return ms.ToArray();
    }

    public virtual void Dispose() { }

    protected static string Key(string name) => SafePath.Normalize(name, "archive member");

    public static ArchiveSource Directory(string dir) => new DirSource(dir);

    /// <summary>Indexes a seekable, uncompressed tar file's regular-file members.</summary>
    public static ArchiveSource TarFile(string path) => new TarFileSource(path);

    sealed class DirSource(string dir) : ArchiveSource
    {
        public override string Display => dir;
        public override bool Exists(string name) => File.Exists(Path.Combine(dir, Key(name)));
        protected override Stream OpenMember(string name) => File.OpenRead(Path.Combine(dir, Key(name)));
    }

    sealed class TarFileSource : ArchiveSource
    {
        readonly string _path;
        readonly FileStream _file;
        readonly TarReader _reader;
        readonly Dictionary<string, TarEntry> _members = new();

        public TarFileSource(string path)
        {
            _path = path;
            _file = File.OpenRead(path);
            // Over a seekable stream, TarReader gives every entry its own seekable DataStream that stays
            // usable after the reader has moved on, so one pass indexes the archive without copying it.
            _reader = new TarReader(_file);
            try
            {
                while (_reader.GetNextEntry(copyData: false) is { } e)
                    if (e.EntryType is TarEntryType.RegularFile or TarEntryType.V7RegularFile) _members[Key(e.Name)] = e;
            }
            catch (Exception ex) when (ex is InvalidDataException or EndOfStreamException)
            {
                Dispose();
                throw new StoreException($"load {path}: not a tar archive ({ex.Message})");
            }
        }

        public override string Display => _path;
        public override bool Exists(string name) => _members.ContainsKey(Key(name));

        protected override Stream OpenMember(string name)
        {
            var e = _members[Key(name)];
            if (e.DataStream is not { CanSeek: true } data) return new MemoryStream();
            return new SliceStream(data, 0, e.Length, ownsInner: false);
        }

        public override void Dispose() { _reader.Dispose(); _file.Dispose(); }
    }
}

/// <summary>A read-only window [offset, offset+length) of a seekable stream (owned unless told otherwise).</summary>
public sealed class SliceStream : Stream
{
    readonly Stream _inner;
    readonly long _offset, _length;
    readonly bool _ownsInner;
    long _pos;

    public SliceStream(Stream inner, long offset, long length, bool ownsInner = true)
    {
        _inner = inner; _offset = offset; _length = length; _ownsInner = ownsInner;
        _inner.Seek(offset, SeekOrigin.Begin);
    }

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        long left = _length - _pos;
        if (left <= 0) return 0;
        int n = _inner.Read(buffer[..(int)Math.Min(buffer.Length, left)]);
        _pos += n;
        return n;
    }

    public override long Seek(long offset, SeekOrigin origin)
    {
        long target = origin switch { SeekOrigin.Begin => offset, SeekOrigin.Current => _pos + offset, _ => _length + offset };
        if (target < 0 || target > _length) throw new IOException("seek outside the archive member");
        _inner.Seek(_offset + target, SeekOrigin.Begin);
        return _pos = target;
    }

    public override bool CanRead => true;
    public override bool CanSeek => true;
    public override bool CanWrite => false;
    public override long Length => _length;
    public override long Position { get => _pos; set => Seek(value, SeekOrigin.Begin); }
    public override void Flush() { }
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    protected override void Dispose(bool disposing) { if (disposing && _ownsInner) _inner.Dispose(); base.Dispose(disposing); }
}
