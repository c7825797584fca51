using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using Npgsql;
using StatsCache.WebHost.Hosting;

namespace StatsCache.Benchmarks;

/// <summary>
/// A web host the driver started, its base address, and the replication slot its cluster's change feed streams (null when
/// its feed is off or reads the triggers' notifications).
/// </summary>
public sealed record HttpHost(string Name, Uri Url, ChildProcess Process, string? Slot);

public sealed partial class BenchRun
{
    private string _clusterId = NewClusterId();
    private readonly List<ChildProcess> _silos = [];
    private readonly List<HttpHost> _webHosts = [];
    private readonly List<HttpHost> _benchClients = [];
    private HttpHost? _coHosted;

    // The replication slots this run's clusters were given, dropped when their hosts stop: a slot left behind keeps WAL.
    private readonly HashSet<string> _slots = [];

    private Dictionary<string, string> CommonEnvironment() => new(StringComparer.Ordinal)
    {
        ["ConnectionStrings__Stats"] = _env.ConnectionString,
        ["Auth__SigningKey"] = _env.SigningKey,
        ["Auth__Issuer"] = _env.Issuer,
        ["Auth__Audience"] = _env.Audience,
        ["StatsCache__CatalogPath"] = BenchCatalogPath,
        ["DOTNET_ENVIRONMENT"] = "Production",
        ["ASPNETCORE_ENVIRONMENT"] = "Production",
        ["Logging__LogLevel__Default"] = "Warning",
        // Every scenario's load comes from few callers by design (hit's one hot key, stampede's 1,000 requests for one
        // key, fresh's admin polling every 20 ms): the per-caller request limit would measure 429s. abuse turns it on.
        ["StatsCache__RequestLimit__IsEnabled"] = "false",
    };

    private Dictionary<string, string> ClusterEnvironment()
    {
        var environment = CommonEnvironment();
        environment["Orleans__Membership"] = "AdoNet";
        environment["Orleans__Storage"] = "AdoNet";
        environment["Orleans__ClusterId"] = _clusterId;
        // Grain storage is keyed by service: a service of this run's own keeps snapshots stored by
        // earlier runs in the same database from answering what must be a cold read.
        environment["Orleans__ServiceId"] = _clusterId;
        environment["Orleans__AdvertisedAddress"] = "127.0.0.1";
        // The cluster's silos share one slot (whichever holds it streams); the co-hosted hosts running beside it have their own.
        environment[SlotNameKey] = SlotFor(_clusterId);
        return environment;
    }

    /// <summary>The benchmark host with its in-process silo (StatsCache as shipped by default) and the contenders.</summary>
    public async Task<HttpHost> CoHostedAsync() => _coHosted ??= await StartCoHostedAsync("bench-host", new Dictionary<string, string>());

    /// <summary>
    /// A benchmark host with its in-process silo as <see cref="CoHostedAsync"/> starts it, but of the caller's own
    /// (named <paramref name="name"/>, <paramref name="overrides"/> on top of its environment); stop it with <see cref="StopAllHostsAsync"/>.
    /// </summary>
    public Task<HttpHost> StartCoHostedAsync(string name, IReadOnlyDictionary<string, string> overrides) =>
        StartHttpHostAsync(name, _env.SelfDll, ["serve"], CoHostedEnvironment(name, overrides));

    /// <summary>The real src/WebHost with its in-process silo (the shipped default), set up as <see cref="StartCoHostedAsync"/> sets up a benchmark host.</summary>
    public Task<HttpHost> StartCoHostedWebHostAsync(string name, IReadOnlyDictionary<string, string> overrides) =>
        StartHttpHostAsync(name, _env.WebHostDll, [], CoHostedEnvironment(name, overrides));

    /// <summary>A <see cref="MinimalEndpoint"/> in a process of its own: slim, or <paramref name="withMetrics"/>.</summary>
    public Task<HttpHost> StartMinimalAsync(string name, bool withMetrics)
    {
        var environment = CommonEnvironment();
        environment[MinimalEndpoint.PayloadPathKey.Replace(":", "__", StringComparison.Ordinal)] = MinimalPayloadPath;
        // As src/WebHost's appsettings.json: without it ASP.NET Core starts an Activity per request for its request logs.
        environment["Logging__LogLevel__Microsoft.AspNetCore.Hosting.Diagnostics"] = "None";
        // It has no readiness check (nothing to be ready but Kestrel): it is ready when it answers.
        return StartHttpHostAsync(name, _env.SelfDll, withMetrics ? ["minimal", "--metrics"] : ["minimal"], environment, MinimalEndpoint.AllocatedPath);
    }

