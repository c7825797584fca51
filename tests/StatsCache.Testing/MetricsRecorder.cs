using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.DependencyInjection;
using StatsCache.Cache;
using Xunit;

namespace StatsCache.Testing;

/// <summary>
/// Sums the <c>StatsCache</c> meter's counters by instrument, view (or table, or target) and outcome (or reason), so tests can count and
/// wait on what the service did. Given a host's services, only that host's meters count (hosts of other tests do
/// not); without, every <c>StatsCache</c> meter in the process does (one TestingHost silo).
/// </summary>
public sealed class MetricsRecorder : IDisposable
{
    private readonly MeterListener _listener = new();
    private readonly ConcurrentDictionary<(string Instrument, string? View, string? Outcome), long> _totals = new();

    public MetricsRecorder(IServiceProvider? services = null)
    {
        var meters = services?.GetRequiredService<IMeterFactory>();
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == DashboardMetrics.MeterName && (meters is null || ReferenceEquals(instrument.Meter.Scope, meters)))
            {
                listener.EnableMeasurementEvents(instrument);
            }
        };
        _listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
        {
            string? view = null, outcome = null;
            foreach (var tag in tags)
            {
                if (tag.Key is "view" or "table" or "target")
                {
                    view = tag.Value as string;
                }
                else if (tag.Key is "outcome" or "reason")
                {
                    outcome = tag.Value as string;
                }
            }

            Add((instrument.Name, view, outcome), value);
            if (view is not null && outcome is not null)
            {
                Add((instrument.Name, view, null), value); // the view's total over outcomes
                Add((instrument.Name, null, outcome), value); // the outcome's total over views
            }

            if (view is not null || outcome is not null)
            {
                Add((instrument.Name, null, null), value); // the instrument's total
            }
        });
        _listener.Start();
    }

    /// <summary>The counter's total for a view and outcome; without either, over every value of it.</summary>
    public long Total(string instrument, string? view = null, string? outcome = null) =>
        _totals.GetValueOrDefault((instrument, view, outcome));

    /// <summary>Polls until the counter reaches <paramref name="atLeast"/>, failing after the deadline.</summary>
    public async Task WaitForAsync(string instrument, string? view, long atLeast, string? outcome = null, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(10));
        while (Total(instrument, view, outcome) < atLeast)
        {
            Assert.True(DateTime.UtcNow < deadline,
                $"{instrument}{{view={view}, outcome={outcome}}} stayed at {Total(instrument, view, outcome)}, expected at least {atLeast}.");
            await Task.Delay(TimeSpan.FromMilliseconds(10));
        }
    }

    public void Dispose() => _listener.Dispose();

    private void Add((string Instrument, string? View, string? Outcome) key, long value) =>
        _totals.AddOrUpdate(key, value, (_, total) => total + value);
}
