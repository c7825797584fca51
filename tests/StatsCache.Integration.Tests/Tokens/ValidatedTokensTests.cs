using System.Security.Claims;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using StatsCache.WebHost.Auth;

namespace StatsCache.Integration.Tests.Tokens;

/// <summary>
/// The kept tokens on a clock the test moves: matched by their exact text until their expiry and the clock skew, as
/// validation would accept them, then swept; none kept past the cap. (<see cref="PlatformTokenTests"/> shows them through
/// the real web host, key rotation included.)
/// </summary>
public sealed class ValidatedTokensTests
{
    private static readonly Caller Alice = new(1, "client", 1);
    private static readonly TimeSpan Skew = TimeSpan.FromSeconds(30);

    private readonly ManualClock _clock = new();
    private readonly ValidatedTokens _tokens;

    public ValidatedTokensTests()
    {
        var options = Options.Create(new AuthOptions { SigningKey = new string('k', 32), ClockSkew = Skew });
        var http = new ServiceCollection().AddHttpClient().BuildServiceProvider().GetRequiredService<IHttpClientFactory>();
        _tokens = new ValidatedTokens(new TokenKeys(options, http, _clock, NullLogger<TokenKeys>.Instance), options, _clock);
    }

    [Fact]
    public void AKeptTokenIsMatchedUntilItsExpiryAndTheClockSkewThenSwept()
    {
        Keep("header.payload.signature", expiresIn: TimeSpan.FromMinutes(5));
        Assert.True(_tokens.TryMatch("header.payload.signature", out var caller, out var principal));
        Assert.Equal(Alice, caller);
        Assert.True(principal.Identity!.IsAuthenticated);
        Assert.False(_tokens.TryMatch("header.payload.signaturf", out _, out _), "Another text is another token.");

        // Validation accepts a token until its exp plus the clock skew: so does the match, and the sweep keeps it.
        _clock.Advance(TimeSpan.FromMinutes(5) + Skew);
        Assert.True(_tokens.TryMatch("header.payload.signature", out _, out _));
        _tokens.Sweep();
        Assert.Equal(1, _tokens.Count);

        _clock.Advance(TimeSpan.FromSeconds(1));
        Assert.False(_tokens.TryMatch("header.payload.signature", out _, out _));
        _tokens.Sweep();
        Assert.Equal(0, _tokens.Count);
    }

    [Fact]
    public void PastTheCapNewTokensAreNotKept()
    {
        for (var i = 0; i <= ValidatedTokens.MaxTokens; i++)
        {
            Keep($"token-{i}", expiresIn: TimeSpan.FromMinutes(5));
        }

        Assert.Equal(ValidatedTokens.MaxTokens, _tokens.Count);
        Assert.True(_tokens.TryMatch("token-0", out _, out _));
        Assert.False(_tokens.TryMatch($"token-{ValidatedTokens.MaxTokens}", out _, out _), "The token past the cap is validated every time.");
    }

    private void Keep(string token, TimeSpan expiresIn) =>
        _tokens.Keep(token, Alice, new ClaimsIdentity("Bearer"), (_clock.GetUtcNow() + expiresIn).UtcDateTime);
}
