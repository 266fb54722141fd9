using UnionFs.Store.Fs;

namespace UnionFs.Store;

/// <summary>
/// Where things live under the store root:
/// <code>
/// blobs/sha256/&lt;hex&gt;            layer tarballs (as loaded), image configs
/// layers/&lt;cacheid&gt;/diff          an unpacked layer in overlayfs format (cache ids are random, not content ids)
/// containers/&lt;id&gt;/{upper,work,merged}
/// tmp/                          spooled archives
/// unionfs.db                    SQLite metadata (WAL)
/// </code>
/// Anything being written is named ".tmp-PID-RANDOM" in the directory it will be renamed into, and
/// anything being deleted is first renamed to ".del-PID-RANDOM": either way the name says which process
/// owns it, so leftovers of a crashed process can be recognised (PID gone) and removed without racing a
/// live process.
/// </summary>
public sealed class StoreLayout
{
    public string Root { get; }
    public string Blobs => Path.Combine(Root, "blobs", "sha256");
    public string Layers => Path.Combine(Root, "layers");
    public string Containers => Path.Combine(Root, "containers");
    public string Tmp => Path.Combine(Root, "tmp");
    public string Database => Path.Combine(Root, "unionfs.db");

    public StoreLayout(string root) { Root = Path.GetFullPath(root); }

    public void Create()
    {
        foreach (var d in new[] { Root, Blobs, Layers, Containers, Tmp }) Directory.CreateDirectory(d);
    }

    public string BlobPath(string digest) => Path.Combine(Blobs, Content.Digest.Hex(digest));
    public string LayerDir(string cacheId) => Path.Combine(Layers, cacheId);
    public string LayerDiff(string cacheId) => Path.Combine(Layers, cacheId, "diff");
    public string ContainerDir(string id) => Path.Combine(Containers, id);

    public static string TempName(string dir, string kind = "tmp") =>
        Path.Combine(dir, $".{kind}-{Environment.ProcessId}-{Content.Digest.RandomId()[..12]}");

    /// <summary>Leftovers of processes that died mid-write or mid-delete; never those of a live process.</summary>
    public IEnumerable<string> StaleTemps()
    {
        foreach (var dir in new[] { Blobs, Layers, Containers, Tmp })
        {
            if (!Directory.Exists(dir)) continue;
            foreach (var name in FileOps.ListDir(dir))
            {
                if (!(name.StartsWith(".tmp-", StringComparison.Ordinal) || name.StartsWith(".del-", StringComparison.Ordinal))) continue;
                var parts = name.Split('-');
                if (parts.Length >= 3 && int.TryParse(parts[1], out int pid) && pid != Environment.ProcessId && !ProcessAlive(pid))
                    yield return Path.Combine(dir, name);
            }
        }
    }

    public int RemoveStaleTemps()
    {
        int n = 0;
        foreach (var p in StaleTemps().ToList()) { FileOps.RemoveTree(p); n++; }
        return n;
    }

    static bool ProcessAlive(int pid) => Directory.Exists($"/proc/{pid}");
}
