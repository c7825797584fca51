using System.Collections.Frozen;
using System.Collections.Immutable;
using System.Globalization;
using System.Text;

namespace StatsCache.Catalog;

/// <summary>Who shares a view's numbers: each user, or every user of a site and role.</summary>
public enum ViewScope
{
    User,
    Site,
}

/// <summary>How a query's result is rendered: one JSON object (or null), or an array of objects.</summary>
public enum QueryShape
{
    Row,
    Rows,
}

/// <summary>Which of a view's entries a change to a table it reads makes out of date.</summary>
public enum ChangeScope
{
    /// <summary>The entries of the users the changed row names (its client, writer, ...).</summary>
    User,

    /// <summary>Every entry of the site: the row matters to all its users of the view's roles.</summary>
    Site,
}

/// <summary>The type of a view parameter. Integers are the only type the platform's dashboards need.</summary>
public enum ParameterType
{
    Int,
}

/// <summary>A typed, bounded parameter a caller may pass in the query string.</summary>
public sealed record ParameterDefinition(string Name, ParameterType Type, int Default, int Min, int Max);

/// <summary>
/// A table the views read (catalog field <c>tables</c>): the column naming a row's site and the columns naming the users
/// the row matters to (its client, writer, ...). The change feed routes each row change by them, and the publication,
/// replica identity and triggers it needs are derived from them (<see cref="Changes.ChangeFeedSchema"/>).
/// </summary>
public sealed record TableDefinition(string Name, string SiteColumn, ImmutableArray<string> UserColumns);

/// <summary>One SQL statement of a view and the bound parameters it references.</summary>
public sealed record QueryDefinition(string Name, QueryShape Shape, string Sql, ImmutableArray<string> SqlParameters);

/// <summary>A dashboard view as declared in the catalog.</summary>
public sealed class ViewDefinition
{
    private readonly FrozenSet<string> _roles;

    public ViewDefinition(
        string name,
        ImmutableArray<string> roles,
        ViewScope scope,
        TimeSpan ttl,
        ImmutableArray<ParameterDefinition> parameters,
        ImmutableArray<QueryDefinition> queries,
        ImmutableDictionary<string, ChangeScope>? reads = null)
    {
        Name = name;
        Roles = roles;
        Scope = scope;
        Ttl = ttl;
        Parameters = parameters;
        Queries = queries;
        Reads = reads ?? ImmutableDictionary<string, ChangeScope>.Empty;
        _roles = roles.ToFrozenSet(StringComparer.Ordinal);
        DefaultParameters = new BoundParameters(this, [.. parameters.Select(p => p.Default)]);
    }

    public string Name { get; }

    public ImmutableArray<string> Roles { get; }

    public ViewScope Scope { get; }

    public TimeSpan Ttl { get; }

    public ImmutableArray<ParameterDefinition> Parameters { get; }

    public ImmutableArray<QueryDefinition> Queries { get; }

    /// <summary>
    /// The tables whose changes make this view's entries out of date, and for whom (catalog field
    /// <c>reads</c>). A view that declares none is refreshed by its TTL only.
    /// </summary>
    public ImmutableDictionary<string, ChangeScope> Reads { get; }

    /// <summary>The parameters a request without a query string gets.</summary>
    public BoundParameters DefaultParameters { get; }

    public bool AllowsRole(string role) => _roles.Contains(role);

    /// <summary>
    /// Checks raw query-string values against the declared parameters. Parameters left out take
    /// their defaults, so equal requests bind to equal canonical keys.
    /// </summary>
    public bool TryBind(IReadOnlyDictionary<string, string> values, out BoundParameters bound, out string error)
    {
        bound = DefaultParameters;
        error = string.Empty;
        if (values.Count == 0)
        {
            return true;
        }

        foreach (var name in values.Keys)
        {
            if (!Parameters.Any(p => p.Name == name))
            {
                error = Parameters.IsEmpty
                    ? $"View '{Name}' takes no parameters; '{Truncate(name)}' is not one."
                    : $"Unknown parameter '{Truncate(name)}'; view '{Name}' takes {string.Join(", ", Parameters.Select(p => $"'{p.Name}'"))}.";
                return false;
            }
        }

        var result = new int[Parameters.Length];
        for (var i = 0; i < Parameters.Length; i++)
        {
            var parameter = Parameters[i];
            if (!values.TryGetValue(parameter.Name, out var text))
            {
                result[i] = parameter.Default;
                continue;
            }

            if (!TryParseInteger(text, out var value) || value < parameter.Min || value > parameter.Max)
            {
                error = $"Parameter '{parameter.Name}' must be an integer from {parameter.Min} to {parameter.Max}.";
                return false;
            }

            result[i] = value;
        }

        bound = new BoundParameters(this, ImmutableArray.Create(result));
        return true;
    }

    /// <summary>Binds a canonical key produced by <see cref="BoundParameters.Key"/>.</summary>
    public bool TryBindKey(string key, out BoundParameters bound, out string error)
    {
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var pair in key.Split('&', StringSplitOptions.RemoveEmptyEntries))
        {
            var at = pair.IndexOf('=', StringComparison.Ordinal);
            if (at <= 0 || !values.TryAdd(pair[..at], pair[(at + 1)..]))
            {
                bound = DefaultParameters;
                error = $"Malformed parameter key '{Truncate(key)}'.";
                return false;
            }
        }

        return TryBind(values, out bound, out error);
    }

    // An optional sign and ASCII digits only: int.TryParse alone also accepts trailing NUL characters ("12\0").
    private static bool TryParseInteger(string text, out int value)
    {
        value = 0;
        var digits = text.StartsWith('-') || text.StartsWith('+') ? text.AsSpan(1) : text.AsSpan();
        return !digits.IsEmpty && !digits.ContainsAnyExceptInRange('0', '9')
            && int.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out value);
    }

    private static string Truncate(string text) => text.Length <= 64 ? text : string.Concat(text.AsSpan(0, 64), "…");
}

/// <summary>A view's parameter values, in declaration order, with their canonical key.</summary>
public sealed class BoundParameters
{
    private readonly ViewDefinition _view;

    internal BoundParameters(ViewDefinition view, ImmutableArray<int> values)
    {
        _view = view;
        Values = values;
        var key = new StringBuilder();
        for (var i = 0; i < values.Length; i++)
        {
            key.Append(i == 0 ? "" : "&").Append(view.Parameters[i].Name).Append('=')
                .Append(values[i].ToString(CultureInfo.InvariantCulture));
        }

        Key = key.ToString();
    }

    /// <summary>Values in the order the view declares its parameters.</summary>
    public ImmutableArray<int> Values { get; }

    /// <summary>The canonical form, e.g. <c>days=30</c>: every parameter, in declaration order.</summary>
    public string Key { get; }

    /// <summary>The value of the declared parameter <paramref name="name"/>.</summary>
    public int this[string name]
    {
        get
        {
            for (var i = 0; i < Values.Length; i++)
            {
                if (_view.Parameters[i].Name == name)
                {
                    return Values[i];
                }
            }

            throw new KeyNotFoundException($"View '{_view.Name}' declares no parameter '{name}'.");
        }
    }
}
