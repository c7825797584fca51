using System.Collections.Concurrent;
using Microsoft.Extensions.Options;
using StatsCache.WebHost.Auth;

namespace StatsCache.WebHost.Hosting;

/// <summary>
/// The request limit of this web host: a token bucket per caller, <see cref="RequestLimitOptions.Burst"/> tokens
/// filling continuously at <see cref="RequestLimitOptions.RequestsPerSecond"/>. A bucket is filled when it is used, from
/// the time it was last used: no timer per bucket. A bucket that has filled up again is no different from a new one, so
/// <see cref="Sweep"/> drops those, and the web host holds buckets only for the callers of the last few seconds.
/// A request that finds its bucket allocates nothing.
/// </summary>
internal sealed class RequestLimiter
{
    private readonly ConcurrentDictionary<Caller, Bucket> _buckets = new();
    private readonly TimeProvider _time;
    private readonly double _burst;
    private readonly double _requestsPerSecond;
    private readonly double _tokensPerTick;

    public RequestLimiter(IOptions<RequestLimitOptions> options, TimeProvider time)
    {
        _time = time;
        _burst = options.Value.Burst;
        _requestsPerSecond = options.Value.RequestsPerSecond;
        _tokensPerTick = _requestsPerSecond / time.TimestampFrequency;
    }

    /// <summary>Callers with a bucket: those not yet swept.</summary>
    public int Count => _buckets.Count;

    /// <summary>Takes one of the caller's tokens; when there is none, false, and how long until there is one.</summary>
    public bool TryTake(Caller caller, out TimeSpan retryAfter)
    {
        var now = _time.GetTimestamp();
        var bucket = _buckets.GetOrAdd(caller, static (_, start) => new Bucket(start.Burst, start.Now), (Burst: _burst, Now: now));
        return bucket.TryTake(this, now, out retryAfter);
    }

    /// <summary>
    /// Drops the buckets that have filled up again: their callers sent nothing for as long as a bucket takes to fill,
    /// and a new bucket answers them the same.
    /// </summary>
    /// <remarks>
    /// A request may take its bucket from the dictionary just before the sweep drops it, and then take a token from a bucket
    /// no longer there: that token is not counted, and the caller's next request starts a full bucket. A caller so gets one
    /// request more than its burst per request racing a sweep, and only when it had been idle long enough to fill its bucket,
    /// which a caller sending faster than the rate never is. Not worth a lock around the dictionary on every request.
    /// </remarks>
    public void Sweep()
    {
        var now = _time.GetTimestamp();
        foreach (var (caller, bucket) in _buckets)
        {
            if (bucket.IsFull(this, now))
            {
                _buckets.TryRemove(new KeyValuePair<Caller, Bucket>(caller, bucket));
            }
        }
    }

    /// <summary>One caller's tokens as of <c>_filledAt</c> (a <see cref="TimeProvider.GetTimestamp"/>); used under its own lock.</summary>
    private sealed class Bucket(double tokens, long filledAt)
    {
        private readonly Lock _lock = new();
        private double _tokens = tokens;
        private long _filledAt = filledAt;

        public bool TryTake(RequestLimiter limiter, long now, out TimeSpan retryAfter)
        {
            lock (_lock)
            {
                _tokens = TokensAt(limiter, now);
                _filledAt = Math.Max(_filledAt, now); // another request, which read the time later, may have been here first
                if (_tokens >= 1)
                {
                    _tokens--;
                    retryAfter = TimeSpan.Zero;
                    return true;
                }

                retryAfter = TimeSpan.FromSeconds((1 - _tokens) / limiter._requestsPerSecond);
                return false;
            }
        }

        public bool IsFull(RequestLimiter limiter, long now)
        {
            lock (_lock)
            {
                return TokensAt(limiter, now) >= limiter._burst;
            }
        }

        private double TokensAt(RequestLimiter limiter, long now) =>
            now <= _filledAt ? _tokens : Math.Min(_tokens + ((now - _filledAt) * limiter._tokensPerTick), limiter._burst);
    }
}

/// <summary>Sweeps the request limiter's full buckets (<see cref="RequestLimiter.Sweep"/>) every few seconds.</summary>
internal sealed class RequestLimitSweep(RequestLimiter limiter, IOptions<RequestLimitOptions> options, TimeProvider time) : BackgroundService
{
    // One pass over the callers of the last few seconds, each bucket locked for a moment: cheap at any number of callers,
    // and often enough that an idle caller's bucket is gone seconds after it filled.
    private static readonly TimeSpan Interval = TimeSpan.FromSeconds(5);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (!options.Value.IsEnabled)
        {
            return;
        }

        using var timer = new PeriodicTimer(Interval, time);
        while (await timer.WaitForNextTickAsync(stoppingToken))
        {
            limiter.Sweep();
        }
    }
}
