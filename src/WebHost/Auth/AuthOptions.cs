using System.ComponentModel.DataAnnotations;

namespace StatsCache.WebHost.Auth;

/// <summary>
/// How bearer tokens are checked (section <c>Auth</c>): the keys, any combination of a shared secret, a PEM
/// public key and a JWKS URL (at least one); the expected issuer and audience; the claims that name the
/// caller. Keys and secrets come from configuration or the environment only.
/// </summary>
public sealed class AuthOptions
{
    public const string SectionName = "Auth";

    /// <summary>
    /// A shared secret for HS256/384/512 (SimpleJWT's default: Django's <c>SECRET_KEY</c>); at least 32
    /// characters. Its UTF-8 bytes are the key, as PyJWT and SimpleJWT use it. Set <c>Auth__SigningKey</c>.
    /// </summary>
    public string? SigningKey { get; set; }

    /// <summary>A PEM file with an RSA or EC public key (SimpleJWT's <c>VERIFYING_KEY</c>): RS*, PS* and ES* tokens.</summary>
    public string? PublicKeyPath { get; set; }

    /// <summary>A JWKS document (an identity provider's, or SimpleJWT's <c>JWK_URL</c>) over http or https.</summary>
    public Uri? JwksUrl { get; set; }

    /// <summary>How often the JWKS document is fetched again (a token naming an unknown key fetches it sooner).</summary>
    [Range(typeof(TimeSpan), "00:00:10", "1.00:00:00")]
    public TimeSpan JwksRefreshDuration { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>The least time between two fetches of the JWKS document, so tokens naming unknown keys cannot hammer the issuer.</summary>
    [Range(typeof(TimeSpan), "00:00:01", "00:10:00")]
    public TimeSpan JwksMinRefreshDuration { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>The expected <c>iss</c>; empty: not checked (SimpleJWT sets none unless its <c>ISSUER</c> is set).</summary>
    public string Issuer { get; set; } = "statscache";

    /// <summary>The expected <c>aud</c>; empty: not checked (SimpleJWT sets none unless its <c>AUDIENCE</c> is set).</summary>
    public string Audience { get; set; } = "statscache";

    /// <summary>The claims that name the caller.</summary>
    public ClaimNames Claims { get; set; } = new();

    /// <summary>Tolerance for clocks that disagree about expiry and not-before.</summary>
    [Range(typeof(TimeSpan), "00:00:00", "00:05:00")]
    public TimeSpan ClockSkew { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Empty is not set; a set secret has at least 32 characters (256 bits).</summary>
    public bool HasStrongSigningKey => string.IsNullOrEmpty(SigningKey) || SigningKey.Length >= 32;

    public bool HasKeySource => !string.IsNullOrEmpty(SigningKey) || !string.IsNullOrEmpty(PublicKeyPath) || JwksUrl is not null;

    public const string NoKeySourceMessage =
        "No key to check tokens with: set Auth:SigningKey (an HS256/384/512 secret), Auth:PublicKeyPath (a PEM RSA or EC public key) "
        + "or Auth:JwksUrl (a JWKS document), or several (environment variables Auth__SigningKey, Auth__PublicKeyPath, Auth__JwksUrl).";
}

/// <summary>
/// The token's claims that name the caller (section <c>Auth:Claims</c>). For SimpleJWT with the platform's
/// extra claims: <c>User</c> = <c>user_id</c>, <c>Site</c> = <c>website_id</c>, <c>Role</c> = <c>role</c>.
/// </summary>
public sealed class ClaimNames
{
    public string User { get; set; } = "sub";

    public string Site { get; set; } = "site";

    public string Role { get; set; } = "role";

    public bool AreValid => new[] { User, Site, Role }.All(name => !string.IsNullOrWhiteSpace(name)) && new[] { User, Site, Role }.Distinct().Count() == 3;
}
