using System.Diagnostics;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using UnionFs.Fuse.Kernel;
using UnionFs.Posix;

namespace UnionFs.Fuse;

/// <summary>
/// One mounted FUSE connection: the INIT handshake, a reader thread per cloned /dev/fuse descriptor, and
/// the daemon-to-kernel calls (notifications, passthrough backing files). Each worker owns two pinned
/// buffers, so serving a request allocates nothing.
/// </summary>
public sealed unsafe class FuseSession : IDisposable
{
    public const uint MaxWrite = 1 << 20;
    const int BufferSize = (int)MaxWrite + 4096;
    /// <summary>
    /// Where a worker puts requests and replies in its buffers, so that file data (a WRITE's payload after its 80
    /// bytes of headers, a READ reply's after its 16) starts on a page. The kernel copies data between a request's
    /// pages and ours a page at a time, and the daemon's pread and pwrite copy it again: with the data 16 bytes
    /// into a page every page of it spans two of ours, which made 1 MiB O_DIRECT reads of a cached lower file
    /// 1.5x slower (3.7 against 5.5 GB/s).
    /// </summary>
    const int RequestOffset = 4096 - 80, ReplyOffset = 4096 - 16;
    const uint ProtocolMinor = 45;

    readonly IFuseFileSystem _fs;
    readonly FuseMountOptions _options;
    readonly ILogger _log;
    readonly int _masterFd;
    readonly List<int> _fds = new();
    readonly List<Thread> _threads = new();
    readonly CountdownEvent _running = new(1);
    int _disposed;

    public string Mountpoint { get; }
    /// <summary>Pages per READ/WRITE request, as told to the kernel at INIT.</summary>
    ushort _negotiatedMaxPages = 32;
    /// <summary>The capability bits both sides agreed on at INIT.</summary>
    public InitFlags Negotiated { get; private set; }
    public uint KernelMinor { get; private set; }
    public bool PassthroughEnabled => (Negotiated & InitFlags.Passthrough) != 0;

    FuseSession(string mountpoint, int fd, IFuseFileSystem fs, FuseMountOptions options, ILogger log)
    {
        Mountpoint = mountpoint; _masterFd = fd; _fs = fs; _options = options; _log = log;
        _fds.Add(fd);
    }

    /// <summary>
    /// Mounts, answers INIT and starts the workers. Calls <paramref name="live"/> once the mount is live and its
    /// first worker serves it, before the others start: a mount command waiting for the daemon returns 0.6 ms
    /// sooner (of about 4) than if it waited for all four threads to start.
    /// </summary>
    public static FuseSession Start(string mountpoint, IFuseFileSystem fs, FuseMountOptions options, ILogger log, Action? live = null)
    {
        int fd = FuseMount.Mount(mountpoint, options);
        var session = new FuseSession(mountpoint, fd, fs, options, log);
        try
        {
            session.Handshake();
            session.StartWorker(fd, 0, spinner: false);
            session.RaiseReadahead();
            live?.Invoke();
            session.StartMoreWorkers();
        }
        catch
        {
            try { FuseMount.Unmount(mountpoint, lazy: true); } catch (Exception e) { log.LogDebug(e, "unmount after failed start"); }
            session.CloseFds();
            throw;
        }
        return session;
    }

