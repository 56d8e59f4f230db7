// The web chat's files as the binary holds them (server/web_ui.h): the page
// and every file it references are embedded, nothing points off the server
// (the page must work with no network), and the routes serve them with their
// types. The browser test (web_chat_browser_test.py) drives the page itself.
#include <gtest/gtest.h>
#include <httplib.h>

#include <filesystem>
#include <regex>
#include <thread>

#include "server/embedded_files.h"
#include "server/web_ui.h"
#include "test_util.h"

namespace gf {
namespace {

TEST(WebUi, EmbeddedFilesAreTheSourceFiles) {
  size_t n = 0;
  for (const auto& e : std::filesystem::directory_iterator(std::string(GEMFORGE_SOURCE_DIR) + "/src/server/web")) {
    ++n;
    auto a = find_web_asset("/web/" + e.path().filename().string());
    ASSERT_TRUE(a) << e.path();
    EXPECT_EQ(a->body, test::read_bytes(e.path().string())) << e.path() << " is stale in the binary";
  }
  EXPECT_EQ(embedded_files().size(), n);
  auto page = find_web_asset("/");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->mime, "text/html; charset=utf-8");
  EXPECT_EQ(page->body, find_web_asset("/web/index.html")->body);
  EXPECT_EQ(find_web_asset("/web/chat.js")->mime, "text/javascript; charset=utf-8");
  EXPECT_FALSE(find_web_asset("/web/none.js"));
  EXPECT_FALSE(find_web_asset("/v1/models"));
}

TEST(WebUi, EveryReferenceIsServedHereAndNothingComesFromElsewhere) {
  const std::string page(find_web_asset("/")->body);
  const std::regex ref(R"re((?:src|href)="([^"]*)")re");
  int refs = 0;
  for (auto it = std::sregex_iterator(page.begin(), page.end(), ref); it != std::sregex_iterator(); ++it, ++refs)
    EXPECT_TRUE(find_web_asset((*it)[1].str())) << (*it)[1].str() << " is not embedded";
  EXPECT_GE(refs, 3);  // the icon, the style sheet, the script
  for (const EmbeddedFile& f : embedded_files()) {
    // An SVG's namespace is a name, not something fetched.
    const std::string text = std::regex_replace(std::string(f.bytes), std::regex(R"re(xmlns="http://www.w3.org/2000/svg")re"), "");
    for (const char* remote : {"http://", "https://", "//cdn", "@import", "url("})
      EXPECT_EQ(text.find(remote), std::string::npos) << f.name << " loads something from elsewhere: " << remote;
  }
}

TEST(WebUi, RoutesServeTheFilesWithTheirTypes) {
  httplib::Server svr;
  register_web_ui(svr);
  const int port = svr.bind_to_any_port("127.0.0.1");
  std::thread t([&] { svr.listen_after_bind(); });
  httplib::Client c("127.0.0.1", port);
  auto r = c.Get("/");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->get_header_value("Content-Type"), "text/html; charset=utf-8");
  EXPECT_NE(r->get_header_value("Content-Security-Policy").find("default-src 'self'"), std::string::npos);
  EXPECT_NE(r->body.find("/web/chat.js"), std::string::npos);
  r = c.Get("/web/chat.css");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->get_header_value("Content-Type"), "text/css; charset=utf-8");
  r = c.Get("/web/missing.js");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404);
  svr.stop();
  t.join();
}

}  // namespace
}  // namespace gf
