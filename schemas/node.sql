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

CREATE SCHEMA IF NOT EXISTS shardline;

-- The version of these objects: a rollout re-applies this file (and re-installs the fence
-- triggers) on a node whose version is older. Bump it with every change here.
CREATE OR REPLACE FUNCTION shardline.node_schema_version() RETURNS integer
LANGUAGE sql IMMUTABLE AS 'SELECT 2';

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
        h := %5$s(NEW.%6$I, 0);
        PERFORM 1 FROM shardline.fenced_ranges fr
          WHERE fr.table_name IN (%2$L, %3$L) AND h BETWEEN fr.lo AND fr.hi;
        IF FOUND THEN
          PERFORM shardline.fence_check(%2$L, %3$L, %4$L, h, NEW.%6$I);
        END IF;
      END IF;
      IF TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND NEW.%6$I IS DISTINCT FROM OLD.%6$I) THEN
        h := %5$s(OLD.%6$I, 0);
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
  EXECUTE format('DROP FUNCTION IF EXISTS shardline.%I()', 'fence_' || tbl::oid);
END
$fn$;
