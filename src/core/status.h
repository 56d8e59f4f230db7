// Errors as values: every fallible call returns Status or Result<T> carrying a
// message a user can act on. No exceptions cross module boundaries.
#pragma once
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace gf {

// A failure: always carries a message. The only way to make a failed Status or
// Result, so neither can be built from success by mistake.
class Error {
 public:
  explicit Error(std::string msg) : msg_(msg.empty() ? std::string("unknown error") : std::move(msg)) {}
  const std::string& message() const { return msg_; }
  // Prefixes context ("reading model.safetensors: ...").
  Error with_context(const std::string& ctx) const { return Error(ctx + ": " + msg_); }

 private:
  std::string msg_;
};

class Status {
 public:
  Status() = default;                                    // ok
  Status(gf::Error e) : error_(std::move(e)) {}          // NOLINT: implicit by design
  bool ok() const { return !error_.has_value(); }
  explicit operator bool() const { return ok(); }
  const std::string& message() const { static const std::string kOk = "ok"; return error_ ? error_->message() : kOk; }
  // The failure; only for a failed status (checked by the macros below).
  const gf::Error& error() const { return *error_; }
  Status with_context(const std::string& ctx) const { return ok() ? *this : Status(error_->with_context(ctx)); }

 private:
  std::optional<gf::Error> error_;
};

inline Status Ok() { return Status(); }
inline Error Err(std::string msg) { return Error(std::move(msg)); }

// A value or an Error. There is no constructor from Status: an ok Status
// cannot become a failed Result. Pass `status.error()` once it failed.
template <class T>
class Result {
 public:
  Result(T value) : v_(std::move(value)) {}          // NOLINT: implicit by design
  Result(Error error) : v_(std::move(error)) {}      // NOLINT: implicit by design
  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  const T& value() const& { return std::get<0>(v_); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() { return value(); }
  Status status() const { return ok() ? Ok() : Status(std::get<1>(v_)); }
  // The failure; only for a failed result.
  const Error& error() const { return std::get<1>(v_); }
  const std::string& message() const { static const std::string kOk = "ok"; return ok() ? kOk : std::get<1>(v_).message(); }

 private:
  std::variant<T, Error> v_;
};

}  // namespace gf

#define GF_CONCAT_INNER(a, b) a##b
#define GF_CONCAT(a, b) GF_CONCAT_INNER(a, b)

// Returns the error of a Status-returning expression.
#define GF_RETURN_IF_ERROR(expr)                 \
  do {                                           \
    ::gf::Status gf_status_ = (expr);            \
    if (!gf_status_.ok()) return gf_status_.error(); \
  } while (0)

// GF_ASSIGN_OR_RETURN(auto x, ResultExpr());
#define GF_ASSIGN_OR_RETURN(decl, expr) GF_ASSIGN_OR_RETURN_IMPL(GF_CONCAT(gf_result_, __LINE__), decl, expr)
#define GF_ASSIGN_OR_RETURN_IMPL(tmp, decl, expr) \
  auto tmp = (expr);                              \
  if (!tmp.ok()) return tmp.error();             \
  decl = std::move(tmp).value()
