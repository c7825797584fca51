using System.Text;
using StatsCache.Catalog;

namespace StatsCache.Changes;

/// <summary>
/// What the change feed needs in the platform's database, derived from the catalog's <c>tables</c> (each table's site and
/// user columns) and the configured source: for <see cref="ChangeSource.Replication"/> a publication of those tables and
/// replica identity <c>FULL</c> on them (a delete or an update then carries the old row's site and users, without which a
/// deleted order, or one moved to another client, could not be routed); for <see cref="ChangeSource.Notify"/> a trigger on
/// each. Applying one source's SQL removes the other's, and <see cref="RemoveSql"/> removes both and the slot, restoring
/// the replica identity each table had before (recorded in the publication's comment), so detaching StatsCache leaves
/// the database as it was. Every statement is idempotent; names come from the validated catalog and options only.
/// </summary>
public sealed class ChangeFeedSchema(DashboardCatalog catalog, ChangeFeedOptions options)
{
    private const string TriggerName = "statscache_change";
    private const string TriggerFunction = "statscache_notify_change";

    private IEnumerable<TableDefinition> Tables => catalog.Tables.Values.OrderBy(t => t.Name, StringComparer.Ordinal);

    /// <summary>
    /// The SQL that makes the database ready for the configured source (what <c>webhost setup</c> runs); with the feed off,
    /// <see cref="RemoveSql"/>: nothing of StatsCache's stays in the platform's write path.
    /// </summary>
    public string ApplySql() =>
        !options.IsEnabled ? RemoveSql()
        : options.Source == ChangeSource.Replication ? Join(DropTriggers(), Publication())
        : Join(RemoveReplication(), Triggers());

    /// <summary>
    /// <see cref="ApplySql"/> for a DBA to run by hand, and for <see cref="ChangeSource.Replication"/> a role for the service
    /// with the rights the feed needs: <c>REPLICATION</c> (to stream the slot) and <c>SELECT</c> on the tables.
    /// </summary>
    public string PrintSql(string role) => options.Source == ChangeSource.Replication
        ? Join(ApplySql(), Role(role))
        : ApplySql();

    /// <summary>Drops the slot (it keeps WAL for as long as it exists), the publication and the triggers (<c>webhost setup --remove-changes</c>).</summary>
    public string RemoveSql() => Join(RemoveReplication(), DropTriggers());

    private static string Join(params string[] parts) => string.Join(Environment.NewLine, parts);

    private string TableList => string.Join(", ", Tables.Select(t => Quote(t.Name)));

    private string Publication() => $$"""
        -- StatsCache change feed (Replication): the publication of the tables the catalog's views read, and replica identity FULL
        -- on them, so deletes and updates carry the old row and the users and site it named are told too. The first time, each
        -- table's replica identity is recorded in the publication's comment, to be restored when StatsCache is removed. Tables
        -- already set up are left alone (ALTER TABLE would wait for, and block, the platform's writes).
        do $statscache$
        declare
            tables regclass[] := array[{{string.Join(", ", Tables.Select(t => $"'{Quote(t.Name)}'::regclass"))}}];
            previous jsonb := coalesce((select obj_description(oid, 'pg_publication')::jsonb from pg_publication where pubname = '{{options.PublicationName}}'), '{}');
            t regclass;
        begin
            select previous || coalesce(jsonb_object_agg(c.relname, case c.relreplident
                    when 'd' then 'default' when 'f' then 'full' when 'n' then 'nothing'
                    else 'using index ' || quote_ident((select ci.relname from pg_index i join pg_class ci on ci.oid = i.indexrelid
                                                       where i.indrelid = c.oid and i.indisreplident)) end), '{}')
                into previous
                from pg_class c
                where c.oid = any(tables) and not previous ? c.relname;
            if not exists (select 1 from pg_publication where pubname = '{{options.PublicationName}}') then
                create publication {{options.PublicationName}} for table {{TableList}};
            elsif (select array_agg(prrelid::regclass order by prrelid) from pg_publication_rel r join pg_publication p on p.oid = r.prpubid
                   where p.pubname = '{{options.PublicationName}}') is distinct from (select array_agg(x order by x::oid) from unnest(tables) x) then
                alter publication {{options.PublicationName}} set table {{TableList}};
            end if;
            execute format('comment on publication {{options.PublicationName}} is %L', previous::text);
            for t in select c.oid::regclass from pg_class c where c.oid = any(tables) and c.relreplident <> 'f' loop
                execute format('alter table %s replica identity full', t);
            end loop;
        end
        $statscache$;

        """;

