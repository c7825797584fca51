using System.Diagnostics;
using System.Globalization;
using Npgsql;
using StatsCache.WebHost.Setup;

namespace StatsCache.Integration.Tests;

/// <summary>
/// A PostgreSQL server of the test's own, which the test may stop and start: deploy/scripts/postgres.sh's
/// few commands in C# (initdb and pg_ctl, as the <c>postgres</c> user through runuser when root; fsync off;
/// a free port and a data folder under /tmp). The demo schema is applied to its database; Dispose stops the
/// server and deletes the folder. <see cref="StartReplicaAsync"/> makes a streaming replica of it, the same way.
/// </summary>
public sealed class ThrowawayPostgres : IAsyncLifetime
{
    private const string Database = "statscache_faults";

    private readonly string[] _settings;
    private readonly string[] _extraSettings;

    // Set on a replica: the server it was copied from and streams from.
    private ThrowawayPostgres? _primary;

    /// <summary>A server with the defaults (the only public constructor: an xunit class fixture has one).</summary>
    public ThrowawayPostgres()
        : this([])
    {
    }

    /// <summary>A server with PostgreSQL settings (<c>name=value</c>) on top of the defaults, which they override.</summary>
    internal ThrowawayPostgres(string[] settings)
    {
        _extraSettings = settings;
        _settings = ["wal_level=logical", "max_replication_slots=8", "max_wal_senders=8", .. settings];
    }

    private readonly string _bin = Directory.GetDirectories("/usr/lib/postgresql")
        .Select(d => Path.Combine(d, "bin"))
        .Where(d => File.Exists(Path.Combine(d, "initdb")))
        .OrderBy(d => Version.TryParse(Path.GetFileName(Path.GetDirectoryName(d)), out var v) ? v : new Version(0, 0))
        .LastOrDefault() ?? throw new InvalidOperationException("No PostgreSQL under /usr/lib/postgresql; ./test.sh installs it.");

    private readonly string _data = Directory.CreateTempSubdirectory("statscache-fault-pg.").FullName;

    public int Port { get; } = StatsCacheFactory.FreePort();

    public string ConnectionString => ConnectionStringAt("127.0.0.1");

    /// <summary>The database at another address the server listens on (<c>listen_addresses</c> in the settings).</summary>
    public string ConnectionStringAt(string host) => $"Host={host};Port={Port};Username=postgres;Database={Database};Timeout=5";

    /// <summary>A data source of the test's own (not the service's), for setting up and inspecting the database.</summary>
    public NpgsqlDataSource DataSource { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        if (IsRoot)
        {
            await RunAsync("chown", ["postgres:postgres", _data]);
        }

        if (_primary is not null)
        {
            // A copy of the primary that streams from it (-R: standby.signal and primary_conninfo); -c fast: no wait for a checkpoint.
            await RunAsOwnerAsync(Path.Combine(_bin, "pg_basebackup"),
                ["-h", "127.0.0.1", "-p", _primary.Port.ToString(CultureInfo.InvariantCulture), "-U", "postgres", "-D", _data, "-R", "-X", "stream", "-c", "fast"]);
            await StartAsync();
            DataSource = NpgsqlDataSource.Create(ConnectionString);
            return;
        }

        var initdb = Path.Combine(_bin, "initdb");
        if (await TryRunAsOwnerAsync(initdb, ["-D", _data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"]) is { } error
            && await TryRunAsOwnerAsync(initdb, ["-D", _data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"]) is not null)
        {
            throw new InvalidOperationException($"initdb failed: {error}");
        }

        await StartAsync();
        await using (var admin = NpgsqlDataSource.Create($"Host=127.0.0.1;Port={Port};Username=postgres;Database=postgres"))
        {
            await admin.CreateCommand($"create database {Database}").ExecuteNonQueryAsync();
        }

        DataSource = NpgsqlDataSource.Create(ConnectionString);
        await DatabaseSetup.ApplySchemaAsync(DataSource);
    }

    /// <summary>A streaming replica of this server on a port of its own, with the same settings, started; disposed by the caller.</summary>
    public async Task<ThrowawayPostgres> StartReplicaAsync()
    {
        var replica = new ThrowawayPostgres(_extraSettings) { _primary = this };
        try
        {
            await replica.InitializeAsync();
            return replica;
        }
        catch
        {
            await replica.DisposeAsync();
            throw;
        }
    }

    /// <summary>Starts the server and returns once it accepts connections.</summary>
    public async Task StartAsync()
    {
        await RunAsOwnerAsync(Path.Combine(_bin, "pg_ctl"),
        [
            "-D", _data, "-l", Path.Combine(_data, "server.log"), "-w", "-t", "60", "-o",
            $"-p {Port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={_data} -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c wal_writer_delay=10ms " +
            string.Join(' ', _settings.Select(s => $"-c {s}")),
            "start",
        ]);
        DataSource?.Clear(); // the test's own pooled connections died with the previous server
    }

    /// <summary>Lets the superuser in without a password from <paramref name="cidr"/> too (pg_hba.conf), as from 127.0.0.1.</summary>
    public async Task TrustAsync(string cidr)
    {
        await File.AppendAllTextAsync(Path.Combine(_data, "pg_hba.conf"), $"host all all {cidr} trust{Environment.NewLine}");
        await RunAsOwnerAsync(Path.Combine(_bin, "pg_ctl"), ["-D", _data, "reload"]);
    }

    /// <summary>Fast shutdown: sessions are ended and the server stops accepting connections.</summary>
    public Task StopAsync() => RunAsOwnerAsync(Path.Combine(_bin, "pg_ctl"), ["-D", _data, "-m", "fast", "-w", "stop"]);

    public async Task DisposeAsync()
    {
        if (DataSource is not null)
        {
            await DataSource.DisposeAsync();
        }



        if (File.Exists(Path.Combine(_data, "postmaster.pid")))
        {
            await TryRunAsOwnerAsync(Path.Combine(_bin, "pg_ctl"), ["-D", _data, "-m", "immediate", "-w", "stop"]);
        }

        Directory.Delete(_data, recursive: true);
    }

    public async Task ExecuteAsync(string sql)
    {
        await using var command = DataSource.CreateCommand(sql);
        await command.ExecuteNonQueryAsync();
    }

    private static bool IsRoot => Environment.UserName == "root";

    private static async Task RunAsOwnerAsync(string file, string[] arguments)
    {
        if (await TryRunAsOwnerAsync(file, arguments) is { } error)
        {
            throw new InvalidOperationException($"{Path.GetFileName(file)} {arguments[^1]} failed: {error}");
        }
    }

    // PostgreSQL refuses to run as root: as root, run its tools as the postgres user.
    private static Task<string?> TryRunAsOwnerAsync(string file, string[] arguments) =>
        IsRoot ? TryRunAsync("runuser", ["-u", "postgres", "--", file, .. arguments]) : TryRunAsync(file, arguments);

    private static async Task RunAsync(string file, string[] arguments)
    {
        if (await TryRunAsync(file, arguments) is { } error)
        {
            throw new InvalidOperationException($"{file} failed: {error}");
        }
    }

    /// <summary>Runs a command to its end; null when it succeeded, else its exit code and output.</summary>
    private static async Task<string?> TryRunAsync(string file, string[] arguments)
    {
        var start = new ProcessStartInfo(file, arguments) { RedirectStandardOutput = true, RedirectStandardError = true };
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        var text = await stdout + await stderr;
        return process.ExitCode == 0 ? null : string.Create(CultureInfo.InvariantCulture, $"exit code {process.ExitCode}: {text}");
    }
}
