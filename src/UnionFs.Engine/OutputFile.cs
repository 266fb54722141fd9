namespace UnionFs.Engine;

/// <summary>
/// Writes an output file atomically: into "FILE.tmp-PID" beside it, renamed over FILE only when complete,
/// so an error or a kill never leaves a half-written archive under the requested name. "-" is stdout.
/// </summary>
public static class OutputFile
{
    public static long Write(string path, Action<Stream> body)
    {
        if (path == "-")
        {
            if (!Console.IsOutputRedirected) throw new StoreException("refusing to write a tar to a terminal (use -o FILE)");
            using var stdout = Console.OpenStandardOutput();
            var counting = new HashingWriteStream(stdout);
            body(counting);
            counting.Flush();
            return counting.BytesWritten;
        }
        string full = Path.GetFullPath(path);
        string tmp = $"{full}.tmp-{Environment.ProcessId}";
        try
        {
            long n;
            using (var f = new FileStream(tmp, FileMode.Create, FileAccess.Write))
            {
                body(f);
                f.Flush(flushToDisk: true);
                n = f.Length;
            }
            File.Move(tmp, full, overwrite: true);
            return n;
        }
        catch (DirectoryNotFoundException) { throw new StoreException($"write {full}: no such directory"); }
        catch (UnauthorizedAccessException) { throw new StoreException($"write {full}: permission denied"); }
        finally { if (File.Exists(tmp)) File.Delete(tmp); }
    }
}
