using System.Diagnostics;
using System.Globalization;

namespace StatsCache.Integration.Tests;

/// <summary>A real silo process (src/Silo) on ports of its own, stopped when disposed.</summary>
public sealed class SiloProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly TaskCompletionSource _started = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly List<string> _output = [];

    private SiloProcess(Process process) => _process = process;

    public required int GatewayPort { get; init; }

    public required string ClusterId { get; init; }

    /// <summary>Starts the silo built next to this test assembly's configuration and waits until it says it started.</summary>
    public static async Task<SiloProcess> StartAsync(string connectionString)
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

        var process = new SiloProcess(Process.Start(start)!) { GatewayPort = gatewayPort, ClusterId = clusterId };
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

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }

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
