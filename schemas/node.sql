-- Per-node objects of shardline, installed on every data node (idempotent: safe to run again).
--
-- The fence: while a rollout switches writes for some hash ranges from this node (the source)
-- to another, the ranges are listed in shardline.fenced_ranges and a BEFORE ROW trigger on each
-- sharded table rejects application writes whose shard key hashes into a fenced range, with
-- SQLSTATE 'SLF01' (shardline/errors.h kFencedSqlState). Routers react by refreshing their map
-- and retrying once on the new owner. Logical replication apply workers do not fire ordinary
-- triggers (session_replication_role = replica), so reverse replication into a fenced source
-- still writes through.
--
-- The trigger function is generated per table with its key column named, e.g.
--   SELECT shardline.install_fence('public.workouts', 'user_id', 'bigint');
-- creates shardline.fence_<oid of public.workouts>() and
--   CREATE TRIGGER shardline_fence BEFORE INSERT OR UPDATE OR DELETE ON public.workouts
--     FOR EACH ROW EXECUTE FUNCTION shardline.fence_<oid>();
--
-- Marks belong to the migration that made them (lock_key, from the migration's tag). They
-- outlive the move: after a rollout's cleanup (or a rollback) the node that gave a range away
-- keeps a 'fence' mark on it, so a router on an older map (a file, an unregistered process, a
-- borrowed session) is refused with SLF01 and re-routes instead of writing into the void. A
-- mark is lifted only when its range comes back (shardline.lift_fence, by the migration that
-- brings it back), or by hand.
--
-- Besides the row trigger, a statement trigger (shardline_fence_stmt, shardline.fence_statement)
-- runs once per INSERT, UPDATE, DELETE and TRUNCATE of a fenced table and refuses, whatever
-- rows the statement would touch:
-- - a statement routed on a map older than the table's map epoch on this node (routers send
--   their map version as the session setting shardline.map_version; the rollout raises the
--   epoch, shardline.map_epochs, to the version of each map that moves ranges of the table to
--   or from this node): SLF02 (shardline/errors.h kStaleMapSqlState). An UPDATE or DELETE of a moved key whose row cleanup deleted
--   would otherwise affect 0 rows and be acknowledged. Writers that send no version (psql,
--   jobs) keep the row-level protection only;
-- - a write of a REPEATABLE READ or SERIALIZABLE transaction whose snapshot predates a change of
--   this node's marks: 40001. Its snapshot cannot see the fence, so the row trigger would let
--   it pass; the fence epoch is a sequence (no snapshot hides it) bumped by every change of
--   the marks, next to a row that only snapshots taken after the change see;
-- - TRUNCATE of a table with marks (a range moving or given away): SLF01.
-- Every role may read the marks and epochs (USAGE and SELECT for PUBLIC): the triggers run as
-- the writer, so a service's own, less privileged role works before, during and after a move.
-- Why not SECURITY DEFINER: a definer function with a pinned search_path costs a GUC save and
-- restore per call, and the row trigger runs once per written row; nothing here is secret.

CREATE SCHEMA IF NOT EXISTS shardline;

-- The version of these objects: a rollout re-applies this file (and re-installs the fence
-- triggers) on a node whose version is older. Bump it with every change here.
CREATE OR REPLACE FUNCTION shardline.node_schema_version() RETURNS integer
LANGUAGE sql IMMUTABLE AS 'SELECT 3';

