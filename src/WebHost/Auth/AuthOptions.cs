using System.ComponentModel.DataAnnotations;

namespace StatsCache.WebHost.Auth;

/// <summary>JWT validation settings (section <c>Auth</c>). The key comes from configuration or the environment only.</summary>
public sealed class AuthOptions
{
    public const string SectionName = "Auth";

    /// <summary>The HS256 key; at least 32 characters (256 bits). Set <c>Auth__SigningKey</c>.</summary>
    [Required(ErrorMessage = "Auth:SigningKey is not set (environment variable Auth__SigningKey).")]
    [MinLength(32, ErrorMessage = "Auth:SigningKey must be at least 32 characters (256 bits) for HS256.")]
    public string SigningKey { get; set; } = "";

    [Required]
    public string Issuer { get; set; } = "statscache";

    [Required]
    public string Audience { get; set; } = "statscache";

    /// <summary>Tolerance for clocks that disagree about expiry and not-before.</summary>
    [Range(typeof(TimeSpan), "00:00:00", "00:05:00")]
    public TimeSpan ClockSkew { get; set; } = TimeSpan.FromSeconds(30);
}
