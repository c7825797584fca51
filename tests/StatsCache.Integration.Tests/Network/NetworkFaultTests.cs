using System.Globalization;
using Xunit.Abstractions;

namespace StatsCache.Integration.Tests.Network;

/// <summary>
/// Network faults between the hosts of a real cluster (silos and web hosts in network namespaces of a
/// <see cref="NetworkLab"/>, PostgreSQL on this machine), under steady reads through both web hosts and 100 writes a
/// second. Each scenario checks its whole history (<see cref="FaultHistory"/>): no wrong answer, no answer older than the
/// freshness bound unless marked stale, every request answered within the bound, every write made during the fault
/// visible within 5 s of the heal, no process dead. Each prints its row of the table in docs/faults.md.
/// </summary>
[Collection(DatabaseCollection.Name)]
public sealed class NetworkFaultTests(FaultLab lab, ITestOutputHelper output) : IClassFixture<FaultLab>
{
    /// <summary>The near-cache's lease (<c>StatsCache:NearCache:LeaseDuration</c>, default).</summary>
    private static readonly TimeSpan Lease = TimeSpan.FromSeconds(5);

    /// <summary>How old an answer not marked stale may be: the lease, then the view's TTL.</summary>
    private static readonly TimeSpan FreshnessBound = Lease + FaultLab.ViewTtl;

    /// <summary>The longest a caller may wait for an answer (200 or 503): the shipped StatsCache:Api:GrainRetryTimeout and a second (docs/faults.md).</summary>
    private static readonly TimeSpan AnswerBound = new StatsCache.WebHost.Api.ApiOptions().GrainRetryTimeout + TimeSpan.FromSeconds(1);

    private static readonly TimeSpan Recovery = TimeSpan.FromSeconds(5);
    private static readonly TimeSpan Before = TimeSpan.FromSeconds(5);
    private static readonly TimeSpan After = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task OneSiloCutOffFromEverything()
    {
        await using var cluster = await FaultCluster.StartAsync(lab, silos: 3);
        var cut = lab.Network["silo2"];
        var run = await RunAsync(cluster, "1. one silo of three cut off from everything", TimeSpan.FromSeconds(30), [Fault.Isolate(cut)], cut);
        AssertHeld(run);
    }

    [Fact]
    public async Task OneWebHostCutOffFromTheSilos()
    {
        await using var cluster = await FaultCluster.StartAsync(lab, silos: 3);
        var web1 = lab.Network["web1"];
        var silos = FaultLab.SiloHosts.Select(h => lab.Network[h]).ToArray();
        var run = await RunAsync(cluster, "2. one web host cut off from the silos", TimeSpan.FromSeconds(30), [Fault.Between(web1, silos)], null,
            healthySide: r => r.WebHost == 1);
        AssertHeld(run);

        // The other web host's callers did not notice; the cut one's stopped getting answers from memory within the lease.
        var readings = run.History.Readings;
        var healthy = readings.Where(r => r.WebHost == 1 && r.Sent >= run.FaultStart && r.Sent < run.Healed).ToList();
        Assert.True(healthy.All(r => r.Status == 200), $"{healthy.Count(r => r.Status != 200)} non-200 answers on the healthy web host");
        var lateFromMemory = readings.Where(r => r.WebHost == 0 && r.Status == 200
            && r.Received > run.FaultStart + Lease + TimeSpan.FromSeconds(1) && r.Received < run.Healed).ToList();
        Assert.True(lateFromMemory.Count == 0,
            $"{lateFromMemory.Count} answers from the cut web host later than the lease, the last at {lateFromMemory.LastOrDefault().Received - run.FaultStart}");
    }

    [Fact]
    public async Task SiloHoldingTheChangeFeedCutOffFromPostgres()
    {
        await using var cluster = await FaultCluster.StartAsync(lab, silos: 3);
        var holder = cluster.SlotHolder ?? throw new InvalidOperationException("No silo streams the slot.");
        var cut = lab.Network[holder.Name];
        var run = await RunAsync(cluster, "3. the change feed's silo cut off from PostgreSQL", TimeSpan.FromSeconds(30),
            [Fault.FromMachinePort(cut, "PostgreSQL", lab.Postgres.Port)], null);
        AssertHeld(run);
        Assert.Equal(0, run.Verdict.NonOk); // every entry was cached: its silo answers it, stale when it cannot reload
    }

