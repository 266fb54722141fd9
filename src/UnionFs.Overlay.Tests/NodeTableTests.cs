using UnionFs.Overlay;
using UnionFs.Posix;

namespace UnionFs.Overlay.Tests;

public class NodeTableTests
{
    static (NodeTable, Node) WithRoot()
    {
        var t = new NodeTable();
        var root = t.AddRoot(new Node(Libc.S_IFDIR) { Key = (0, 1, 1) });
        return (t, root);
    }

    static Node File(NodeTable t, ulong ino) =>
        new(Libc.S_IFREG) { Key = (0, 1, ino), Loc = new Location(t.Get(1), [0], 0) };

    [Fact]
    public void Registered_nodes_are_found_by_id_and_key()
    {
        var (t, root) = WithRoot();
        var a = t.AddOrAcquire(File(t, 10), root);
        var b = t.AddOrAcquire(File(t, 11), root);
        Assert.NotEqual(a.Id, b.Id);
        Assert.Same(a, t.Get(a.Id));
        Assert.Same(root, t.Get(1));
        Assert.Same(b, t.AcquireExisting((0, 1, 11)));
        Assert.Equal(2, b.Lookups);
        Assert.Null(t.AcquireExisting((1, 1, 11)));
        Assert.Equal(3, t.Count);
    }

    [Fact]
    public void Same_key_gives_the_registered_node_and_leaves_the_fresh_one_without_an_id()
    {
        var (t, root) = WithRoot();
        var a = t.AddOrAcquire(File(t, 10), root);
        var fresh = File(t, 10);
        Assert.Same(a, t.AddOrAcquire(fresh, root));
        Assert.Equal(0UL, fresh.Id);
        Assert.Equal(2, a.Lookups);
        Assert.Equal(1, root.ChildRefs);
    }

    [Fact]
    public void Forgotten_nodes_free_their_slot_and_a_reused_slot_has_a_new_id()
    {
        var (t, root) = WithRoot();
        var a = t.AddOrAcquire(File(t, 10), root);
        ulong old = a.Id;
        t.Forget(old, 1);
        Assert.Null(t.Get(old));
        Assert.Null(t.AcquireExisting((0, 1, 10)));
        Assert.Equal(0, root.ChildRefs);
        var b = t.AddOrAcquire(File(t, 12), root);
        Assert.Equal((uint)old, (uint)b.Id); // the same slot ...
        Assert.NotEqual(old, b.Id);          // ... under a new id: ids are not reused
        Assert.Null(t.Get(old));
        Assert.Same(b, t.Get(b.Id));
    }

    [Fact]
    public void A_node_lives_while_a_child_points_at_it()
    {
        var (t, root) = WithRoot();
        var dir = t.AddOrAcquire(new Node(Libc.S_IFDIR) { Key = (0, 1, 20), Loc = new Location(root, [0], 0) }, root);
        var child = t.AddOrAcquire(new Node(Libc.S_IFREG) { Key = (0, 1, 21), Loc = new Location(dir, [0], 0) }, dir);
        t.Forget(dir.Id, 1);
        Assert.Same(dir, t.Get(dir.Id));
        t.Forget(child.Id, 1);
        Assert.Null(t.Get(child.Id));
        Assert.Null(t.Get(dir.Id));
        Assert.Equal(0, root.ChildRefs);
        Assert.Equal(1, t.Count);
    }

    [Fact]
    public void Rekey_moves_the_identity_and_another_type_under_a_key_replaces_the_old_node()
    {
        var (t, root) = WithRoot();
        var a = t.AddOrAcquire(File(t, 10), root);
        t.Rekey(a, (0, 2, 30));
        Assert.Null(t.AcquireExisting((0, 1, 10)));
        Assert.Same(a, t.AcquireExisting((0, 2, 30)));
        Assert.Equal((0, 2UL, 30UL), a.Key);

        var dir = t.AddOrAcquire(new Node(Libc.S_IFDIR) { Key = (0, 2, 30) }, root);
        Assert.NotSame(a, dir);
        Assert.True(a.Unlinked);
        Assert.Same(dir, t.AcquireExisting((0, 2, 30)));
        Assert.Same(a, t.Get(a.Id)); // still reachable by id while the kernel holds it
    }

    [Fact]
    public void Rare_state_reads_defaults_until_written()
    {
        var n = new Node(Libc.S_IFREG);
        Assert.Equal(-1, n.UnlinkedFd);
        Assert.Null(n.RedirectPath);
        Assert.Null(n.DataLoc);
        Assert.Equal(0, n.XattrChanges);
        n.UnlinkedFd = -1; // writing a default makes nothing
        n.UnlinkedFd = 7;
        Assert.Equal(7, n.UnlinkedFd);
        Assert.Same(n.CopyUpLock, n.CopyUpLock); // one lock for the node's whole life
    }
}
