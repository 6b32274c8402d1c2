// `shardline-loadgen check-ledger`: proves that every write a run acknowledged is where the
// current map says it must be (check_ledger.h). Exit 1 when any is missing.
#pragma once

#include <CLI/CLI.hpp>

#include "absl/status/status.h"
#include "cli_common.h"

namespace shardline::loadgen {

struct CheckLedgerCommandOptions {
  migrate::MapSourceOptions source;
  std::string ledger;
  bool strict = false;
  bool json = false;
  std::size_t max_listed = 10;
  std::string application_name = "shardline-loadgen";
};

CLI::App* SetupCheckLedger(CLI::App& app, CheckLedgerCommandOptions& options);
// Prints the counts (and the first problems); DataLoss naming the counts and the first
// problems when a write is missing, has another content, or (--strict) is elsewhere. Errors
// of the map source, the ledger file or a node otherwise.
absl::Status RunCheckLedger(const CheckLedgerCommandOptions& options);

}  // namespace shardline::loadgen
