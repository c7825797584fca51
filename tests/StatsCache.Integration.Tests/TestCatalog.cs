using System.Globalization;
using System.Text.Json;

namespace StatsCache.Integration.Tests;

/// <summary>A catalog file of the given views (JSON objects, see <see cref="View"/>), deleted when disposed.</summary>
internal sealed class TestCatalog : IDisposable
{
    public TestCatalog(params string[] views)
        : this("{}", views)
    {
    }

    private TestCatalog(string tables, string[] views)
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"statscache-catalog-{Guid.NewGuid():N}.json");
        File.WriteAllText(Path, $$"""{ "tables": {{tables}}, "views": [ {{string.Join(", ", views)}} ] }""");
    }

    public string Path { get; }

    /// <summary>A catalog of the given tables (a JSON object, see <c>tables</c> in docs/catalog.md) and views.</summary>
    public static TestCatalog WithTables(string tables, params string[] views) => new(tables, views);

    /// <summary>A user-scoped view of one query, for clients; <paramref name="reads"/> its catalog field <c>reads</c>.</summary>
    public static string View(string name, TimeSpan ttl, string query, string shape, string sql, Dictionary<string, string>? reads = null) => JsonSerializer.Serialize(new
    {
        name,
        roles = new[] { "client" },
        scope = "user",
        ttl = ttl.ToString("c", CultureInfo.InvariantCulture),
        reads = reads ?? [],
        queries = new[] { new { name = query, shape, sql } },
    });

    public void Dispose() => File.Delete(Path);
}