    void Handshake()
    {
        byte* buf = (byte*)NativeMemory.AlignedAlloc(BufferSize, 4096);
        try
        {
            nint n;
            do n = Libc.read(_masterFd, buf, BufferSize); while (n < 0 && Errno.Last == Errno.EINTR);
            if (n < 0) throw new PosixException(Errno.Last, "read INIT", "/dev/fuse");
            var h = Unsafe.Read<InHeader>(buf);
            if (h.Opcode != Opcode.Init || n < sizeof(InHeader) + 16) throw new IOException($"FUSE: expected INIT, got {h.Opcode}");
            var init = new InitIn();
            Buffer.MemoryCopy(buf + sizeof(InHeader), &init, sizeof(InitIn), Math.Min(sizeof(InitIn), (int)n - sizeof(InHeader)));
            if (init.Major != 7) throw new IOException($"FUSE: kernel speaks protocol {init.Major}.{init.Minor}, this daemon 7.x");

            ulong offered = init.Flags | ((init.Flags & (uint)InitFlags.InitExt) != 0 ? (ulong)init.Flags2 << 32 : 0);
            ulong wanted = (ulong)(InitFlags.AsyncRead | InitFlags.AtomicOTrunc | InitFlags.BigWrites | InitFlags.AutoInvalData
                | InitFlags.DoReaddirplus | InitFlags.ReaddirplusAuto | InitFlags.AsyncDio | InitFlags.ParallelDirops
                | InitFlags.AbortError | InitFlags.MaxPages | InitFlags.CacheSymlinks | InitFlags.SetxattrExt | InitFlags.InitExt
                | InitFlags.NoExportSupport | InitFlags.DirectIoAllowMmap);
            if (_options.PosixAcl && _options.DefaultPermissions) wanted |= (ulong)InitFlags.PosixAcl;
            if (_options.PassthroughStackDepth > 0) wanted |= (ulong)InitFlags.Passthrough;
            if (_fs.HandlesKillPriv) wanted |= (ulong)InitFlags.HandleKillprivV2;
            if (_fs.AppliesUmask) wanted |= (ulong)InitFlags.DontMask;
            ulong agreed = offered & wanted;
            Negotiated = (InitFlags)agreed;
            KernelMinor = Math.Min(init.Minor, ProtocolMinor);

            var reply = new InitOut
            {
                Major = 7, Minor = KernelMinor, MaxReadahead = init.MaxReadahead,
                Flags = (uint)agreed, Flags2 = (uint)(agreed >> 32),
                MaxBackground = 128, CongestionThreshold = 96, MaxWrite = MaxWrite, TimeGran = 1,
                MaxPages = _negotiatedMaxPages = (ushort)ChooseMaxPages(),
                MaxStackDepth = PassthroughEnabled ? _options.PassthroughStackDepth : 0,
            };
            var outHeader = new OutHeader { Len = (uint)(sizeof(OutHeader) + sizeof(InitOut)), Unique = h.Unique };
            Unsafe.Write(buf, outHeader);
            Unsafe.Write(buf + sizeof(OutHeader), reply);
            if (Libc.write(_masterFd, buf, (nint)outHeader.Len) < 0) throw new PosixException(Errno.Last, "write INIT reply", "/dev/fuse");
            _log.LogDebug("INIT: kernel 7.{Minor}, offered {Offered:x}, agreed {Agreed:x}", init.Minor, offered, agreed);
        }
        finally { NativeMemory.AlignedFree(buf); }
        _fs.Initialized(this);
    }

    /// <summary>
    /// Lets the kernel read ahead as much as one READ request carries (the negotiated max_pages, 1 MiB) instead of the
    /// 128 KiB it gives a FUSE mount, which INIT can only lower: a big file served through the page cache is then
    /// read in 1 MiB requests, not 128 KiB ones (1 GiB file already in the host's cache: 1.6 GB/s before, 2.7 GB/s
    /// after). This is the mount's own bdi, so nothing else changes; without the right to set it nothing is lost.
    /// Called with the workers running: finding the mount's device may make the kernel ask for the root's attributes.
    /// </summary>
    void RaiseReadahead()
    {
        if (FuseMount.Stat(Mountpoint, Libc.AT_STATX_DONT_SYNC, out var st) != 0) return;
        string path = $"/sys/class/bdi/{st.DevMajor}:{st.DevMinor}/read_ahead_kb";
        try { File.WriteAllText(path, (_negotiatedMaxPages * 4).ToString()); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            _log.LogDebug("readahead of {Path} left as it is: {Error}", path, e.Message);
        }
    }

    /// <summary>
    /// Pages per READ/WRITE request: 256 (1 MiB), or one less where a worker's pipe cannot hold a whole READ reply,
    /// which takes a page for its header besides the data's. Pipes may grow past pipe-max-size (1 MiB, 256 pages,
    /// by default) only with CAP_SYS_RESOURCE, which containers usually lack. A 1020 KiB request whose data is
    /// spliced beats a 1 MiB one copied twice through the daemon (1 MiB O_DIRECT reads of a cached lower file:
    /// 5.3 GB/s copied, 8.4 GB/s spliced).
    /// </summary>
    static int ChooseMaxPages()
    {
        int max = Math.Min(256, MaxPagesLimit());
        var probe = ReplyPipe.Open();
        int pipePages = probe.Pages;
        probe.Close();
        return pipePages > max || pipePages <= 128 ? max : pipePages - 1;
    }

