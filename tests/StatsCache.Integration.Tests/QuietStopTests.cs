using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Xunit.Abstractions;

namespace StatsCache.Integration.Tests;

/// <summary>
/// A clean stop (SIGTERM, Ctrl-C, a deploy) is quiet: nothing at Warning or above, so that a warning at a deploy still means
/// something. The cluster's stop is in <see cref="ClusterTests"/>.
/// </summary>
[Collection(DatabaseCollection.Name)]
public sealed class QuietStopTests(TestDatabase db, ITestOutputHelper output)
{
    [Fact]
    public async Task ACleanStopOfTheCoHostedServiceLogsNothingAtWarningOrAbove()
    {
        var logs = new CapturingLoggerProvider();
        var web = StatsCacheFactory.Started([("StatsCache:Changes:IsEnabled", "true")], logs);
        try
        {
            await ChangeFeedTests.WaitUntilListeningAsync(web, db.DataSource);

            // Entries watched by the near-cache (two reads each) and by a live stream, and a change reloading them: what the
            // grains push to the web host's watcher, which used to fail with errors at the stop.
            var site = await db.NewWebsiteAsync();
            var clients = new List<long>();
            for (var i = 0; i < 6; i++)
            {
                clients.Add(await db.NewUserAsync(site, "client"));
                for (var read = 0; read < 2; read++)
                {
                    using var http = web.ClientFor(site, "client", clients[^1]);
                    await http.GetFromJsonAsync<JsonElement>("/api/dashboards/client-stats");
                }
            }

            using var live = web.ClientFor(site, "client", clients[0]);
            using var stream = await live.GetAsync("/api/dashboards/live?view=client-stats", HttpCompletionOption.ResponseHeadersRead);
            await db.NewOrderAsync(site, clients[0]);
        }
        finally
        {
            var before = logs.Entries.Count;
            await web.DisposeAsync();
            var loud = logs.Entries.Skip(before).Where(e => e.Level >= LogLevel.Warning).ToList();
            foreach (var entry in loud)
            {
                output.WriteLine($"{entry.Level} {entry.Category}: {entry.Message} {entry.Exception?.GetType().Name}");
            }

            Assert.True(loud.Count == 0, $"The stop logged {loud.Count} entries at Warning or above, the first: {loud.FirstOrDefault()?.AllText()}");
        }
    }
}
