namespace UnionFs.Engine.Tests;

public class CliTests : IDisposable
{
    readonly Scratch _s = new();
    public void Dispose() => _s.Dispose();

    [Fact]
    public void Errors_are_one_line_with_exit_status_1()
    {
        var (code, stdout, err) = CliRunner.Run("image", "history", "nope", "--root", _s.Root);
        Assert.Equal(1, code);
        Assert.Equal("", stdout);
        Assert.Equal("unionfs: image 'nope': no such image\n", err);
    }

    [Fact]
    public void Usage_errors_exit_2()
    {
        Assert.Equal(2, CliRunner.Run("image", "frobnicate", "--root", _s.Root).Code);
        Assert.Equal(2, CliRunner.Run("image", "ls", "--bogus", "--root", _s.Root).Code);
        Assert.Equal(2, CliRunner.Run("image", "import", "--root", _s.Root).Code);
    }

    [Fact]
    public void Import_ls_json_and_rm_refused_while_used()
    {
        string rootfs = _s.MakeRootfs();
        var imp = CliRunner.Run("image", "import", rootfs, "base:1", "--root", _s.Root);
        Assert.Equal(0, imp.Code);
        Assert.Matches("^sha256:[0-9a-f]{64}\n$", imp.Out);
        var ls = CliRunner.Run("image", "ls", "--json", "--root", _s.Root);
        Assert.Contains("\"base:1\"", ls.Out);
        var create = CliRunner.Run("container", "create", "base:1", "--name", "c", "--root", _s.Root);
        Assert.Equal(0, create.Code);
        var rm = CliRunner.Run("image", "rm", "base:1", "--root", _s.Root);
        Assert.Equal(1, rm.Code);
        Assert.Contains("used by container", rm.Err);
        Assert.Equal(0, CliRunner.Run("container", "rm", "c", "--root", _s.Root).Code);
        Assert.Equal(0, CliRunner.Run("image", "rm", "base:1", "--root", _s.Root).Code);
        Assert.Equal("[]\n", CliRunner.Run("image", "ls", "--json", "--root", _s.Root).Out);
    }

    [Fact]
    public void Missing_input_names_the_path()
    {
        var (code, _, err) = CliRunner.Run("image", "load", _s["nothere.tar"], "--root", _s.Root);
        Assert.Equal(1, code);
        Assert.Contains(_s["nothere.tar"], err);
    }

    [Fact]
    public void Fsck_exits_1_when_a_layer_changed()
    {
        CliRunner.Run("image", "import", _s.MakeRootfs(), "base", "--root", _s.Root);
        Assert.Equal(0, CliRunner.Run("system", "fsck", "--root", _s.Root).Code);
        var layerDir = Directory.GetDirectories(Path.Combine(_s.Root, "layers")).Single();
        File.AppendAllText(Path.Combine(layerDir, "diff/etc/hostname"), "tampered");
        var (code, stdout, _) = CliRunner.Run("system", "fsck", "--root", _s.Root);
        Assert.Equal(1, code);
        Assert.Contains("changed since it was stored", stdout);
    }
}
