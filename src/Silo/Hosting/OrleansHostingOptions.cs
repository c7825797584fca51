using System.ComponentModel.DataAnnotations;

namespace StatsCache.Hosting;

/// <summary>Where the Orleans part of a process runs.</summary>
public enum OrleansMode
{
    /// <summary>An in-process silo next to the web host: the single-machine default.</summary>
    CoHosted,

    /// <summary>A client of a separate silo cluster.</summary>
    Client,
}

/// <summary>How silos find each other and how clients find gateways.</summary>
public enum OrleansMembership
{
    /// <summary>Silos and clients on 127.0.0.1 with fixed ports (development, one machine).</summary>
    Localhost,

    /// <summary>The membership table in PostgreSQL (<c>ConnectionStrings:Orleans</c>): silos on any hosts, clients find gateways there.</summary>
    AdoNet,
}

/// <summary>Where grains keep their snapshots.</summary>
public enum OrleansStorage
{
    /// <summary>In silo memory: survives grain deactivation, not a silo restart.</summary>
    Memory,

    /// <summary>In PostgreSQL (<c>ConnectionStrings:Orleans</c>): survives silo restarts and moves between silos.</summary>
    AdoNet,
}

/// <summary>The <c>Orleans</c> configuration section, read by the silo and the web host.</summary>
public sealed class OrleansHostingOptions
{
    public const string SectionName = "Orleans";

    public OrleansMode Mode { get; set; } = OrleansMode.CoHosted;

    /// <summary>
    /// Cluster membership. Not named <c>Clustering</c>: Orleans itself reads <c>Orleans:Clustering</c>
    /// as a provider section and fails on a plain value.
    /// </summary>
    public OrleansMembership Membership { get; set; } = OrleansMembership.Localhost;

    public OrleansStorage Storage { get; set; } = OrleansStorage.Memory;

    [Required]
    public string ClusterId { get; set; } = "statscache";

    [Required]
    public string ServiceId { get; set; } = "statscache";

    /// <summary>The silo-to-silo port.</summary>
    [Range(1, 65535)]
    public int SiloPort { get; set; } = 11111;

    /// <summary>The port clients connect to; with localhost clustering, also the port a client looks for.</summary>
    [Range(1, 65535)]
    public int GatewayPort { get; set; } = 30000;

    /// <summary>
    /// The address a silo publishes in the membership table for other silos and clients to reach it
    /// (AdoNet membership): an IP address, or a host name resolved at start (a container's own name
    /// in docker compose). The loopback address suits one machine.
    /// </summary>
    [Required]
    public string AdvertisedAddress { get; set; } = "127.0.0.1";

    /// <summary>
    /// How long data sent on an Orleans connection (silo to silo, web host to gateway) may stay unacknowledged before the
    /// connection is dropped and made again (TCP_USER_TIMEOUT): after a partition TCP's own retries may take minutes,
    /// and a connection that has lost one direction only looks alive above TCP.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:01", "00:10:00")]
    public TimeSpan DeadConnectionTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Under Kubernetes: take the silo's name, address and cluster identity from the pod
    /// (<c>POD_NAME</c>, <c>POD_NAMESPACE</c>, <c>POD_IP</c>, <c>ORLEANS_SERVICE_ID</c>, <c>ORLEANS_CLUSTER_ID</c>)
    /// and remove silos whose pods are gone.
    /// </summary>
    public bool IsKubernetesHostingEnabled { get; set; }

    /// <summary>
    /// The Orleans Dashboard (grains, silos, calls): its collectors on every silo, and its pages on the
    /// web host at <see cref="DashboardPath"/>. Off by default; its pages have no authentication of their own.
    /// </summary>
    public bool IsDashboardEnabled { get; set; }

    /// <summary>Where the web host serves the Orleans Dashboard when it is enabled.</summary>
    [Required]
    [RegularExpression("^/[A-Za-z0-9/_-]*$", ErrorMessage = "Orleans:DashboardPath must be a path starting with '/'.")]
    public string DashboardPath { get; set; } = "/orleans-dashboard";
}
