using System.Globalization;
using System.Security.Claims;
using System.Text.RegularExpressions;

namespace StatsCache.WebHost.Auth;

/// <summary>Who is asking, from the token's claims (their names: <see cref="ClaimNames"/>); never from the URL.</summary>
public sealed partial record Caller(long SiteId, string Role, long UserId)
{
    /// <summary>Reads the caller from validated claims; says which claim is missing or malformed.</summary>
    public static bool TryFrom(ClaimsPrincipal principal, ClaimNames names, out Caller caller, out string error)
    {
        caller = null!;
        if (!TryGetId(principal, names.Site, out var site, out error) || !TryGetId(principal, names.User, out var user, out error))
        {
            return false;
        }

        var roles = principal.FindAll(names.Role).ToList();
        if (roles.Count != 1 || !RoleName().IsMatch(roles[0].Value))
        {
            error = $"The token must carry exactly one '{names.Role}' claim of lower-case letters.";
            return false;
        }

        caller = new Caller(site, roles[0].Value, user);
        return true;
    }

    // A JSON number (SimpleJWT up to 5.5.0) and a string of digits (from 5.5.1) both reach here as the digits.
    private static bool TryGetId(ClaimsPrincipal principal, string claim, out long id, out string error)
    {
        var values = principal.FindAll(claim).ToList();
        if (values.Count == 1 && long.TryParse(values[0].Value, NumberStyles.None, CultureInfo.InvariantCulture, out id) && id > 0)
        {
            error = "";
            return true;
        }

        id = 0;
        error = $"The token's '{claim}' claim must be one positive integer.";
        return false;
    }

    [GeneratedRegex("^[a-z][a-z0-9_-]{0,63}$")]
    private static partial Regex RoleName();
}
