using System.Buffers.Text;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using StatsCache.WebHost.Auth;

namespace StatsCache.Integration.Tests;

/// <summary>
/// Authorization headers that must be refused, built by hand (header, claims, signature) so that each one is
/// wrong in exactly one way. Each comes with the status and problem title the service must answer.
/// </summary>
public static class BadTokens
{
    public sealed record Case(string Name, string? Authorization, HttpStatusCode Status, string? Title);

    /// <summary>Every bad Authorization header for a caller of <paramref name="site"/>, role client, user <paramref name="user"/>.</summary>
    public static IReadOnlyList<Case> All(AuthOptions auth, long site, long user)
    {
        var now = DateTimeOffset.UtcNow;
        var key = auth.SigningKey;
        Dictionary<string, object?> Claims(Action<Dictionary<string, object?>>? change = null)
        {
            var claims = new Dictionary<string, object?>
            {
                ["iss"] = auth.Issuer,
                ["aud"] = auth.Audience,
                ["sub"] = user.ToString(System.Globalization.CultureInfo.InvariantCulture),
                ["site"] = site.ToString(System.Globalization.CultureInfo.InvariantCulture),
                ["role"] = "client",
                ["iat"] = now.ToUnixTimeSeconds(),
                ["nbf"] = now.ToUnixTimeSeconds(),
                ["exp"] = now.AddMinutes(10).ToUnixTimeSeconds(),
            };
            change?.Invoke(claims);
            return claims;
        }

        string Hs256(Dictionary<string, object?> claims, string? signingKey = null) => Jwt(new { alg = "HS256", typ = "JWT" }, claims, signingKey ?? key, HMACSHA256.HashData);
        const string Invalid = "The bearer token is invalid.";
        return
        [
            new("missing", null, HttpStatusCode.Unauthorized, "A bearer token is required."),
            new("empty bearer", "Bearer ", HttpStatusCode.Unauthorized, null),
            new("basic scheme", "Basic dXNlcjpwYXNz", HttpStatusCode.Unauthorized, "The Authorization header is not a bearer token."),
            new("not a jwt", "Bearer not.a.token", HttpStatusCode.Unauthorized, Invalid),
            new("one segment", "Bearer abc", HttpStatusCode.Unauthorized, Invalid),
            new("garbage segments", "Bearer ===.%%%.\u00e9\u00e9", HttpStatusCode.Unauthorized, Invalid),
            new("sql in token", "Bearer ' or 1=1; drop table orders; --", HttpStatusCode.Unauthorized, Invalid),
            new("oversized", "Bearer " + Hs256(Claims(c => c["pad"] = new string('x', 300_000))), HttpStatusCode.Unauthorized, null),
            new("alg none", "Bearer " + Jwt(new { alg = "none", typ = "JWT" }, Claims(), null, null), HttpStatusCode.Unauthorized, null),
            new("HS256 without signature", "Bearer " + Jwt(new { alg = "HS256", typ = "JWT" }, Claims(), null, null), HttpStatusCode.Unauthorized, null),
            new("another key", "Bearer " + Hs256(Claims(), new string('k', 48)), HttpStatusCode.Unauthorized, "The bearer token's signature is invalid."),
            new("RS256 header on an HMAC signature", "Bearer " + Jwt(new { alg = "RS256", typ = "JWT" }, Claims(), key, HMACSHA256.HashData),
                HttpStatusCode.Unauthorized, "The bearer token's signature is invalid."),
            new("tampered claims", "Bearer " + Tamper(Hs256(Claims()), Claims(c => c["sub"] = (user + 1).ToString(System.Globalization.CultureInfo.InvariantCulture))), HttpStatusCode.Unauthorized, "The bearer token's signature is invalid."),
            new("expired", "Bearer " + Hs256(Claims(c => { c["iat"] = now.AddHours(-2).ToUnixTimeSeconds(); c["nbf"] = c["iat"]; c["exp"] = now.AddHours(-1).ToUnixTimeSeconds(); })),
                HttpStatusCode.Unauthorized, "The bearer token has expired."),
            new("not yet valid", "Bearer " + Hs256(Claims(c => { c["nbf"] = now.AddHours(1).ToUnixTimeSeconds(); c["exp"] = now.AddHours(2).ToUnixTimeSeconds(); })),
                HttpStatusCode.Unauthorized, "The bearer token is not valid yet."),
            new("no expiry", "Bearer " + Hs256(Claims(c => c.Remove("exp"))), HttpStatusCode.Unauthorized, "The bearer token has no expiry."),
            new("wrong issuer", "Bearer " + Hs256(Claims(c => c["iss"] = "someone-else")), HttpStatusCode.Unauthorized, "The bearer token's issuer is not accepted."),
            new("wrong audience", "Bearer " + Hs256(Claims(c => c["aud"] = "someone-else")), HttpStatusCode.Unauthorized, "The bearer token's audience is not accepted."),
            new("non-numeric sub", "Bearer " + Hs256(Claims(c => c["sub"] = "alice")), HttpStatusCode.Unauthorized, Invalid),
            new("sql in sub", "Bearer " + Hs256(Claims(c => c["sub"] = "1; drop table orders")), HttpStatusCode.Unauthorized, Invalid),
            new("negative sub", "Bearer " + Hs256(Claims(c => c["sub"] = "-1")), HttpStatusCode.Unauthorized, Invalid),
            new("zero sub", "Bearer " + Hs256(Claims(c => c["sub"] = "0")), HttpStatusCode.Unauthorized, Invalid),
            new("huge sub", "Bearer " + Hs256(Claims(c => c["sub"] = "99999999999999999999")), HttpStatusCode.Unauthorized, Invalid),
            new("no sub", "Bearer " + Hs256(Claims(c => c.Remove("sub"))), HttpStatusCode.Unauthorized, Invalid),
            new("non-numeric site", "Bearer " + Hs256(Claims(c => c["site"] = "one")), HttpStatusCode.Unauthorized, Invalid),
            new("arabic-indic site", "Bearer " + Hs256(Claims(c => c["site"] = "\u0661")), HttpStatusCode.Unauthorized, Invalid),
            new("no site", "Bearer " + Hs256(Claims(c => c.Remove("site"))), HttpStatusCode.Unauthorized, Invalid),
            new("two sites", "Bearer " + Hs256(Claims(c => c["site"] = new[] { "1", "2" })), HttpStatusCode.Unauthorized, Invalid),
            new("upper-case role", "Bearer " + Hs256(Claims(c => c["role"] = "CLIENT")), HttpStatusCode.Unauthorized, Invalid),
            new("sql in role", "Bearer " + Hs256(Claims(c => c["role"] = "client' or '1'='1")), HttpStatusCode.Unauthorized, Invalid),
            new("zero-width role", "Bearer " + Hs256(Claims(c => c["role"] = "cli\u200bent")), HttpStatusCode.Unauthorized, Invalid),
            new("two roles", "Bearer " + Hs256(Claims(c => c["role"] = new[] { "client", "admin" })), HttpStatusCode.Unauthorized, Invalid),
            new("no role", "Bearer " + Hs256(Claims(c => c.Remove("role"))), HttpStatusCode.Unauthorized, Invalid),
            new("unknown role", "Bearer " + Hs256(Claims(c => c["role"] = "auditor")), HttpStatusCode.Forbidden, "Your role has no dashboards."),
        ];
    }

    /// <summary>A compact JWS: base64url(header).base64url(claims).base64url(signature); no signature when <paramref name="sign"/> is null.</summary>
    public static string Jwt(object header, object claims, string? key, Func<byte[], byte[], byte[]>? sign)
    {
        var unsigned = $"{Base64Url.EncodeToString(JsonSerializer.SerializeToUtf8Bytes(header))}.{Base64Url.EncodeToString(JsonSerializer.SerializeToUtf8Bytes(claims))}";
        return sign is null || key is null
            ? unsigned + "."
            : unsigned + "." + Base64Url.EncodeToString(sign(Encoding.UTF8.GetBytes(key), Encoding.ASCII.GetBytes(unsigned)));
    }

    // The signature of one set of claims on another.
    private static string Tamper(string token, object claims)
    {
        var parts = token.Split('.');
        return $"{parts[0]}.{Base64Url.EncodeToString(JsonSerializer.SerializeToUtf8Bytes(claims))}.{parts[2]}";
    }
}
