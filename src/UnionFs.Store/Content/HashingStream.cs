using System.Security.Cryptography;

namespace UnionFs.Store.Content;

/// <summary>
/// A read-only pass-through that hashes (sha256) and counts every byte read, and optionally copies
/// it to a sink. This is how a digest is "verified while streaming": the tar reader pulls through it,
/// and the digest is known the moment the last byte has been consumed, with no second pass.
/// </summary>
public sealed class HashingStream : Stream
{
    readonly Stream _inner;
    readonly Stream? _copyTo;
    readonly IncrementalHash _hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
    readonly bool _leaveOpen;
    readonly Action<long>? _onProgress;

    public long BytesRead { get; private set; }

    public HashingStream(Stream inner, Stream? copyTo = null, bool leaveOpen = false, Action<long>? onProgress = null)
    {
        _inner = inner; _copyTo = copyTo; _leaveOpen = leaveOpen; _onProgress = onProgress;
    }

    /// <summary>Reads to the end (tar readers stop at the end-of-archive marker; the padding after it is part of the digest).</summary>
    public void Drain()
    {
        var buf = new byte[81920];
        while (Read(buf, 0, buf.Length) > 0) { }
    }

    public string Digest() => Content.Digest.FromHash(_hash.GetCurrentHash());

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        int n = _inner.Read(buffer);
        if (n > 0)
        {
            _hash.AppendData(buffer[..n]);
            _copyTo?.Write(buffer[..n]);
            BytesRead += n;
            _onProgress?.Invoke(n);
        }
        return n;
    }

    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => BytesRead; set => throw new NotSupportedException(); }
    public override void Flush() { }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing) { _hash.Dispose(); if (!_leaveOpen) _inner.Dispose(); }
        base.Dispose(disposing);
    }
}

/// <summary>A write-only pass-through that hashes and counts what is written (used when producing tars).</summary>
public sealed class HashingWriteStream : Stream
{
    readonly Stream? _inner;
    readonly IncrementalHash _hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
    readonly Action<long>? _onProgress;
    public long BytesWritten { get; private set; }

    /// <param name="inner">where the bytes go; null to only hash them.</param>
    public HashingWriteStream(Stream? inner, Action<long>? onProgress = null) { _inner = inner; _onProgress = onProgress; }

    public string Digest() => Content.Digest.FromHash(_hash.GetCurrentHash());

    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));
    public override void Write(ReadOnlySpan<byte> buffer)
    {
        _hash.AppendData(buffer);
        _inner?.Write(buffer);
        BytesWritten += buffer.Length;
        _onProgress?.Invoke(buffer.Length);
    }

    public override bool CanRead => false;
    public override bool CanSeek => false;
    public override bool CanWrite => true;
    public override long Length => BytesWritten;
    public override long Position { get => BytesWritten; set => throw new NotSupportedException(); }
    public override void Flush() => _inner?.Flush();
    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    protected override void Dispose(bool disposing) { if (disposing) _hash.Dispose(); base.Dispose(disposing); }
}
