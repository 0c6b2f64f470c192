#pragma once
// The choices of the run configuration as types: each is parsed from its config string once (trainer/config)
// and compared as an enum everywhere else. One table per enum gives its config names.
#include <array>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "model/weight_storage.h"

namespace qft {

enum class Device { Auto, Cpu, Cuda };
enum class ModelInit { Pretrained, Random };
enum class StateStorage { Fp32, Int8 };  // quant.weights, quant.momentum, quant.grad_dtype
enum class Rounding { Stochastic, Nearest };
enum class LrSchedule { Constant, Linear, Cosine };
enum class OnNonFinite { Stop, Skip };
enum class DataFormat { Text, Alpaca, PromptCompletion, Chat };
enum class TrainMethod { Full, Lora };     // train.method
enum class OptimizerKind { Lion, Adamw };  // train.optimizer
enum class LoraFormat { Gse, Fp32 };       // lora.format

template <class E>
struct EnumNames;  // static constexpr std::array<std::pair<E, const char*>, N> items

template <>
struct EnumNames<Device> {
  static constexpr std::array<std::pair<Device, const char*>, 3> items{
      {{Device::Auto, "auto"}, {Device::Cpu, "cpu"}, {Device::Cuda, "cuda"}}};
};
template <>
struct EnumNames<ModelInit> {
  static constexpr std::array<std::pair<ModelInit, const char*>, 2> items{
      {{ModelInit::Pretrained, "pretrained"}, {ModelInit::Random, "random"}}};
};
template <>
struct EnumNames<StateStorage> {
  static constexpr std::array<std::pair<StateStorage, const char*>, 2> items{
      {{StateStorage::Fp32, "fp32"}, {StateStorage::Int8, "int8"}}};
};
template <>
struct EnumNames<StackStorage> {
  static constexpr std::array<std::pair<StackStorage, const char*>, 3> items{
      {{StackStorage::Activations, "activations"}, {StackStorage::Bf16, "bf16"}, {StackStorage::Int8, "int8"}}};
};
template <>
struct EnumNames<Rounding> {
  static constexpr std::array<std::pair<Rounding, const char*>, 2> items{
      {{Rounding::Stochastic, "stochastic"}, {Rounding::Nearest, "nearest"}}};
};
template <>
struct EnumNames<LrSchedule> {
  static constexpr std::array<std::pair<LrSchedule, const char*>, 3> items{
      {{LrSchedule::Constant, "constant"}, {LrSchedule::Linear, "linear"}, {LrSchedule::Cosine, "cosine"}}};
};
template <>
struct EnumNames<OnNonFinite> {
  static constexpr std::array<std::pair<OnNonFinite, const char*>, 2> items{
      {{OnNonFinite::Stop, "stop"}, {OnNonFinite::Skip, "skip"}}};
};
template <>
struct EnumNames<DataFormat> {
  static constexpr std::array<std::pair<DataFormat, const char*>, 4> items{{{DataFormat::Text, "text"},
                                                                             {DataFormat::Alpaca, "alpaca"},
                                                                             {DataFormat::PromptCompletion, "prompt_completion"},
                                                                             {DataFormat::Chat, "chat"}}};
};

template <>
struct EnumNames<TrainMethod> {
  static constexpr std::array<std::pair<TrainMethod, const char*>, 2> items{
      {{TrainMethod::Full, "full"}, {TrainMethod::Lora, "lora"}}};
};
template <>
struct EnumNames<OptimizerKind> {
  static constexpr std::array<std::pair<OptimizerKind, const char*>, 2> items{
      {{OptimizerKind::Lion, "lion"}, {OptimizerKind::Adamw, "adamw"}}};
};
template <>
struct EnumNames<LoraFormat> {
  static constexpr std::array<std::pair<LoraFormat, const char*>, 2> items{
      {{LoraFormat::Gse, "gse"}, {LoraFormat::Fp32, "fp32"}}};
};

template <class E>
const char* enum_name(E e) {
  for (const auto& [v, name] : EnumNames<E>::items) {
    if (v == e) return name;
  }
  return "?";
}

template <class E>
std::optional<E> parse_enum(std::string_view text) {
  for (const auto& [v, name] : EnumNames<E>::items) {
    if (text == name) return v;
  }
  return std::nullopt;
}

template <class E>
std::vector<std::string> enum_names() {
  std::vector<std::string> out;
  for (const auto& item : EnumNames<E>::items) out.emplace_back(item.second);
  return out;
}

}  // namespace qft
