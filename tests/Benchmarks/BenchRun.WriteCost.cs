using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Npgsql;
using StatsCache.Changes;
using StatsCache.WebHost.Auth;
using StatsCache.WebHost.Setup;

namespace StatsCache.Benchmarks;

public sealed partial class BenchRun
{
    /// <summary>At the head of every statement this scenario runs itself (pgbench's included), so pg_stat_statements can leave them out.</summary>
    private const string WriteCostMarker = "/* writecost */";

    /// <summary>The issue's bulk update, as the platform would run it: one statement.</summary>
    private const string BulkUpdateSql = "update orders set price = price + 0.01 where website_id in (1, 2)";

    private static readonly int[] WriteCostConnections = [1, 16, 64];

    private static readonly string[] WriteCostWorkloads = ["insert", "mix"];

    // Replication / detached at 16 and 64 connections; the bulk update's time with the slot streamed.
    private const double WriteCostTpsGoal = 0.9;
    private const double WriteCostBulkGoal = 1.5;

    // The feed catches up within this after a pgbench run or the bulk update, or the turn goes on and says so.
    private static readonly TimeSpan CatchUpWithin = TimeSpan.FromSeconds(60);

    /// <summary>What the platform's database has of StatsCache in a turn, and who reads it.</summary>
    private enum Attachment
    {
        /// <summary>Nothing: no slot, publication or trigger, no StatsCache process.</summary>
        Detached,

        /// <summary>The triggers, and a co-hosted host LISTENing.</summary>
        Notify,

        /// <summary>The publication (replica identity FULL), and a co-hosted host streaming its slot.</summary>
        Replication,

        /// <summary>As <see cref="Replication"/>, but the slot streamed by pg_recvlogical to /dev/null (BENCH_WRITECOST_RECVLOGICAL=1).</summary>
        RecvLogical,
    }

    /// <summary>Where the demo data puts each site's clients: user (site − 1) × <c>UsersPerSite</c> + <c>FirstClient</c>..<c>LastClient</c>.</summary>
    private sealed record ClientLayout(int Sites, long UsersPerSite, long FirstClient, long LastClient);

    /// <summary>One configuration's turn in one round.</summary>
    private sealed class WriteCostTurn(Attachment attachment, int round)
    {
        public Attachment Attachment { get; } = attachment;

        public int Round { get; } = round;

        /// <summary>Transactions per second by workload and connections ("insert/16").</summary>
        public Dictionary<string, double> Tps { get; } = [];

        public long BulkRows { get; set; }

        public double BulkSeconds { get; set; }

        /// <summary>Replication: seconds from the bulk update's commit until the slot confirmed it (null: not within <see cref="CatchUpWithin"/>).</summary>
        public double? BulkCaughtUpSeconds { get; set; }

        /// <summary>Replication: the WAL the slot retained as each pgbench run ended ("insert/16"), and the seconds it took to confirm it all.</summary>
        public Dictionary<string, (long Bytes, double? CaughtUpSeconds)> Retained { get; } = [];

        /// <summary>Replication: the WAL the slot retained at the end of the turn (as its last pgbench run ended).</summary>
        public long? RetainedAtEnd { get; set; }

        /// <summary>Calls of the statements other than this scenario's, by label (a view's load is named by its marker).</summary>
        public Dictionary<string, long> Statements { get; } = [];

        /// <summary>CPU seconds during the pgbench runs: the feed's server process (LISTEN backend or WAL sender), its consumer (the host, or pg_recvlogical).</summary>
        public double? FeedServerCpuSeconds { get; set; }

        public double? HostCpuSeconds { get; set; }

        /// <summary>CPU seconds the machine spent during the pgbench runs on processes neither this run's PostgreSQL nor the driver's (another engineer's build, say).</summary>
        public double? OthersCpuSeconds { get; set; }

        public JsonObject Extra { get; } = [];

        /// <summary>Seconds of each part of the turn (the switch, the host's start, the writes, the stop), as <see cref="Lap"/> marked them.</summary>
        public Dictionary<string, double> Phases { get; } = [];

        private readonly Stopwatch _clock = Stopwatch.StartNew();

        public void Lap(string phase)
        {
            Phases[phase] = Math.Round(_clock.Elapsed.TotalSeconds, 1);
            _clock.Restart();
        }
    }

