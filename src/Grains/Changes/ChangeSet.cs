using System.Collections.Immutable;

namespace StatsCache.Changes;

/// <summary>
/// Changes coalesced in bounded memory: per table and site, the users named, so a transaction of 100,000 rows becomes one
/// invalidation per affected entry. Past <see cref="MaxUsersPerSite"/> users a table's change covers every user of the site;
/// past <see cref="MaxSitesPerTable"/> sites, every site. Each step only widens what is refreshed, never narrows it.
/// Not thread-safe: one change feed owns it.
/// </summary>
public sealed class ChangeSet
{
    public const int MaxUsersPerSite = 10_000;
    public const int MaxSitesPerTable = 10_000;
    public const int MaxRequests = 1_000;

    // Table → site → the users named (null: every user of the site).
    private readonly Dictionary<string, Dictionary<long, HashSet<long>?>> _tables = new(StringComparer.Ordinal);
    private readonly HashSet<string> _everySite = new(StringComparer.Ordinal);
    private readonly List<ChangeNotice> _requests = [];
    private bool _refreshAll;

    /// <summary>The WAL position every change held is known to be at or before (see <see cref="ChangeBatch.Lsn"/>).</summary>
    public ulong Lsn { get; private set; }

    public bool IsEmpty => _tables.Count == 0 && _everySite.Count == 0 && _requests.Count == 0 && !_refreshAll;

    /// <summary>A row of <paramref name="table"/> on <paramref name="site"/> changed, naming <paramref name="users"/>.</summary>
    public void AddRow(string table, long site, ReadOnlySpan<long> users) => AddTableChange(table, site, users, everyUser: false);

    private void AddTableChange(string table, long site, ReadOnlySpan<long> users, bool everyUser)
    {
        if (_refreshAll || _everySite.Contains(table))
        {
            return;
        }

        if (!_tables.TryGetValue(table, out var sites))
        {
            _tables[table] = sites = [];
        }

        if (!sites.TryGetValue(site, out var named))
        {
            if (sites.Count >= MaxSitesPerTable)
            {
                AddTableOfEverySite(table);
                return;
            }

            sites[site] = named = [];
        }

        if (named is null)
        {
            return;
        }

        if (everyUser)
        {
            sites[site] = null;
            return;
        }

        foreach (var user in users)
        {
            named.Add(user);
        }

        if (named.Count > MaxUsersPerSite)
        {
            sites[site] = null;
        }
    }

    /// <summary>Every row of <paramref name="table"/> may have changed, on every site (a <c>TRUNCATE</c>).</summary>
    public void AddTableOfEverySite(string table)
    {
        _tables.Remove(table);
        _everySite.Add(table);
    }

    /// <summary>A table's notice is coalesced with the others of its table and site; an invalidation API request is listed.</summary>
    public void AddNotice(ChangeNotice notice)
    {
        if (notice.Table is { } table)
        {
            AddTableChange(table, notice.Site, notice.Users is { } users ? users.AsSpan() : [], everyUser: notice.Users is null);
        }
        else if (_requests.Count < MaxRequests)
        {
            _requests.Add(notice);
        }
        else
        {
            RefreshAll(); // a thousand requests within one batch: not worth listing
        }
    }

    /// <summary>Every active entry must refresh.</summary>
    public void RefreshAll()
    {
        _tables.Clear();
        _everySite.Clear();
        _requests.Clear();
        _refreshAll = true;
    }

    /// <summary>Moves <see cref="Lsn"/> forwards (a commit's end was reached).</summary>
    public void Advance(ulong lsn) => Lsn = Math.Max(Lsn, lsn);

    /// <summary>Merges a batch not delivered yet into this set.</summary>
    public void Add(ChangeBatch batch)
    {
        Advance(batch.Lsn);
        if (batch.RefreshAll)
        {
            RefreshAll();
            return;
        }

        foreach (var table in batch.TablesOfEverySite)
        {
            AddTableOfEverySite(table);
        }

        foreach (var notice in batch.Notices)
        {
            AddNotice(notice);
        }
    }

    /// <summary>What the set holds, as one batch; the set is empty afterwards (its <see cref="Lsn"/> stays).</summary>
    public ChangeBatch TakeBatch()
    {
        var notices = ImmutableArray.CreateBuilder<ChangeNotice>();
        foreach (var (table, sites) in _tables)
        {
            foreach (var (site, users) in sites)
            {
                notices.Add(new ChangeNotice(table, site, users is null ? null : [.. users], null));
            }
        }

        notices.AddRange(_requests);
        var batch = new ChangeBatch(notices.ToImmutable(), [.. _everySite], _refreshAll, Lsn);
        _tables.Clear();
        _everySite.Clear();
        _requests.Clear();
        _refreshAll = false;
        return batch;
    }
}
