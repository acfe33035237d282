#include "tests/sim/xenstore/XsWire.hpp"

#include <cstring>

#include "xenstore/BackendPath.hpp"

namespace xbb::sim::wire {

std::string encode(const Message& msg) {
  xsd_sockmsg header{};
  header.type = msg.type;
  header.req_id = msg.req_id;
  header.tx_id = msg.tx_id;
  header.len = static_cast<uint32_t>(msg.payload.size());
  std::string out(sizeof header, '\0');
  std::memcpy(out.data(), &header, sizeof header);
  out += msg.payload;
  return out;
}

std::optional<Message> Decoder::next() {
  if (buffer_.size() < sizeof(xsd_sockmsg)) return std::nullopt;
  xsd_sockmsg header{};
  std::memcpy(&header, buffer_.data(), sizeof header);
  if (header.len > XENSTORE_PAYLOAD_MAX) {
    throw xs::Error(EPROTO, "xenstore message payload of " + std::to_string(header.len) + " bytes");
  }
  if (buffer_.size() < sizeof header + header.len) return std::nullopt;
  Message msg{header.type, header.req_id, header.tx_id, buffer_.substr(sizeof header, header.len)};
  buffer_.erase(0, sizeof header + header.len);
  return msg;
}

std::string errno_name(int err) {
  for (const auto& e : xsd_errors) {
    if (e.errnum == err) return e.errstring;
  }
  return "EINVAL";
}

int errno_from_name(std::string_view name) {
  for (const auto& e : xsd_errors) {
    if (name == e.errstring) return e.errnum;
  }
  return EINVAL;
}

std::string perm_to_string(const xs::Permission& perm) {
  char letter = 'n';
  switch (perm.access) {
    case xs::Permission::Access::None: letter = 'n'; break;
    case xs::Permission::Access::Read: letter = 'r'; break;
    case xs::Permission::Access::Write: letter = 'w'; break;
    case xs::Permission::Access::Both: letter = 'b'; break;
  }
  return letter + std::to_string(perm.domid);
}

std::optional<xs::Permission> perm_from_string(std::string_view text) {
  if (text.empty()) return std::nullopt;
  xs::Permission perm;
  switch (text[0]) {
    case 'n': perm.access = xs::Permission::Access::None; break;
    case 'r': perm.access = xs::Permission::Access::Read; break;
    case 'w': perm.access = xs::Permission::Access::Write; break;
    case 'b': perm.access = xs::Permission::Access::Both; break;
    default: return std::nullopt;
  }
  auto domid = xs::parse_canonical_uint(text.substr(1), UINT16_MAX);
  if (!domid) return std::nullopt;
  perm.domid = static_cast<xs::DomId>(*domid);
  return perm;
}

std::vector<std::string> split_strings(std::string_view payload) {
  std::vector<std::string> out;
  while (!payload.empty()) {
    const size_t nul = payload.find('\0');
    if (nul == std::string_view::npos) {
      out.emplace_back(payload);
      break;
    }
    out.emplace_back(payload.substr(0, nul));
    payload.remove_prefix(nul + 1);
  }
  return out;
}

}  // namespace xbb::sim::wire
