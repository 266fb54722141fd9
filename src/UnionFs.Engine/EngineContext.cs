using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using UnionFs.Engine.Cli;
using UnionFs.Engine.Drivers;
using UnionFs.Store.Tar;

namespace UnionFs.Engine;

/// <summary>What every workflow needs: the store, the storage driver, a logger, and where progress goes.</summary>
public sealed class EngineContext : IDisposable
{
    public Store.Store Store { get; }
    public IStorageDriver Driver { get; }
    public ILogger Log { get; }
    public Func<string, long, Progress> NewProgress { get; set; } = (label, total) => new Progress(label, total);

    public EngineContext(Store.Store store, IStorageDriver driver, ILogger? log = null)
    {
        Store = store; Driver = driver; Log = log ?? NullLogger.Instance;
    }

    /// <summary>A scratch file in the store's tmp/ (same filesystem as blobs, named by this pid so a crash leftover is recognised).</summary>
    public string TempFile() => StoreLayout.TempName(Store.Layout.Tmp);

    /// <summary>
    /// Writes a tree as a layer tar to a scratch file, hashing it on the way; returns the file, its diffID and size.
    /// The caller imports it into the store and deletes it.
    /// </summary>
    public (string Path, string DiffId, long Size) WriteLayerTar(IEnumerable<TreeNode> nodes, Progress? progress)
    {
        string tmp = TempFile();
        try
        {
            using var file = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write);
            using var hashing = new HashingWriteStream(file);
            LayerTarWriter.Write(hashing, nodes, n => progress?.Add(n));
            file.Flush(flushToDisk: false);
            return (tmp, hashing.Digest(), hashing.BytesWritten);
        }
        catch { File.Delete(tmp); throw; }
    }

    public void Dispose() => Store.Dispose();
}
