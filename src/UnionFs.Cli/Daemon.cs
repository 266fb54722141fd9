using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;
using Microsoft.Extensions.Logging;
using UnionFs.Fuse;
using UnionFs.Posix;

namespace UnionFs.Cli;

/// <summary>
/// Runs a FUSE session as a daemon, the way fuse-overlayfs does: the command returns only once the mount
/// answers, reports a failed mount through its exit status and a one-line reason, and the daemon unmounts
/// cleanly on SIGTERM/SIGINT. A forked .NET runtime is not safe, so the NativeAOT executable forks before its
/// runtime starts (native/fork_daemon.c); otherwise the background daemon is this same executable started again.
/// Either way the daemon gets a status pipe, and writes warnings, then "OK" (or the error) there once the mount is live.
/// </summary>
static unsafe class Daemon
{
    const string StatusFdVariable = "UNIONFS_DAEMON_STATUS_FD";

    /// <summary>Serves the mount <paramref name="start"/> makes; it calls its argument once the mount is live.</summary>
    public static int Run(Func<Action, FuseSession> start, bool foreground, ILogger log)
    {
        string? statusFd = Environment.GetEnvironmentVariable(StatusFdVariable);
        if (foreground) return Serve(start, log, statusFd: -1);
        if (statusFd is not null) return Serve(start, log, int.Parse(statusFd));
        return SpawnAndWait();
    }

