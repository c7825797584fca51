using System.Globalization;
using System.Text.Json;
using StatsCache.Catalog;

namespace StatsCache.WebHost.Api;

/// <summary>
/// The JSON of one view's answer, shared by the single read, the batch's slots and the live events: the snapshot's
/// pre-serialised <c>data</c> bytes are copied as they are, so a cached read serialises only the envelope.
/// </summary>
internal static class DashboardJson
{
    public const string ContentType = "application/json; charset=utf-8";

    // The answer's property names, encoded once: written on every read.
    public static readonly JsonEncodedText View = JsonEncodedText.Encode("view");
    public static readonly JsonEncodedText Site = JsonEncodedText.Encode("site");
    public static readonly JsonEncodedText Role = JsonEncodedText.Encode("role");
    public static readonly JsonEncodedText User = JsonEncodedText.Encode("user");
    private static readonly JsonEncodedText Parameters = JsonEncodedText.Encode("parameters");
    private static readonly JsonEncodedText AsOf = JsonEncodedText.Encode("asOf");
    private static readonly JsonEncodedText Stale = JsonEncodedText.Encode("stale");
    private static readonly JsonEncodedText Data = JsonEncodedText.Encode("data");

    /// <summary><c>parameters</c>, <c>asOf</c>, <c>stale</c> and <c>data</c> of an answered read, into the open object.</summary>
    public static void WriteAnswerFields(Utf8JsonWriter json, ViewDefinition view, BoundParameters parameters, DashboardSnapshot snapshot, bool stale)
    {
        json.WriteStartObject(Parameters);
        for (var i = 0; i < view.Parameters.Length; i++)
        {
            json.WriteNumber(view.Parameters[i].Name, parameters.Values[i]);
        }

        json.WriteEndObject();
        json.WriteString(AsOf, snapshot.AsOf.UtcDateTime);
        json.WriteBoolean(Stale, stale);
        json.WritePropertyName(Data);
        json.WriteRawValue(snapshot.Data, skipInputValidation: true);
    }

    /// <summary>
    /// One view's slot in a batch or live event: <c>{view, parameters, asOf, stale, data}</c>, or, when the read got no
    /// snapshot, the problem details a single read would have answered (<c>{view, title, status, detail, retryAfter}</c>).
    /// </summary>
    public static void WriteSlot(Utf8JsonWriter json, in ViewRead read, in ViewAnswer answer)
    {
        json.WriteStartObject();
        json.WriteString(View, read.View.Name);
        if (answer.Snapshot is { } snapshot)
        {
            WriteAnswerFields(json, read.View, read.Parameters, snapshot, answer.Stale);
        }
        else
        {
            var (status, title, detail) = answer.Problem(read.View.Name);
            json.WriteString("title", title);
            json.WriteNumber("status", status);
            json.WriteString("detail", detail);
            json.WriteNumber("retryAfter", RetryAfterSeconds(answer.NextRefreshIn));
        }

        json.WriteEndObject();
    }

    /// <summary>Whole seconds, at least one (a Retry-After of 0 invites an immediate retry).</summary>
    public static int RetryAfterSeconds(TimeSpan retryAfter) => Math.Max(1, (int)Math.Ceiling(retryAfter.TotalSeconds));

    public static string RetryAfterHeader(TimeSpan retryAfter) => RetryAfterSeconds(retryAfter).ToString(CultureInfo.InvariantCulture);
}
