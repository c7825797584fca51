using System.Globalization;
using System.Reflection;
using System.Text.Json;
using Microsoft.AspNetCore.Http.Metadata;
using Microsoft.Net.Http.Headers;
using StatsCache.Catalog;
using StatsCache.WebHost.Auth;

namespace StatsCache.WebHost.Api;

/// <summary>Writes a single read's answer: <c>{view, site, role, user, parameters, asOf, stale, data}</c>.</summary>
public sealed class SnapshotResult(Caller caller, ViewDefinition view, BoundParameters parameters, DashboardSnapshot snapshot, bool stale)
    : IResult, IStatusCodeHttpResult, IEndpointMetadataProvider
{
    // Cache-Control of each max-age up to an hour, made once: the header of every cached read.
    private static readonly string?[] CacheControls = new string?[3601];

    private readonly Caller _caller = caller;
    private readonly ViewDefinition _view = view;
    private readonly BoundParameters _parameters = parameters;
    private readonly DashboardSnapshot _snapshot = snapshot;
    private readonly bool _stale = stale;

    public int? StatusCode => StatusCodes.Status200OK;

    /// <summary>
    /// Sets the answer's <c>ETag</c> (weak, see <see cref="ViewAnswer.OpaqueTagOf"/>) and <c>Cache-Control</c> (private,
    /// for <paramref name="maxAge"/>), and says whether the request's <c>If-None-Match</c> already holds it, so the
    /// answer is <c>304</c>. Written as header strings rather than through the typed headers: this runs on every cached read.
    /// </summary>
    public static bool SetCacheHeaders(HttpContext context, string opaqueTag, TimeSpan maxAge)
    {
        var headers = context.Response.Headers;
        headers.ETag = "W/" + opaqueTag;
        var seconds = Math.Max(0, (long)Math.Ceiling(maxAge.TotalSeconds));
        headers.CacheControl = seconds < CacheControls.Length
            ? CacheControls[seconds] ??= CacheControlFor(seconds)
            : CacheControlFor(seconds);

        var ifNoneMatch = context.Request.Headers.IfNoneMatch;
        if (ifNoneMatch.Count == 0 || !EntityTagHeaderValue.TryParseList(ifNoneMatch, out var tags))
        {
            return false;
        }

        // Weak comparison (RFC 9110 13.1.2): the opaque tags match, whether either is weak or not.
        return tags.Any(tag => tag.Equals(EntityTagHeaderValue.Any) || tag.Tag.Equals(opaqueTag, StringComparison.Ordinal));
    }

    public Task ExecuteAsync(HttpContext httpContext)
    {
        var response = httpContext.Response;
        response.StatusCode = StatusCodes.Status200OK;
        response.ContentType = DashboardJson.ContentType;
        JsonBody.Write(response, this, static (json, answer) =>
        {
            json.WriteStartObject();
            json.WriteString(DashboardJson.View, answer._view.Name);
            json.WriteNumber(DashboardJson.Site, answer._caller.SiteId);
            json.WriteString(DashboardJson.Role, answer._caller.Role);
            json.WriteNumber(DashboardJson.User, answer._caller.UserId);
            DashboardJson.WriteAnswerFields(json, answer._view, answer._parameters, answer._snapshot, answer._stale);
            json.WriteEndObject();
        });
        return Task.CompletedTask;
    }

    private static string CacheControlFor(long seconds) => string.Create(CultureInfo.InvariantCulture, $"private, max-age={seconds}");

    public static void PopulateMetadata(MethodInfo method, EndpointBuilder builder) =>
        builder.Metadata.Add(new ProducesResponseTypeMetadata(StatusCodes.Status200OK, typeof(DashboardDocument), ["application/json"]));
}

/// <summary>The shape <see cref="SnapshotResult"/> writes, for the OpenAPI document.</summary>
public sealed record DashboardDocument(
    string View, long Site, string Role, long User, IReadOnlyDictionary<string, int> Parameters, DateTimeOffset AsOf, bool Stale, JsonElement Data);
