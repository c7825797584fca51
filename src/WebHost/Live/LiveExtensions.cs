namespace StatsCache.WebHost.Live;

/// <summary>Live dashboards: the entries the streams watch, and their upkeep (lease renewals, heartbeats).</summary>
public static class LiveExtensions
{
    public static WebApplicationBuilder AddStatsCacheLive(this WebApplicationBuilder builder)
    {
        builder.Services.AddOptions<LiveOptions>().BindConfiguration(LiveOptions.SectionName).ValidateDataAnnotations().ValidateOnStart();
        builder.Services.AddSingleton<LiveEntries>();
        builder.Services.AddHostedService<LiveUpkeep>();
        return builder;
    }
}
