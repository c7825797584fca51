using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Npgsql;
using StatsCache.Catalog;
using StatsCache.Source;
using StatsCache.WebHost.Api;
using StatsCache.WebHost.Auth;

namespace StatsCache.Benchmarks;

/// <summary>
/// Runs the scenarios of issue 5 side by side in one run and reports them: <c>source</c>, <c>stampede</c>,
/// <c>hit</c>, <c>refresh</c>, issue 11's <c>abuse</c>, issue 7's <c>fresh</c>, issue 15's <c>live</c> and <c>writecost</c> (what the
/// change feed costs the platform's own writes). bench.sh has started PostgreSQL (with pg_stat_statements) and generated
/// the data; the driver starts and stops every host and silo itself.
/// </summary>
public static class Driver
{
    // fresh last: the orders it inserts would change what the others read.
    // writecost after them: it writes, bulk-updates and switches the database's change feed set-up between its turns.
    public static readonly string[] AllScenarios = ["source", "stampede", "hit", "refresh", "abuse", "fresh", "live", "writecost"];

    /// <summary>The user-scoped view the HTTP scenarios read: one row per client, a typical snapshot.</summary>
    public const string HitView = "client-stats";

    public static async Task<int> RunAsync(string[] args)
    {
        var scenarios = new List<string>();
        string? jsonPath = null;
        for (var i = 0; i < args.Length; i++)
        {
            if (args[i] == "--json" && i + 1 < args.Length)
            {
                jsonPath = Path.GetFullPath(args[++i]);
            }
            else if (AllScenarios.Contains(args[i]))
            {
                scenarios.Add(args[i]);
            }
            else
            {
                Console.Error.WriteLine($"usage: drive [{string.Join('|', AllScenarios)}]... [--json FILE]");
                return 2;
            }
        }

        if (scenarios.Count == 0)
        {
            scenarios.AddRange(AllScenarios);
        }

        // Interrupted: stop the hosts and silos this run started rather than leave them running.
        using var onInterrupt = System.Runtime.InteropServices.PosixSignalRegistration.Create(
            System.Runtime.InteropServices.PosixSignal.SIGINT, _ => ChildProcess.KillAllStarted());
        using var onTerminate = System.Runtime.InteropServices.PosixSignalRegistration.Create(
            System.Runtime.InteropServices.PosixSignal.SIGTERM, _ => ChildProcess.KillAllStarted());

        var environment = BenchEnvironment.FromEnvironment();
        var report = new Report();
        var started = Stopwatch.StartNew();
        await using (var bench = await BenchRun.PrepareAsync(environment, report))
        {
            var selected = AllScenarios.Where(scenarios.Contains).ToList();
            foreach (var scenario in selected)
            {
                Console.WriteLine($"== {scenario}");
                var scenarioStarted = Stopwatch.StartNew();
                await (scenario switch
                {
                    "source" => bench.SourceAsync(),
                    "stampede" => bench.StampedeAsync(),
                    "hit" => bench.HitAsync(),
                    "fresh" => bench.FreshAsync(),
                    "abuse" => bench.AbuseAsync(),
                    "live" => bench.LiveAsync(),
                    "writecost" => bench.WriteCostAsync(),
                    _ => bench.RefreshAsync(),
                });
                Console.WriteLine($"   ({scenarioStarted.Elapsed.TotalSeconds:F0} s)");
                // fresh is the read replica's only user: a standby replaying the later scenarios' writes would share the cores with them.
                if (scenario == "fresh" && scenario != selected[^1])
                {
                    await bench.StopReplicaAsync();
                }
            }
        }

        report.Print(Console.Out);
        Console.WriteLine();
        Console.WriteLine($"Driver time {started.Elapsed.TotalSeconds:F0} s on {Environment.ProcessorCount} cores; logs in {environment.WorkFolder}.");
        if (jsonPath is not null)
        {
            report.WriteJson(jsonPath, new JsonObject
            {
                ["cores"] = Environment.ProcessorCount,
                ["os"] = System.Runtime.InteropServices.RuntimeInformation.OSDescription,
                ["runtime"] = Environment.Version.ToString(),
                ["date"] = DateTimeOffset.UtcNow.ToString("O", CultureInfo.InvariantCulture),
                ["hitSeconds"] = environment.HitSeconds,
                ["connections"] = environment.Connections,
                ["writeCostSeconds"] = environment.WriteCostSeconds,
                ["writeCostRounds"] = environment.WriteCostRounds,
                ["driverSeconds"] = Math.Round(started.Elapsed.TotalSeconds),
            });
            Console.WriteLine($"JSON written to {jsonPath}");
        }

        return 0;
    }
}

/// <summary>One run's shared state: data, tokens, catalogs and the processes it started.</summary>
public sealed partial class BenchRun : IAsyncDisposable
{
    private readonly BenchEnvironment _env;
    private readonly Report _report;
    private readonly NpgsqlDataSource _db;
    private readonly NpgsqlDataSource? _replicaDb;
    private readonly List<ChildProcess> _processes = [];
    private readonly Dictionary<string, HttpClient> _clients = [];
    private int _nextStampedeUser;

    private BenchRun(BenchEnvironment env, Report report, NpgsqlDataSource db)
    {
        _env = env;
        _report = report;
        _db = db;
        _replicaDb = env.ReplicaConnectionString is { } replica ? NpgsqlDataSource.Create(replica) : null;
    }

    /// <summary>The default catalog with a marker comment on every query, so pg_stat_statements can tell each view's loads apart.</summary>
    public string BenchCatalogPath => Path.Combine(_env.WorkFolder, "bench-catalog.json");

