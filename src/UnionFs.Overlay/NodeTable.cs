using UnionFs.Posix;

namespace UnionFs.Overlay;

/// <summary>
/// Node ids the kernel holds, their lookup counts, and the identity map that makes two names of one object
/// (hard links, repeated lookups) the same node. A node lives while the kernel references it or a live child
/// points at it.
/// </summary>
/// <remarks>
/// There is an entry here for every node the kernel holds (160,000 after a find over /usr), so both maps are
/// the leanest the runtime offers: ids index an array, and the identity map is a set of the nodes themselves,
/// searched by key. A node id is (generation &lt;&lt; 32 | slot): a freed slot is given out again with the next
/// generation, so ids are not reused (until a slot's 2^32 generations wrap, long after the kernel forgot the
/// id) and the FUSE generation field stays 0.
/// </remarks>
public sealed class NodeTable
{
    /// <summary>Nodes by slot (the low 32 bits of their id). Replaced whole when it grows; written under _lock,
    /// read without it.</summary>
    volatile Node?[] _slots = new Node?[1024];
    /// <summary>Slots never used yet start here; 0 is no node id, 1 is the root.</summary>
    int _nextSlot = 2;
    /// <summary>The ids freed slots are given out with next (their generation already advanced), used last-in first.</summary>
    ulong[] _freeIds = new ulong[64];
    int _freeCount, _count;
    readonly HashSet<Node> _byKey = new(KeyComparer.Instance);
    readonly HashSet<Node>.AlternateLookup<(int, ulong, ulong)> _byKeyLookup;
    readonly Lock _lock = new();
    /// <summary>Bumped whenever an identity stops naming a node (copy-up rekeys it, its last name goes away).
    /// A lookup that saw the epoch change between stat'ing a name and registering a fresh node retries: what it
    /// stat'd may be an object that died or moved meanwhile, and a key registered for it would later be handed
    /// out for whatever new object reuses the inode number.</summary>
    long _identityEpoch;

    public NodeTable() => _byKeyLookup = _byKey.GetAlternateLookup<(int, ulong, ulong)>();

    public long IdentityEpoch => Volatile.Read(ref _identityEpoch);

    public int Count => Volatile.Read(ref _count);

    public Node AddRoot(Node root)
    {
        lock (_lock)
        {
            root.Id = 1;
            root.Lookups = 1;
            _slots[1] = root;
            _count++;
        }
        return root;
    }


    public Node? Get(ulong id)
    {
        var slots = _slots;
        uint slot = (uint)id;
        if (slot >= (uint)slots.Length) return null;
        var n = Volatile.Read(ref slots[slot]);
        return n is not null && n.Id == id ? n : null;
    }

    /// <summary>The live node for an identity key, with one more lookup, or null.</summary>
    public Node? AcquireExisting((int, ulong, ulong) key)
    {
        lock (_lock)
        {
            if (!_byKeyLookup.TryGetValue(key, out var n)) return null;
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
            if (_byKey.TryGetValue(node, out var existing))
            {
                // Another type under the same identity: the inode number was reused after the old object died
                // unseen. Handing out the old node would make the kernel mark its inode bad (EIO on its handles).
                if (existing.Type == node.Type)
                {
                    existing.Lookups++;
                    return existing;
                }
                existing.Unlinked = true;
                _byKey.Remove(existing);
            }
            node.Lookups = 1;
            if (parent is not null) parent.ChildRefs++;
            _byKey.Add(node);
            AssignSlot(node);
            return node;
        }
    }

    /// <summary>Gives <paramref name="node"/> its id and publishes it. Under _lock.</summary>
    void AssignSlot(Node node)
    {
        ulong id;
        if (_freeCount > 0) id = _freeIds[--_freeCount];
        else
        {
            if (_nextSlot == _slots.Length)
            {
                if (_nextSlot == int.MaxValue) throw new InvalidOperationException("node table full");
                var bigger = new Node?[(int)Math.Min(2L * _slots.Length, int.MaxValue)];
                Array.Copy(_slots, bigger, _slots.Length);
                _slots = bigger; // volatile write: readers see the copied entries with the new array
            }
            id = (ulong)_nextSlot++;
        }
        node.Id = id;
        Volatile.Write(ref _slots[(uint)id], node);
        _count++;
    }

    /// <summary>Takes <paramref name="node"/> out of the id map; its slot comes back with the next generation. Under _lock.</summary>
    void FreeSlot(Node node)
    {
        _slots[(uint)node.Id] = null;
        if (_freeCount == _freeIds.Length) Array.Resize(ref _freeIds, 2 * _freeIds.Length);
        _freeIds[_freeCount++] = node.Id + (1UL << 32);
        _count--;
    }

    bool IsRegistered(Node node) => (uint)node.Id < (uint)_slots.Length && _slots[(uint)node.Id] == node;

    public void Acquire(Node node) { lock (_lock) node.Lookups++; }

    /// <summary>The object behind a node moved (copy-up): same node, new identity.</summary>
    public void Rekey(Node node, (int, ulong, ulong) key)
    {
        lock (_lock)
        {
            // Out of the set before its key changes: the set finds nodes by their current key.
            if (_byKey.TryGetValue(node, out var n) && n == node) _byKey.Remove(node);
            node.Key = key;
            if (_byKey.TryGetValue(node, out var other)) _byKey.Remove(other);
            _byKey.Add(node);
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
            if (_byKey.TryGetValue(node, out var n) && n == node) _byKey.Remove(node);
            _identityEpoch++;
        }
    }

    public void Forget(ulong id, ulong count)
    {
        if (id == 1 || Get(id) is not { } node) return;
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
                if (node.Lookups > 0 || node.ChildRefs > 0 || !IsRegistered(node)) return;
                FreeSlot(node);
                if (_byKey.TryGetValue(node, out var n) && n == node) _byKey.Remove(node);
                parent = node.Parent;
                if (parent is not null) parent.ChildRefs--;
            }
            foreach (var d in node.Dirs) Libc.close(d.Fd);
            if (node.UnlinkedFd >= 0) Libc.close(node.UnlinkedFd);
            node = parent!;
        }
    }

    /// <summary>Compares nodes by <see cref="Node.Key"/>, and finds them by a bare key.</summary>
    sealed class KeyComparer : IEqualityComparer<Node>, IAlternateEqualityComparer<(int, ulong, ulong), Node>
    {
        public static readonly KeyComparer Instance = new();
        public bool Equals(Node? a, Node? b) => a!.Key == b!.Key;
        public int GetHashCode(Node n) => n.Key.GetHashCode();
        public bool Equals((int, ulong, ulong) key, Node n) => n.Key == key;
        public int GetHashCode((int, ulong, ulong) key) => key.GetHashCode();
        public Node Create((int, ulong, ulong) key) => throw new NotSupportedException("nodes are added whole");
    }
}
