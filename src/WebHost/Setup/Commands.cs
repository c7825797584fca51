using System.Globalization;
using System.Text.RegularExpressions;
using Microsoft.Extensions.Options;
using Npgsql;
using StatsCache.Catalog;
using StatsCache.Changes;
using StatsCache.Hosting;
using StatsCache.WebHost.Auth;

namespace StatsCache.WebHost.Setup;

/// <summary>
/// Commands of the web host binary besides serving:
/// <c>setup [--sites N --users N --orders N]</c> creates the demo schema and data, what the change feed needs (a publication,
/// or triggers: <see cref="ChangeFeedSchema"/>), and the Orleans providers' tables (in <c>ConnectionStrings:Orleans</c>,
/// default the Stats database); <c>setup --print-sql [--role R]</c> prints the change feed's SQL for a DBA instead, and
/// <c>setup --remove-changes</c> removes what the change feed added (with <c>--print-sql</c>: prints that SQL);
/// <c>token --site S --role R [--user U] [--lifetime hh:mm:ss]</c> prints a token signed with the configured key
/// (without --user: the site's first user of that role).
/// They read configuration (appsettings, environment) exactly as the service does.
/// </summary>
public static partial class Commands
{
    public static bool IsCommand(string[] args) => args is ["setup", ..] or ["token", ..];

    private static readonly string[] Flags = ["print-sql", "remove-changes"];

    public static async Task<int> RunAsync(string[] args)
    {
        var builder = WebApplication.CreateSlimBuilder([]);
        builder.Services.AddOptions<AuthOptions>().BindConfiguration(AuthOptions.SectionName).ValidateDataAnnotations();
        builder.Services.AddOptions<ChangeFeedOptions>().BindConfiguration(ChangeFeedOptions.SectionName).ValidateDataAnnotations();
        var connectionString = builder.Configuration.GetConnectionString(StatsCacheHostingExtensions.StatsConnectionName);
        var orleansConnectionString = builder.Configuration.GetConnectionString(StatsCacheHostingExtensions.OrleansConnectionName);
        await using var services = builder.Services.BuildServiceProvider();
        try
        {
            var options = Parse(args[1..]);
            if (args[0] == "setup" && options.ContainsKey("print-sql"))
            {
                Console.Write(PrintSql(ChangeFeedSchemaOf(builder.Configuration, services), options));
                return 0;
            }

            await using var dataSource = string.IsNullOrWhiteSpace(connectionString) ? null : NpgsqlDataSource.Create(connectionString);
            await using var orleansDataSource = string.IsNullOrWhiteSpace(orleansConnectionString) ? null : NpgsqlDataSource.Create(orleansConnectionString);
            if (args[0] == "setup" && options.ContainsKey("remove-changes"))
            {
                await DatabaseSetup.RemoveChangesAsync(dataSource ?? throw MissingConnection(), ChangeFeedSchemaOf(builder.Configuration, services));
                Console.WriteLine("The change feed's slot, publication and triggers are removed; each table's replica identity is as before.");
                return 0;
            }

            return args[0] == "setup"
                ? await SetupAsync(dataSource ?? throw MissingConnection(), orleansDataSource, ChangeFeedSchemaOf(builder.Configuration, services), options)
                : await TokenAsync(services.GetRequiredService<IOptions<AuthOptions>>().Value, dataSource, options);
        }
        catch (Exception e) when (e is ArgumentException or OptionsValidationException or InvalidOperationException or NpgsqlException or CatalogException)
        {
            await Console.Error.WriteLineAsync($"{args[0]}: {e.Message}");
            return 1;
        }
    }

    // The service's own catalog and change feed settings: the SQL is derived from the tables its views read.
    private static ChangeFeedSchema ChangeFeedSchemaOf(IConfiguration configuration, IServiceProvider services) => new(
        DashboardCatalog.Load(configuration[StatsCacheHostingExtensions.CatalogPathKey]),
        services.GetRequiredService<IOptions<ChangeFeedOptions>>().Value);

