using System.Globalization;
using System.Security.Claims;
using System.Text;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace StatsCache.WebHost.Auth;

/// <summary>Signs tokens the web host accepts; used by the <c>token</c> command and by tests.</summary>
public static class TokenIssuer
{
    public static SymmetricSecurityKey SigningKey(string key) => new(Encoding.UTF8.GetBytes(key));

    public static string Issue(AuthOptions options, Caller caller, TimeSpan lifetime, DateTimeOffset? now = null)
    {
        var issuedAt = (now ?? DateTimeOffset.UtcNow).UtcDateTime;
        return new JsonWebTokenHandler().CreateToken(new SecurityTokenDescriptor
        {
            Issuer = options.Issuer,
            Audience = options.Audience,
            IssuedAt = issuedAt,
            NotBefore = issuedAt,
            Expires = issuedAt + lifetime,
            Subject = new ClaimsIdentity(
            [
                new Claim(Caller.UserClaim, caller.UserId.ToString(CultureInfo.InvariantCulture)),
                new Claim(Caller.SiteClaim, caller.SiteId.ToString(CultureInfo.InvariantCulture)),
                new Claim(Caller.RoleClaim, caller.Role),
            ]),
            SigningCredentials = new SigningCredentials(SigningKey(options.SigningKey), SecurityAlgorithms.HmacSha256),
        });
    }
}
