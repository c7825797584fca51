using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using StatsCache.Catalog;
using StatsCache.WebHost.Auth;
using Xunit.Abstractions;

namespace StatsCache.Integration.Tests;

/// <summary>
/// 10,000 generated requests (fixed seed) mixing valid and broken paths, view names, query strings, headers
/// and tokens. None may get a 5xx; every error is problem+json with a title; each case's expected status
/// (known from how it was generated) must be the one answered; the service is healthy at the end.
/// </summary>
[Collection(DatabaseCollection.Name)]
public sealed class FuzzTests(TestDatabase db, ITestOutputHelper output)
{
    private const int Seed = 20_260_416;
    private const int Requests = 10_000;

    private static readonly string[] TrickNames =
    [
        "..", "..%2F..%2Fetc", "%2E%2E%2F", "etc%2Fpasswd", "%5C..%5C", ";drop table orders", "' or '1'='1", "\") or 1=1--",
        "%27%3B--", "\u202e", "\u200b", "\u200d", "\ufeff", "\uff43", "\u0441", "\u0661", "%C0%AE", "%FF", "%E2%80%AE", "%20", "%09",
        "%0A", "%0D%0A", "<script>", "{{7*7}}", "${jndi:x}", "%25", "%2525", "*", "\\", "%u0000", "null", "undefined", "-1",
    ];

    private static readonly string[] BadValues =
    [
        "", "0", "-1", "99999999999", "2147483648", "-2147483649", "1e3", "0x10", "1.0", "ten", "%00", "12%00", "%2012", "+1",
        "%D9%A1", "%EF%BC%91", "1;drop%20table%20orders", "1%27%20or%20%271%27%3D%271", "NaN", "Infinity", "%E2%80%8B1", "1,2",
    ];

    [Fact]
    public async Task TenThousandGeneratedRequestsGetNo5xxAndTheExpectedProblemAnswers()
    {
        // Ten thousand requests from nine callers, most with parameters nobody read: the limits would answer them
        // 429 (LimitsTests covers that); here every answer must be the one the input deserves.
        await using var factory = new StatsCacheFactory
        {
            Settings = { ["StatsCache:RequestLimit:IsEnabled"] = "false", ["StatsCache:Cache:NewEntryBurst"] = "10000" },
        };
        var catalog = DashboardCatalog.Load(null);
        var site = await db.NewWebsiteAsync();
        string[] roles = ["client", "writer", "admin"];
        var users = new Dictionary<string, long[]>();
        foreach (var role in roles)
        {
            users[role] = [await db.NewUserAsync(site, role), await db.NewUserAsync(site, role), await db.NewUserAsync(site, role)];
        }

        var badTokens = BadTokens.All(factory.Auth, site, users["client"][0]).Where(t => t.Status == HttpStatusCode.Unauthorized).ToArray();
        var cases = Generate(new Random(Seed), factory.Auth, catalog, site, roles, users, badTokens);

        var http = factory.CreateClient();
        var failures = new ConcurrentQueue<string>();
        var statuses = new ConcurrentDictionary<int, int>();
        var clock = Stopwatch.StartNew();
        await Parallel.ForEachAsync(cases, new ParallelOptions { MaxDegreeOfParallelism = 8 }, async (c, ct) =>
        {
            using var request = new HttpRequestMessage(c.Method, c.Path);
            foreach (var (name, value) in c.Headers)
            {
                request.Headers.TryAddWithoutValidation(name, value);
            }

            using var response = await http.SendAsync(request, ct);
            var status = (int)response.StatusCode;
            statuses.AddOrUpdate(status, 1, (_, n) => n + 1);
            var problem = await CheckAnswerAsync(response, ct);
            if (status >= 500 || problem is not null || !c.Expected.Contains(status))
            {
                failures.Enqueue($"#{c.Index} {c.Method} {Shorten(c.Path)} [{c.Why}]: {status} (expected {string.Join("|", c.Expected)}) {problem}");
            }
        });
        var took = clock.Elapsed;

        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{cases.Count} requests (seed {Seed}) in {took.TotalSeconds:F1} s: {string.Join(", ", statuses.OrderBy(s => s.Key).Select(s => $"{s.Key}: {s.Value}"))}"));
        foreach (var failure in failures.Take(20))
        {
            output.WriteLine(failure);
        }

        Assert.True(failures.IsEmpty, $"{failures.Count} of {cases.Count} generated requests got a wrong answer; the first: {failures.FirstOrDefault()}");
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/healthz")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await factory.ClientFor(site, "client", users["client"][0]).GetAsync("/api/dashboards/client-stats")).StatusCode);
        Assert.True(took < TimeSpan.FromSeconds(30), $"The fuzz run took {took.TotalSeconds:F0} s.");
    }

