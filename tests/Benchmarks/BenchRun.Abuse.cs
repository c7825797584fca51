using System.Diagnostics;
using System.Net.Http.Headers;
using System.Text.Json.Nodes;
using StatsCache.Cache;
using StatsCache.WebHost.Auth;

namespace StatsCache.Benchmarks;

public sealed partial class BenchRun
{
    // ---------------------------------------------------------------- abuse
    /// <summary>
    /// One caller against the cache (issue 11), next to 1,000 well-behaved callers reading their <c>client-stats</c> as
    /// <c>hit</c> does (wrk, 64 connections, a random token of the 1,000 per request). Rounds of BENCH_ABUSE_SECONDS each:
    /// the well-behaved alone; with one admin refreshing <c>admin-overview</c> (<c>refresh=true</c>) on 64 connections; with
    /// one admin cycling <c>admin-analytics?days=1..365</c> on 64 connections. The abusive rounds run twice: on a host with
    /// the shipped limits, and on one with the per-caller request limit off, which leaves the refresh floor and the
    /// new-entry budget alone against the abuser. Database loads of the abused view are counted by pg_stat_statements.
    /// </summary>
    public async Task AbuseAsync()
    {
        await StopAllHostsAsync(); // the cores to this scenario alone

        var wellBehavedPath = $"/api/dashboards/{Driver.HitView}";
        var tokenFile = Path.Combine(_env.WorkFolder, "tokens-abuse.txt");
        File.WriteAllLines(tokenFile, Tokens.Take(1_000));
        var refreshAdmin = await AdminOfSiteAsync(1);
        var cyclingAdmin = await AdminOfSiteAsync(2);
        var overview = Catalog.Find("admin-overview")!;
        var analytics = Catalog.Find("admin-analytics")!;
        var defaults = new DashboardCacheOptions();
        var seconds = _env.AbuseSeconds;
        var details = new JsonArray();

        foreach (var (hostName, limits, overrides) in new[]
        {
            // The other scenarios run without the request limit (one caller's many requests are their load by design).
            ("abuse-shipped-limits", "shipped limits", new Dictionary<string, string> { ["StatsCache__RequestLimit__IsEnabled"] = "true" }),
            ("abuse-no-request-limit", "request limit off", new Dictionary<string, string> { ["StatsCache__RequestLimit__IsEnabled"] = "false" }),
        })
        {
            var host = await StartCoHostedAsync(hostName, overrides);
            await WarmAsync(host, wellBehavedPath, 1_000, 1_000);
            await ReadAsAsync(host, "/api/dashboards/admin-overview", refreshAdmin); // the refreshed entry exists

            await WrkAsync(host, wellBehavedPath, tokenFile, 5); // warm: JIT and pools, so "alone" is the host's steady state
            var alone = await WrkAsync(host, wellBehavedPath, tokenFile, seconds);
            AddWellBehaved(limits, "alone", alone, null);
            foreach (var (abuse, view, path, parameter, admin) in new[]
            {
                ("refresh=true on admin-overview", overview, "/api/dashboards/admin-overview?refresh=true", (string?)null, refreshAdmin),
                ("cycling admin-analytics?days=1..365", analytics, "/api/dashboards/admin-analytics", "days", cyclingAdmin),
            })
            {
                await ResetDatabaseLoadsAsync();
                var clock = Stopwatch.StartNew();
                var abuser = AbuserWrkAsync(host, path, TokenFor(admin), parameter, seconds);
                var beside = await WrkAsync(host, wellBehavedPath, tokenFile, seconds);
                var (requests, statuses) = await abuser;
                var elapsed = clock.Elapsed.TotalSeconds;
                var loads = await DatabaseLoadsAsync(view);

                var answers = string.Join(", ", statuses.OrderBy(s => s.Key).Select(s => $"{s.Key} {s.Value:N0}"));
                var (goal, allowed) = parameter is null
                    ? ($"≤ 1 per MinRefreshInterval ({defaults.MinRefreshInterval.TotalSeconds:F0} s)", Math.Floor(elapsed / defaults.MinRefreshInterval.TotalSeconds) + 1)
                    : ($"≤ the budget ({defaults.NewEntryBurst} + {defaults.NewEntriesPerSecond:0.#}/s)", defaults.NewEntryBurst + (elapsed * defaults.NewEntriesPerSecond) + 1);
                _report.Add(new ReportRow("abuse", $"{limits}, {abuse}: database loads of the view", goal,
                    $"{loads:N0} in {elapsed:F0} s ({loads / elapsed:F2}/s); abuser's answers: {answers}", loads <= allowed, loads / elapsed));
                AddWellBehaved(limits, $"beside {abuse}", beside, alone);
                details.Add(new JsonObject
                {
                    ["limits"] = limits,
                    ["abuse"] = abuse,
                    ["seconds"] = Math.Round(elapsed, 1),
                    ["databaseLoads"] = loads,
                    ["abuserRequests"] = requests,
                    ["abuserStatuses"] = new JsonObject(statuses.Select(s => KeyValuePair.Create(s.Key.ToString(Inv), (JsonNode?)s.Value))),
                    ["wellBehavedRequestsPerSecond"] = Math.Round(beside.RequestsPerSecond),
                    ["wellBehavedP50Ms"] = Math.Round(beside.P50Ms, 3),
                    ["wellBehavedP99Ms"] = Math.Round(beside.P99Ms, 3),
                    ["aloneP99Ms"] = Math.Round(alone.P99Ms, 3),
                });
            }

            await StopAllHostsAsync();
        }

        _report.Detail("abuse", details);

        void AddWellBehaved(string limits, string when, WrkResult result, WrkResult? alone) =>
            _report.Add(new ReportRow("abuse", $"{limits}: 1,000 well-behaved callers {when}: req/s, p50 / p99",
                alone is null ? "—" : "p99 ≤ 1.5 × alone",
                $"{result.RequestsPerSecond:N0} req/s, {result.P50Ms:F2} / {result.P99Ms:F2} ms" + (result.Errors > 0 ? $", {result.Errors} errors" : ""),
                alone is null ? null : result.P99Ms <= 1.5 * alone.P99Ms && result.Errors == 0,
                result.P99Ms));
    }