    // ---------------------------------------------------------------- writecost
    /// <summary>
    /// What the platform's own database feels of StatsCache: its write throughput (pgbench, custom scripts in this run's
    /// database) with nothing of StatsCache (detached), with the Notify source's triggers and a host LISTENing, and with the
    /// Replication source's publication and a host streaming its slot, the configurations taking turns over
    /// <see cref="BenchEnvironment.WriteCostRounds"/> rounds. Each turn: the database switched with the setup SQL while no
    /// StatsCache process runs, the host started and a few entries cached, the issue's bulk update timed, then inserts and
    /// a mix of inserts, updates and deletes at 1, 16 and 64 connections. Reports medians, ratios to detached, the WAL the
    /// slot retained, and the statements the writes made the database run besides pgbench's (pg_stat_statements).
    /// </summary>
    public async Task WriteCostAsync()
    {
        await StopAllHostsAsync(); // no StatsCache process may run while the database is switched, nor share the cores
        var pgbench = PgbenchPath();
        var layout = await ClientLayoutAsync();
        var baseline = await MaxOrderIdAsync();
        var (insertScript, mixScript) = WritePgbenchScripts();
        var slot = SlotFor("writecost");
        var seconds = _env.WriteCostSeconds;
        // Five clients of each site, spread over its clients: the demo's first clients have most of the orders (a random
        // order's update would concern them far more often than 5 in 700), these have a typical share.
        var cachedClients = Clients.GroupBy(c => c.SiteId).SelectMany(g => Enumerable.Range(0, 5).Select(i => g.ElementAt(g.Count() * (2 * i + 1) / 10))).ToList();
        var cachedAdmin = await AdminOfSiteAsync(1);
        Console.WriteLine($"   {_env.WriteCostRounds} rounds of detached, Notify, Replication{(_env.WriteCostRecvLogical ? ", pg_recvlogical" : "")}, commits durable; pgbench {seconds} s per run: inserts and the mix at "
            + $"{string.Join(", ", WriteCostConnections)} connections over {layout.Sites} sites' clients; attached hosts hold {cachedClients.Count} "
            + $"clients' {Driver.HitView} and site 1's admin's {AdminView}");

        Attachment[] attachments = _env.WriteCostRecvLogical
            ? [Attachment.Detached, Attachment.Notify, Attachment.Replication, Attachment.RecvLogical]
            : [Attachment.Detached, Attachment.Notify, Attachment.Replication];
        var turns = new List<WriteCostTurn>();
        var started = Stopwatch.StartNew();
        // The platform's server commits durably (PostgreSQL's defaults): a commit waits for its WAL's flush, which the
        // Notify source's commit lock serializes, and the WAL sender hears of each commit as it is flushed. The rest of
        // the benchmark runs without (a throwaway server); its settings are put back after.
        var throwaway = await SetServerSettingsAsync(DurabilitySettings.ToDictionary(name => name, _ => "on"));
        try
        {
            for (var round = 1; round <= _env.WriteCostRounds; round++)
            {
                foreach (var attachment in attachments)
                {
                    var turn = new WriteCostTurn(attachment, round);
                    await SwitchDatabaseAsync(attachment, slot, baseline, turn.Lap);
                    try
                    {
                        await WriteCostTurnAsync(turn, pgbench, insertScript, mixScript, layout, baseline, slot, cachedClients, cachedAdmin);
                    }
                    finally
                    {
                        await StopAllHostsAsync();
                        turn.Lap("stop");
                    }

                    turns.Add(turn);
                    Console.WriteLine($"   round {round}, {Name(attachment)}: " + string.Join(", ", turn.Tps.Select(t => $"{t.Key} {t.Value:N0}"))
                        + $"; bulk {turn.BulkRows:N0} rows {turn.BulkSeconds:F2} s"
                        + (turn.RetainedAtEnd is { } retained ? $"; retained {Bytes(retained)}" : "")
                        + (turn.OthersCpuSeconds is { } others ? $"; other processes {others:F1} CPU s" : "")
                        + $" (seconds: {string.Join(", ", turn.Phases.Select(p => $"{p.Key} {p.Value:F1}"))})");
                }
            }
        }
        finally
        {
            // Leave the database as bench.sh set it up: the default source's publication, no slot, none of these rows.
            await SwitchDatabaseAsync(Attachment.Detached, slot, baseline, _ => { });
            await DatabaseSetup.ApplySchemaAsync(_db, null, new ChangeFeedSchema(Catalog, new ChangeFeedOptions()));
            await SetServerSettingsAsync(throwaway);
        }

        AddWriteCostRows(turns, started.Elapsed.TotalSeconds);
    }

    /// <summary>
    /// With no StatsCache process running: removes the change feed's slot, publication and triggers (<c>setup --remove-changes</c>),
    /// deletes the orders earlier turns added, vacuums and checkpoints (every turn starts from the same table, and no timed
    /// checkpoint falls inside one), then applies the setup SQL of <paramref name="attachment"/>'s source.
    /// </summary>
    private async Task SwitchDatabaseAsync(Attachment attachment, string slot, long baseline, Action<string> lap)
    {
        var source = attachment == Attachment.Notify ? ChangeSource.Notify : ChangeSource.Replication;
        var schema = new ChangeFeedSchema(Catalog, new ChangeFeedOptions { Source = source, SlotName = slot });
        await DatabaseSetup.RemoveChangesAsync(_db, schema);
        await CheckDetachedAsync();
        lap("remove");

        await using (var delete = _db.CreateCommand($"{WriteCostMarker} delete from orders where id > @baseline"))
        {
            delete.Parameters.AddWithValue("baseline", baseline);
            delete.CommandTimeout = 600;
            await delete.ExecuteNonQueryAsync();
        }

        lap("delete");
        foreach (var sql in new[] { "vacuum (analyze) orders", "checkpoint" })
        {
            await using var command = _db.CreateCommand($"{WriteCostMarker} {sql}");
            command.CommandTimeout = 600;
            await command.ExecuteNonQueryAsync();
            lap(sql.Split(' ')[0]);
        }

        if (attachment != Attachment.Detached)
        {
            await DatabaseSetup.ApplySchemaAsync(_db, null, schema);
            lap("apply");
        }
    }

    private static readonly string[] DurabilitySettings = ["fsync", "synchronous_commit", "full_page_writes"];