    /// <summary>Null when the answer is well-formed for its status; else what is wrong with it.</summary>
    private static async Task<string?> CheckAnswerAsync(HttpResponseMessage response, CancellationToken ct)
    {
        var status = (int)response.StatusCode;
        if (status is >= 200 and < 300 or 304)
        {
            return null;
        }

        if (response.Content.Headers.ContentType?.MediaType != "application/problem+json")
        {
            return $"content type {response.Content.Headers.ContentType}";
        }

        try
        {
            using var body = JsonDocument.Parse(await response.Content.ReadAsStreamAsync(ct));
            return body.RootElement.TryGetProperty("title", out var title) && !string.IsNullOrWhiteSpace(title.GetString())
                ? null
                : "problem without a title";
        }
        catch (JsonException e)
        {
            return $"problem body is not JSON: {e.Message}";
        }
    }

    private static List<Case> Generate(
        Random random, AuthOptions auth, DashboardCatalog catalog, long site, string[] roles, Dictionary<string, long[]> users, BadTokens.Case[] badTokens)
    {
        T Pick<T>(IReadOnlyList<T> items) => items[random.Next(items.Count)];
        bool Chance(double p) => random.NextDouble() < p;
        var tokens = roles.ToDictionary(r => r, r => users[r].Select(u => TokenIssuer.Issue(auth, new Caller(site, r, u), TimeSpan.FromHours(1))).ToArray());
        var auditor = TokenIssuer.Issue(auth, new Caller(site, "auditor", 1), TimeSpan.FromHours(1));

        var cases = new List<Case>(Requests);
        for (var i = 0; i < Requests; i++)
        {
            var why = new List<string>();
            var headers = new List<(string, string)>();

            // Who: a valid caller of a catalog role (75%), a role without views (5%), or a bad token (20%).
            var roll = random.NextDouble();
            string? role = null;
            var badToken = false;
            if (roll < 0.75)
            {
                role = Pick(roles);
                headers.Add(("Authorization", (Chance(0.05) ? "bearer " : "Bearer ") + Pick(tokens[role])));
            }
            else if (roll < 0.80)
            {
                role = "auditor";
                headers.Add(("Authorization", "Bearer " + auditor));
            }
            else
            {
                var bad = Pick(badTokens);
                badToken = true;
                why.Add($"token: {bad.Name}");
                if (bad.Authorization is not null)
                {
                    headers.Add(("Authorization", bad.Authorization));
                }
            }

            // What: the list (10%), a view of the caller's role (50%), of another role (15%), or no view at all (25%).
            roll = random.NextDouble();
            ViewDefinition? view = null;
            string path;
            var unknownView = false;
            if (roll < 0.10)
            {
                path = "/api/dashboards";
            }
            else if (roll < 0.75)
            {
                var own = roll < 0.60 && role is not null && role != "auditor";
                var candidates = catalog.Views.Where(v => own == v.AllowsRole(role ?? "")).ToList();
                view = Pick(candidates.Count > 0 ? candidates : catalog.Views.ToList());
                path = "/api/dashboards/" + view.Name;
            }
            else
            {
                unknownView = true;
                var name = TrickName(random, catalog, Pick);
                why.Add("view: " + name);
                path = "/api/dashboards/" + name;
            }

            // How: valid parameters, or one broken in a known way.
            var badQuery = false;
            var query = new List<string>();
            if (view is not null || unknownView || Chance(0.5))
            {
                foreach (var parameter in view?.Parameters ?? [])
                {
                    if (Chance(0.6))
                    {
                        query.Add($"{parameter.Name}={random.Next(parameter.Min, parameter.Max + 1)}");
                    }
                }

                if (Chance(0.03))
                {
                    query.Add("refresh=true");
                }
                else if (Chance(0.05))
                {
                    query.Add("refresh=false");
                }

                if (Chance(0.4))
                {
                    badQuery = true;
                    var broken = BrokenParameter(random, view, Pick);
                    why.Add("query: " + Shorten(broken));
                    query.Insert(random.Next(query.Count + 1), broken);
                }
            }

            if (query.Count > 0)
            {
                path += "?" + string.Join("&", query);
            }

            // Noise in other headers, which must change nothing but a conditional 304.
            if (Chance(0.1))
            {
                headers.Add(("If-None-Match", Pick(["*", "\"x\"", "W/\"abc\"", "garbage", "\"unterminated", ",,,"])));
            }

            if (Chance(0.1))
            {
                headers.Add((Pick(["Accept", "Accept-Language", "X-Forwarded-For", "Cookie", "Content-Type", "X-Site", "X-User"]),
                    Pick(["application/xml", "*/*;q=abc", "1; drop table orders", "\u202e\u200b", new string('h', 8_000), "site=2; role=admin"])));
            }

            var method = Chance(0.04) ? Pick([HttpMethod.Post, HttpMethod.Put, HttpMethod.Delete, HttpMethod.Patch]) : HttpMethod.Get;

            // The expected answer follows from the generation, in the order the service checks:
            // route and method, then the token, then the view, the role, the parameters.
            int[] expected;
            if (method != HttpMethod.Get)
            {
                expected = [405];
                why.Add(method.Method);
            }
            else if (badToken)
            {
                expected = [401];
            }
            else if (view is null && !unknownView)
            {
                expected = role == "auditor" ? [403] : [200];
            }
            else if (unknownView)
            {
                expected = [404];
            }
            else if (!view!.AllowsRole(role!))
            {
                expected = [403];
            }
            else if (badQuery)
            {
                expected = [400];
            }
            else
            {
                expected = [200, 304];
            }

            cases.Add(new Case(i, method, path, headers, expected, string.Join("; ", why)));
        }

        return cases;
    }

