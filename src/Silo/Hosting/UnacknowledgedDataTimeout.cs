using System.Collections.Concurrent;
using System.Net.Sockets;
using System.Reflection;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Logging;
using Orleans.Runtime.Messaging;

namespace StatsCache.Hosting;

/// <summary>
/// Gives every Orleans connection (silo to silo, web host to gateway) a TCP user timeout of
/// <see cref="OrleansHostingOptions.DeadConnectionTimeout"/>: when what it sent stays unacknowledged that long, the kernel
/// closes it, and Orleans connects again.
/// </summary>
/// <remarks>
/// Without it a connection whose packets are lost (a partition) stays open: TCP retransmits with a back-off that doubles each
/// time, so after a 30 s partition its next try may come 20 s after the network healed, and the calls sent on it meanwhile
/// time out one after another. Worse, when only one direction is lost (a host that can send but receives nothing), the
/// connection still brings the peer's messages, so nothing above TCP can tell that what it sends is lost; only the missing
/// acknowledgements tell. A new connection works as soon as the network does.
/// Orleans exposes no socket to connection middleware, so the socket is found in its connection object by reflection;
/// when a later Orleans hides it, a warning says the timeout is not set (and the fault tests fail).
/// </remarks>
internal sealed partial class UnacknowledgedDataTimeout(TimeSpan timeout, ILogger<UnacknowledgedDataTimeout> logger) : IConnectionMiddleware
{
    private const int TcpUserTimeout = 18; // TCP_USER_TIMEOUT, linux/tcp.h

    private static readonly ConcurrentDictionary<Type, FieldInfo?> SocketFields = new();

    private readonly byte[] _milliseconds = BitConverter.GetBytes((uint)timeout.TotalMilliseconds);
    private int _warned;

    public Task OnConnectionAsync(ConnectionContext context, ConnectionDelegate next)
    {
        if (OperatingSystem.IsLinux())
        {
            var field = SocketFields.GetOrAdd(context.GetType(), static type =>
                type.GetFields(BindingFlags.Instance | BindingFlags.NonPublic).FirstOrDefault(f => f.FieldType == typeof(Socket)));
            if (field?.GetValue(context) is Socket socket)
            {
                socket.SetRawSocketOption((int)SocketOptionLevel.Tcp, TcpUserTimeout, _milliseconds);
            }
            else if (Interlocked.Exchange(ref _warned, 1) == 0)
            {
                LogNoSocket(logger, context.GetType().FullName ?? "?");
            }
        }

        return next(context);
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Orleans connections ({Type}) show no socket: Orleans:DeadConnectionTimeout is not applied, and a connection through a partition may take minutes to recover")]
    private static partial void LogNoSocket(ILogger logger, string type);
}
