using System.Globalization;
using System.Text;
using StatsCache.Catalog;
using StatsCache.Source;

namespace StatsCache.Grains.Tests;

/// <summary>
/// A source that counts loads per site and records their fences, and blocks or fails them on command. Every test uses its
/// own site id, so tests sharing one cluster never see each other's loads.
/// </summary>
public sealed class FakeDashboardSource : IDashboardSource
{
    private readonly Lock _lock = new();
    private readonly Dictionary<long, SiteState> _sites = [];

    public async Task<SourceData> LoadAsync(
        ViewDefinition view, DashboardScope scope, BoundParameters parameters, LoadFence fence, CancellationToken cancellationToken)
    {
        Task gate;
        int load;
        bool failing;
        ulong lsn;
        lock (_lock)
        {
            var site = Site(scope.SiteId);
            load = ++site.Loads;
            site.Calls.Add((view.Name, scope, parameters.Key));
            site.Fences.Add(fence);
            gate = site.Gate.Task;
            failing = site.Failing;
            lsn = site.Lsn;
            foreach (var waiter in site.Waiters.Where(w => site.Loads >= w.Count).ToList())
            {
                site.Waiters.Remove(waiter);
                waiter.Signal.TrySetResult();
            }
        }

        await gate.WaitAsync(cancellationToken);
        if (failing)
        {
            throw new InvalidOperationException($"Load {load} of site {scope.SiteId} failed on command.");
        }

        var json = string.Create(CultureInfo.InvariantCulture,
            $$"""{"view":"{{view.Name}}","site":{{scope.SiteId}},"role":"{{scope.Role}}","user":{{(scope.UserId?.ToString(CultureInfo.InvariantCulture) ?? "null")}},"parameters":"{{parameters.Key}}","load":{{load}}}""");
        return new SourceData(Encoding.UTF8.GetBytes(json), lsn);
    }

    /// <summary>The fence of every load of a site, in order.</summary>
    public IReadOnlyList<LoadFence> Fences(long siteId)
    {
        lock (_lock)
        {
            return [.. Site(siteId).Fences];
        }
    }

    /// <summary>The WAL position the site's loads say their data includes, from now on (as a replica's would).</summary>
    public void AnswerAt(long siteId, ulong lsn)
    {
        lock (_lock)
        {
            Site(siteId).Lsn = lsn;
        }
    }

    /// <summary>Loads started for a site so far.</summary>
    public int Loads(long siteId)
    {
        lock (_lock)
        {
            return Site(siteId).Loads;
        }
    }

    /// <summary>Every load of a site: view, scope and canonical parameters.</summary>
    public IReadOnlyList<(string View, DashboardScope Scope, string Parameters)> Calls(long siteId)
    {
        lock (_lock)
        {
            return [.. Site(siteId).Calls];
        }
    }

    /// <summary>Loads of the site wait until the returned gate is released (loads already running are not affected).</summary>
    public TaskCompletionSource Block(long siteId)
    {
        lock (_lock)
        {
            var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            Site(siteId).Gate = gate;
            return gate;
        }
    }

    /// <summary>Lets the site's loads run freely again, releasing any that wait.</summary>
    public void Unblock(long siteId)
    {
        lock (_lock)
        {
            var site = Site(siteId);
            site.Gate.TrySetResult();
            site.Gate = Completed();
        }
    }

    /// <summary>Makes the site's loads that start from now on fail (or succeed again).</summary>
    public void Fail(long siteId, bool failing)
    {
        lock (_lock)
        {
            Site(siteId).Failing = failing;
        }
    }

    /// <summary>Completes when the site has started at least <paramref name="count"/> loads.</summary>
    public Task WaitForLoadsAsync(long siteId, int count, TimeSpan timeout)
    {
        lock (_lock)
        {
            var site = Site(siteId);
            if (site.Loads >= count)
            {
                return Task.CompletedTask;
            }

            var signal = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            site.Waiters.Add((count, signal));
            return signal.Task.WaitAsync(timeout);
        }
    }

    private SiteState Site(long siteId)
    {
        if (!_sites.TryGetValue(siteId, out var site))
        {
            _sites[siteId] = site = new SiteState();
        }

        return site;
    }

    private static TaskCompletionSource Completed()
    {
        var done = new TaskCompletionSource();
        done.SetResult();
        return done;
    }

    private sealed class SiteState
    {
        public int Loads { get; set; }

        public List<(string View, DashboardScope Scope, string Parameters)> Calls { get; } = [];

        public List<LoadFence> Fences { get; } = [];

        public ulong Lsn { get; set; }

        public TaskCompletionSource Gate { get; set; } = Completed();

        public bool Failing { get; set; }

        public List<(int Count, TaskCompletionSource Signal)> Waiters { get; } = [];
    }
}
