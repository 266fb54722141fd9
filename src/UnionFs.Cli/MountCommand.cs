namespace UnionFs.Cli;

static class MountCommand
{
    public static int Run(string[] args) => throw new UsageException("mount: not yet available");
}
