-- The shardline control catalog: the schema `shardline` in the control database. It is the
-- production source of truth for the shard map: one row per published map version (its full
-- TOML text), a pointer to the current version, an audit trail of every change (who, when,
-- why), and the registry of live routers. Applied by `shardline catalog init --catalog DSN`,
-- which embeds this file in the binary; running it again changes nothing (every statement is
-- idempotent). Do not edit a deployed catalog by hand: `shardline map publish` / `map revert`
-- insert a version, move the pointer, write the audit row and NOTIFY routers in one
-- transaction, and routers trust that.
--
-- Privileges: map_versions.content holds the nodes' connection strings WITH their passwords
-- (routers must be able to connect with what they read). Nothing here is granted to PUBLIC.
-- Give routers a role of their own with only what they need, e.g.
--   GRANT USAGE ON SCHEMA shardline TO app_router;
--   GRANT SELECT ON shardline.map_versions, shardline.current_map TO app_router;
--   GRANT SELECT, INSERT, UPDATE, DELETE ON shardline.routers TO app_router;
-- and give DBAs (who run the CLI) ownership or full rights.
--
-- Changing this file: bump the version in shardline.schema_version below and in
-- migrate/catalog.cc (kCatalogSchemaVersion), and keep every statement idempotent. Never write
-- the character sequence that closes the C++ raw string this file is embedded in (the build
-- checks: see migrate/CMakeLists.txt).

CREATE SCHEMA IF NOT EXISTS shardline;
REVOKE ALL ON SCHEMA shardline FROM PUBLIC;

