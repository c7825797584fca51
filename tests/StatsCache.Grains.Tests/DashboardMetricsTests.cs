using Npgsql;
using StatsCache.Cache;

namespace StatsCache.Grains.Tests;

/// <summary>Failed loads are tagged with a few fixed reasons, never with an exception's text.</summary>
public sealed class DashboardMetricsTests
{
    [Fact]
    public void LoadFailuresAreClassifiedIntoFixedErrorTypes()
    {
        Assert.Equal("timeout", DashboardMetrics.ErrorTypeOf(new OperationCanceledException()));
        Assert.Equal("timeout", DashboardMetrics.ErrorTypeOf(new TimeoutException()));
        Assert.Equal("timeout", DashboardMetrics.ErrorTypeOf(new NpgsqlException("slow", new TimeoutException())));
        Assert.Equal("postgres", DashboardMetrics.ErrorTypeOf(new PostgresException("column does not exist", "ERROR", "ERROR", "42703")));
        Assert.Equal("connection", DashboardMetrics.ErrorTypeOf(new NpgsqlException("Failed to connect")));
        Assert.Equal("other", DashboardMetrics.ErrorTypeOf(new InvalidOperationException("query 'x' is declared 'row' but returned several rows")));
    }
}
