using System.IO.Compression;

namespace UnionFs.Store.Content;

public enum CompressionKind { None, Gzip, Zstd }

/// <summary>Recognises a layer blob's compression by its magic bytes (media types lie; bytes do not).</summary>
public static class Compression
{
    public static CompressionKind Sniff(ReadOnlySpan<byte> head) =>
        head.Length >= 2 && head[0] == 0x1f && head[1] == 0x8b ? CompressionKind.Gzip
        : head.Length >= 4 && head[0] == 0x28 && head[1] == 0xb5 && head[2] == 0x2f && head[3] == 0xfd ? CompressionKind.Zstd
        : CompressionKind.None;

    /// <summary>Wraps <paramref name="input"/> so that reading it yields the uncompressed bytes, whatever the format.</summary>
    public static Stream Decompress(Stream input, out CompressionKind kind)
    {
        var peek = new PeekStream(input, 4);
        kind = Sniff(peek.Head);
        return kind switch
        {
            CompressionKind.Gzip => new GZipStream(peek, CompressionMode.Decompress),
            CompressionKind.Zstd => new ZstdSharp.DecompressionStream(peek),
            _ => peek,
        };
    }

    public static string MediaType(CompressionKind kind) => kind switch
    {
        CompressionKind.Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
        CompressionKind.Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        _ => "application/vnd.oci.image.layer.v1.tar",
    };
}

/// <summary>Reads the first few bytes of a non-seekable stream ahead and then replays them.</summary>
public sealed class PeekStream : Stream
{
    readonly Stream _inner;
    readonly byte[] _head;
    int _headLen, _headPos;

    public PeekStream(Stream inner, int count)
    {
        _inner = inner;
        _head = new byte[count];
        while (_headLen < count)
        {
            int n = inner.Read(_head, _headLen, count - _headLen);
            if (n == 0) break;
            _headLen += n;
        }
    }

    public ReadOnlySpan<byte> Head => _head.AsSpan(0, _headLen);

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));
    public override int Read(Span<byte> buffer)
    {
        if (_headPos < _headLen)
        {
            int n = Math.Min(buffer.Length, _headLen - _headPos);
            _head.AsSpan(_headPos, n).CopyTo(buffer);
            _headPos += n;
            return n;
        }
        return _inner.Read(buffer);
    }

    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
    public override void Flush() { }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    protected override void Dispose(bool disposing) { if (disposing) _inner.Dispose(); base.Dispose(disposing); }
}
