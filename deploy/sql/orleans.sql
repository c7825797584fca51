-- StatsCache's own PostgreSQL setup for the Orleans ADO.NET providers (Microsoft.Orleans.Clustering.AdoNet
-- and Microsoft.Orleans.Persistence.AdoNet, Invariant "Npgsql"). The packages ship no SQL: they read
-- their statements from OrleansQuery by key and bind named parameters, and this file provides both,
-- written from that contract (see the comment above each statement for what the provider passes
-- and what it reads back).
--
-- Idempotent: tables are CREATE ... IF NOT EXISTS and statements are upserted, so applying it twice
-- (or after an upgrade of this file) is harmless. Names are unquoted: PostgreSQL folds them to
-- lower case, which is what the providers' own unquoted "SELECT QueryKey, QueryText FROM OrleansQuery"
-- expects; Npgsql matches result column names case-insensitively.
--
-- Times are timestamptz: the providers bind DateTime as DbType.DateTime, which Npgsql sends as
-- timestamptz, and Orleans' times are UTC.

set client_min_messages = warning;  -- silence "already exists, skipping" notices on re-runs

-- The statements the providers run, by key.
create table if not exists OrleansQuery (
    QueryKey   text primary key,
    QueryText  text not null
);

-- One row per cluster (DeploymentId = ClusterId): the membership table's version, which every
-- membership change increments (optimistic concurrency between silos).
create table if not exists OrleansMembershipVersionTable (
    DeploymentId  text primary key,
    Version       integer not null default 0,
    ChangedAt     timestamptz not null default now()
);

-- One row per silo incarnation (address, port, generation) of a cluster.
create table if not exists OrleansMembershipTable (
    DeploymentId  text not null references OrleansMembershipVersionTable (DeploymentId) on delete cascade,
    Address       text not null,
    Port          integer not null,
    Generation    integer not null,
    SiloName      text not null,
    HostName      text not null,
    Status        integer not null,          -- Orleans SiloStatus: 3 Active, 4 ShuttingDown, 5 Stopping, 6 Dead
    ProxyPort     integer not null,          -- the gateway port; 0 when the silo has no gateway
    SuspectTimes  text,                      -- "silo,time|silo,time": votes of other silos that this one is dead
    StartTime     timestamptz not null,
    IAmAliveTime  timestamptz not null,
    primary key (DeploymentId, Address, Port, Generation)
);

-- Grain state, one row per (service, grain type, grain id). A grain id is two longs and a string:
-- string-keyed grains (ours) have N0 = N1 = 0 and the key in GrainIdExtensionString; a missing
-- extension is stored as ''. The providers also pass @GrainIdHash and @GrainTypeHash (narrow
-- hashes for databases that index long strings badly); this schema indexes the key itself instead.
-- Version is the grain's ETag: NULL or a missing row means "never written".
create table if not exists OrleansStorage (
    ServiceId               text not null,
    GrainTypeString         text not null,
    GrainIdN0               bigint not null,
    GrainIdN1               bigint not null,
    GrainIdExtensionString  text not null,
    PayloadBinary           bytea,
    Version                 integer,
    ModifiedOn              timestamptz not null default now(),
    primary key (ServiceId, GrainTypeString, GrainIdN0, GrainIdN1, GrainIdExtensionString)
);

insert into OrleansQuery (QueryKey, QueryText) values

-- Membership -------------------------------------------------------------------------------------

-- Creates the cluster's version row if it is missing. Params: @DeploymentId.
-- Returns one row, one boolean column: whether a row was inserted.
('InsertMembershipVersionKey', $q$
with inserted as (
    insert into OrleansMembershipVersionTable (DeploymentId) values (@DeploymentId)
    on conflict (DeploymentId) do nothing
    returning 1
)
select exists (select 1 from inserted)
$q$),

-- Every member of the cluster with the table version. Params: @DeploymentId.
-- Must return at least one row, the version, even with no members (member columns NULL then):
-- the provider reads Version from the first row and treats a NULL StartTime as "no member".
('MembershipReadAllKey', $q$
select v.Version, m.Address, m.Port, m.Generation, m.SiloName, m.HostName, m.Status, m.ProxyPort,
       m.SuspectTimes, m.StartTime, m.IAmAliveTime
from OrleansMembershipVersionTable v
left join OrleansMembershipTable m on m.DeploymentId = v.DeploymentId
where v.DeploymentId = @DeploymentId
$q$),

