using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;
using NpgsqlTypes;
using Npgsql.Replication;
using Npgsql.Replication.PgOutput;
using Npgsql.Replication.PgOutput.Messages;
using StatsCache.Catalog;

namespace StatsCache.Changes;

/// <summary>
/// The <see cref="ChangeSource.Replication"/> source: the cluster's one logical replication slot, streamed (<c>pgoutput</c>) by
/// whichever silo holds it. Every silo runs this service: one streams, the others check every
/// <see cref="ChangeFeedOptions.SlotRetryDuration"/> whether the slot is free and take it when its holder is gone.
/// The holder decodes each committed transaction's row changes into the sites and users they name (the catalog's
/// <c>tables</c>), coalesces them (<see cref="ChangeSet"/>), delivers them to every silo (<see cref="ChangeDelivery"/>) and
/// confirms a WAL position to PostgreSQL only once every silo has received the changes up to it: a restarted or new
/// holder resumes there, so nothing is lost and nothing but the missed changes is reloaded.
/// A holder that is alive but silent (hung, or cut off from PostgreSQL) would keep the slot until the server's
/// <c>wal_sender_timeout</c>: a standby that sees its WAL sender hear nothing from it for
/// <see cref="ChangeFeedOptions.HolderSilenceTimeout"/> ends that WAL sender and takes the slot.
/// </summary>
public sealed partial class ReplicationChangeFeed(
    IConfiguration configuration,
    NpgsqlDataSource dataSource,
    DashboardCatalog catalog,
    ChangeRouters routers,
    IClusterMembershipService membership,
    ILocalSiloDetails localSilo,
    ChangeFeedMetrics metrics,
    TimeProvider time,
    IOptions<ChangeFeedOptions> options,
    ILogger<ReplicationChangeFeed> logger) : BackgroundService
{
    // How long the holder gathers committed transactions into one delivery: under load one message per silo per interval
    // instead of one per transaction; against the grains' 250 ms debounce, no later to the eye.
    private static readonly TimeSpan FlushInterval = TimeSpan.FromMilliseconds(20);

    // How often the holder confirms what every silo received, and (every few of those) measures the slot's lag.
    private static readonly TimeSpan StatusInterval = TimeSpan.FromMilliseconds(250);
    private const int StatusesPerSlotQuery = 8;

    private readonly ChangeFeedOptions _options = options.Value;
    private readonly DashboardCatalog _catalog = catalog;
    private readonly ChangeRouters _routers = routers;
    private readonly IClusterMembershipService _membership = membership;
    private readonly ChangeFeedMetrics _metrics = metrics;
    private readonly TimeProvider _time = time;
    private readonly ILogger<ReplicationChangeFeed> _logger = logger;
    private Session? _session;

    // The slot's holder as this standby last saw it, and since when (this silo's clock) it has been that way.
    private HolderSighting? _sighting;
    private bool _warnedHiddenHolder;

    public override async Task StartAsync(CancellationToken cancellationToken)
    {
        // A database that cannot feed us stops start-up with what to do; one not reachable yet is checked again on connecting.
        try
        {
            await CheckDatabaseAsync(cancellationToken);
        }
        catch (NpgsqlException e)
        {
            LogCannotCheck(_logger, e);
        }

        await base.StartAsync(cancellationToken);
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        // Tell PostgreSQL what was delivered before the stream closes, so the next holder does not deliver it again.
        if (_session is { } session)
        {
            await session.ConfirmAsync(final: true);
        }

        await base.StopAsync(cancellationToken);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        // Deliveries go to the silos this one sees active: before it is active itself, it may see none.
        try
        {
            await foreach (var snapshot in _membership.MembershipUpdates.WithCancellation(stoppingToken))
            {
                if (snapshot.GetSiloStatus(localSilo.SiloAddress) == SiloStatus.Active)
                {
                    break;
                }
            }
        }
        catch (OperationCanceledException)
        {
            return;
        }

        var delay = TimeSpan.FromMilliseconds(100);
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                var slot = await SlotStateAsync(stoppingToken);
                if (slot is { ActivePid: not null, Lost: false } && !await EndedSilentHolderAsync(slot, stoppingToken))
                {
                    await Task.Delay(_options.SlotRetryDuration, _time, stoppingToken); // another silo holds it
                    continue;
                }

                _sighting = null;
                await CheckDatabaseAsync(stoppingToken);
                await StreamAsync(slot, stoppingToken);
                delay = TimeSpan.FromMilliseconds(100);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.ObjectInUse)
            {
                // Another silo started streaming the slot between our look and our start: stand by.
                await DelayAsync(_options.SlotRetryDuration, stoppingToken);
            }
            catch (InvalidOperationException e)
            {
                LogCannotStream(_logger, e.Message, _options.ReconnectMaxDuration);
                await DelayAsync(_options.ReconnectMaxDuration, stoppingToken);
            }
            catch (Exception e)
            {
                LogStreamFailed(_logger, e, delay);
                await DelayAsync(delay, stoppingToken);
                delay = delay * 2 < _options.ReconnectMaxDuration ? delay * 2 : _options.ReconnectMaxDuration;
            }
            finally
            {
                _metrics.Holding(false);
            }
        }
    }

    /// <summary>The message that stops start-up on a database whose <c>wal_level</c> is not <c>logical</c>.</summary>
    public static string WalLevelMessage(string walLevel) =>
        $"StatsCache:Changes:Source is Replication, which reads the WAL, but PostgreSQL runs with wal_level={walLevel}. " +
        "Set wal_level=logical (postgresql.conf, or ALTER SYSTEM, then restart PostgreSQL; on managed services see docs/freshness.md), " +
        "or set StatsCache:Changes:Source=Notify to use triggers instead.";

    private async Task CheckDatabaseAsync(CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand(
            "select current_setting('wal_level'), " +
            "array(select t.tablename::text from pg_publication_tables t where t.pubname = @publication and t.schemaname = current_schema()), " +
            "exists (select 1 from pg_publication where pubname = @publication)");
        command.Parameters.AddWithValue("publication", _options.PublicationName);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        await reader.ReadAsync(cancellationToken);
        var walLevel = reader.GetString(0);
        if (walLevel != "logical")
        {
            throw new InvalidOperationException(WalLevelMessage(walLevel));
        }

        var published = reader.GetFieldValue<string[]>(1);
        var missing = _catalog.Tables.Keys.Except(published, StringComparer.Ordinal).Order(StringComparer.Ordinal).ToList();
        if (!reader.GetBoolean(2) || missing.Count > 0)
        {
            throw new InvalidOperationException(
                $"The publication '{_options.PublicationName}' " + (reader.GetBoolean(2) ? $"does not publish {string.Join(", ", missing)}" : "does not exist") +
                ": run `webhost setup`, or have a DBA run the SQL of `webhost setup --print-sql`.");
        }

        await reader.CloseAsync();
        await CheckRoutingColumnsAsync(cancellationToken);
    }

    // Changes are routed by the declared site and user columns, read as integers: a catalog that names a column the table
    // does not have, or one of another type, would route nothing.
    private async Task CheckRoutingColumnsAsync(CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand(
            "select c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod) from pg_attribute a join pg_class c on c.oid = a.attrelid " +
            "where c.relnamespace = current_schema()::regnamespace and c.relname = any(@tables) and a.attnum > 0 and not a.attisdropped");
        command.Parameters.AddWithValue("tables", _catalog.Tables.Keys.ToArray());
        var types = new Dictionary<(string Table, string Column), string>();
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken))
        {
            while (await reader.ReadAsync(cancellationToken))
            {
                types[(reader.GetString(0), reader.GetString(1))] = reader.GetString(2);
            }
        }

        var wrong = _catalog.Tables.Values
            .SelectMany(t => t.UserColumns.Prepend(t.SiteColumn).Select(column => (t.Name, Column: column, Type: types.GetValueOrDefault((t.Name, column)))))
            .Where(x => x.Type is not ("smallint" or "integer" or "bigint"))
            .Select(x => x.Type is null ? $"{x.Name}.{x.Column} does not exist" : $"{x.Name}.{x.Column} is {x.Type}")
            .ToList();
        if (wrong.Count > 0)
        {
            throw new InvalidOperationException(
                $"The catalog's tables name site and user columns that must be integer columns of the database: {string.Join("; ", wrong)}.");
        }
    }

    // The slot, and the WAL sender streaming it: when it last heard from its client (reply_time, the client's clock; null
    // before the first status update, or when this role may not see it: pg_stat_replication shows others' details only to
    // pg_read_all_stats), and whether it waits on the client now. Waiting for WAL or to write, a WAL sender reads every reply
    // as it comes; busy decoding one large transaction, it reads them only every wal_sender_timeout/2, so a stale reply_time
    // means a silent client only while it waits.
    private async Task<SlotState?> SlotStateAsync(CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand(
            "select s.active_pid, s.wal_status = 'lost', pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn)::bigint, " +
            "r.reply_time, r.pid is not null and r.state is null, coalesce(a.wait_event_type = 'Client' or a.wait_event = 'WalSenderMain', false) " +
            "from pg_replication_slots s left join pg_stat_replication r on r.pid = s.active_pid left join pg_stat_activity a on a.pid = s.active_pid " +
            "where s.slot_name = @slot and s.database = current_database()");
        command.Parameters.AddWithValue("slot", _options.SlotName);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        return await reader.ReadAsync(cancellationToken)
            ? new SlotState(
                reader.IsDBNull(0) ? null : reader.GetInt32(0),
                !reader.IsDBNull(1) && reader.GetBoolean(1),
                reader.IsDBNull(2) ? null : reader.GetInt64(2),
                reader.IsDBNull(3) ? null : reader.GetFieldValue<DateTime>(3),
                !reader.IsDBNull(4) && reader.GetBoolean(4),
                reader.GetBoolean(5))
            : null;
    }

    /// <summary>
    /// On a standby that found the slot held: whether its holder has been silent for <see cref="ChangeFeedOptions.HolderSilenceTimeout"/>
    /// and this silo ended its WAL sender (the slot is then free to take). Silence is timed on this silo's clock, from the
    /// first look that saw the WAL sender's last reply as it is now, so clocks that disagree between machines do not matter.
    /// </summary>
    private async Task<bool> EndedSilentHolderAsync(SlotState slot, CancellationToken cancellationToken)
    {
        var pid = slot.ActivePid!.Value;
        if (slot.DetailsHidden)
        {
            if (!_warnedHiddenHolder)
            {
                _warnedHiddenHolder = true;
                LogHolderHidden(_logger, _options.SlotName);
            }

            return false;
        }

        var previous = _sighting;
        if (previous is null || previous.Pid != pid || previous.ReplyTime != slot.ReplyTime)
        {
            _sighting = new HolderSighting(pid, slot.ReplyTime, _time.GetTimestamp(), slot.WaitingOnClient);
            return false;
        }

        _sighting = previous with { WaitingOnClient = slot.WaitingOnClient };
        var silence = _time.GetElapsedTime(previous.Since);

        // Waiting on its client at two looks in a row: a reply that arrived between the two reads of one look is not missed.
        if (silence < _options.HolderSilenceTimeout || !slot.WaitingOnClient || !previous.WaitingOnClient)
        {
            return false;
        }

        // Only if that WAL sender still holds the slot and has still heard nothing; waits (up to 5 s) until it has exited.
        await using var command = dataSource.CreateCommand(
            "select pg_terminate_backend(s.active_pid, 5000) from pg_replication_slots s join pg_stat_replication r on r.pid = s.active_pid " +
            "where s.slot_name = @slot and s.database = current_database() and s.active_pid = @pid and r.reply_time is not distinct from @reply");
        command.Parameters.AddWithValue("slot", _options.SlotName);
        command.Parameters.AddWithValue("pid", pid);
        command.Parameters.Add(new NpgsqlParameter("reply", NpgsqlDbType.TimestampTz) { Value = (object?)slot.ReplyTime ?? DBNull.Value });
        try
        {
            if (await command.ExecuteScalarAsync(cancellationToken) is not true)
            {
                return false; // it spoke, or another silo ended it first: look again
            }
        }
        catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.InsufficientPrivilege)
        {
            LogCannotEndHolder(_logger, _options.SlotName, pid, e.MessageText);
            _sighting = null;
            return false;
        }

        LogEndedSilentHolder(_logger, _options.SlotName, pid, silence);
        _metrics.SilentHolderEnded();
        _sighting = null;
        return true;
    }

    private async Task StreamAsync(SlotState? slot, CancellationToken stoppingToken)
    {
        var connectionString = new NpgsqlConnectionStringBuilder(configuration.GetConnectionString(GrainServiceExtensions.StatsConnectionName))
        {
            ApplicationName = NotifyChangeFeed.ApplicationName,
        };
        await using var connection = new LogicalReplicationConnection(connectionString.ConnectionString)
        {
            // Often, so that a standby can tell a live holder from a silent one by its WAL sender's reply_time.
            WalReceiverStatusInterval = ChangeFeedOptions.StatusUpdateInterval,

            // A link that is gone: nothing from the server for this long ends the stream, and this silo reconnects (as a
            // standby, if another took the slot meanwhile). Half-way, Npgsql sends a status update that asks for a reply,
            // which an idle server answers at once; a server busy decoding one large transaction reads replies (and sends
            // its keepalive) only every wal_sender_timeout/2, so the bound is the server's own wal_sender_timeout.
            WalReceiverTimeout = await WalSenderTimeoutAsync(stoppingToken),
        };
        await connection.Open(stoppingToken);

        var refreshAll = false;
        if (slot is { Lost: true })
        {
            // WAL the slot needed is gone (max_slot_wal_keep_size): what it would have told us is lost, so everything held refreshes once.
            LogSlotInvalidated(_logger, _options.SlotName);
            _metrics.SlotInvalidated();
            await connection.DropReplicationSlot(_options.SlotName, cancellationToken: stoppingToken);
            slot = null;
        }

        if (slot is null)
        {
            try
            {
                await connection.CreatePgOutputReplicationSlot(_options.SlotName, slotSnapshotInitMode: LogicalSlotSnapshotInitMode.NoExport, cancellationToken: stoppingToken);
                LogSlotCreated(_logger, _options.SlotName);
                refreshAll = true; // entries held now may predate changes no slot kept (none when the cluster starts)
            }
            catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.DuplicateObject)
            {
                // Another silo created it first; try to stream it all the same.
            }
        }

        using var session = new Session(this, connection, stoppingToken);
        _session = session;
        try
        {
            if (refreshAll)
            {
                session.Delivery.Enqueue(ChangeBatch.Everything(lsn: 0));
            }

            await session.RunAsync();
        }
        finally
        {
            _session = null;
        }
    }

    // The server's wal_sender_timeout (60 s by default), or 60 s where it is off.
    private async Task<TimeSpan> WalSenderTimeoutAsync(CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand("select setting::integer from pg_settings where name = 'wal_sender_timeout'");
        return await command.ExecuteScalarAsync(cancellationToken) is int milliseconds && milliseconds > 0
            ? TimeSpan.FromMilliseconds(milliseconds)
            : TimeSpan.FromSeconds(60);
    }

    private async Task DelayAsync(TimeSpan delay, CancellationToken cancellationToken)
    {
        try
        {
            await Task.Delay(delay, _time, cancellationToken);
        }
        catch (OperationCanceledException)
        {
            // stopping: the loop ends
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Could not check the database for the change feed now; checking again when connecting")]
    private static partial void LogCannotCheck(ILogger logger, Exception exception);

    [LoggerMessage(Level = LogLevel.Error, Message = "The change feed cannot stream: {Reason} Trying again in {RetryIn}")]
    private static partial void LogCannotStream(ILogger logger, string reason, TimeSpan retryIn);

    [LoggerMessage(Level = LogLevel.Warning, Message = "The change feed's replication stream failed; trying again in {RetryIn}")]
    private static partial void LogStreamFailed(ILogger logger, Exception exception, TimeSpan retryIn);

    [LoggerMessage(Level = LogLevel.Warning,
        Message = "PostgreSQL invalidated replication slot {Slot} (WAL removed past max_slot_wal_keep_size): recreating it and refreshing every active entry once")]
    private static partial void LogSlotInvalidated(ILogger logger, string slot);

    [LoggerMessage(Level = LogLevel.Information, Message = "Created replication slot {Slot}")]
    private static partial void LogSlotCreated(ILogger logger, string slot);

    [LoggerMessage(Level = LogLevel.Information, Message = "This silo streams replication slot {Slot} from WAL position {Lsn}")]
    private static partial void LogHolding(ILogger logger, string slot, NpgsqlLogSequenceNumber lsn);

    [LoggerMessage(Level = LogLevel.Warning,
        Message = "Table {Table} sends changes without its old row (replica identity not FULL): its updates and deletes refresh the whole site; run `webhost setup`")]
    private static partial void LogNoOldRow(ILogger logger, string table);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Ignored a logical decoding message with prefix {Prefix} that is not a change notice")]
    private static partial void LogIgnoredMessage(ILogger logger, string prefix);

    [LoggerMessage(Level = LogLevel.Warning,
        Message = "The holder of replication slot {Slot} sent nothing for {Silence} (its WAL sender, pid {Pid}, waited on it): ended that WAL sender to take the slot")]
    private static partial void LogEndedSilentHolder(ILogger logger, string slot, int pid, TimeSpan silence);

    [LoggerMessage(Level = LogLevel.Warning,
        Message = "Cannot end the silent holder of replication slot {Slot} (WAL sender pid {Pid}): {Reason} Waiting for PostgreSQL's wal_sender_timeout instead")]
    private static partial void LogCannotEndHolder(ILogger logger, string slot, int pid, string reason);

    [LoggerMessage(Level = LogLevel.Warning,
        Message = "Cannot see when the holder of replication slot {Slot} last spoke (pg_stat_replication shows it only to pg_read_all_stats): " +
            "a hung holder keeps the slot until wal_sender_timeout; grant pg_read_all_stats to this role (see `webhost setup --print-sql`)")]
    private static partial void LogHolderHidden(ILogger logger, string slot);

    private sealed record SlotState(int? ActivePid, bool Lost, long? LagBytes, DateTime? ReplyTime, bool DetailsHidden, bool WaitingOnClient);

    private sealed record HolderSighting(int Pid, DateTime? ReplyTime, long Since, bool WaitingOnClient);

    /// <summary>A table's columns as the stream sends them, with the positions of the ones changes are routed by.</summary>
    private sealed class Relation(TableDefinition table, int siteColumn, int[] userColumns)
    {
        public TableDefinition Table { get; } = table;

        public int SiteColumn { get; } = siteColumn;

        /// <summary>For each column of the row, its index among the table's user columns, or -1.</summary>
        public int[] UserColumns { get; } = userColumns;

        public bool WarnedNoOldRow { get; set; }
    }

    /// <summary>One connection's stream of the slot: decoding, delivery and confirmation.</summary>
    private sealed class Session : IDisposable
    {
        private readonly ReplicationChangeFeed _feed;
        private readonly LogicalReplicationConnection _connection;
        private readonly CancellationTokenSource _stopping;
        private readonly ChangeSet _changes = new();
        private readonly Dictionary<uint, Relation?> _relations = [];
        private readonly Queue<(ulong Lsn, DateTime CommittedAt)> _unconfirmed = new();
        private readonly SemaphoreSlim _confirming = new(1, 1); // the status loop and the host's stop; never disposed, as either may still wait

        // Guards _changes between transactions, where the flush timer takes it; within one, only the stream touches it.
        private readonly Lock _flushing = new();
        private long _lastFlush;
        private bool _flushScheduled;
        private long[] _users = new long[8];
        private long _messages;
        private bool _inTransaction;
        private ulong _confirmed;
        private bool _held;

        public Session(ReplicationChangeFeed feed, LogicalReplicationConnection connection, CancellationToken stoppingToken)
        {
            _feed = feed;
            _connection = connection;
            _stopping = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
            Delivery = new ChangeDelivery(feed._routers, feed._membership, feed._logger);
        }

        public ChangeDelivery Delivery { get; }

        public async Task RunAsync()
        {
            var status = StatusLoopAsync();
            try
            {
                var options = new PgOutputReplicationOptions(_feed._options.PublicationName, PgOutputProtocolVersion.V1, binary: true, messages: true);
                await foreach (var message in _connection.StartReplication(new PgOutputReplicationSlot(_feed._options.SlotName), options, _stopping.Token))
                {
                    Interlocked.Increment(ref _messages);
                    await OnMessageAsync(message);
                }
            }
            finally
            {
                await _stopping.CancelAsync();
                Delivery.Stop();
                await status;
            }
        }

        private async ValueTask OnMessageAsync(PgOutputReplicationMessage message)
        {
            var token = _stopping.Token;
            switch (message)
            {
                case BeginMessage:
                    lock (_flushing)
                    {
                        _inTransaction = true;
                    }

                    break;
                case RelationMessage relation:
                    _relations[relation.RelationId] = Route(relation);
                    break;
                case InsertMessage insert when RouteOf(insert.Relation) is { } route:
                    await AddRowAsync(route, insert.NewRow, token);
                    break;
                case FullUpdateMessage update when RouteOf(update.Relation) is { } route:
                    await AddRowAsync(route, update.OldRow, token); // a row moved to another user or site concerns both
                    await AddRowAsync(route, update.NewRow, token);
                    break;
                case UpdateMessage update when RouteOf(update.Relation) is { } route:
                    await AddWithoutOldRowAsync(route, update.NewRow, token);
                    break;
                case FullDeleteMessage delete when RouteOf(delete.Relation) is { } route:
                    await AddRowAsync(route, delete.OldRow, token);
                    break;
                case KeyDeleteMessage delete when RouteOf(delete.Relation) is { } route:
                    await AddWithoutOldRowAsync(route, tuple: null, token);
                    break;
                case TruncateMessage truncate:
                    foreach (var relation in truncate.Relations)
                    {
                        if (_relations.GetValueOrDefault(relation.RelationId) is { } route)
                        {
                            _changes.AddTableOfEverySite(route.Table.Name);
                        }
                    }

                    break;
                case LogicalDecodingMessage { Prefix: ChangeNotice.MessagePrefix } decoding when (decoding.Flags & 1) == 1:
                    // A transactional message of the invalidation API: ordered with the commits around it.
                    using (var content = new MemoryStream())
                    {
                        await decoding.Data.CopyToAsync(content, token);
                        if (ChangeNotice.TryParse(content.GetBuffer().AsSpan(0, (int)content.Length)) is { } notice)
                        {
                            _changes.AddNotice(notice);
                        }
                        else
                        {
                            LogIgnoredMessage(_feed._logger, decoding.Prefix);
                        }
                    }

                    break;
                case CommitMessage commit:
                    OnCommit((ulong)commit.TransactionEndLsn, commit.TransactionCommitTimestamp);
                    break;
            }
        }

        // A transaction ended: its changes go out with the others of the flush interval, by the next commit or the timer.
        private void OnCommit(ulong end, DateTime committedAt)
        {
            _feed._metrics.Transaction();
            lock (_unconfirmed)
            {
                // Enough to time the lag: one commit in each tenth of a second.
                if (_unconfirmed.Count == 0 || committedAt - _unconfirmed.Last().CommittedAt > TimeSpan.FromMilliseconds(100))
                {
                    _unconfirmed.Enqueue((end, committedAt));
                }
            }

            lock (_flushing)
            {
                _changes.Advance(end);
                _inTransaction = false;
                if (_feed._time.GetElapsedTime(_lastFlush) >= FlushInterval)
                {
                    Flush();
                }
                else if (!_flushScheduled)
                {
                    _flushScheduled = true;
                    _ = FlushSoonAsync();
                }
            }
        }

        private async Task FlushSoonAsync()
        {
            try
            {
                await Task.Delay(FlushInterval, _feed._time, _stopping.Token);
            }
            catch (OperationCanceledException)
            {
                return; // the stream ended: what was not delivered is not confirmed, and comes again
            }

            lock (_flushing)
            {
                _flushScheduled = false;
                if (!_inTransaction)
                {
                    Flush(); // else the transaction's commit flushes
                }
            }
        }

        // Under _flushing, between transactions: hands what the set holds to the silos (or only its position, if nothing).
        private void Flush()
        {
            _lastFlush = _feed._time.GetTimestamp();
            if (_changes.IsEmpty)
            {
                Delivery.Advance(_changes.Lsn);
            }
            else
            {
                Delivery.Enqueue(_changes.TakeBatch());
            }
        }

        private Relation? Route(RelationMessage relation)
        {
            if (!_feed._catalog.Tables.TryGetValue(relation.RelationName, out var table))
            {
                return null; // published, but no view reads it
            }

            var site = -1;
            var users = new int[relation.Columns.Count];
            for (var i = 0; i < relation.Columns.Count; i++)
            {
                var name = relation.Columns[i].ColumnName;
                site = name == table.SiteColumn ? i : site;
                users[i] = table.UserColumns.IndexOf(name);
            }

            return new Relation(table, site, users);
        }

        // The routing of a row change's table, counting the change; null for a table no view reads.
        private Relation? RouteOf(RelationMessage relationMessage)
        {
            var relation = _relations.GetValueOrDefault(relationMessage.RelationId);
            if (relation is not null)
            {
                _feed._metrics.Row(relation.Table.Name);
            }

            return relation;
        }

        private async ValueTask AddRowAsync(Relation relation, ReplicationTuple tuple, CancellationToken cancellationToken)
        {
            long? site = null;
            var count = 0;
            var column = 0;
            await foreach (var value in tuple.WithCancellation(cancellationToken))
            {
                if (column == relation.SiteColumn)
                {
                    site = await ReadIdAsync(value, cancellationToken);
                }
                else if (relation.UserColumns[column] >= 0 && await ReadIdAsync(value, cancellationToken) is { } user)
                {
                    if (count == _users.Length)
                    {
                        Array.Resize(ref _users, count * 2);
                    }

                    _users[count++] = user;
                }

                column++;
            }

            if (site is { } siteId)
            {
                _changes.AddRow(relation.Table.Name, siteId, _users.AsSpan(0, count));
            }
        }

        // Without the old row (a replica identity other than FULL) nobody knows whose row it was: the table changed on every site.
        private async ValueTask AddWithoutOldRowAsync(Relation relation, ReplicationTuple? tuple, CancellationToken cancellationToken)
        {
            if (!relation.WarnedNoOldRow)
            {
                relation.WarnedNoOldRow = true;
                LogNoOldRow(_feed._logger, relation.Table.Name);
            }

            if (tuple is not null)
            {
                await foreach (var _ in tuple.WithCancellation(cancellationToken))
                {
                    // read past the row: tuples are read in order
                }
            }

            _changes.AddTableOfEverySite(relation.Table.Name);
        }

        private static async ValueTask<long?> ReadIdAsync(ReplicationValue value, CancellationToken cancellationToken) =>
            value.IsDBNull || value.IsUnchangedToastedValue
                ? null
                : await value.Get<long>(cancellationToken);

        private async Task StatusLoopAsync()
        {
            using var timer = new PeriodicTimer(StatusInterval, _feed._time);
            var ticks = 0;
            try
            {
                do
                {
                    await ConfirmAsync(final: false);

                    // Every tick until the stream is seen holding the slot (a takeover is reported at once), then now and then.
                    if (!_held || ++ticks % StatusesPerSlotQuery == 0)
                    {
                        await MeasureSlotAsync();
                    }
                }
                while (await timer.WaitForNextTickAsync(_stopping.Token));
            }
            catch (OperationCanceledException)
            {
                // the stream ended
            }
        }

        /// <summary>Confirms to PostgreSQL the WAL position every silo has received (see <see cref="ChangeDelivery.Confirmable"/>).</summary>
        public async Task ConfirmAsync(bool final)
        {
            await _confirming.WaitAsync();
            try
            {
                var confirmable = Delivery.Confirmable;

                // Between transactions, with everything flushed and delivered, the stream's position is safe too (the server's
                // keepalives move it past WAL of other tables), as long as no message arrived meanwhile: the one the stream may
                // hold back unread is then at most a Begin, whose transaction ends after that position.
                var messages = Interlocked.Read(ref _messages);
                bool between;
                lock (_flushing)
                {
                    between = !_inTransaction && _changes.IsEmpty;
                }

                if (between)
                {
                    var received = (ulong)_connection.LastReceivedLsn;
                    if (Delivery.IsIdle && Interlocked.Read(ref _messages) == messages)
                    {
                        confirmable = Math.Max(confirmable, received);
                    }
                }

                if (confirmable > _confirmed)
                {
                    _confirmed = confirmable;
                    _connection.SetReplicationStatus(new NpgsqlLogSequenceNumber(confirmable));
                    if (final)
                    {
                        await _connection.SendStatusUpdate(CancellationToken.None);
                    }
                }

                DateTime? oldest = null;
                lock (_unconfirmed)
                {
                    while (_unconfirmed.TryPeek(out var commit) && commit.Lsn <= _confirmed)
                    {
                        _unconfirmed.Dequeue();
                    }

                    oldest = _unconfirmed.TryPeek(out var first) ? first.CommittedAt : null;
                }

                _feed._metrics.LagSeconds(oldest is { } at ? _feed._time.GetUtcNow().UtcDateTime - at : TimeSpan.Zero);
            }
            catch (Exception e) when (e is InvalidOperationException or NpgsqlException or ObjectDisposedException)
            {
                // The stream is ending: the next holder starts from what was confirmed before.
            }
            finally
            {
                _confirming.Release();
            }
        }

        // The slot as PostgreSQL sees it: whether this connection is its reader (so this silo holds it), and the WAL it keeps.
        private async Task MeasureSlotAsync()
        {
            try
            {
                var slot = await _feed.SlotStateAsync(_stopping.Token);
                var held = slot?.ActivePid == _connection.ProcessID;
                if (held && !_held)
                {
                    LogHolding(_feed._logger, _feed._options.SlotName, new NpgsqlLogSequenceNumber(_confirmed));
                    _feed._metrics.TookOver();
                }

                _held = held;
                _feed._metrics.Holding(held);
                if (held && slot!.LagBytes is { } bytes)
                {
                    _feed._metrics.LagBytes(bytes);
                }
            }
            catch (Exception e) when (e is NpgsqlException or InvalidOperationException)
            {
                // measured again in a moment
            }
        }

        public void Dispose() => _stopping.Dispose();
    }
}
