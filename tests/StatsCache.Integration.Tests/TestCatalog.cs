using System.Globalization;
using System.Text.Json;

namespace StatsCache.Integration.Tests;

/// <summary>A catalog file of the given views (JSON objects, see <see cref="View"/>), deleted when disposed.</summary>
internal sealed class TestCatalog : IDisposable
{
    public TestCatalog(params string[] views)
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"statscache-catalog-{Guid.NewGuid():N}.json");
        File.WriteAllText(Path, $$"""{ "views": [ {{string.Join(", ", views)}} ] }""");
    }

    public string Path { get; }

    /// <summary>A user-scoped view of one query, for clients.</summary>
    public static string View(string name, TimeSpan ttl, string query, string shape, string sql) => JsonSerializer.Serialize(new
    {
        name,
        roles = new[] { "client" },
        scope = "user",
        ttl = ttl.ToString("c", CultureInfo.InvariantCulture),
        queries = new[] { new { name = query, shape, sql } },
    });

    public void Dispose() => File.Delete(Path);
}
