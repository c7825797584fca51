using System.Collections.ObjectModel;
using System.Diagnostics.CodeAnalysis;
using Microsoft.AspNetCore.Http.HttpResults;
using StatsCache.Catalog;
using StatsCache.WebHost.Auth;
using StatsCache.WebHost.Hosting;
using StatsCache.WebHost.Live;

namespace StatsCache.WebHost.Api;

/// <summary>
/// <c>/api/dashboards</c>: the caller's views and their snapshots. Errors are problem details
/// (<see cref="ProblemHttpResult"/>, so they are served as application/problem+json).
/// </summary>
public static class DashboardApi
{
    internal const string TooFastTitle = "You are asking too fast.";

    private const string RefreshParameter = "refresh";
    private const string ViewParameter = "view";

    /// <summary>Problem details for every error, the OpenAPI document and the API's options.</summary>
    public static WebApplicationBuilder AddDashboardApi(this WebApplicationBuilder builder)
    {
        builder.Services.AddOptions<ApiOptions>().BindConfiguration(ApiOptions.SectionName).ValidateDataAnnotations().ValidateOnStart();
        // The invalidation API publishes on the change feed's source (a co-hosted silo binds the same section: harmless).
        builder.Services.AddOptions<Changes.ChangeFeedOptions>().BindConfiguration(Changes.ChangeFeedOptions.SectionName).ValidateDataAnnotations();
        builder.Services.AddSingleton<DashboardReader>();
        builder.Services.AddProblemDetails();
        builder.Services.AddOpenApi();
        return builder;
    }

    public static IEndpointRouteBuilder MapDashboardApi(this IEndpointRouteBuilder app)
    {
        var api = app.MapGroup("/api/dashboards").RequireAuthorization().RequireRequestLimit().WithTags("Dashboards");

        api.MapGet("/", ListViews)
            .WithName("ListDashboards")
            .WithSummary("The views the caller's role may read, with their TTLs and parameters.");

        api.MapGet("/batch", GetBatchAsync)
            .WithName("GetDashboardBatch")
            .WithSummary("Several views in one answer: ?view=a&view=b; a parameter applies to each view that declares it.");

        api.MapGet("/live", GetLive)
            .WithName("GetDashboardsLive")
            .WithSummary("Server-sent events: each view's answer now, then again whenever it changes (same query as the batch).");

        api.MapGet("/{view}", GetViewAsync)
            .WithName("GetDashboard")
            .WithSummary("The caller's snapshot of a view; ?refresh=true reloads it first.");

        return app;
    }

    internal static Results<Ok<DashboardList>, ProblemHttpResult> ListViews(HttpContext context, DashboardCatalog catalog)
    {
        var caller = CallerOf(context);
        if (!catalog.Roles.Contains(caller.Role))
        {
            return UnknownRole(caller);
        }

        var views = catalog.Views
            .Where(v => v.AllowsRole(caller.Role))
            .Select(v => new DashboardListItem(
                v.Name,
                (int)v.Ttl.TotalSeconds,
                [.. v.Parameters.Select(p => new DashboardParameter(p.Name, "int", p.Default, p.Min, p.Max))]))
            .ToList();
        return TypedResults.Ok(new DashboardList(caller.SiteId, caller.Role, caller.UserId, views));
    }

    internal static async ValueTask<Results<SnapshotResult, StatusCodeHttpResult, ProblemHttpResult>> GetViewAsync(
        string view, HttpContext context, DashboardCatalog catalog, DashboardReader reader)
    {
        if (!TryResolve(view, context, catalog, out var read, out var problem))
        {
            return problem;
        }

        var answer = await reader.ReadAsync(read, context.RequestAborted);
        if (answer.Snapshot is not { } snapshot)
        {
            return ProblemOf(context.Response, answer, read.View.Name);
        }

        return SnapshotResult.SetCacheHeaders(context, ViewAnswer.OpaqueTagOf(snapshot, answer.Stale), answer.NextRefreshIn)
            ? TypedResults.StatusCode(StatusCodes.Status304NotModified)
            : new SnapshotResult(read.Caller, read.View, read.Parameters, snapshot, answer.Stale);
    }

