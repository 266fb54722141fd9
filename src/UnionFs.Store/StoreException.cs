namespace UnionFs.Store;

/// <summary>An expected failure with a one-line message meant for the user (bad input, missing object, refused operation).</summary>
public class StoreException : Exception
{
    public StoreException(string message, Exception? inner = null) : base(message, inner) { }
}
