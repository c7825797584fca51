using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.DependencyInjection;
using StatsCache.WebHost.Api;
using StatsCache.WebHost.Auth;

namespace StatsCache.Integration.Tests.Tokens;

/// <summary>
/// The platform's own tokens, minted by the platform's issuer (SimpleJWT) and by PyJWT, never by this project:
/// HS256 with Django's SECRET_KEY, RS256 and ES256 from PEM keys, JWKS with rotation, and what must be refused.
/// </summary>
[Collection(DatabaseCollection.Name)]
public sealed class PlatformTokenTests(TestDatabase db) : IDisposable
{
    // The platform's claims: SimpleJWT's user_id, and the role and website_id its get_token adds.
    private static readonly (string, string)[] PlatformSettings =
    [
        ("Auth:Claims:User", "user_id"), ("Auth:Claims:Site", "website_id"), ("Auth:Claims:Role", "role"),
        ("Auth:Issuer", ""), ("Auth:Audience", ""),
    ];

    private readonly PlatformIssuer _issuer = new();
    private readonly string _secretKey = $"django-insecure-{Guid.NewGuid():N}{Guid.NewGuid():N}";

    public void Dispose() => _issuer.Dispose();

    [Fact]
    public async Task SimpleJwtAccessTokensReadTheirUsersOwnDashboardsAndRefreshTokensAreRefused()
    {
        var logs = new CapturingLoggerProvider();
        await using var web = StatsCacheFactory.Started([("Auth:SigningKey", _secretKey), .. PlatformSettings], logs);
        var site = await db.NewWebsiteAsync();
        var (alice, bob) = (await db.NewUserAsync(site, "client"), await db.NewUserAsync(site, "client"));
        await db.NewOrderAsync(site, alice);
        await db.NewOrderAsync(site, alice);
        await db.NewOrderAsync(site, bob);

        // SimpleJWT's defaults: HS256 with SECRET_KEY, no iss, aud or kid; user_id a number (up to 5.5.0) or a string (from 5.5.1).
        var tokens = await _issuer.SimpleJwtAsync(
            new JsonObject { ["SECRET_KEY"] = _secretKey },
            ("access", Claims(alice, site, "client")),
            ("access", Claims(bob, site, "client", userIdAsString: true)),
            ("refresh", Claims(alice, site, "client")));

        await AssertOwnNumbersAsync(web, tokens[0], alice, orders: 2);
        await AssertOwnNumbersAsync(web, tokens[1], bob, orders: 1);
        var refused = await GetAsync(web, tokens[2]);
        var problem = await BadInputTests.AssertProblemAsync(refused, HttpStatusCode.Unauthorized, "The bearer token is invalid.");
        Assert.Contains("refresh tokens are not accepted", problem.Detail, StringComparison.Ordinal);

        // The invalidation API's service role, named by the same claims.
        var service = await _issuer.SimpleJwtAsync(new JsonObject { ["SECRET_KEY"] = _secretKey }, ("access", Claims(1, site, InvalidationApi.ServiceRole)));
        var http = web.CreateClient();
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", service[0]);
        var invalidated = await http.PostAsJsonAsync("/api/dashboards/invalidate", new { site, users = new[] { alice } });
        Assert.Equal(HttpStatusCode.Accepted, invalidated.StatusCode);

        // Issuer and audience are off, and start-up said so once.
        Assert.Single(logs.Entries, e => e.Level == LogLevel.Warning && e.Message.Contains("are not checked", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Rs256AndHs256WorkSideBySideAndAnHs256TokenSignedWithThePublicKeyIsRefused()
    {
        var (rsaPrivate, rsaPublic) = await _issuer.NewKeyPairAsync("rsa", ec: false);
        await using var web = StatsCacheFactory.Started([("Auth:SigningKey", _secretKey), ("Auth:PublicKeyPath", rsaPublic), .. PlatformSettings]);
        var site = await db.NewWebsiteAsync();
        var writer = await db.NewUserAsync(site, "writer");

        var hs256 = await _issuer.SimpleJwtAsync(new JsonObject { ["SECRET_KEY"] = _secretKey }, ("access", Claims(writer, site, "writer")));
        var rs256 = await _issuer.SimpleJwtAsync(RsaDeployment(rsaPrivate, rsaPublic), ("access", Claims(writer, site, "writer")));
        Assert.Equal(HttpStatusCode.OK, (await GetAsync(web, hs256[0], "writer-payment-info")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await GetAsync(web, rs256[0], "writer-payment-info")).StatusCode);

        // Algorithm confusion: HS256 with the public key's PEM text as the secret. PyJWT refuses to make this
        // token ("should not be used as an HMAC secret"), so it is put together by hand.
        var confused = BadTokens.Jwt(new { alg = "HS256", typ = "JWT" }, Payload(writer, site, "writer"), await File.ReadAllTextAsync(rsaPublic), HMACSHA256.HashData);
        await BadInputTests.AssertProblemAsync(await GetAsync(web, confused, "writer-payment-info"), HttpStatusCode.Unauthorized);
    }

    [Fact]
    public async Task Es256FromAPemPublicKeyIsAcceptedAndOtherKeysNoneAndExpiredAreNot()
    {
        var (ecPrivate, ecPublic) = await _issuer.NewKeyPairAsync("ec", ec: true);
        var (otherPrivate, _) = await _issuer.NewKeyPairAsync("other-ec", ec: true);
        await using var web = StatsCacheFactory.Started([("Auth:SigningKey", ""), ("Auth:PublicKeyPath", ecPublic), .. PlatformSettings]);
        var site = await db.NewWebsiteAsync();
        var admin = await db.NewUserAsync(site, "admin");

        var es256 = await _issuer.SimpleJwtAsync(
            new JsonObject
            {
                ["SECRET_KEY"] = _secretKey, ["ALGORITHM"] = "ES256",
                ["SIGNING_KEY"] = await File.ReadAllTextAsync(ecPrivate), ["VERIFYING_KEY"] = await File.ReadAllTextAsync(ecPublic),
            },
            ("access", Claims(admin, site, "admin")));
        Assert.Equal(HttpStatusCode.OK, (await GetAsync(web, es256[0], "admin-overview")).StatusCode);

        var valid = Claims(admin, site, "admin", expiresIn: 300);
        var refused = await _issuer.PyJwtAsync(
            PlatformIssuer.PyJwt("ES256", valid, keyPath: otherPrivate),
            PlatformIssuer.PyJwt("none", valid),
            PlatformIssuer.PyJwt("HS256", valid, secret: _secretKey),
            PlatformIssuer.PyJwt("ES256", Claims(admin, site, "admin", expiresIn: -300), keyPath: ecPrivate));
        foreach (var (name, token, title) in new[]
        {
            ("another EC key", refused[0], "The bearer token's signature is invalid."),
            ("alg none", refused[1], null),
            ("HS256 with Django's secret, which this host does not hold", refused[2], null),
            ("expired", refused[3], "The bearer token has expired."),
        })
        {
            var response = await GetAsync(web, token, "admin-overview");
            Assert.True(response.StatusCode == HttpStatusCode.Unauthorized, $"{name}: {response.StatusCode}");
            await BadInputTests.AssertProblemAsync(response, HttpStatusCode.Unauthorized, title);
        }
    }

    [Fact]
    public async Task JwksKeysRotateWithoutARestartAndUnknownKeyIdsCannotHammerTheIssuer()
    {
        var (first, firstPublic) = await _issuer.NewKeyPairAsync("k1", ec: false);
        var (second, secondPublic) = await _issuer.NewKeyPairAsync("k2", ec: false);
        using var jwks = new JwksServer { Document = await _issuer.JwksAsync((firstPublic, "k1", "RS256")) };
        await using var web = StatsCacheFactory.Started([("Auth:SigningKey", ""), ("Auth:JwksUrl", jwks.Url.ToString()), ("Auth:JwksMinRefreshDuration", "00:00:01"), .. PlatformSettings]);
        var site = await db.NewWebsiteAsync();
        var client = await db.NewUserAsync(site, "client");
        var claims = Claims(client, site, "client", expiresIn: 600);
        JsonObject Signed(string key, string kid) => PlatformIssuer.PyJwt("RS256", claims, keyPath: key, headers: new JsonObject { ["kid"] = kid });
        var tokens = await _issuer.PyJwtAsync([Signed(first, "k1"), Signed(second, "k2"), Signed(first, "k3"), .. Enumerable.Range(0, 50).Select(i => Signed(second, $"unknown-{i}"))]);
        var (oldToken, newToken, stranger, unknownKids) = (tokens[0], tokens[1], tokens[2], tokens[3..]);
        Assert.Equal(HttpStatusCode.OK, (await GetAsync(web, oldToken)).StatusCode);

        // The issuer rotates: k2 in, k1 out. A token naming k2 makes the service fetch the keys again (no restart);
        // the first such token may come within a second of the last fetch, and then waits for the next.
        jwks.Document = await _issuer.JwksAsync((secondPublic, "k2", "RS256"));
        await PollAsync(async () => (await GetAsync(web, newToken)).StatusCode == HttpStatusCode.OK, "a token signed with the new key answered 200");
        await BadInputTests.AssertProblemAsync(await GetAsync(web, oldToken), HttpStatusCode.Unauthorized, "The bearer token's signature is invalid.");

        // Tokens naming key ids nobody has: at most one fetch a second, however many arrive.
        var fetchesBefore = jwks.Fetches;
        var clock = Stopwatch.StartNew();
        foreach (var unknown in unknownKids)
        {
            Assert.Equal(HttpStatusCode.OK, (await GetAsync(web, unknown)).StatusCode); // no kid matched: tried against every key, k2 signed it
        }

        Assert.InRange(jwks.Fetches - fetchesBefore, 0, 1 + (int)clock.Elapsed.TotalSeconds);

        // The issuer goes down: the keys fetched last keep working.
        jwks.Document = null;
        var fetchesBeforeOutage = jwks.Fetches;
        await PollAsync(async () => (await GetAsync(web, stranger)).StatusCode == HttpStatusCode.Unauthorized && jwks.Fetches > fetchesBeforeOutage, "a fetch during the outage");
        Assert.Equal(HttpStatusCode.OK, (await GetAsync(web, newToken)).StatusCode);
    }

    /// <summary>
    /// The web host keeps the tokens it validated (<see cref="ValidatedTokens"/>) and matches a token sent again by its text:
    /// never past its expiry, never in any other text. (Never after the keys changed: the rotation test above, whose old
    /// token was matched before the rotation and refused after it.)
    /// </summary>
    [Fact]
    public async Task ATokenSentAgainIsMatchedUntilItExpiresAndNoOtherTextMatchesIt()
    {
        await using var web = StatsCacheFactory.Started([("Auth:ClockSkew", "00:00:00")]);
        var site = await db.NewWebsiteAsync();
        var user = await db.NewUserAsync(site, "client");
        var kept = web.Services.GetRequiredService<ValidatedTokens>();
        var token = web.TokenFor(site, "client", user, lifetime: TimeSpan.FromSeconds(3));

        Assert.Equal(HttpStatusCode.OK, (await GetAsync(web, token)).StatusCode);
        Assert.True(kept.TryMatch(token, out var caller, out _), "The validated token is kept.");
        Assert.Equal(new Caller(site, "client", user), caller);
        Assert.Equal(HttpStatusCode.OK, (await GetAsync(web, token)).StatusCode);

        // The same claims with one character of the signature changed (in the middle: the last one's low bits are padding).
        var signature = token.LastIndexOf('.') + 10;
        var altered = string.Concat(token.AsSpan(0, signature), token[signature] == 'A' ? "B" : "A", token.AsSpan(signature + 1));
        await BadInputTests.AssertProblemAsync(await GetAsync(web, altered), HttpStatusCode.Unauthorized, "The bearer token's signature is invalid.");
        Assert.False(kept.TryMatch(altered, out _, out _));

        // Past its expiry (no clock skew here) the kept token is not matched: validated again, it is refused as expired.
        await PollAsync(async () => (await GetAsync(web, token)).StatusCode == HttpStatusCode.Unauthorized, "the token refused once expired");
        await BadInputTests.AssertProblemAsync(await GetAsync(web, token), HttpStatusCode.Unauthorized, "The bearer token has expired.");
    }

    [Fact]
    public async Task IssuerAndAudienceAreCheckedWhenSet()
    {
        await using var web = StatsCacheFactory.Started([("Auth:SigningKey", _secretKey), .. PlatformSettings, ("Auth:Issuer", "https://platform.example"), ("Auth:Audience", "statscache")]);
        var site = await db.NewWebsiteAsync();
        var client = await db.NewUserAsync(site, "client");
        JsonObject Deployment(string? issuer, string? audience) => new() { ["SECRET_KEY"] = _secretKey, ["ISSUER"] = issuer, ["AUDIENCE"] = audience };

        var right = await _issuer.SimpleJwtAsync(Deployment("https://platform.example", "statscache"), ("access", Claims(client, site, "client")));
        var none = await _issuer.SimpleJwtAsync(Deployment(null, null), ("access", Claims(client, site, "client")));
        var otherIssuer = await _issuer.SimpleJwtAsync(Deployment("https://elsewhere.example", "statscache"), ("access", Claims(client, site, "client")));
        var otherAudience = await _issuer.SimpleJwtAsync(Deployment("https://platform.example", "billing"), ("access", Claims(client, site, "client")));

        Assert.Equal(HttpStatusCode.OK, (await GetAsync(web, right[0])).StatusCode);
        await BadInputTests.AssertProblemAsync(await GetAsync(web, none[0]), HttpStatusCode.Unauthorized);
        await BadInputTests.AssertProblemAsync(await GetAsync(web, otherIssuer[0]), HttpStatusCode.Unauthorized, "The bearer token's issuer is not accepted.");
        await BadInputTests.AssertProblemAsync(await GetAsync(web, otherAudience[0]), HttpStatusCode.Unauthorized, "The bearer token's audience is not accepted.");
    }

    [Fact]
    public async Task StartUpWithoutAnyKeyFailsNamingTheSettings()
    {
        await using var web = new StatsCacheFactory { Settings = { ["Auth:SigningKey"] = "" } };
        var failure = Record.Exception(() => web.Services);
        Assert.NotNull(failure);
        foreach (var setting in new[] { "Auth:SigningKey", "Auth:PublicKeyPath", "Auth:JwksUrl" })
        {
            Assert.Contains(setting, failure.ToString(), StringComparison.Ordinal);
        }
    }

    private static JsonObject RsaDeployment(string privatePath, string publicPath) => new()
    {
        ["SECRET_KEY"] = "unused-for-rs256",
        ["ALGORITHM"] = "RS256",
        ["SIGNING_KEY"] = File.ReadAllText(privatePath),
        ["VERIFYING_KEY"] = File.ReadAllText(publicPath),
    };

    // The claims the platform adds in get_token (SimpleJWT sets token_type, exp, iat and jti itself); for PyJWT
    // tokens, token_type and exp too.
    private static JsonObject Claims(long user, long site, string role, bool userIdAsString = false, int? expiresIn = null)
    {
        var claims = new JsonObject
        {
            ["user_id"] = userIdAsString ? JsonValue.Create(user.ToString(System.Globalization.CultureInfo.InvariantCulture)) : JsonValue.Create(user),
            ["website_id"] = site,
            ["role"] = role,
        };
        if (expiresIn is { } seconds)
        {
            claims["token_type"] = "access";
            claims["exp"] = new JsonObject { ["$now"] = seconds };
        }

        return claims;
    }

    private static Dictionary<string, object> Payload(long user, long site, string role) => new()
    {
        ["token_type"] = "access",
        ["user_id"] = user,
        ["website_id"] = site,
        ["role"] = role,
        ["exp"] = DateTimeOffset.UtcNow.AddMinutes(5).ToUnixTimeSeconds(),
    };

    private static async Task AssertOwnNumbersAsync(StatsCacheFactory web, string token, long user, int orders)
    {
        var response = await GetAsync(web, token);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var body = await response.Content.ReadFromJsonAsync<JsonElement>();
        Assert.Equal(user, body.GetProperty("user").GetInt64());
        Assert.Equal(orders, body.GetProperty("data").GetProperty("summary").GetProperty("total_orders").GetInt64());
    }

    private static async Task<HttpResponseMessage> GetAsync(StatsCacheFactory web, string token, string view = "client-stats")
    {
        var http = web.CreateClient();
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
        return await http.GetAsync($"/api/dashboards/{view}");
    }

    private static async Task PollAsync(Func<Task<bool>> done, string what)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (!await done())
        {
            Assert.True(DateTime.UtcNow < deadline, $"Timed out waiting for {what}.");
            await Task.Delay(TimeSpan.FromMilliseconds(100));
        }
    }
}
