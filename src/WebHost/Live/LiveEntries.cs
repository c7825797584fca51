using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Threading.Channels;
using Microsoft.Extensions.Options;
using StatsCache.Cache;
using StatsCache.WebHost.Api;
using StatsCache.WebHost.Auth;
using StatsCache.WebHost.NearCache;

namespace StatsCache.WebHost.Live;

/// <summary>
/// What this web host's live streams watch: one <see cref="LiveEntry"/> per entry (its near-cache key) however many
/// streams show it, holding the entry's newest answer, and the open streams with their count per caller. The
/// <see cref="DashboardWatcher"/> applies the grains' pushes here, which wakes the streams showing the entry;
/// <see cref="LiveUpkeep"/> renews each entry's watch with its grain and beats the streams' hearts.
/// </summary>
public sealed class LiveEntries
{
    private readonly ConcurrentDictionary<NearKey, LiveEntry> _entries = new();
    private readonly ConcurrentDictionary<LiveSubscriber, byte> _streams = new();
    private readonly ConcurrentDictionary<Caller, int> _perCaller = new();
    private readonly LiveOptions _options;
    private readonly TimeProvider _time;
    private readonly long _renewEvery;
    private int _streamCount;

    public LiveEntries(IOptions<LiveOptions> options, IOptions<NearCacheOptions> watch, TimeProvider time, IMeterFactory meters)
    {
        _options = options.Value;
        _time = time;

        // Renewed at half the watch, so a slow renewal still lands before the grain forgets the watch.
        _renewEvery = (long)(watch.Value.WatchDuration.TotalSeconds / 2 * time.TimestampFrequency);
        var meter = meters.Create(DashboardMetrics.MeterName);
        meter.CreateObservableUpDownCounter("statscache.live.streams", () => StreamCount, "{stream}", "Live streams open on this web host.");
        meter.CreateObservableUpDownCounter("statscache.live.entries", () => EntryCount, "{entry}", "Entries this web host's live streams watch (one grain watch each, however many streams).");
    }

    public bool IsWatched(in NearKey key) => !_entries.IsEmpty && _entries.ContainsKey(key);

    // Enumerated, not .Values: that copies under every lock of the dictionary, and the upkeep walks it four times a second.
    internal IEnumerable<LiveEntry> Entries => _entries.Select(static pair => pair.Value);

    internal int EntryCount => _entries.Count;

    internal int StreamCount => Volatile.Read(ref _streamCount);

    internal IEnumerable<LiveSubscriber> Streams => _streams.Select(static pair => pair.Key);

    /// <summary>Counts a new stream in, unless this web host or its caller already holds as many as allowed.</summary>
    internal LiveOpening TryOpen(LiveSubscriber stream)
    {
        if (Interlocked.Increment(ref _streamCount) > _options.MaxStreams)
        {
            Interlocked.Decrement(ref _streamCount);
            return LiveOpening.HostFull;
        }

        if (_perCaller.AddOrUpdate(stream.Caller, 1, static (_, n) => n + 1) > _options.MaxStreamsPerCaller)
        {
            ReleaseCaller(stream.Caller);
            Interlocked.Decrement(ref _streamCount);
            return LiveOpening.CallerFull;
        }

        _streams.TryAdd(stream, 0);
        return LiveOpening.Opened;
    }

    /// <summary>Adds <paramref name="stream"/> to the watchers of <paramref name="read"/>'s entry (made when it is the first).</summary>
    internal LiveEntry Watch(ViewRead read, LiveSubscriber stream)
    {
        var key = DashboardReader.KeyOf(read);
        var state = (read, renewAt: _time.GetTimestamp() + _renewEvery);
        while (true)
        {
            var entry = _entries.GetOrAdd(key, static (k, s) => new LiveEntry(k, s.read, s.renewAt), state);
            lock (entry)
            {
                if (!entry.Closed)
                {
                    entry.Subscribers.Add(stream);
                    stream.Entries.Add(entry);
                    return entry;
                }
            }

            // Its last stream left between the lookup and the lock: it is on its way out of the dictionary, make another.
        }
    }

    /// <summary>Takes a closing stream out of its entries (an entry no stream shows is dropped: its grain watch lapses) and the counts.</summary>
    internal void Close(LiveSubscriber stream)
    {
        foreach (var entry in stream.Entries)
        {
            lock (entry)
            {
                entry.Subscribers.Remove(stream);
                if (entry.Subscribers.Count > 0)
                {
                    continue;
                }

                entry.Closed = true;
            }

            _entries.TryRemove(KeyValuePair.Create(entry.Key, entry));
        }

        if (_streams.TryRemove(stream, out _))
        {
            ReleaseCaller(stream.Caller);
            Interlocked.Decrement(ref _streamCount);
        }
    }

