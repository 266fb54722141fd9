namespace UnionFs.Engine.Registry;

/// <summary>
/// Cancels its token when <see cref="Kick"/> has not been called for a while: a stalled transfer (a
/// registry that stops reading or answering without closing the connection) becomes an error instead of
/// a hang. Without kicks it is a plain timeout.
/// </summary>
public sealed class Watchdog : IDisposable
{
    readonly CancellationTokenSource _cts;
    readonly Timer _timer;
    readonly long _limitMs;
    long _last = Environment.TickCount64;
    volatile bool _fired;

    public Watchdog(TimeSpan limit, CancellationToken outer)
    {
        _limitMs = (long)limit.TotalMilliseconds;
        _cts = CancellationTokenSource.CreateLinkedTokenSource(outer);
        long period = Math.Clamp(_limitMs / 4, 50, 1000);
        _timer = new Timer(_ => Check(), null, period, period);
    }

    void Check()
    {
        if (_fired || Environment.TickCount64 - Interlocked.Read(ref _last) < _limitMs) return;
        _fired = true;
        try { _cts.Cancel(); } catch (ObjectDisposedException) { }
    }

    public CancellationToken Token => _cts.Token;

    /// <summary>Whether the token was cancelled by the watchdog (not by the caller's token).</summary>
    public bool Fired => _fired;

    public void Kick() => Interlocked.Exchange(ref _last, Environment.TickCount64);

    public void Dispose()
    {
        _timer.Dispose();
        _cts.Dispose();
    }
}