    static int Serve(Func<Action, FuseSession> start, ILogger log, int statusFd)
    {
        RaiseFileLimit();
        FuseSession session;
        bool live = false;
        try
        {
            if (statusFd >= 0) Libc.setsid();
            session = start(() => { live = true; Report(statusFd, "OK"); });
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or InvalidOperationException)
        {
            if (live) log.LogError("{Message}", e.Message); // (the mount command has returned already)
            else Report(statusFd, "unionfs: " + e.Message);
            return 1;
        }
        if (!live) Report(statusFd, "OK");

        int stopping = 0;
        void Stop(PosixSignalContext ctx)
        {
            ctx.Cancel = true;
            if (Interlocked.Exchange(ref stopping, 1) != 0) return;
            try { session.Unmount(); }
            catch (IOException e) { log.LogError("{Message}", e.Message); FuseMount.Unmount(session.Mountpoint, lazy: true); }
        }
        using var term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, Stop);
        using var intr = PosixSignalRegistration.Create(PosixSignal.SIGINT, Stop);
        session.Wait();
        session.Dispose();
        return 0;
    }

    /// <summary>The daemons serving <paramref name="mountpoint"/>: this program's processes whose command line ends with it.</summary>
    public static List<int> ServingProcesses(string mountpoint)
    {
        var pids = new List<int>();
        int self = Environment.ProcessId;
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out int pid) || pid == self) continue;
            try
            {
                var argv = File.ReadAllText(Path.Combine(dir, "cmdline")).Split('\0', StringSplitOptions.RemoveEmptyEntries);
                if (argv.Length < 2) continue;
                string prog = Path.GetFileName(argv[0]);
                if (prog is not ("unionfs" or "fuse-overlayfs")) continue;
                string cwd = new FileInfo(Path.Combine(dir, "cwd")).LinkTarget ?? "/";
                if (Path.GetFullPath(argv[^1], cwd) == mountpoint) pids.Add(pid);
            }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
        return pids;
    }

    public static void WaitForExit(List<int> pids, TimeSpan limit)
    {
        var deadline = DateTime.UtcNow + limit;
        foreach (int pid in pids)
            while (Directory.Exists($"/proc/{pid}") && !IsZombie(pid) && DateTime.UtcNow < deadline) Thread.Sleep(10);
    }

    static bool IsZombie(int pid)
    {
        try { return File.ReadAllText($"/proc/{pid}/stat").Split(") ")[^1].StartsWith('Z'); }
        catch (IOException) { return true; }
    }

    /// <summary>Directory nodes hold descriptors: let the daemon use as many as the hard limit allows.</summary>
    static void RaiseFileLimit()
    {
        const int RLIMIT_NOFILE = 7;
        RLimit lim;
        if (Libc.getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.Cur < lim.Max)
        {
            lim.Cur = lim.Max;
            Libc.setrlimit(RLIMIT_NOFILE, &lim);
        }
    }

    /// <summary>The final word to the waiting mount command: "OK" or the one-line reason for failing.</summary>
    static void Report(int statusFd, string message)
    {
        if (statusFd < 0)
        {
            if (message != "OK") Console.Error.WriteLine(message);
            return;
        }
        WriteLine(statusFd, message);
        Libc.close(statusFd);
    }

    static void WriteLine(int fd, string message)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(message + "\n");
        fixed (byte* b = bytes) Libc.write(fd, b, bytes.Length);
    }

    static int StatusFd => int.TryParse(Environment.GetEnvironmentVariable(StatusFdVariable), out int fd) ? fd : -1;

    /// <summary>
    /// A warning for the user of the mount command. A daemon child sends it up the status pipe (its stderr is
    /// /dev/null); the process that only spawns the daemon leaves it to the child, which checks again.
    /// </summary>
    public static void Warn(string message, bool foreground)
    {
        int fd = StatusFd;
        if (fd >= 0) WriteLine(fd, message);
        else if (foreground) Console.Error.WriteLine(message);
    }

    /// <summary>In a daemon child, reports a failure before serving (such as a bad option) up the status pipe.</summary>
    public static bool ReportFailure(string message)
    {
        int fd = StatusFd;
        if (fd < 0) return false;
        Report(fd, message);
        return true;
    }

    /// <summary>
    /// Called first thing in Main: a daemon child lets go of the caller's terminal or pipe before the runtime
    /// duplicates the standard descriptors for Console (a caller reading our output through $(...) would otherwise
    /// wait for the daemon to exit). Everything it has to say goes through the status pipe.
    /// </summary>
    public static void DetachIfDaemonChild()
    {
        if (Environment.GetEnvironmentVariable(StatusFdVariable) is not null) DetachStdio();
    }

    static void DetachStdio()
    {
        int devnull = Libc.open("/dev/null", Libc.O_RDWR, 0);
        if (devnull < 0) return;
        for (int fd = 0; fd <= 2; fd++) Libc.dup2(devnull, fd);
        if (devnull > 2) Libc.close(devnull);
    }

    static int SpawnAndWait()
    {
        int* fds = stackalloc int[2];
        PosixException.Check(Libc.pipe2(fds, 0), "pipe2");
        Libc.fcntl(fds[0], Libc.F_SETFD, Libc.FD_CLOEXEC);
        var psi = new ProcessStartInfo(Environment.ProcessPath!) { UseShellExecute = false };
        foreach (var a in Environment.GetCommandLineArgs().Skip(1)) psi.ArgumentList.Add(a);
        psi.Environment[StatusFdVariable] = fds[1].ToString();
        using (Process.Start(psi)) { }
        Libc.close(fds[1]);

        var reply = new List<byte>();
        byte* buf = stackalloc byte[512];
        while (true)
        {
            nint n = Libc.read(fds[0], buf, 512);
            if (n < 0 && Errno.Last == Errno.EINTR) continue;
            if (n <= 0) break;
            for (int i = 0; i < n; i++) reply.Add(buf[i]);
        }
        Libc.close(fds[0]);
        // Warning lines, then "OK" or the reason the daemon gave up.
        string message = Encoding.UTF8.GetString(reply.ToArray()).Trim();
        int last = message.LastIndexOf('\n');
        if (message[(last + 1)..] == "OK")
        {
            if (last > 0) Console.Error.WriteLine(message[..last]);
            return 0;
        }
        Console.Error.WriteLine(message.Length > 0 ? message : "unionfs: the daemon exited before the mount was ready");
        return 1;
    }
}
