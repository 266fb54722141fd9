namespace UnionFs.Posix;

/// <summary>The calling thread's capabilities. Linux keeps credentials per thread, so a change here affects only
/// the thread that makes it, and only until it is undone.</summary>
public static unsafe class Capabilities
{
    const int CapFsetid = 4;

    /// <summary>
    /// Drops CAP_FSETID from the calling thread's effective set until the result is disposed. Anything the kernel
    /// records with the thread's credentials meanwhile (a FUSE backing file) acts without it for good. Does
    /// nothing when the thread does not have it.
    /// </summary>
    public static EffectiveRestorer WithoutFsetid()
    {
        var header = new CapHeader { Version = CapHeader.Version3 };
        CapData* data = stackalloc CapData[2];
        if (Libc.capget(&header, data) != 0 || (data[0].Effective & (1u << CapFsetid)) == 0) return default;
        uint before = data[0].Effective;
        data[0].Effective &= ~(1u << CapFsetid);
        return Libc.capset(&header, data) == 0 ? new EffectiveRestorer(before, data[1].Effective) : default;
    }

    public readonly struct EffectiveRestorer : IDisposable
    {
        readonly uint _low, _high;
        readonly bool _active;

        internal EffectiveRestorer(uint low, uint high) { _low = low; _high = high; _active = true; }

        public void Dispose()
        {
            if (!_active) return;
            var header = new CapHeader { Version = CapHeader.Version3 };
            CapData* data = stackalloc CapData[2];
            if (Libc.capget(&header, data) != 0) return;
            data[0].Effective = _low;
            data[1].Effective = _high;
            Libc.capset(&header, data);
        }
    }
}