    private async Task<Caller> AdminOfSiteAsync(long site)
    {
        await using var command = _db.CreateCommand("select min(id) from users where website_id = @site and role = 'admin'");
        command.Parameters.AddWithValue("site", site);
        return new Caller(site, "admin", (long)(await command.ExecuteScalarAsync())!);
    }

    private async Task ReadAsAsync(HttpHost host, string path, Caller caller)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, path);
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", TokenFor(caller));
        using var response = await ClientFor(host).SendAsync(request);
        response.EnsureSuccessStatusCode();
    }

    /// <summary>wrk with abuse.lua: one token on <see cref="BenchEnvironment.Connections"/> connections; the answers by status.</summary>
    private async Task<(long Requests, Dictionary<int, long> Statuses)> AbuserWrkAsync(HttpHost host, string path, string token, string? parameter, int seconds)
    {
        string[] arguments =
        [
            "-t2", $"-c{_env.Connections}", $"-d{seconds}s", "--timeout", "5s",
            "-s", Path.Combine(AppContext.BaseDirectory, "wrk", "abuse.lua"), new Uri(host.Url, path).ToString(), "--", token,
            .. parameter is null ? Array.Empty<string>() : [parameter],
        ];
        using var wrk = Process.Start(new ProcessStartInfo("wrk", arguments) { RedirectStandardOutput = true, RedirectStandardError = true })!;
        var output = await wrk.StandardOutput.ReadToEndAsync();
        var errors = await wrk.StandardError.ReadToEndAsync();
        await wrk.WaitForExitAsync();
        var line = output.Split('\n').FirstOrDefault(l => l.StartsWith("BENCH_JSON ", StringComparison.Ordinal))
            ?? throw new InvalidOperationException($"wrk (abuse) printed no result (exit {wrk.ExitCode}):\n{output}\n{errors}");
        var json = JsonNode.Parse(line["BENCH_JSON ".Length..])!;
        var statuses = json["statuses"]!.AsObject().ToDictionary(s => int.Parse(s.Key, Inv), s => (long)s.Value!);
        return ((long)json["requests"]!, statuses);
    }
}
