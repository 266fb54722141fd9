using System.Diagnostics;
using System.Globalization;

namespace UnionFs.Engine.Cli;

/// <summary>
/// Byte progress for long operations. On a terminal: one redrawn line with a bar, percentage and MB/s.
/// Otherwise (logs, CI, pipes): one plain line when the step finishes, so output stays greppable.
/// Written to stderr so stdout carries only results.
/// </summary>
public sealed class Progress
{
    readonly string _label;
    readonly long _total;
    readonly bool _tty;
    readonly TextWriter _out;
    readonly Stopwatch _clock = Stopwatch.StartNew();
    long _done, _lastDrawTicks;
    bool _finished;

    /// <summary>Whether progress goes to a terminal; UNIONFS_PROGRESS=plain|tty overrides.</summary>
    public static bool Interactive => Environment.GetEnvironmentVariable("UNIONFS_PROGRESS") switch
    {
        "plain" => false,
        "tty" => true,
        _ => !Console.IsErrorRedirected,
    };

    public static bool Quiet { get; set; }

    public Progress(string label, long total, TextWriter? output = null, bool? tty = null)
    {
        _label = label; _total = total; _out = output ?? Console.Error; _tty = tty ?? Interactive;
        if (_tty && !Quiet) Draw();
    }

    public long Done => _done;
    public double Seconds => _clock.Elapsed.TotalSeconds;

    public void Add(long bytes)
    {
        _done += bytes;
        if (!_tty || Quiet) return;
        long now = _clock.ElapsedTicks;
        if (now - _lastDrawTicks < Stopwatch.Frequency / 10) return; // at most 10 redraws a second
        _lastDrawTicks = now;
        Draw();
    }

    void Draw()
    {
        const int width = 30;
        double frac = _total > 0 ? Math.Min(1, (double)_done / _total) : 0;
        int filled = (int)(frac * width);
        string bar = new string('=', filled) + (filled < width ? ">" : "") + new string(' ', Math.Max(0, width - filled - 1));
        _out.Write(string.Create(CultureInfo.InvariantCulture,
            $"\r{_label,-28} [{bar}] {frac * 100,5:0.0}% {Format.Bytes(_done),9}/{Format.Bytes(_total),-9} {Rate(),10}"));
        _out.Flush();
    }

    string Rate() => Seconds > 0.05 ? Format.Bytes((long)(_done / Seconds)) + "/s" : "";

    /// <summary>Ends the step with a one-line summary (size, time, throughput).</summary>
    public void Finish(string? result = null)
    {
        if (_finished || Quiet) return;
        _finished = true;
        string summary = string.Create(CultureInfo.InvariantCulture,
            $"{_label}: {result ?? "done"} ({Format.Bytes(_done)} in {Seconds:0.00}s, {_done / 1e6 / Math.Max(Seconds, 1e-3):0.0} MB/s)");
        if (_tty) _out.Write("\r" + new string(' ', 100) + "\r");
        _out.WriteLine(summary);
    }
}
