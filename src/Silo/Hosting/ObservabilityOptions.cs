using System.ComponentModel.DataAnnotations;

namespace StatsCache.Hosting;

/// <summary>The <c>Observability</c> configuration section: where metrics and traces go beyond the web host's <c>/metrics</c>.</summary>
public sealed class ObservabilityOptions
{
    public const string SectionName = "Observability";

    /// <summary>
    /// The port on which a silo process (src/Silo, which has no HTTP server of its own) serves
    /// <c>/metrics</c> in Prometheus text format; 0 (the default) serves none. The web host serves
    /// <c>/metrics</c> on its own HTTP port and ignores this.
    /// </summary>
    [Range(0, 65535)]
    public int SiloMetricsPort { get; set; }
}