    static int MaxPagesLimit()
    {
        try { return int.Parse(File.ReadAllText("/proc/sys/fs/fuse/max_pages_limit").Trim()); }
        catch (Exception) { return 256; }
    }

    /// <summary>The workers beside the first, each on a clone of the master descriptor.</summary>
    void StartMoreWorkers()
    {
        int workers = Math.Max(1, _options.Workers);
        for (int i = 1; i < workers; i++)
        {
            int fd = Libc.open("/dev/fuse", Libc.O_RDWR | Libc.O_CLOEXEC, 0);
            uint master = (uint)_masterFd;
            if (fd < 0 || Libc.ioctl(fd, Ioctl.DevClone, &master) < 0)
            {
                // Without cloning, extra readers share the master fd: still correct, a little more contention.
                _log.LogDebug("FUSE_DEV_IOC_CLONE failed ({Error}); sharing the master fd", Errno.Describe(Errno.Last));
                if (fd >= 0) Libc.close(fd);
                fd = _masterFd;
            }
            else _fds.Add(fd);
            // The first cloned reader polls (see AwaitRequest) where a second CPU can run the callers meanwhile.
            bool spinner = i == 1 && fd != _masterFd && Environment.ProcessorCount >= 2
                && Libc.fcntl(fd, Libc.F_SETFL, Libc.O_RDWR | Libc.O_NONBLOCK) == 0;
            StartWorker(fd, i, spinner);
        }
        _running.Signal();
    }

    void StartWorker(int fd, int index, bool spinner)
    {
        _running.AddCount();
        var t = new Thread(() => Serve(fd, spinner)) { IsBackground = true, Name = $"fuse-worker-{index}" };
        _threads.Add(t);
        t.Start();
    }

    /// <summary>How long the polling worker keeps looking for the next request after its last one.</summary>
    static readonly TimeSpan SpinWindow = TimeSpan.FromMicroseconds(50);

    /// <summary>
    /// How the polling worker waits for its next request. A program working through files sends its next request a
    /// few microseconds after the last answer; a worker asleep in read(2) must then be woken, which on a virtual
    /// machine costs more than the daemon's own work for a LOOKUP or an UNLINK. So for <see cref="SpinWindow"/> after
    /// an answer the worker keeps polling its non-blocking descriptor (measured on 2 vCPUs, tmpfs: untar of 18,000
    /// files 1.5x, create and unlink of 5,000 files 1.3x faster). Then it sleeps in read(2) like the other workers:
    /// the kernel wakes one reader per request, where poll(2) would wake the poller as well as a reader.
    /// <para>
    /// It does not spin while most requests wait for the disk (3 of the last 4 took longer than the window): the
    /// caller and a worker that both slept through the disk's latency tend to be woken on one CPU, while a spinning
    /// worker keeps them on two, so every answer wakes the caller on a halted CPU. Random 4 KiB O_DIRECT reads of a
    /// cold lower file: 8,400-10,400 IOPS spinning, 10,000-11,900 not (fuse-overlayfs 9,600-12,100 the same hour);
    /// with the daemon and the reader pinned to one CPU 10,500-11,700, to two 6,500-6,900. A tree walk, whose disk
    /// waits are fewer, keeps spinning.
    /// </para>
    /// </summary>
    struct SpinPolicy
    {
        long _lastAnswer;
        uint _slowHistory; // one bit per request, newest lowest: it outlasted the spin window
        bool _sleeping;    // the descriptor is blocking

        /// <summary>Called when a non-blocking read found no request.</summary>
        public void Idle(int fd)
        {
            if (Stopwatch.GetElapsedTime(_lastAnswer) < SpinWindow) Thread.SpinWait(10);
            else if (Libc.fcntl(fd, Libc.F_SETFL, Libc.O_RDWR) == 0) _sleeping = true;
            else Libc.PollOne(fd, Libc.POLLIN, -1);
        }

