#pragma once
// Chat formats: how a conversation is written as text around its turns, one function per family, each
// reproducing the family's own Jinja chat template (the text transformers' apply_chat_template renders), and
// which byte ranges of that text are the assistant's (they carry the loss). `auto` reads the model's own template
// and picks the built-in that renders it, with the parameters it finds there (a default system prompt, date lines).
#include <string>
#include <utility>
#include <vector>

namespace qft {

class Tokenizer;

struct Turn {
  std::string role;  // system | user | assistant
  std::string content;
};

enum class ChatFormat {
  Plain,       // "### Instruction:" / "### Response:", for base models
  Llama2Chat,  // <s>[INST] <<SYS>>...<</SYS>> ... [/INST] answer </s>
  Llama3,      // <|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|>
  ChatMl,      // <|im_start|>role\n...<|im_end|>\n (SmolLM2, Qwen)
  Mistral,     // <s>[INST] ...[/INST] answer</s>, the system turn folded into the last user turn
};                                                        // (v0.1's spacing: [INST] ... [/INST]answer</s>)

struct ChatTemplate {
  ChatFormat format = ChatFormat::Plain;
  std::string name = "plain";
  std::string default_system;  // chatml: the system turn written when a conversation has none ("": none)
  bool date_lines = false;     // llama3 (3.1 and later): a system header with "Cutting Knowledge Date"/"Today Date"
  std::string date;            // with date_lines: the Today Date; "" means today's, as the template's strftime_now
  bool spaced_inst = false;    // mistral: Mistral-7B-Instruct-v0.1's spacing (" [/INST]", no space before the
                               // answer, no system turn)
  std::string source;          // where it came from: "built-in", or the model's template file
};

// The text of a conversation and the byte ranges [first, second) that are assistant output: each assistant
// turn's content and the token that ends it.
struct RenderedChat {
  std::string text;
  std::vector<std::pair<size_t, size_t>> assistant;
};

// `bos` and `eos` are the tokenizer's token strings. add_generation_prompt ends the text where the assistant's
// next turn begins. Throws Error when the family cannot write the conversation (e.g. a second system turn).
RenderedChat render_chat(const std::vector<Turn>& turns, const ChatTemplate& tmpl, const std::string& bos,
                         const std::string& eos, bool add_generation_prompt);

// The token string that ends an assistant turn in this format (a stop token for generation).
std::string end_of_turn(const ChatTemplate& tmpl, const std::string& eos);

std::vector<std::string> builtin_template_names();  // plain, llama2-chat, llama3, chatml, mistral
std::vector<std::string> template_choices();        // the built-ins and auto: what data.template / --template take
ChatTemplate builtin_template(const std::string& name);  // throws ConfigError for an unknown name

// The built-in that renders a model's Jinja chat template, read from `jinja` (the text of file `where`).
// Throws UnsupportedError naming the file and the built-ins when none does.
ChatTemplate detect_template(const std::string& jinja, const std::string& where);

// A data.template / --template value: a built-in's name, or "auto" for the model's own template.
ChatTemplate resolve_template(const std::string& name, const Tokenizer& tok);

}  // namespace qft