    private Dictionary<string, string> CoHostedEnvironment(string name, IReadOnlyDictionary<string, string> overrides)
    {
        var environment = CommonEnvironment();
        environment["Orleans__Mode"] = "CoHosted";
        environment["Orleans__SiloPort"] = Port();
        environment["Orleans__GatewayPort"] = Port();
        // Each co-hosted host is a cluster of its own: with one slot for all, the first would stream it and the others hear nothing.
        environment[SlotNameKey] = SlotFor(name);
        foreach (var (key, value) in overrides)
        {
            environment[key] = value;
        }

        return environment;
    }

    /// <summary>
    /// Two src/Silo processes (AdoNet membership and storage, as ./run.sh --cluster 2), <paramref name="webHosts"/>
    /// src/WebHost processes in client mode, and <paramref name="benchClients"/> benchmark hosts in client mode
    /// (the contenders on more than one host). The processes it starts get <paramref name="overrides"/> on top of their
    /// environment (those already running keep theirs).
    /// </summary>
    public async Task<(IReadOnlyList<HttpHost> WebHosts, IReadOnlyList<HttpHost> BenchClients)> ClusterAsync(
        int webHosts, int benchClients, IReadOnlyDictionary<string, string>? overrides = null)
    {
        Dictionary<string, string> EnvironmentWithOverrides()
        {
            var environment = ClusterEnvironment();
            foreach (var (key, value) in overrides ?? new Dictionary<string, string>())
            {
                environment[key] = value;
            }

            return environment;
        }

        while (_silos.Count < 2)
        {
            var environment = EnvironmentWithOverrides();
            var gateway = ChildProcess.FreePort();
            environment["Orleans__SiloPort"] = Port();
            environment["Orleans__GatewayPort"] = gateway.ToString(CultureInfo.InvariantCulture);
            var silo = Track(ChildProcess.Start($"silo-{_silos.Count + 1}", _env.SiloDll, [], environment, _env.WorkFolder));
            await silo.WaitUntilAsync(() => ChildProcess.IsListeningAsync(gateway), TimeSpan.FromSeconds(90));
            _silos.Add(silo);
        }

        while (_webHosts.Count < webHosts)
        {
            var environment = EnvironmentWithOverrides();
            environment["Orleans__Mode"] = "Client";
            _webHosts.Add(await StartHttpHostAsync($"webhost-{_webHosts.Count + 1}", _env.WebHostDll, [], environment));
        }

        while (_benchClients.Count < benchClients)
        {
            var environment = EnvironmentWithOverrides();
            environment["Orleans__Mode"] = "Client";
            _benchClients.Add(await StartHttpHostAsync($"bench-client-{_benchClients.Count + 1}", _env.SelfDll, ["serve"], environment));
        }

        return (_webHosts.Take(webHosts).ToList(), _benchClients.Take(benchClients).ToList());
    }

    /// <summary>One more src/WebHost in client mode of the cluster <see cref="ClusterAsync"/> started, with <paramref name="overrides"/>.</summary>
    public Task<HttpHost> StartClusterWebHostAsync(string name, IReadOnlyDictionary<string, string> overrides)
    {
        var environment = ClusterEnvironment();
        environment["Orleans__Mode"] = "Client";
        foreach (var (key, value) in overrides)
        {
            environment[key] = value;
        }

        return StartHttpHostAsync(name, _env.WebHostDll, [], environment);
    }

    /// <summary>Stops the hosts only the stampede needs, so they do not share the cores during the hit runs.</summary>
    public async Task StopExtraHostsAsync()
    {
        foreach (var host in _webHosts.Skip(1).Concat(_benchClients).ToList())
        {
            await StopHostAsync(host);
        }

        _webHosts.RemoveRange(1, Math.Max(0, _webHosts.Count - 1));
        _benchClients.Clear();
    }

    /// <summary>Stops one host this run started, and drops its HTTP client (a later host may reuse the name on another port).</summary>
    private async Task StopHostAsync(HttpHost host)
    {
        _processes.Remove(host.Process);
        await host.Process.DisposeAsync();
        _clients.Remove(host.Name, out var client);
        client?.Dispose();
    }

    /// <summary>Stops every host and silo this run started (hosts first, then the silos they are clients of), so the next scenario has the cores to itself.</summary>
    public async Task StopAllHostsAsync()
    {
        for (var i = _processes.Count - 1; i >= 0; i--)
        {
            await _processes[i].DisposeAsync();
        }

        foreach (var client in _clients.Values)
        {
            client.Dispose();
        }

        _processes.Clear();
        _clients.Clear();
        _coHosted = null;
        _webHosts.Clear();
        _benchClients.Clear();
        _silos.Clear();
        // A cluster started after this is a new one: snapshots the stopped one stored must not answer its reads.
        _clusterId = NewClusterId();
        await DropSlotsAsync();
    }

    private const string SlotNameKey = "StatsCache__Changes__SlotName";