        /// <summary>Called after answering a request whose handling began at <paramref name="started"/>.</summary>
        public void Answered(int fd, long started)
        {
            long now = Stopwatch.GetTimestamp();
            _slowHistory = (_slowHistory << 1) | (Stopwatch.GetElapsedTime(started, now) < SpinWindow ? 0u : 1u);
            bool spin = BitOperations.PopCount(_slowHistory & 0xF) < 3;
            _lastAnswer = spin ? now : 0;
            if (spin && _sleeping && Libc.fcntl(fd, Libc.F_SETFL, Libc.O_RDWR | Libc.O_NONBLOCK) == 0) _sleeping = false;
        }
    }

    void Serve(int fd, bool spinner)
    {
        byte* inBase = (byte*)NativeMemory.AlignedAlloc(BufferSize, 4096);
        byte* outBase = (byte*)NativeMemory.AlignedAlloc(BufferSize, 4096);
        byte* inBuf = inBase + RequestOffset, outBuf = outBase + ReplyOffset;
        const int InSize = BufferSize - RequestOffset, OutSize = BufferSize - ReplyOffset;
        var pipe = ReplyPipe.Open();
        var dispatcher = new RequestDispatcher(_fs, _options.Debug ? _log : null)
        {
            SetxattrExt = (Negotiated & InitFlags.SetxattrExt) != 0,
            SpliceReads = pipe.Pages > 0,
        };
        var spin = new SpinPolicy();
        try
        {
            while (true)
            {
                nint n = Libc.read(fd, inBuf, InSize);
                if (n < 0)
                {
                    int e = Errno.Last;
                    if (e == Errno.EAGAIN && spinner) { spin.Idle(fd); continue; }
                    if (e is Errno.EINTR or Errno.EAGAIN or Errno.ENOENT) continue;
                    if (e is not (Errno.ENODEV or Errno.ECONNABORTED or Errno.EBADF))
                        _log.LogError("read /dev/fuse: {Error}", Errno.Describe(e));
                    break;
                }
                int len;
                long started = spinner ? Stopwatch.GetTimestamp() : 0;
                try
                {
                    len = dispatcher.Dispatch(new ReadOnlySpan<byte>(inBuf, (int)n), new Span<byte>(outBuf, OutSize));
                    if (dispatcher.PendingSplice is { } read)
                    {
                        dispatcher.PendingSplice = null;
                        len = AnswerRead(fd, ref pipe, read, outBuf, OutSize);
                        dispatcher.SpliceReads = pipe.Pages > 0; // a failed splice makes a new pipe, which can fail
                    }
                }
                catch (Exception ex)
                {
                    // A bug in a handler must not take the mount down: answer EIO and keep serving.
                    var h = Unsafe.Read<InHeader>(inBuf);
                    _log.LogError(ex, "{Op} on node {Node} failed", h.Opcode, h.NodeId);
                    if (h.Opcode is Opcode.Forget or Opcode.BatchForget or Opcode.Interrupt) continue;
                    Unsafe.Write(outBuf, new OutHeader { Len = 16, Error = -Errno.EIO, Unique = h.Unique });
                    len = 16;
                }
                if (len > 0 && Libc.write(fd, outBuf, len) < 0)
                {
                    int e = Errno.Last;
                    if (e is Errno.ENODEV or Errno.ECONNABORTED) break;
                    // (ENOENT: the request was interrupted and is gone)
                    if (e != Errno.ENOENT) _log.LogError("write reply to /dev/fuse: {Error}", Errno.Describe(e));
                }
                if (spinner) spin.Answered(fd, started);
            }
        }
        finally
        {
            pipe.Close();
            NativeMemory.AlignedFree(inBase);
            NativeMemory.AlignedFree(outBase);
            _running.Signal();
        }
    }

