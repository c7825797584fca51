using System.Globalization;
using System.Net;
using System.Text.Json;
using System.Text.RegularExpressions;
using YamlDotNet.RepresentationModel;

namespace StatsCache.Integration.Tests;

/// <summary>
/// deploy/monitoring must not drift from the code: the alerting rules and the Grafana dashboard name only series the
/// service exports, with label values it writes, read from the <c>/metrics</c> of running processes made to do what
/// those series count. (promtool checks and tests the rules themselves, in ./test.sh.)
/// </summary>
[Collection(DatabaseCollection.Name)]
public sealed partial class MonitoringTests(TestDatabase db, ReplicaLab lab) : IClassFixture<ReplicaLab>
{
    private static readonly string Monitoring = Path.Combine(DeployFilesTests.Repository, "deploy", "monitoring");
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(20);

    /// <summary>Series the rules or the dashboard use that no StatsCache process exports, each with the reason.</summary>
    private static readonly Dictionary<string, string> NotExported = new(StringComparer.Ordinal)
    {
        ["up"] = "Prometheus' own series for each scrape target (1 when the scrape succeeded), not a metric of the service",
    };

    [Fact]
    public void EveryMetricNameIsReadFromTheRulesAndTheDashboard()
    {
        var selectors = RuleSelectors().Concat(DashboardSelectors()).ToList();
        var names = selectors.Select(s => s.Name).ToHashSet(StringComparer.Ordinal);

        // The parser's own check: names it must find, and words of PromQL it must not take for names.
        Assert.Contains("statscache_loads_total", names);
        Assert.Contains("http_server_request_duration_seconds_bucket", names);
        Assert.Contains("statscache_changes_slot_held", names);
        Assert.Contains("statscache_reads_total", names); // the dashboard's view variable: label_values(statscache_reads_total, view)
        Assert.DoesNotContain(names, n => n is "sum" or "by" or "rate" or "and" or "or" or "view" or "le" or "reason" or "ignoring" or "group_left");
        Assert.Contains(selectors, s => s.Name == "statscache_loads_total" && s.Equal.Contains(("outcome", "failure")));
        Assert.True(names.Count > 25, $"Only {names.Count} metric names found: {string.Join(", ", names)}");
    }

    [Fact]
    public void DashboardImportsWithAPrometheusDataSourceAndHasEveryPanelTheAlertsPointTo()
    {
        using var dashboard = JsonDocument.Parse(File.ReadAllText(Path.Combine(Monitoring, "statscache-dashboard.json")));
        var root = dashboard.RootElement;
        Assert.Contains(root.GetProperty("__inputs").EnumerateArray(), input =>
            input.GetProperty("name").GetString() == "DS_PROMETHEUS" && input.GetProperty("pluginId").GetString() == "prometheus");
        var panels = root.GetProperty("panels").EnumerateArray().ToList();
        Assert.Equal(panels.Count, panels.Select(p => p.GetProperty("id").GetInt32()).Distinct().Count());
        foreach (var panel in panels.Where(p => p.GetProperty("type").GetString() != "row"))
        {
            var title = panel.GetProperty("title").GetString();
            Assert.Equal("${DS_PROMETHEUS}", panel.GetProperty("datasource").GetProperty("uid").GetString());
            var targets = panel.GetProperty("targets").EnumerateArray().ToList();
            Assert.True(targets.Count > 0, $"Panel '{title}' has no query.");
            Assert.All(targets, t => Assert.False(string.IsNullOrWhiteSpace(t.GetProperty("expr").GetString()), $"Panel '{title}' has an empty query."));
        }

        var titles = panels.Select(p => p.GetProperty("title").GetString()).ToHashSet(StringComparer.Ordinal);
        Assert.Equal(panels.Count, titles.Count);
        var pointers = Rules().SelectMany(r => PanelReference().Matches(r.Description).Select(m => (r.Alert, Panel: m.Groups[1].Value))).ToList();
        Assert.True(pointers.Count > 5, $"Only {pointers.Count} panels named by the alerts' descriptions.");
        foreach (var (alert, panel) in pointers)
        {
            Assert.True(titles.Contains(panel), $"{alert} points to the panel \"{panel}\", which the dashboard does not have.");
        }
    }

