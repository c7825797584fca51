using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Text.Json;
using Npgsql;
using StatsCache.WebHost.Auth;

namespace StatsCache.Integration.Tests.Network;

/// <summary>
/// What every network fault scenario shares, made once: the lab (three silo hosts, two web host hosts), a PostgreSQL of
/// its own that listens on the lab's subnet, and a catalog of one view whose TTL is short enough to check freshness.
/// </summary>
public sealed class FaultLab : IAsyncLifetime
{
    public const string View = "fault-stats";

    /// <summary>The view's TTL: how old an answer may be, once pushes stop, before the grain reloads it anyway.</summary>
    public static readonly TimeSpan ViewTtl = TimeSpan.FromSeconds(10);

    public static readonly string[] SiloHosts = ["silo1", "silo2", "silo3"];
    public static readonly string[] WebHosts = ["web1", "web2"];

    private TestCatalog? _catalog;

    public NetworkLab Network { get; private set; } = null!;

    public ThrowawayPostgres Postgres { get; private set; } = null!;

    public string CatalogPath => _catalog!.Path;

    /// <summary>The database as the lab's hosts reach it.</summary>
    public string LabConnectionString => Postgres.ConnectionStringAt(Network.HostAddress.ToString());

    public async Task InitializeAsync()
    {
        Network = await NetworkLab.CreateAsync([.. SiloHosts, .. WebHosts]);
        Postgres = new ThrowawayPostgres([$"listen_addresses=127.0.0.1,{Network.HostAddress}", "max_connections=300"]);
        await Postgres.InitializeAsync();
        await Postgres.TrustAsync(Network.Subnet);
        _catalog = TestCatalog.WithTables(
            """{ "orders": { "site": "website_id", "users": ["client_id", "writer_id"] } }""",
            TestCatalog.View(View, ViewTtl, "summary", "row",
                "select count(*) as orders, coalesce(sum(price), 0) as spent from orders where website_id = @site_id and client_id = @user_id",
                new Dictionary<string, string> { ["orders"] = "user" }));
    }

    public async Task DisposeAsync()
    {
        _catalog?.Dispose();
        if (Postgres is not null)
        {
            await Postgres.DisposeAsync();
        }

        if (Network is not null)
        {
            await Network.DisposeAsync();
        }
    }
}

/// <summary>
/// One scenario's cluster: silo processes in the lab's silo hosts and two web hosts (client mode) in its web host hosts,
/// on a cluster id and replication slot of their own; callers of the test's own read through the web hosts.
/// </summary>
public sealed class FaultCluster : IAsyncDisposable
{
    private readonly FaultLab _lab;
    private readonly string _slot = ReplicationSlots.NewName();
    private readonly AuthOptions _auth = new() { SigningKey = Convert.ToBase64String(Guid.NewGuid().ToByteArray()) + Convert.ToBase64String(Guid.NewGuid().ToByteArray()) };
    private readonly List<ServiceProcess> _silos = [];
    private readonly List<ServiceProcess> _webHosts = [];

    private FaultCluster(FaultLab lab) => _lab = lab;

    public string ClusterId { get; } = $"faults-{Guid.NewGuid():N}";

    public IReadOnlyList<ServiceProcess> Silos => _silos;

    public IReadOnlyList<ServiceProcess> WebHosts => _webHosts;

    public IEnumerable<ServiceProcess> Processes => _silos.Concat(_webHosts);

    /// <summary>Starts <paramref name="silos"/> silos and both web hosts, and returns once every silo is active and every web host ready.</summary>
    public static async Task<FaultCluster> StartAsync(FaultLab lab, int silos)
    {
        var cluster = new FaultCluster(lab);
        try
        {
            var settings = cluster.Settings();
            cluster._silos.AddRange(await Task.WhenAll(FaultLab.SiloHosts.Take(silos).Select(host =>
                ServiceProcess.StartSiloAsync(lab.LabConnectionString, settings, lab.Network[host]))));
            await cluster.WaitUntilAsync(async () => await cluster.ActiveSilosAsync() == silos, $"{silos} silos active");

            var webSettings = new Dictionary<string, string>(settings)
            {
                ["Orleans:Mode"] = "Client",
                ["Auth:SigningKey"] = cluster._auth.SigningKey!,
                ["StatsCache:RequestLimit:IsEnabled"] = "false", // the test's few callers stand for many
            };
            cluster._webHosts.AddRange(await Task.WhenAll(FaultLab.WebHosts.Select(host =>
                ServiceProcess.StartWebHostAsync(lab.LabConnectionString, webSettings, lab.Network[host]))));
            using var http = new HttpClient();
            foreach (var web in cluster._webHosts)
            {
                await cluster.WaitUntilAsync(
                    async () => (await http.GetAsync(new Uri(web.Url!, "/readyz"))).IsSuccessStatusCode, $"{web.Name} ready");
            }

            return cluster;
        }
        catch
        {
            await cluster.DisposeAsync();
            throw;
        }
    }

