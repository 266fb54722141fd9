using UnionFs.Store.Content;
using UnionFs.Store.Fs;
using UnionFs.Store.Metadata;

namespace UnionFs.Store;

public sealed partial class Store
{
    public string ContainerUpper(string id) => Path.Combine(Layout.ContainerDir(id), "upper");
    public string ContainerWork(string id) => Path.Combine(Layout.ContainerDir(id), "work");
    public string ContainerMerged(string id) => Path.Combine(Layout.ContainerDir(id), "merged");

    /// <summary>A new container: a random 64-hex id and an empty writable layer on top of the image's stack.</summary>
    public ContainerRecord CreateContainer(string imageId, string? name)
    {
        var image = GetImage(imageId) ?? throw new StoreException($"image {imageId}: no such image");
        if (name is not null && (name.Length == 0 || name.Contains('/') || name.All(Uri.IsHexDigit) && name.Length >= 12))
            throw new StoreException($"invalid container name '{name}'");
        string id = Digest.RandomId();
        string tmp = StoreLayout.TempName(Layout.Containers);
        foreach (var sub in new[] { "upper", "work", "merged" }) Directory.CreateDirectory(Path.Combine(tmp, sub));
        try
        {
            return Db.Write(() =>
            {
                if (name is not null && Db.Scalar("SELECT id FROM containers WHERE name=$n", ("$n", name)) is string other)
                    throw new StoreException($"container name '{name}' is already used by {Digest.Short(other)}");
                FileOps.Rename(tmp, Layout.ContainerDir(id));
                Db.Exec("INSERT INTO containers(id, name, image_id, chain_id, created) VALUES($i, $n, $m, $c, $t)",
                    ("$i", id), ("$n", name), ("$m", image.Id), ("$c", image.TopChain), ("$t", Now()));
                return new ContainerRecord(id, name, image.Id, image.TopChain, DateTimeOffset.UtcNow);
            });
        }
        finally { FileOps.RemoveTree(tmp); }
    }

    public List<ContainerRecord> ListContainers() =>
        Db.Query("SELECT id, name, image_id, chain_id, created FROM containers ORDER BY created DESC", ContainerRecord.Read);

    /// <summary>By name, full id or unique id prefix.</summary>
    public ContainerRecord ResolveContainer(string reference)
    {
        var byName = Db.Query("SELECT id, name, image_id, chain_id, created FROM containers WHERE name=$n", ContainerRecord.Read, ("$n", reference));
        if (byName.Count == 1) return byName[0];
        if (reference.Length >= 3 && reference.All(Uri.IsHexDigit))
        {
            var m = Db.Query("SELECT id, name, image_id, chain_id, created FROM containers WHERE id LIKE $p", ContainerRecord.Read, ("$p", reference.ToLowerInvariant() + "%"));
            if (m.Count == 1) return m[0];
            if (m.Count > 1) throw new StoreException($"container id prefix '{reference}' is ambiguous");
        }
        throw new StoreException($"container '{reference}': no such container");
    }

    /// <summary>Deletes the container's record and its writable layer (the caller unmounts first); image layers stay.</summary>
    public void DeleteContainer(string id)
    {
        Db.Write(() => Db.Exec("DELETE FROM containers WHERE id=$i", ("$i", id)));
        RemoveDirs([Layout.ContainerDir(id)]);
    }
}
