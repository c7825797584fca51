using System.Security.Cryptography;
using Microsoft.Extensions.Options;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace StatsCache.WebHost.Auth;

/// <summary>
/// The keys bearer tokens are checked with, and the algorithms they allow: <see cref="AuthOptions.SigningKey"/>
/// (HS256/384/512), <see cref="AuthOptions.PublicKeyPath"/> (RS*, PS* for RSA; ES* for EC), and the signing keys of
/// <see cref="AuthOptions.JwksUrl"/> (RS*, PS*, ES*). The JWKS is fetched at start, every
/// <see cref="AuthOptions.JwksRefreshDuration"/>, and when a token names a key id none of the keys has, at most once
/// per <see cref="AuthOptions.JwksMinRefreshDuration"/>; a failed fetch keeps the last good keys.
/// Accepting only the algorithms of the configured key types keeps a token from choosing how it is checked
/// (an HS256 token whose secret is a public key's PEM text finds no HMAC key of that text).
/// </summary>
public sealed partial class TokenKeys : BackgroundService
{
    public const string HttpClientName = "jwks";

    /// <summary>The algorithms of a shared secret (<see cref="AuthOptions.SigningKey"/>).</summary>
    internal static readonly string[] HmacAlgorithms = [SecurityAlgorithms.HmacSha256, SecurityAlgorithms.HmacSha384, SecurityAlgorithms.HmacSha512];

    private static readonly string[] RsaAlgorithms =
    [
        SecurityAlgorithms.RsaSha256, SecurityAlgorithms.RsaSha384, SecurityAlgorithms.RsaSha512,
        SecurityAlgorithms.RsaSsaPssSha256, SecurityAlgorithms.RsaSsaPssSha384, SecurityAlgorithms.RsaSsaPssSha512,
    ];

    private static readonly string[] EcAlgorithms = [SecurityAlgorithms.EcdsaSha256, SecurityAlgorithms.EcdsaSha384, SecurityAlgorithms.EcdsaSha512];

    private readonly AuthOptions _options;
    private readonly IHttpClientFactory _http;
    private readonly TimeProvider _time;
    private readonly ILogger<TokenKeys> _logger;
    private readonly SecurityKey[] _configured;
    private readonly Lock _fetchLock = new();
    private volatile KeySet _keys;
    private Task _fetching = Task.CompletedTask;
    private long _lastFetchStarted;

    public TokenKeys(IOptions<AuthOptions> options, IHttpClientFactory http, TimeProvider time, ILogger<TokenKeys> logger)
    {
        _options = options.Value;
        _http = http;
        _time = time;
        _logger = logger;
        var configured = new List<SecurityKey>();
        var algorithms = new List<string>();
        if (!string.IsNullOrEmpty(_options.SigningKey))
        {
            configured.Add(TokenIssuer.SigningKey(_options.SigningKey));
            algorithms.AddRange(HmacAlgorithms);
        }

        if (!string.IsNullOrEmpty(_options.PublicKeyPath))
        {
            var key = ReadPublicKey(_options.PublicKeyPath);
            configured.Add(key);
            algorithms.AddRange(key is RsaSecurityKey ? RsaAlgorithms : EcAlgorithms);
        }

        if (_options.JwksUrl is not null)
        {
            algorithms.AddRange(RsaAlgorithms);
            algorithms.AddRange(EcAlgorithms);
        }

        _configured = [.. configured];
        _keys = new KeySet(_configured, []);
        Algorithms = [.. algorithms.Distinct()];
    }

    /// <summary>The algorithms a token may be signed with, from the key types configured.</summary>
    public IReadOnlyList<string> Algorithms { get; }

    /// <summary>The key set in use: a new object whenever the JWKS is fetched (<see cref="ValidatedTokens"/> compares it).</summary>
    internal object Current => _keys;

    /// <summary>The keys a token is checked against: the one its <c>kid</c> names, or all of them (SimpleJWT sets no <c>kid</c>).</summary>
    public IEnumerable<SecurityKey> Resolve(string? kid)
    {
        var keys = _keys;
        return kid is not null && keys.ById.TryGetValue(kid, out var key) ? [key] : keys.All;
    }

    /// <summary>The token of an <c>Authorization</c> header of the bearer scheme (named in any case), trimmed; empty for any other header.</summary>
    public static ReadOnlySpan<char> BearerTokenOf(string? authorization)
    {
        const string Scheme = "Bearer ";
        return authorization is not null && authorization.StartsWith(Scheme, StringComparison.OrdinalIgnoreCase)
            ? authorization.AsSpan(Scheme.Length).Trim()
            : [];
    }

    /// <summary>
    /// Before a token (<see cref="BearerTokenOf"/>) is checked: when it names a key id that none of the keys has, fetch the
    /// JWKS first (joining a fetch in flight), unless the last fetch started less than <see cref="AuthOptions.JwksMinRefreshDuration"/> ago.
    /// </summary>
    public Task RefreshForAsync(ReadOnlySpan<char> token)
    {
        if (_options.JwksUrl is null || KeyIdOf(token) is not { } kid || _keys.ById.ContainsKey(kid))
        {
            return Task.CompletedTask;
        }

        lock (_fetchLock)
        {
            if (_fetching.IsCompleted && _time.GetElapsedTime(_lastFetchStarted) >= _options.JwksMinRefreshDuration)
            {
                _fetching = FetchAsync(CancellationToken.None);
            }

            return _fetching;
        }
    }

