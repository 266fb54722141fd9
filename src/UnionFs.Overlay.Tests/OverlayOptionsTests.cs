using UnionFs.Overlay;

namespace UnionFs.Overlay.Tests;

public class OverlayOptionsTests
{
    [Fact]
    public void Parses_fuse_overlayfs_syntax_with_topmost_lower_first()
    {
        var o = OverlayOptions.Parse(["lowerdir=/a:/b:/c,upperdir=/u,workdir=/w,volatile"], asRoot: true);
        Assert.Equal(["/a", "/b", "/c"], o.LowerDirs);
        Assert.Equal("/u", o.UpperDir);
        Assert.Equal("/w", o.WorkDir);
        Assert.True(o.Volatile);
        Assert.True(o.Writable);
        Assert.True(o.AllowOther); // root default, as fuse-overlayfs
    }

    [Fact]
    public void Escaped_colon_stays_in_the_path()
    {
        var o = OverlayOptions.Parse([@"lowerdir=/x\:y:/z"], asRoot: false);
        Assert.Equal(["/x:y", "/z"], o.LowerDirs);
        Assert.False(o.Writable);
    }

    [Fact]
    public void Quoted_context_keeps_its_commas()
    {
        var o = OverlayOptions.Parse(["lowerdir=/a,context=\"system_u:object_r:container_file_t:s0:c1,c2\""], asRoot: true);
        Assert.Equal("system_u:object_r:container_file_t:s0:c1,c2", o.Context);
    }

    [Fact]
    public void LowerdirPlusAppendsOneLayerEach()
    {
        var o = OverlayOptions.Parse(["lowerdir+=/a:b,lowerdir+=/c,upperdir=/u,workdir=/w"], asRoot: true);
        Assert.Equal(["/a:b", "/c"], o.LowerDirs);
    }

    [Theory]
    [InlineData("lowerdir=/a,lowerdir+=/b")]
    [InlineData("lowerdir+=/a,lowerdir=/b")]
    [InlineData("lowerdir+=/a,datadir+=/d")]
    public void LowerdirFormsCannotMix(string options) =>
        Assert.Throws<ArgumentException>(() => OverlayOptions.Parse([options], asRoot: true));

    [Theory]
    [InlineData("lowerdir=/a,bogus")]
    [InlineData("upperdir=/u,workdir=/w")]
    [InlineData("lowerdir=/a,upperdir=/u")]
    [InlineData("lowerdir=/a::/b")]
    [InlineData("lowerdir=/a,redirect_dir=maybe")]
    [InlineData("lowerdir=/a,metacopy=maybe")]
    [InlineData("lowerdir=/a,index=on")]
    [InlineData("lowerdir=/a,xattr_permissions=1")]
    [InlineData("lowerdir=/a,plugins=/x.so")]
    [InlineData("lowerdir=/a,noxattrs")]
    public void Rejects_what_it_cannot_honour(string options) =>
        Assert.Throws<ArgumentException>(() => OverlayOptions.Parse([options], asRoot: true));

    [Fact]
    public void Metacopy_is_off_unless_turned_on()
    {
        // Off by default: the upper then holds whole files for tools that read it directly.
        Assert.False(OverlayOptions.Parse(["lowerdir=/a"], asRoot: true).Metacopy);
        Assert.True(OverlayOptions.Parse(["lowerdir=/a,metacopy=on"], asRoot: true).Metacopy);
        Assert.False(OverlayOptions.Parse(["lowerdir=/a,metacopy=off"], asRoot: true).Metacopy);
    }

    [Fact]
    public void Fsync_zero_is_volatile_and_redirect_dir_off_is_kept()
    {
        var o = OverlayOptions.Parse(["lowerdir=/a,upperdir=/u,workdir=/w,fsync=0,redirect_dir=off,timeout=2.5"], asRoot: true);
        Assert.True(o.Volatile);
        Assert.False(o.RedirectDir);
        Assert.Equal(2.5, o.Timeout);
    }

    [Fact]
    public void Id_mappings_translate_both_ways()
    {
        // stored:shown:length, as fuse-overlayfs reads it
        var m = IdMapping.Parse("100000:0:65536:0:70000:1", "uidmapping");
        Assert.Equal(100000u, m.ToHost(0));
        Assert.Equal(5u, m.ToInside(100005));
        Assert.Equal(70000u, m.ToInside(0));
        Assert.Equal(0u, m.ToHost(70000));
        Assert.Equal(65534u, m.ToInside(5)); // unmapped stored ids show as overflow
        Assert.Equal(65534u, m.ToHost(65536)); // unmapped ids are stored as overflow
        // containers/storage (podman with a mount_program) starts the list with a colon
        var podman = IdMapping.Parse(":0:100000:65536", "uidmapping");
        Assert.Equal(100005u, podman.ToInside(5));
        Assert.Equal(5u, podman.ToHost(100005));
    }

    [Fact]
    public void Fuse_overlayfs_options_are_honoured()
    {
        var o = OverlayOptions.Parse(["lowerdir=/a,noxattrs=1,ino32_t,debug,fast_ino=1,threaded=1,sync=0"], asRoot: true);
        Assert.True(o.NoXattrs);
        Assert.False(o.Acl); // ACLs are xattrs
        Assert.True(o.Ino32);
        Assert.True(o.Debug);
        Assert.True(o.Volatile);
        var plain = OverlayOptions.Parse(["lowerdir=/a,noxattrs=0"], asRoot: true);
        Assert.False(plain.NoXattrs);
        Assert.True(plain.Acl);
    }
}