    /// <summary>
    /// Sets server settings (ALTER SYSTEM, then a reload) and waits until a connection sees them; returns their values before.
    /// bench.sh gives the server its settings in postgresql.auto.conf: one given on the command line no reload can change.
    /// </summary>
    private async Task<Dictionary<string, string>> SetServerSettingsAsync(IReadOnlyDictionary<string, string> settings)
    {
        var before = new Dictionary<string, string>();
        await using (var read = _db.CreateCommand("select name, setting, source from pg_settings where name = any(@names)"))
        {
            read.Parameters.AddWithValue("names", settings.Keys.ToArray());
            await using var reader = await read.ExecuteReaderAsync();
            while (await reader.ReadAsync())
            {
                if (reader.GetString(2) == "command line")
                {
                    throw new InvalidOperationException($"PostgreSQL has {reader.GetString(0)} from its command line, where no reload changes it: start it as bench.sh does.");
                }

                before[reader.GetString(0)] = reader.GetString(1);
            }
        }

        foreach (var (name, value) in settings)
        {
            // Names from DurabilitySettings, values 'on' or 'off' (or what pg_settings said): nothing to quote.
            await using var alter = _db.CreateCommand($"alter system set {name} = '{value}'");
            await alter.ExecuteNonQueryAsync();
        }

        await using (var reload = _db.CreateCommand("select pg_reload_conf()"))
        {
            await reload.ExecuteNonQueryAsync();
        }

        var deadline = Stopwatch.StartNew();
        while (true)
        {
            await using var connection = await _db.OpenConnectionAsync();
            await using var command = new NpgsqlCommand(
                "select count(*) from pg_settings s join unnest(@names, @values) as w(name, setting) using (name) where s.setting <> w.setting", connection);
            command.Parameters.AddWithValue("names", settings.Keys.ToArray());
            command.Parameters.AddWithValue("values", settings.Values.ToArray());
            if ((long)(await command.ExecuteScalarAsync())! == 0)
            {
                return before;
            }

            if (deadline.Elapsed > TimeSpan.FromSeconds(10))
            {
                throw new InvalidOperationException($"PostgreSQL did not take {string.Join(", ", settings.Select(s => $"{s.Key}={s.Value}"))} within 10 s of a reload.");
            }

            await Task.Delay(TimeSpan.FromMilliseconds(100));
        }
    }

    /// <summary>Throws unless the database holds nothing of StatsCache's change feed: no slot, no publication, no trigger on a table the views read.</summary>
    private async Task CheckDetachedAsync()
    {
        await using var command = _db.CreateCommand(
            $"{WriteCostMarker} select (select count(*) from pg_replication_slots where database = current_database()), "
            + "(select count(*) from pg_publication), "
            + "(select count(*) from pg_trigger where not tgisinternal and tgrelid = any(@tables::regclass[]))");
        command.Parameters.AddWithValue("tables", Catalog.Tables.Keys.ToArray());
        await using var reader = await command.ExecuteReaderAsync();
        await reader.ReadAsync();
        if (reader.GetInt64(0) + reader.GetInt64(1) + reader.GetInt64(2) > 0)
        {
            throw new InvalidOperationException(
                $"After removing the change feed the database still has {reader.GetInt64(0)} slots, {reader.GetInt64(1)} publications, {reader.GetInt64(2)} triggers.");
        }
    }

    private async Task WriteCostTurnAsync(
        WriteCostTurn turn, string pgbench, string insertScript, string mixScript, ClientLayout layout, long baseline, string slot,
        List<Caller> cachedClients, Caller cachedAdmin)
    {
        SlotFor("writecost"); // remembered again for StopAllHostsAsync to drop (it forgets the slots it dropped)
        HttpHost? host = null;
        ChildProcess? consumer = null; // the process reading the change feed: the host, or pg_recvlogical
        int? feedPid = null;
        var streams = turn.Attachment is Attachment.Replication or Attachment.RecvLogical;
        if (turn.Attachment is Attachment.Notify or Attachment.Replication)
        {
            host = await StartCoHostedAsync($"writecost-{turn.Attachment.ToString().ToLowerInvariant()}-{turn.Round}", new Dictionary<string, string>
            {
                ["StatsCache__Changes__Source"] = turn.Attachment.ToString(),
                [SlotNameKey] = slot,
                // The feed's own account of itself: the slot created, held, lost.
                ["Logging__LogLevel__StatsCache.Changes"] = "Information",
            });
            consumer = host.Process;
            feedPid = streams ? await SlotReaderAsync(consumer, slot) : await ListenerAsync(consumer);

            // A few entries cached, as on a live site: the feed routes real invalidations, while most writes concern users with nothing cached.
            foreach (var client in cachedClients)
            {
                await ReadAsAsync(host, $"/api/dashboards/{Driver.HitView}", client);
            }

            await ReadAsAsync(host, $"/api/dashboards/{AdminView}", cachedAdmin);
            turn.Lap("host");
        }
        else if (turn.Attachment == Attachment.RecvLogical)
        {
            consumer = StartRecvLogical(slot, turn.Round);
            feedPid = await SlotReaderAsync(consumer, slot);
            turn.Lap("pg_recvlogical");
        }

        await ResetDatabaseLoadsAsync();

        // The bulk update first, on the same table every turn (the rows the writes below add are not in it).
        var bulk = Stopwatch.StartNew();
        await using (var update = _db.CreateCommand($"{WriteCostMarker} {BulkUpdateSql}"))
        {
            update.CommandTimeout = 600;
            turn.BulkRows = await update.ExecuteNonQueryAsync();
        }

        turn.BulkSeconds = bulk.Elapsed.TotalSeconds;
        if (streams)
        {
            // The writes below measure the steady state, not the consumer still decoding the bulk update beside them.
            turn.BulkCaughtUpSeconds = (await SlotCatchUpAsync(consumer!, slot)).CaughtUpSeconds;
        }

        turn.Lap("bulk");
        var feedCpu = CpuSeconds(feedPid);
        var consumerCpu = CpuSeconds(consumer?.Id);
        var postmaster = await PostmasterPidAsync();
        var othersCpu = OtherProcessesCpuSeconds(postmaster);
        foreach (var workload in WriteCostWorkloads)
        {
            foreach (var connections in WriteCostConnections)
            {
                var key = $"{workload}/{connections}";
                var variables = new Dictionary<string, string>
                {
                    ["sites"] = layout.Sites.ToString(Inv),
                    ["users_per_site"] = layout.UsersPerSite.ToString(Inv),
                    ["first_client"] = layout.FirstClient.ToString(Inv),
                    ["last_client"] = layout.LastClient.ToString(Inv),
                    ["demo_orders"] = baseline.ToString(Inv),
                    // The mix deletes only rows it inserted itself, oldest first: the table's size stays where it was.
                    ["mix_from"] = (await MaxOrderIdAsync()).ToString(Inv),
                };
                turn.Tps[key] = await PgbenchAsync(pgbench, workload == "insert" ? insertScript : mixScript, connections, _env.WriteCostSeconds, variables);
                if (streams)
                {
                    // As the run ends, then caught up before the next, so a lagging consumer does not take the next run's cores.
                    var (retained, caughtUp) = await SlotCatchUpAsync(consumer!, slot);
                    turn.Retained[key] = (retained, caughtUp);
                    turn.RetainedAtEnd = retained;
                }
            }
        }

        turn.Lap("pgbench");
        turn.FeedServerCpuSeconds = CpuSeconds(feedPid) - feedCpu;
        turn.HostCpuSeconds = CpuSeconds(consumer?.Id) - consumerCpu;
        turn.OthersCpuSeconds = OtherProcessesCpuSeconds(postmaster) - othersCpu;
        await ReadStatementsAsync(turn);
        if (streams)
        {
            // The same WAL sender from the start to the end, or the consumer lost the slot (or its connection) meanwhile.
            var reader = await SlotReaderAsync(consumer!, slot);
            if (reader != feedPid)
            {
                Console.WriteLine($"   the WAL sender of slot {slot} changed during the turn (pid {feedPid} → {reader}); see {consumer!.LogPath}");
            }

            turn.Extra["slot"] = await SlotStatusAsync(slot);
            turn.Extra["replication"] = await RowAsJsonAsync(
                "select application_name, state, pg_wal_lsn_diff(sent_lsn, flush_lsn)::bigint as sent_not_flushed, write_lag::text, flush_lag::text "
                + "from pg_stat_replication where pid = @name::int", feedPid?.ToString(Inv));
        }
        else if (turn.Attachment == Attachment.Notify)
        {
            turn.Extra["notificationQueueUsage"] = await RowAsJsonAsync("select pg_notification_queue_usage() as usage", null);
        }

        if (host is not null)
        {
            turn.Extra["feedMetrics"] = await FeedMetricsAsync(host);
        }

        turn.Lap("statistics");
    }

