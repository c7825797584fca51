using System.Buffers;
using System.IO.Pipelines;
using System.Runtime.CompilerServices;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Logging;
using Orleans.Runtime.Messaging;

namespace StatsCache.Hosting;

/// <summary>
/// Drops a connection to a silo that has sent nothing back for <see cref="OrleansHostingOptions.ConnectionSilenceTimeout"/>
/// since this side last sent it something, so that Orleans connects again.
/// </summary>
/// <remarks>
/// Without it a connection whose packets are being lost (a partition, a cut cable) stays open: TCP retransmits with a
/// back-off that doubles each time, so after a 30 s partition its next try may come 20 s after the network healed, and the
/// calls sent on it meanwhile time out one after the other. A new connection works as soon as the network does. A silo
/// answers every call (reads are calls), and sends each web host it pushes to a heartbeat a second, so a healthy silo is
/// never silent that long while something is waiting on it.
/// </remarks>
internal sealed partial class SilentConnectionWatchdog(TimeSpan timeout, TimeProvider time, ILogger<SilentConnectionWatchdog> logger) : IConnectionMiddleware
{
    public async Task OnConnectionAsync(ConnectionContext context, ConnectionDelegate next)
    {
        var transport = new WatchedTransport(context.Transport, time);
        context.Transport = transport;
        var period = timeout / 4;
        await using var timer = time.CreateTimer(
            static state =>
            {
                var (watchdog, context, transport) = ((SilentConnectionWatchdog, ConnectionContext, WatchedTransport))state!;
                watchdog.Check(context, transport);
            },
            (this, context, transport), period, period);
        await next(context);
    }

    private void Check(ConnectionContext context, WatchedTransport transport)
    {
        var since = transport.UnansweredSince;
        if (since != 0 && time.GetElapsedTime(since) > timeout)
        {
            LogSilent(logger, context.RemoteEndPoint?.ToString() ?? "?", timeout.TotalSeconds);
            context.Abort(new ConnectionAbortedException($"The silo sent nothing for {timeout.TotalSeconds:F0} s after a message was sent to it."));
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Dropping the connection to {Endpoint}: nothing came back for {Seconds} s after a message was sent; connecting again")]
    private static partial void LogSilent(ILogger logger, string endpoint, double seconds);

    /// <summary>The connection's pipes, noting when bytes were last received and when the first bytes since then were sent.</summary>
    private sealed class WatchedTransport : IDuplexPipe
    {
        private readonly TimeProvider _time;
        private long _unansweredSince;

        public WatchedTransport(IDuplexPipe inner, TimeProvider time)
        {
            _time = time;
            Input = new Reader(inner.Input, this);
            Output = new Writer(inner.Output, this);
        }

        public PipeReader Input { get; }

        public PipeWriter Output { get; }

        /// <summary>The timestamp of the first send with nothing received since; 0 when everything sent has been answered.</summary>
        public long UnansweredSince => Volatile.Read(ref _unansweredSince);

        private void Received() => Volatile.Write(ref _unansweredSince, 0);

        private void Sent()
        {
            if (Volatile.Read(ref _unansweredSince) == 0)
            {
                Interlocked.CompareExchange(ref _unansweredSince, _time.GetTimestamp(), 0);
            }
        }

        private sealed class Reader(PipeReader inner, WatchedTransport owner) : PipeReader
        {
            public override void AdvanceTo(SequencePosition consumed) => inner.AdvanceTo(consumed);

            public override void AdvanceTo(SequencePosition consumed, SequencePosition examined) => inner.AdvanceTo(consumed, examined);

            public override void CancelPendingRead() => inner.CancelPendingRead();

            public override void Complete(Exception? exception = null) => inner.Complete(exception);

            [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
            public override async ValueTask<ReadResult> ReadAsync(CancellationToken cancellationToken = default)
            {
                // A read completes with bytes only when new ones arrived: Orleans examines everything it was given.
                var result = await inner.ReadAsync(cancellationToken);
                if (!result.Buffer.IsEmpty)
                {
                    owner.Received();
                }

                return result;
            }

            public override bool TryRead(out ReadResult result)
            {
                if (!inner.TryRead(out result))
                {
                    return false;
                }

                if (!result.Buffer.IsEmpty)
                {
                    owner.Received();
                }

                return true;
            }
        }

        private sealed class Writer(PipeWriter inner, WatchedTransport owner) : PipeWriter
        {
            public override void Advance(int bytes)
            {
                if (bytes > 0)
                {
                    owner.Sent();
                }

                inner.Advance(bytes);
            }

            public override void CancelPendingFlush() => inner.CancelPendingFlush();

            public override void Complete(Exception? exception = null) => inner.Complete(exception);

            public override ValueTask<FlushResult> FlushAsync(CancellationToken cancellationToken = default) => inner.FlushAsync(cancellationToken);

            public override Memory<byte> GetMemory(int sizeHint = 0) => inner.GetMemory(sizeHint);

            public override Span<byte> GetSpan(int sizeHint = 0) => inner.GetSpan(sizeHint);

            public override bool CanGetUnflushedBytes => inner.CanGetUnflushedBytes;

            public override long UnflushedBytes => inner.UnflushedBytes;
        }
    }
}
