using System.Diagnostics;
using System.Globalization;

using StatsCache.Integration.Tests.Network;

namespace StatsCache.Integration.Tests;

/// <summary>
/// A real process of the service (a silo, src/Silo, or a web host, src/WebHost), built next to this test assembly's
/// configuration, on ports of its own; in a <see cref="LabHost"/>'s network namespace when given one. Killed when
/// disposed unless stopped before.
/// </summary>
public sealed class ServiceProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly TaskCompletionSource _started = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly List<string> _output = [];

    private ServiceProcess(Process process) => _process = process;

    /// <summary>The silo's gateway port (silos only).</summary>
    public int GatewayPort { get; private init; }

    /// <summary>The silo's silo-to-silo port (silos only).</summary>
    public int SiloPort { get; private init; }

    /// <summary>The silo's cluster (silos only): the one in its settings, or a fresh one.</summary>
    public string? ClusterId { get; private init; }

    /// <summary>Where the web host serves HTTP (web hosts only).</summary>
    public Uri? Url { get; private init; }

    public required string Name { get; init; }

    public bool HasExited => _process.HasExited;

    /// <summary>
    /// Starts a silo and waits until it says it started. <paramref name="settings"/> are configuration keys
    /// (<c>Orleans:Membership</c>, ...) that override the defaults, including the fresh <c>Orleans:ClusterId</c>
    /// and the ports this method picks. In a lab host the silo uses Orleans' default ports and advertises the host's address.
    /// </summary>
    public static Task<ServiceProcess> StartSiloAsync(
        string connectionString, IReadOnlyDictionary<string, string>? settings = null, LabHost? host = null)
    {
        var siloPort = host is null ? StatsCacheFactory.FreePort() : 11111;
        var gatewayPort = host is null ? StatsCacheFactory.FreePort() : 30000;
        var environment = new Dictionary<string, string>
        {
            ["Orleans:SiloPort"] = siloPort.ToString(CultureInfo.InvariantCulture),
            ["Orleans:GatewayPort"] = gatewayPort.ToString(CultureInfo.InvariantCulture),
        };
        var clusterId = settings?.GetValueOrDefault("Orleans:ClusterId") ?? $"test-{Guid.NewGuid():N}";
        environment["Orleans:ClusterId"] = clusterId;
        if (host is not null)
        {
            environment["Orleans:AdvertisedAddress"] = host.Address.ToString();
        }

        return StartAsync("Silo", "StatsCache.Silo.dll", connectionString, environment, settings, host, process => new ServiceProcess(process)
        {
            Name = host?.Name ?? "silo",
            SiloPort = siloPort,
            GatewayPort = gatewayPort,
            ClusterId = clusterId,
        });
    }

    /// <summary>Starts a web host in a lab host, serving HTTP on the host's address, and waits until it says it started.</summary>
    public static Task<ServiceProcess> StartWebHostAsync(string connectionString, IReadOnlyDictionary<string, string> settings, LabHost host)
    {
        var url = new Uri($"http://{host.Address}:8080");
        var environment = new Dictionary<string, string> { ["urls"] = url.ToString() };
        return StartAsync("WebHost", "StatsCache.WebHost.dll", connectionString, environment, settings, host, process => new ServiceProcess(process)
        {
            Name = host.Name,
            Url = url,
        });
    }

    private static async Task<ServiceProcess> StartAsync(
        string project,
        string assembly,
        string connectionString,
        Dictionary<string, string> environment,
        IReadOnlyDictionary<string, string>? settings,
        LabHost? host,
        Func<Process, ServiceProcess> create)
    {
        // tests/StatsCache.Integration.Tests/bin/{Configuration}/net10.0/ -> src/{project}/bin/{Configuration}/net10.0/
        var testBin = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar));
        var configuration = testBin.Parent!.Name;
        var repository = testBin.Parent.Parent!.Parent!.Parent!.Parent!.FullName;
        var path = Path.Combine(repository, "src", project, "bin", configuration, testBin.Name, assembly);

        var start = NetworkLab.StartInfo(host, "dotnet", ["exec", path]);
        start.RedirectStandardOutput = true;
        start.RedirectStandardError = true;
        start.WorkingDirectory = Path.GetDirectoryName(path)!;
        start.Environment["ConnectionStrings__Stats"] = connectionString;
        start.Environment["DOTNET_ENVIRONMENT"] = "Production";
        start.Environment["ASPNETCORE_ENVIRONMENT"] = "Production";
        start.Environment["Logging__Console__TimestampFormat"] = "HH:mm:ss.fff "; // to line up the processes' logs
        foreach (var (key, value) in environment.Concat(settings ?? new Dictionary<string, string>()))
        {
            start.Environment[key.Replace(":", "__", StringComparison.Ordinal)] = value;
        }

        var process = create(Process.Start(start)!);
        process._process.OutputDataReceived += (_, e) => process.OnOutput(e.Data);
        process._process.ErrorDataReceived += (_, e) => process.OnOutput(e.Data);
        process._process.BeginOutputReadLine();
        process._process.BeginErrorReadLine();
        process._process.EnableRaisingEvents = true;
        process._process.Exited += (_, _) => process._started.TrySetException(
            new InvalidOperationException($"{process.Name} exited early:{Environment.NewLine}{process.Output}"));

        try
        {
            await process._started.Task.WaitAsync(TimeSpan.FromSeconds(30));
        }
        catch (TimeoutException)
        {
            await process.DisposeAsync();
            throw new TimeoutException($"{process.Name} did not start within 30 s:{Environment.NewLine}{process.Output}");
        }

        return process;
    }

    public string Output
    {
        get
        {
            lock (_output)
            {
                return string.Join(Environment.NewLine, _output);
            }
        }
    }

    /// <summary>
    /// Stops the process as an orchestrator would: SIGTERM, then waits for it to exit (a silo leaves the cluster first).
    /// Returns its exit code (0 for a clean shutdown).
    /// </summary>
    public async Task<int> StopAsync(TimeSpan? timeout = null)
    {
        if (!_process.HasExited)
        {
            // Process.Kill is SIGKILL; a graceful stop needs SIGTERM, which the .NET host turns into a shutdown.
            await SignalAsync("TERM");

            using var deadline = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(30));
            try
            {
                await _process.WaitForExitAsync(deadline.Token);
            }
            catch (OperationCanceledException)
            {
                throw new TimeoutException($"{Name} did not stop within {timeout ?? TimeSpan.FromSeconds(30)}:{Environment.NewLine}{Output}");
            }
        }

        return _process.ExitCode;
    }

    /// <summary>Sends the process a signal: <c>STOP</c> hangs it without a word to the cluster, <c>CONT</c> lets it go on.</summary>
    public async Task SignalAsync(string signal)
    {
        using var kill = Process.Start("kill", [$"-{signal}", _process.Id.ToString(CultureInfo.InvariantCulture)])!;
        await kill.WaitForExitAsync();
    }

    /// <summary>Kills the process with SIGKILL, as a crash or a lost node would: no goodbye to the cluster.</summary>
    public async Task KillAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }
    }

    public async ValueTask DisposeAsync()
    {
        await KillAsync();
        _process.Dispose();
    }

    private void OnOutput(string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (_output)
        {
            _output.Add(line);
        }

        if (line.Contains("Application started", StringComparison.Ordinal))
        {
            _started.TrySetResult();
        }
    }
}