-- Fenced hash ranges per table. table_name is the table as the map names it: either
-- schema-qualified ('public.workouts') or bare ('workouts'); the trigger matches both.
CREATE TABLE IF NOT EXISTS shardline.fenced_ranges (
  table_name text        NOT NULL,
  lo         bigint      NOT NULL,
  hi         bigint      NOT NULL,
  fenced_at  timestamptz NOT NULL DEFAULT now(),
  reason     text,
  PRIMARY KEY (table_name, lo, hi),
  CHECK (lo <= hi)
);
-- A rollout first marks the ranges it moves as 'moving' (writers still pass, but each write
-- into such a range takes pg_advisory_xact_lock_shared(lock_key), so the rollout can pause
-- them for milliseconds by holding the exclusive lock: its consistency gate and its fence wait
-- for in-flight writers that way), then as 'fence' (writers are rejected with SLF01).
ALTER TABLE shardline.fenced_ranges ADD COLUMN IF NOT EXISTS mode text NOT NULL DEFAULT 'fence';
ALTER TABLE shardline.fenced_ranges ADD COLUMN IF NOT EXISTS lock_key bigint;
DO $do$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_constraint
                 WHERE conname = 'fenced_ranges_mode_check'
                   AND conrelid = 'shardline.fenced_ranges'::regclass) THEN
    ALTER TABLE shardline.fenced_ranges ADD CONSTRAINT fenced_ranges_mode_check
      CHECK (mode IN ('fence', 'moving') AND (mode = 'fence' OR lock_key IS NOT NULL));
  END IF;
END
$do$;

-- The marks and the epochs are readable by every role that may write a sharded table (the
-- fence triggers run as the writer).
GRANT USAGE ON SCHEMA shardline TO PUBLIC;
GRANT SELECT ON shardline.fenced_ranges TO PUBLIC;

-- The fence epoch: the sequence is bumped by every change of the marks (a statement trigger on
-- fenced_ranges), inside that change's transaction, and the row takes the new value in the same
-- transaction. A sequence is not transactional: every session sees its latest value, while only
-- snapshots taken after the change see the row's. A REPEATABLE READ or SERIALIZABLE writer
-- whose row is behind the sequence holds a snapshot older than a change of the marks.
CREATE SEQUENCE IF NOT EXISTS shardline.fence_epoch_seq;
CREATE TABLE IF NOT EXISTS shardline.fence_epoch (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  epoch     bigint  NOT NULL
);
INSERT INTO shardline.fence_epoch (singleton, epoch)
  SELECT true, CASE WHEN is_called THEN last_value ELSE 0 END FROM shardline.fence_epoch_seq
  ON CONFLICT (singleton) DO NOTHING;
GRANT SELECT ON shardline.fence_epoch_seq, shardline.fence_epoch TO PUBLIC;

CREATE OR REPLACE FUNCTION shardline.bump_fence_epoch() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
  UPDATE shardline.fence_epoch SET epoch = pg_catalog.nextval('shardline.fence_epoch_seq');
  RETURN NULL;
END
$fn$;
DO $do$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'shardline_bump_epoch'
                   AND tgrelid = 'shardline.fenced_ranges'::regclass) THEN
    CREATE TRIGGER shardline_bump_epoch AFTER INSERT OR UPDATE ON shardline.fenced_ranges
      FOR EACH STATEMENT EXECUTE FUNCTION shardline.bump_fence_epoch();
  END IF;
END
$do$;

-- Map epochs: a statement of a table routed with a map version below min_version is refused
-- (shardline.fence_statement). table_name as the map names it, like fenced_ranges.
CREATE TABLE IF NOT EXISTS shardline.map_epochs (
  table_name  text        PRIMARY KEY,
  min_version bigint      NOT NULL,
  set_at      timestamptz NOT NULL DEFAULT now(),
  reason      text
);
GRANT SELECT ON shardline.map_epochs TO PUBLIC;

-- Raises the map epoch of `tbl` to `version` (never lowers it).
CREATE OR REPLACE FUNCTION shardline.raise_map_epoch(tbl text, version bigint, why text)
RETURNS void LANGUAGE sql AS $fn$
  INSERT INTO shardline.map_epochs AS e (table_name, min_version, reason)
    VALUES (tbl, version, why)
  ON CONFLICT (table_name) DO UPDATE
    SET min_version = EXCLUDED.min_version, set_at = now(), reason = EXCLUDED.reason
    WHERE e.min_version < EXCLUDED.min_version;
$fn$;

