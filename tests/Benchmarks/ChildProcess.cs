using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;

namespace StatsCache.Benchmarks;

/// <summary>A process the driver started (a host or a silo): output to a log file, stopped with SIGTERM, killed if it lingers.</summary>
public sealed class ChildProcess : IAsyncDisposable
{
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<int, Process> Running = new();

    /// <summary>Kills, by id, every process this driver started and has not stopped yet (on Ctrl-C or SIGTERM).</summary>
    public static void KillAllStarted()
    {
        foreach (var process in Running.Values)
        {
            try
            {
                process.Kill(entireProcessTree: true);
            }
            catch (InvalidOperationException)
            {
                // Already gone.
            }
        }
    }

    private readonly Process _process;
    private readonly StreamWriter _log;
    private bool _closed;

    private ChildProcess(string name, Process process, StreamWriter log)
    {
        Name = name;
        _process = process;
        _log = log;
    }

    public string Name { get; }

    public int Id => _process.Id;

    public string LogPath { get; private init; } = "";

    public static ChildProcess Start(string name, string dll, IReadOnlyList<string> args, IReadOnlyDictionary<string, string> environment, string logFolder) =>
        StartProgram(name, "dotnet", ["exec", dll, .. args], environment, logFolder, Path.GetDirectoryName(dll)!);

    /// <summary>Any program (<see cref="Start"/> runs a .NET assembly), with its output in <paramref name="logFolder"/>/<paramref name="name"/>.log.</summary>
    public static ChildProcess StartProgram(
        string name, string program, IReadOnlyList<string> args, IReadOnlyDictionary<string, string> environment, string logFolder, string workingDirectory)
    {
        var start = new ProcessStartInfo(program, args)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = workingDirectory,
        };
        foreach (var (key, value) in environment)
        {
            start.Environment[key] = value;
        }

        var logPath = Path.Combine(logFolder, $"{name}.log");
        var log = new StreamWriter(logPath) { AutoFlush = true };
        var process = Process.Start(start) ?? throw new InvalidOperationException($"Could not start {name}.");
        var child = new ChildProcess(name, process, log) { LogPath = logPath };
        Running[process.Id] = process;
        process.OutputDataReceived += (_, e) => child.Write(e.Data);
        process.ErrorDataReceived += (_, e) => child.Write(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return child;
    }

    public bool HasExited => _process.HasExited;

    /// <summary>Waits for the process to end by itself; returns its exit code.</summary>
    public async Task<int> WaitForExitAsync(TimeSpan timeout)
    {
        using var deadline = new CancellationTokenSource(timeout);
        await _process.WaitForExitAsync(deadline.Token);
        _process.WaitForExit(); // drains the redirected output
        return _process.ExitCode;
    }

    // A poll with a deadline (below), not a wait for things to settle.
    private static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(200);

    /// <summary>Polls <paramref name="ready"/> until it is true, failing early if the process exits.</summary>
    public async Task WaitUntilAsync(Func<Task<bool>> ready, TimeSpan timeout)
    {
        var deadline = Stopwatch.StartNew();
        while (deadline.Elapsed < timeout)
        {
            if (_process.HasExited)
            {
                throw new InvalidOperationException($"{Name} exited with {_process.ExitCode}; see {LogPath}.");
            }

            if (await ready())
            {
                return;
            }

            await Task.Delay(PollInterval);
        }

        throw new TimeoutException($"{Name} was not ready within {timeout.TotalSeconds:F0} s; see {LogPath}.");
    }

    public static async Task<bool> IsListeningAsync(int port)
    {
        using var client = new TcpClient();
        try
        {
            await client.ConnectAsync("127.0.0.1", port);
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    public static int FreePort()
    {
        using var listener = new TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        return ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            using (var term = Process.Start("kill", ["-TERM", _process.Id.ToString(CultureInfo.InvariantCulture)]))
            {
                await term.WaitForExitAsync();
            }

            using var grace = new CancellationTokenSource(TimeSpan.FromSeconds(15));
            try
            {
                await _process.WaitForExitAsync(grace.Token);
            }
            catch (OperationCanceledException)
            {
                _process.Kill(entireProcessTree: true);
                await _process.WaitForExitAsync();
            }
        }

        Running.TryRemove(_process.Id, out _);
        _process.Dispose();
        lock (_log)
        {
            _closed = true;
            _log.Dispose();
        }
    }

    private void Write(string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (_log)
        {
            if (!_closed)
            {
                _log.WriteLine(line);
            }
        }
    }
}
