// The web chat of `gemforge serve`: GET / is the page, /web/NAME its files
// (src/server/web/, embedded in the binary). The page holds no secret, so it
// is served without the API key; the page then sends the key with its API calls.
#pragma once
#include <optional>
#include <string_view>

namespace httplib {
class Server;
}

namespace gf {

struct WebAsset {
  std::string_view mime, body;
};

// The asset served at an HTTP path ("/", "/web/chat.js"), or nullopt.
std::optional<WebAsset> find_web_asset(std::string_view path);
// Adds the GET routes of every asset.
void register_web_ui(httplib::Server& svr);

}  // namespace gf