-- The check a router's fan-out runs on each node for `$owned(col)` (router/fanout.cc): true,
-- or SLF01 when map version `v` is older than any map epoch of this node (the node gave away or
-- took ranges since: a fan-out on that map would count rows twice or miss them). STABLE and
-- without column references, so the planner evaluates it once, as a one-time filter, before
-- reading any row.
CREATE OR REPLACE FUNCTION shardline.map_version_ok(v bigint) RETURNS boolean
LANGUAGE plpgsql STABLE AS $fn$
DECLARE
  e record;
BEGIN
  SELECT me.table_name, me.min_version INTO e FROM shardline.map_epochs me
    ORDER BY me.min_version DESC LIMIT 1;
  IF FOUND AND v < e.min_version THEN
    RAISE EXCEPTION USING
      ERRCODE = 'SLF02',
      MESSAGE = pg_catalog.format('fan-out on shard map version %s refused: this node''s ranges '
                                  'changed at map version %s (table %s)', v, e.min_version,
                                  e.table_name),
      HINT = 'Refresh the shard map and run the fan-out again.';
  END IF;
  RETURN true;
END
$fn$;

-- The statement trigger of every fenced table (see the top of this file): map version, old
-- snapshots, TRUNCATE. Once per statement, not per row.
CREATE OR REPLACE FUNCTION shardline.fence_statement() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
  qualified text := TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME;
  v text := pg_catalog.current_setting('shardline.map_version', true);
  need bigint;
  seq_epoch bigint;
  seen_epoch bigint;
BEGIN
  IF v IS NOT NULL AND v <> '' THEN
    SELECT max(e.min_version) INTO need FROM shardline.map_epochs e
      WHERE e.table_name IN (qualified, TG_TABLE_NAME);
    IF need IS NOT NULL AND v::bigint < need THEN
      RAISE EXCEPTION USING
        ERRCODE = 'SLF02',
        MESSAGE = pg_catalog.format('%s on %s refused: routed on shard map version %s, but '
                                    'ranges of the table moved to or from this node at map '
                                    'version %s', TG_OP, qualified, v, need),
        HINT = 'Refresh the shard map and retry on the owner it names.';
    END IF;
  END IF;
  IF TG_OP = 'TRUNCATE' AND EXISTS (SELECT 1 FROM shardline.fenced_ranges fr
                                    WHERE fr.table_name IN (qualified, TG_TABLE_NAME)) THEN
    RAISE EXCEPTION USING
      ERRCODE = 'SLF01',
      MESSAGE = pg_catalog.format('TRUNCATE of %s refused: ranges of it are moving or were '
                                  'moved away from this node (shardline.fenced_ranges)',
                                  qualified),
      HINT = 'Delete the rows of the ranges this node owns instead; or, once no migration '
             'runs, remove the table''s marks by hand.';
  END IF;
  IF pg_catalog.current_setting('transaction_isolation') <> 'read committed' THEN
    SELECT CASE WHEN s.is_called THEN s.last_value ELSE 0 END INTO seq_epoch
      FROM shardline.fence_epoch_seq s;
    SELECT fe.epoch INTO seen_epoch FROM shardline.fence_epoch fe;
    IF seq_epoch > coalesce(seen_epoch, 0) THEN
      RAISE EXCEPTION USING
        ERRCODE = '40001',
        MESSAGE = pg_catalog.format('%s on %s refused: the transaction''s snapshot is older '
                                    'than a change of the ranges moving on this node', TG_OP,
                                    qualified),
        HINT = 'Retry the transaction.';
    END IF;
  END IF;
  RETURN NULL;
END
$fn$;

-- The check behind every fence trigger, called only when the table has marks. `h` is the
-- write's shard-key hash (NULL: nothing to check), `k` the key (for the message only). The
-- mark found first is a fence when one covers h (ORDER BY), so a 'moving' mark of one
-- migration never hides another's fence.
CREATE OR REPLACE FUNCTION shardline.fence_check(qualified text, bare text, key_col text,
                                                 h bigint, k anyelement) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
  f record;
