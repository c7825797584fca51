using System.Globalization;

namespace StatsCache.Benchmarks;

/// <summary>Where things are and how big the run is; from the environment bench.sh sets.</summary>
public sealed class BenchEnvironment
{
    public required string Repository { get; init; }

    public required string Configuration { get; init; }

    public required string ConnectionString { get; init; }

    public required string SigningKey { get; init; }

    public string Issuer { get; init; } = "statscache";

    public string Audience { get; init; } = "statscache";

    /// <summary>Catalogs, token files, payloads and every child process's log.</summary>
    public required string WorkFolder { get; init; }

    public string SelfDll => typeof(BenchEnvironment).Assembly.Location;

    public string SiloDll => Path.Combine(Repository, "src", "Silo", "bin", Configuration, "net10.0", "StatsCache.Silo.dll");

    public string WebHostDll => Path.Combine(Repository, "src", "WebHost", "bin", Configuration, "net10.0", "StatsCache.WebHost.dll");

    public string WrkScript => Path.Combine(AppContext.BaseDirectory, "wrk", "tokens.lua");

    /// <summary>Seconds of wrk per contender and key set (BENCH_HIT_SECONDS).</summary>
    public int HitSeconds { get; init; } = 10;

    /// <summary>The turns the contenders take, each a slice of <see cref="HitSeconds"/> (BENCH_HIT_ROUNDS).</summary>
    public int HitRounds { get; init; } = 5;

    /// <summary>wrk connections (the 64).</summary>
    public int Connections { get; init; } = 64;

    /// <summary>hit's largest key set: the first this many client users, one token each.</summary>
    public int HitKeys { get; init; } = 10_000;

    /// <summary>hit's middle key set: the first this many of <see cref="HitKeys"/>.</summary>
    public int HitMiddleKeys { get; init; } = 2_000;

    public int StampedeRequests { get; init; } = 1_000;

    public int RefreshEntries { get; init; } = 100_000;

    public int RefreshTtlSeconds { get; init; } = 10;

    /// <summary>Seconds of steady writes per round of the fresh scenario (BENCH_FRESH_SECONDS).</summary>
    public int FreshSeconds { get; init; } = 30;

    /// <summary>Orders inserted per second (BENCH_FRESH_WRITES_PER_SECOND; the 200).</summary>
    public int FreshWritesPerSecond { get; init; } = 200;

    /// <summary>The clients the orders are spread over, the first in id order (BENCH_FRESH_CLIENTS; the 1,000).</summary>
    public int FreshClients { get; init; } = 1_000;

    /// <summary>How many of those clients (the first) have their dashboard open and polling (BENCH_FRESH_READERS; all of them by default).</summary>
    public int FreshReaders { get; init; } = 1_000;

    /// <summary>Writes per second whose client's dashboard is polled until it shows them (BENCH_FRESH_PROBES_PER_SECOND).</summary>
    public int FreshProbesPerSecond { get; init; } = 5;

    /// <summary>Open streams of the live scenario (BENCH_LIVE_STREAMS); it writes as fresh does.</summary>
    public int LiveStreams { get; init; } = 10_000;

    /// <summary>Seconds of each round of the abuse scenario (BENCH_ABUSE_SECONDS).</summary>
    public int AbuseSeconds { get; init; } = 10;

    /// <summary>Seconds of each pgbench run of the writecost scenario (BENCH_WRITECOST_SECONDS).</summary>
    public int WriteCostSeconds { get; init; } = 5;

    /// <summary>Rounds of the writecost scenario, each a turn of every configuration (BENCH_WRITECOST_ROUNDS).</summary>
    public int WriteCostRounds { get; init; } = 3;

    /// <summary>
    /// A fourth writecost configuration, the Replication source's slot streamed by pg_recvlogical instead of StatsCache: what the WAL
    /// sender costs apart from the consumer's process (BENCH_WRITECOST_RECVLOGICAL=1; about a third more time).
    /// </summary>
    public bool WriteCostRecvLogical { get; init; }

    /// <summary>
    /// A streaming replica of the bench's PostgreSQL (BENCH_REPLICA, a connection string; bench.sh starts one when fresh
    /// runs): fresh adds rounds of StatsCache with its loads on it. Null: those rounds are left out.
    /// </summary>
    public string? ReplicaConnectionString { get; init; }

    /// <summary>The replica's data folder (BENCH_REPLICA_DATA), to stop it once fresh, its only user, is done.</summary>
    public string? ReplicaDataFolder { get; init; }

    public static BenchEnvironment FromEnvironment()
    {
        var bin = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar)); // .../bin/Release/net10.0
        var repository = bin;
        while (repository is not null && !File.Exists(Path.Combine(repository.FullName, "StatsCache.slnx")))
        {
            repository = repository.Parent;
        }

        var work = Environment.GetEnvironmentVariable("BENCH_WORK") is { Length: > 0 } w
            ? w
            : Path.Combine(Path.GetTempPath(), $"statscache-bench-{Environment.ProcessId}");
        Directory.CreateDirectory(work);
        var freshClients = Int("BENCH_FRESH_CLIENTS", 1_000);
        return new BenchEnvironment
        {
            Repository = repository?.FullName ?? throw new InvalidOperationException("StatsCache.slnx not found above " + bin.FullName),
            Configuration = bin.Parent!.Name,
            ConnectionString = Required("ConnectionStrings__Stats"),
            SigningKey = Required("Auth__SigningKey"),
            Issuer = Environment.GetEnvironmentVariable("Auth__Issuer") is { Length: > 0 } issuer ? issuer : "statscache",
            Audience = Environment.GetEnvironmentVariable("Auth__Audience") is { Length: > 0 } audience ? audience : "statscache",
            WorkFolder = work,
            HitSeconds = Int("BENCH_HIT_SECONDS", 10),
            HitRounds = Int("BENCH_HIT_ROUNDS", 5),
            RefreshEntries = Int("BENCH_REFRESH_ENTRIES", 100_000),
            RefreshTtlSeconds = Int("BENCH_REFRESH_TTL_SECONDS", 10),
            FreshSeconds = Int("BENCH_FRESH_SECONDS", 30),
            FreshWritesPerSecond = Int("BENCH_FRESH_WRITES_PER_SECOND", 200),
            FreshClients = freshClients,
            FreshReaders = Int("BENCH_FRESH_READERS", freshClients),
            FreshProbesPerSecond = Int("BENCH_FRESH_PROBES_PER_SECOND", 5),
            AbuseSeconds = Int("BENCH_ABUSE_SECONDS", 10),
            LiveStreams = Int("BENCH_LIVE_STREAMS", 10_000),
            WriteCostSeconds = Int("BENCH_WRITECOST_SECONDS", 5),
            WriteCostRounds = Int("BENCH_WRITECOST_ROUNDS", 3),
            WriteCostRecvLogical = Int("BENCH_WRITECOST_RECVLOGICAL", 0) == 1,
            ReplicaConnectionString = Environment.GetEnvironmentVariable("BENCH_REPLICA") is { Length: > 0 } replica ? replica : null,
            ReplicaDataFolder = Environment.GetEnvironmentVariable("BENCH_REPLICA_DATA") is { Length: > 0 } folder ? folder : null,
        };
    }

    private static string Required(string name) =>
        Environment.GetEnvironmentVariable(name) is { Length: > 0 } value ? value : throw new InvalidOperationException($"{name} is not set.");

    private static int Int(string name, int fallback) =>
        Environment.GetEnvironmentVariable(name) is { Length: > 0 } text ? int.Parse(text, CultureInfo.InvariantCulture) : fallback;
}
