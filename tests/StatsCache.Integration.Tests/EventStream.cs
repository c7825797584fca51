using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;

namespace StatsCache.Integration.Tests;

/// <summary>A test's reader of a <c>text/event-stream</c> answer, parsed as the HTML standard's EventSource does.</summary>
internal sealed class EventStream : IAsyncDisposable
{
    private readonly HttpResponseMessage _response;
    private readonly StreamReader _reader;

    private EventStream(HttpResponseMessage response, Stream body)
    {
        _response = response;
        _reader = new StreamReader(body, Encoding.UTF8);
    }

    public HttpResponseMessage Response => _response;

    /// <summary>Opens <paramref name="path"/>; the answer is returned as soon as its headers arrive.</summary>
    public static async Task<EventStream> OpenAsync(HttpClient http, string path)
    {
        var request = new HttpRequestMessage(HttpMethod.Get, path);
        request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("text/event-stream"));
        var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        return new EventStream(response, await response.Content.ReadAsStreamAsync());
    }

    /// <summary>The next event or comment; null when the stream ended. Fails after <paramref name="timeout"/> (default 5 s).</summary>
    public async Task<ServerEvent?> NextAsync(TimeSpan? timeout = null)
    {
        using var deadline = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(5));
        string? name = null, id = null;
        var data = new List<string>();
        while (true)
        {
            var line = await _reader.ReadLineAsync(deadline.Token);
            if (line is null)
            {
                return null;
            }

            if (line.Length == 0)
            {
                if (name is null && data.Count == 0)
                {
                    continue;
                }

                return new ServerEvent(name ?? "message", id, string.Join('\n', data), Comment: null);
            }

            if (line.StartsWith(':'))
            {
                if (name is null && data.Count == 0)
                {
                    _ = await _reader.ReadLineAsync(deadline.Token); // the comment's blank line
                    return new ServerEvent("", null, "", line[1..].Trim());
                }

                continue;
            }

            var colon = line.IndexOf(':');
            var field = colon < 0 ? line : line[..colon];
            var value = colon < 0 ? "" : line[(colon + 1)..].TrimStart(' ');
            switch (field)
            {
                case "event":
                    name = value;
                    break;
                case "id":
                    id = value;
                    break;
                case "data":
                    data.Add(value);
                    break;
            }
        }
    }

    /// <summary>The next event that is not a comment (and, given <paramref name="name"/>, has that name).</summary>
    public async Task<ServerEvent> NextEventAsync(TimeSpan? timeout = null, string? name = null)
    {
        while (true)
        {
            var next = await NextAsync(timeout) ?? throw new InvalidOperationException("The stream ended.");
            if (next.Comment is null && (name is null || next.Name == name))
            {
                return next;
            }
        }
    }

    public ValueTask DisposeAsync()
    {
        _reader.Dispose();
        _response.Dispose();
        return ValueTask.CompletedTask;
    }
}

/// <summary>One server-sent event (<see cref="Comment"/> set: a comment line instead).</summary>
internal sealed record ServerEvent(string Name, string? Id, string Data, string? Comment)
{
    public JsonElement Json => JsonDocument.Parse(Data).RootElement;
}