    /// <summary>The same catalog with every view's TTL set to the refresh scenario's.</summary>
    public string RefreshCatalogPath => Path.Combine(_env.WorkFolder, "refresh-catalog.json");

    public string MinimalPayloadPath => Path.Combine(_env.WorkFolder, "minimal-payload.json");

    public string DataPayloadPath => Path.Combine(_env.WorkFolder, "data-payload.json");

    public DashboardCatalog Catalog { get; private set; } = null!;

    /// <summary>Client users (site, id), in id order: the first <see cref="BenchEnvironment.HitKeys"/> are the hit keys, the rest are kept cold for stampedes.</summary>
    public List<Caller> Clients { get; private set; } = [];

    public List<string> Tokens { get; private set; } = [];

    public static async Task<BenchRun> PrepareAsync(BenchEnvironment env, Report report)
    {
        var run = new BenchRun(env, report, NpgsqlDataSource.Create(env.ConnectionString));
        run.WriteCatalogs();
        await run.LoadUsersAsync();
        await run.WritePayloadsAsync();
        return run;
    }

    /// <summary>The marker pg_stat_statements keeps at the head of a query's text.</summary>
    public static string Marker(string view, string query) => $"/* bench:{view}:{query} */";

    private void WriteCatalogs()
    {
        using var stream = typeof(DashboardCatalog).Assembly.GetManifestResourceStream("StatsCache.default-catalog.json")
            ?? throw new InvalidOperationException("The default catalog resource is missing.");
        var root = JsonNode.Parse(stream)!;
        foreach (var view in root["views"]!.AsArray())
        {
            foreach (var query in view!["queries"]!.AsArray())
            {
                query!["sql"] = $"{Marker((string)view["name"]!, (string)query["name"]!)}\n{(string)query["sql"]!}";
            }
        }

        File.WriteAllText(BenchCatalogPath, root.ToJsonString());
        foreach (var view in root["views"]!.AsArray())
        {
            view!["ttl"] = TimeSpan.FromSeconds(_env.RefreshTtlSeconds).ToString("c", CultureInfo.InvariantCulture);
        }

        File.WriteAllText(RefreshCatalogPath, root.ToJsonString());
        Catalog = DashboardCatalog.Load(BenchCatalogPath);
        DashboardCatalog.Load(RefreshCatalogPath);
    }

    private async Task LoadUsersAsync()
    {
        await using var command = _db.CreateCommand("select website_id, id from users where role = 'client' order by id");
        await using var reader = await command.ExecuteReaderAsync();
        while (await reader.ReadAsync())
        {
            Clients.Add(new Caller(reader.GetInt64(0), "client", reader.GetInt64(1)));
        }

        var needed = _env.HitKeys + 1_000;
        if (Clients.Count < needed)
        {
            throw new InvalidOperationException($"The database has {Clients.Count} clients; the benchmark needs {needed} (generate more users).");
        }

        Tokens = [.. Clients.Select(TokenFor)];
        File.WriteAllLines(HotTokensPath, Tokens.Take(1));
        File.WriteAllLines(MiddleTokensPath, Tokens.Take(_env.HitMiddleKeys));
        File.WriteAllLines(ManyTokensPath, Tokens.Take(_env.HitKeys));
        _nextStampedeUser = _env.HitKeys;
    }

    /// <summary>A token the hosts accept for <paramref name="caller"/>, valid for longer than any run.</summary>
    public string TokenFor(Caller caller) =>
        TokenIssuer.Issue(new AuthOptions { SigningKey = _env.SigningKey, Issuer = _env.Issuer, Audience = _env.Audience }, caller, TimeSpan.FromHours(3));

    public string HotTokensPath => Path.Combine(_env.WorkFolder, "tokens-hot.txt");

    public string MiddleTokensPath => Path.Combine(_env.WorkFolder, "tokens-middle.txt");

    public string ManyTokensPath => Path.Combine(_env.WorkFolder, "tokens-many.txt");

    /// <summary>The hot user's real snapshot: its data (the refresh scenario's payload) and its whole answer (the minimal endpoints').</summary>
    private async Task WritePayloadsAsync()
    {
        var view = Catalog.Find(Driver.HitView)!;
        var caller = Clients[0];
        var data = await PostgresDashboardSource.RunAsync(
            _db, view, new DashboardScope(caller.SiteId, caller.Role, caller.UserId), view.DefaultParameters, CancellationToken.None);
        File.WriteAllBytes(DataPayloadPath, data);

        // The minimal endpoints' payload is exactly what the API writes for this snapshot.
        await using var file = File.Create(MinimalPayloadPath);
        var context = new DefaultHttpContext();
        context.Response.Body = file;
        var snapshot = new DashboardSnapshot(data, DateTimeOffset.UtcNow, ContentHash: "bench");
        await new SnapshotResult(caller, view, view.DefaultParameters, snapshot, stale: false).ExecuteAsync(context);
        await context.Response.BodyWriter.FlushAsync();
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var client in _clients.Values)
        {
            client.Dispose();
        }

        // Hosts first, then the silos they are clients of.
        for (var i = _processes.Count - 1; i >= 0; i--)
        {
            await _processes[i].DisposeAsync();
        }

        try
        {
            await DropSlotsAsync();
        }
        catch (Exception e) when (e is NpgsqlException or InvalidOperationException)
        {
            // The run's PostgreSQL is thrown away next; a failure here must not hide the run's own.
            Console.Error.WriteLine($"Could not drop the run's replication slots: {e.Message}");
        }

        await _db.DisposeAsync();
        if (_replicaDb is not null)
        {
            await _replicaDb.DisposeAsync();
        }
    }
}
