// How every `shardline` command reaches a node: its admin_dsn when the map gives one, else its
// dsn, and never through a transaction-mode pooler (the tool needs the real server: logical
// replication, advisory locks, session settings). See shardline::AdminDsn (shard_map.h).
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "pg_conn.h"
#include "shardline/shard_map.h"

namespace shardline::migrate {

// Connects to `node` for the tool (pg::Conn::Connect on AdminDsn(node)). FailedPrecondition
// naming the node, before any connection attempt, when its dsn goes through a transaction-mode
// pooler and it has no admin_dsn; otherwise Connect's errors.
inline absl::StatusOr<std::unique_ptr<pg::Conn>> ConnectAdmin(const NodeConfig& node) {
  absl::StatusOr<std::string> dsn = AdminDsn(node);
  if (!dsn.ok()) return dsn.status();
  return pg::Conn::Connect(*dsn, node.name);
}

}  // namespace shardline::migrate
