#include "server/web_ui.h"

#include <httplib.h>

#include <string>

#include "server/embedded_files.h"

namespace gf {
namespace {

std::string_view mime_of(std::string_view name) {
  auto ends = [&](std::string_view ext) { return name.size() >= ext.size() && name.substr(name.size() - ext.size()) == ext; };
  if (ends(".html")) return "text/html; charset=utf-8";
  if (ends(".js")) return "text/javascript; charset=utf-8";
  if (ends(".css")) return "text/css; charset=utf-8";
  if (ends(".svg")) return "image/svg+xml";
  if (ends(".png")) return "image/png";
  return "application/octet-stream";
}

}  // namespace

std::optional<WebAsset> find_web_asset(std::string_view path) {
  std::string_view name;
  if (path == "/") name = "index.html";
  else if (path.substr(0, 5) == "/web/") name = path.substr(5);
  else return std::nullopt;
  for (const EmbeddedFile& f : embedded_files())
    if (f.name == name) return WebAsset{mime_of(name), f.bytes};
  return std::nullopt;
}

void register_web_ui(httplib::Server& svr) {
  auto serve = [](const httplib::Request& req, httplib::Response& res) {
    auto a = find_web_asset(req.path);
    if (!a) {
      res.status = 404;  // the server's error handler writes the JSON body
      return;
    }
    res.set_header("Cache-Control", "no-cache");
    // The page runs no inline script and loads nothing from elsewhere; say so.
    res.set_header("Content-Security-Policy", "default-src 'self'; style-src 'self'; script-src 'self'; img-src 'self' data:");
    res.set_header("X-Content-Type-Options", "nosniff");
    res.set_content(std::string(a->body), std::string(a->mime));
  };
  svr.Get("/", serve);
  svr.Get(R"(/web/[A-Za-z0-9._-]+)", serve);
}

}  // namespace gf
