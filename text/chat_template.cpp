#include "text/chat_template.h"

#include <ctime>

#include "core/error.h"
#include "text/tokenizer.h"

namespace qft {

namespace {

// Jinja's trim and Python's str.strip(): surrounding whitespace.
std::string trim(const std::string& s) {
  const char* ws = " \t\n\r\v\f";
  const auto b = s.find_first_not_of(ws);
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(ws) - b + 1);
}

std::string today() {  // "%d %b %Y", as the Llama-3.2 template's strftime_now, in the C locale
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%d %b %Y", &tm);
  return buf;
}

// Appends text; `assistant` marks it as assistant output.
struct Writer {
  RenderedChat out;
  void text(const std::string& s) { out.text += s; }
  void assistant(const std::string& s) {
    out.assistant.push_back({out.text.size(), out.text.size() + s.size()});
    out.text += s;
  }
};

void require_roles(const std::vector<Turn>& turns, size_t from, const char* family) {
  for (size_t i = from; i < turns.size(); ++i) {
    if (turns[i].role == "system") throw Error(std::string(family) + " allows a system message only as the first turn");
  }
}

void render_plain(const std::vector<Turn>& turns, const std::string& eos, Writer& w) {
  std::string system;
  bool first_user = true;
  for (const Turn& t : turns) {
    if (t.role == "system") {
      system += t.content + "\n\n";
    } else if (t.role == "user") {
      w.text("### Instruction:\n" + (first_user ? system : "") + t.content + "\n\n### Response:\n");
      first_user = false;
    } else {
      w.assistant(t.content + eos);
    }
  }
}

void render_llama2(const std::vector<Turn>& turns, const std::string& bos, const std::string& eos, Writer& w) {
  const bool has_system = !turns.empty() && turns[0].role == "system";
  require_roles(turns, has_system ? 1 : 0, "llama2-chat");
  for (size_t i = has_system ? 1 : 0, n = 0; i < turns.size(); ++i, ++n) {
    std::string content = turns[i].content;
    if (n == 0 && has_system) content = "<<SYS>>\n" + turns[0].content + "\n<</SYS>>\n\n" + content;
    if (turns[i].role == "user") {
      w.text(bos + "[INST] " + trim(content) + " [/INST]");
    } else {
      std::string answer = " ";  // appended, not " " + ...: GCC 12 warns falsely (-Wrestrict) on that form
      answer += trim(content);
      answer += " " + eos;
      w.assistant(answer);
    }
  }
}

void render_llama3(const std::vector<Turn>& turns, const ChatTemplate& t, const std::string& bos, Writer& w) {
  w.text(bos);
  size_t first = 0;
  auto header = [&](const std::string& role) { w.text("<|start_header_id|>" + role + "<|end_header_id|>\n\n"); };
  if (t.date_lines) {  // 3.1 and later: the system header is always written, with the dates
    std::string system;
    if (!turns.empty() && turns[0].role == "system") {
      system = trim(turns[0].content);
      first = 1;
    }
    header("system");
    w.text("Cutting Knowledge Date: December 2023\nToday Date: " + (t.date.empty() ? today() : t.date) + "\n\n" + system + "<|eot_id|>");
  }
  for (size_t i = first; i < turns.size(); ++i) {
    header(turns[i].role);
    if (turns[i].role == "assistant") {
      w.assistant(trim(turns[i].content) + "<|eot_id|>");
    } else {
      w.text(trim(turns[i].content) + "<|eot_id|>");
    }
  }
}

void render_chatml(const std::vector<Turn>& turns, const ChatTemplate& t, Writer& w) {
  if (!t.default_system.empty() && (turns.empty() || turns[0].role != "system")) {
    w.text("<|im_start|>system\n" + t.default_system + "<|im_end|>\n");
  }
  for (const Turn& turn : turns) {
    w.text("<|im_start|>" + turn.role + "\n");
    if (turn.role == "assistant") {
      w.assistant(turn.content + "<|im_end|>");
    } else {
      w.text(turn.content + "<|im_end|>");
    }
    w.text("\n");
  }
}

void render_mistral(const std::vector<Turn>& turns, const ChatTemplate& t, const std::string& bos,
                    const std::string& eos, Writer& w) {
  const bool has_system = !turns.empty() && turns[0].role == "system";
  if (has_system && t.spaced_inst) throw Error("mistral (v0.1 template) has no system turn");
  require_roles(turns, has_system ? 1 : 0, "mistral");
  w.text(bos);
  for (size_t i = has_system ? 1 : 0; i < turns.size(); ++i) {
    if (turns[i].role == "user") {
      const bool last = i + 1 == turns.size();
      w.text("[INST] " + (last && has_system ? turns[0].content + "\n\n" : "") + turns[i].content +
             (t.spaced_inst ? " [/INST]" : "[/INST]"));
    } else {
      w.assistant((t.spaced_inst ? "" : " ") + turns[i].content + eos);
    }
  }
}

// A quoted Jinja string literal's text from `at` (just after the opening quote), escapes resolved.
std::string literal_from(const std::string& s, size_t at, char quote) {
  std::string out;
  for (; at < s.size() && s[at] != quote; ++at) {
    if (s[at] == '\\' && at + 1 < s.size()) {
      const char c = s[++at];
      out += c == 'n' ? '\n' : c == 't' ? '\t' : c;
    } else {
      out += s[at];
    }
  }
  return out;
}

// chatml: the system turn a template writes when the conversation has none, i.e. a literal
// '<|im_start|>system\n...<|im_end|>' (escaped or not) inside the template.
std::string chatml_default_system(const std::string& jinja) {
  for (size_t at = jinja.find("<|im_start|>system"); at != std::string::npos; at = jinja.find("<|im_start|>system", at + 1)) {
    const size_t open = jinja.find_last_of("'\"", at);
    if (open == std::string::npos) continue;
    const std::string lit = literal_from(jinja, open + 1, jinja[open]);
    const std::string head = "<|im_start|>system\n";
    const size_t end = lit.find("<|im_end|>");
    if (lit.rfind(head, 0) == 0 && end != std::string::npos) return lit.substr(head.size(), end - head.size());
  }
  return "";
}

std::string quoted_after(const std::string& jinja, const std::string& marker) {
  const size_t at = jinja.find(marker);
  if (at == std::string::npos) return "";
  const size_t q = jinja.find_first_of("\"'", at + marker.size());
  return q == std::string::npos ? "" : literal_from(jinja, q + 1, jinja[q]);
}

}  // namespace