-- One member with the table version; same shape as MembershipReadAllKey.
-- Params: @DeploymentId, @Address, @Port, @Generation.
('MembershipReadRowKey', $q$
select v.Version, m.Address, m.Port, m.Generation, m.SiloName, m.HostName, m.Status, m.ProxyPort,
       m.SuspectTimes, m.StartTime, m.IAmAliveTime
from OrleansMembershipVersionTable v
left join OrleansMembershipTable m
       on m.DeploymentId = v.DeploymentId and m.Address = @Address and m.Port = @Port and m.Generation = @Generation
where v.DeploymentId = @DeploymentId
$q$),

-- A silo's heartbeat; does not change the table version. Params: @DeploymentId, @Address, @Port,
-- @Generation, @IAmAliveTime. No result.
('UpdateIAmAlivetimeKey', $q$
update OrleansMembershipTable set IAmAliveTime = @IAmAliveTime
where DeploymentId = @DeploymentId and Address = @Address and Port = @Port and Generation = @Generation
$q$),

-- Adds a member if the table is still at @Version (the version the silo read) and the member is not
-- there yet; then the version goes up by one. Params: @DeploymentId, @Address, @Port, @Generation,
-- @SiloName, @HostName, @Status, @ProxyPort, @StartTime, @IAmAliveTime, @Version.
-- Returns one row, one boolean column: whether it was inserted. The version row is locked by the
-- update, so of two silos racing at the same version one wins and the other gets false and retries.
('InsertMembershipKey', $q$
with bumped as (
    update OrleansMembershipVersionTable set Version = Version + 1, ChangedAt = now()
    where DeploymentId = @DeploymentId and Version = @Version
      and not exists (select 1 from OrleansMembershipTable
                      where DeploymentId = @DeploymentId and Address = @Address and Port = @Port and Generation = @Generation)
    returning DeploymentId
), inserted as (
    insert into OrleansMembershipTable
        (DeploymentId, Address, Port, Generation, SiloName, HostName, Status, ProxyPort, StartTime, IAmAliveTime)
    select DeploymentId, @Address, @Port, @Generation, @SiloName, @HostName, @Status, @ProxyPort, @StartTime, @IAmAliveTime
    from bumped
    returning 1
)
select exists (select 1 from inserted)
$q$),

-- Changes a member's status, suspicions and heartbeat if the table is still at @Version; then the
-- version goes up by one. Params: @DeploymentId, @Address, @Port, @Generation, @Status,
-- @SuspectTimes, @IAmAliveTime, @Version. Returns one row, one boolean column: whether it was updated.
('UpdateMembershipKey', $q$
with bumped as (
    update OrleansMembershipVersionTable set Version = Version + 1, ChangedAt = now()
    where DeploymentId = @DeploymentId and Version = @Version
      and exists (select 1 from OrleansMembershipTable
                  where DeploymentId = @DeploymentId and Address = @Address and Port = @Port and Generation = @Generation)
    returning DeploymentId
), updated as (
    update OrleansMembershipTable m
    set Status = @Status, SuspectTimes = @SuspectTimes, IAmAliveTime = @IAmAliveTime
    from bumped b
    where m.DeploymentId = b.DeploymentId and m.Address = @Address and m.Port = @Port and m.Generation = @Generation
    returning 1
)
select exists (select 1 from updated)
$q$),

-- Removes a whole cluster (members go with the version row). Params: @DeploymentId. No result.
('DeleteMembershipTableEntriesKey', $q$
delete from OrleansMembershipVersionTable where DeploymentId = @DeploymentId
$q$),

-- Gateways for clients: active members' proxy endpoints. Params: @DeploymentId, @Status (Active).
-- Returns Address, ProxyPort, Generation per gateway.
('GatewaysQueryKey', $q$
select Address, ProxyPort, Generation
from OrleansMembershipTable
where DeploymentId = @DeploymentId and Status = @Status and ProxyPort > 0
$q$),