    [Fact]
    public async Task DelayAndLossOnEveryLink()
    {
        await using var cluster = await FaultCluster.StartAsync(lab, silos: 3);
        var run = await RunAsync(cluster, "4. 200 ms delay and 5 % loss on every link", TimeSpan.FromSeconds(60),
            [Fault.Degrade(TimeSpan.FromMilliseconds(200), 0.05)], null);
        AssertHeld(run);
    }

    [Fact]
    public async Task OneWayCutOfASilosPorts()
    {
        // The cut that once got the healthy silo of two voted dead: with three silos, nobody reachable is voted dead (no Dead
        // generation in the membership table, which a rejoin would leave behind).
        await using var cluster = await OneWayCutOfSilo2Async(silos: 3, "5. packets to one silo's ports dropped (one-way)");
        foreach (var reachable in new[] { "silo1", "silo3" })
        {
            Assert.Equal(0, await cluster.DeadGenerationsAsync(lab.Network[reachable]));
        }
    }

    [Fact]
    public async Task OneWayCutOfOneOfTwoSilosIsServedThroughAndBothSilosAreActiveAfterTheHeal()
    {
        // The same cut on two silos, where one vote evicts and the cut silo and the healthy one race to vote each other dead:
        // the cut silo (it hears nothing) usually loses, but not always (twice in a row in CI runs of the 2-core build
        // machine). Either way the service answers through it as in every scenario, and the silo voted dead rejoins.
        await using var cluster = await OneWayCutOfSilo2Async(silos: 2, "6. two silos: packets to one silo's ports dropped (one way)");
        var membership = await cluster.MembershipAsync();
        Assert.All(new[] { "silo1", "silo2" }, h => Assert.Equal("Active", membership[lab.Network[h].Address.ToString()]));
        output.WriteLine($"the healthy silo was voted dead {await cluster.DeadGenerationsAsync(lab.Network["silo1"])} time(s)");
    }

    /// <summary>Packets to silo 2's silo and gateway ports dropped for 30 s, while it can still send and reach PostgreSQL.</summary>
    private async Task<FaultCluster> OneWayCutOfSilo2Async(int silos, string name)
    {
        var cluster = await FaultCluster.StartAsync(lab, silos);
        try
        {
            var silo2 = cluster.Silos[1];
            AssertHeld(await RunAsync(cluster, name, TimeSpan.FromSeconds(30), [Fault.IncomingTo(lab.Network["silo2"], silo2.SiloPort, silo2.GatewayPort)], null));
            return cluster;
        }
        catch
        {
            await cluster.DisposeAsync();
            throw;
        }
    }

