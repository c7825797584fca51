using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.Logging;
using StatsCache.WebHost.Auth;

namespace StatsCache.Integration.Tests;

/// <summary>The web host with its in-process silo on free ports, a signing key of its own and the test database.</summary>
public sealed class StatsCacheFactory : WebApplicationFactory<Program>
{
    public StatsCacheFactory()
    {
        Auth = new AuthOptions { SigningKey = Convert.ToBase64String(Guid.NewGuid().ToByteArray()) + Convert.ToBase64String(Guid.NewGuid().ToByteArray()) };
    }

    public static readonly TimeSpan MinRefreshInterval = TimeSpan.FromSeconds(1);

    public AuthOptions Auth { get; }

    /// <summary>Extra settings for a variant of the host (client mode, ...), applied after the defaults.</summary>
    public Dictionary<string, string?> Settings { get; } = [];

    /// <summary>The replication slot of this host's change feed (when it is on with the WAL source), dropped when it is disposed.</summary>
    public string SlotName { get; } = ReplicationSlots.NewName();

    /// <summary>A logger provider added to the host's logging (to capture what it logs).</summary>
    public ILoggerProvider? LoggerProvider { get; set; }

    public HttpClient ClientFor(long site, string role, long user, TimeSpan? lifetime = null, DateTimeOffset? now = null)
    {
        var client = CreateClient();
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", TokenFor(site, role, user, lifetime, now));
        return client;
    }

    public string TokenFor(long site, string role, long user, TimeSpan? lifetime = null, DateTimeOffset? now = null) =>
        TokenIssuer.Issue(Auth, new Caller(site, role, user), lifetime ?? TimeSpan.FromMinutes(10), now);

    /// <summary>
    /// Waits until a forced refresh reloads again: the floor is a rule of time, counted from the end of the entry's last
    /// load, which <paramref name="sinceLoad"/> started timing after that load's answer came.
    /// </summary>
    public static Task WaitOutRefreshFloorAsync(System.Diagnostics.Stopwatch sinceLoad)
    {
        // A little past it: Task.Delay counts whole milliseconds, and the load can end less than one before the
        // test's stopwatch starts.
        var left = MinRefreshInterval + TimeSpan.FromMilliseconds(50) - sinceLoad.Elapsed;
        return left > TimeSpan.Zero ? Task.Delay(left) : Task.CompletedTask;
    }

    /// <summary>A host with <paramref name="settings"/> on top of the defaults, started now (so a test measures its requests, not start-up).</summary>
    public static StatsCacheFactory Started(IEnumerable<(string Key, string Value)> settings, ILoggerProvider? logs = null)
    {
        var web = new StatsCacheFactory { LoggerProvider = logs };
        foreach (var (key, value) in settings)
        {
            web.Settings[key] = value;
        }

        _ = web.Services;
        return web;
    }

    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    public override async ValueTask DisposeAsync()
    {
        await base.DisposeAsync();
        if (Settings.GetValueOrDefault("StatsCache:Changes:IsEnabled") == "true")
        {
            await ReplicationSlots.DropAsync(
                Settings.GetValueOrDefault("ConnectionStrings:Stats") ?? Environment.GetEnvironmentVariable(TestDatabase.ConnectionVariable)!,
                Settings.GetValueOrDefault("StatsCache:Changes:SlotName") ?? SlotName);
        }
    }

    protected override void ConfigureWebHost(IWebHostBuilder builder)
    {
        builder.UseEnvironment("Production"); // errors must look as they do in production: no stack traces
        builder.UseSetting("ConnectionStrings:Stats", Environment.GetEnvironmentVariable(TestDatabase.ConnectionVariable));
        builder.UseSetting("Auth:SigningKey", Auth.SigningKey);
        builder.UseSetting("Orleans:SiloPort", FreePort().ToString(CultureInfo.InvariantCulture));
        builder.UseSetting("Orleans:GatewayPort", FreePort().ToString(CultureInfo.InvariantCulture));
        builder.UseSetting("Orleans:ClusterId", $"test-{Guid.NewGuid():N}");
        // Tests that count loads or check caching must not see other tests' writes refresh them;
        // ChangeFeedTests turn the feed on for hosts of their own.
        builder.UseSetting("StatsCache:Changes:IsEnabled", "false");
        builder.UseSetting("StatsCache:Changes:SlotName", SlotName);
        // The smallest floor of forced refreshes: tests that force a reload wait least for it (see WaitOutRefreshFloorAsync).
        builder.UseSetting("StatsCache:Cache:MinRefreshInterval", MinRefreshInterval.ToString("c", CultureInfo.InvariantCulture));
        foreach (var (key, value) in Settings)
        {
            builder.UseSetting(key, value);
        }

        if (LoggerProvider is { } provider)
        {
            builder.ConfigureLogging(logging => logging.AddProvider(provider));
        }
    }
}
