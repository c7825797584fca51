using Orleans.Metadata;

namespace StatsCache;

/// <summary>
/// References to the dashboard grains by scope, for the per-request path. Orleans'
/// <c>GetGrain&lt;T&gt;(string)</c> resolves the grain interface's type from its attributes on every
/// call (reflection: a few percent of a cached read's CPU in the <c>hit</c> benchmark's profile);
/// here both the interface types and the grain types (declared on the grain classes) are resolved once.
/// </summary>
public sealed class DashboardGrains(IGrainFactory grains, GrainInterfaceTypeResolver interfaces)
{
    private readonly GrainInterfaceType _user = interfaces.GetGrainInterfaceType(typeof(IUserDashboardGrain));
    private readonly GrainInterfaceType _site = interfaces.GetGrainInterfaceType(typeof(ISiteDashboardGrain));

    public IUserDashboardGrain User(long siteId, string role, long userId) => (IUserDashboardGrain)grains.GetGrain(
        GrainId.Create(UserDashboardGrain.GrainType, DashboardScope.UserKey(siteId, role, userId)), _user);

    public ISiteDashboardGrain Site(long siteId, string role) => (ISiteDashboardGrain)grains.GetGrain(
        GrainId.Create(SiteDashboardGrain.GrainType, DashboardScope.SiteKey(siteId, role)), _site);
}
