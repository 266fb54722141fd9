using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace UnionFs.Engine.Cli;

/// <summary>Human formatting (sizes, ages, tables) and JSON output, without reflection (NativeAOT).</summary>
public static class Format
{
    public static string Bytes(long n)
    {
        string[] units = ["B", "kB", "MB", "GB", "TB"];
        double v = n; int u = 0;
        while (v >= 1000 && u < units.Length - 1) { v /= 1000; u++; }
        return u == 0 ? $"{n}B" : string.Create(CultureInfo.InvariantCulture, $"{v:0.##}{units[u]}");
    }

    public static string Ago(DateTimeOffset t)
    {
        var d = DateTimeOffset.UtcNow - t;
        if (d.TotalSeconds < 60) return "Less than a minute ago";
        if (d.TotalMinutes < 60) return $"{(int)d.TotalMinutes} minutes ago";
        if (d.TotalHours < 48) return $"{(int)d.TotalHours} hours ago";
        if (d.TotalDays < 60) return $"{(int)d.TotalDays} days ago";
        return $"{(int)(d.TotalDays / 30)} months ago";
    }

    /// <summary>Left-aligned columns separated by three spaces, like docker's listings.</summary>
    public static string Table(string[] headers, IEnumerable<string[]> rows)
    {
        var all = new List<string[]> { headers };
        all.AddRange(rows);
        var widths = new int[headers.Length];
        foreach (var r in all) for (int i = 0; i < r.Length; i++) widths[i] = Math.Max(widths[i], r[i].Length);
        var sb = new StringBuilder();
        foreach (var r in all)
        {
            for (int i = 0; i < r.Length; i++) sb.Append(i == r.Length - 1 ? r[i] : r[i].PadRight(widths[i] + 3));
            sb.Append('\n');
        }
        return sb.ToString();
    }

    public static string Json(JsonNode? node)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Indented = true }))
        {
            if (node is null) w.WriteNullValue(); else node.WriteTo(w);
        }
        return Encoding.UTF8.GetString(ms.ToArray());
    }

    /// <summary>Compact UTF-8 JSON bytes (configs, manifests): what gets hashed.</summary>
    public static byte[] JsonBytes(JsonNode node)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms)) node.WriteTo(w);
        return ms.ToArray();
    }

    public static string Iso(DateTimeOffset t) => t.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fffffff'Z'", CultureInfo.InvariantCulture);

    /// <summary>
    /// A timestamp inside an image config, written exactly as Go's time.Time marshals it (RFC 3339 with
    /// nanoseconds, trailing zeros of the fraction trimmed, no fraction at all when it is zero): tools
    /// written in Go (skopeo converting docker-archive to OCI, containers/image, docker) re-marshal the
    /// config, and its bytes are the image id, so "…29.8044930Z" (our old fixed 7 digits) came back as
    /// "…29.804493Z" and the image got a different id whenever a tick count ended in 0.
    /// </summary>
    public static string ConfigTime(DateTimeOffset t) => t.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.FFFFFFF'Z'", CultureInfo.InvariantCulture);
}
