using System.Collections.Concurrent;
using UnionFs.Posix;

namespace UnionFs.Overlay;

/// <summary>
/// Node ids the kernel holds, their lookup counts, and the identity map that makes two names of one object
/// (hard links, repeated lookups) the same node. Ids come from a counter and are never reused, so the
/// generation is always 0. A node lives while the kernel references it or a live child points at it.
/// </summary>
public sealed class NodeTable
{
    readonly ConcurrentDictionary<ulong, Node> _byId = new();
    readonly Dictionary<(int, ulong, ulong), Node> _byKey = new();
    readonly Lock _lock = new();
    long _nextId = 1;
    /// <summary>Bumped whenever an identity stops naming a node (copy-up rekeys it, its last name goes away).
    /// A lookup that saw the epoch change between stat'ing a name and registering a fresh node retries: what it
    /// stat'd may be an object that died or moved meanwhile, and a key registered for it would later be handed
    /// out for whatever new object reuses the inode number.</summary>
    long _identityEpoch;

    public long IdentityEpoch => Volatile.Read(ref _identityEpoch);

    public int Count => _byId.Count;

    public Node AddRoot(Node root)
    {
        root.Lookups = 1;
        _byId[1] = root;
        return root;
    }

    public ulong NewId() => (ulong)Interlocked.Increment(ref _nextId);

    public Node? Get(ulong id) => _byId.TryGetValue(id, out var n) ? n : null;

    /// <summary>The live node for an identity key, with one more lookup, or null.</summary>
    public Node? AcquireExisting((int, ulong, ulong) key)
    {
        lock (_lock)
        {
            if (!_byKey.TryGetValue(key, out var n)) return null;
            n.Lookups++;
            return n;
        }
    }

    /// <summary>Registers a fresh node for an object this daemon holds open (its identity cannot go stale).</summary>
    public Node AddOrAcquire(Node node, Node? parent) => AddOrAcquire(node, parent, epoch: -1)!;

    /// <summary>Registers a fresh node with one lookup; if another thread registered the same key first, returns that one.
    /// Returns null, registering nothing, when identities changed since <paramref name="epoch"/> (see IdentityEpoch).</summary>
    public Node? AddOrAcquire(Node node, Node? parent, long epoch)
    {
        lock (_lock)
        {
            if (epoch >= 0 && _identityEpoch != epoch) return null;
            if (_byKey.TryGetValue(node.Key, out var existing))
            {
                // Another type under the same identity: the inode number was reused after the old object died
                // unseen. Handing out the old node would make the kernel mark its inode bad (EIO on its handles).
                if (existing.Type == node.Type)
                {
                    existing.Lookups++;
                    return existing;
                }
                existing.Unlinked = true;
            }
            node.Lookups = 1;
            if (parent is not null) parent.ChildRefs++;
            _byKey[node.Key] = node;
            _byId[node.Id] = node;
            return node;
        }
    }

    public void Acquire(Node node) { lock (_lock) node.Lookups++; }

    /// <summary>The object behind a node moved (copy-up): same node, new identity.</summary>
    public void Rekey(Node node, (int, ulong, ulong) key)
    {
        lock (_lock)
        {
            if (_byKey.TryGetValue(node.Key, out var n) && n == node) _byKey.Remove(node.Key);
            node.Key = key;
            _byKey[key] = node;
            _identityEpoch++;
        }
    }

    /// <summary>Moves a node under a new parent (rename), keeping child references balanced.</summary>
    public void Reparent(Node node, Node newParent, byte[] nameZ, int layer)
    {
        Node? old;
        lock (_lock)
        {
            old = node.Parent;
            node.Loc = new Location(newParent, nameZ, layer);
            newParent.ChildRefs++;
            if (old is not null) old.ChildRefs--;
        }
        if (old is not null) ReleaseIfUnused(old);
    }

    /// <summary>The name no longer leads to this object; later lookups of the key must not find it.</summary>
    public void Detach(Node node)
    {
        lock (_lock)
        {
            node.Unlinked = true;
            if (_byKey.TryGetValue(node.Key, out var n) && n == node) _byKey.Remove(node.Key);
            _identityEpoch++;
        }
    }

    public void Forget(ulong id, ulong count)
    {
        if (id == 1 || !_byId.TryGetValue(id, out var node)) return;
        lock (_lock) node.Lookups -= (long)count;
        ReleaseIfUnused(node);
    }

    void ReleaseIfUnused(Node node)
    {
        while (node is not null && node.Id != 1)
        {
            Node? parent;
            lock (_lock)
            {
                if (node.Lookups > 0 || node.ChildRefs > 0 || !_byId.ContainsKey(node.Id)) return;
                _byId.TryRemove(node.Id, out _);
                if (_byKey.TryGetValue(node.Key, out var n) && n == node) _byKey.Remove(node.Key);
                parent = node.Parent;
                if (parent is not null) parent.ChildRefs--;
            }
            foreach (var d in node.Dirs) Libc.close(d.Fd);
            if (node.UnlinkedFd >= 0) Libc.close(node.UnlinkedFd);
            node = parent!;
        }
    }
}
