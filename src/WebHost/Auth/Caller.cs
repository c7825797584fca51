using System.Globalization;
using System.Security.Claims;
using System.Text.RegularExpressions;
using Microsoft.IdentityModel.JsonWebTokens;

namespace StatsCache.WebHost.Auth;

/// <summary>Who is asking, from the token's claims (their names: <see cref="ClaimNames"/>); never from the URL.</summary>
public sealed partial record Caller(long SiteId, string Role, long UserId)
{
    /// <summary>SimpleJWT's claim that tells access tokens from refresh tokens (its <c>TOKEN_TYPE_CLAIM</c>).</summary>
    public const string TokenTypeClaim = "token_type";

    /// <summary>
    /// Reads the caller from a validated token's claims, in one pass (this runs on every request): exactly one user, site
    /// and role claim, and no <see cref="TokenTypeClaim"/> other than <c>access</c>. Says which claim is wrong, and
    /// gives the identity a request keeps (<paramref name="kept"/>: the caller's claims and the expiry, in new claims of a
    /// new identity, which hold nothing of the token; see AuthenticationExtensions).
    /// </summary>
    public static bool TryFrom(ClaimsIdentity validated, ClaimNames names, out Caller caller, out ClaimsIdentity kept, out string error)
    {
        caller = null!;
        kept = null!;
        Claim? user = null, site = null, role = null, expiry = null;
        int users = 0, sites = 0, roles = 0;
        foreach (var claim in validated.Claims)
        {
            var type = claim.Type;
            if (type == names.User)
            {
                (user, users) = (claim, users + 1);
            }
            else if (type == names.Site)
            {
                (site, sites) = (claim, sites + 1);
            }
            else if (type == names.Role)
            {
                (role, roles) = (claim, roles + 1);
            }
            else if (type == JwtRegisteredClaimNames.Exp)
            {
                expiry = claim;
            }
            else if (type == TokenTypeClaim && claim.Value != "access")
            {
                error = $"Only access tokens are accepted; this one's '{TokenTypeClaim}' is '{Shorten(claim.Value)}' (refresh tokens are not accepted).";
                return false;
            }
        }

        if (!TryGetId(site, sites, names.Site, out var siteId, out error) || !TryGetId(user, users, names.User, out var userId, out error))
        {
            return false;
        }

        if (roles != 1 || !RoleName().IsMatch(role!.Value))
        {
            error = $"The token must carry exactly one '{names.Role}' claim of lower-case letters.";
            return false;
        }

        caller = new Caller(siteId, role.Value, userId);
        kept = new ClaimsIdentity(validated.AuthenticationType, validated.NameClaimType, validated.RoleClaimType);
        Keep(kept, user!);
        Keep(kept, site!);
        Keep(kept, role);
        if (expiry is not null)
        {
            Keep(kept, expiry);
        }

        return true;
    }

    // A JSON number (SimpleJWT up to 5.5.0) and a string of digits (from 5.5.1) both reach here as the digits.
    private static bool TryGetId(Claim? claim, int count, string name, out long id, out string error)
    {
        if (count == 1 && long.TryParse(claim!.Value, NumberStyles.None, CultureInfo.InvariantCulture, out id) && id > 0)
        {
            error = "";
            return true;
        }

        id = 0;
        error = $"The token's '{name}' claim must be one positive integer.";
        return false;
    }

    // A claim refers back to its identity, and so to the parsed token: a copy made for the new identity holds neither (one made
    // for no identity would be copied again by AddClaim).
    private static void Keep(ClaimsIdentity identity, Claim claim) =>
        identity.AddClaim(new Claim(claim.Type, claim.Value, claim.ValueType, claim.Issuer, claim.OriginalIssuer, identity));

    private static string Shorten(string text) => text.Length <= 32 ? text : string.Concat(text.AsSpan(0, 32), "…");

    [GeneratedRegex("^[a-z][a-z0-9_-]{0,63}$")]
    private static partial Regex RoleName();
}