    // A single path segment that is no view: a trick alone, or spliced into or around a real view's name.
    private static string TrickName(Random random, DashboardCatalog catalog, Func<IReadOnlyList<string>, string> pick)
    {
        var real = catalog.Views[random.Next(catalog.Views.Length)].Name;
        var trick = pick(TrickNames);
        var name = random.Next(5) switch
        {
            0 => trick,
            1 => real + trick,
            2 => trick + real,
            3 => real.Insert(random.Next(real.Length + 1), trick),
            _ => new string((char)('a' + random.Next(26)), random.Next(1, 3_000)),
        };

        // Escape what would end the segment or the path; keep the tricks that are already %-encoded as they are.
        var escaped = new StringBuilder();
        foreach (var rune in name.EnumerateRunes())
        {
            var text = rune.ToString();
            escaped.Append(rune.Value switch
            {
                '/' or '?' or '#' or ' ' or '\\' or '"' or '<' or '>' or '{' or '}' or '|' or '^' or '`' or '\'' => Uri.EscapeDataString(text),
                > 127 => Uri.EscapeDataString(text),
                _ => text,
            });
        }

        var segment = escaped.ToString();
        // '.' and '..' are dot segments, removed before routing: no longer a view name but another path.
        return segment is "." or ".." || catalog.Find(Uri.UnescapeDataString(segment)) is not null ? segment + "x" : segment;
    }

    private static string BrokenParameter(Random random, ViewDefinition? view, Func<IReadOnlyList<string>, string> pick)
    {
        var parameter = view is { Parameters.Length: > 0 } ? view.Parameters[random.Next(view.Parameters.Length)].Name : null;
        return (random.Next(8), parameter) switch
        {
            (0 or 1 or 2, { } name) => $"{name}={pick(BadValues)}",
            (3, { } name) => $"{name}=1&{name}=2",
            (4, _) => $"{pick(["foo", "site_id", "user_id", "role", "WEEKS", "days%00", "%E2%80%AEweeks", "p"])}={random.Next(100)}",
            (5, _) => $"refresh={pick(["yes", "1", "", "%20true", "true%00", "maybe"])}",
            (6, _) => $"q{random.Next(1000)}=" + new string('v', random.Next(1, 20_000)),
            _ => "refresh=true&refresh=true",
        };
    }

    private static string Shorten(string text) => text.Length <= 120 ? text : string.Concat(text.AsSpan(0, 120), "…");

    private sealed record Case(int Index, HttpMethod Method, string Path, List<(string Name, string Value)> Headers, int[] Expected, string Why);
}