    [Fact]
    public async Task EveryMetricTheRulesAndTheDashboardNameIsOneTheServiceExports()
    {
        var selectors = RuleSelectors().Concat(DashboardSelectors()).Where(s => !NotExported.ContainsKey(s.Name)).ToList();
        var scrapes = new List<Scrape>();

        // 1. Co-hosted on a primary with a streaming replica and the change feed on (the Replication source): loads on the
        //    replica, its lag, a fence that times out and falls back to the primary, the slot's metrics, a change, a live
        //    stream, the near-cache, and a caller refused by the request limit.
        await using (var web = StatsCacheFactory.Started(
        [
            ("ConnectionStrings:Stats", lab.Primary.ConnectionString),
            ("StatsCache:Source:Replicas:0", lab.Replica.ConnectionString),
            ("StatsCache:Changes:IsEnabled", "true"),
            ("StatsCache:RequestLimit:RequestsPerSecond", "1"),
            ("StatsCache:RequestLimit:Burst", "5"),
            ("StatsCache:RequestLimit:RejectionDelay", "00:00:00"),
        ]))
        {
            await ChangeFeedTests.WaitUntilListeningAsync(web, lab.Primary.DataSource);
            await lab.WaitUntilReplayedAsync();
            var site = await lab.Db.NewWebsiteAsync();
            var reader = await lab.Db.NewUserAsync(site, "client");
            var http = web.ClientFor(site, "client", reader);
            Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/api/dashboards/client-stats")).StatusCode);
            Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/api/dashboards/client-stats")).StatusCode); // from the near-cache
            await using var live = await EventStream.OpenAsync(http, "/api/dashboards/live?view=client-stats");
            await live.NextEventAsync();
            await lab.Db.NewOrderAsync(site, reader); // a change the feed routes to the reader's grain

            // A first load must include what the primary has committed: a user added while replay is paused is never on the
            // replica, so the load waits out ReplicaWaitTimeout and runs on the primary.
            await lab.PauseReplayAsync();
            try
            {
                var late = await lab.Db.NewUserAsync(site, "client");
                Assert.Equal(HttpStatusCode.OK, (await web.ClientFor(site, "client", late).GetAsync("/api/dashboards/client-stats")).StatusCode);
            }
            finally
            {
                await lab.ResumeReplayAsync();
            }

            var flood = web.ClientFor(site, "client", await lab.Db.NewUserAsync(site, "client"));
            var statuses = new List<HttpStatusCode>();
            for (var i = 0; i < 10; i++)
            {
                statuses.Add((await flood.GetAsync("/api/dashboards/client-stats")).StatusCode);
            }

            Assert.Contains(HttpStatusCode.TooManyRequests, statuses);
            scrapes.Add(await ScrapeUntilAsync("co-hosted web host with a replica and the change feed", web.CreateClient(), "/metrics", [
                "statscache_changes_slot_held", "statscache_changes_lag_seconds", "statscache_changes_lag_bytes", "statscache_changes_total",
                "statscache_source_replica_lag_seconds", "statscache_source_replica_lag_bytes", "statscache_source_replica_up",
                "statscache_source_fallbacks_total", "statscache_refusals_total", "statscache_live_streams", "statscache_nearcache_hits_total",
            ]));
        }

        // 2. Co-hosted on a database that stops answering: a failed load, a stale answer, a 503 and an unready /readyz.
        //    Without the near-cache, so a second read is a grain's hit.
        await using (var database = await TemporaryDatabase.CreateAsync(db, withSchema: true))
        await using (var web = StatsCacheFactory.Started(
        [
            ("ConnectionStrings:Stats", database.ConnectionString),
            ("StatsCache:NearCache:IsEnabled", "false"),
            ("StatsCache:Cache:RetryBaseDuration", "00:00:00.100"),
        ]))
        {
            var site = await database.NewWebsiteAsync();
            var reader = await database.NewUserAsync(site, "client");
            var cold = await database.NewUserAsync(site, "client");
            var http = web.ClientFor(site, "client", reader);
            Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/api/dashboards/client-stats")).StatusCode);
            var sinceLoad = System.Diagnostics.Stopwatch.StartNew();
            Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/api/dashboards/client-stats")).StatusCode);

            await database.RefuseConnectionsAsync();
            try
            {
                await StatsCacheFactory.WaitOutRefreshFloorAsync(sinceLoad);
                var stale = await http.GetAsync("/api/dashboards/client-stats?refresh=true");
                Assert.Equal(HttpStatusCode.OK, stale.StatusCode);
                Assert.Contains("\"stale\":true", await stale.Content.ReadAsStringAsync(), StringComparison.Ordinal);
                Assert.Equal(HttpStatusCode.ServiceUnavailable, (await web.ClientFor(site, "client", cold).GetAsync("/api/dashboards/client-stats")).StatusCode);
                Assert.Equal(HttpStatusCode.ServiceUnavailable, (await web.CreateClient().GetAsync("/readyz")).StatusCode);
                scrapes.Add(await ScrapeUntilAsync("co-hosted web host whose database refuses connections", web.CreateClient(), "/metrics", [
                    "statscache_stale_serves_total", "statscache_unavailable_total", "statscache_hits_total",
                ]));
            }
            finally
            {
                await database.AcceptConnectionsAsync();
            }
        }

        // 3. A silo process (its metrics port) and a web host in client mode, as deploy/k8s runs them.
        var metricsPort = StatsCacheFactory.FreePort();
        await using (var silo = await ServiceProcess.StartSiloAsync(db.ConnectionString, new Dictionary<string, string>
        {
            ["Observability:SiloMetricsPort"] = metricsPort.ToString(CultureInfo.InvariantCulture),
            ["StatsCache:Changes:IsEnabled"] = "false",
        }))
        await using (var web = new StatsCacheFactory())
        {
            web.Settings["Orleans:Mode"] = "Client";
            web.Settings["Orleans:GatewayPort"] = silo.GatewayPort.ToString(CultureInfo.InvariantCulture);
            web.Settings["Orleans:ClusterId"] = silo.ClusterId!;
            var site = await db.NewWebsiteAsync();
            var reader = await db.NewUserAsync(site, "client");
            Assert.Equal(HttpStatusCode.OK, (await web.ClientFor(site, "client", reader).GetAsync("/api/dashboards/client-stats")).StatusCode);
            Assert.Equal(HttpStatusCode.OK, (await web.CreateClient().GetAsync("/readyz")).StatusCode);

            using var scrape = new HttpClient();
            var siloScrape = await ScrapeUntilAsync("silo process", scrape, $"http://127.0.0.1:{metricsPort}/metrics", ["statscache_watchers"]);
            var webScrape = await ScrapeUntilAsync("web host in client mode", web.CreateClient(), "/metrics", ["statscache_nearcache_misses_total"]);
            scrapes.Add(siloScrape);
            scrapes.Add(webScrape);

            // StatsCacheNoSilo counts on silos alone exporting statscache_watchers (WatcherHeartbeats is a silo service). Not
            // checked on this web host: a meter listener takes every meter of its name in the process, so here its /metrics
            // also shows the co-hosted silos of other tests running meanwhile.

            // The memory alerts: a silo's working set against its runtime's limit (StatsCacheMemoryHigh); a client-mode web
            // host's against a fixed threshold (StatsCacheWebHostMemoryHigh), for the working set is all it exports.
            foreach (var (process, names) in new[]
            {
                (siloScrape, new[] { "dotnet_process_memory_working_set_bytes", "orleans_runtime_total_physical_memory_megabytes" }),
                (webScrape, ["dotnet_process_memory_working_set_bytes"]),
            })
            {
                foreach (var name in names)
                {
                    Assert.True(process.Series.ContainsKey(name),
                        $"The {process.What} does not export {name}; its memory series: {string.Join(", ", process.Series.Keys.Where(k => k.Contains("memory", StringComparison.Ordinal)))}");
                }
            }
        }

        var missing = Missing(selectors, scrapes).ToList();
        Assert.True(missing.Count == 0,
            "deploy/monitoring names what no process exported:\n" + string.Join("\n", missing) +
            "\nExported: " + string.Join(", ", scrapes.SelectMany(s => s.Series.Keys).Distinct().Order(StringComparer.Ordinal)));
    }

