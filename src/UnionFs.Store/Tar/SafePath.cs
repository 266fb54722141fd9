using UnionFs.Store.Content;

namespace UnionFs.Store.Tar;

/// <summary>
/// Turns a tar entry name into a path relative to the layer root, or refuses it. A layer may only
/// describe objects inside itself: absolute names and ".." components are rejected outright (not
/// cleaned up silently), because a tarball that contains them was made to attack its reader.
/// </summary>
public static class SafePath
{
    /// <returns>the components ("" for the root itself, as "./" in many tars).</returns>
    public static string[] Split(string name, string what = "entry")
    {
        if (name.Length == 0) throw new LayerFormatException($"{what} with an empty name");
        if (name[0] == '/') throw new LayerFormatException($"{what} '{name}': absolute path escapes the layer");
        if (name.Contains('\0')) throw new LayerFormatException($"{what} '{name}': NUL in name");
        var parts = new List<string>();
        foreach (var part in name.Split('/'))
        {
            if (part.Length == 0 || part == ".") continue;
            if (part == "..") throw new LayerFormatException($"{what} '{name}': '..' escapes the layer");
            parts.Add(part);
        }
        return parts.ToArray();
    }

    public static string Normalize(string name, string what = "entry") => string.Join('/', Split(name, what));
}

/// <summary>A layer tarball that is malformed or malicious; nothing from it is registered.</summary>
public class LayerFormatException : StoreException
{
    public LayerFormatException(string message) : base(message) { }
}