    private static string PrintSql(ChangeFeedSchema changes, Dictionary<string, string> options)
    {
        if (options.ContainsKey("remove-changes"))
        {
            return changes.RemoveSql();
        }

        var role = options.GetValueOrDefault("role", "statscache");
        return RoleName().IsMatch(role)
            ? changes.PrintSql(role)
            : throw new ArgumentException("--role must be lower-case letters, digits and '_', starting with a letter.");
    }

    private static async Task<int> SetupAsync(
        NpgsqlDataSource dataSource, NpgsqlDataSource? orleansDataSource, ChangeFeedSchema changes, Dictionary<string, string> options)
    {
        var defaults = DatabaseSetup.DefaultDemoSize;
        var size = new DatabaseSetup.DemoSize(
            Int(options, "sites", defaults.Sites), Int(options, "users", defaults.UsersPerSite), Int(options, "orders", defaults.Orders));
        await DatabaseSetup.ApplySchemaAsync(dataSource, orleansDataSource, changes);
        var started = TimeProvider.System.GetTimestamp();
        var generated = await DatabaseSetup.GenerateDemoDataIfEmptyAsync(dataSource, size);
        Console.WriteLine(generated
            ? $"Schema ready; demo data generated ({size.Sites} sites, {size.UsersPerSite} users per site, {size.Orders} orders) in {TimeProvider.System.GetElapsedTime(started).TotalSeconds:F1} s."
            : "Schema ready; demo data already present.");
        return 0;
    }

    private static async Task<int> TokenAsync(AuthOptions auth, NpgsqlDataSource? dataSource, Dictionary<string, string> options)
    {
        var site = Long(options, "site");
        var role = options.GetValueOrDefault("role") ?? throw new ArgumentException("--role is required.");
        var user = options.ContainsKey("user") ? Long(options, "user") : await FirstUserAsync(dataSource ?? throw MissingConnection(), site, role);
        var lifetime = options.TryGetValue("lifetime", out var text)
            ? TimeSpan.Parse(text, CultureInfo.InvariantCulture)
            : TimeSpan.FromHours(12);
        Console.WriteLine(TokenIssuer.Issue(auth, new Caller(site, role, user), lifetime));
        return 0;
    }

    private static async Task<long> FirstUserAsync(NpgsqlDataSource dataSource, long site, string role)
    {
        await using var command = dataSource.CreateCommand(
            "select min(id) from users where website_id = @site and role = @role and is_active");
        command.Parameters.AddWithValue("site", site);
        command.Parameters.AddWithValue("role", role);
        return await command.ExecuteScalarAsync() is long id
            ? id
            : throw new ArgumentException($"Site {site} has no active user with role '{role}'.");
    }

    private static Dictionary<string, string> Parse(string[] args)
    {
        var options = new Dictionary<string, string>(StringComparer.Ordinal);
        for (var i = 0; i < args.Length; i++)
        {
            if (args[i].StartsWith("--", StringComparison.Ordinal) && Flags.Contains(args[i][2..]))
            {
                options[args[i][2..]] = "";
                continue;
            }

            if (!args[i].StartsWith("--", StringComparison.Ordinal) || i + 1 >= args.Length)
            {
                throw new ArgumentException($"Expected '--name value' pairs or flags ({string.Join(", ", Flags.Select(f => $"--{f}"))}), got '{args[i]}'.");
            }

            options[args[i][2..]] = args[++i];
        }

        return options;
    }

    private static int Int(Dictionary<string, string> options, string name, int fallback) =>
        !options.TryGetValue(name, out var text) ? fallback
        : int.TryParse(text, CultureInfo.InvariantCulture, out var value) && value > 0 ? value
        : throw new ArgumentException($"--{name} must be a positive integer.");

    private static long Long(Dictionary<string, string> options, string name) =>
        options.TryGetValue(name, out var text) && long.TryParse(text, CultureInfo.InvariantCulture, out var value) && value > 0
            ? value
            : throw new ArgumentException($"--{name} must be a positive integer.");

    [GeneratedRegex("^[a-z][a-z0-9_]{0,62}$")]
    private static partial Regex RoleName();

    private static InvalidOperationException MissingConnection() =>
        new("ConnectionStrings:Stats is not set (environment variable ConnectionStrings__Stats).");
}
