using Microsoft.Extensions.Options;
using Orleans.Dashboard;
using StatsCache.Hosting;

namespace StatsCache.WebHost.Hosting;

/// <summary>The web host's side of Orleans: an in-process silo (default) or a client of a silo cluster.</summary>
public static class OrleansExtensions
{
    public static WebApplicationBuilder AddStatsCacheOrleans(this WebApplicationBuilder builder)
    {
        builder.Services.AddOptions<OrleansHostingOptions>()
            .BindConfiguration(OrleansHostingOptions.SectionName)
            .ValidateDataAnnotations()
            .ValidateOnStart();
        builder.Services.AddStatsCacheData(builder.Configuration);

        var orleans = builder.Configuration.GetSection(OrleansHostingOptions.SectionName).Get<OrleansHostingOptions>() ?? new();
        if (orleans.Mode == OrleansMode.CoHosted)
        {
            // Orleans' default fatal error handler (FailFast) stays here, unlike the silo process's rejoin
            // (src/Silo/Hosting/SiloRejoin.cs): a cluster of one silo is never voted dead by another.
            builder.UseOrleans(silo => silo.AddStatsCacheSilo(builder.Configuration));
        }
        else
        {
            builder.UseOrleansClient(client => client.AddStatsCacheClient(builder.Configuration));
        }

        return builder;
    }

    /// <summary>The Orleans Dashboard's pages at <c>Orleans:DashboardPath</c>, when <c>Orleans:IsDashboardEnabled</c>.</summary>
    public static IEndpointRouteBuilder MapStatsCacheOrleansDashboard(this IEndpointRouteBuilder app)
    {
        var orleans = app.ServiceProvider.GetRequiredService<IOptions<OrleansHostingOptions>>().Value;
        if (orleans.IsDashboardEnabled)
        {
            app.MapOrleansDashboard(orleans.DashboardPath);
        }

        return app;
    }
}