    /// <summary>
    /// Answers a READ from a descriptor: by splicing when the data is large enough and fits the pipe, else by
    /// copying into the reply buffer. Returns the length of a reply left in <paramref name="outBuf"/>, or 0.
    /// </summary>
    int AnswerRead(int devFd, ref ReplyPipe pipe, in SplicedRead read, byte* outBuf, int outSize)
    {
        // The reply's length goes first into the pipe, so the data's length must be known before it is spliced:
        // what the file holds from the offset (a short splice later means the file changed, and the copy answers).
        Statx st;
        byte empty = 0;
        long length = Libc.statx(read.Fd, &empty, Libc.AT_EMPTY_PATH, Statx.SizeOnly, &st) == 0
            ? Math.Clamp((long)st.Size - read.Offset, 0, read.Size) : -1;
        long pagesSpanned = ((read.Offset & 4095) + length + 4095) / 4096;
        if (length >= RequestDispatcher.MinSpliceBytes && pagesSpanned < pipe.Pages)
        {
            var header = new OutHeader { Len = (uint)(sizeof(OutHeader) + length), Unique = read.Unique };
            var result = pipe.Splice(devFd, header, read.Fd, read.Offset, (int)length, out int deviceError);
            if (result == ReplyPipe.Result.Sent) return 0;
            // The request was interrupted, or the filesystem unmounted: nobody waits for an answer.
            if (deviceError is Errno.ENOENT or Errno.ENODEV or Errno.ECONNABORTED) return 0;
        }
        int err = FsUtil.ReadFull(read.Fd, read.Offset, new Span<byte>(outBuf + sizeof(OutHeader), Math.Min(read.Size, outSize - sizeof(OutHeader))), out int n);
        if (err != 0) n = 0;
        Unsafe.Write(outBuf, new OutHeader { Len = (uint)(sizeof(OutHeader) + n), Error = -err, Unique = read.Unique });
        return sizeof(OutHeader) + n;
    }

    /// <summary>Blocks until every worker has stopped (the filesystem was unmounted or aborted).</summary>
    public void Wait()
    {
        _running.Wait();
        _fs.Destroyed();
    }

    /// <summary>Unmounts; the workers then see ENODEV and stop.</summary>
    public void Unmount() => FuseMount.Unmount(Mountpoint);

    /// <summary>Registers <paramref name="fd"/> as a passthrough backing file; returns the id or a negative errno.</summary>
    public int OpenBacking(int fd)
    {
        var map = new BackingMap { Fd = fd };
        int id = Libc.ioctl(_masterFd, Ioctl.BackingOpen, &map);
        return id < 0 ? -Errno.Last : id;
    }

    public void CloseBacking(int id)
    {
        uint v = (uint)id;
        Libc.ioctl(_masterFd, Ioctl.BackingClose, &v);
    }

    /// <summary>Drops the kernel's cached attributes (off &lt; 0) or page-cache range of a node. Never call it from
    /// inside a handler for a related request; see the protocol notes on notification deadlocks.</summary>
    public int NotifyInvalidateInode(ulong node, long offset, long length)
    {
        var body = new NotifyInvalInodeOut { Ino = node, Off = offset, Len = length };
        return Notify(2, &body, sizeof(NotifyInvalInodeOut), ReadOnlySpan<byte>.Empty);
    }

    /// <summary>Drops the kernel's cached dentry for parent/name.</summary>
    public int NotifyInvalidateEntry(ulong parent, ReadOnlySpan<byte> name)
    {
        var body = new NotifyInvalEntryOut { Parent = parent, NameLen = (uint)name.Length };
        return Notify(3, &body, sizeof(NotifyInvalEntryOut), name);
    }

    int Notify(int code, void* body, int bodySize, ReadOnlySpan<byte> name)
    {
        byte zero = 0;
        int total = sizeof(OutHeader) + bodySize + (name.IsEmpty ? 0 : name.Length + 1);
        var header = new OutHeader { Len = (uint)total, Error = code, Unique = 0 };
        fixed (byte* np = name)
        {
            IoVec* iov = stackalloc IoVec[4];
            iov[0] = new IoVec { Base = (nint)(&header), Length = sizeof(OutHeader) };
            iov[1] = new IoVec { Base = (nint)body, Length = bodySize };
            int count = 2;
            if (!name.IsEmpty)
            {
                iov[2] = new IoVec { Base = (nint)np, Length = name.Length };
                iov[3] = new IoVec { Base = (nint)(&zero), Length = 1 };
                count = 4;
            }
            return Libc.writev(_masterFd, iov, count) < 0 ? -Errno.Last : 0;
        }
    }

    void CloseFds()
    {
        foreach (int fd in _fds) Libc.close(fd);
        _fds.Clear();
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        CloseFds();
    }
}
