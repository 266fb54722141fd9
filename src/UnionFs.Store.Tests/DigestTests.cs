using System.Security.Cryptography;
using System.Text;
using UnionFs.Store.Content;

namespace UnionFs.Store.Tests;

public class DigestTests
{
    [Fact]
    public void Of_is_sha256_hex_with_prefix() =>
        Assert.Equal("sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824", Digest.Of("hello"));

    [Fact]
    public void ChainId_of_first_layer_is_its_diffId()
    {
        string d = Digest.Of("a");
        Assert.Equal(d, Digest.ChainId(null, d));
    }

    [Fact]
    public void ChainId_hashes_parent_space_diffId()
    {
        string a = Digest.Of("a"), b = Digest.Of("b"), c = Digest.Of("c");
        string ab = "sha256:" + Convert.ToHexStringLower(SHA256.HashData(Encoding.ASCII.GetBytes(a + " " + b)));
        string abc = "sha256:" + Convert.ToHexStringLower(SHA256.HashData(Encoding.ASCII.GetBytes(ab + " " + c)));
        Assert.Equal([a, ab, abc], Digest.ChainIds([a, b, c]));
    }

    [Theory]
    [InlineData("sha256:zz")]
    [InlineData("md5:0123")]
    [InlineData("sha256:2CF24DBA5FB0A30E26E83B2AC5B9E29E1B161E5C1FA7425E73043362938B9824")]
    public void Parse_rejects_malformed(string s) => Assert.Throws<StoreException>(() => Digest.Parse(s));

    [Fact]
    public void RandomId_is_64_hex_and_unique()
    {
        var a = Digest.RandomId();
        Assert.Matches("^[0-9a-f]{64}$", a);
        Assert.NotEqual(a, Digest.RandomId());
    }

    [Fact]
    public void HashingStream_hashes_what_was_read_and_copies_it()
    {
        var data = Encoding.UTF8.GetBytes(new string('x', 100_000));
        var copy = new MemoryStream();
        using var h = new HashingStream(new MemoryStream(data), copyTo: copy);
        h.Drain();
        Assert.Equal(Digest.Of(data), h.Digest());
        Assert.Equal(data, copy.ToArray());
        Assert.Equal(data.Length, h.BytesRead);
    }
}
