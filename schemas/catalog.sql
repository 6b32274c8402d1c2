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
INSERT INTO shardline.schema_version (version) VALUES (1) ON CONFLICT (singleton) DO NOTHING;

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
REVOKE ALL ON shardline.routers FROM PUBLIC;
