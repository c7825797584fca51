using System.Diagnostics.Metrics;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using StatsCache.Cache;

namespace StatsCache.Silo;

/// <summary>Why a silo host stopped.</summary>
public enum SiloStop
{
    /// <summary>Asked to (SIGTERM, Ctrl-C) or for a reason of the host's own: the process exits with the host's code.</summary>
    Requested,

    /// <summary>The cluster declared this silo dead: the process starts a new silo in a new host.</summary>
    Rejoin,

    /// <summary>Orleans reported a fatal error other than being declared dead (a bug): the process exits non-zero.</summary>
    Fatal,
}

/// <summary>
/// One silo host of this process (one silo generation): how many rejoins came before it, and why it stopped,
/// as its <see cref="RejoiningFatalErrorHandler"/> recorded it. Created by <see cref="SiloRejoinLoop"/> for each host.
/// </summary>
public sealed class SiloGeneration(int rejoins)
{
    private int _stop = (int)SiloStop.Requested;

    /// <summary>Rejoins this process made before this host: 0 for the first silo.</summary>
    public int Rejoins { get; } = rejoins;

    public SiloStop Stop => (SiloStop)Volatile.Read(ref _stop);

    /// <summary>Records why the host stops; the first reason wins.</summary>
    internal bool TryRecordStop(SiloStop stop) =>
        Interlocked.CompareExchange(ref _stop, (int)stop, (int)SiloStop.Requested) == (int)SiloStop.Requested;
}

/// <summary>
/// Replaces Orleans' <c>FatalErrorHandler</c>, which logs, sleeps 2 s and calls <c>Environment.FailFast</c> (a crash
/// dump, and a process that stays dead without a supervisor). This one stops the host instead, recording why:
/// <list type="bullet">
/// <item>declared dead: <c>MembershipTableManager.KillMyselfLocally</c> ("I have been told I am dead, so this silo will
/// stop!") and the membership view has this silo Dead, with no newer generation of it alive → <see cref="SiloStop.Rejoin"/>.
/// The others voted it dead (a partition, a long pause); its grains live on elsewhere, and a new generation on the same
/// ports can join again. Decided on the membership view, not the reason's wording, which changes between versions.</item>
/// <item>everything else → <see cref="SiloStop.Fatal"/>, exit code 1: "Found a bug! Will stop." (votes counted but the
/// silo not dead), "Detected newer version of myself" (another process took this address and port with a newer
/// generation: rejoining would evict it and the two would take turns), and unexpected exceptions in the membership
/// loops (<c>UpdateIAmAlive</c>, <c>ProcessMembershipUpdates</c>, <c>PeriodicallyRefreshMembershipTable</c>).</item>
/// </list>
/// Returns at once: Orleans calls it from its membership loops, which the host's stop waits for.
/// </summary>
public sealed partial class RejoiningFatalErrorHandler : IFatalErrorHandler
{
    /// <summary>How <c>MembershipTableManager.KillMyselfLocally</c> starts its context, whatever the reason.</summary>
    public const string KillMyselfContext = "I have been told I am dead";

    /// <summary>The start of the one line logged when this silo was declared dead (tests look for it).</summary>
    public const string DeclaredDeadMessage = "Declared dead by the cluster";

    private readonly SiloGeneration _generation;
    private readonly IServiceProvider _services;
    private readonly IHostApplicationLifetime _lifetime;
    private readonly ILocalSiloDetails _silo;
    private readonly ILogger<RejoiningFatalErrorHandler> _logger;

    public RejoiningFatalErrorHandler(
        SiloGeneration generation,
        IServiceProvider services,
        IHostApplicationLifetime lifetime,
        ILocalSiloDetails silo,
        IMeterFactory meters,
        ILogger<RejoiningFatalErrorHandler> logger)
    {
        _generation = generation;
        _services = services;
        _lifetime = lifetime;
        _silo = silo;
        _logger = logger;

        // Here because Orleans resolves this handler in every silo (its membership services need it). An observable
        // counter of the process's total: each host's meter reports it, and a new host does not start again at 0.
        meters.Create(DashboardMetrics.MeterName).CreateObservableCounter(
            "statscache.silo.rejoins", () => (long)generation.Rejoins, "{rejoin}", "Times this silo process rejoined the cluster as a new silo after being declared dead.");
    }

    // As Orleans' default handler: only a thread abort is expected.
    public bool IsUnexpected(Exception exception) => exception is not ThreadAbortException;

    public void OnFatalException(object? sender = null, string? context = null, Exception? exception = null)
    {
        var rejoin = context?.Contains(KillMyselfContext, StringComparison.Ordinal) == true && IsDeclaredDead();
        if (_generation.TryRecordStop(rejoin ? SiloStop.Rejoin : SiloStop.Fatal))
        {
            // Orleans has logged the membership entry (an error from MembershipTableManager); one line of ours says what follows.
            if (rejoin)
            {
                LogDeclaredDead(_logger, _silo.SiloAddress, _generation.Rejoins + 1);
            }
            else
            {
                LogFatal(_logger, exception, sender?.GetType().Name ?? "Orleans", context ?? "(none)");
            }
        }

        // Not on Orleans' thread: the stop waits for the membership loop that called this.
        _ = Task.Run(_lifetime.StopApplication);
    }

    private bool IsDeclaredDead()
    {
        try
        {
            // Resolved now: the membership service itself depends on this handler.
            var view = _services.GetRequiredService<IClusterMembershipService>().CurrentSnapshot;
            var me = _silo.SiloAddress;
            return view.GetSiloStatus(me) == SiloStatus.Dead
                && !view.Members.Values.Any(m => m.SiloAddress.Endpoint.Equals(me.Endpoint) && m.SiloAddress.Generation > me.Generation && m.Status != SiloStatus.Dead);
        }
        catch (Exception e) when (e is InvalidOperationException or ObjectDisposedException)
        {
            return false;
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = DeclaredDeadMessage + ": silo {Silo} stops, and this process rejoins as a new silo (rejoin {Rejoin} of this process).")]
    private static partial void LogDeclaredDead(ILogger logger, SiloAddress silo, int rejoin);

    [LoggerMessage(Level = LogLevel.Critical, Message = "Fatal error from {Sender} ({Context}): the silo stops and the process exits with code 1.")]
    private static partial void LogFatal(ILogger logger, Exception? exception, string sender, string context);
}

public static class SiloRejoinExtensions
{
    /// <summary>
    /// Orleans' fatal errors stop this host (see <see cref="RejoiningFatalErrorHandler"/>) instead of the process.
    /// Call after <c>UseOrleans</c>: Orleans adds its default handler with TryAdd when the silo builder is created, and
    /// this replaces it. The web host's co-hosted silo keeps Orleans' default: a cluster of one is never voted dead.
    /// </summary>
    public static IHostApplicationBuilder AddStatsCacheSiloRejoin(this IHostApplicationBuilder builder, SiloGeneration generation)
    {
        builder.Services.AddSingleton(generation);
        builder.Services.Replace(ServiceDescriptor.Singleton<IFatalErrorHandler, RejoiningFatalErrorHandler>());
        return builder;
    }
}