    /// <summary>
    /// Scrapes <paramref name="path"/> until it has <paramref name="expected"/>, what this process must show (gauges are read,
    /// and requests recorded, a little after the fact); the names of the rules are checked against every scrape at the end.
    /// </summary>
    private static async Task<Scrape> ScrapeUntilAsync(string what, HttpClient http, string path, string[] expected)
    {
        var deadline = DateTime.UtcNow + Deadline;
        while (true)
        {
            var scrape = new Scrape(what, ParseExposition(await http.GetStringAsync(path)));
            var absent = expected.Where(name => !scrape.Series.ContainsKey(name)).ToList();
            if (absent.Count == 0)
            {
                return scrape;
            }

            Assert.True(DateTime.UtcNow < deadline, $"The {what}'s /metrics lacks {string.Join(", ", absent)} after {Deadline.TotalSeconds} s.");
            await Task.Delay(TimeSpan.FromMilliseconds(200));
        }
    }

    /// <summary>Each selector whose metric no process exported, or whose exact label matcher no exported series satisfies.</summary>
    private static IEnumerable<string> Missing(IReadOnlyList<Selector> selectors, List<Scrape> scrapes)
    {
        foreach (var selector in selectors.DistinctBy(s => s.Text))
        {
            var series = scrapes.SelectMany(s => s.Series.GetValueOrDefault(selector.Name) ?? []).ToList();
            if (series.Count == 0)
            {
                yield return $"{selector.Name} (in {selector.Source}): no process exported it";
                continue;
            }

            foreach (var (label, value) in selector.Equal)
            {
                if (!series.Any(s => s.GetValueOrDefault(label) == value))
                {
                    yield return $"{selector.Text} (in {selector.Source}): no series of {selector.Name} has {label}=\"{value}\"";
                }
            }
        }
    }

