using System.Runtime.InteropServices;
using Microsoft.Data.Sqlite;

namespace UnionFs.Store.Metadata;

/// <summary>
/// The SQLite database: opening (WAL, busy timeout so two processes wait for each other instead of
/// failing), the schema, and small query helpers. Every change runs in one IMMEDIATE transaction
/// (<see cref="Write{T}"/>): the write lock is taken up front, so a read-check-insert sequence
/// cannot interleave with another process doing the same.
/// </summary>
public sealed class StoreDb : IDisposable
{
    const int SchemaVersion = 1;
    readonly SqliteConnection _conn;

    static StoreDb() => UseSystemSqlite();

    /// <summary>
    /// Binds SQLitePCLRaw's "sqlite3" provider to Debian's libsqlite3.so.0: the default probing would
    /// look for libsqlite3.so, which only the -dev package ships. Works unchanged under NativeAOT.
    /// </summary>
    static void UseSystemSqlite()
    {
        NativeLibrary.SetDllImportResolver(typeof(SQLitePCL.SQLite3Provider_sqlite3).Assembly, (name, asm, path) =>
        {
            if (name != "sqlite3") return IntPtr.Zero;
            foreach (var candidate in new[] { "libsqlite3.so.0", "libsqlite3.so" })
                if (NativeLibrary.TryLoad(candidate, out var h)) return h;
            return IntPtr.Zero;
        });
        SQLitePCL.raw.SetProvider(new SQLitePCL.SQLite3Provider_sqlite3());
    }

    public StoreDb(string path)
    {
        _conn = new SqliteConnection(new SqliteConnectionStringBuilder
        {
            DataSource = path, Pooling = false, DefaultTimeout = 120, Mode = SqliteOpenMode.ReadWriteCreate,
        }.ToString());
        _conn.Open();
        Exec("PRAGMA busy_timeout = 120000");
        Exec("PRAGMA journal_mode = WAL");
        Exec("PRAGMA synchronous = FULL");
        Exec("PRAGMA foreign_keys = ON");
        Write(() => { Migrate(); return 0; });
    }

    void Migrate()
    {
        long version = (long)Scalar("PRAGMA user_version")!;
        if (version >= SchemaVersion) return;
        Exec("""
            CREATE TABLE IF NOT EXISTS blobs(
                digest TEXT PRIMARY KEY, size INTEGER NOT NULL, media_type TEXT NOT NULL, created TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS layers(
                chain_id TEXT PRIMARY KEY, diff_id TEXT NOT NULL, parent TEXT REFERENCES layers(chain_id),
                cache_id TEXT NOT NULL UNIQUE, size INTEGER NOT NULL, tar_size INTEGER NOT NULL,
                blob_digest TEXT REFERENCES blobs(digest), tree_digest TEXT NOT NULL,
                created_by TEXT NOT NULL, created TEXT NOT NULL);
            CREATE INDEX IF NOT EXISTS layers_parent ON layers(parent);
            CREATE TABLE IF NOT EXISTS images(
                id TEXT PRIMARY KEY REFERENCES blobs(digest), top_chain TEXT NOT NULL REFERENCES layers(chain_id),
                created TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS tags(
                name TEXT PRIMARY KEY, image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE);
            CREATE TABLE IF NOT EXISTS containers(
                id TEXT PRIMARY KEY, name TEXT UNIQUE, image_id TEXT NOT NULL,
                chain_id TEXT NOT NULL REFERENCES layers(chain_id), created TEXT NOT NULL);
            """);
        Exec($"PRAGMA user_version = {SchemaVersion}");
    }

    /// <summary>Runs <paramref name="body"/> in one BEGIN IMMEDIATE transaction; commits if it returns, rolls back if it throws.</summary>
    public T Write<T>(Func<T> body)
    {
        using var tx = _conn.BeginTransaction(deferred: false);
        _tx = tx;
        try
        {
            var result = body();
            tx.Commit();
            return result;
        }
        finally { _tx = null; }
    }

    SqliteTransaction? _tx;

    SqliteCommand Command(string sql, (string, object?)[] args)
    {
        var cmd = _conn.CreateCommand();
        cmd.CommandText = sql;
        cmd.Transaction = _tx;
        foreach (var (k, v) in args) cmd.Parameters.AddWithValue(k, v ?? DBNull.Value);
        return cmd;
    }

    public int Exec(string sql, params (string, object?)[] args)
    {
        using var cmd = Command(sql, args);
        return cmd.ExecuteNonQuery();
    }

    public object? Scalar(string sql, params (string, object?)[] args)
    {
        using var cmd = Command(sql, args);
        var r = cmd.ExecuteScalar();
        return r is DBNull ? null : r;
    }

    public List<T> Query<T>(string sql, Func<SqliteDataReader, T> map, params (string, object?)[] args)
    {
        using var cmd = Command(sql, args);
        using var reader = cmd.ExecuteReader();
        var list = new List<T>();
        while (reader.Read()) list.Add(map(reader));
        return list;
    }

    public void Dispose() => _conn.Dispose();
}