    public override Task StartAsync(CancellationToken cancellationToken)
    {
        LogKeySources(_logger, !string.IsNullOrEmpty(_options.SigningKey), _options.PublicKeyPath ?? "", _options.JwksUrl?.ToString() ?? "");
        var off = string.Join(" and ", new[] { (_options.Issuer, "issuer (Auth:Issuer)"), (_options.Audience, "audience (Auth:Audience)") }
            .Where(check => string.IsNullOrEmpty(check.Item1)).Select(check => check.Item2));
        if (off.Length > 0)
        {
            LogChecksOff(_logger, off);
        }

        return base.StartAsync(cancellationToken);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (_options.JwksUrl is null)
        {
            return;
        }

        while (!stoppingToken.IsCancellationRequested)
        {
            Task fetch;
            lock (_fetchLock)
            {
                fetch = _fetching = _fetching.IsCompleted ? FetchAsync(stoppingToken) : _fetching;
            }

            await fetch;
            await Task.Delay(_options.JwksRefreshDuration, _time, stoppingToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }
    }

    private async Task FetchAsync(CancellationToken cancellationToken)
    {
        _lastFetchStarted = _time.GetTimestamp();
        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(TimeSpan.FromSeconds(10));
            var json = await _http.CreateClient(HttpClientName).GetStringAsync(_options.JwksUrl, timeout.Token);

            // Only asymmetric signing keys: a shared secret published in a JWKS would let anyone sign.
            var fetched = new JsonWebKeySet(json).Keys
                .Where(k => k.Kty is JsonWebAlgorithmsKeyTypes.RSA or JsonWebAlgorithmsKeyTypes.EllipticCurve && k.Use is null or JsonWebKeyUseNames.Sig)
                .ToArray();
            _keys = new KeySet([.. _configured, .. fetched], fetched);
            LogJwksFetched(_logger, fetched.Length, string.Join(", ", fetched.Select(k => k.KeyId ?? "(no kid)")));
        }
        catch (Exception e) when (e is HttpRequestException or OperationCanceledException or ArgumentException or InvalidOperationException)
        {
            LogJwksFailed(_logger, e, _options.JwksUrl!.ToString(), _keys.All.Length - _configured.Length);
        }
    }

    private static string? KeyIdOf(ReadOnlySpan<char> token)
    {
        if (token.IsEmpty)
        {
            return null;
        }

        try
        {
            return new JsonWebToken(token.ToString()).Kid;
        }
        catch (ArgumentException)
        {
            return null; // not a JWT: validation says so
        }
    }

    private static SecurityKey ReadPublicKey(string path)
    {
        string pem;
        try
        {
            pem = File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new InvalidOperationException($"Auth:PublicKeyPath '{path}' cannot be read: {e.Message}", e);
        }

        var rsa = RSA.Create();
        try
        {
            rsa.ImportFromPem(pem);
            return new RsaSecurityKey(rsa);
        }
        catch (Exception e) when (e is ArgumentException or CryptographicException)
        {
            rsa.Dispose();
        }

        var ec = ECDsa.Create();
        try
        {
            ec.ImportFromPem(pem);
            return new ECDsaSecurityKey(ec);
        }
        catch (Exception e) when (e is ArgumentException or CryptographicException)
        {
            ec.Dispose();
            throw new InvalidOperationException($"Auth:PublicKeyPath '{path}' holds no PEM RSA or EC public key.", e);
        }
    }

    private sealed class KeySet(SecurityKey[] all, JsonWebKey[] fetched)
    {
        public SecurityKey[] All { get; } = all;

        public Dictionary<string, SecurityKey> ById { get; } = fetched.Where(k => k.KeyId is not null).DistinctBy(k => k.KeyId).ToDictionary(k => k.KeyId!, k => (SecurityKey)k, StringComparer.Ordinal);
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Bearer tokens are checked with: shared secret {HasSigningKey}, public key file '{PublicKeyPath}', JWKS '{JwksUrl}'")]
    private static partial void LogKeySources(ILogger logger, bool hasSigningKey, string publicKeyPath, string jwksUrl);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Bearer tokens' {Checks} are not checked (empty in configuration)")]
    private static partial void LogChecksOff(ILogger logger, string checks);

    [LoggerMessage(Level = LogLevel.Information, Message = "Fetched {Count} signing keys from the JWKS: {KeyIds}")]
    private static partial void LogJwksFetched(ILogger logger, int count, string keyIds);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Fetching the JWKS from {JwksUrl} failed; keeping the {Count} keys fetched before")]
    private static partial void LogJwksFailed(ILogger logger, Exception exception, string jwksUrl, int count);
}
