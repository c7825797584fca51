using System.Diagnostics;
using System.Net;
using System.Text;
using System.Text.Json.Nodes;

namespace StatsCache.Integration.Tests.Tokens;

/// <summary>
/// Tokens, keys and key sets made by tools nobody in this project wrote: the platform's own issuer
/// (djangorestframework-simplejwt) and PyJWT through <c>mint.py</c> under Debian's Python (./test.sh installs
/// python3-jwt and python3-djangorestframework-simplejwt), keys by <c>openssl</c>. Files live in a folder of the
/// test's own.
/// </summary>
public sealed class PlatformIssuer : IDisposable
{
    // Debian's interpreter, where Debian's python3-* packages are; a python3 earlier on PATH may be another.
    private const string Python = "/usr/bin/python3";

    private static readonly string Script = Path.Combine(AppContext.BaseDirectory, "Tokens", "mint.py");

    public string Folder { get; } = Directory.CreateTempSubdirectory("statscache-tokens-").FullName;

    /// <summary>A new key pair: <c>{name}.pem</c> (private, PKCS#8) and <c>{name}.pub</c> (public, SubjectPublicKeyInfo).</summary>
    public async Task<(string PrivatePath, string PublicPath)> NewKeyPairAsync(string name, bool ec)
    {
        var (privatePath, publicPath) = (Path.Combine(Folder, $"{name}.pem"), Path.Combine(Folder, $"{name}.pub"));
        await RunAsync("openssl", ec
            ? ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", privatePath]
            : ["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", privatePath]);
        await RunAsync("openssl", ["pkey", "-in", privatePath, "-pubout", "-out", publicPath]);
        return (privatePath, publicPath);
    }

    /// <summary>Runs <c>mint.py</c> on a request (see its docstring) and returns its answer.</summary>
    public async Task<JsonObject> MintAsync(JsonObject request)
    {
        var output = await RunAsync(Python, [Script], request.ToJsonString());
        return JsonNode.Parse(output)!.AsObject();
    }

    /// <summary>SimpleJWT tokens of one Django deployment: its settings, then each token's type and extra claims.</summary>
    public async Task<string[]> SimpleJwtAsync(JsonObject settings, params (string Type, JsonObject Claims)[] tokens)
    {
        var answer = await MintAsync(new JsonObject
        {
            ["simple_jwt"] = new JsonObject
            {
                ["settings"] = settings.DeepClone(),
                ["tokens"] = new JsonArray([.. tokens.Select(t => (JsonNode)new JsonObject { ["type"] = t.Type, ["claims"] = t.Claims.DeepClone() })]),
            },
        });
        return [.. answer["simple_jwt"]!.AsArray().Select(t => t!.GetValue<string>())];
    }

    /// <summary>What PyJWT is asked for one token: <c>jwt.encode(claims, secret or the key file's key, algorithm=alg, headers=headers)</c>.</summary>
    public static JsonObject PyJwt(string alg, JsonObject claims, string? secret = null, string? keyPath = null, JsonObject? headers = null)
    {
        var spec = new JsonObject { ["alg"] = alg, ["claims"] = claims.DeepClone() };
        if (secret is not null)
        {
            spec["secret"] = secret;
        }

        if (keyPath is not null)
        {
            spec["key_path"] = keyPath;
        }

        if (headers is not null)
        {
            spec["headers"] = headers.DeepClone();
        }

        return spec;
    }

    /// <summary>PyJWT's tokens, in one run.</summary>
    public async Task<string[]> PyJwtAsync(params JsonObject[] specs)
    {
        var answer = await MintAsync(new JsonObject { ["pyjwt"] = new JsonArray([.. specs]) });
        return [.. answer["pyjwt"]!.AsArray().Select(t => t!.GetValue<string>())];
    }

    /// <summary>A JWKS document (PyJWT's JWKs of the public keys), as text.</summary>
    public async Task<string> JwksAsync(params (string PublicPath, string Kid, string Alg)[] keys)
    {
        var answer = await MintAsync(new JsonObject
        {
            ["jwks"] = new JsonArray([.. keys.Select(k => (JsonNode)new JsonObject { ["key_path"] = k.PublicPath, ["kid"] = k.Kid, ["alg"] = k.Alg })]),
        });
        return answer["jwks"]!.ToJsonString();
    }

    public void Dispose() => Directory.Delete(Folder, recursive: true);

    private static async Task<string> RunAsync(string program, string[] arguments, string? input = null)
    {
        var start = new ProcessStartInfo(program) { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        using var process = Process.Start(start)!;
        await process.StandardInput.WriteAsync(input ?? "");
        process.StandardInput.Close();
        var output = process.StandardOutput.ReadToEndAsync();
        var errors = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(60));
        Assert.True(process.ExitCode == 0, $"{program} {string.Join(' ', arguments)} failed ({process.ExitCode}): {await errors}");
        return await output;
    }
}

/// <summary>
/// A JWKS endpoint on 127.0.0.1 serving a document the test changes at will (a key rotation, an outage);
/// counts the fetches, so a test can see how often the service asks.
/// </summary>
public sealed class JwksServer : IDisposable
{
    private readonly HttpListener _listener = new();
    private volatile string? _document;
    private int _fetches;

    public JwksServer()
    {
        var port = StatsCacheFactory.FreePort();
        Url = new Uri($"http://127.0.0.1:{port}/jwks.json");
        _listener.Prefixes.Add($"http://127.0.0.1:{port}/");
        _listener.Start();
        _ = ServeAsync();
    }

    public Uri Url { get; }

    public int Fetches => Volatile.Read(ref _fetches);

    /// <summary>The document served from now on; null: the issuer is down (503).</summary>
    public string? Document
    {
        get => _document;
        set => _document = value;
    }

    public void Dispose() => _listener.Close();

    private async Task ServeAsync()
    {
        while (_listener.IsListening)
        {
            HttpListenerContext context;
            try
            {
                context = await _listener.GetContextAsync();
            }
            catch (Exception e) when (e is HttpListenerException or ObjectDisposedException)
            {
                return;
            }

            Interlocked.Increment(ref _fetches);
            var document = _document;
            context.Response.StatusCode = document is null ? 503 : 200;
            context.Response.ContentType = "application/json";
            var body = Encoding.UTF8.GetBytes(document ?? "{}");
            await context.Response.OutputStream.WriteAsync(body);
            context.Response.Close();
        }
    }
}