    private static List<(string Alert, string Expr, string Description)> Rules()
    {
        var stream = new YamlStream();
        using (var reader = new StreamReader(Path.Combine(Monitoring, "alerts.yml")))
        {
            stream.Load(reader);
        }

        var rules = new List<(string, string, string)>();
        foreach (YamlMappingNode group in (YamlSequenceNode)((YamlMappingNode)stream.Documents[0].RootNode)["groups"])
        {
            foreach (YamlMappingNode rule in (YamlSequenceNode)group["rules"])
            {
                var description = ((YamlScalarNode)((YamlMappingNode)rule["annotations"])["description"]).Value!;
                rules.Add((((YamlScalarNode)rule["alert"]).Value!, ((YamlScalarNode)rule["expr"]).Value!, description));
            }
        }

        Assert.True(rules.Count > 10, $"Only {rules.Count} rules read from alerts.yml.");
        return rules;
    }

    private static IEnumerable<Selector> RuleSelectors() => Rules().SelectMany(r => Selectors(r.Expr, $"alerts.yml {r.Alert}"));

    private static IEnumerable<Selector> DashboardSelectors()
    {
        using var dashboard = JsonDocument.Parse(File.ReadAllText(Path.Combine(Monitoring, "statscache-dashboard.json")));
        var selectors = new List<Selector>();
        foreach (var panel in dashboard.RootElement.GetProperty("panels").EnumerateArray())
        {
            if (panel.TryGetProperty("targets", out var targets))
            {
                foreach (var target in targets.EnumerateArray())
                {
                    selectors.AddRange(Selectors(target.GetProperty("expr").GetString()!, $"dashboard panel '{panel.GetProperty("title").GetString()}'"));
                }
            }
        }

        // Template variables: label_values(metric, label) names a metric and one of its labels.
        foreach (var variable in dashboard.RootElement.GetProperty("templating").GetProperty("list").EnumerateArray())
        {
            var query = variable.GetProperty("definition").GetString()!;
            var match = LabelValues().Match(query);
            Assert.True(match.Success, $"The dashboard's variable {variable.GetProperty("name").GetString()} is not a label_values(metric, label) query: {query}");
            selectors.AddRange(Selectors(match.Groups[1].Value, $"dashboard variable {variable.GetProperty("name").GetString()}"));
        }

        return selectors;
    }