    /// <summary>
    /// Runs the load, sets <paramref name="faults"/> for <paramref name="duration"/>, heals and runs on; prints the scenario's row
    /// of docs/faults.md. The longest gap is over the callers of <paramref name="healthySide"/> (default: all of them).
    /// </summary>
    private async Task<ScenarioRun> RunAsync(
        FaultCluster cluster, string name, TimeSpan duration, Fault[] faults, LabHost? expectedDead, Func<Reading, bool>? healthySide = null)
    {
        await using var workload = await FaultWorkload.StartAsync(lab, cluster);
        await Task.Delay(Before);

        var faultStart = workload.Now;
        lab.Network.Set(faults);
        output.WriteLine($"fault at {DateTime.UtcNow:HH:mm:ss.fff}");
        TimeSpan? declaredDead = null;
        var membership = new Dictionary<string, string>();
        while (workload.Now < faultStart + duration)
        {
            membership = await cluster.MembershipAsync();
            if (declaredDead is null && expectedDead is not null && membership.GetValueOrDefault(expectedDead.Address.ToString()) == "Dead")
            {
                declaredDead = workload.Now - faultStart;
            }

            await Task.Delay(TimeSpan.FromMilliseconds(100));
        }

        var healed = workload.Now;
        lab.Network.Heal();
        output.WriteLine($"healed at {DateTime.UtcNow:HH:mm:ss.fff}");
        await Task.Delay(After);
        await workload.StopAsync();

        var verdict = workload.History.Check(FreshnessBound, faultStart, healed);
        var healthyGap = FaultHistory.LongestGap(workload.History.Readings.Where(healthySide ?? (_ => true)), faultStart, workload.Now);
        var row = string.Create(CultureInfo.InvariantCulture,
            $"| {name} | {verdict.Requests} | {verdict.NonOk} | {healthyGap.TotalSeconds:F1} s | {verdict.Wrong.Count} | {verdict.Stale} | " +
            $"{verdict.Slowest.TotalSeconds:F1} s | {(verdict.Recovered is { } r ? $"{r.TotalSeconds:F1} s" : "never")} | " +
            $"{(declaredDead is { } d ? $"{d.TotalSeconds:F1} s" : "–")} |");
        output.WriteLine(row);
        output.WriteLine($"{name}: {verdict}; {workload.History.Writes} writes; switch {lab.Network.Counts}; membership at the heal: {string.Join(", ", membership.Select(p => $"{p.Key} {p.Value}"))}");
        // STATSCACHE_FAULT_LOGS=folder keeps every process's output and the table's rows.
        if (Environment.GetEnvironmentVariable("STATSCACHE_FAULT_LOGS") is { Length: > 0 } logs)
        {
            Directory.CreateDirectory(logs);
            await File.AppendAllTextAsync(Path.Combine(logs, "table.md"), row + Environment.NewLine);
            foreach (var process in cluster.Processes)
            {
                await File.WriteAllTextAsync(Path.Combine(logs, $"{name[..1]}-{process.Name}.log"), process.Output);
            }
        }

        return new ScenarioRun(workload.History, verdict, faultStart, healed, declaredDead, expectedDead, cluster);
    }

    private void AssertHeld(ScenarioRun run)
    {
        var v = run.Verdict;
        var dead = run.Cluster.Processes.Where(p => p.HasExited).ToList();
        if (dead.Count > 0)
        {
            output.WriteLine(string.Join(Environment.NewLine, dead.Select(p => $"--- {p.Name} exited{Environment.NewLine}{p.Output}")));
        }

        Assert.True(v.Wrong.Count == 0, $"{v.Wrong.Count} wrong answers: {string.Join("; ", v.Wrong.Take(5))}");
        Assert.True(v.TooOld.Count == 0, $"{v.TooOld.Count} answers too old and not marked stale: {string.Join("; ", v.TooOld.Take(5))}");
        Assert.True(v.Errors.Count == 0, $"{v.Errors.Count} requests without an answer: {string.Join("; ", v.Errors.Take(5))}");
        Assert.True(v.NonOkByStatus.Keys.All(s => s == 503), $"Answers other than 200 and 503: {string.Join(", ", v.NonOkByStatus.Keys)}");
        Assert.Equal(0, v.WithoutRetryAfter);
        Assert.True(v.Slowest <= AnswerBound, $"The slowest answer took {v.Slowest.TotalSeconds:F1} s.");
        Assert.True(v.Recovered is { } r && r <= Recovery,
            $"Writes made during the fault showed {(v.Recovered is { } late ? $"{late.TotalSeconds:F1} s" : "never")} after the heal: {string.Join("; ", v.Unrecovered.Take(5))}");
        Assert.True(dead.Count == 0, $"{string.Join(", ", dead.Select(p => p.Name))} exited.");
        if (run.ExpectedDead is not null)
        {
            Assert.True(run.DeclaredDead is not null, $"{run.ExpectedDead} was never declared dead.");
        }
    }

    private sealed record ScenarioRun(
        FaultHistory History, Verdict Verdict, TimeSpan FaultStart, TimeSpan Healed, TimeSpan? DeclaredDead, LabHost? ExpectedDead, FaultCluster Cluster);
}
