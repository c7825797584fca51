using System.Collections.Frozen;
using System.Collections.Immutable;
using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace StatsCache.Catalog;

/// <summary>A catalog that cannot be used; the message names the view and the field.</summary>
public sealed class CatalogException(string message) : Exception(message);

/// <summary>The dashboards the service serves, loaded from a JSON file and validated once at start-up.</summary>
public sealed partial class DashboardCatalog
{
    /// <summary>Parameter names every view's SQL may use; callers cannot set them.</summary>
    public static readonly ImmutableArray<string> ReservedParameters = ["site_id", "user_id", "role"];

    /// <summary>Query names the API itself reads (<c>?refresh=</c>, the batch's and live stream's <c>?view=</c>): no parameter may take them.</summary>
    public static readonly ImmutableArray<string> ApiQueryNames = ["refresh", "view"];

    /// <summary>Names of the API's own routes beside <c>/api/dashboards/{view}</c>: no view may take them.</summary>
    public static readonly ImmutableArray<string> ApiRouteNames = ["batch", "live"];

    private const string DefaultResource = "StatsCache.default-catalog.json";

    private readonly FrozenDictionary<string, ViewDefinition> _views;

    public DashboardCatalog(IEnumerable<ViewDefinition> views, IEnumerable<TableDefinition>? tables = null)
    {
        Views = [.. views];
        _views = Views.ToFrozenDictionary(v => v.Name, StringComparer.Ordinal);
        Roles = [.. Views.SelectMany(v => v.Roles).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal)];
        Tables = (tables ?? []).ToFrozenDictionary(t => t.Name, StringComparer.Ordinal);
        _readers = Views.SelectMany(v => v.Reads.Select(r => (Table: r.Key, Reader: (v, r.Value))))
            .GroupBy(x => x.Table, StringComparer.Ordinal)
            .ToFrozenDictionary(g => g.Key, g => g.Select(x => x.Reader).ToImmutableArray(), StringComparer.Ordinal);
    }

    private readonly FrozenDictionary<string, ImmutableArray<(ViewDefinition View, ChangeScope Scope)>> _readers;

    /// <summary>The views that read <paramref name="table"/>, each with whose entries a change of it makes out of date.</summary>
    public ImmutableArray<(ViewDefinition View, ChangeScope Scope)> ReadersOf(string table) => _readers.GetValueOrDefault(table, []);

    public ImmutableArray<ViewDefinition> Views { get; }

    /// <summary>The tables the views read, by name, with the columns the change feed routes by (catalog field <c>tables</c>).</summary>
    public FrozenDictionary<string, TableDefinition> Tables { get; }

    /// <summary>Every role at least one view is declared for.</summary>
    public ImmutableArray<string> Roles { get; }

    public ViewDefinition? Find(string name) => _views.GetValueOrDefault(name);

    /// <summary>Loads the catalog at <paramref name="path"/>, or the default one shipped in this assembly.</summary>
    public static DashboardCatalog Load(string? path)
    {
        if (string.IsNullOrWhiteSpace(path))
        {
            using var resource = typeof(DashboardCatalog).Assembly.GetManifestResourceStream(DefaultResource)
                ?? throw new CatalogException($"The default catalog resource '{DefaultResource}' is missing.");
            return Parse(resource, "default catalog");
        }

        if (!File.Exists(path))
        {
            throw new CatalogException($"Catalog file '{path}' does not exist.");
        }

        using var file = File.OpenRead(path);
        return Parse(file, $"catalog '{path}'");
    }

    /// <summary>Parses and validates a catalog; every problem found is reported, not only the first.</summary>
    public static DashboardCatalog Parse(Stream json, string source)
    {
        CatalogFile? file;
        try
        {
            file = JsonSerializer.Deserialize<CatalogFile>(json, SerializerOptions);
        }
        catch (JsonException e)
        {
            throw new CatalogException($"{source}: invalid JSON at {e.Path ?? "$"}: {e.Message}");
        }

        var errors = new List<string>();
        var views = new List<ViewDefinition>();
        var tables = ValidateTables(file?.Tables ?? [], errors);
        if (file?.Views is not { Count: > 0 })
        {
            errors.Add("'views' must list at least one view");
        }
        else
        {
            var names = new HashSet<string>(StringComparer.Ordinal);
            for (var i = 0; i < file.Views.Count; i++)
            {
                var view = ValidateView(file.Views[i], i, errors);
                if (view is null)
                {
                    continue;
                }

                if (!names.Add(view.Name))
                {
                    errors.Add($"view '{view.Name}': field 'name' is declared twice");
                    continue;
                }

                views.Add(view);
            }
        }

        CheckReadsAgainstTables(views, tables, errors);
        if (errors.Count > 0)
        {
            throw new CatalogException($"{source} is invalid:{Environment.NewLine}  " + string.Join(Environment.NewLine + "  ", errors));
        }

        return new DashboardCatalog(views, tables);
    }

    private static List<TableDefinition> ValidateTables(Dictionary<string, TableFile?> raw, List<string> errors)
    {
        var result = new List<TableDefinition>();
        foreach (var (name, table) in raw)
        {
            var where = $"table '{name}'";
            if (!SqlName().IsMatch(name))
            {
                errors.Add($"{where}: must be lower-case letters, digits and '_'");
                continue;
            }

            if (table?.Site is not { } site || !SqlName().IsMatch(site))
            {
                errors.Add($"{where}: field 'site' must name the column that holds the row's site (lower-case letters, digits and '_')");
                continue;
            }

            var users = table.Users ?? [];
            if (users.Any(u => u is null || !SqlName().IsMatch(u)))
            {
                errors.Add($"{where}: field 'users' has an invalid column '{users.First(u => u is null || !SqlName().IsMatch(u))}' (lower-case letters, digits and '_')");
                continue;
            }

            if (users.Distinct(StringComparer.Ordinal).Count() != users.Count || users.Contains(site))
            {
                errors.Add($"{where}: field 'users' names a column twice, or the site column");
                continue;
            }

            result.Add(new TableDefinition(name, site, [.. users.Select(u => u!)]));
        }

        return result;
    }

    // The change feed routes a view's reads by the table's declared columns: each table read must be declared, with the
    // columns a 'user' read needs, and each declared table must be read (else it would be published for nothing).
    private static void CheckReadsAgainstTables(List<ViewDefinition> views, List<TableDefinition> tables, List<string> errors)
    {
        var declared = tables.ToDictionary(t => t.Name, StringComparer.Ordinal);
        foreach (var view in views)
        {
            foreach (var (table, scope) in view.Reads)
            {
                if (!declared.TryGetValue(table, out var definition))
                {
                    errors.Add($"view '{view.Name}': field 'reads.{table}' names a table that 'tables' does not declare");
                }
                else if (scope == ChangeScope.User && definition.UserColumns.IsEmpty)
                {
                    errors.Add($"view '{view.Name}': field 'reads.{table}' is 'user', but table '{table}' declares no 'users' columns");
                }
            }
        }

        foreach (var table in tables.Where(t => !views.Any(v => v.Reads.ContainsKey(t.Name))))
        {
            errors.Add($"table '{table.Name}': no view reads it (declare it in a view's 'reads', or remove it)");
        }
    }

    private static ViewDefinition? ValidateView(ViewFile? raw, int index, List<string> errors)
    {
        var name = raw?.Name;
        var where = string.IsNullOrEmpty(name) ? $"view #{index + 1}" : $"view '{name}'";
        if (raw is null)
        {
            errors.Add($"{where}: must be an object");
            return null;
        }

        var count = errors.Count;
        void Error(string field, string message) => errors.Add($"{where}: field '{field}' {message}");

        if (name is null || !ViewName().IsMatch(name))
        {
            Error("name", "must be lower-case letters, digits and dashes (at most 64)");
        }
        else if (ApiRouteNames.Contains(name))
        {
            Error("name", $"is reserved: /api/dashboards/{name} is a route of the API");
        }

        var roles = raw.Roles ?? [];
        if (roles.Count == 0)
        {
            Error("roles", "must name at least one role");
        }

        foreach (var role in roles.Where(r => r is null || !Identifier().IsMatch(r)))
        {
            Error("roles", $"has an invalid role '{role}' (lower-case letters, digits, '_' and '-')");
        }

        if (!TryParseLower(raw.Scope, out ViewScope scope))
        {
            Error("scope", "must be 'user' or 'site'");
        }

        var ttl = TimeSpan.Zero;
        if (raw.Ttl is null || !TimeSpan.TryParseExact(raw.Ttl, "c", CultureInfo.InvariantCulture, out ttl) || ttl < TimeSpan.FromSeconds(1))
        {
            Error("ttl", "must be a duration of at least one second, like \"00:05:00\"");
        }

        var parameters = ValidateParameters(raw.Parameters ?? [], Error);
        var allowed = ReservedParameters.Concat(parameters.Select(p => p.Name)).ToHashSet(StringComparer.Ordinal);
        var queries = ValidateQueries(raw.Queries ?? [], allowed, scope, Error);
        var reads = ValidateReads(raw.Reads ?? [], scope, Error);

        return errors.Count > count
            ? null
            : new ViewDefinition(name!, [.. roles.Select(r => r!)], scope, ttl, parameters, queries, reads);
    }

    private static ImmutableArray<ParameterDefinition> ValidateParameters(List<ParameterFile?> raw, Action<string, string> error)
    {
        var result = ImmutableArray.CreateBuilder<ParameterDefinition>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var p in raw)
        {
            if (p?.Name is not { } name || !SqlName().IsMatch(name))
            {
                error("parameters", $"has a parameter with an invalid name '{p?.Name}' (lower-case letters, digits and '_')");
                continue;
            }

            var field = $"parameters.{name}";
            if (ReservedParameters.Contains(name) || ApiQueryNames.Contains(name))
            {
                error(field, "uses a reserved name");
            }

            if (!names.Add(name))
            {
                error(field, "is declared twice");
            }

            if (!TryParseLower(p.Type, out ParameterType type))
            {
                error($"{field}.type", "must be 'int'");
            }

            if (p.Default is not { } @default || p.Min is not { } min || p.Max is not { } max)
            {
                error(field, "must set 'default', 'min' and 'max'");
                continue;
            }

            if (min > max || @default < min || @default > max)
            {
                error(field, $"must satisfy min <= default <= max (got {min}, {@default}, {max})");
                continue;
            }

            result.Add(new ParameterDefinition(name, type, @default, min, max));
        }

        return result.ToImmutable();
    }

    private static ImmutableArray<QueryDefinition> ValidateQueries(
        List<QueryFile?> raw, HashSet<string> allowed, ViewScope scope, Action<string, string> error)
    {
        if (raw.Count == 0)
        {
            error("queries", "must list at least one query");
        }

        var result = ImmutableArray.CreateBuilder<QueryDefinition>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var q in raw)
        {
            if (q?.Name is not { } name || !SqlName().IsMatch(name))
            {
                error("queries", $"has a query with an invalid name '{q?.Name}' (lower-case letters, digits and '_')");
                continue;
            }

            var field = $"queries.{name}";
            if (!names.Add(name))
            {
                error(field, "is declared twice");
            }

            if (!TryParseLower(q.Shape, out QueryShape shape))
            {
                error($"{field}.shape", "must be 'row' or 'rows'");
            }

            if (string.IsNullOrWhiteSpace(q.Sql))
            {
                error($"{field}.sql", "must not be empty");
                continue;
            }

            var used = SqlParameter().Matches(q.Sql).Select(m => m.Groups[1].Value).Distinct(StringComparer.Ordinal).ToImmutableArray();
            foreach (var unknown in used.Where(u => !allowed.Contains(u)))
            {
                error($"{field}.sql", $"uses '@{unknown}', which is neither reserved nor a declared parameter");
            }

            if (scope == ViewScope.Site && used.Contains("user_id"))
            {
                error($"{field}.sql", "uses '@user_id' but the view is site-scoped: its numbers are shared by every user of the site");
            }

            result.Add(new QueryDefinition(name, shape, q.Sql, used));
        }

        return result.ToImmutable();
    }

    private static ImmutableDictionary<string, ChangeScope> ValidateReads(
        Dictionary<string, string?> raw, ViewScope scope, Action<string, string> error)
    {
        var result = ImmutableDictionary.CreateBuilder<string, ChangeScope>(StringComparer.Ordinal);
        foreach (var (table, value) in raw)
        {
            if (!SqlName().IsMatch(table))
            {
                error("reads", $"names an invalid table '{table}' (lower-case letters, digits and '_')");
                continue;
            }

            if (!TryParseLower(value, out ChangeScope changeScope))
            {
                error($"reads.{table}", "must be 'user' (the users the changed row names) or 'site' (every user of the site)");
                continue;
            }

            if (scope == ViewScope.Site && changeScope == ChangeScope.User)
            {
                error($"reads.{table}", "must be 'site': the view is site-scoped");
                continue;
            }

            result[table] = changeScope;
        }

        return result.ToImmutable();
    }

    private static bool TryParseLower<T>(string? text, out T value)
        where T : struct, Enum
    {
        value = default;
        return text is not null && text == text.ToLowerInvariant() && Enum.TryParse(text, ignoreCase: true, out value)
            && Enum.IsDefined(value) && !char.IsDigit(text[0]);
    }

    private static readonly JsonSerializerOptions SerializerOptions = new(JsonSerializerDefaults.Web)
    {
        PropertyNameCaseInsensitive = false,
        ReadCommentHandling = JsonCommentHandling.Skip,
        AllowTrailingCommas = true,
        UnmappedMemberHandling = System.Text.Json.Serialization.JsonUnmappedMemberHandling.Disallow,
    };

    [GeneratedRegex("^[a-z0-9][a-z0-9-]{0,63}$")]
    private static partial Regex ViewName();

    [GeneratedRegex("^[a-z][a-z0-9_-]{0,63}$")]
    private static partial Regex Identifier();

    [GeneratedRegex("^[a-z][a-z0-9_]{0,62}$")]
    private static partial Regex SqlName();

    // '@name' as Npgsql binds it; '@>' and '@@' operators do not match.
    [GeneratedRegex(@"(?<![\w@])@([A-Za-z_][A-Za-z0-9_]*)")]
    private static partial Regex SqlParameter();

    private sealed record CatalogFile(Dictionary<string, TableFile?>? Tables, List<ViewFile?>? Views);

    private sealed record TableFile(string? Site, List<string?>? Users);

    private sealed record ViewFile(
        string? Name,
        List<string?>? Roles,
        string? Scope,
        string? Ttl,
        List<ParameterFile?>? Parameters,
        List<QueryFile?>? Queries,
        Dictionary<string, string?>? Reads);

    private sealed record ParameterFile(string? Name, string? Type, int? Default, int? Min, int? Max);

    private sealed record QueryFile(string? Name, string? Shape, string? Sql);
}
