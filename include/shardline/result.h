// Query results: an immutable, cheaply copyable handle over a PostgreSQL result (libpq is hidden
// behind a pimpl) with typed getters and row iteration.
#pragma once

#include <cstdint>
#include <iterator>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace shardline {

namespace internal {
struct ResultImpl;
}

class Result;

// A row of a Result: a (pointer to a Result object, index) pair. Valid while that Result
// object lives and is not moved from or assigned to (a Row points at the object, not at the
// shared data: keep the Result, or use MergedRows, which keeps its own copies).
class Row {
 public:
  Row(const Result* result, int index) : result_(result), index_(index) {}
  int index() const { return index_; }
  bool IsNull(int col) const;
  absl::StatusOr<std::int64_t> GetInt64(int col) const;
  absl::StatusOr<double> GetDouble(int col) const;
  absl::StatusOr<bool> GetBool(int col) const;
  // Text of the value (empty for NULL); valid while the Result lives.
  absl::StatusOr<std::string_view> GetString(int col) const;
  // A bytea value decoded from its text (hex) form.
  absl::StatusOr<std::string> GetBytes(int col) const;
  const Result& result() const { return *result_; }

 private:
  const Result* result_;
  int index_;
};

// The rows and metadata of one statement on one node. Immutable; copies share the same data
// (thread-safe to read from several threads). Getters return InvalidArgument naming the column
// and row when the value is NULL (except IsNull/GetString) or does not parse as the type, and
// OutOfRange for a bad row/column index.
//
//   auto r = router->Execute(uid, "SELECT name, age FROM users WHERE user_id = $1", {uid});
//   if (!r.ok()) return r.status();
//   for (Row row : *r) std::cout << *row.GetString(0) << "\n";
class Result {
 public:
  Result();  // empty: no rows, no columns
  explicit Result(std::shared_ptr<const internal::ResultImpl> impl);

  int rows() const;
  int columns() const;
  std::string_view column_name(int col) const;
  int column_index(std::string_view name) const;  // -1 when absent
  std::int64_t affected_rows() const;             // INSERT/UPDATE/DELETE count
  const std::string& node() const;                // the node that produced it

  bool IsNull(int row, int col) const;
  absl::StatusOr<std::int64_t> GetInt64(int row, int col) const;
  absl::StatusOr<double> GetDouble(int row, int col) const;
  absl::StatusOr<bool> GetBool(int row, int col) const;
  absl::StatusOr<std::string_view> GetString(int row, int col) const;
  absl::StatusOr<std::string> GetBytes(int row, int col) const;

  class Iterator {
   public:
    using iterator_category = std::forward_iterator_tag;
    using value_type = Row;
    using difference_type = std::ptrdiff_t;
    using pointer = void;
    using reference = Row;
    Iterator(const Result* r, int i) : r_(r), i_(i) {}
    Row operator*() const { return Row(r_, i_); }
    Iterator& operator++() {
      ++i_;
      return *this;
    }
    Iterator operator++(int) {
      Iterator t = *this;
      ++i_;
      return t;
    }
    bool operator==(const Iterator& o) const { return i_ == o.i_ && r_ == o.r_; }

   private:
    const Result* r_;
    int i_;
  };
  Iterator begin() const { return Iterator(this, 0); }
  Iterator end() const { return Iterator(this, rows()); }
  Row row(int i) const { return Row(this, i); }

  const internal::ResultImpl* impl() const { return impl_.get(); }

 private:
  std::shared_ptr<const internal::ResultImpl> impl_;
};

}  // namespace shardline