    private string RemoveReplication() => $$"""
        -- Removes the change feed's replication parts: the slot (an active one, still streamed by StatsCache, makes this fail:
        -- stop StatsCache first), and the publication, restoring each table's replica identity from before.
        select pg_drop_replication_slot(slot_name) from pg_replication_slots
            where slot_name = '{{options.SlotName}}' and database = current_database();
        do $statscache$
        declare
            previous record;
        begin
            for previous in select key, value from jsonb_each_text(coalesce(
                    (select obj_description(oid, 'pg_publication')::jsonb from pg_publication where pubname = '{{options.PublicationName}}'), '{}')) loop
                if to_regclass(quote_ident(previous.key)) is not null then
                    execute format('alter table %I replica identity %s', previous.key, previous.value);
                end if;
            end loop;
        end
        $statscache$;
        drop publication if exists {{options.PublicationName}};

        """;

    private string Triggers()
    {
        var sql = new StringBuilder();
        sql.AppendLine($$"""
            -- StatsCache change feed (Notify): every committed insert, update or delete on a table the views read sends one
            -- NOTIFY on channel '{{ChangeNotice.Channel}}' with the row's site and the users it names:
            --   {"table": "orders", "site": 1, "users": [42, 7]}
            -- Each silo LISTENs and refreshes the cached entries the change affects. Arguments: 'site:<column>', then the user columns.
            create or replace function {{TriggerFunction}}() returns trigger
            language plpgsql as $fn$
            declare
                site_column text;
                user_columns text[] := '{}';
                arg text;
                doc jsonb;
                users bigint[];
                col text;
            begin
                foreach arg in array coalesce(tg_argv, '{}') loop
                    if arg like 'site:%' then
                        site_column := substr(arg, 6);
                    else
                        user_columns := user_columns || arg;
                    end if;
                end loop;

                -- The new row and the old one: an update that moves a row between users or sites concerns
                -- both. PostgreSQL delivers identical notifications of one transaction once.
                for doc in select d from unnest(array[
                        case when tg_op <> 'DELETE' then to_jsonb(new) end,
                        case when tg_op <> 'INSERT' then to_jsonb(old) end]) d where d is not null loop
                    users := '{}';
                    foreach col in array user_columns loop
                        if doc ->> col is not null then
                            users := users || (doc ->> col)::bigint;
                        end if;
                    end loop;
                    perform pg_notify('{{ChangeNotice.Channel}}', json_build_object(
                        'table', tg_table_name, 'site', (doc ->> site_column)::bigint, 'users', users)::text);
                end loop;
                return null;
            end;
            $fn$;
            """);
        foreach (var table in Tables)
        {
            var arguments = string.Join(", ", table.UserColumns.Prepend($"site:{table.SiteColumn}").Select(a => $"'{a}'"));
            sql.AppendLine($"create or replace trigger {TriggerName} after insert or update or delete on {Quote(table.Name)}");
            sql.AppendLine($"    for each row execute function {TriggerFunction}({arguments});");
        }

        // A table the catalog no longer declares keeps no trigger.
        sql.AppendLine($"""
            do $statscache$
            declare
                t regclass;
            begin
                for t in select tgrelid::regclass from pg_trigger
                         where tgname = '{TriggerName}' and tgrelid not in ({string.Join(", ", Tables.Select(t => $"'{Quote(t.Name)}'::regclass"))}) loop
                    execute format('drop trigger {TriggerName} on %s', t);
                end loop;
            end
            $statscache$;
            """);
        return sql.ToString();
    }

    private static string DropTriggers() => $"""
        -- Removes the Notify source's triggers (from any table) and their function.
        do $statscache$
        declare
            t regclass;
        begin
            for t in select tgrelid::regclass from pg_trigger where tgname = '{TriggerName}' loop
                execute format('drop trigger {TriggerName} on %s', t);
            end loop;
        end
        $statscache$;
        drop function if exists {TriggerFunction}();

        """;

    private string Role(string role) => $"""
        -- A role for StatsCache's connection (ConnectionStrings:Stats): REPLICATION to stream the slot, SELECT on the tables
        -- the views read, pg_read_all_stats to see in pg_stat_replication when the slot's holder last spoke (a silo ends the
        -- WAL sender of a silent holder, which a role may do to its own sessions, to take over). Give it a password
        -- yourself (ALTER ROLE {role} PASSWORD ...), never in this file.
        do $statscache$
        begin
            if not exists (select 1 from pg_roles where rolname = '{role}') then
                create role {role} login replication;
            else
                alter role {role} replication;
            end if;
        end
        $statscache$;
        grant select on {TableList} to {role};
        grant pg_read_all_stats to {role};

        """;

    // Catalog names are lower-case letters, digits and '_' (validated): quoting keeps a name like "user" from being a keyword.
    private static string Quote(string name) => $"\"{name}\"";
}
