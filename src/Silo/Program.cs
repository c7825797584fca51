using Microsoft.Extensions.Hosting;
using StatsCache.Hosting;
using StatsCache.Silo;

var builder = Host.CreateApplicationBuilder(args);
builder.UseOrleans(silo => silo.AddStatsCacheSilo(builder.Configuration));
builder.AddStatsCacheSiloTelemetry();
await builder.Build().RunAsync();
