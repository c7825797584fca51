using System.Diagnostics;
using System.Runtime.InteropServices;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace StatsCache.Silo;

/// <summary>
/// Runs silo hosts one after another: when a host stopped because the cluster declared its silo dead, a fresh host
/// (a new silo generation, same configuration and ports) starts after a back-off; otherwise the process exits, 0 after
/// SIGTERM or Ctrl-C, 1 after a fatal error or too many rejoins.
/// </summary>
public static partial class SiloRejoinLoop
{
    /// <summary>How long a declared-dead silo may take to stop: it is out of the cluster already, its grains live elsewhere.</summary>
    public static readonly TimeSpan DeadSiloStopTimeout = TimeSpan.FromSeconds(5);

    /// <summary>Rejoins within <see cref="RejoinWindow"/> beyond which the process exits 1 instead (a supervisor or a human looks).</summary>
    public const int MaxRejoinsInWindow = 5;

    public static readonly TimeSpan RejoinWindow = TimeSpan.FromMinutes(10);

    /// <summary>The wait before the first rejoin of a window, doubled for each further one (1, 2, 4, 8, 16 s).</summary>
    public static readonly TimeSpan FirstRejoinDelay = TimeSpan.FromSeconds(1);

    public static async Task<int> RunAsync(Func<SiloGeneration, IHost> buildHost)
    {
        // The hosts' console lifetimes stop the host on these signals; this also keeps a stopping process from starting
        // another silo, and stops it between two hosts, when no host listens.
        using var shutdown = new CancellationTokenSource();
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, Shutdown);
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, Shutdown);
        using var sigquit = PosixSignalRegistration.Create(PosixSignal.SIGQUIT, Shutdown);

        var rejoinedAt = new List<DateTime>();
        for (var generation = new SiloGeneration(rejoins: 0); ; generation = new SiloGeneration(rejoinedAt.Count))
        {
            var host = buildHost(generation);
            var logger = host.Services.GetRequiredService<ILoggerFactory>().CreateLogger(typeof(SiloRejoinLoop));
            var stopped = false;
            try
            {
                if (generation.Rejoins > 0)
                {
                    LogRejoining(logger, generation.Rejoins);
                }

                await host.StartAsync(shutdown.Token);
                stopped = await StopWhenAskedAsync(host, generation, logger);
            }
            catch (OperationCanceledException) when (shutdown.IsCancellationRequested)
            {
                stopped = true; // SIGTERM while starting
            }
            catch (Exception e) when (generation.Rejoins > 0 && !shutdown.IsCancellationRequested)
            {
                // The first silo's start failures end the process as before; a rejoin's (say, the partition is back)
                // is one more rejoin, after a longer wait.
                LogRejoinFailed(logger, e, generation.Rejoins);
                generation.TryRecordStop(SiloStop.Rejoin);
                stopped = true;
            }
            finally
            {
                if (stopped)
                {
                    await DisposeAsync(host);
                }
            }

            if (!stopped)
            {
                return 1; // the host did not stop in time: leave it to the process exit (logged)
            }

            if (shutdown.IsCancellationRequested || generation.Stop == SiloStop.Requested)
            {
                return Environment.ExitCode; // 0 unless the host set one (a background service that failed)
            }

            if (generation.Stop == SiloStop.Fatal)
            {
                return 1;
            }

            var now = DateTime.UtcNow;
            var recent = rejoinedAt.Count(t => now - t < RejoinWindow);
            if (recent >= MaxRejoinsInWindow)
            {
                await Console.Error.WriteLineAsync(
                    $"The silo was declared dead {recent + 1} times within {RejoinWindow.TotalMinutes:F0} minutes: the process exits with code 1 instead of rejoining again.");
                return 1;
            }

            rejoinedAt.Add(now);
            try
            {
                await Task.Delay(FirstRejoinDelay * Math.Pow(2, recent), shutdown.Token);
            }
            catch (OperationCanceledException)
            {
                return 0; // SIGTERM between two hosts
            }
        }

        void Shutdown(PosixSignalContext context)
        {
            shutdown.Cancel();
            context.Cancel = true; // the host stops and Main returns; not the runtime's default (exit at once)
        }
    }

    /// <summary>Waits for the host to be asked to stop, then stops it: bounded for a dead silo. False if it did not stop in time.</summary>
    private static async Task<bool> StopWhenAskedAsync(IHost host, SiloGeneration generation, ILogger logger)
    {
        var stopping = host.Services.GetRequiredService<IHostApplicationLifetime>().ApplicationStopping;
        var asked = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using (stopping.Register(() => asked.TrySetResult()))
        {
            await asked.Task;
        }

        // SIGTERM: the host's own ShutdownTimeout, for grains to hand off. A dead or failed silo: a few seconds, cancelled
        // after that (Orleans then stops without deactivating grains gracefully), so a half-connected silo does not hang.
        var bound = generation.Stop == SiloStop.Requested
            ? host.Services.GetRequiredService<IOptions<HostOptions>>().Value.ShutdownTimeout
            : DeadSiloStopTimeout;
        using var timeout = new CancellationTokenSource(bound);
        var started = Stopwatch.GetTimestamp();
        try
        {
            await host.StopAsync(timeout.Token).WaitAsync(bound + TimeSpan.FromSeconds(5));
            if (generation.Stop != SiloStop.Requested)
            {
                LogStopped(logger, Stopwatch.GetElapsedTime(started).TotalMilliseconds, bound.TotalSeconds);
            }
        }
        catch (TimeoutException)
        {
            LogStopHung(logger, bound.TotalSeconds + 5);
            return false;
        }
        catch (Exception e)
        {
            LogStopFailed(logger, e);
        }

        return true;
    }

    private static async Task DisposeAsync(IHost host)
    {
        if (host is IAsyncDisposable disposable)
        {
            await disposable.DisposeAsync();
        }
        else
        {
            host.Dispose();
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Rejoining the cluster as a new silo (rejoin {Rejoin} of this process).")]
    private static partial void LogRejoining(ILogger logger, int rejoin);

    [LoggerMessage(Level = LogLevel.Error, Message = "Rejoin {Rejoin} failed to start the new silo; trying again after a longer wait.")]
    private static partial void LogRejoinFailed(ILogger logger, Exception exception, int rejoin);

    [LoggerMessage(Level = LogLevel.Information, Message = "The silo host stopped in {Milliseconds:F0} ms (bound {Seconds} s).")]
    private static partial void LogStopped(ILogger logger, double milliseconds, double seconds);

    [LoggerMessage(Level = LogLevel.Critical, Message = "The silo host did not stop within {Seconds} s: the process exits with code 1.")]
    private static partial void LogStopHung(ILogger logger, double seconds);

    [LoggerMessage(Level = LogLevel.Warning, Message = "The silo host's stop ended with an error.")]
    private static partial void LogStopFailed(ILogger logger, Exception exception);
}
