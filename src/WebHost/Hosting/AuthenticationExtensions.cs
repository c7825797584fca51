using System.Security.Claims;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.JwtBearer;
using Microsoft.Extensions.Options;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using StatsCache.WebHost.Auth;

namespace StatsCache.WebHost.Hosting;

/// <summary>
/// JWT bearer validation with the platform's own tokens (keys, issuer, audience and claim names from
/// <see cref="AuthOptions"/>); every failure is an RFC 7807 401.
/// </summary>
public static class AuthenticationExtensions
{
    public static WebApplicationBuilder AddStatsCacheAuthentication(this WebApplicationBuilder builder)
    {
        builder.Services.AddOptions<AuthOptions>()
            .BindConfiguration(AuthOptions.SectionName)
            .ValidateDataAnnotations()
            .Validate(auth => auth.HasKeySource, AuthOptions.NoKeySourceMessage)
            .Validate(auth => auth.HasStrongSigningKey, "Auth:SigningKey must be at least 32 characters (256 bits).")
            .Validate(auth => auth.Claims.AreValid, "Auth:Claims:User, Auth:Claims:Site and Auth:Claims:Role must be three different claim names.")
            .ValidateOnStart();

        builder.Services.AddHttpClient(TokenKeys.HttpClientName);
        builder.Services.AddSingleton<TokenKeys>();
        builder.Services.AddHostedService(services => services.GetRequiredService<TokenKeys>());
        builder.Services.AddSingleton<ValidatedTokens>();
        builder.Services.AddHostedService<ValidatedTokensSweep>();
        builder.Services.AddAuthentication(JwtBearerDefaults.AuthenticationScheme).AddJwtBearer();
        builder.Services.AddOptions<JwtBearerOptions>(JwtBearerDefaults.AuthenticationScheme)
            .Configure<IOptions<AuthOptions>, TokenKeys, ValidatedTokens>((jwt, auth, keys, validated) => Configure(jwt, auth.Value, keys, validated));
        builder.Services.AddAuthorization();
        return builder;
    }

    private static void Configure(JwtBearerOptions jwt, AuthOptions auth, TokenKeys keys, ValidatedTokens validated)
    {
        jwt.MapInboundClaims = false; // keep the claims as the token names them
        jwt.SaveToken = false; // nothing reads the raw token back (GetTokenAsync): do not copy it into every request's properties
        jwt.TokenValidationParameters = new TokenValidationParameters
        {
            ValidateIssuer = auth.Issuer.Length > 0,
            ValidIssuer = auth.Issuer,
            ValidateAudience = auth.Audience.Length > 0,
            ValidAudience = auth.Audience,
            IssuerSigningKeyResolver = (_, _, kid, _) => keys.Resolve(kid),
            ValidAlgorithms = keys.Algorithms,
            RequireSignedTokens = true,
            RequireExpirationTime = true,
            ClockSkew = auth.ClockSkew,
            NameClaimType = auth.Claims.User,
            RoleClaimType = auth.Claims.Role,
        };
        jwt.Events = new JwtBearerEvents
        {
            OnMessageReceived = context =>
            {
                // A token this web host validated before, unexpired, under the same keys: the same text gets the same answer.
                var token = TokenKeys.BearerTokenOf(context.Request.Headers.Authorization);
                if (!token.IsEmpty && validated.TryMatch(token, out var known, out var principal))
                {
                    context.HttpContext.Features.Set(known);
                    context.Principal = principal;
                    context.Success();
                    return Task.CompletedTask;
                }

                // A token signed with a key the JWKS has gained since it was fetched: fetch it first.
                return keys.RefreshForAsync(token);
            },
            OnTokenValidated = context =>
            {
                if (Caller.TryFrom((ClaimsIdentity)context.Principal!.Identity!, auth.Claims, out var caller, out var kept, out var error))
                {
                    context.HttpContext.Features.Set(caller); // read once per request (DashboardApi, InvalidationApi)
                    // The principal a request keeps: a live stream holds its request as long as its token lasts, and the
                    // validated principal holds the parsed token and every claim (about 3 KB).
                    context.Principal = new ClaimsPrincipal(kept);
                    validated.Keep(((JsonWebToken)context.SecurityToken).EncodedToken, caller, kept, context.SecurityToken.ValidTo);
                }
                else
                {
                    context.Fail(error);
                }

                return Task.CompletedTask;
            },
            OnChallenge = async context =>
            {
                context.HandleResponse();
                var (title, detail) = Describe(context.AuthenticateFailure, context.Request.Headers.Authorization.Count > 0, keys);
                context.Response.StatusCode = StatusCodes.Status401Unauthorized;
                context.Response.Headers.WWWAuthenticate = context.AuthenticateFailure is null
                    ? "Bearer"
                    : "Bearer error=\"invalid_token\"";
                await Results.Problem(title: title, detail: detail, statusCode: StatusCodes.Status401Unauthorized)
                    .ExecuteAsync(context.HttpContext);
            },
        };
    }

    // Say what was wrong without echoing the token or anything about the key.
    private static (string Title, string? Detail) Describe(Exception? failure, bool hadHeader, TokenKeys keys) => failure switch
    {
        null when hadHeader => ("The Authorization header is not a bearer token.", "Send 'Authorization: Bearer <token>'."),
        null => ("A bearer token is required.", "Send 'Authorization: Bearer <token>'."),
        SecurityTokenExpiredException => ("The bearer token has expired.", null),
        SecurityTokenNotYetValidException => ("The bearer token is not valid yet.", null),
        SecurityTokenInvalidIssuerException => ("The bearer token's issuer is not accepted.", null),
        SecurityTokenInvalidAudienceException => ("The bearer token's audience is not accepted.", null),
        SecurityTokenSignatureKeyNotFoundException or SecurityTokenInvalidSignatureException
            => ("The bearer token's signature is invalid.", null),
        SecurityTokenInvalidAlgorithmException => ("The bearer token's algorithm is not accepted.", $"Accepted: {string.Join(", ", keys.Algorithms)}."),
        SecurityTokenNoExpirationException => ("The bearer token has no expiry.", null),
        AuthenticationFailureException => ("The bearer token is invalid.", failure.Message),
        _ => ("The bearer token is invalid.", null),
    };
}
