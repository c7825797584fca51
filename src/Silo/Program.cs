using Microsoft.Extensions.Hosting;
using StatsCache.Hosting;

var builder = Host.CreateApplicationBuilder(args);
builder.UseOrleans(silo => silo.AddStatsCacheSilo(builder.Configuration));
await builder.Build().RunAsync();
