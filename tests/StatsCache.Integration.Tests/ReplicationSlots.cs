using System.Diagnostics;
using Npgsql;

namespace StatsCache.Integration.Tests;

/// <summary>
/// The tests' replication slots: each host or cluster with the WAL feed streams a slot of its own, named by
/// <see cref="NewName"/>, which it drops when done. A slot left behind would keep the test server's WAL forever.
/// </summary>
internal static class ReplicationSlots
{
    /// <summary>A slot name no other test uses.</summary>
    public static string NewName() => $"test_{Guid.NewGuid():N}";

    /// <summary>Drops the slot once its reader (a stopping host or a killed silo's connection) has let go of it.</summary>
    public static async Task DropAsync(string connectionString, string slot)
    {
        await using var dataSource = NpgsqlDataSource.Create(connectionString);
        var waited = Stopwatch.StartNew();
        while (true)
        {
            await using var drop = dataSource.CreateCommand(
                "select count(*) filter (where active_pid is null and pg_drop_replication_slot(slot_name) is null), count(*) " +
                "from pg_replication_slots where slot_name = @slot");
            drop.Parameters.AddWithValue("slot", slot);
            await using var reader = await drop.ExecuteReaderAsync();
            await reader.ReadAsync();
            if (reader.GetInt64(0) == reader.GetInt64(1))
            {
                return; // dropped, or there was none
            }

            if (waited.Elapsed > TimeSpan.FromSeconds(30))
            {
                throw new TimeoutException($"Replication slot {slot} stayed active for 30 s after its host stopped.");
            }

            await Task.Delay(TimeSpan.FromMilliseconds(50));
        }
    }
}