    public string TokenFor(long site, long user) =>
        TokenIssuer.Issue(_auth, new Caller(site, "client", user), TimeSpan.FromHours(1));

    /// <summary>The silo that streams the replication slot, by its log line (null while none does).</summary>
    public ServiceProcess? SlotHolder =>
        _silos.LastOrDefault(s => s.Output.Contains("This silo streams replication slot", StringComparison.Ordinal));

    /// <summary>Each silo's status in the membership table by its host's address (<c>Active</c>, <c>Dead</c>, ...), latest generation.</summary>
    public async Task<Dictionary<string, string>> MembershipAsync()
    {
        await using var command = _lab.Postgres.DataSource.CreateCommand(
            "select distinct on (Address) Address, Status from OrleansMembershipTable where DeploymentId = @cluster order by Address, Generation desc");
        command.Parameters.AddWithValue("cluster", ClusterId);
        await using var reader = await command.ExecuteReaderAsync();
        var statuses = new Dictionary<string, string>(StringComparer.Ordinal);
        while (await reader.ReadAsync())
        {
            statuses[reader.GetString(0)] = reader.GetInt32(1) switch
            {
                3 => "Active",
                4 => "ShuttingDown",
                5 => "Stopping",
                6 => "Dead",
                var other => other.ToString(CultureInfo.InvariantCulture),
            };
        }

        return statuses;
    }

    /// <summary>How many of a host's silo generations the membership table holds as dead (voted out).</summary>
    public async Task<long> DeadGenerationsAsync(LabHost host)
    {
        await using var command = _lab.Postgres.DataSource.CreateCommand(
            "select count(*) from OrleansMembershipTable where DeploymentId = @cluster and Address = @address and Status = 6");
        command.Parameters.AddWithValue("cluster", ClusterId);
        command.Parameters.AddWithValue("address", host.Address.ToString());
        return (long)(await command.ExecuteScalarAsync())!;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var process in Processes)
        {
            await process.DisposeAsync();
        }

        await ReplicationSlots.DropAsync(_lab.Postgres.ConnectionString, _slot);
    }

    private Dictionary<string, string> Settings() => new()
    {
        ["Orleans:Membership"] = "AdoNet",
        ["Orleans:Storage"] = "AdoNet",
        ["Orleans:ClusterId"] = ClusterId,
        ["StatsCache:Changes:SlotName"] = _slot,
        ["StatsCache:CatalogPath"] = _lab.CatalogPath,
    };

    private async Task<long> ActiveSilosAsync() =>
        (await MembershipAsync()).Values.Count(s => s == "Active");

    private async Task WaitUntilAsync(Func<Task<bool>> condition, string what)
    {
        var started = Stopwatch.StartNew();
        while (!await condition())
        {
            if (started.Elapsed > TimeSpan.FromSeconds(60))
            {
                throw new TimeoutException($"Waited 60 s for {what}.{Environment.NewLine}{string.Join(Environment.NewLine, Processes.Select(p => $"--- {p.Name}{Environment.NewLine}{p.Output}"))}");
            }

            await Task.Delay(TimeSpan.FromMilliseconds(100));
        }
    }
}

/// <summary>
/// The steady load of a scenario: callers reading the view through both web hosts, each a user of its own in turn, and one
/// writer adding an order to the users in turn at 100 a second, all recorded in a <see cref="FaultHistory"/>.
/// </summary>
public sealed class FaultWorkload : IAsyncDisposable
{
    public const int Users = 48;
    public const int Callers = 12;
    private static readonly TimeSpan ThinkTime = TimeSpan.FromMilliseconds(20);
    private static readonly TimeSpan WriteInterval = TimeSpan.FromMilliseconds(10);

    private readonly FaultLab _lab;
    private readonly FaultCluster _cluster;
    private readonly long _site;
    private readonly long[] _users;
    private readonly HttpClient _http = new() { Timeout = TimeSpan.FromSeconds(30) };
    private readonly CancellationTokenSource _stop = new();
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private readonly List<Task> _tasks = [];

    private FaultWorkload(FaultLab lab, FaultCluster cluster, long site, long[] users)
    {
        _lab = lab;
        _cluster = cluster;
        _site = site;
        _users = users;
        History = new FaultHistory(users.Length);
    }

    public FaultHistory History { get; }

    /// <summary>Time since the workload was made: the clock of every reading.</summary>
    public TimeSpan Now => _clock.Elapsed;