RenderedChat render_chat(const std::vector<Turn>& turns, const ChatTemplate& tmpl, const std::string& bos,
                         const std::string& eos, bool add_generation_prompt) {
  Writer w;
  switch (tmpl.format) {
    case ChatFormat::Plain: render_plain(turns, eos, w); break;
    case ChatFormat::Llama2Chat: render_llama2(turns, bos, eos, w); break;
    case ChatFormat::Llama3: render_llama3(turns, tmpl, bos, w); break;
    case ChatFormat::ChatMl: render_chatml(turns, tmpl, w); break;
    case ChatFormat::Mistral: render_mistral(turns, tmpl, bos, eos, w); break;
  }
  if (add_generation_prompt) {
    if (tmpl.format == ChatFormat::Llama3) w.text("<|start_header_id|>assistant<|end_header_id|>\n\n");
    if (tmpl.format == ChatFormat::ChatMl) w.text("<|im_start|>assistant\n");
  }
  return std::move(w.out);
}

std::string end_of_turn(const ChatTemplate& tmpl, const std::string& eos) {
  switch (tmpl.format) {
    case ChatFormat::Llama3: return "<|eot_id|>";
    case ChatFormat::ChatMl: return "<|im_end|>";
    default: return eos;
  }
}

namespace {

struct Builtin {
  const char* name;
  ChatFormat format;
};
constexpr Builtin kBuiltins[] = {{"plain", ChatFormat::Plain},
                                 {"llama2-chat", ChatFormat::Llama2Chat},
                                 {"llama3", ChatFormat::Llama3},
                                 {"chatml", ChatFormat::ChatMl},
                                 {"mistral", ChatFormat::Mistral}};

std::string builtin_list() {
  std::string all;
  for (const auto& b : kBuiltins) all += (all.empty() ? "" : ", ") + std::string(b.name);
  return all;
}

}  // namespace

std::vector<std::string> builtin_template_names() {
  std::vector<std::string> out;
  for (const auto& b : kBuiltins) out.emplace_back(b.name);
  return out;
}

std::vector<std::string> template_choices() {
  auto out = builtin_template_names();
  out.emplace_back("auto");
  return out;
}

ChatTemplate builtin_template(const std::string& name) {
  for (const auto& b : kBuiltins) {
    if (name != b.name) continue;
    ChatTemplate t;
    t.name = name;
    t.format = b.format;
    t.source = "built-in";
    if (b.format == ChatFormat::Llama3) {  // as Llama-3.1's template renders without a date_string
      t.date_lines = true;
      t.date = "26 Jul 2024";
    }
    return t;
  }
  throw ConfigError("config", "data.template", "unknown template '" + name + "' (built-ins: " + builtin_list() + ", or auto)");
}

ChatTemplate detect_template(const std::string& jinja, const std::string& where) {
  ChatTemplate t;
  t.source = where;
  if (jinja.find("<|start_header_id|>") != std::string::npos && jinja.find("<|eot_id|>") != std::string::npos) {
    t.format = ChatFormat::Llama3;
    t.name = "llama3";
    t.date_lines = jinja.find("Cutting Knowledge Date") != std::string::npos;
    // 3.2 asks strftime_now for today's date; 3.1 writes a fixed one unless date_string is given.
    if (t.date_lines && jinja.find("strftime_now") == std::string::npos) t.date = quoted_after(jinja, "set date_string =");
  } else if (jinja.find("<|im_start|>") != std::string::npos && jinja.find("<|im_end|>") != std::string::npos) {
    t.format = ChatFormat::ChatMl;
    t.name = "chatml";
    t.default_system = chatml_default_system(jinja);
  } else if (jinja.find("[INST]") != std::string::npos && jinja.find("<<SYS>>") != std::string::npos) {
    t.format = ChatFormat::Llama2Chat;
    t.name = "llama2-chat";
  } else if (jinja.find("[INST]") != std::string::npos && jinja.find("[/INST]") != std::string::npos) {
    t.format = ChatFormat::Mistral;
    t.name = "mistral";
    t.spaced_inst = jinja.find("' [/INST]'") != std::string::npos || jinja.find("\" [/INST]\"") != std::string::npos;
  } else {
    throw UnsupportedError(where + ": the model's chat template matches none of qft's built-in templates (" + builtin_list() +
                           "); set data.template (or --template) to one of them");
  }
  return t;
}

ChatTemplate resolve_template(const std::string& name, const Tokenizer& tok) {
  if (name != "auto") return builtin_template(name);
  if (tok.chat_template().empty()) {
    throw UnsupportedError(tok.path() + ": template 'auto': the model has no chat template (neither chat_template in "
                           "tokenizer_config.json nor chat_template.jinja); choose a built-in template");
  }
  return detect_template(tok.chat_template(), tok.chat_template_path());
}

}  // namespace qft