    /// <summary>
    /// PostgreSQL's own logical replication client streaming <paramref name="slot"/> (created if missing) to /dev/null, confirming
    /// every second: what the WAL sender costs the database with a consumer that costs next to nothing, beside StatsCache's.
    /// </summary>
    private ChildProcess StartRecvLogical(string slot, int round)
    {
        var connection = new NpgsqlConnectionStringBuilder(_env.ConnectionString);
        var program = Environment.GetEnvironmentVariable("PGBIN") is { Length: > 0 } bin && File.Exists(Path.Combine(bin, "pg_recvlogical"))
            ? Path.Combine(bin, "pg_recvlogical")
            : "pg_recvlogical";
        var environment = new Dictionary<string, string>();
        if (connection.Password is { Length: > 0 } password)
        {
            environment["PGPASSWORD"] = password;
        }

        return Track(ChildProcess.StartProgram($"writecost-pg_recvlogical-{round}", program,
        [
            "-h", connection.Host ?? "127.0.0.1", "-p", connection.Port.ToString(Inv), "-U", connection.Username ?? "postgres",
            "-d", connection.Database ?? "postgres", "-S", slot, "--create-slot", "--if-not-exists", "-P", "pgoutput",
            "--start", "-o", "proto_version=1", "-o", $"publication_names={new ChangeFeedOptions().PublicationName}",
            "-f", "/dev/null", "-F", "0", "-s", "1",
        ], environment, _env.WorkFolder, _env.WorkFolder));
    }

    // ---------------------------------------------------------------- pgbench

    /// <summary>PostgreSQL's pgbench of the server bench.sh runs ($PGBIN), else the one on PATH.</summary>
    private static string PgbenchPath() =>
        Environment.GetEnvironmentVariable("PGBIN") is { Length: > 0 } bin && File.Exists(Path.Combine(bin, "pgbench"))
            ? Path.Combine(bin, "pgbench")
            : "pgbench";

    /// <summary>
    /// The two workloads as pgbench scripts, one statement per transaction (Django's autocommit): (a) a new pending order for a
    /// random client of a random site; (b) a quarter each of such inserts, deletes of the rows the mix inserted (oldest first),
    /// status updates and price updates of a random demo order.
    /// </summary>
    private (string Insert, string Mix) WritePgbenchScripts()
    {
        const string pick = """
            \set site random(1, :sites)
            \set client (:site - 1) * :users_per_site + random(:first_client, :last_client)
            \set pages random(1, 20)
            """;
        const string insert = $"""
            {WriteCostMarker} insert into orders (website_id, client_id, status, price, pages, deadline)
                values (:site, :client, 'pending', :pages * 15, :pages, now() + interval '7 days');
            """;
        var insertPath = Path.Combine(_env.WorkFolder, "writecost-insert.sql");
        File.WriteAllText(insertPath, $"{pick}\n{insert}\n");
        var mixPath = Path.Combine(_env.WorkFolder, "writecost-mix.sql");
        File.WriteAllText(mixPath, $$"""
            \set operation random(1, 4)
            {{pick}}
            \set order_id random(1, :demo_orders)
            \set status random(1, 4)
            \if :operation = 1
            {{insert}}
            \elif :operation = 2
            {{WriteCostMarker}} delete from orders
                where id = (select id from orders where id > :mix_from order by id limit 1 for update skip locked);
            \elif :operation = 3
            {{WriteCostMarker}} update orders set status = (array['in_progress', 'submitted', 'revision', 'completed'])[:status] where id = :order_id;
            \else
            {{WriteCostMarker}} update orders set price = price + 1 where id = :order_id;
            \endif

            """);
        return (insertPath, mixPath);
    }