BEGIN
  IF h IS NULL THEN RETURN; END IF;
  SELECT fr.lo, fr.hi, fr.mode, fr.lock_key INTO f FROM shardline.fenced_ranges fr
    WHERE fr.table_name IN (qualified, bare) AND h BETWEEN fr.lo AND fr.hi
    ORDER BY fr.mode = 'fence' DESC LIMIT 1;
  IF NOT FOUND THEN RETURN; END IF;
  IF f.mode = 'moving' THEN
    -- A range being moved: take the rollout's lock shared (it never blocks unless a rollout
    -- gate or fence holds it exclusively, for milliseconds), then look again with a fresh
    -- snapshot (this function is VOLATILE: under READ COMMITTED each query takes a new one),
    -- since the fence may have been committed while we waited. A REPEATABLE READ or
    -- SERIALIZABLE transaction cannot see that commit, so it is told to retry instead (and one
    -- that passes without waiting is waited for by the rollout after its fence: its commit is
    -- then before the position the rollout replicates up to).
    IF NOT pg_try_advisory_xact_lock_shared(f.lock_key) THEN
      IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION USING
          ERRCODE = '40001',
          MESSAGE = format('write to %s paused: %s = %s hashes to %s, in range %s..%s being '
                           'switched to another node', qualified, key_col, k, h, f.lo, f.hi),
          HINT = 'Retry the transaction.';
      END IF;
      PERFORM pg_advisory_xact_lock_shared(f.lock_key);
    END IF;
    SELECT fr.lo, fr.hi, fr.mode, fr.lock_key INTO f FROM shardline.fenced_ranges fr
      WHERE fr.table_name IN (qualified, bare) AND h BETWEEN fr.lo AND fr.hi
        AND fr.mode = 'fence'
      LIMIT 1;
    IF NOT FOUND THEN RETURN; END IF;
  END IF;
  RAISE EXCEPTION USING
    ERRCODE = 'SLF01',
    MESSAGE = format('write to %s rejected: %s = %s hashes to %s, in fenced range %s..%s',
                     qualified, key_col, k, h, f.lo, f.hi),
    HINT = 'The range is moving or has moved to another node: refresh the shard map and retry on the new owner.';
END
$fn$;

-- Installs (or re-installs) the fence trigger on `tbl` for shard-key column `key_column` of
-- map key type `key_type` ('bigint' | 'text' | 'uuid'). The trigger function is generated for
-- the table (shardline.fence_<table oid>) with the key column named in it: no per-row
-- to_jsonb of the whole row, and one index probe per row unless a mark covers the key.
CREATE OR REPLACE FUNCTION shardline.install_fence(tbl regclass, key_column text, key_type text)
RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
  hash_fn text := CASE key_type
                    WHEN 'bigint' THEN 'hashint8extended'
                    WHEN 'text' THEN 'hashtextextended'
                    WHEN 'uuid' THEN 'uuid_hash_extended'
                  END;
  fn_name text := 'fence_' || tbl::oid;
  bare text;
  qualified text;
