using System.Diagnostics;
using System.Text.RegularExpressions;
using Npgsql;

namespace StatsCache.Benchmarks;

/// <summary>
/// The read replica of issue 24, for fresh's rounds with loads on it: a streaming replica of the bench's PostgreSQL that bench.sh
/// starts (BENCH_REPLICA), the hosts' setting that puts their loads on it, its replay paused and resumed, the loads it ran, and
/// the hosts' source metrics.
/// </summary>
public sealed partial class BenchRun
{
    private bool _replicaStopped;

    /// <summary>The setting that puts a host's loads on the replica (fenced by WAL position); null when the run has no replica.</summary>
    private Dictionary<string, string>? ReplicaOverrides() => _env.ReplicaConnectionString is { } replica && !_replicaStopped
        ? new Dictionary<string, string> { ["StatsCache__Source__Replicas__0"] = replica }
        : null;

    private NpgsqlDataSource Replica => _replicaStopped ? throw new InvalidOperationException("The replica was stopped.")
        : _replicaDb ?? throw new InvalidOperationException("The run has no replica (BENCH_REPLICA).");

    /// <summary>Stops the replica once fresh is done (the scenarios after it would share the cores with its replay); bench.sh removes it.</summary>
    public async Task StopReplicaAsync()
    {
        if (_env.ReplicaDataFolder is not { } folder || _replicaStopped)
        {
            return;
        }

        _replicaStopped = true;
        _replicaDb?.Clear();
        var start = new ProcessStartInfo("bash", ["-c", "source deploy/scripts/postgres.sh && pg_stop \"$1\"", "bash", folder])
        {
            WorkingDirectory = _env.Repository,
        };
        using var stop = Process.Start(start)!;
        await stop.WaitForExitAsync();
        Console.WriteLine($"   stopped the read replica ({(stop.ExitCode == 0 ? "its last user is done" : $"pg_stop exited {stop.ExitCode}")})");
    }

    /// <summary>Pauses the replica's replay: it answers, but its data stays as of now until <see cref="ResumeReplayAsync"/>.</summary>
    private async Task PauseReplayAsync()
    {
        await using var pause = Replica.CreateCommand("select pg_wal_replay_pause()");
        await pause.ExecuteNonQueryAsync();
    }

    /// <summary>Resumes the replica's replay and waits until it has replayed what the primary had flushed by then.</summary>
    private async Task ResumeReplayAsync()
    {
        await using (var resume = Replica.CreateCommand("select pg_wal_replay_resume()"))
        {
            await resume.ExecuteNonQueryAsync();
        }

        await using var primary = _db.CreateCommand("select pg_current_wal_flush_lsn()::text");
        var target = (string)(await primary.ExecuteScalarAsync())!;
        var waited = Stopwatch.StartNew();
        while (true)
        {
            await using var replayed = Replica.CreateCommand("select pg_last_wal_replay_lsn() >= @target::pg_lsn");
            replayed.Parameters.AddWithValue("target", target);
            if ((bool)(await replayed.ExecuteScalarAsync())!)
            {
                Console.WriteLine($"   replay resumed; the replica caught up in {waited.Elapsed.TotalSeconds:F1} s");
                return;
            }

            if (waited.Elapsed > TimeSpan.FromMinutes(2))
            {
                throw new InvalidOperationException($"The replica has not replayed {target} 2 minutes after its replay resumed.");
            }

            await Task.Delay(TimeSpan.FromMilliseconds(100));
        }
    }

    /// <summary>Starts counting the replica's loads from zero, as <see cref="ResetDatabaseLoadsAsync"/> does the primary's.</summary>
    private async Task ResetReplicaLoadsAsync()
    {
        await using var reset = Replica.CreateCommand("select pg_stat_statements_reset()");
        await reset.ExecuteNonQueryAsync();
    }

    /// <summary>
    /// The source's figures in a host's Prometheus text (meter StatsCache): loads by target and reason, fallbacks to the primary by
    /// reason, and the fence waits (count and seconds, by outcome). Empty when the host runs no loads (a cluster's web host).
    /// </summary>
    private async Task<Dictionary<string, double>> SourceMetricsAsync(HttpHost host)
    {
        var text = await ClientFor(host).GetStringAsync("/metrics");
        var figures = new Dictionary<string, double>(StringComparer.Ordinal);
        foreach (var line in text.Split('\n'))
        {
            var match = SourceMetricLine().Match(line);
            if (!match.Success)
            {
                continue;
            }

            var labels = Labels().Matches(match.Groups["labels"].Value)
                .Where(l => l.Groups[1].Value is "target" or "reason" or "outcome")
                .Select(l => $"{l.Groups[1].Value}={l.Groups[2].Value}");
            var key = $"{match.Groups["name"].Value}{{{string.Join(',', labels)}}}";
            figures[key] = figures.GetValueOrDefault(key) + double.Parse(match.Groups["value"].Value, Inv);
        }

        return figures;
    }

    /// <summary>What <see cref="SourceMetricsAsync"/> counted between two readings.</summary>
    private static Dictionary<string, double> Delta(Dictionary<string, double> before, Dictionary<string, double> after) =>
        after.ToDictionary(f => f.Key, f => f.Value - before.GetValueOrDefault(f.Key), StringComparer.Ordinal);

    [GeneratedRegex("""^(?<name>statscache_source_(?:loads_total|fallbacks_total|fence_wait_duration_seconds_(?:count|sum)))\{(?<labels>[^}]*)\} (?<value>\S+)""")]
    private static partial Regex SourceMetricLine();

    [GeneratedRegex("""(\w+)="([^"]*)"(?:,|$)""")]
    private static partial Regex Labels();
}
