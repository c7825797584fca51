using System.Collections.Concurrent;
using System.Security.Claims;
using Microsoft.Extensions.Options;

namespace StatsCache.WebHost.Auth;

/// <summary>
/// The bearer tokens this web host has validated, by their exact text, until they expire: a dashboard sends the same
/// token with every read for the token's whole life, and a token matched here is not parsed and its signature verified
/// again (that was the largest single cost of a cached read). Only a token that passed every check (signature, issuer,
/// audience, lifetime, and StatsCache's claims) is kept, with the caller and the principal its validation produced.
/// Every match checks the expiry again, with the validation's clock skew, and the keys: a token validated before the
/// signing keys changed (a JWKS fetch) is validated again, since a key gone may have signed it. The same text is the same
/// token, so a match gets what validating it again would: a token altered in any character is not matched.
/// At most <see cref="MaxTokens"/> are kept; past that, new tokens are validated on every request until expired ones are
/// swept (<see cref="Sweep"/>).
/// </summary>
public sealed class ValidatedTokens
{
    /// <summary>About 2 KB each (the token's text and the kept principal): 40 MB at most.</summary>
    public const int MaxTokens = 20_000;

    private readonly ConcurrentDictionary<string, Entry> _tokens = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, Entry>.AlternateLookup<ReadOnlySpan<char>> _byText;
    private readonly TokenKeys _keys;
    private readonly TimeProvider _time;
    private readonly TimeSpan _clockSkew;

    public ValidatedTokens(TokenKeys keys, IOptions<AuthOptions> options, TimeProvider time)
    {
        _keys = keys;
        _time = time;
        _clockSkew = options.Value.ClockSkew;
        _byText = _tokens.GetAlternateLookup<ReadOnlySpan<char>>();
    }

    /// <summary>Tokens kept: not yet expired or not yet swept.</summary>
    public int Count => _tokens.Count;

    /// <summary>
    /// The caller and principal of <paramref name="token"/> (the <c>Authorization</c> header's text after the scheme),
    /// when it was validated under the current keys and has not expired.
    /// </summary>
    public bool TryMatch(ReadOnlySpan<char> token, out Caller caller, out ClaimsPrincipal principal)
    {
        if (_byText.TryGetValue(token, out var entry) && ReferenceEquals(entry.Keys, _keys.Current) && _time.GetUtcNow() <= entry.Expires)
        {
            caller = entry.Caller;
            // A principal of the request's own over the kept identity: nothing in the pipeline adds to an identity.
            principal = new ClaimsPrincipal(entry.Identity);
            return true;
        }

        caller = null!;
        principal = null!;
        return false;
    }

    /// <summary>Keeps a token that has just passed every check, until <paramref name="validTo"/> (its <c>exp</c>) and the clock skew.</summary>
    public void Keep(string token, Caller caller, ClaimsIdentity identity, DateTime validTo)
    {
        if (_tokens.Count < MaxTokens)
        {
            // The keys as this token's validation ended: a fetch that changed them while it ran is a race any request has.
            _tokens[token] = new Entry(caller, identity, new DateTimeOffset(validTo, TimeSpan.Zero) + _clockSkew, _keys.Current);
        }
    }

    /// <summary>Drops the expired tokens and those validated under keys no longer in use.</summary>
    public void Sweep()
    {
        var now = _time.GetUtcNow();
        var keys = _keys.Current;
        foreach (var (token, entry) in _tokens)
        {
            if (now > entry.Expires || !ReferenceEquals(entry.Keys, keys))
            {
                _tokens.TryRemove(new KeyValuePair<string, Entry>(token, entry));
            }
        }
    }

    private sealed record Entry(Caller Caller, ClaimsIdentity Identity, DateTimeOffset Expires, object Keys);
}

/// <summary>Sweeps <see cref="ValidatedTokens"/> every minute.</summary>
internal sealed class ValidatedTokensSweep(ValidatedTokens tokens, TimeProvider time) : BackgroundService
{
    private static readonly TimeSpan Interval = TimeSpan.FromMinutes(1);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(Interval, time);
        while (await timer.WaitForNextTickAsync(stoppingToken))
        {
            tokens.Sweep();
        }
    }
}
