using System.Text;
using UnionFs.Posix;

namespace UnionFs.Engine.Drivers;

/// <summary>Reads /proc/self/mountinfo: is a directory a mount point, and is it a dead FUSE mount (ENOTCONN)?</summary>
public static class MountTable
{
    public static bool IsMountPoint(string path)
    {
        string full = Path.GetFullPath(path).TrimEnd('/');
        foreach (var line in File.ReadLines("/proc/self/mountinfo"))
        {
            var fields = line.Split(' ');
            if (fields.Length > 4 && Unescape(fields[4]) == full) return true;
        }
        return false;
    }

    /// <summary>A FUSE mount whose daemon died answers every call with ENOTCONN.</summary>
    public static bool IsDead(string path) =>
        !Store.Fs.FileOps.TryLstat(path, out _, out int errno) && errno == Errno.ENOTCONN;

    /// <summary>mountinfo escapes space, tab, newline and backslash as \ooo.</summary>
    static string Unescape(string s)
    {
        if (!s.Contains('\\')) return s;
        var sb = new StringBuilder();
        for (int i = 0; i < s.Length; i++)
        {
            if (s[i] == '\\' && i + 3 < s.Length)
            {
                try { sb.Append((char)Convert.ToInt32(s.Substring(i + 1, 3), 8)); i += 3; continue; }
                catch (FormatException) { }
            }
            sb.Append(s[i]);
        }
        return sb.ToString();
    }

    /// <summary>umount2 with a clear error; a dead FUSE mount is detached lazily.</summary>
    public static void Unmount(string target)
    {
        int flags = IsDead(target) ? Libc.MNT_DETACH : 0;
        if (Libc.umount2(target, flags) < 0)
        {
            int e = Errno.Last;
            if (e == Errno.EINVAL && !IsMountPoint(target)) return; // already unmounted
            throw new PosixException(e, "umount", target);
        }
    }
}