    /// <summary>The replication slot of a cluster named <paramref name="owner"/> (a host's name or a cluster id), remembered to be dropped.</summary>
    private string SlotFor(string owner)
    {
        var slot = "bench_" + NotSlotCharacters().Replace(owner.ToLowerInvariant(), "_");
        slot = slot[..Math.Min(slot.Length, 63)];
        _slots.Add(slot);
        return slot;
    }

    [GeneratedRegex("[^a-z0-9_]")]
    private static partial Regex NotSlotCharacters();

    /// <summary>The slot a host's cluster streams when its change feed is on and reads the WAL (the default source).</summary>
    private static string? StreamedSlot(Dictionary<string, string> environment) =>
        environment.GetValueOrDefault("StatsCache__Changes__IsEnabled") is not "false"
        && environment.GetValueOrDefault("StatsCache__Changes__Source") is null or "Replication"
            ? environment.GetValueOrDefault(SlotNameKey)
            : null;

    /// <summary>
    /// Waits until <paramref name="slot"/> exists and a WAL sender streams it (pg_replication_slots.active), failing early if
    /// <paramref name="consumer"/> exits: a host is ready (readyz) before its silo has taken the slot, and writes before that
    /// would be missed by a slot created after them.
    /// </summary>
    public async Task WaitForSlotStreamedAsync(ChildProcess consumer, string slot)
    {
        await consumer.WaitUntilAsync(async () =>
        {
            await using var command = _db.CreateCommand("select coalesce(bool_or(active), false) from pg_replication_slots where slot_name = @slot");
            command.Parameters.AddWithValue("slot", slot);
            return (bool)(await command.ExecuteScalarAsync())!;
        }, TimeSpan.FromSeconds(60));
    }

    /// <summary>Drops the slots of this run's stopped clusters (their WAL senders end a moment after their processes do).</summary>
    private async Task DropSlotsAsync()
    {
        if (_slots.Count == 0)
        {
            return;
        }

        var names = _slots.ToArray();
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                await using var drop = _db.CreateCommand(
                    "select pg_drop_replication_slot(slot_name) from pg_replication_slots where slot_name = any(@names) and not active");
                drop.Parameters.AddWithValue("names", names);
                await drop.ExecuteNonQueryAsync();
            }
            catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.ObjectInUse)
            {
                // Taken again between the look and the drop: impossible once its host has stopped, but looked at again below.
            }

            await using var left = _db.CreateCommand("select count(*) from pg_replication_slots where slot_name = any(@names)");
            left.Parameters.AddWithValue("names", names);
            if ((long)(await left.ExecuteScalarAsync())! == 0)
            {
                break;
            }

            if (deadline.Elapsed > TimeSpan.FromSeconds(30))
            {
                throw new InvalidOperationException($"Replication slots of stopped hosts are still active after 30 s: {string.Join(", ", names)}.");
            }

            // Their WAL senders end a moment after their processes.
            await Task.Delay(TimeSpan.FromMilliseconds(100));
        }

        _slots.Clear();
    }

    private static string NewClusterId() => $"bench-{DateTimeOffset.UtcNow.ToUnixTimeMilliseconds()}-{Environment.ProcessId}";

    public HttpClient ClientFor(HttpHost host)
    {
        if (!_clients.TryGetValue(host.Name, out var client))
        {
            client = new HttpClient(new SocketsHttpHandler
            {
                MaxConnectionsPerServer = 4096,
                PooledConnectionIdleTimeout = TimeSpan.FromMinutes(10),
            })
            {
                BaseAddress = host.Url,
                Timeout = TimeSpan.FromSeconds(120),
            };
            _clients[host.Name] = client;
        }

        return client;
    }

    private async Task<HttpHost> StartHttpHostAsync(
        string name, string dll, string[] args, Dictionary<string, string> environment, string readinessPath = HealthExtensions.ReadinessPath)
    {
        var port = ChildProcess.FreePort();
        var url = new Uri($"http://127.0.0.1:{port}");
        environment["ASPNETCORE_URLS"] = url.ToString().TrimEnd('/');
        var process = Track(ChildProcess.Start(name, dll, args, environment, _env.WorkFolder));
        using var probe = new HttpClient { BaseAddress = url, Timeout = TimeSpan.FromSeconds(5) };
        await process.WaitUntilAsync(async () =>
        {
            try
            {
                using var response = await probe.GetAsync(readinessPath);
                return response.IsSuccessStatusCode;
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
            {
                return false;
            }
        }, TimeSpan.FromSeconds(120));
        Console.WriteLine($"   started {name} (pid {process.Id}) on {url}");
        return new HttpHost(name, url, process, StreamedSlot(environment));
    }

    private ChildProcess Track(ChildProcess process)
    {
        _processes.Add(process);
        return process;
    }

    private static string Port() => ChildProcess.FreePort().ToString(CultureInfo.InvariantCulture);
}
