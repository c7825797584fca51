using System.Reflection;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Http.Metadata;

namespace StatsCache.WebHost.Api;

/// <summary>
/// Writes a batch's answer: <c>{site, role, user, views: {name: slot, …}}</c>, the slots in request order
/// (<see cref="DashboardJson.WriteSlot"/>: the view's answer, or the problem a single read of it would have got).
/// </summary>
internal sealed class BatchResult(ViewRead[] reads, ViewAnswer[] answers) : IResult, IStatusCodeHttpResult, IEndpointMetadataProvider
{
    private readonly ViewRead[] _reads = reads;
    private readonly ViewAnswer[] _answers = answers;

    public int? StatusCode => StatusCodes.Status200OK;

    /// <summary>
    /// When every part answered: one weak <c>ETag</c> over the parts' tags and <c>Cache-Control: private, max-age</c> of
    /// the part refreshed soonest; says whether <c>If-None-Match</c> already holds it (304). A part without a snapshot
    /// makes the answer <c>no-store</c>: it should be asked again, not kept.
    /// </summary>
    public static bool SetCacheHeaders(HttpContext context, ViewRead[] reads, ViewAnswer[] answers)
    {
        if (!Array.TrueForAll(answers, a => a.Snapshot is not null))
        {
            context.Response.Headers.CacheControl = "no-store";
            return false;
        }

        // Stable across web hosts and restarts (not string.GetHashCode): any web host behind a balancer answers 304.
        var parts = new StringBuilder();
        var maxAge = TimeSpan.MaxValue;
        for (var i = 0; i < reads.Length; i++)
        {
            parts.Append(reads[i].View.Name).Append('?').Append(reads[i].Parameters.Key).Append('=')
                .Append(ViewAnswer.OpaqueTagOf(answers[i].Snapshot!, answers[i].Stale)).Append('\n');
            maxAge = answers[i].NextRefreshIn < maxAge ? answers[i].NextRefreshIn : maxAge;
        }

        var hash = SHA256.HashData(Encoding.UTF8.GetBytes(parts.ToString()));
        return SnapshotResult.SetCacheHeaders(context, $"\"{Convert.ToHexStringLower(hash.AsSpan(0, 16))}\"", maxAge);
    }

    public Task ExecuteAsync(HttpContext httpContext)
    {
        var response = httpContext.Response;
        response.StatusCode = StatusCodes.Status200OK;
        response.ContentType = DashboardJson.ContentType;
        JsonBody.Write(response, this, static (json, batch) =>
        {
            var caller = batch._reads[0].Caller;
            json.WriteStartObject();
            json.WriteNumber(DashboardJson.Site, caller.SiteId);
            json.WriteString(DashboardJson.Role, caller.Role);
            json.WriteNumber(DashboardJson.User, caller.UserId);
            json.WriteStartObject("views");
            for (var i = 0; i < batch._reads.Length; i++)
            {
                json.WritePropertyName(batch._reads[i].View.Name);
                DashboardJson.WriteSlot(json, batch._reads[i], batch._answers[i]);
            }

            json.WriteEndObject();
            json.WriteEndObject();
        });
        return Task.CompletedTask;
    }

    public static void PopulateMetadata(MethodInfo method, EndpointBuilder builder) =>
        builder.Metadata.Add(new ProducesResponseTypeMetadata(StatusCodes.Status200OK, typeof(BatchDocument), ["application/json"]));
}

/// <summary>The shape <see cref="BatchResult"/> writes, for the OpenAPI document.</summary>
public sealed record BatchDocument(long Site, string Role, long User, IReadOnlyDictionary<string, JsonElement> Views);
