using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;

namespace StatsCache.Integration.Tests;

/// <summary>Reads a view's <c>data</c> over HTTP and checks its rows column by column.</summary>
internal static class ViewAssert
{
    /// <summary>GETs the view as the caller and returns its <c>data</c> object.</summary>
    public static async Task<JsonElement> GetDataAsync(this StatsCacheFactory factory, long site, string role, long user, string view, string query = "")
    {
        var response = await factory.ClientFor(site, role, user).GetAsync($"/api/dashboards/{view}{(query.Length > 0 ? "?" + query : "")}");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var body = await response.Content.ReadFromJsonAsync<JsonElement>();
        Assert.Equal((site, role, user), (body.GetProperty("site").GetInt64(), body.GetProperty("role").GetString(), body.GetProperty("user").GetInt64()));
        Assert.False(body.GetProperty("stale").GetBoolean());
        return body.GetProperty("data");
    }

    /// <summary>
    /// Asserts that the row has exactly these columns with these values, so no number goes unchecked:
    /// null is JSON null, integers and decimals compare as numbers, DateTime as an instant (UTC), DateOnly as "yyyy-MM-dd".
    /// </summary>
    public static void Row(JsonElement row, params (string Column, object? Value)[] expected)
    {
        Assert.Equal(JsonValueKind.Object, row.ValueKind);
        Assert.Equal(
            expected.Select(e => e.Column).Order(StringComparer.Ordinal),
            row.EnumerateObject().Select(p => p.Name).Order(StringComparer.Ordinal));
        foreach (var (column, value) in expected)
        {
            var actual = row.GetProperty(column);
            var what = $"column '{column}' of {row}";
            switch (value)
            {
                case null:
                    Assert.True(actual.ValueKind == JsonValueKind.Null, $"{what}: expected null");
                    break;
                case int or long:
                    Assert.True(actual.ValueKind == JsonValueKind.Number, $"{what}: expected a number");
                    Assert.True(Convert.ToInt64(value, CultureInfo.InvariantCulture) == actual.GetInt64(), $"{what}: expected {value}");
                    break;
                case decimal d:
                    Assert.True(actual.ValueKind == JsonValueKind.Number, $"{what}: expected a number");
                    Assert.True(d == actual.GetDecimal(), $"{what}: expected {d.ToString(CultureInfo.InvariantCulture)}");
                    break;
                case bool b:
                    Assert.True(actual.ValueKind is JsonValueKind.True or JsonValueKind.False && actual.GetBoolean() == b, $"{what}: expected {b}");
                    break;
                case string s:
                    Assert.True(actual.ValueKind == JsonValueKind.String && actual.GetString() == s, $"{what}: expected '{s}'");
                    break;
                case DateTime t:
                    Assert.True(actual.ValueKind == JsonValueKind.String && actual.GetString()!.EndsWith('Z'), $"{what}: expected a UTC timestamp");
                    Assert.True(t.ToUniversalTime() == actual.GetDateTime().ToUniversalTime(), $"{what}: expected {t:O}");
                    break;
                case DateOnly day:
                    Assert.True(actual.GetString() == day.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture), $"{what}: expected {day:yyyy-MM-dd}");
                    break;
                default:
                    throw new ArgumentException($"Unsupported expected value type {value.GetType()} for column '{column}'.");
            }
        }
    }

    /// <summary>Now (UTC) without its fractional seconds, so timestamps round-trip through PostgreSQL and JSON exactly.</summary>
    public static DateTime UtcNowSeconds()
    {
        var now = DateTime.UtcNow;
        return new DateTime(now.Ticks - now.Ticks % TimeSpan.TicksPerSecond, DateTimeKind.Utc);
    }

    /// <summary>The first instant of the calendar month <paramref name="monthsBack"/> months before the current one (UTC).</summary>
    public static DateTime MonthStart(DateTime nowUtc, int monthsBack) =>
        new DateTime(nowUtc.Year, nowUtc.Month, 1, 0, 0, 0, DateTimeKind.Utc).AddMonths(-monthsBack);

    /// <summary>Monday 00:00 UTC of the ISO week <paramref name="weeksBack"/> weeks before the current one.</summary>
    public static DateTime WeekStart(DateTime nowUtc, int weeksBack) =>
        nowUtc.Date.AddDays(-(((int)nowUtc.DayOfWeek + 6) % 7) - 7 * weeksBack);
}
