using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.JwtBearer;
using Microsoft.Extensions.Options;
using Microsoft.IdentityModel.Tokens;
using StatsCache.WebHost.Auth;

namespace StatsCache.WebHost.Hosting;

/// <summary>JWT bearer validation (HS256) whose every failure is an RFC 7807 401.</summary>
public static class AuthenticationExtensions
{
    public static WebApplicationBuilder AddStatsCacheAuthentication(this WebApplicationBuilder builder)
    {
        builder.Services.AddOptions<AuthOptions>()
            .BindConfiguration(AuthOptions.SectionName)
            .ValidateDataAnnotations()
            .ValidateOnStart();

        builder.Services.AddAuthentication(JwtBearerDefaults.AuthenticationScheme).AddJwtBearer();
        builder.Services.AddOptions<JwtBearerOptions>(JwtBearerDefaults.AuthenticationScheme)
            .Configure<IOptions<AuthOptions>>((jwt, auth) => Configure(jwt, auth.Value));
        builder.Services.AddAuthorization();
        return builder;
    }

    private static void Configure(JwtBearerOptions jwt, AuthOptions auth)
    {
        jwt.MapInboundClaims = false; // keep 'sub', 'site' and 'role' as the token names them
        jwt.SaveToken = false; // nothing reads the raw token back (GetTokenAsync): do not copy it into every request's properties
        jwt.TokenValidationParameters = new TokenValidationParameters
        {
            ValidIssuer = auth.Issuer,
            ValidAudience = auth.Audience,
            IssuerSigningKey = TokenIssuer.SigningKey(auth.SigningKey),
            ValidAlgorithms = [SecurityAlgorithms.HmacSha256],
            RequireSignedTokens = true,
            RequireExpirationTime = true,
            ClockSkew = auth.ClockSkew,
            NameClaimType = Caller.UserClaim,
            RoleClaimType = Caller.RoleClaim,
        };
        jwt.Events = new JwtBearerEvents
        {
            OnTokenValidated = context =>
            {
                if (Caller.TryFrom(context.Principal!, out var caller, out var error))
                {
                    context.HttpContext.Features.Set(caller); // read once per request (DashboardApi)
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
                var (title, detail) = Describe(context.AuthenticateFailure, context.Request.Headers.Authorization.Count > 0);
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
    private static (string Title, string? Detail) Describe(Exception? failure, bool hadHeader) => failure switch
    {
        null when hadHeader => ("The Authorization header is not a bearer token.", "Send 'Authorization: Bearer <token>'."),
        null => ("A bearer token is required.", "Send 'Authorization: Bearer <token>'."),
        SecurityTokenExpiredException => ("The bearer token has expired.", null),
        SecurityTokenNotYetValidException => ("The bearer token is not valid yet.", null),
        SecurityTokenInvalidIssuerException => ("The bearer token's issuer is not accepted.", null),
        SecurityTokenInvalidAudienceException => ("The bearer token's audience is not accepted.", null),
        SecurityTokenSignatureKeyNotFoundException or SecurityTokenInvalidSignatureException
            => ("The bearer token's signature is invalid.", null),
        SecurityTokenInvalidAlgorithmException => ("The bearer token's algorithm is not accepted; use HS256.", null),
        SecurityTokenNoExpirationException => ("The bearer token has no expiry.", null),
        AuthenticationFailureException => ("The bearer token is invalid.", failure.Message),
        _ => ("The bearer token is invalid.", null),
    };
}