    /// <summary>One pgbench run (<c>-n -f script -c N -j N -T seconds</c>) in the run's database; its tps (without connection time).</summary>
    private async Task<double> PgbenchAsync(string pgbench, string script, int connections, int seconds, Dictionary<string, string> variables)
    {
        var connection = new NpgsqlConnectionStringBuilder(_env.ConnectionString);
        var arguments = new List<string>
        {
            "-h", connection.Host ?? "127.0.0.1", "-p", connection.Port.ToString(Inv), "-U", connection.Username ?? "postgres",
            "-n", "-f", script, "-c", connections.ToString(Inv), "-j", connections.ToString(Inv), "-T", seconds.ToString(Inv),
        };
        foreach (var (name, value) in variables)
        {
            arguments.AddRange(["-D", $"{name}={value}"]);
        }

        arguments.Add(connection.Database ?? "postgres");
        var start = new ProcessStartInfo(pgbench, arguments) { RedirectStandardOutput = true, RedirectStandardError = true };
        if (connection.Password is { Length: > 0 } password)
        {
            start.Environment["PGPASSWORD"] = password;
        }

        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var errors = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        var text = await output;
        var tps = TpsLine().Match(text);
        var failed = FailedLine().Match(text);
        if (process.ExitCode != 0 || !tps.Success || (failed.Success && failed.Groups[1].Value != "0"))
        {
            throw new InvalidOperationException($"pgbench {Path.GetFileName(script)} -c {connections} failed (exit {process.ExitCode}):\n{text}\n{await errors}");
        }

        return double.Parse(tps.Groups[1].Value, Inv);
    }

    [GeneratedRegex(@"^tps = ([0-9.]+) \(without initial connection time\)", RegexOptions.Multiline)]
    private static partial Regex TpsLine();

    [GeneratedRegex(@"^number of failed transactions: (\d+)", RegexOptions.Multiline)]
    private static partial Regex FailedLine();

    /// <summary>The demo data's layout of clients (deploy/sql/demo-data.sql), checked on every site.</summary>
    private async Task<ClientLayout> ClientLayoutAsync()
    {
        await using var command = _db.CreateCommand("""
            with site1 as (
                select count(*) as n, min(id) filter (where role = 'client') as first, max(id) filter (where role = 'client') as last
                from users where website_id = 1),
            clients as (
                select website_id, min(id) as lo, max(id) as hi, count(*) as c from users where role = 'client' group by website_id)
            select (select count(distinct website_id) from users), (select min(website_id) from users), (select max(website_id) from users),
                   n, first, last,
                   -- sites whose clients are not where site 1's layout puts them
                   (select count(*) from clients
                    where lo <> (website_id - 1) * n + first or hi <> (website_id - 1) * n + last or c <> hi - lo + 1)
            from site1
            """);
        await using var reader = await command.ExecuteReaderAsync();
        await reader.ReadAsync();
        var (sites, first, last, misplaced) = (reader.GetInt64(0), reader.GetInt64(1), reader.GetInt64(2), reader.GetInt64(6));
        if (first != 1 || last != sites || misplaced != 0)
        {
            throw new InvalidOperationException("writecost picks clients by the demo generator's id layout, which this database's users do not follow.");
        }

        return new ClientLayout((int)sites, reader.GetInt64(3), reader.GetInt64(4), reader.GetInt64(5));
    }

    private async Task<long> MaxOrderIdAsync()
    {
        await using var command = _db.CreateCommand($"{WriteCostMarker} select coalesce(max(id), 0) from orders");
        return (long)(await command.ExecuteScalarAsync())!;
    }

    // ---------------------------------------------------------------- the feed's side

    /// <summary>Waits until the host's silo streams <paramref name="slot"/>; the WAL sender's process id.</summary>
    private async Task<int?> SlotReaderAsync(ChildProcess consumer, string slot)
    {
        await WaitForSlotStreamedAsync(consumer, slot);
        await using var command = _db.CreateCommand($"{WriteCostMarker} select active_pid from pg_replication_slots where slot_name = @slot");
        command.Parameters.AddWithValue("slot", slot);
        return await command.ExecuteScalarAsync() as int?;
    }

    /// <summary>Waits until the host's silo has its LISTEN connection open; that backend's process id.</summary>
    private async Task<int?> ListenerAsync(ChildProcess host)
    {
        int? pid = null;
        await host.WaitUntilAsync(async () =>
        {
            await using var command = _db.CreateCommand(
                $"{WriteCostMarker} select pid from pg_stat_activity where application_name = @name and backend_type = 'client backend' "
                + "and datname = current_database() and query ilike 'listen%'");
            command.Parameters.AddWithValue("name", NotifyChangeFeed.ApplicationName);
            pid = await command.ExecuteScalarAsync() as int?;
            return pid is not null;
        }, TimeSpan.FromSeconds(60));
        return pid;
    }

