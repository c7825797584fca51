using System.Buffers;
using System.Globalization;
using System.Reflection;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Http.Metadata;
using Microsoft.Extensions.Options;
using Microsoft.IdentityModel.JsonWebTokens;
using StatsCache.WebHost.Api;

namespace StatsCache.WebHost.Live;

/// <summary>
/// A live dashboard stream (<c>text/event-stream</c>): one event per view with its answer now, then one each time a
/// view's answer changes (event name: the view; <c>id</c>: its ETag; data: its batch slot), a comment heartbeat each
/// <see cref="LiveOptions.HeartbeatInterval"/>, and an <c>expired</c> event when the token expires (a stream never
/// outlives its token). It ends cleanly when the web host stops. Changes come from the grains' pushes through
/// <see cref="LiveEntries"/>; between them the stream holds no thread, only its wait.
/// </summary>
/// <remarks>
/// Written frame by frame rather than with <c>TypedResults.ServerSentEvents</c>: ASP.NET Core 10's server-sent events
/// result has no way to write a comment line, which is what a heartbeat is (dotnet/aspnetcore discussion 67133).
/// </remarks>
internal sealed class LiveStream(ViewRead[] reads) : IResult, IEndpointMetadataProvider
{
    private static readonly byte[] Heartbeat = ": heartbeat\n\n"u8.ToArray();
    private static readonly byte[] Expired = "event: expired\ndata: {\"title\":\"The bearer token has expired.\",\"status\":401}\n\n"u8.ToArray();

    // CancelAfter takes at most about 49 days; a token valid for longer is ended (as expired) after this.
    private static readonly TimeSpan LongestStream = TimeSpan.FromDays(30);

    public async Task ExecuteAsync(HttpContext httpContext)
    {
        var services = httpContext.RequestServices;
        var entries = services.GetRequiredService<LiveEntries>();
        var response = httpContext.Response;
        var stream = new LiveSubscriber(reads[0].Caller);
        switch (entries.TryOpen(stream))
        {
            case LiveOpening.CallerFull:
                await DashboardApi.TooFast(response, TimeSpan.FromSeconds(5),
                    $"At most {services.GetRequiredService<IOptions<LiveOptions>>().Value.MaxStreamsPerCaller} live streams can be open for one caller; close one first.")
                    .ExecuteAsync(httpContext);
                return;
            case LiveOpening.HostFull:
                response.Headers.RetryAfter = "5";
                await DashboardApi.Problem(StatusCodes.Status503ServiceUnavailable, "This web host holds as many live streams as it can.",
                    "Retry later, or through another web host.").ExecuteAsync(httpContext);
                return;
        }

        var lifetime = services.GetRequiredService<IHostApplicationLifetime>();
        using var ends = CancellationTokenSource.CreateLinkedTokenSource(httpContext.RequestAborted, lifetime.ApplicationStopping);
        try
        {
            var expiresIn = ExpiresIn(httpContext, services.GetRequiredService<TimeProvider>());
            ends.CancelAfter(expiresIn);

            response.StatusCode = StatusCodes.Status200OK;
            response.ContentType = "text/event-stream";
            response.Headers.CacheControl = "no-store";
            response.Headers["X-Accel-Buffering"] = "no"; // nginx: pass events on as they are written
            httpContext.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();

            var watched = new LiveEntry[reads.Length];
            for (var i = 0; i < reads.Length; i++)
            {
                watched[i] = entries.Watch(reads[i], stream);
            }

            // First events: an entry another stream already watches has its newest answer; otherwise one read that
            // watches it (and so also renews its watch from now on). The reads run together, as a batch's do, so the
            // first events come within one read's bound (ApiOptions.GrainRetryTimeout), not one per view.
            var reader = services.GetRequiredService<DashboardReader>();
            var asked = new Task<ViewAnswer>?[reads.Length];
            for (var i = 0; i < reads.Length; i++)
            {
                asked[i] = watched[i].CurrentFrame() is null
                    ? reader.AskGrainAsync(reads[i], watched[i].Key, watch: true, ends.Token).AsTask()
                    : null;
            }

            var sent = new string?[reads.Length];
            for (var i = 0; i < reads.Length; i++)
            {
                var frame = asked[i] is { } answer ? LiveFrame.Of(reads[i], await answer) : watched[i].CurrentFrame()!;
                sent[i] = await WriteAsync(response, frame, ends.Token);
            }

            while (true)
            {
                await stream.WaitAsync(ends.Token);
                for (var i = 0; i < reads.Length; i++)
                {
                    if (watched[i].CurrentFrame() is { } frame && frame.Tag != sent[i])
                    {
                        sent[i] = await WriteAsync(response, frame, ends.Token);
                    }
                }

                if (stream.TakeHeartbeat())
                {
                    await response.Body.WriteAsync(Heartbeat, ends.Token);
                    await response.Body.FlushAsync(ends.Token);
                }
            }
        }
        catch (OperationCanceledException) when (ends.IsCancellationRequested)
        {
            if (!httpContext.RequestAborted.IsCancellationRequested && !lifetime.ApplicationStopping.IsCancellationRequested)
            {
                // Neither the client nor the host ended it: the token's time is up.
                await response.Body.WriteAsync(Expired, CancellationToken.None);
            }
        }
        finally
        {
            entries.Close(stream);
        }
    }

