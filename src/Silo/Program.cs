using Microsoft.Extensions.Hosting;
using StatsCache.Hosting;

namespace StatsCache.Silo;

// A named class rather than top-level statements: the web host references this project (to co-host a silo), and a
// second global Program would clash with the web host's in the tests' WebApplicationFactory<Program>.
internal static class Program
{
    // One host per silo generation: a silo the cluster declared dead (a partition, a long pause) stops, and the
    // process starts a new one on the same ports instead of ending (docs/cluster.md).
    public static Task<int> Main(string[] args) => SiloRejoinLoop.RunAsync(generation =>
    {
        var builder = Host.CreateApplicationBuilder(args);
        builder.UseOrleans(silo => silo.AddStatsCacheSilo(builder.Configuration));
        builder.AddStatsCacheSiloTelemetry();
        builder.AddStatsCacheSiloRejoin(generation); // after UseOrleans: replaces Orleans' fatal error handler
        return builder.Build();
    });
}
