-- The fitness-app example schema used by the demo and `shardline-loadgen`, installed on every
-- data node (idempotent: safe to run again; `shardline-loadgen schema` does it).
--
-- Every table is sharded by user_id (bigint): all rows of a user live on the node that owns
-- hashint8extended(user_id, 0). Rules the migration tooling relies on:
--   * every primary key contains user_id, so a logical-replication row filter on
--     hashint8extended(user_id, 0) is allowed for UPDATE and DELETE (the filter's columns must
--     be in the replica identity, which defaults to the primary key);
--   * ids other than user_id come from the router's id generator (Router::NextId(), see
--     include/shardline/id_gen.h), never from a per-node sequence: sequences of two nodes hand
--     out the same values, and ids must stay unique when a range of users moves between nodes.
-- Timestamps default to now() on the node; nothing else is computed server-side.

CREATE TABLE IF NOT EXISTS users (
  user_id    bigint      NOT NULL,
  name       text        NOT NULL,
  email      text        NOT NULL,
  bio        text        NOT NULL DEFAULT '',
  points     bigint      NOT NULL DEFAULT 0,   -- leaderboard score: total reps logged
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (user_id)
);
-- The leaderboard fan-out reads the top users by points on every node.
CREATE INDEX IF NOT EXISTS users_points_idx ON users (points DESC, user_id);

CREATE TABLE IF NOT EXISTS workouts (
  user_id    bigint      NOT NULL,
  id         bigint      NOT NULL,              -- Router::NextId()
  kind       text        NOT NULL,              -- 'run', 'ride', 'lift', ...
  started_at timestamptz NOT NULL DEFAULT now(),
  duration_s integer     NOT NULL DEFAULT 0,
  calories   integer     NOT NULL DEFAULT 0,
  note       text        NOT NULL DEFAULT '',
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (user_id, id)
);

CREATE TABLE IF NOT EXISTS workout_logs (
  user_id    bigint       NOT NULL,
  id         bigint       NOT NULL,             -- Router::NextId()
  workout_id bigint,                            -- the user's workout (same user, same node)
  exercise   text         NOT NULL,
  reps       integer      NOT NULL,
  weight     numeric(6,2) NOT NULL,             -- kg
  note       text         NOT NULL DEFAULT '',
  logged_at  timestamptz  NOT NULL DEFAULT now(),
  PRIMARY KEY (user_id, id)
);

CREATE TABLE IF NOT EXISTS posts (
  user_id    bigint      NOT NULL,
  id         bigint      NOT NULL,              -- Router::NextId(): time-ordered, so the feed
  body       text        NOT NULL,              -- reads the primary key backwards
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (user_id, id)
);
