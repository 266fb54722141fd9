using UnionFs.Engine.Cli;
using UnionFs.Engine.Images;

namespace UnionFs.Engine.Tests;

public class ImageConfigTests
{
    // Go's time.Time MarshalJSON (RFC3339Nano): what skopeo/containers-image write when they re-marshal a config.
    [Theory]
    [InlineData(2026, 11, 28, 10, 49, 29, 8044930, "2026-11-28T10:49:29.804493Z")]
    [InlineData(2026, 11, 28, 10, 49, 29, 8595262, "2026-11-28T10:49:29.8595262Z")]
    [InlineData(2026, 11, 28, 10, 49, 29, 5000000, "2026-11-28T10:49:29.5Z")]
    [InlineData(2026, 11, 28, 10, 49, 29, 0, "2026-11-28T10:49:29Z")]
    public void Config_times_are_written_like_go(int y, int mo, int d, int h, int mi, int s, long ticks, string expected)
    {
        var t = new DateTimeOffset(y, mo, d, h, mi, s, TimeSpan.Zero).AddTicks(ticks);
        Assert.Equal(expected, Format.ConfigTime(t));
        Assert.Equal(t, DateTimeOffset.Parse(expected, System.Globalization.CultureInfo.InvariantCulture));
    }

    [Fact]
    public void New_configs_carry_go_style_times()
    {
        var t = new DateTimeOffset(2026, 1, 2, 3, 4, 5, TimeSpan.Zero).AddTicks(1230);
        var c = ImageConfig.NewBase("sha256:" + new string('a', 64), "x", t).WithLayer("sha256:" + new string('b', 64), "y", null, t);
        string json = System.Text.Encoding.UTF8.GetString(c.ToBytes());
        Assert.DoesNotContain(".0001230Z", json);
        Assert.Equal(3, json.Split("\"2026-01-02T03:04:05.000123Z\"").Length - 1);
        Assert.Equal(t, c.Created);
    }
}
