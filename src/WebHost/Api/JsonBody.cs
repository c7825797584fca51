using System.Buffers;
using System.Text.Json;

namespace StatsCache.WebHost.Api;

/// <summary>
/// Writes a JSON answer with its <c>Content-Length</c>: composed in a buffer and writer of this thread's, reused by every
/// answer it writes, then copied into the response in one piece, unflushed. Kestrel then sends headers and body in one
/// write when the request ends, without chunked framing; and an answer allocates no writer of its own. Writing must not
/// await (the buffer is this thread's): the answers' parts are all in memory by then.
/// </summary>
internal static class JsonBody
{
    // Most answers are a few hundred bytes to a few KB; a buffer grown past this by a large batch is let go afterwards.
    private const int KeptCapacity = 64 * 1024;

    [ThreadStatic]
    private static ArrayBufferWriter<byte>? t_buffer;

    [ThreadStatic]
    private static Utf8JsonWriter? t_json;

    public static void Write<TState>(HttpResponse response, TState state, Action<Utf8JsonWriter, TState> write)
    {
        var buffer = t_buffer ??= new ArrayBufferWriter<byte>(4096);
        var json = t_json ??= new Utf8JsonWriter(buffer);
        try
        {
            write(json, state);
            json.Flush();
            response.ContentLength = buffer.WrittenCount;
            response.BodyWriter.Write(buffer.WrittenSpan);
        }
        finally
        {
            json.Reset();
            buffer.ResetWrittenCount();
            if (buffer.Capacity > KeptCapacity)
            {
                (t_buffer, t_json) = (null, null);
            }
        }
    }
}
