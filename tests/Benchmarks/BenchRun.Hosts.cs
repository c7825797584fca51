using System.Globalization;

namespace StatsCache.Benchmarks;

/// <summary>A web host the driver started, and its base address.</summary>
public sealed record HttpHost(string Name, Uri Url, ChildProcess Process);

public sealed partial class BenchRun
{
    private string _clusterId = NewClusterId();
    private readonly List<int> _gatewayPorts = [];
    private readonly List<HttpHost> _webHosts = [];
    private readonly List<HttpHost> _benchClients = [];
    private HttpHost? _coHosted;

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
        [BenchHost.BarePayloadPathKey.Replace(":", "__", StringComparison.Ordinal)] = BarePayloadPath,
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
        return environment;
    }

    /// <summary>The benchmark host with its in-process silo (StatsCache as shipped by default) and the contenders.</summary>
    public async Task<HttpHost> CoHostedAsync() => _coHosted ??= await StartCoHostedAsync("bench-host", new Dictionary<string, string>());

    /// <summary>
    /// A benchmark host with its in-process silo as <see cref="CoHostedAsync"/> starts it, but of the caller's own
    /// (named <paramref name="name"/>, <paramref name="overrides"/> on top of its environment); stop it with <see cref="StopAllHostsAsync"/>.
    /// </summary>
    public Task<HttpHost> StartCoHostedAsync(string name, IReadOnlyDictionary<string, string> overrides)
    {
        var environment = CommonEnvironment();
        environment["Orleans__Mode"] = "CoHosted";
        environment["Orleans__SiloPort"] = Port();
        environment["Orleans__GatewayPort"] = Port();
        foreach (var (key, value) in overrides)
        {
            environment[key] = value;
        }

        return StartHttpHostAsync(name, _env.SelfDll, ["serve"], environment);
    }

    /// <summary>
    /// Two src/Silo processes (AdoNet membership and storage, as ./run.sh --cluster 2), <paramref name="webHosts"/>
    /// src/WebHost processes in client mode, and <paramref name="benchClients"/> benchmark hosts in client mode
    /// (the contenders on more than one host).
    /// </summary>
    public async Task<(IReadOnlyList<HttpHost> WebHosts, IReadOnlyList<HttpHost> BenchClients)> ClusterAsync(int webHosts, int benchClients)
    {
        while (_gatewayPorts.Count < 2)
        {
            var environment = ClusterEnvironment();
            var gateway = ChildProcess.FreePort();
            environment["Orleans__SiloPort"] = Port();
            environment["Orleans__GatewayPort"] = gateway.ToString(CultureInfo.InvariantCulture);
            var silo = Track(ChildProcess.Start($"silo-{_gatewayPorts.Count + 1}", _env.SiloDll, [], environment, _env.WorkFolder));
            await silo.WaitUntilAsync(() => ChildProcess.IsListeningAsync(gateway), TimeSpan.FromSeconds(90));
            _gatewayPorts.Add(gateway);
        }

        while (_webHosts.Count < webHosts)
        {
            var environment = ClusterEnvironment();
            environment["Orleans__Mode"] = "Client";
            _webHosts.Add(await StartHttpHostAsync($"webhost-{_webHosts.Count + 1}", _env.WebHostDll, [], environment));
        }

        while (_benchClients.Count < benchClients)
        {
            var environment = ClusterEnvironment();
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
        _gatewayPorts.Clear();
        // A cluster started after this is a new one: snapshots the stopped one stored must not answer its reads.
        _clusterId = NewClusterId();
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

    private async Task<HttpHost> StartHttpHostAsync(string name, string dll, string[] args, Dictionary<string, string> environment)
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
                using var response = await probe.GetAsync("/readyz");
                return response.IsSuccessStatusCode;
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
            {
                return false;
            }
        }, TimeSpan.FromSeconds(120));
        Console.WriteLine($"   started {name} (pid {process.Id}) on {url}");
        return new HttpHost(name, url, process);
    }

    private ChildProcess Track(ChildProcess process)
    {
        _processes.Add(process);
        return process;
    }

    private static string Port() => ChildProcess.FreePort().ToString(CultureInfo.InvariantCulture);
}
