namespace UnionFs.Posix;

/// <summary>The calling thread's capabilities. Linux keeps credentials per thread, so a change here affects only
/// the thread that makes it, and only until it is undone.</summary>
public static unsafe class Capabilities
{
    const int CapFsetid = 4;

    /// <summary>The capability sets the process started with, read once: only <see cref="WithoutFsetid"/> changes
    /// a thread's sets, and it always puts them back, so every thread has these whenever it is not inside it.</summary>
    static readonly (CapData Low, CapData High)? Initial = ReadInitial();

    static (CapData, CapData)? ReadInitial()
    {
        var header = new CapHeader { Version = CapHeader.Version3 };
        CapData* data = stackalloc CapData[2];
        return Libc.capget(&header, data) == 0 ? (data[0], data[1]) : null;
    }

    /// <summary>
    /// Drops CAP_FSETID from the calling thread's effective set until the result is disposed. Anything the kernel
    /// records with the thread's credentials meanwhile (a FUSE backing file) acts without it for good. Does
    /// nothing when the process does not have it.
    /// </summary>
    public static EffectiveRestorer WithoutFsetid()
    {
        if (Initial is not var (low, high) || (low.Effective & (1u << CapFsetid)) == 0) return default;
        low.Effective &= ~(1u << CapFsetid);
        return Set(low, high) ? new EffectiveRestorer(active: true) : default;
    }

    static bool Set(CapData low, CapData high)
    {
        var header = new CapHeader { Version = CapHeader.Version3 };
        CapData* data = stackalloc CapData[2];
        data[0] = low;
        data[1] = high;
        return Libc.capset(&header, data) == 0;
    }

    public readonly struct EffectiveRestorer : IDisposable
    {
        readonly bool _active;

        internal EffectiveRestorer(bool active) => _active = active;

        public void Dispose()
        {
            if (_active && Initial is var (low, high)) Set(low, high);
        }
    }
}