    /// <summary>Makes a website and its users (each with its first order), reads every user once through each web host, then starts the load.</summary>
    public static async Task<FaultWorkload> StartAsync(FaultLab lab, FaultCluster cluster)
    {
        var db = lab.Postgres.DataSource;
        var site = await ScalarAsync(db, "insert into websites (name, domain) values ('faults', @d) returning id", ("d", $"f{Guid.NewGuid():N}.example"));
        var users = new long[Users];
        for (var i = 0; i < Users; i++)
        {
            users[i] = await ScalarAsync(db,
                "insert into users (website_id, role, username, email, is_active, date_joined) values (@w, 'client', @u, @e, true, now()) returning id",
                ("w", site), ("u", $"u{Guid.NewGuid():N}"), ("e", $"{Guid.NewGuid():N}@example.com"));
            await InsertOrderAsync(db, site, users[i], FaultHistory.SignatureOf(i) + 1);
        }

        var workload = new FaultWorkload(lab, cluster, site, users);
        for (var web = 0; web < cluster.WebHosts.Count; web++)
        {
            for (var user = 0; user < Users; user++)
            {
                var reading = await workload.ReadAsync(caller: -1, web, user);
                if (reading.Status != 200)
                {
                    throw new InvalidOperationException($"Warming read of user {user} on web host {web} answered {reading.Status} {reading.Error}");
                }
            }
        }

        for (var caller = 0; caller < Callers; caller++)
        {
            var id = caller;
            workload._tasks.Add(Task.Run(() => workload.ReadLoopAsync(id)));
        }

        workload._tasks.Add(Task.Run(workload.WriteLoopAsync));
        return workload;
    }

    /// <summary>Stops the load and waits for every request in flight to end.</summary>
    public async Task StopAsync()
    {
        await _stop.CancelAsync();
        await Task.WhenAll(_tasks);
    }

    public async ValueTask DisposeAsync()
    {
        if (!_stop.IsCancellationRequested)
        {
            await StopAsync();
        }

        _http.Dispose();
        _stop.Dispose();
    }

    /// <summary>Caller <c>c</c> reads through web host <c>c % 2</c>, user after user.</summary>
    private async Task ReadLoopAsync(int caller)
    {
        var web = caller % _cluster.WebHosts.Count;
        for (var n = caller; !_stop.IsCancellationRequested; n += Callers)
        {
            History.Add(await ReadAsync(caller, web, n % Users));
            try
            {
                await Task.Delay(ThinkTime, _stop.Token);
            }
            catch (OperationCanceledException)
            {
            }
        }
    }

    private async Task<Reading> ReadAsync(int caller, int web, int user)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(_cluster.WebHosts[web].Url!, $"/api/dashboards/{FaultLab.View}"));
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", _cluster.TokenFor(_site, _users[user]));
        var sent = Now;
        try
        {
            // Not cancelled by the stop: a request in flight is waited for, so a hang shows as a slow answer.
            using var response = await _http.SendAsync(request);
            var body = await response.Content.ReadAsByteArrayAsync();
            var received = Now;
            var status = (int)response.StatusCode;
            if (status != 200)
            {
                return new Reading(caller, web, user, sent, received, status, 0, 0, false, response.Headers.RetryAfter is not null, null);
            }

            using var json = JsonDocument.Parse(body);
            var summary = json.RootElement.GetProperty("data").GetProperty("summary");
            return new Reading(caller, web, user, sent, received, status,
                summary.GetProperty("orders").GetInt64(), summary.GetProperty("spent").GetDecimal(), json.RootElement.GetProperty("stale").GetBoolean(),
                false, null);
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
        {
            return new Reading(caller, web, user, sent, Now, 0, 0, 0, false, false, $"{e.GetType().Name}: {e.Message}");
        }
    }

    private async Task WriteLoopAsync()
    {
        using var timer = new PeriodicTimer(WriteInterval);
        var db = _lab.Postgres.DataSource;
        for (var n = 0; await Ticked(timer); n++)
        {
            var user = n % Users;
            History.WriteStarting(user);
            await InsertOrderAsync(db, _site, _users[user], 1m);
            History.WriteAcknowledged(user, Now);
        }
    }

    private async Task<bool> Ticked(PeriodicTimer timer)
    {
        try
        {
            return await timer.WaitForNextTickAsync(_stop.Token);
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    private static Task InsertOrderAsync(NpgsqlDataSource db, long site, long client, decimal price) =>
        ScalarAsync(db,
            "insert into orders (website_id, client_id, status, price, pages, is_paid, created_at, deadline) " +
            "values (@w, @c, 'completed', @p, 1, true, now(), now() + interval '1 day') returning id",
            ("w", site), ("c", client), ("p", price));

    private static async Task<long> ScalarAsync(NpgsqlDataSource db, string sql, params (string Name, object Value)[] parameters)
    {
        await using var command = db.CreateCommand(sql);
        foreach (var (name, value) in parameters)
        {
            command.Parameters.AddWithValue(name, value);
        }

        return (long)(await command.ExecuteScalarAsync())!;
    }
}