    internal static async Task<Results<BatchResult, StatusCodeHttpResult, ProblemHttpResult>> GetBatchAsync(
        HttpContext context, DashboardCatalog catalog, DashboardReader reader)
    {
        if (!TryResolveMany(context, catalog, allowRefresh: true, out var reads, out var problem))
        {
            return problem;
        }

        // Concurrently: each part answers as fast as a single read would (a near-cache hit at once).
        var answers = new ViewAnswer[reads.Length];
        var pending = new Task[reads.Length];
        for (var i = 0; i < reads.Length; i++)
        {
            pending[i] = ReadInto(reader.ReadAsync(reads[i], context.RequestAborted), answers, i);
        }

        await Task.WhenAll(pending);
        if (Array.TrueForAll(answers, a => a.Snapshot is null))
        {
            // Nothing usable in any part: answered as a single read of the first view would be.
            return ProblemOf(context.Response, answers[0], reads[0].View.Name);
        }

        return BatchResult.SetCacheHeaders(context, reads, answers)
            ? TypedResults.StatusCode(StatusCodes.Status304NotModified)
            : new BatchResult(reads, answers);

        static async Task ReadInto(ValueTask<ViewAnswer> read, ViewAnswer[] answers, int slot) => answers[slot] = await read;
    }

    internal static Results<LiveStream, ProblemHttpResult> GetLive(HttpContext context, DashboardCatalog catalog) =>
        TryResolveMany(context, catalog, allowRefresh: false, out var reads, out var problem) ? new LiveStream(reads) : problem;

    /// <summary>
    /// The checks every read of a view goes through, in order: the view exists (404), the caller's
    /// role may read it (403), its parameters are valid (400). Also used by the benchmark contenders,
    /// so they validate exactly as this API does.
    /// </summary>
    internal static bool TryResolve(
        string view, HttpContext context, DashboardCatalog catalog,
        out ViewRead read, [NotNullWhen(false)] out ProblemHttpResult? problem)
    {
        read = default;
        var caller = CallerOf(context);
        if (!TryFindView(view, caller, catalog, out var definition, out problem))
        {
            return false;
        }

        if (!TryReadQuery(context.Request.Query, allowRefresh: true, out var values, out var refresh, out var error)
            || !definition.TryBind(values, out var parameters, out error))
        {
            problem = Problem(StatusCodes.Status400BadRequest, error);
            return false;
        }

        read = new ViewRead(caller, definition, parameters, refresh);
        return true;
    }

    /// <summary>
    /// The checks of a batch or live request (<c>?view=a&amp;view=b&amp;param=value</c>): at least one view, each once, at
    /// most as many as the catalog has; each view passes a single read's checks, in request order; a parameter applies
    /// to every requested view that declares it, and one that none declares is a 400 naming it.
    /// </summary>
    private static bool TryResolveMany(
        HttpContext context, DashboardCatalog catalog, bool allowRefresh,
        out ViewRead[] reads, [NotNullWhen(false)] out ProblemHttpResult? problem)
    {
        reads = [];
        var caller = CallerOf(context);
        var query = context.Request.Query;
        var names = query[ViewParameter];
        if (names.Count == 0)
        {
            problem = Problem(StatusCodes.Status400BadRequest, $"Name the views to read: ?{ViewParameter}=a&{ViewParameter}=b.");
            return false;
        }

        if (names.Count > catalog.Views.Length)
        {
            problem = Problem(StatusCodes.Status400BadRequest, $"At most {catalog.Views.Length} views can be read in one request.");
            return false;
        }

        var definitions = new ViewDefinition[names.Count];
        for (var i = 0; i < names.Count; i++)
        {
            if (!TryFindView(names[i] ?? "", caller, catalog, out var definition, out problem))
            {
                return false;
            }

            if (Array.IndexOf(definitions, definition, 0, i) >= 0)
            {
                problem = Problem(StatusCodes.Status400BadRequest, $"View '{definition.Name}' is requested twice.");
                return false;
            }

            definitions[i] = definition;
        }

        if (!TryReadQuery(query, allowRefresh, out var values, out var refresh, out var error))
        {
            problem = Problem(StatusCodes.Status400BadRequest, error);
            return false;
        }

        foreach (var name in values.Keys)
        {
            if (!Array.Exists(definitions, d => d.Parameters.Any(p => p.Name == name)))
            {
                problem = Problem(StatusCodes.Status400BadRequest,
                    $"Parameter '{Shorten(name)}' is not a parameter of any requested view ({string.Join(", ", definitions.Select(d => d.Name))}).");
                return false;
            }
        }

        reads = new ViewRead[definitions.Length];
        for (var i = 0; i < definitions.Length; i++)
        {
            var definition = definitions[i];
            var own = values.Where(v => definition.Parameters.Any(p => p.Name == v.Key)).ToDictionary(StringComparer.Ordinal);
            if (!definition.TryBind(own, out var parameters, out error))
            {
                problem = Problem(StatusCodes.Status400BadRequest, $"View '{definition.Name}': {error}");
                return false;
            }

            reads[i] = new ViewRead(caller, definition, parameters, refresh);
        }

        problem = null;
        return true;
    }