    /// <summary>
    /// The WAL <paramref name="slot"/> retains now (pg_current_wal_lsn() − confirmed_flush_lsn), then the seconds until the
    /// consumer confirmed everything written until now (null if not within <see cref="CatchUpWithin"/>, or if it stopped streaming).
    /// </summary>
    private async Task<(long Retained, double? CaughtUpSeconds)> SlotCatchUpAsync(ChildProcess consumer, string slot)
    {
        await using var command = _db.CreateCommand(
            $"{WriteCostMarker} select pg_current_wal_lsn()::text, pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint, active "
            + "from pg_replication_slots where slot_name = @slot");
        command.Parameters.AddWithValue("slot", slot);
        string target;
        long retained;
        await using (var reader = await command.ExecuteReaderAsync())
        {
            if (!await reader.ReadAsync() || !reader.GetBoolean(2))
            {
                Console.WriteLine($"   slot {slot} is {(reader.HasRows ? "not streamed" : "gone")}; see {consumer.LogPath}");
                return (reader.HasRows ? reader.GetInt64(1) : -1, null);
            }

            (target, retained) = (reader.GetString(0), reader.GetInt64(1));
        }

        var waited = Stopwatch.StartNew();
        while (waited.Elapsed < CatchUpWithin)
        {
            await using var caughtUp = _db.CreateCommand(
                $"{WriteCostMarker} select confirmed_flush_lsn >= @target::pg_lsn from pg_replication_slots where slot_name = @slot");
            caughtUp.Parameters.AddWithValue("target", target);
            caughtUp.Parameters.AddWithValue("slot", slot);
            if (await caughtUp.ExecuteScalarAsync() is true)
            {
                return (retained, waited.Elapsed.TotalSeconds);
            }

            await Task.Delay(TimeSpan.FromMilliseconds(50));
        }

        Console.WriteLine($"   slot {slot} did not confirm {Bytes(retained)} within {CatchUpWithin.TotalSeconds:F0} s; see {consumer.LogPath}");
        return (retained, null);
    }

    private async Task<JsonNode?> SlotStatusAsync(string slot) => await RowAsJsonAsync(
        "select active, active_pid, wal_status, pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint as restart_behind, "
        + "pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint as confirmed_behind from pg_replication_slots where slot_name = @name", slot);

    /// <summary>One row of <paramref name="sql"/> (parameter <c>@name</c>) as a JSON object, or null when there is none.</summary>
    private async Task<JsonNode?> RowAsJsonAsync(string sql, string? name)
    {
        await using var command = _db.CreateCommand($"{WriteCostMarker} {sql}");
        if (name is not null)
        {
            command.Parameters.AddWithValue("name", name);
        }

        await using var reader = await command.ExecuteReaderAsync();
        if (!await reader.ReadAsync())
        {
            return null;
        }

        var row = new JsonObject();
        for (var i = 0; i < reader.FieldCount; i++)
        {
            row[reader.GetName(i)] = reader.IsDBNull(i) ? null : JsonValue.Create(reader.GetValue(i).ToString());
        }

        return row;
    }

    /// <summary>The statements pg_stat_statements counted since the turn's reset, but this scenario's own and pgbench's.</summary>
    private async Task ReadStatementsAsync(WriteCostTurn turn)
    {
        await using var command = _db.CreateCommand(
            "select query, calls from pg_stat_statements where dbid = (select oid from pg_database where datname = current_database()) "
            + "and query not like @marker order by calls desc");
        // A parameter, so this statement's own text does not carry the marker into its pattern.
        command.Parameters.AddWithValue("marker", "%" + WriteCostMarker + "%");
        await using var reader = await command.ExecuteReaderAsync();
        while (await reader.ReadAsync())
        {
            var query = reader.GetString(0);
            if (query.Contains("pg_stat_statements", StringComparison.Ordinal) || query == "DISCARD ALL")
            {
                // This very query; Npgsql's reset of a pooled connection, sent with the next statement (the driver's polls make most of them).
                continue;
            }

            // A view's load runs each of its queries once: its first query's calls are its loads (as DatabaseLoadsAsync counts them).
            var text = Whitespace().Replace(query, " ").Trim();
            string label;
            if (ViewMarker().Match(query) is { Success: true } marker)
            {
                if (Catalog.Find(marker.Groups[1].Value)?.Queries[0].Name != marker.Groups[2].Value)
                {
                    continue;
                }

                label = $"{marker.Groups[1].Value} loads";
            }
            else
            {
                label = text.Length > 60 ? text[..57] + "..." : text;
            }

            turn.Statements[label] = turn.Statements.GetValueOrDefault(label) + reader.GetInt64(1);
        }
    }

    [GeneratedRegex(@"/\* bench:([^:]+):([^ ]+) \*/")]
    private static partial Regex ViewMarker();

    [GeneratedRegex(@"\s+")]
    private static partial Regex Whitespace();

    /// <summary>The host's change feed and load metrics (Prometheus text, the statscache_changes_* and statscache_loads* lines).</summary>
    private async Task<JsonArray> FeedMetricsAsync(HttpHost host)
    {
        var text = await ClientFor(host).GetStringAsync("/metrics");
        return new JsonArray([.. text.Split('\n')
            .Where(l => l.StartsWith("statscache_changes", StringComparison.Ordinal) || l.StartsWith("statscache_loads", StringComparison.Ordinal))
            .Select(l => (JsonNode)JsonValue.Create(l))]);
    }

    /// <summary>A process's CPU time so far (user + system), or null when there is none or it is gone.</summary>
    private static double? CpuSeconds(int? pid)
    {
        if (pid is not { } id)
        {
            return null;
        }

        try
        {
            using var process = Process.GetProcessById(id);
            return process.TotalProcessorTime.TotalSeconds;
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or System.ComponentModel.Win32Exception)
        {
            return null;
        }
    }

    /// <summary>The run's PostgreSQL server process (the parent of its checkpointer), or null when it is not on this machine.</summary>
    private async Task<int?> PostmasterPidAsync()
    {
        await using var command = _db.CreateCommand($"{WriteCostMarker} select pid from pg_stat_activity where backend_type = 'checkpointer'");
        return await command.ExecuteScalarAsync() is int checkpointer && ProcStat(checkpointer) is { } stat ? stat.ParentId : null;
    }

