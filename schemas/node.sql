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
-- The trigger is generic: the key column and the hash function are trigger arguments, e.g.
--   SELECT shardline.install_fence('public.workouts', 'user_id', 'bigint');
-- which runs
--   CREATE TRIGGER shardline_fence BEFORE INSERT OR UPDATE OR DELETE ON public.workouts
--     FOR EACH ROW EXECUTE FUNCTION shardline.fence_trigger('user_id', 'hashint8extended');

CREATE SCHEMA IF NOT EXISTS shardline;

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

-- Trigger function. TG_ARGV[0]: the shard-key column; TG_ARGV[1]: the hash function, one of
-- hashint8extended, hashtextextended, uuid_hash_extended (seed 0, as the router hashes).
-- Cost when nothing is fenced for the table: one index probe per row.
CREATE OR REPLACE FUNCTION shardline.fence_trigger() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
  key_col   text := TG_ARGV[0];
  hash_fn   text := TG_ARGV[1];
  qualified text := TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME;
  k         text;
  h         bigint;
  f         record;
  i         int;
BEGIN
  IF TG_NARGS <> 2 THEN
    RAISE EXCEPTION 'shardline.fence_trigger on %: expects 2 arguments (key column, hash function), got %',
      qualified, TG_NARGS;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM shardline.fenced_ranges
                 WHERE table_name IN (qualified, TG_TABLE_NAME)) THEN
    IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
    RETURN NEW;
  END IF;
  -- Check the new row (INSERT, UPDATE) and the old row (UPDATE, DELETE): moving a row into or
  -- out of a fenced range is a write to that range.
  FOR i IN 1..2 LOOP
    CONTINUE WHEN i = 1 AND TG_OP = 'DELETE';
    CONTINUE WHEN i = 2 AND TG_OP = 'INSERT';
    IF i = 1 THEN
      k := to_jsonb(NEW) ->> key_col;
    ELSE
      k := to_jsonb(OLD) ->> key_col;
    END IF;
    CONTINUE WHEN k IS NULL;
    h := CASE hash_fn
           WHEN 'hashint8extended' THEN hashint8extended(k::bigint, 0)
           WHEN 'hashtextextended' THEN hashtextextended(k, 0)
           WHEN 'uuid_hash_extended' THEN uuid_hash_extended(k::uuid, 0)
         END;
    IF h IS NULL THEN
      RAISE EXCEPTION 'shardline.fence_trigger on %: unknown hash function %', qualified, hash_fn;
    END IF;
    SELECT fr.lo, fr.hi, fr.mode, fr.lock_key INTO f FROM shardline.fenced_ranges fr
      WHERE fr.table_name IN (qualified, TG_TABLE_NAME) AND h BETWEEN fr.lo AND fr.hi
      LIMIT 1;
    IF FOUND AND f.mode = 'moving' THEN
      -- A range being moved: take the rollout's lock shared (it never blocks unless a rollout
      -- gate or fence holds it exclusively, for milliseconds), then look again with a fresh
      -- snapshot (this function is VOLATILE: under READ COMMITTED each query takes a new one),
      -- since the fence may have been committed while we waited. A REPEATABLE READ or
      -- SERIALIZABLE transaction cannot see that commit, so it is told to retry instead.
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
        WHERE fr.table_name IN (qualified, TG_TABLE_NAME) AND h BETWEEN fr.lo AND fr.hi
          AND fr.mode = 'fence'
        LIMIT 1;
    END IF;
    IF FOUND AND f.mode = 'fence' THEN
      RAISE EXCEPTION USING
        ERRCODE = 'SLF01',
        MESSAGE = format('write to %s rejected: %s = %s hashes to %s, in fenced range %s..%s',
                         qualified, key_col, k, h, f.lo, f.hi),
        HINT = 'The range is moving to another node: refresh the shard map and retry on the new owner.';
    END IF;
  END LOOP;
  IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
  RETURN NEW;
END
$fn$;

-- Installs (or re-installs) the fence trigger on `tbl` for shard-key column `key_column` of
-- map key type `key_type` ('bigint' | 'text' | 'uuid').
CREATE OR REPLACE FUNCTION shardline.install_fence(tbl regclass, key_column text, key_type text)
RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
  hash_fn text := CASE key_type
                    WHEN 'bigint' THEN 'hashint8extended'
                    WHEN 'text' THEN 'hashtextextended'
                    WHEN 'uuid' THEN 'uuid_hash_extended'
                  END;
BEGIN
  IF hash_fn IS NULL THEN
    RAISE EXCEPTION 'shardline.install_fence(%): key_type must be bigint, text or uuid, not %',
      tbl, key_type;
  END IF;
  IF EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = tbl AND tgname = 'shardline_fence') THEN
    EXECUTE format('DROP TRIGGER shardline_fence ON %s', tbl);
  END IF;
  EXECUTE format('CREATE TRIGGER shardline_fence BEFORE INSERT OR UPDATE OR DELETE ON %s '
                 'FOR EACH ROW EXECUTE FUNCTION shardline.fence_trigger(%L, %L)',
                 tbl, key_column, hash_fn);
END
$fn$;

-- Removes the fence trigger from `tbl` (the ranges themselves are rows of fenced_ranges).
CREATE OR REPLACE FUNCTION shardline.remove_fence(tbl regclass) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = tbl AND tgname = 'shardline_fence') THEN
    EXECUTE format('DROP TRIGGER shardline_fence ON %s', tbl);
  END IF;
END
$fn$;