-- The catalog's own schema version (one row), for future migrations of this file.
CREATE TABLE IF NOT EXISTS shardline.schema_version (
  singleton  boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
  version    integer     NOT NULL CHECK (version > 0),
  applied_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO shardline.schema_version (version) VALUES (3) ON CONFLICT (singleton) DO NOTHING;
-- Version 2: rollouts' one-way states (cleaning, rolling_back, aborting), at most one active
-- migration (a partial unique index), the map version a migration published last.
-- Version 3: routers' worker-id leases (shardline.routers.lease_ms).
UPDATE shardline.schema_version SET version = 3, applied_at = now() WHERE version < 3;

-- Every published map version. `content` is the complete map as TOML (docs/map-format.md),
-- passwords included: it is the source of truth that routers load. Rows are never updated or
-- deleted; a revert inserts a new version with an older version's content.
CREATE TABLE IF NOT EXISTS shardline.map_versions (
  version       bigint      PRIMARY KEY CHECK (version > 0),
  content       text        NOT NULL,
  key_type      text        NOT NULL CHECK (key_type IN ('bigint', 'text', 'uuid')),
  created_at    timestamptz NOT NULL DEFAULT now(),
  created_by    text        NOT NULL DEFAULT current_user,  -- database role that published
  os_user       text,                                       -- as reported by the client
  comment       text,
  reverted_from bigint      REFERENCES shardline.map_versions (version)
);
REVOKE ALL ON shardline.map_versions FROM PUBLIC;

-- The current version: exactly one row (the CHECK on `singleton`). NULL until the first
-- publish. Publishers lock this row (SELECT ... FOR UPDATE), so concurrent publishes are
-- serialised and the second one sees the first one's version.
CREATE TABLE IF NOT EXISTS shardline.current_map (
  singleton  boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
  version    bigint      REFERENCES shardline.map_versions (version),
  updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO shardline.current_map (version) VALUES (NULL) ON CONFLICT (singleton) DO NOTHING;
REVOKE ALL ON shardline.current_map FROM PUBLIC;

-- The audit trail: one row per change of the catalog, in order.
CREATE TABLE IF NOT EXISTS shardline.audit_log (
  id       bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  at       timestamptz NOT NULL DEFAULT now(),
  db_user  text        NOT NULL DEFAULT current_user,  -- database role
  os_user  text,                                       -- as reported by the client
  action   text        NOT NULL CHECK (action IN ('init', 'publish', 'revert')),
  version  bigint,                                     -- the version published (NULL for init)
  comment  text
);
REVOKE ALL ON shardline.audit_log FROM PUBLIC;

-- Live routers (router/registry.h): each keeps a row and heartbeats it, so the migration tool
-- can wait until every live router has applied a map version, and routers get distinct
-- id-generator worker ids (the UNIQUE constraint makes two routers that register at once
-- collide; the loser picks again).
CREATE TABLE IF NOT EXISTS shardline.routers (
  router_id      text        PRIMARY KEY,
  host           text        NOT NULL,
  pid            integer     NOT NULL,
  worker_id      integer     UNIQUE CHECK (worker_id BETWEEN 0 AND 1023),
  map_version    bigint      NOT NULL DEFAULT 0,
  started_at     timestamptz NOT NULL DEFAULT now(),
  last_heartbeat timestamptz NOT NULL DEFAULT now()
);
-- How long the row holds its worker id without a heartbeat (RouterOptions::worker_id_lease):
-- past last_heartbeat + lease_ms the row is expired and the next router to register deletes
-- it. NULL for routers older than leases (60 s).
ALTER TABLE shardline.routers ADD COLUMN IF NOT EXISTS lease_ms integer CHECK (lease_ms > 0);
REVOKE ALL ON shardline.routers FROM PUBLIC;

-- Rollouts (migrate/rollout.h, `shardline rollout`): the state machine of each online move,
-- persisted so that a killed command run again continues where it stopped. A migration is a
-- plan (its full TOML, passwords included, like map_versions.content) cut into waves; each
-- wave goes pending -> catching_up -> verified -> reads_switched -> writes_switched, and the
-- migration ends as cleaned, rolled_back or aborted. Every step is logged in migration_steps
-- before it acts (finished_at NULL) and after (finished_at, outcome).
-- The destructive endings are one-way: `cleaning`, `rolling_back` and `aborting` are recorded
-- (in the transaction that decides them) before the first destructive action, and from then
-- on only the same command, run again, may continue the migration.
CREATE TABLE IF NOT EXISTS shardline.migrations (
  id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  -- Random, names the migration's replication objects on the nodes (with the id): slot names
  -- are per server, and two catalogs may number their migrations alike.
  tag            text        NOT NULL DEFAULT substr(md5(random()::text || clock_timestamp()::text), 1, 8),
  state          text        NOT NULL DEFAULT 'running',
  plan_toml      text        NOT NULL,
  base_version   bigint      NOT NULL,   -- the catalog map version the plan was made from
  wave_percents  text        NOT NULL,   -- e.g. '1,10,50,100' (cumulative shares of bytes)
  soak_seconds   double precision NOT NULL DEFAULT 0,
  created_at     timestamptz NOT NULL DEFAULT now(),
  updated_at     timestamptz NOT NULL DEFAULT now(),
  created_by     text        NOT NULL DEFAULT current_user,
  os_user        text,
  last_error     text,                   -- the last failure (a gate, a timeout); NULL when none
  finished_at    timestamptz
);
REVOKE ALL ON shardline.migrations FROM PUBLIC;
-- The map version this migration published last (base_version until its first publish): a
-- publish of the migration refuses when the current map is another (someone published in
-- between).
ALTER TABLE shardline.migrations ADD COLUMN IF NOT EXISTS published_version bigint;
ALTER TABLE shardline.migrations DROP CONSTRAINT IF EXISTS migrations_state_check;
ALTER TABLE shardline.migrations ADD CONSTRAINT migrations_state_check
  CHECK (state IN ('running', 'cleaning', 'rolling_back', 'aborting', 'cleaned', 'rolled_back',
                   'aborted'));
-- At most one active migration per catalog, enforced here rather than by a SELECT that two
-- `rollout start` can pass at once.
CREATE UNIQUE INDEX IF NOT EXISTS migrations_one_active ON shardline.migrations ((true))
  WHERE state IN ('running', 'cleaning', 'rolling_back', 'aborting');

CREATE TABLE IF NOT EXISTS shardline.migration_waves (
  migration_id    bigint      NOT NULL REFERENCES shardline.migrations (id),
  wave            integer     NOT NULL CHECK (wave >= 1),
  step            text        NOT NULL DEFAULT 'pending'
                    CHECK (step IN ('pending', 'catching_up', 'verified', 'reads_switched',
                                    'writes_switched')),
  share_percent   double precision NOT NULL,  -- cumulative share of bytes after this wave
  started_at      timestamptz,               -- catch-up began
  verified_at     timestamptz,
  reads_at        timestamptz,
  fenced_at       timestamptz,               -- recorded just before the fence
  writes_at       timestamptz,               -- the owner map was published
  soak_until      timestamptz,
  rows_verified   bigint,                    -- source rows compared by the gate
  verify_clean    boolean,
  verify_summary  text,
  gate_pause_ms   double precision,          -- how long the gate paused writers
  write_window_ms double precision,          -- fence -> owner map published
  fence_lsn       text,
  reads_version   bigint,                    -- map versions published by this wave
  writes_version  bigint,
  PRIMARY KEY (migration_id, wave)
);
REVOKE ALL ON shardline.migration_waves FROM PUBLIC;

CREATE TABLE IF NOT EXISTS shardline.migration_ranges (
  migration_id bigint NOT NULL REFERENCES shardline.migrations (id),
  wave         integer NOT NULL,
  lo           bigint NOT NULL,
  hi           bigint NOT NULL,
  source       text   NOT NULL,
  target       text   NOT NULL,
  est_rows     bigint NOT NULL DEFAULT 0,
  est_bytes    bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (migration_id, lo)
);
REVOKE ALL ON shardline.migration_ranges FROM PUBLIC;

CREATE TABLE IF NOT EXISTS shardline.migration_steps (
  id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  migration_id bigint      NOT NULL REFERENCES shardline.migrations (id),
  wave         integer     NOT NULL DEFAULT 0,   -- 0 = the whole migration
  step         text        NOT NULL,
  started_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
  finished_at  timestamptz,
  outcome      text        CHECK (outcome IN ('ok', 'failed')),
  detail       text
);
REVOKE ALL ON shardline.migration_steps FROM PUBLIC;

-- Backfill checkpoints (migrate/backfill_checkpoint.h, `shardline backfill --catalog`): per job
-- (source, target, table, ranges) the last primary key copied, as the binary values of the key
-- columns framed by length, written after each batch committed on the target. A resumed backfill
-- first deletes the target's rows above last_key (a batch whose checkpoint did not commit).
CREATE TABLE IF NOT EXISTS shardline.backfill_checkpoints (
  source_node text        NOT NULL,
  target_node text        NOT NULL,
  table_name  text        NOT NULL,
  ranges      text        NOT NULL,   -- "lo:hi[,lo:hi...]"
  last_key    bytea,                  -- NULL: started, no batch yet
  rows_copied bigint      NOT NULL DEFAULT 0,
  batches     bigint      NOT NULL DEFAULT 0,
  done        boolean     NOT NULL DEFAULT false,
  started_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (source_node, target_node, table_name, ranges)
);
REVOKE ALL ON shardline.backfill_checkpoints FROM PUBLIC;