    /// <summary>
    /// CPU seconds the whole machine has spent so far (/proc/stat: user, nice, system, irq, softirq) less what this run's processes
    /// spent: its PostgreSQL server (with every backend, ended ones counted in the server's children's time) and this driver (with
    /// the hosts and every pgbench it started). What is left is other work on the machine. Null off Linux or without the server's pid.
    /// </summary>
    private static double? OtherProcessesCpuSeconds(int? postmaster)
    {
        if (postmaster is not { } server || !File.Exists("/proc/stat"))
        {
            return null;
        }

        var machine = File.ReadLines("/proc/stat").First(l => l.StartsWith("cpu ", StringComparison.Ordinal))
            .Split(' ', StringSplitOptions.RemoveEmptyEntries).Skip(1).Select(f => long.Parse(f, Inv)).ToArray();
        var busy = machine[0] + machine[1] + machine[2] + machine[5] + machine[6];
        var all = Directory.EnumerateDirectories("/proc").Select(d => Path.GetFileName(d))
            .Where(name => name.All(char.IsAsciiDigit)).Select(name => ProcStat(int.Parse(name, Inv))).OfType<ProcessTicks>().ToList();
        long Tree(int root) =>
            all.Where(p => p.Id == root).Sum(p => p.Ticks + p.ChildrenTicks) + all.Where(p => p.ParentId == root).Sum(p => p.Ticks);
        return (busy - Tree(server) - Tree(Environment.ProcessId)) / (double)TicksPerSecond;
    }

    // USER_HZ, the unit of /proc's times: 100 on every Linux architecture .NET runs on.
    private const int TicksPerSecond = 100;

    private sealed record ProcessTicks(int Id, int ParentId, long Ticks, long ChildrenTicks);

    /// <summary>A process's parent and its CPU ticks (user + system), and those of its ended, reaped children; null when it is gone.</summary>
    private static ProcessTicks? ProcStat(int pid)
    {
        try
        {
            var text = File.ReadAllText($"/proc/{pid}/stat");
            // After "(comm)", which may hold spaces: state, ppid, ... utime (14), stime, cutime, cstime (17).
            var fields = text[(text.LastIndexOf(')') + 2)..].Split(' ');
            long Field(int number) => long.Parse(fields[number - 3], Inv);
            return new ProcessTicks(pid, (int)Field(4), Field(14) + Field(15), Field(16) + Field(17));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException)
        {
            return null;
        }
    }

    // ---------------------------------------------------------------- report