-- Fallback cleanup (used only when CleanupDefunctSiloEntryKey is absent): dead members whose last
-- heartbeat is older than @IAmAliveTime. Params: @DeploymentId, @IAmAliveTime. No result.
('CleanupDefunctSiloEntriesKey', $q$
delete from OrleansMembershipTable
where DeploymentId = @DeploymentId and Status = 6 and IAmAliveTime < @IAmAliveTime
$q$),

-- Cleanup of one dead member the provider judged defunct from a read of the table: deleted only if
-- it is still exactly what was read (a member that changed meanwhile stays). Params: @DeploymentId,
-- @Address, @Port, @Generation, @SuspectTimes, @StartTime, @IAmAliveTime. No result.
('CleanupDefunctSiloEntryKey', $q$
delete from OrleansMembershipTable
where DeploymentId = @DeploymentId and Address = @Address and Port = @Port and Generation = @Generation
  and Status = 6 and StartTime = @StartTime and IAmAliveTime = @IAmAliveTime
  and SuspectTimes is not distinct from @SuspectTimes
$q$),

-- Grain storage ------------------------------------------------------------------------------------
-- Every statement gets @ServiceId, @GrainTypeString, @GrainIdN0, @GrainIdN1, @GrainIdExtensionString
-- (NULL for a long or Guid key without extension), @GrainIdHash and @GrainTypeHash.

-- Returns zero or one row: PayloadBinary (NULL after a clear) and Version (the ETag).
('ReadFromStorageKey', $q$
select PayloadBinary, Version
from OrleansStorage
where ServiceId = @ServiceId and GrainTypeString = @GrainTypeString and GrainIdN0 = @GrainIdN0
  and GrainIdN1 = @GrainIdN1 and GrainIdExtensionString = coalesce(@GrainIdExtensionString, '')
$q$),

-- Writes @PayloadBinary if the stored version is still @GrainStateVersion (NULL: never written, so
-- the row must not exist). Returns one row with NewGrainStateVersion on success and no row on a
-- version conflict, which the provider raises as InconsistentStateException.
('WriteToStorageKey', $q$
with inserted as (
    insert into OrleansStorage (ServiceId, GrainTypeString, GrainIdN0, GrainIdN1, GrainIdExtensionString, PayloadBinary, Version)
    select @ServiceId, @GrainTypeString, @GrainIdN0, @GrainIdN1, coalesce(@GrainIdExtensionString, ''), @PayloadBinary, 1
    where @GrainStateVersion is null
    on conflict do nothing
    returning Version
), updated as (
    update OrleansStorage set PayloadBinary = @PayloadBinary, Version = Version + 1, ModifiedOn = now()
    where ServiceId = @ServiceId and GrainTypeString = @GrainTypeString and GrainIdN0 = @GrainIdN0
      and GrainIdN1 = @GrainIdN1 and GrainIdExtensionString = coalesce(@GrainIdExtensionString, '')
      and Version = @GrainStateVersion
    returning Version
)
select Version as NewGrainStateVersion from inserted
union all
select Version from updated
$q$),

-- Clears the state but keeps the row and bumps its version (DeleteStateOnClear = false, the
-- default). Returns the new version; no row on a version conflict.
('ClearStorageKey', $q$
update OrleansStorage set PayloadBinary = null, Version = Version + 1, ModifiedOn = now()
where ServiceId = @ServiceId and GrainTypeString = @GrainTypeString and GrainIdN0 = @GrainIdN0
  and GrainIdN1 = @GrainIdN1 and GrainIdExtensionString = coalesce(@GrainIdExtensionString, '')
  and Version = @GrainStateVersion
returning Version
$q$),

-- Deletes the row (DeleteStateOnClear = true). Returns one value that differs from the grain's
-- ETag on success (the provider only checks that); no row on a version conflict.
('DeleteStorageKey', $q$
delete from OrleansStorage
where ServiceId = @ServiceId and GrainTypeString = @GrainTypeString and GrainIdN0 = @GrainIdN0
  and GrainIdN1 = @GrainIdN1 and GrainIdExtensionString = coalesce(@GrainIdExtensionString, '')
  and Version = @GrainStateVersion
returning Version + 1
$q$)

on conflict (QueryKey) do update set QueryText = excluded.QueryText;
