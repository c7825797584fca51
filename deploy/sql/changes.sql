-- StatsCache change feed: every committed insert, update or delete on a table the dashboards read
-- sends one NOTIFY on channel 'statscache_changes' with the row's site and the users it names:
--   {"table": "orders", "site": 1, "users": [42, 7]}
-- Each silo LISTENs and refreshes the cached entries the change affects (the catalog's `reads`).
-- Notifications are delivered at commit, so a reload never runs before the data is visible.
--
-- To use it with your own schema: keep the function, and for each table your views read add
--   create or replace trigger statscache_change after insert or update or delete on <table>
--       for each row execute function statscache_notify_change('<user column>', ...);
-- naming the columns that hold the ids of the users the row matters to. The table needs a
-- website_id column (or pass 'site:<column>' as the first argument to name another one).
-- Idempotent: running it again replaces the function and the triggers.

set client_min_messages = warning;

create or replace function statscache_notify_change() returns trigger
language plpgsql as $fn$
declare
    site_column text := 'website_id';
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
        perform pg_notify('statscache_changes', json_build_object(
            'table', tg_table_name, 'site', (doc ->> site_column)::bigint, 'users', users)::text);
    end loop;
    return null;
end;
$fn$;

-- The platform's tables, with the columns naming the users each row matters to.
create or replace trigger statscache_change after insert or update or delete on users
    for each row execute function statscache_notify_change('id');
create or replace trigger statscache_change after insert or update or delete on orders
    for each row execute function statscache_notify_change('client_id', 'writer_id');
create or replace trigger statscache_change after insert or update or delete on order_requests
    for each row execute function statscache_notify_change('writer_id');
create or replace trigger statscache_change after insert or update or delete on writer_levels
    for each row execute function statscache_notify_change();
create or replace trigger statscache_change after insert or update or delete on writer_profiles
    for each row execute function statscache_notify_change('user_id');
create or replace trigger statscache_change after insert or update or delete on writer_payments
    for each row execute function statscache_notify_change('writer_id');
create or replace trigger statscache_change after insert or update or delete on website_reviews
    for each row execute function statscache_notify_change('reviewer_id');
create or replace trigger statscache_change after insert or update or delete on writer_reviews
    for each row execute function statscache_notify_change('reviewer_id', 'writer_id');
create or replace trigger statscache_change after insert or update or delete on order_reviews
    for each row execute function statscache_notify_change('reviewer_id');
create or replace trigger statscache_change after insert or update or delete on disputes
    for each row execute function statscache_notify_change('raised_by_id');
create or replace trigger statscache_change after insert or update or delete on refunds
    for each row execute function statscache_notify_change('client_id');
create or replace trigger statscache_change after insert or update or delete on loyalty_tiers
    for each row execute function statscache_notify_change();
create or replace trigger statscache_change after insert or update or delete on loyalty_transactions
    for each row execute function statscache_notify_change('client_id');
create or replace trigger statscache_change after insert or update or delete on reminder_configs
    for each row execute function statscache_notify_change();
create or replace trigger statscache_change after insert or update or delete on sent_reminders
    for each row execute function statscache_notify_change('user_id');
