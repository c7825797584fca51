using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using StatsCache.Cache;

namespace StatsCache.Grains.Tests;

/// <summary>Sums the StatsCache meter's counters by instrument and view, so tests can wait on what grains did.</summary>
public sealed class MetricsRecorder : IDisposable
{
    private readonly MeterListener _listener = new();
    private readonly ConcurrentDictionary<(string Instrument, string? View, string? Reason), long> _totals = new();

    public MetricsRecorder()
    {
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == DashboardMetrics.MeterName)
            {
                listener.EnableMeasurementEvents(instrument);
            }
        };
        _listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
        {
            string? view = null, reason = null;
            foreach (var tag in tags)
            {
                if (tag.Key == "view") view = tag.Value as string;
                if (tag.Key is "reason" or "outcome") reason = tag.Value as string;
            }

            _totals.AddOrUpdate((instrument.Name, view, reason), value, (_, total) => total + value);
        });
        _listener.Start();
    }

    public long Total(string instrument, string view, string? reason = null) =>
        _totals.GetValueOrDefault((instrument, view, reason));

    /// <summary>Polls until the counter reaches <paramref name="atLeast"/>, failing after the deadline.</summary>
    public async Task WaitForAsync(string instrument, string view, long atLeast, string? reason = null, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(10));
        while (Total(instrument, view, reason) < atLeast)
        {
            Assert.True(DateTime.UtcNow < deadline,
                $"{instrument}{{view={view}, reason={reason}}} stayed at {Total(instrument, view, reason)}, expected at least {atLeast}.");
            await Task.Delay(TimeSpan.FromMilliseconds(10));
        }
    }

    public void Dispose() => _listener.Dispose();
}
