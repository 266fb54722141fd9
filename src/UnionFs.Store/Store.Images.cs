using UnionFs.Store.Content;
using UnionFs.Store.Metadata;

namespace UnionFs.Store;

public sealed partial class Store
{
    public const string ConfigMediaType = "application/vnd.oci.image.config.v1+json";

    /// <summary>Registers an image: its exact config bytes (the id is their digest) and its top layer. Idempotent.</summary>
    public (string Id, bool Existed) RegisterImage(byte[] config, string topChainId)
    {
        if (GetLayer(topChainId) is null) throw new StoreException($"layer {topChainId}: not in the store");
        string id = Digest.Of(config);
        string tmp = StoreLayout.TempName(Layout.Blobs);
        File.WriteAllBytes(tmp, config);
        try
        {
            bool existed = Db.Write(() =>
            {
                CommitBlob(tmp, id, config.Length, ConfigMediaType);
                if (GetImage(id) is not null) return true;
                Db.Exec("INSERT INTO images(id, top_chain, created) VALUES($i, $t, $c)", ("$i", id), ("$t", topChainId), ("$c", Now()));
                return false;
            });
            return (id, existed);
        }
        finally { if (File.Exists(tmp)) File.Delete(tmp); }
    }

    public ImageRecord? GetImage(string id) =>
        Db.Query("SELECT id, top_chain, created FROM images WHERE id=$i", ImageRecord.Read, ("$i", id)).FirstOrDefault();

    public List<ImageRecord> ListImages() => Db.Query("SELECT id, top_chain, created FROM images ORDER BY created DESC", ImageRecord.Read);

    public byte[] ReadConfig(string imageId) => ReadBlob(imageId);

    public List<string> TagsOf(string imageId) =>
        Db.Query("SELECT name FROM tags WHERE image_id=$i ORDER BY name", r => r.GetString(0), ("$i", imageId));

    public List<(string Name, string ImageId)> ListTags() =>
        Db.Query("SELECT name, image_id FROM tags ORDER BY name", r => (r.GetString(0), r.GetString(1)));

    /// <summary>"busybox" means "busybox:latest", and "docker.io/library/busybox" is "busybox", as in docker.</summary>
    public static string NormalizeTag(string name)
    {
        if (name.Length == 0 || name.Any(char.IsWhiteSpace)) throw new StoreException($"invalid image name '{name}'");
        foreach (var prefix in new[] { "docker.io/library/", "docker.io/" })
            if (name.StartsWith(prefix, StringComparison.Ordinal) && name.Length > prefix.Length) { name = name[prefix.Length..]; break; }
        int slash = name.LastIndexOf('/');
        return name.IndexOf(':', slash + 1) >= 0 ? name : name + ":latest";
    }

    /// <summary>Points a tag at an image, moving it if it pointed elsewhere.</summary>
    public void Tag(string name, string imageId)
    {
        name = NormalizeTag(name);
        Db.Write(() =>
        {
            if (GetImage(imageId) is null) throw new StoreException($"image {imageId}: not in the store");
            return Db.Exec("INSERT INTO tags(name, image_id) VALUES($n, $i) ON CONFLICT(name) DO UPDATE SET image_id=$i", ("$n", name), ("$i", imageId));
        });
    }

    public bool Untag(string name) => Db.Write(() => Db.Exec("DELETE FROM tags WHERE name=$n", ("$n", NormalizeTag(name)))) > 0;

    /// <summary>Finds an image by tag, full id, or unique id prefix (with or without "sha256:").</summary>
    public ImageRecord ResolveImage(string reference)
    {
        if (Db.Scalar("SELECT image_id FROM tags WHERE name=$n", ("$n", SafeTag(reference))) is string byTag) return GetImage(byTag)!;
        string hex = Digest.Hex(reference);
        if (hex.Length >= 4 && hex.All(Uri.IsHexDigit))
        {
            var matches = Db.Query("SELECT id, top_chain, created FROM images WHERE id LIKE $p", ImageRecord.Read, ("$p", "sha256:" + hex.ToLowerInvariant() + "%"));
            if (matches.Count == 1) return matches[0];
            if (matches.Count > 1) throw new StoreException($"image id prefix '{reference}' is ambiguous");
        }
        throw new StoreException($"image '{reference}': no such image");
    }

    static string SafeTag(string name) { try { return NormalizeTag(name); } catch (StoreException) { return name; } }

    public List<ContainerRecord> ContainersUsing(string imageId) =>
        Db.Query("SELECT id, name, image_id, chain_id, created FROM containers WHERE image_id=$i", ContainerRecord.Read, ("$i", imageId));

    /// <summary>
    /// Deletes an image record, its tags, and the layers no other image or container stacks on.
    /// Refused while a container uses it unless <paramref name="force"/> (the container keeps its layers either way).
    /// </summary>
    public List<LayerRecord> DeleteImage(string imageId, bool force)
    {
        List<string> dirs = new(), blobs = new();
        var removed = Db.Write(() =>
        {
            if (GetImage(imageId) is null) throw new StoreException($"image {imageId}: no such image");
            var users = ContainersUsing(imageId);
            if (users.Count > 0 && !force)
                throw new StoreException($"image {Digest.Short(imageId)} is used by container {Digest.Short(users[0].Id)} (remove it first, or use --force)");
            Db.Exec("DELETE FROM tags WHERE image_id=$i", ("$i", imageId));
            Db.Exec("DELETE FROM images WHERE id=$i", ("$i", imageId));
            var unused = UnreferencedLayers();
            dirs = UnregisterLayers(unused);
            blobs = UnregisterUnusedBlobs(unused.Select(l => l.BlobDigest).OfType<string>().Append(imageId));
            return unused;
        });
        RemoveDirs(dirs);
        foreach (var b in blobs) Fs.FileOps.RemoveTree(b);
        return removed;
    }

    /// <summary>Of the given blobs, unregisters those no layer or image references any more (inside a transaction); returns their files.</summary>
    List<string> UnregisterUnusedBlobs(IEnumerable<string> candidates)
    {
        var files = new List<string>();
        foreach (var d in candidates.Distinct())
        {
            // A container created from a force-removed image still needs the config to commit.
            bool used = Db.Scalar("SELECT 1 FROM layers WHERE blob_digest=$d UNION SELECT 1 FROM images WHERE id=$d UNION SELECT 1 FROM containers WHERE image_id=$d", ("$d", d)) is not null;
            if (used) continue;
            Db.Exec("DELETE FROM blobs WHERE digest=$d", ("$d", d));
            files.Add(Layout.BlobPath(d));
        }
        return files;
    }

    /// <summary>Layers that are not in the stack of any image or container (inside a transaction).</summary>
    List<LayerRecord> UnreferencedLayers()
    {
        var used = new HashSet<string>();
        var tops = Db.Query("SELECT top_chain FROM images UNION SELECT chain_id FROM containers", r => r.GetString(0));
        var all = ListLayers().ToDictionary(l => l.ChainId);
        foreach (var top in tops)
            for (string? c = top; c is not null && used.Add(c);) c = all.TryGetValue(c, out var l) ? l.Parent : null;
        // Children first, so parent rows are never deleted while a child still references them.
        var unused = all.Values.Where(l => !used.Contains(l.ChainId)).ToList();
        return unused.OrderByDescending(l => Depth(l, all)).ToList();
    }

    static int Depth(LayerRecord l, Dictionary<string, LayerRecord> all)
    {
        int d = 0;
        for (string? c = l.Parent; c is not null; c = all.TryGetValue(c, out var p) ? p.Parent : null) d++;
        return d;
    }
}
