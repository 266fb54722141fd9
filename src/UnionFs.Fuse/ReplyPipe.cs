using UnionFs.Fuse.Kernel;
using UnionFs.Posix;

namespace UnionFs.Fuse;

/// <summary>
/// A worker's pipe for READ replies by splice(2): the reply header is written into the pipe, the file's pages are
/// spliced in after it (references to the page cache, not copies), and the pipe is spliced into /dev/fuse, where
/// the kernel copies the data once, into the reader's pages. Copying through the reply buffer instead costs two
/// copies, and keeps up to a megabyte of every worker's buffer resident.
/// </summary>
unsafe struct ReplyPipe
{
    int _read, _write;

    /// <summary>How many pages the pipe holds; 0 when there is no pipe (splicing off).</summary>
    public int Pages;

    public enum Result { Sent, NotSpliced, DeviceRefused }

    /// <summary>A pipe for a full READ reply: a page for the header and 1 MiB of data that need not start on a page.
    /// Without CAP_SYS_RESOURCE a pipe stops at pipe-max-size (1 MiB by default); requests are then made a page
    /// smaller (see FuseSession.ChooseMaxPages), and replies that still do not fit are copied.</summary>
    public static ReplyPipe Open()
    {
        int* fds = stackalloc int[2];
        if (Libc.pipe2(fds, Libc.O_CLOEXEC | Libc.O_NONBLOCK) < 0) return default;
        var pipe = new ReplyPipe { _read = fds[0], _write = fds[1] };
        if (Libc.fcntl(pipe._write, Libc.F_SETPIPE_SZ, (int)FuseSession.MaxWrite + 2 * 4096) < 0)
            Libc.fcntl(pipe._write, Libc.F_SETPIPE_SZ, (int)FuseSession.MaxWrite);
        int size = Libc.fcntl(pipe._write, Libc.F_GETPIPE_SZ, 0);
        if (size < 4096)
        {
            Libc.close(fds[0]);
            Libc.close(fds[1]);
            return default;
        }
        pipe.Pages = size / 4096;
        return pipe;
    }

    /// <summary>
    /// Sends header and <paramref name="length"/> bytes of <paramref name="fd"/> at <paramref name="offset"/> to
    /// <paramref name="devFd"/>. The caller has checked that they fit. On anything but <see cref="Result.Sent"/>
    /// the pipe is left empty; <paramref name="deviceError"/> is why the device refused the reply.
    /// </summary>
    public Result Splice(int devFd, OutHeader header, int fd, long offset, int length, out int deviceError)
    {
        deviceError = 0;
        if (Libc.write(_write, (byte*)&header, sizeof(OutHeader)) != sizeof(OutHeader)) return Reset(Result.NotSpliced);
        long off = offset;
        for (int moved = 0; moved < length;)
        {
            nint n = Libc.splice(fd, &off, _write, null, (nuint)(length - moved), Libc.SPLICE_F_NONBLOCK);
            if (n > 0) { moved += (int)n; continue; }
            if (n < 0 && Errno.Last == Errno.EINTR) continue;
            // The file ended early, failed, or cannot be spliced from: the copy answers (with its error, if any).
            if (moved > 0) return Reset(Result.NotSpliced);
            OutHeader back;
            return Libc.read(_read, (byte*)&back, sizeof(OutHeader)) == sizeof(OutHeader) ? Result.NotSpliced : Reset(Result.NotSpliced);
        }
        nint total = sizeof(OutHeader) + length;
        nint sent;
        do sent = Libc.splice(_read, null, devFd, null, (nuint)total, 0);
        while (sent < 0 && Errno.Last == Errno.EINTR);
        if (sent == total) return Result.Sent;
        deviceError = sent < 0 ? Errno.Last : Errno.EIO;
        return Reset(Result.DeviceRefused);
    }

    /// <summary>A failed splice can leave part of a reply in the pipe: a new pipe is the sure way to empty it.</summary>
    Result Reset(Result result)
    {
        Close();
        this = Open();
        return result;
    }

    public void Close()
    {
        if (Pages == 0) return;
        Libc.close(_read);
        Libc.close(_write);
        Pages = 0;
    }
}
