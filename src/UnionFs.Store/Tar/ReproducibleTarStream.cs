using System.Text;

namespace UnionFs.Store.Tar;

/// <summary>
/// A write-through filter under System.Formats.Tar's TarWriter that makes its PAX output reproducible.
/// TarWriter names each extended-header block "PaxHeaders.&lt;pid&gt;/&lt;name&gt;" (as GNU tar does), so the
/// same tree written by two processes gives two diffIDs. This rewrites the pid to 0 (Go's archive/tar
/// does the same) and fixes the header checksum; everything else passes through untouched.
/// </summary>
public sealed class ReproducibleTarStream(Stream inner) : Stream
{
    readonly byte[] _header = new byte[512];
    int _fill;
    long _passThrough; // bytes of entry data (padded to 512) still to copy verbatim
    static readonly byte[] Marker = "PaxHeaders."u8.ToArray();

    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

    public override void Write(ReadOnlySpan<byte> data)
    {
        while (data.Length > 0)
        {
            if (_passThrough > 0)
            {
                int n = (int)Math.Min(_passThrough, data.Length);
                inner.Write(data[..n]);
                data = data[n..];
                _passThrough -= n;
                continue;
            }
            int take = Math.Min(512 - _fill, data.Length);
            data[..take].CopyTo(_header.AsSpan(_fill));
            _fill += take;
            data = data[take..];
            if (_fill < 512) continue;
            _fill = 0;
            HandleHeader();
            inner.Write(_header);
        }
    }

    void HandleHeader()
    {
        if (_header.AsSpan().IndexOfAnyExcept((byte)0) < 0) return; // end-of-archive block
        byte type = _header[156];
        if (type is (byte)'x' or (byte)'g') NormalizeName();
        long size = ParseSize(_header.AsSpan(124, 12));
        _passThrough = (size + 511) / 512 * 512;
    }

    void NormalizeName()
    {
        var name = _header.AsSpan(0, 100);
        int at = name.IndexOf(Marker);
        if (at < 0) return;
        int digits = at + Marker.Length, end = digits;
        while (end < 100 && name[end] is >= (byte)'0' and <= (byte)'9') end++;
        if (end == digits) return;
        var rebuilt = new byte[100];
        name[..digits].CopyTo(rebuilt);
        rebuilt[digits] = (byte)'0';
        int nameEnd = name.IndexOf((byte)0);
        if (nameEnd < 0) nameEnd = 100;
        name[end..nameEnd].CopyTo(rebuilt.AsSpan(digits + 1));
        rebuilt.CopyTo(name);
        // Checksum: sum of the header with the checksum field as spaces, as "%06o\0 ".
        _header.AsSpan(148, 8).Fill((byte)' ');
        int sum = 0;
        foreach (var b in _header) sum += b;
        Encoding.ASCII.GetBytes(Convert.ToString(sum, 8).PadLeft(6, '0')).CopyTo(_header, 148);
        _header[154] = 0;
        _header[155] = (byte)' ';
    }

    static long ParseSize(ReadOnlySpan<byte> field)
    {
        if ((field[0] & 0x80) != 0)
        {
            long v = field[0] & 0x7f; // base-256 (GNU) for sizes over 8 GiB
            for (int i = 1; i < field.Length; i++) v = (v << 8) | field[i];
            return v;
        }
        long size = 0;
        foreach (var b in field)
        {
            if (b is >= (byte)'0' and <= (byte)'7') size = size * 8 + (b - '0');
            else if (size > 0 || b is 0) { if (b is 0 or (byte)' ') break; }
        }
        return size;
    }

    public override void Flush() => inner.Flush();
    public override bool CanRead => false;
    public override bool CanSeek => false;
    public override bool CanWrite => true;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
}
