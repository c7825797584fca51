using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using StatsCache.Cache;

namespace StatsCache.Integration.Tests;

/// <summary>
/// Sums the <c>StatsCache</c> meter's counters of one web host (its meter factory's meter only, so hosts of
/// other tests do not count) by instrument, view and outcome or reason.
/// </summary>
public sealed class MetricsRecorder : IDisposable
{
    private readonly MeterListener _listener = new();
    private readonly ConcurrentDictionary<(string Instrument, string? View, string? Outcome), long> _totals = new();

    public MetricsRecorder(IServiceProvider services)
    {
        var meters = services.GetRequiredService<IMeterFactory>();
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == DashboardMetrics.MeterName && ReferenceEquals(instrument.Meter.Scope, meters))
            {
                listener.EnableMeasurementEvents(instrument);
            }
        };
        _listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
        {
            string? view = null, outcome = null;
            foreach (var tag in tags)
            {
                if (tag.Key == "view")
                {
                    view = tag.Value as string;
                }
                else if (tag.Key is "outcome" or "reason")
                {
                    outcome = tag.Value as string;
                }
            }

            _totals.AddOrUpdate((instrument.Name, view, outcome), value, (_, total) => total + value);
            if (view is not null || outcome is not null)
            {
                _totals.AddOrUpdate((instrument.Name, null, null), value, (_, total) => total + value); // the instrument's total
            }
        });
        _listener.Start();
    }

    /// <summary>The counter's total for a view and outcome; with no view, over every view and outcome.</summary>
    public long Total(string instrument, string? view = null, string? outcome = null) =>
        _totals.GetValueOrDefault((instrument, view, outcome));

    public void Dispose() => _listener.Dispose();
}
