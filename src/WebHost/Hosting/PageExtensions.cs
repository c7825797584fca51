using Microsoft.Extensions.FileProviders;

namespace StatsCache.WebHost.Hosting;

/// <summary>
/// The dashboard page at <c>/</c>: static files embedded in the assembly (src/WebHost/Page), served without
/// authentication (the page asks for a token and sends it only in the Authorization header of its API calls), under
/// a content security policy that allows nothing but this origin's own files and API.
/// </summary>
public static class PageExtensions
{
    private const string ContentSecurityPolicy =
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

    /// <summary>Only for requests no endpoint matched (routing runs first): an API read never passes through the file middleware.</summary>
    public static IApplicationBuilder UseStatsCachePage(this IApplicationBuilder app) =>
        app.UseWhen(context => context.GetEndpoint() is null, UsePageFiles);

    private static void UsePageFiles(IApplicationBuilder app)
    {
        var files = new ManifestEmbeddedFileProvider(typeof(PageExtensions).Assembly, "Page");
        app.UseDefaultFiles(new DefaultFilesOptions { FileProvider = files });
        app.UseStaticFiles(new StaticFileOptions
        {
            FileProvider = files,
            OnPrepareResponse = context =>
            {
                var headers = context.Context.Response.Headers;
                headers.ContentSecurityPolicy = ContentSecurityPolicy;
                headers.XContentTypeOptions = "nosniff";
                headers["Referrer-Policy"] = "no-referrer";
                headers.CacheControl = "no-cache"; // revalidated (ETag) so a new build's page is picked up at once
            },
        });
    }
}
