// Errors as values: every fallible call returns Status or Result<T> carrying a
// message a user can act on. No exceptions cross module boundaries.
#pragma once
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace gf {

class Status {
 public:
  Status() = default;
  static Status Error(std::string msg) { Status s; s.error_ = std::move(msg); return s; }
  bool ok() const { return !error_.has_value(); }
  explicit operator bool() const { return ok(); }
  const std::string& message() const { static const std::string kOk = "ok"; return error_ ? *error_ : kOk; }
  // Prefixes context ("reading model.safetensors: ...").
  Status with_context(const std::string& ctx) const { return ok() ? *this : Error(ctx + ": " + *error_); }

 private:
  std::optional<std::string> error_;
};

inline Status Ok() { return Status(); }
inline Status Err(std::string msg) { return Status::Error(std::move(msg)); }

template <class T>
class Result {
 public:
  Result(T value) : v_(std::move(value)) {}          // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {}   // NOLINT: must be an error
  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  const T& value() const& { return std::get<0>(v_); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() { return value(); }
  Status status() const { return ok() ? Ok() : std::get<1>(v_); }
  const std::string& message() const { static const std::string kOk = "ok"; return ok() ? kOk : std::get<1>(v_).message(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace gf

#define GF_CONCAT_INNER(a, b) a##b
#define GF_CONCAT(a, b) GF_CONCAT_INNER(a, b)

// Returns the error of a Status-returning expression.
#define GF_RETURN_IF_ERROR(expr)                 \
  do {                                           \
    ::gf::Status gf_status_ = (expr);            \
    if (!gf_status_.ok()) return gf_status_;     \
  } while (0)

// GF_ASSIGN_OR_RETURN(auto x, ResultExpr());
#define GF_ASSIGN_OR_RETURN(decl, expr) GF_ASSIGN_OR_RETURN_IMPL(GF_CONCAT(gf_result_, __LINE__), decl, expr)
#define GF_ASSIGN_OR_RETURN_IMPL(tmp, decl, expr) \
  auto tmp = (expr);                              \
  if (!tmp.ok()) return tmp.status();             \
  decl = std::move(tmp).value()