    private void AddWriteCostRows(List<WriteCostTurn> turns, double seconds)
    {
        var rounds = _env.WriteCostRounds;
        double Median(Attachment attachment, Func<WriteCostTurn, double?> value) =>
            turns.Where(t => t.Attachment == attachment).Select(value).OfType<double>().ToList() is { Count: > 0 } values
                ? Percentile(values, 50)
                : double.NaN;
        var (detached, notify, replication) = (Attachment.Detached, Attachment.Notify, Attachment.Replication);

        // With BENCH_WRITECOST_RECVLOGICAL=1, the slot drained by pg_recvlogical stands beside Replication in each row.
        var drained = turns.Any(t => t.Attachment == Attachment.RecvLogical);
        string Drained(Func<double> value, string format) =>
            drained ? $" (pg_recvlogical: {value().ToString(format, Inv)})" : "";

        foreach (var workload in WriteCostWorkloads)
        {
            foreach (var connections in WriteCostConnections)
            {
                var key = $"{workload}/{connections}";
                var name = $"{(workload == "insert" ? "inserts" : "mix")}, {connections} connection{(connections > 1 ? "s" : "")}";
                var (d, n, r) = (Median(detached, t => t.Tps[key]), Median(notify, t => t.Tps[key]), Median(replication, t => t.Tps[key]));
                var p = Median(Attachment.RecvLogical, t => t.Tps[key]);
                _report.Add(new ReportRow("writecost", $"{name}: tps detached / Notify / Replication", "—",
                    $"{d:N0} / {n:N0} / {r:N0}{Drained(() => p, "N0")}", null, d));
                _report.Add(new ReportRow("writecost", $"{name}: Notify / detached", "—", $"{n / d:F2}", null, n / d));
                var goal = connections >= 16;
                _report.Add(new ReportRow("writecost", $"{name}: Replication / detached", goal ? $"≥ {WriteCostTpsGoal}" : "—",
                    $"{r / d:F2}{Drained(() => p / d, "F2")}", goal ? r / d >= WriteCostTpsGoal : null, r / d));
            }
        }

        var rows = turns.Select(t => t.BulkRows).Distinct().ToList();
        var (bd, bn, br) = (Median(detached, t => t.BulkSeconds), Median(notify, t => t.BulkSeconds), Median(replication, t => t.BulkSeconds));
        var bp = Median(Attachment.RecvLogical, t => t.BulkSeconds);
        var bulk = $"bulk update ({string.Join(" / ", rows.Select(n => n.ToString("N0", Inv)))} rows of sites 1 and 2)";
        _report.Add(new ReportRow("writecost", $"{bulk}: seconds detached / Notify / Replication", "—",
            $"{bd:F2} / {bn:F2} / {br:F2} s{Drained(() => bp, "F2")}", null, bd));
        _report.Add(new ReportRow("writecost", "bulk update: Notify / detached (time)", "—", $"{bn / bd:F2}", null, bn / bd));
        var caughtUp = turns.Where(t => t.Attachment == replication).Select(t => t.BulkCaughtUpSeconds).ToList();
        _report.Add(new ReportRow("writecost", "bulk update: Replication / detached (time)", $"≤ {WriteCostBulkGoal}",
            $"{br / bd:F2}{Drained(() => bp / bd, "F2")}; the slot confirmed it {string.Join(", ", caughtUp.Select(s => s is { } v ? $"{v:F1}" : "—"))} s after its commit",
            br / bd <= WriteCostBulkGoal, br / bd));

        var replicationTurns = turns.Where(t => t.Attachment == replication).ToList();
        var largest = replicationTurns.SelectMany(t => t.Retained.Values).MaxBy(v => v.Bytes);
        var slowest = replicationTurns.SelectMany(t => t.Retained.Values).Select(v => v.CaughtUpSeconds ?? double.PositiveInfinity).DefaultIfEmpty(0).Max();
        _report.Add(new ReportRow("writecost", "Replication: WAL the slot retained at the end of each round", "—",
            $"{string.Join(", ", replicationTurns.Select(t => t.RetainedAtEnd is { } b ? Bytes(b) : "—"))}; largest as a run ended {Bytes(largest.Bytes)}, "
            + $"confirmed within {(double.IsFinite(slowest) ? $"{slowest:F1} s" : $"> {CatchUpWithin.TotalSeconds:F0} s")} after each run",
            null, replicationTurns.Select(t => (double?)t.RetainedAtEnd).Max()));

        foreach (var attachment in turns.Select(t => t.Attachment).Distinct())
        {
            var own = turns.Where(t => t.Attachment == attachment).ToList();
            var top = own.SelectMany(t => t.Statements.Keys).Distinct()
                .Select(label => (Label: label, Calls: Percentile([.. own.Select(t => (double)t.Statements.GetValueOrDefault(label))], 50)))
                .Where(s => s.Calls > 0).OrderByDescending(s => s.Calls).Take(4).ToList();
            _report.Add(new ReportRow("writecost", $"{Name(attachment)}: statements besides pgbench's, calls per round (median)", "—",
                top.Count == 0 ? "none" : string.Join("; ", top.Select(s => $"{s.Label} {s.Calls:N0}")), null, top.Sum(s => s.Calls)));
        }

        _report.Add(new ReportRow("writecost", "CPU seconds per round during the pgbench runs: feed's server process + its consumer", "—",
            string.Join("; ", turns.Select(t => t.Attachment).Distinct().Where(a => a != detached).Select(a =>
                $"{Name(a)} {Median(a, t => t.FeedServerCpuSeconds):F1} + {Median(a, t => t.HostCpuSeconds):F1} s"))
            + $" (of {WriteCostConnections.Length * WriteCostWorkloads.Length * _env.WriteCostSeconds} s of pgbench)", null, null));
        var others = turns.Select(t => t.OthersCpuSeconds).OfType<double>().ToList();
        var available = Environment.ProcessorCount * WriteCostConnections.Length * WriteCostWorkloads.Length * _env.WriteCostSeconds;
        _report.Add(new ReportRow("writecost", "CPU of other processes on the machine during a turn's pgbench runs: median, largest", "—",
            others.Count == 0 ? "not measured" : $"{Percentile(others, 50):F1} s, {others.Max():F1} s (of {available} core-seconds)", null, others.Count == 0 ? null : others.Max()));

        _report.Detail("writecost", new JsonObject
        {
            ["rounds"] = rounds,
            ["pgbenchSeconds"] = _env.WriteCostSeconds,
            ["seconds"] = Math.Round(seconds),
            ["bulkUpdate"] = BulkUpdateSql,
            ["serverSettings"] = string.Join(", ", DurabilitySettings.Select(name => $"{name}=on")),
            ["turns"] = new JsonArray([.. turns.Select(t => (JsonNode)new JsonObject
            {
                ["round"] = t.Round,
                ["attachment"] = Name(t.Attachment),
                ["tps"] = new JsonObject([.. t.Tps.Select(p => KeyValuePair.Create(p.Key, (JsonNode?)Math.Round(p.Value, 1)))]),
                ["bulkRows"] = t.BulkRows,
                ["bulkSeconds"] = Math.Round(t.BulkSeconds, 3),
                ["bulkCaughtUpSeconds"] = t.BulkCaughtUpSeconds is { } c ? Math.Round(c, 2) : null,
                ["retainedBytes"] = new JsonObject([.. t.Retained.Select(p => KeyValuePair.Create(p.Key, (JsonNode?)new JsonObject
                {
                    ["bytes"] = p.Value.Bytes,
                    ["caughtUpSeconds"] = p.Value.CaughtUpSeconds is { } s ? Math.Round(s, 2) : null,
                }))]),
                ["retainedAtEndBytes"] = t.RetainedAtEnd,
                ["statements"] = new JsonObject([.. t.Statements.OrderByDescending(s => s.Value).Take(10).Select(s => KeyValuePair.Create(s.Key, (JsonNode?)s.Value))]),
                ["feedServerCpuSeconds"] = t.FeedServerCpuSeconds is { } f ? Math.Round(f, 2) : null,
                ["hostCpuSeconds"] = t.HostCpuSeconds is { } h ? Math.Round(h, 2) : null,
                ["othersCpuSeconds"] = t.OthersCpuSeconds is { } o ? Math.Round(o, 2) : null,
                ["extra"] = t.Extra.DeepClone(),
                ["phaseSeconds"] = new JsonObject([.. t.Phases.Select(p => KeyValuePair.Create(p.Key, (JsonNode?)p.Value))]),
            })]),
        });
    }

    private static string Name(Attachment attachment) => attachment switch
    {
        Attachment.Detached => "detached",
        Attachment.RecvLogical => "pg_recvlogical",
        _ => attachment.ToString(),
    };

    private static string Bytes(long bytes) => bytes switch
    {
        < 0 => "—",
        < 1024 => $"{bytes} B",
        < 1024 * 1024 => $"{bytes / 1024.0:F0} kB",
        _ => $"{bytes / (1024.0 * 1024):F1} MB",
    };
}
