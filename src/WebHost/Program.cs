using StatsCache.WebHost.Api;
using StatsCache.WebHost.Hosting;
using StatsCache.WebHost.Live;
using StatsCache.WebHost.NearCache;
using StatsCache.WebHost.Setup;

if (Commands.IsCommand(args))
{
    return await Commands.RunAsync(args);
}

var builder = WebApplication.CreateBuilder(args);
builder.AddStatsCacheAuthentication();
builder.AddStatsCacheOrleans();
builder.AddStatsCacheHealthChecks();
builder.AddStatsCacheObservability();
builder.AddStatsCacheRequestLimits();
builder.AddStatsCacheNearCache();
builder.AddStatsCacheLive();
builder.AddDashboardApi();

var app = builder.Build();
app.UseExceptionHandler();
app.UseStatusCodePages();
app.UseStatsCacheRequestMetrics();
app.UseStatsCachePage();
app.UseAuthentication();
app.UseAuthorization();
app.UseStatsCacheRequestLimits();
app.MapStatsCacheHealthChecks();
app.MapStatsCacheMetrics();
app.MapStatsCacheOrleansDashboard();
app.MapDashboardApi();
app.MapInvalidationApi();
app.MapOpenApi();
await app.RunAsync();
return 0;

public partial class Program;