    /// <summary>
    /// The vector selectors of a PromQL expression, read loosely: a name with its exact (<c>=</c>) label matchers. Label
    /// names in by/without/on/ignoring clauses, functions and keywords are not names; regular-expression matchers (and
    /// Grafana's <c>$view</c> in them) are not checked.
    /// </summary>
    internal static List<Selector> Selectors(string promql, string source)
    {
        var selectors = new List<Selector>();
        var text = Range().Replace(promql, " ");
        text = Braces().Replace(text, match =>
        {
            var equal = Matcher().Matches(match.Groups["matchers"].Value)
                .Where(m => m.Groups["op"].Value == "=")
                .Select(m => (m.Groups["label"].Value, m.Groups["value"].Value))
                .ToList();
            Assert.True(match.Groups["name"].Success, $"{source}: a selector without a metric name: {match.Value}");
            selectors.Add(new Selector(match.Groups["name"].Value, equal, match.Value.Trim(), source));
            return " ";
        });
        text = Grouping().Replace(text, " ");
        text = StringLiteral().Replace(text, " ");
        foreach (Match name in BareName().Matches(text))
        {
            if (!Keywords.Contains(name.Value))
            {
                selectors.Add(new Selector(name.Value, [], name.Value, source));
            }
        }

        return selectors;
    }

    private static readonly HashSet<string> Keywords = new(StringComparer.Ordinal)
    {
        "and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right", "inf", "nan", "atan2",
    };

    /// <summary>Prometheus' text format: each sample's name and labels, by name.</summary>
    private static Dictionary<string, List<Dictionary<string, string>>> ParseExposition(string text)
    {
        var series = new Dictionary<string, List<Dictionary<string, string>>>(StringComparer.Ordinal);
        foreach (var line in text.Split('\n'))
        {
            if (line.Length == 0 || line[0] == '#')
            {
                continue;
            }

            var end = line.IndexOfAny(['{', ' ']);
            var name = line[..end];
            var labels = new Dictionary<string, string>(StringComparer.Ordinal);
            if (line[end] == '{')
            {
                foreach (Match label in ExposedLabel().Matches(line[end..line.LastIndexOf('}')]))
                {
                    labels[label.Groups[1].Value] = label.Groups[2].Value.Replace("\\\"", "\"", StringComparison.Ordinal).Replace("\\\\", "\\", StringComparison.Ordinal);
                }
            }

            (series.TryGetValue(name, out var list) ? list : series[name] = []).Add(labels);
        }

        return series;
    }

    internal sealed record Selector(string Name, List<(string Label, string Value)> Equal, string Text, string Source);

    private sealed record Scrape(string What, Dictionary<string, List<Dictionary<string, string>>> Series);

    // A range or offset: [5m], [$__rate_interval], [1d].
    [GeneratedRegex(@"\[[^\]]*\]")]
    private static partial Regex Range();

    // Label values may hold braces: http_route="/api/dashboards/{view}".
    [GeneratedRegex(@"(?<name>[a-zA-Z_:][\w:]*)?\s*\{(?<matchers>(?:[^{}""]|""(?:[^""\\]|\\.)*"")*)\}")]
    private static partial Regex Braces();

    [GeneratedRegex(@"(?<label>[a-zA-Z_]\w*)\s*(?<op>=~|!~|!=|=)\s*""(?<value>(?:[^""\\]|\\.)*)""")]
    private static partial Regex Matcher();

    [GeneratedRegex(@"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")]
    private static partial Regex Grouping();

    [GeneratedRegex(@"""(?:[^""\\]|\\.)*""")]
    private static partial Regex StringLiteral();

    // A name not followed by '(' (a function or an aggregation); atomic, so "sum(" does not match as "su".
    [GeneratedRegex(@"(?<![\w.$:])(?>[a-zA-Z_:][\w:]*)(?!\s*\()")]
    private static partial Regex BareName();

    [GeneratedRegex(@"^\s*label_values\(\s*([a-zA-Z_:][\w:]*)\s*,\s*[a-zA-Z_]\w*\s*\)\s*$")]
    private static partial Regex LabelValues();

    [GeneratedRegex(@"([a-zA-Z_]\w*)=""((?:[^""\\]|\\.)*)""")]
    private static partial Regex ExposedLabel();

    [GeneratedRegex(@"panel ""([^""]+)""")]
    private static partial Regex PanelReference();
}