    private static bool TryFindView(
        string view, Caller caller, DashboardCatalog catalog,
        [NotNullWhen(true)] out ViewDefinition? definition, [NotNullWhen(false)] out ProblemHttpResult? problem)
    {
        definition = catalog.Find(view);
        if (definition is null)
        {
            problem = Problem(StatusCodes.Status404NotFound, "Unknown view.", $"There is no dashboard view named '{Shorten(view)}'.");
            return false;
        }

        if (!definition.AllowsRole(caller.Role))
        {
            problem = catalog.Roles.Contains(caller.Role)
                ? Problem(StatusCodes.Status403Forbidden, "This view is not available to your role.",
                    $"View '{definition.Name}' is for {string.Join(", ", definition.Roles)}; the token's role is '{caller.Role}'.")
                : UnknownRole(caller);
            return false;
        }

        problem = null;
        return true;
    }

    /// <summary>
    /// The query's parameter values and <c>refresh</c> (when allowed; otherwise it is a parameter like any other),
    /// without <c>view</c>; a repeated or malformed one is an error naming it.
    /// </summary>
    private static bool TryReadQuery(
        IQueryCollection query, bool allowRefresh, out IReadOnlyDictionary<string, string> values, out bool refresh, out string error)
    {
        refresh = false;
        error = "";
        values = ReadOnlyDictionary<string, string>.Empty;
        if (query.Count == 0)
        {
            // Most reads carry no query string: no dictionary to fill, the defaults are already bound.
            return true;
        }

        var read = new Dictionary<string, string>(StringComparer.Ordinal);
        values = read;
        foreach (var (name, value) in query)
        {
            if (name == ViewParameter)
            {
                continue;
            }

            if (value.Count != 1)
            {
                error = $"Parameter '{Shorten(name)}' must be given exactly once.";
                return false;
            }

            if (allowRefresh && name == RefreshParameter)
            {
                // Only 'true' or 'false' (any case): bool.TryParse would also take " true" and "true\0".
                refresh = string.Equals(value[0], "true", StringComparison.OrdinalIgnoreCase);
                if (!refresh && !string.Equals(value[0], "false", StringComparison.OrdinalIgnoreCase))
                {
                    error = $"Parameter '{RefreshParameter}' must be true or false.";
                    return false;
                }

                continue;
            }

            read[name] = value[0] ?? "";
        }

        return true;
    }

    /// <summary>The caller authentication validated and kept (see AuthenticationExtensions): every route here requires it.</summary>
    internal static Caller CallerOf(HttpContext context) =>
        context.Features.Get<Caller>() ?? throw new InvalidOperationException("The request has no authenticated caller.");

    private static ProblemHttpResult UnknownRole(Caller caller) =>
        Problem(StatusCodes.Status403Forbidden, "Your role has no dashboards.", $"No view is declared for role '{caller.Role}'.");

    /// <summary>A read without a snapshot: its problem (429 or 503), with when to retry.</summary>
    private static ProblemHttpResult ProblemOf(HttpResponse response, in ViewAnswer answer, string view)
    {
        var (status, title, detail) = answer.Problem(view);
        response.Headers.RetryAfter = DashboardJson.RetryAfterHeader(answer.NextRefreshIn);
        return Problem(status, title, detail);
    }

    /// <summary>429: one caller asks too fast (the request limit, the budget of new entries, open live streams).</summary>
    internal static ProblemHttpResult TooFast(HttpResponse response, TimeSpan retryAfter, string detail)
    {
        response.Headers.RetryAfter = DashboardJson.RetryAfterHeader(retryAfter);
        return Problem(StatusCodes.Status429TooManyRequests, TooFastTitle, detail);
    }

    internal static ProblemHttpResult Problem(int status, string title, string? detail = null) =>
        TypedResults.Problem(title: title, detail: detail, statusCode: status);

    // Names from the URL are echoed in errors; keep them short.
    private static string Shorten(string text) => text.Length <= 64 ? text : string.Concat(text.AsSpan(0, 64), "…");
}

/// <summary>The answer of <c>GET /api/dashboards</c>.</summary>
public sealed record DashboardList(long Site, string Role, long User, IReadOnlyList<DashboardListItem> Views);

public sealed record DashboardListItem(string Name, int TtlSeconds, IReadOnlyList<DashboardParameter> Parameters);

public sealed record DashboardParameter(string Name, string Type, int Default, int Min, int Max);

/// <summary>A validated read: who asks, for which view, with which canonical parameters.</summary>
internal readonly record struct ViewRead(Caller Caller, ViewDefinition View, BoundParameters Parameters, bool Refresh);
