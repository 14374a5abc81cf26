#include "bash_completion.hpp"

#include <sstream>

namespace hvsock::cli_reference {
namespace {

std::string words_of(const std::vector<std::string>& words) {
  std::string out;
  for (const auto& w : words) out += (out.empty() ? "" : " ") + w;
  return out;
}

// Single-quoted for the shell.
std::string quoted(const std::string& text) {
  std::string out = "'";
  for (const char c : text) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

struct script_data {
  std::ostringstream commands;  // case arms of _P_command
  std::ostringstream values;    // case arms of _P_value
};

void add_value_arm(script_data& data, const std::string& key, const value_hint& hint) {
  if (hint.kind.empty()) return;
  data.values << "  " << quoted(key) << ") kind=" << hint.kind
              << " words=" << quoted(words_of(hint.words)) << " ;;\n";
}

// `inherited`: the options of the ancestors that fall through to here.
void add_command(script_data& data, const command_doc& command,
                 std::vector<const option_doc*> inherited) {
  std::vector<const option_doc*> options;
  if (command.takes_parent_options)
    for (const option_doc* option : inherited)
      if (!option->help) options.push_back(option);  // each command has its own --help
  for (const auto& option : command.options) options.push_back(&option);

  std::vector<std::string> subcommands, option_words, valued;
  for (const auto& sub : command.subcommands) subcommands.push_back(sub.path.back());
  for (const option_doc* option : options)
    for (const auto& flag : option->flags) {
      option_words.push_back(flag);
      if (option->takes_value) valued.push_back(flag);
    }
  const bool repeats = !command.positionals.empty() && command.positionals.back().repeatable;
  const std::string path = joined_path(command);
  data.commands << "  " << quoted(path) << ")\n"
                << "    subcommands=" << quoted(words_of(subcommands)) << "\n"
                << "    options=" << quoted(words_of(option_words)) << "\n"
                << "    valued=" << quoted(" " + words_of(valued) + " ") << "\n"
                << "    positionals=" << command.positionals.size()
                << " repeats=" << (repeats ? 1 : 0) << " ;;\n";
  for (const option_doc* option : options)
    for (const auto& flag : option->flags) add_value_arm(data, path + "|" + flag, option->hint);
  for (std::size_t i = 0; i < command.positionals.size(); ++i)
    add_value_arm(data, path + "|#" + std::to_string(i), command.positionals[i].hint);

  for (const auto& sub : command.subcommands) add_command(data, sub, options);
}

// The part that is the same for every program: walk the words typed so far
// to the command they name, then offer what fits where the cursor is.
// @P@ is the function prefix.
constexpr std::string_view walker =
    R"(# @P@_live PROGRAM KIND RUNTIME_DIR: the names hvsockd has; nothing, quickly,
# when it is not running (the program exits 1 without a word).
@P@_live() {
  local -a args=(__complete "$2")
  [[ -n $3 ]] && args=(--runtime-dir "$3" "${args[@]}")
  timeout 2 "$1" "${args[@]}" 2>/dev/null </dev/null
}

# @P@_offer CUR: fills COMPREPLY with what `kind` and `words` (set by
# @P@_value) offer for CUR; `first` is 0 for a command's arguments.
@P@_offer() {
  local cur=$1 name quoted
  case $kind in
  partition | service)
    while IFS= read -r name; do
      printf -v quoted '%q' "$name"
      [[ $quoted == "$cur"* ]] && COMPREPLY+=("$quoted")
    done < <(@P@_live "${COMP_WORDS[0]}" "${kind}s" "$runtime_dir")
    ;;
  file)
    compopt -o filenames 2>/dev/null
    mapfile -t -O "${#COMPREPLY[@]}" COMPREPLY < <(compgen -f -- "$cur")
    ;;
  command)
    compopt -o filenames 2>/dev/null
    if ((first)); then
      mapfile -t -O "${#COMPREPLY[@]}" COMPREPLY < <(compgen -c -- "$cur")
    else
      mapfile -t -O "${#COMPREPLY[@]}" COMPREPLY < <(compgen -f -- "$cur")
    fi
    ;;
  esac
  [[ -n $words ]] && mapfile -t -O "${#COMPREPLY[@]}" COMPREPLY < <(compgen -W "$words" -- "$cur")
  return 0
}

