using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;

namespace StatsCache.Integration.Tests;

/// <summary><c>Orleans:Mode=Client</c>: the web host holds no grains and calls a silo running as its own process.</summary>
[Collection(DatabaseCollection.Name)]
public sealed class ClientModeTests(TestDatabase db)
{
    [Fact]
    public async Task WebHostInClientModeServesFromASeparateSiloProcess()
    {
        await using var silo = await ServiceProcess.StartSiloAsync(db.ConnectionString);
        await using var factory = new StatsCacheFactory();
        factory.Settings["Orleans:Mode"] = "Client";
        factory.Settings["Orleans:GatewayPort"] = silo.GatewayPort.ToString(CultureInfo.InvariantCulture);
        factory.Settings["Orleans:ClusterId"] = silo.ClusterId!;

        var site = await db.NewWebsiteAsync();
        var client = await db.NewUserAsync(site, "client");
        await db.ExecuteAsync(
            "insert into orders (website_id, client_id, status, price, pages, is_paid, created_at, deadline) " +
            "values (@w, @c, 'completed', 12.5, 2, true, now(), now() + interval '1 day')",
            ("w", site), ("c", client));

        var response = await factory.ClientFor(site, "client", client).GetAsync("/api/dashboards/client-stats");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var body = await response.Content.ReadFromJsonAsync<JsonElement>();
        Assert.Equal(12.5m, body.GetProperty("data").GetProperty("summary").GetProperty("total_spent").GetDecimal());
        Assert.Equal(HttpStatusCode.OK, (await factory.CreateClient().GetAsync("/readyz")).StatusCode);
    }
}