    public static void PopulateMetadata(MethodInfo method, EndpointBuilder builder) =>
        builder.Metadata.Add(new ProducesResponseTypeMetadata(StatusCodes.Status200OK, typeof(string), ["text/event-stream"]));

    // The token's expiry ('exp', required by the authentication), from now; at most LongestStream.
    private static TimeSpan ExpiresIn(HttpContext context, TimeProvider time)
    {
        var exp = long.Parse(context.User.FindFirst(JwtRegisteredClaimNames.Exp)!.Value, NumberStyles.None, CultureInfo.InvariantCulture);
        var left = DateTimeOffset.FromUnixTimeSeconds(exp) - time.GetUtcNow();
        return left <= TimeSpan.Zero ? TimeSpan.Zero : left < LongestStream ? left : LongestStream;
    }

    private static async Task<string> WriteAsync(HttpResponse response, LiveFrame frame, CancellationToken cancellationToken)
    {
        await response.Body.WriteAsync(frame.Bytes, cancellationToken);
        await response.Body.FlushAsync(cancellationToken);
        return frame.Tag;
    }
}

/// <summary>
/// One view's event, encoded: <see cref="Tag"/> tells one answer from the next (its ETag, or empty without a snapshot).
/// Encoded once per answer of an entry (<see cref="LiveEntry.CurrentFrame"/>) however many streams show it.
/// </summary>
internal sealed class LiveFrame(DashboardResult? result, string tag, byte[] bytes)
{
    public DashboardResult? Result { get; } = result;

    public string Tag { get; } = tag;

    public byte[] Bytes { get; } = bytes;

    public static LiveFrame Of(in ViewRead read, DashboardResult result) => Of(read, ViewAnswer.Of(result), result);

    /// <summary>
    /// <c>event:</c> the view, <c>id:</c> its ETag, <c>data:</c> its slot. A view's data can hold line breaks (a
    /// <c>json</c> column is copied as stored), and each line break ends an SSE line: each line gets its own
    /// <c>data:</c> field, which the client joins back with line feeds, JSON whitespace either way.
    /// </summary>
    public static LiveFrame Of(in ViewRead read, in ViewAnswer answer, DashboardResult? result = null)
    {
        var tag = answer.Snapshot is { } snapshot ? "W/" + ViewAnswer.OpaqueTagOf(snapshot, answer.Stale) : "";
        var body = new ArrayBufferWriter<byte>(1024);
        using (var json = new Utf8JsonWriter(body))
        {
            DashboardJson.WriteSlot(json, read, answer);
        }

        var frame = new ArrayBufferWriter<byte>(body.WrittenCount + 128);
        Write(frame, $"event: {read.View.Name}\n");
        if (tag.Length > 0)
        {
            Write(frame, $"id: {tag}\n");
        }

        foreach (var line in Lines(body.WrittenMemory))
        {
            Write(frame, "data: ");
            frame.Write(line.Span);
            Write(frame, "\n");
        }

        Write(frame, "\n");
        return new LiveFrame(result, tag, frame.WrittenSpan.ToArray());
    }

    private static IEnumerable<ReadOnlyMemory<byte>> Lines(ReadOnlyMemory<byte> text)
    {
        while (true)
        {
            var end = text.Span.IndexOfAny((byte)'\r', (byte)'\n');
            if (end < 0)
            {
                yield return text;
                yield break;
            }

            yield return text[..end];
            text = text[(end + 1)..];
        }
    }

    private static void Write(ArrayBufferWriter<byte> frame, string text) => frame.Write(Encoding.UTF8.GetBytes(text));
}
