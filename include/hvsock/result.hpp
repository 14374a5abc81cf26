// result<T>: a value or an hvsock::failure, shaped like std::expected (which
// g++ 12 lacks in C++20). value() on an error throws std::system_error whose
// what() is the error's message.
#pragma once

#include <optional>
#include <stdexcept>
#include <system_error>
#include <type_traits>
#include <utility>
#include <variant>

#include <hvsock/error.hpp>

namespace hvsock {

// Tag to construct a result holding an error: return unexpected(err);
struct unexpected {
  explicit unexpected(failure e) : value(std::move(e)) {}
  failure value;
};

[[noreturn]] inline void throw_error(const failure& e) {
  throw std::system_error(e.code(), e.message());
}

template <class T>
class [[nodiscard]] result {
 public:
  using value_type = T;

  result(T value) : state_(std::in_place_index<0>, std::move(value)) {}
  result(unexpected u) : state_(std::in_place_index<1>, std::move(u.value)) {}
  result(failure e) : state_(std::in_place_index<1>, std::move(e)) {}

  bool has_value() const { return state_.index() == 0; }
  explicit operator bool() const { return has_value(); }

  T& value() & {
    if (!has_value()) throw_error(std::get<1>(state_));
    return std::get<0>(state_);
  }
  const T& value() const& {
    if (!has_value()) throw_error(std::get<1>(state_));
    return std::get<0>(state_);
  }
  T&& value() && {
    if (!has_value()) throw_error(std::get<1>(state_));
    return std::move(std::get<0>(state_));
  }
  T& operator*() & { return std::get<0>(state_); }
  const T& operator*() const& { return std::get<0>(state_); }
  T&& operator*() && { return std::move(std::get<0>(state_)); }
  T* operator->() { return &std::get<0>(state_); }
  const T* operator->() const { return &std::get<0>(state_); }

  // Precondition: !has_value().
  const hvsock::failure& error() const { return std::get<1>(state_); }

  template <class U>
  T value_or(U&& fallback) const& {
    return has_value() ? std::get<0>(state_) : static_cast<T>(std::forward<U>(fallback));
  }

 private:
  std::variant<T, hvsock::failure> state_;
};

template <>
class [[nodiscard]] result<void> {
 public:
  using value_type = void;

  result() = default;
  result(unexpected u) : error_(std::move(u.value)) {}
  result(hvsock::failure e) : error_(std::move(e)) {}

  bool has_value() const { return !error_.has_value(); }
  explicit operator bool() const { return has_value(); }
  void value() const {
    if (error_) throw_error(*error_);
  }
  // Precondition: !has_value().
  const hvsock::failure& error() const { return *error_; }

 private:
  std::optional<hvsock::failure> error_;
};

}  // namespace hvsock
