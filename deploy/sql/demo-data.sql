-- StatsCache demo data generator.
--
--   select generate_demo_data(sites, users_per_site, orders);   -- e.g. (5, 2000, 100000)
--   vacuum analyze;                                             -- recommended, see below
--
-- * Call it on an EMPTY schema only (deploy/sql/schema.sql freshly applied). The caller checks
--   emptiness; the function also refuses (raises) when websites, users or orders has any row.
-- * Set-based (generate_series + INSERT ... SELECT), no row-by-row loops, deterministic:
--   setseed(0.42) fixes every random choice; times are relative to now().
-- * Website ids are 1..sites. User ids are laid out per site: user (s-1)*users_per_site + k,
--   k = 1..n_admin admins, then n_writer writers, then clients (about 2% / 28% / 70%, at least
--   one of each). Orders are 1..orders, spread round-robin over the sites and over the last
--   400 days. Writer levels (4 per site), loyalty tiers (4 per site) and reminder configs
--   (5 per site) get explicit ids too; every identity sequence is moved past the generated ids,
--   so later inserts without an id do not collide.
-- * The function ends with ANALYZE of the tables it filled (ANALYZE may run inside a function;
--   VACUUM may not). A VACUUM afterwards is still worth it: it sets the visibility map, so the
--   dashboards' covering indexes are read by index-only scans.

create or replace function generate_demo_data(sites int, users_per_site int, orders int)
returns void
language plpgsql
as $fn$
declare
    n         constant int := users_per_site;
    n_admin   constant int := greatest(1, round(users_per_site * 0.02)::int);
    n_writer  constant int := greatest(1, round(users_per_site * 0.28)::int);
    n_client  constant int := users_per_site - greatest(1, round(users_per_site * 0.02)::int)
                                             - greatest(1, round(users_per_site * 0.28)::int);
    n_orders  constant int := orders;
    t0        constant timestamptz := now();
    tables    constant regclass[] := array['websites', 'users', 'writer_levels', 'writer_profiles', 'orders',
                  'order_requests', 'website_reviews', 'writer_reviews', 'order_reviews', 'disputes', 'refunds',
                  'loyalty_tiers', 'loyalty_transactions', 'writer_payments', 'reminder_configs',
                  'sent_reminders']::regclass[];
    drops     text[];
    creates   text[];
    stmt      text;
