#pragma once
// One file per subcommand: each registers its options and a callback that calls the library.
#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>

#include "trainer/settings.h"

namespace qft::cmd {

// An option whose value is one of an enum's config names ("--device cpu"), parsed straight into the enum.
template <class E>
CLI::Option* add_enum_option(CLI::App* sub, const std::string& name, E& value, const std::string& help) {
  return sub->add_option_function<std::string>(name, [&value](const std::string& v) { value = *parse_enum<E>(v); }, help)
      ->check(CLI::IsMember(enum_names<E>()));
}

// A number in [lo, hi]; NaN and infinities are refused, and the bounds print short ("--top-p: 2 is not a number
// in [1e-09, 1]"), where CLI11's own range checks accept NaN and print a bound of 1.8e308 in full.
inline CLI::Validator number_in(double lo, double hi = std::numeric_limits<double>::max()) {
  return CLI::Validator(
      [lo, hi](std::string& s) -> std::string {
        char* end = nullptr;
        const double v = std::strtod(s.c_str(), &end);
        if (end == s.c_str() || *end != '\0' || !std::isfinite(v) || v < lo || v > hi) {
          return s + " is not a number " + (hi == std::numeric_limits<double>::max()
                                                ? (lo == 0 ? std::string(">= 0") : ">= " + CLI::detail::to_string(lo))
                                                : "in [" + CLI::detail::to_string(lo) + ", " + CLI::detail::to_string(hi) + "]");
        }
        return "";
      },
      "NUMBER");
}

void set_inspect_command(CLI::App& app);
void set_eval_command(CLI::App& app);
void set_train_command(CLI::App& app);
void set_config_command(CLI::App& app);
void set_plan_command(CLI::App& app);
void set_export_command(CLI::App& app);
void set_generate_command(CLI::App& app);
void set_tokenize_command(CLI::App& app);

}  // namespace qft::cmd
