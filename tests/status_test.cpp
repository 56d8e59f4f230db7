// Errors as values: a failed Status or Result always carries a message, and a
// Result cannot be built from a Status (an ok one would become a failure).
#include <gtest/gtest.h>

#include <type_traits>

#include "core/status.h"

namespace gf {
namespace {

static_assert(!std::is_constructible_v<Result<int>, Status>, "an ok Status must not become a failed Result");
static_assert(std::is_constructible_v<Result<int>, Error>);
static_assert(std::is_convertible_v<Error, Status>);

Result<int> half(int x) {
  if (x % 2) return Err(std::to_string(x) + " is odd");
  return x / 2;
}
Status check_even(int x) {
  GF_ASSIGN_OR_RETURN(int h, half(x));
  (void)h;
  return Ok();
}
Result<int> quarter(int x) {
  GF_RETURN_IF_ERROR(check_even(x));
  GF_ASSIGN_OR_RETURN(int h, half(x / 2));
  return h;
}

TEST(Status, ErrorsCarryTheirMessageThroughTheMacros) {
  EXPECT_TRUE(check_even(4).ok());
  EXPECT_EQ(check_even(3).message(), "3 is odd");
  EXPECT_EQ(*quarter(8), 2);
  EXPECT_EQ(quarter(3).message(), "3 is odd");
  EXPECT_EQ(quarter(6).message(), "3 is odd");
  EXPECT_EQ(Status(Err("x")).with_context("reading f").message(), "reading f: x");
  EXPECT_TRUE(Ok().with_context("ignored").ok());
  EXPECT_EQ(Err("").message(), "unknown error");
  EXPECT_EQ(quarter(3).status().message(), "3 is odd");
}

}  // namespace
}  // namespace gf