begin
    if sites < 1 or users_per_site < 3 or orders < 0 then
        raise exception 'generate_demo_data: need sites >= 1, users_per_site >= 3, orders >= 0 (got %, %, %)',
            sites, users_per_site, orders;
    end if;
    if exists (select 1 from websites) or exists (select 1 from users) or exists (select 1 from orders) then
        raise exception 'generate_demo_data: the schema is not empty (websites, users or orders has rows)';
    end if;

    perform setseed(0.42);
    perform set_config('synchronous_commit', 'off', true);
    perform set_config('maintenance_work_mem', '256MB', true);

    -- Bulk load: set the foreign keys and secondary indexes of these tables aside and put them
    -- back, identical (same names and definitions), at the end. Re-adding a foreign key checks
    -- it with one join and building an index once is much cheaper than per-row triggers and
    -- per-row index inserts. It all happens in this function's transaction: on any error,
    -- nothing changes.
    select coalesce(array_agg(format('alter table %s drop constraint %I', c.conrelid::regclass, c.conname) order by c.oid), '{}'),
           coalesce(array_agg(format('alter table %s add constraint %I %s', c.conrelid::regclass, c.conname,
                                     pg_get_constraintdef(c.oid)) order by c.oid), '{}')
    into drops, creates
    from pg_constraint c
    where c.contype = 'f' and c.conrelid = any(tables);

    select drops || coalesce(array_agg(format('drop index %s', i.indexrelid::regclass) order by i.indexrelid), '{}'),
           coalesce(array_agg(pg_get_indexdef(i.indexrelid) order by i.indexrelid), '{}') || creates
    into drops, creates
    from pg_index i
    where i.indrelid = any(tables)
      and not exists (select 1 from pg_constraint c where c.conindid = i.indexrelid);

    -- The Notify change feed's triggers, if installed, stay quiet during the load: a
    -- notification per generated row would only refresh caches that cannot exist yet.
    select drops || coalesce(array_agg(format('alter table %s disable trigger %I', t.tgrelid::regclass, t.tgname)), '{}'),
           creates || coalesce(array_agg(format('alter table %s enable trigger %I', t.tgrelid::regclass, t.tgname)), '{}')
    into drops, creates
    from pg_trigger t
    where t.tgrelid = any(tables) and not t.tgisinternal;

    foreach stmt in array drops loop
        execute stmt;
    end loop;

    -- Websites 1..sites.
    insert into websites (id, name, domain, created_at)
    select s, 'Demo Site ' || s, 'site' || s || '.example.com', t0 - interval '800 days'
    from generate_series(1, sites) s;

    -- Users: admins, then writers, then clients, per site.
    insert into users (id, website_id, role, username, email, is_active, date_joined)
    select u.id, u.s, u.role, u.role || '_' || u.s || '_' || u.k, u.role || '_' || u.k || '@site' || u.s || '.example.com',
           u.role = 'admin' or random() < 0.95,
           t0 - interval '401 days' - random() * interval '365 days'
    from (
        select (s - 1)::bigint * n + k as id, s, k,
               case when k <= n_admin then 'admin'
                    when k <= n_admin + n_writer then 'writer'
                    else 'client' end as role
        from generate_series(1, sites) s, generate_series(1, n) k
    ) u
    order by u.id;

    -- Writer levels, 4 per site: id (s-1)*4 + rank.
    insert into writer_levels (id, website_id, name, rank, rate_per_page, min_completed_orders)
    select (s - 1) * 4 + l.rank, s, l.name, l.rank, l.rate, l.min_completed
    from generate_series(1, sites) s,
         (values (1, 'Beginner', 6.00, 0), (2, 'Intermediate', 8.00, 10),
                 (3, 'Advanced', 10.50, 50), (4, 'Expert', 13.00, 150)) l(rank, name, rate, min_completed)
    order by 1;

    -- One profile per writer; levels 40% / 30% / 20% / 10%.
    insert into writer_profiles (user_id, website_id, level_id)
    select u.id, u.website_id,
           (u.website_id - 1) * 4 + (array[1,1,1,1,2,2,2,3,3,4])[1 + floor(random() * 10)::int]
    from users u where u.role = 'writer'
    order by u.id;

    -- Orders. Status depends on age: recent orders are still moving, old ones mostly completed.
    insert into orders (id, website_id, client_id, writer_id, status, price, pages, writer_level_id,
                        is_paid, created_at, deadline, completed_at, submitted_at, revision_count)
    select o.id, o.site, o.client_id,
           case when o.status in ('pending', 'available') or (o.status = 'cancelled' and o.r_rev < 0.5)
                then null else o.writer_id end,
           o.status, round(o.pages * o.ppp, 2), o.pages, o.level_id,
           o.status not in ('pending', 'cancelled'),
           o.created_at, o.deadline,
           case when o.status = 'completed'
                then o.submitted_at + least(interval '3 days', t0 - o.submitted_at) * o.r_comp end,
           o.submitted_at,
           case o.status when 'revision' then 1 + floor(o.r_rev * 3)::int
                         when 'completed' then case when o.r_rev < 0.15 then 1 + floor(o.r_rev * 13)::int else 0 end
                         when 'disputed' then floor(o.r_rev * 3)::int
                         else 0 end
    from (
        select b.*,
               case when b.status in ('submitted', 'revision', 'completed', 'disputed', 'refunded')
                    then b.created_at + (least(b.deadline, t0) - b.created_at) * (0.3 + 0.7 * b.r_sub) end as submitted_at
        from (
            select a.*,
                   case when a.created_at > t0 - interval '14 days' then
                            case when a.r_status < 0.10 then 'pending'
                                 when a.r_status < 0.25 then 'available'
                                 when a.r_status < 0.60 then 'in_progress'
                                 when a.r_status < 0.75 then 'submitted'
                                 when a.r_status < 0.80 then 'revision'
                                 when a.r_status < 0.96 then 'completed'
                                 when a.r_status < 0.97 then 'disputed'
                                 else 'cancelled' end
                        when a.created_at > t0 - interval '60 days' then
                            case when a.r_status < 0.05 then 'cancelled'
                                 when a.r_status < 0.07 then 'refunded'
                                 when a.r_status < 0.10 then 'disputed'
                                 when a.r_status < 0.12 then 'revision'
                                 when a.r_status < 0.14 then 'submitted'
                                 when a.r_status < 0.16 then 'in_progress'
                                 else 'completed' end
                        else
                            case when a.r_status < 0.05 then 'cancelled'
                                 when a.r_status < 0.07 then 'refunded'
                                 when a.r_status < 0.08 then 'disputed'
                                 else 'completed' end
                   end as status,
                   a.created_at + (1 + floor(a.r_dl * 14)) * interval '1 day' as deadline
            from (
                select i::bigint as id, s.site,
                       -- clients: skewed, a few clients order a lot
                       (s.site - 1)::bigint * n + n_admin + n_writer + 1 + floor(power(random(), 2) * n_client)::bigint as client_id,
                       (s.site - 1)::bigint * n + n_admin + 1 + floor(power(random(), 1.5) * n_writer)::bigint as writer_id,
                       1 + floor(power(random(), 2) * 20)::int as pages,
                       (12 + random() * 18)::numeric as ppp,
                       case when random() < 0.5 then null
                            else (s.site - 1) * 4 + 1 + floor(random() * 4)::bigint end as level_id,
                       random() as r_status, random() as r_dl, random() as r_sub, random() as r_comp, random() as r_rev,
                       t0 - power(random(), 1.2) * interval '400 days' as created_at  -- slowly growing business
                from generate_series(1, n_orders) i
                cross join lateral (select ((i - 1) % sites) + 1 as site) s
                offset 0
            ) a
            offset 0
        ) b
        offset 0
    ) o;

    -- Order requests: the accepted request of a third of the assigned orders, some rejected ones,
    -- and 1-3 pending requests on every available order.
    insert into order_requests (website_id, order_id, writer_id, status, created_at)
    select o.website_id, o.id, o.writer_id, 'accepted', o.created_at + random() * interval '6 hours'
    from orders o where o.writer_id is not null and o.id % 3 = 0
    union all
    select o.website_id, o.id,
           (o.website_id - 1) * n + n_admin + 1 + floor(random() * n_writer)::bigint,
           'rejected', o.created_at + random() * interval '6 hours'
    from orders o where o.writer_id is not null and o.id % 9 = 0
    union all
    select o.website_id, o.id,
           (o.website_id - 1) * n + n_admin + 1 + floor(random() * n_writer)::bigint,
           'pending', o.created_at + random() * (t0 - o.created_at)
    from orders o cross join generate_series(1, 1 + (o.id % 3)::int) g
    where o.status = 'available';

    -- Order reviews by the client on ~30% of completed orders; writer reviews on ~25%.
    insert into order_reviews (website_id, reviewer_id, order_id, rating, is_approved, is_flagged, created_at)
    select o.website_id, o.client_id, o.id,
           (array[5,5,5,5,5,5,5,5,5,5,4,4,4,4,4,4,3,3,2,1])[1 + floor(random() * 20)::int],
           random() < 0.85, random() < 0.03,
           o.completed_at + least(interval '2 days', t0 - o.completed_at) * random()
    from orders o where o.status = 'completed' and o.id % 10 < 3;

    insert into writer_reviews (website_id, reviewer_id, writer_id, order_id, rating, is_approved, is_flagged, created_at)
    select o.website_id, o.client_id, o.writer_id, o.id,
           (array[5,5,5,5,5,5,5,5,5,4,4,4,4,4,4,3,3,3,2,1])[1 + floor(random() * 20)::int],
           random() < 0.85, random() < 0.03,
           o.completed_at + least(interval '2 days', t0 - o.completed_at) * random()
    from orders o where o.status = 'completed' and o.id % 4 = 1;

    -- Website reviews by ~5% of clients and writers.
    insert into website_reviews (website_id, reviewer_id, rating, is_approved, is_flagged, created_at)
    select u.website_id, u.id,
           (array[5,5,5,5,5,5,5,5,4,4,4,4,4,4,3,3,3,2,2,1])[1 + floor(random() * 20)::int],
           random() < 0.85, random() < 0.03,
           t0 - random() * interval '400 days'
    from users u where u.role in ('client', 'writer') and u.id % 20 = 7;

    -- Disputes (~3% of orders): every disputed order (open / in review), half the refunded
    -- orders and ~1% of completed orders (resolved / closed). Raised by the client, sometimes the writer.
    insert into disputes (website_id, order_id, raised_by_id, status, created_at, resolved_at)
    select d.website_id, d.order_id, d.raised_by_id, d.status, d.created_at,
           case when d.status in ('resolved', 'closed')
                then d.created_at + least(interval '10 days', t0 - d.created_at) * random() end
    from (
        select o.website_id, o.id as order_id,
               case when o.writer_id is not null and random() < 0.2 then o.writer_id else o.client_id end as raised_by_id,
               case when o.status = 'disputed' then case when random() < 0.6 then 'open' else 'in_review' end
                    else case when random() < 0.7 then 'resolved' else 'closed' end end as status,
               coalesce(o.submitted_at, o.created_at)
                   + least(interval '2 days', t0 - coalesce(o.submitted_at, o.created_at)) * random() as created_at
        from orders o
        where o.status = 'disputed'
           or (o.status = 'refunded' and o.id % 2 = 0)
           or (o.status = 'completed' and o.id % 100 = 3)
        offset 0
    ) d;

    -- Refunds (~2-3% of orders): every refunded order (processed, some still approved), pending
    -- refunds on a third of the disputed orders, rejected ones on ~0.5% of completed orders.
    insert into refunds (website_id, order_id, client_id, amount, status, created_at, processed_at)
    select r.website_id, r.order_id, r.client_id, r.amount, r.status, r.created_at,
           case when r.status = 'processed' then r.created_at + least(interval '5 days', t0 - r.created_at) * random() end
    from (
        select o.website_id, o.id as order_id, o.client_id,
               case when random() < 0.25 then round(o.price / 2, 2) else o.price end as amount,
               case when o.status = 'refunded' then case when random() < 0.9 then 'processed' else 'approved' end
                    when o.status = 'disputed' then 'pending'
                    else 'rejected' end as status,
               coalesce(o.submitted_at, o.created_at)
                   + least(interval '3 days', t0 - coalesce(o.submitted_at, o.created_at)) * random() as created_at
        from orders o
        where o.status = 'refunded'
           or (o.status = 'disputed' and o.id % 3 = 0)
           or (o.status = 'completed' and o.id % 200 = 11)
        offset 0
    ) r;

    -- Loyalty tiers, 4 per site: id (s-1)*4 + k.
    insert into loyalty_tiers (id, website_id, name, min_points)
    select (s - 1) * 4 + t.k, s, t.name, t.min_points
    from generate_series(1, sites) s,
         (values (1, 'Bronze', 0), (2, 'Silver', 500), (3, 'Gold', 2000), (4, 'Platinum', 5000)) t(k, name, min_points)
    order by 1;

    -- Loyalty: 1 point per currency unit of every completed order, then redemptions by ~30% of
    -- clients holding 500+ points, expiries and a few manual adjustments. Balances stay >= 0.
    insert into loyalty_transactions (website_id, client_id, points, transaction_type, created_at)
    select o.website_id, o.client_id, floor(o.price)::int, 'earned', o.completed_at
    from orders o where o.status = 'completed';

    insert into loyalty_transactions (website_id, client_id, points, transaction_type, created_at)
    select b.website_id, b.client_id,
           case when b.client_id % 10 < 3 then -(floor(b.balance / 200) * 100)::int   -- redeem ~half
                when b.client_id % 10 = 3 then -(floor(b.balance / 1000) * 100)::int  -- ~10% expires
                else 50 end,
           case when b.client_id % 10 < 3 then 'redeemed'
                when b.client_id % 10 = 3 then 'expired'
                else 'adjusted' end,
           b.last_at + least(interval '7 days', t0 - b.last_at) * random()
    from (
        select website_id, client_id, sum(points) as balance, max(created_at) as last_at
        from loyalty_transactions group by website_id, client_id
    ) b
    where (b.client_id % 10 < 3 and b.balance >= 500)
       or (b.client_id % 10 = 3 and b.balance >= 1000)
       or b.client_id % 50 = 9;

    -- Writer payments: one per completed order at the writer's level rate; paid 7-14 days after
    -- completion when that is in the past, pending otherwise; ~1% cancelled. Plus ~5% bonuses.
    insert into writer_payments (website_id, writer_id, order_id, amount, status, created_at, paid_at)
    select p.website_id, p.writer_id, p.order_id, p.amount, p.status, p.created_at,
           case when p.status = 'paid' then p.pay_at end
    from (
        select o.website_id, o.writer_id, o.id as order_id,
               round(o.pages * wl.rate_per_page, 2) as amount,
               case when o.id % 100 = 7 then 'cancelled'
                    when o.completed_at + interval '7 days' + x.d < t0 then 'paid'
                    else 'pending' end as status,
               o.completed_at as created_at,
               o.completed_at + interval '7 days' + x.d as pay_at
        from orders o
        join writer_profiles wp on wp.user_id = o.writer_id
        join writer_levels wl on wl.id = wp.level_id
        cross join lateral (select random() * interval '7 days' as d) x
        where o.status = 'completed'
        union all
        select o.website_id, o.writer_id, null, round((5 + random() * 20)::numeric, 2),
               case when o.completed_at + interval '14 days' < t0 then 'paid' else 'pending' end,
               o.completed_at + interval '1 day', o.completed_at + interval '14 days'
        from orders o
        where o.status = 'completed' and o.id % 20 = 13
        offset 0
    ) p;

    -- Reminder configs, 5 per site (one inactive): id (s-1)*5 + k.
    insert into reminder_configs (id, website_id, name, is_active, created_at)
    select (s - 1) * 5 + c.k, s, c.name, c.k <> 5, t0 - interval '500 days'
    from generate_series(1, sites) s,
         (values (1, 'Deadline approaching'), (2, 'Payment due'), (3, 'Review your order'),
                 (4, 'We miss you'), (5, 'Writer availability')) c(k, name)
    order by 1;

    -- Sent reminders: ~10% of orders got one (deadline reminder to the writer, payment reminder
    -- to the client of unpaid orders, review request to the client of completed ones).
    insert into sent_reminders (website_id, config_id, user_id, sent_at)
    select o.website_id,
           (o.website_id - 1) * 5 + case when o.status = 'completed' then 3
                                         when not o.is_paid then 2
                                         when o.writer_id is not null then 1
                                         else 2 end,
           case when o.writer_id is not null and o.status <> 'completed' then o.writer_id else o.client_id end,
           o.created_at + (least(o.deadline, t0) - o.created_at) * random()
    from orders o where o.id % 10 = 5;

    -- Move every identity sequence past the ids generated above.
    perform setval(pg_get_serial_sequence(t, 'id'), m + 1, false)
    from (values ('websites',             (select coalesce(max(id), 0) from websites)),
                 ('users',                (select coalesce(max(id), 0) from users)),
                 ('writer_levels',        (select coalesce(max(id), 0) from writer_levels)),
                 ('orders',               (select coalesce(max(id), 0) from orders)),
                 ('loyalty_tiers',        (select coalesce(max(id), 0) from loyalty_tiers)),
                 ('reminder_configs',     (select coalesce(max(id), 0) from reminder_configs))) v(t, m);

    -- Put the indexes and foreign keys back.
    foreach stmt in array creates loop
        execute stmt;
    end loop;

    analyze websites, users, writer_levels, writer_profiles, orders, order_requests,
            website_reviews, writer_reviews, order_reviews, disputes, refunds,
            loyalty_tiers, loyalty_transactions, writer_payments, reminder_configs, sent_reminders;
end;
$fn$;
