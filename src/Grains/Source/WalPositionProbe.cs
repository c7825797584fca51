using Npgsql;
using NpgsqlTypes;

namespace StatsCache.Source;

/// <summary>A server's WAL position, and when (a <see cref="TimeProvider.GetTimestamp"/>) the query that read it was sent.</summary>
internal readonly record struct WalPosition(ulong Lsn, long ReadAt);

/// <summary>
/// Reads one server's WAL position: on the primary, where its WAL ends (<c>pg_current_wal_insert_lsn()</c>, past every
/// commit that returned, even an asynchronous one); on a replica, what its queries can see (<c>pg_last_wal_replay_lsn()</c>).
/// Reads are coalesced: however many loads ask for a position read after some moment, the server runs one query at a time,
/// and every asker of the next one shares it.
/// </summary>
internal sealed class WalPositionProbe(NpgsqlDataSource dataSource, bool isReplica, TimeProvider time, Action<WalPosition>? onRead = null)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(2);

    private readonly Lock _lock = new();
    private Task<WalPosition?>? _running;
    private long _runningSince;
    private Task<WalPosition?>? _next;

    /// <summary>The newest position read (null until one is).</summary>
    public WalPosition? Latest { get; private set; }

    /// <summary>Why the last read failed (null when it succeeded): the server is down, hung, or not what it should be.</summary>
    public Exception? Failure { get; private set; }

    /// <summary>A position read by a query sent at <paramref name="notBefore"/> or later; null when the server did not answer.</summary>
    public Task<WalPosition?> ReadAsync(long notBefore)
    {
        lock (_lock)
        {
            if (Latest is { } latest && latest.ReadAt >= notBefore)
            {
                return Task.FromResult<WalPosition?>(latest);
            }

            if (_running is not { IsCompleted: false } running)
            {
                return Start();
            }

            return _runningSince >= notBefore ? running : _next ??= AfterAsync(running);
        }
    }

    private async Task<WalPosition?> AfterAsync(Task running)
    {
        await Task.Yield(); // the caller holds the lock, and stores this task as the next read once it returns
        await running.ConfigureAwait(false);
        Task<WalPosition?> next;
        lock (_lock)
        {
            _next = null;
            next = Start();
        }

        return await next.ConfigureAwait(false);
    }

    private Task<WalPosition?> Start()
    {
        _runningSince = time.GetTimestamp();
        return _running = QueryAsync(_runningSince);
    }

    private async Task<WalPosition?> QueryAsync(long sentAt)
    {
        await Task.Yield(); // the caller holds the lock
        try
        {
            using var timeout = new CancellationTokenSource(Timeout, time);
            await using var command = dataSource.CreateCommand(isReplica
                ? "select pg_is_in_recovery(), pg_last_wal_replay_lsn()"
                : "select false, pg_current_wal_insert_lsn()");
            await using var reader = await command.ExecuteReaderAsync(timeout.Token).ConfigureAwait(false);
            await reader.ReadAsync(timeout.Token).ConfigureAwait(false);
            if (isReplica && !reader.GetBoolean(0))
            {
                throw new InvalidOperationException("The server is not in recovery: it is a primary (promoted, or listed by mistake), not a replica.");
            }

            var position = new WalPosition((ulong)reader.GetFieldValue<NpgsqlLogSequenceNumber>(1), sentAt);
            lock (_lock)
            {
                // Reads may overlap (a hung one, then the next): keep the newest position.
                if (Latest is not { } latest || latest.ReadAt < sentAt)
                {
                    Latest = position;
                    Failure = null;
                }
            }

            onRead?.Invoke(position);
            return position;
        }
        catch (Exception e)
        {
            lock (_lock)
            {
                Failure = e;
            }

            return null;
        }
    }
}
