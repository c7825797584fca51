using System.Globalization;
using System.Security.Claims;
using System.Text;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace StatsCache.WebHost.Auth;

/// <summary>
/// Signs HS256 tokens the web host accepts, with the configured claim names, issuer and audience; used by
/// the <c>token</c> command and by tests. Needs <see cref="AuthOptions.SigningKey"/>: with only public keys,
/// tokens come from the platform's issuer.
/// </summary>
public static class TokenIssuer
{
    public static SymmetricSecurityKey SigningKey(string key) => new(Encoding.UTF8.GetBytes(key));

    public static string Issue(AuthOptions options, Caller caller, TimeSpan lifetime, DateTimeOffset? now = null)
    {
        if (string.IsNullOrEmpty(options.SigningKey))
        {
            throw new InvalidOperationException("Tokens are signed with Auth:SigningKey, which is not set.");
        }

        var issuedAt = (now ?? DateTimeOffset.UtcNow).UtcDateTime;
        return new JsonWebTokenHandler().CreateToken(new SecurityTokenDescriptor
        {
            Issuer = options.Issuer is { Length: > 0 } issuer ? issuer : null,
            Audience = options.Audience is { Length: > 0 } audience ? audience : null,
            IssuedAt = issuedAt,
            NotBefore = issuedAt,
            Expires = issuedAt + lifetime,
            Subject = new ClaimsIdentity(
            [
                new Claim(options.Claims.User, caller.UserId.ToString(CultureInfo.InvariantCulture)),
                new Claim(options.Claims.Site, caller.SiteId.ToString(CultureInfo.InvariantCulture)),
                new Claim(options.Claims.Role, caller.Role),
            ]),
            SigningCredentials = new SigningCredentials(SigningKey(options.SigningKey), SecurityAlgorithms.HmacSha256),
        });
    }
}