    /// <summary>
    /// The entry's answer from a push, or from a read that watched it (<paramref name="watchStarted"/>: when that read
    /// started: the next renewal is due half a watch later, unless another watch lasts longer). An older version never
    /// replaces a newer one; a new one wakes the streams.
    /// </summary>
    public void Apply(in NearKey key, DashboardResult result, long? watchStarted = null)
    {
        if (!_entries.TryGetValue(key, out var entry))
        {
            return;
        }

        lock (entry)
        {
            if (watchStarted is { } started)
            {
                entry.RenewAt = Math.Max(entry.RenewAt, started + _renewEvery);
            }

            if (entry.Current is { } held && result.Version <= held.Version)
            {
                return;
            }

            entry.Current = result;
            foreach (var stream in entry.Subscribers)
            {
                stream.Signal(); // never blocks: a stream that has not caught up reads the newest answer when it does
            }
        }
    }

    /// <summary>The entry left its grain (removed, or the grain deactivated): read it again at once, which watches it again.</summary>
    public void Gone(in NearKey key)
    {
        if (_entries.TryGetValue(key, out var entry))
        {
            entry.RenewAt = 0;
        }
    }

    /// <summary>The grains may have lost this web host's watches (a silo or the gateways went): read every entry again.</summary>
    public void RenewAll()
    {
        foreach (var entry in Entries)
        {
            entry.RenewAt = 0;
        }
    }

    private void ReleaseCaller(Caller caller)
    {
        while (true)
        {
            var count = _perCaller[caller];
            if (count == 1 ? _perCaller.TryRemove(KeyValuePair.Create(caller, 1)) : _perCaller.TryUpdate(caller, count - 1, count))
            {
                return;
            }
        }
    }
}

internal enum LiveOpening
{
    Opened,
    CallerFull,
    HostFull,
}

/// <summary>
/// One watched entry: the streams showing it, its newest answer (<see cref="Current"/>), and when its grain watch is
/// next renewed (<see cref="RenewAt"/>, a timestamp; 0: at once). Renewals read as <see cref="Read"/>, the first
/// stream's read: for a site-scoped view any admin of the site reaches the same site grain.
/// </summary>
internal sealed class LiveEntry(NearKey key, ViewRead read, long renewAt)
{
    private int _renewing;

    public NearKey Key { get; } = key;

    public ViewRead Read { get; } = read;

    public List<LiveSubscriber> Subscribers { get; } = [];

    public bool Closed { get; set; }

    public volatile DashboardResult? Current;

    private volatile LiveFrame? _frame;

    public long RenewAt = renewAt;

    /// <summary>The event of <see cref="Current"/>, encoded once for every stream showing the entry; null before any answer.</summary>
    public LiveFrame? CurrentFrame()
    {
        if (Current is not { } current)
        {
            return null;
        }

        var frame = _frame;
        if (!ReferenceEquals(frame?.Result, current))
        {
            frame = LiveFrame.Of(Read, current); // two streams may both encode a new answer: the same bytes, either is kept
            _frame = frame;
        }

        return frame;
    }

    public bool TryStartRenewal() => Interlocked.CompareExchange(ref _renewing, 1, 0) == 0;

    public void EndRenewal() => Volatile.Write(ref _renewing, 0);
}

/// <summary>
/// One open stream's side of the watching: its caller, its entries in request order, and a wake-up signal that
/// coalesces (a stream woken twice before it ran reads each entry's newest answer once).
/// </summary>
internal sealed class LiveSubscriber(Caller caller)
{
    private readonly Channel<bool> _wake = Channel.CreateBounded<bool>(
        new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite, SingleReader = true });

    private int _heartbeatDue;

    public Caller Caller { get; } = caller;

    public List<LiveEntry> Entries { get; } = [];

    public void Signal() => _wake.Writer.TryWrite(true);

    public void BeatHeart()
    {
        Volatile.Write(ref _heartbeatDue, 1);
        Signal();
    }

    public bool TakeHeartbeat() => Interlocked.Exchange(ref _heartbeatDue, 0) == 1;

    public async ValueTask WaitAsync(CancellationToken cancellationToken)
    {
        await _wake.Reader.WaitToReadAsync(cancellationToken);
        _wake.Reader.TryRead(out _);
    }
}