@P@() {
  local cur=${COMP_WORDS[COMP_CWORD]} path="" word pending="" runtime_dir=""
  local i=1 n=0 dashdash=0 first=1
  local subcommands options valued positionals repeats kind words
  COMPREPLY=()
  @P@_command ""
  while ((i < COMP_CWORD)); do
    word=${COMP_WORDS[i]}
    if [[ -n $pending && $word == "=" ]]; then
      : # --vm=NAME arrives as three words
    elif [[ -n $pending ]]; then
      [[ $pending == --runtime-dir ]] && runtime_dir=$word
      pending=""
    elif ((dashdash)); then
      n=$((n + 1))
    elif [[ $word == -- ]]; then
      dashdash=1
    elif [[ $word == -* ]]; then
      [[ $valued == *" $word "* ]] && pending=$word
    elif ((n == 0)) && [[ " $subcommands " == *" $word "* ]]; then
      path=${path:+$path }$word
      @P@_command "$path"
    else
      n=$((n + 1))
    fi
    i=$((i + 1))
  done
  [[ -n $pending && $cur == "=" ]] && cur=""

  if [[ -n $pending ]]; then
    @P@_value "$path" "$pending"
  elif ((!dashdash)) && [[ $cur == -* ]]; then
    mapfile -t COMPREPLY < <(compgen -W "$options" -- "$cur")
    return 0
  elif ((n == 0 && !dashdash)) && [[ -n $subcommands ]]; then
    mapfile -t COMPREPLY < <(compgen -W "$subcommands" -- "$cur")
    return 0
  else
    # Words past the last positional belong to it when it repeats (CMD...).
    if ((repeats && n >= positionals)); then
      first=0
      n=$((positionals - 1))
    fi
    @P@_value "$path" "#$n"
    # Nothing to name here: the options are what is left to type.
    if [[ -z $kind$words ]] && ((!dashdash)); then
      mapfile -t COMPREPLY < <(compgen -W "$options" -- "$cur")
      return 0
    fi
  fi
  @P@_offer "$cur"
}
)";

std::string replaced(std::string_view text, const std::string& from, const std::string& to) {
  std::string out(text);
  for (auto at = out.find(from); at != std::string::npos; at = out.find(from, at + to.size()))
    out.replace(at, from.size(), to);
  return out;
}

}  // namespace

std::string render_bash_completion(const command_doc& program, const std::string& program_name,
                                   const std::vector<std::string>& commands) {
  std::string function = "_" + program_name;
  for (char& c : function)
    if (c == '-') c = '_';
  script_data data;
  add_command(data, program, {});

  std::ostringstream out;
  out << "# bash completion for " << program_name << " (printed by `" << program_name
      << " completion bash`): its\n"
      << "# commands and options, and the partition and service names hvsockd has.\n\n"
      << "# " << function << "_command PATH: the words of command PATH (\"vm create\").\n"
      << function << "_command() {\n  case $1 in\n"
      << data.commands.str() << "  esac\n}\n\n"
      << "# " << function << "_value PATH OPTION|#N: what the value of OPTION, or the\n"
      << "# positional N, of command PATH names.\n"
      << function << "_value() {\n  kind=\"\" words=\"\"\n  case \"$1|$2\" in\n"
      << data.values.str() << "  esac\n}\n\n"
      << replaced(walker, "@P@", function) << "\ncomplete -F " << function;
  for (const auto& command : commands) out << " " << command;
  out << "\n";
  return out.str();
}

}  // namespace hvsock::cli_reference