BEGIN
  IF hash_fn IS NULL THEN
    RAISE EXCEPTION 'shardline.install_fence(%): key_type must be bigint, text or uuid, not %',
      tbl, key_type;
  END IF;
  SELECT c.relname, n.nspname || '.' || c.relname INTO bare, qualified
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = tbl;
  EXECUTE format($body$
    CREATE OR REPLACE FUNCTION shardline.%1$I() RETURNS trigger LANGUAGE plpgsql AS $f$
    DECLARE
      h bigint;
    BEGIN
      -- The fast path is one index probe per row: is any mark over this key's hash? Only
      -- then does shardline.fence_check decide (pause lock, fence, message).
      IF TG_OP <> 'DELETE' THEN
        h := pg_catalog.%5$s(NEW.%6$I, 0);
        PERFORM 1 FROM shardline.fenced_ranges fr
          WHERE fr.table_name IN (%2$L, %3$L) AND h BETWEEN fr.lo AND fr.hi;
        IF FOUND THEN
          PERFORM shardline.fence_check(%2$L, %3$L, %4$L, h, NEW.%6$I);
        END IF;
      END IF;
      IF TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND NEW.%6$I IS DISTINCT FROM OLD.%6$I) THEN
        h := pg_catalog.%5$s(OLD.%6$I, 0);
        PERFORM 1 FROM shardline.fenced_ranges fr
          WHERE fr.table_name IN (%2$L, %3$L) AND h BETWEEN fr.lo AND fr.hi;
        IF FOUND THEN
          PERFORM shardline.fence_check(%2$L, %3$L, %4$L, h, OLD.%6$I);
        END IF;
      END IF;
      IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
      RETURN NEW;
    END
    $f$ $body$, fn_name, qualified, bare, key_column, hash_fn, key_column);
  IF EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = tbl AND tgname = 'shardline_fence') THEN
    EXECUTE format('DROP TRIGGER shardline_fence ON %s', tbl);
  END IF;
  EXECUTE format('CREATE TRIGGER shardline_fence BEFORE INSERT OR UPDATE OR DELETE ON %s '
                 'FOR EACH ROW EXECUTE FUNCTION shardline.%I()', tbl, fn_name);
  IF EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = tbl AND tgname = 'shardline_fence_stmt') THEN
    EXECUTE format('DROP TRIGGER shardline_fence_stmt ON %s', tbl);
  END IF;
  EXECUTE format('CREATE TRIGGER shardline_fence_stmt BEFORE INSERT OR UPDATE OR DELETE OR '
                 'TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION shardline.fence_statement()',
                 tbl);
END
$fn$;

-- Lifts the fences of other migrations over lo..hi of table `tbl` (a range that comes back to
-- this node): the part of each such mark inside lo..hi goes, the parts outside stay fenced.
-- Marks of migration `keep_key` are left alone. Returns how many marks were cut.
CREATE OR REPLACE FUNCTION shardline.lift_fence(tbl text, lift_lo bigint, lift_hi bigint,
                                                keep_key bigint) RETURNS integer
LANGUAGE plpgsql AS $fn$
DECLARE
  m record;
  n integer := 0;
BEGIN
  FOR m IN DELETE FROM shardline.fenced_ranges
           WHERE table_name = tbl AND mode = 'fence' AND lo <= lift_hi AND hi >= lift_lo
             AND lock_key IS DISTINCT FROM keep_key
           RETURNING * LOOP
    n := n + 1;
    IF m.lo < lift_lo THEN
      INSERT INTO shardline.fenced_ranges (table_name, lo, hi, fenced_at, reason, mode, lock_key)
        VALUES (tbl, m.lo, lift_lo - 1, m.fenced_at, m.reason, 'fence', m.lock_key);
    END IF;
    IF m.hi > lift_hi THEN
      INSERT INTO shardline.fenced_ranges (table_name, lo, hi, fenced_at, reason, mode, lock_key)
        VALUES (tbl, lift_hi + 1, m.hi, m.fenced_at, m.reason, 'fence', m.lock_key);
    END IF;
  END LOOP;
  RETURN n;
END
$fn$;

-- Removes the fence trigger from `tbl` and its function (the ranges themselves are rows of
-- fenced_ranges).
CREATE OR REPLACE FUNCTION shardline.remove_fence(tbl regclass) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = tbl AND tgname = 'shardline_fence') THEN
    EXECUTE format('DROP TRIGGER shardline_fence ON %s', tbl);
  END IF;
  IF EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = tbl AND tgname = 'shardline_fence_stmt') THEN
    EXECUTE format('DROP TRIGGER shardline_fence_stmt ON %s', tbl);
  END IF;
  EXECUTE format('DROP FUNCTION IF EXISTS shardline.%I()', 'fence_' || tbl::oid);
END
$fn$;
