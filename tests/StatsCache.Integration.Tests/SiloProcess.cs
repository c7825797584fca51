using System.Diagnostics;
using System.Globalization;

namespace StatsCache.Integration.Tests;

/// <summary>A real silo process (src/Silo) on ports of its own, killed when disposed unless stopped before.</summary>
public sealed class SiloProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly TaskCompletionSource _started = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly List<string> _output = [];

    private SiloProcess(Process process) => _process = process;

    public required int GatewayPort { get; init; }

    /// <summary>The silo-to-silo port: with the advertised address, the silo's row in the membership table (one per generation).</summary>
    public required int SiloPort { get; init; }

    public bool HasExited => _process.HasExited;

    public required string ClusterId { get; init; }

    /// <summary>
    /// Starts the silo built next to this test assembly's configuration and waits until it says it started.
    /// <paramref name="settings"/> are configuration keys (<c>Orleans:Membership</c>, ...) that override the
    /// defaults, including the fresh <c>Orleans:ClusterId</c> and ports this method picks.
    /// </summary>
    public static async Task<SiloProcess> StartAsync(string connectionString, IReadOnlyDictionary<string, string>? settings = null)
    {
        // tests/StatsCache.Integration.Tests/bin/{Configuration}/net10.0/ -> src/Silo/bin/{Configuration}/net10.0/
        var testBin = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar));
        var configuration = testBin.Parent!.Name;
        var repository = testBin.Parent.Parent!.Parent!.Parent!.Parent!.FullName;
        var silo = Path.Combine(repository, "src", "Silo", "bin", configuration, testBin.Name, "StatsCache.Silo.dll");

        var gatewayPort = StatsCacheFactory.FreePort();
        var clusterId = $"test-{Guid.NewGuid():N}";
        var start = new ProcessStartInfo("dotnet", ["exec", silo])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = Path.GetDirectoryName(silo)!,
        };
        start.Environment["ConnectionStrings__Stats"] = connectionString;
        start.Environment["Orleans__SiloPort"] = StatsCacheFactory.FreePort().ToString(CultureInfo.InvariantCulture);
        start.Environment["Orleans__GatewayPort"] = gatewayPort.ToString(CultureInfo.InvariantCulture);
        start.Environment["Orleans__ClusterId"] = clusterId;
        start.Environment["DOTNET_ENVIRONMENT"] = "Production";
        foreach (var (key, value) in settings ?? new Dictionary<string, string>())
        {
            start.Environment[key.Replace(":", "__", StringComparison.Ordinal)] = value;
        }

        var process = new SiloProcess(Process.Start(start)!)
        {
            GatewayPort = int.Parse(start.Environment["Orleans__GatewayPort"]!, CultureInfo.InvariantCulture),
            SiloPort = int.Parse(start.Environment["Orleans__SiloPort"]!, CultureInfo.InvariantCulture),
            ClusterId = start.Environment["Orleans__ClusterId"]!,
        };
        process._process.OutputDataReceived += (_, e) => process.OnOutput(e.Data);
        process._process.ErrorDataReceived += (_, e) => process.OnOutput(e.Data);
        process._process.BeginOutputReadLine();
        process._process.BeginErrorReadLine();
        process._process.EnableRaisingEvents = true;
        process._process.Exited += (_, _) => process._started.TrySetException(
            new InvalidOperationException($"The silo exited early:{Environment.NewLine}{process.Output}"));

        try
        {
            await process._started.Task.WaitAsync(TimeSpan.FromSeconds(30));
        }
        catch (TimeoutException)
        {
            await process.DisposeAsync();
            throw new TimeoutException($"The silo did not start within 30 s:{Environment.NewLine}{process.Output}");
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
    /// Stops the silo as an orchestrator would: SIGTERM, then waits for it to leave the cluster and exit.
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
                throw new TimeoutException($"The silo did not stop within {timeout ?? TimeSpan.FromSeconds(30)}:{Environment.NewLine}{Output}");
            }
        }

        return _process.ExitCode;
    }

    /// <summary>Sends the silo a signal: <c>STOP</c> hangs it without a word to the cluster, <c>CONT</c> lets it go on.</summary>
    public async Task SignalAsync(string signal)
    {
        using var kill = Process.Start("kill", [$"-{signal}", _process.Id.ToString(CultureInfo.InvariantCulture)])!;
        await kill.WaitForExitAsync();
    }

    /// <summary>Kills the silo with SIGKILL, as a crash or a lost node would: no goodbye to the cluster.</summary>
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
