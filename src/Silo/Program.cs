using Microsoft.Extensions.Hosting;
using StatsCache.Hosting;

namespace StatsCache.Silo;

// A named class rather than top-level statements: the web host references this project (to co-host a silo), and a
// second global Program would clash with the web host's in the tests' WebApplicationFactory<Program>.
internal static class Program
{
    public static async Task Main(string[] args)
    {
        var builder = Host.CreateApplicationBuilder(args);
        builder.UseOrleans(silo => silo.AddStatsCacheSilo(builder.Configuration));
        builder.AddStatsCacheSiloTelemetry();
        await builder.Build().RunAsync();
    }
}
