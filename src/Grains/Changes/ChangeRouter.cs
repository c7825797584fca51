using Microsoft.Extensions.Logging;
using Orleans.Runtime.Services;
using Orleans.Services;

namespace StatsCache.Changes;

/// <summary>Each silo's receiver of the change feed (<see cref="ChangeSource.Replication"/>): the silo holding the slot delivers to every silo's.</summary>
public interface IChangeRouter : IGrainService
{
    /// <summary>Routes the batch to this silo's active grains; returns once they have been told.</summary>
    [ResponseTimeout("00:00:05")]
    Task DeliverAsync(ChangeBatch batch);
}

/// <summary>The <see cref="IChangeRouter"/> of one silo, a system target started with the silo.</summary>
public sealed class ChangeRouter(GrainId id, Silo silo, ILoggerFactory loggerFactory, ChangeDispatcher dispatcher)
    : GrainService(id, silo, loggerFactory), IChangeRouter
{
    public Task DeliverAsync(ChangeBatch batch)
    {
        dispatcher.Dispatch(batch);
        return Task.CompletedTask;
    }
}

/// <summary>References to the silos' <see cref="IChangeRouter"/>s.</summary>
public sealed class ChangeRouters(IServiceProvider services) : GrainServiceClient<IChangeRouter>(services)
{
    public IChangeRouter On(SiloAddress silo) => GetGrainService(silo);
}
