#!/usr/bin/env python3
"""The man pages say what --help says (issue 11).

Every command `hvsock ... --help` lists has its section in hvsock(1), with
the same options and positionals, and the page has no command, option or
positional --help does not list; the same for hvsockd(8)'s options. The pages
are the ones the build installs (HVSOCK_REFERENCE_DIR), and they render
through groff without a warning.

Usage: man_page_test.py HVSOCKD HVSOCK_CLI (HVSOCK_REFERENCE_DIR set)
"""
import os
import re
import shutil
import subprocess
import sys


def fail(message):
    print("FAIL: " + message)
    sys.exit(1)


def help_text(program, words):
    run = subprocess.run([program, *words, "--help"], capture_output=True, text=True, timeout=30)
    if run.returncode != 0:
        fail(f"{' '.join(words)} --help exited {run.returncode}: {run.stderr}")
    return run.stdout


def help_sections(text):
    """{"Options": [...], "Positionals": [...], "Subcommands": [...]} from --help:
    the first word of each entry line (two spaces in; wrapped descriptions
    are indented further)."""
    sections, current = {}, None
    for line in text.splitlines():
        header = re.fullmatch(r"(\w+):", line)
        if header:
            current = sections.setdefault(header.group(1), [])
        elif current is not None and re.match(r"  \S", line):
            current.append(line.split()[0])
    return sections


def help_entries(text):
    """(options, positionals, subcommands) of one command's --help; -h/--help
    left out, since every command has it."""
    sections = help_sections(text)
    options = set()
    for entry in sections.get("Options", []):
        options.update(name for name in entry.split(",") if name not in ("-h", "--help"))
    return options, set(sections.get("Positionals", [])), sections.get("Subcommands", [])


def walk_help(program, words=()):
    """{"vm create": (options, positionals)} for every command under `words`."""
    options, positionals, subcommands = help_entries(help_text(program, list(words)))
    found = {" ".join(words): (options, positionals)}
    for sub in subcommands:
        found.update(walk_help(program, (*words, sub)))
    return found


def plain(roff):
    """A roff line's text: escapes of hyphen and backslash undone, fonts gone."""
    text = re.sub(r"\\f[BIRP]", "", roff)
    return text.replace("\\-", "-").replace("\\e", "\\").replace("\\&", "")


def page_entries(page, program):
    """{"vm create": (options, positionals)} from the page's roff: the OPTIONS
    section is the program's own (""), each .SS "PROGRAM WORDS" a command;
    the line after each .TP names an option (its flags) or a positional."""
    found, current, section, after_tp = {}, None, None, False
    for line in page.splitlines():
        if line.startswith(".SH "):
            section = line[4:].strip('"')
            current = "" if section == "OPTIONS" else None
            if current is not None:
                found.setdefault(current, (set(), set()))
        elif line.startswith(".SS ") and section == "COMMANDS":
            title = plain(line[4:]).strip('"')
            if not title.startswith(program + " "):
                fail(f"a command section of the page is not about {program}: {title}")
            current = title[len(program) + 1:]
            found.setdefault(current, (set(), set()))
        elif line == ".TP":
            after_tp = True
        elif after_tp:
            after_tp = False
            if current is None:
                continue
            options, positionals = found[current]
            text = plain(line)
            if text.startswith("-"):
                options.update(re.findall(r"(?:^|, )(-[\w-]+)", text))
            else:
                positionals.add(text.split()[0].rstrip("."))
    found.get("", (set(), set()))[0].difference_update({"-h", "--help"})
    return found


def compare(program_name, by_help, by_page):
    problems = []
    for command in sorted(set(by_help) | set(by_page)):
        label = f"{program_name} {command}".strip()
        if command not in by_page:
            problems.append(f"{label}: in --help, not in the man page")
            continue
        if command not in by_help:
            problems.append(f"{label}: in the man page, not in --help")
            continue
        for kind, in_help, in_page in zip(("option", "positional"), by_help[command], by_page[command]):
            for name in sorted(in_help - in_page):
                problems.append(f"{label}: {kind} {name} is in --help, not in the man page")
            for name in sorted(in_page - in_help):
                problems.append(f"{label}: {kind} {name} is in the man page, not in --help")
    if problems:
        fail("the man page of " + program_name + " and --help differ:\n  " + "\n  ".join(problems))
    print(f"ok: {program_name}: {len(by_help)} commands, same options and positionals as --help")


def check_renders(path):
    if shutil.which("groff") is None:
        fail("groff is not installed (scripts/install-deps.sh installs groff-base)")
    run = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", path], capture_output=True,
                         text=True, timeout=60)
    if run.returncode != 0 or run.stderr.strip():
        fail(f"groff -man -ww {path}: {run.stderr.strip() or run.returncode}")
    print(f"ok: {os.path.basename(path)} renders with groff -ww, no warning")


def main():
    if len(sys.argv) != 3:
        fail("usage: man_page_test.py HVSOCKD HVSOCK_CLI")
    hvsockd, cli = sys.argv[1:]
    reference = os.environ.get("HVSOCK_REFERENCE_DIR") or fail("HVSOCK_REFERENCE_DIR is not set")
    pages = {name: os.path.join(reference, name) for name in ("hvsock.1", "hvsockd.8")}
    for path in pages.values():
        if not os.path.isfile(path):
            fail(f"{path} was not built")

    compare("hvsock", walk_help(cli), page_entries(open(pages["hvsock.1"]).read(), "hvsock"))
    daemon_help = help_entries(help_text(hvsockd, []))
    compare("hvsockd", {"": daemon_help[:2]},
            page_entries(open(pages["hvsockd.8"]).read(), "hvsockd"))

    # The hidden entry points stay out of the pages.
    text = [line for line in open(pages["hvsock.1"]).read().splitlines() if not line.startswith('.\\"')]
    if any("__man" in line or "__complete" in line for line in text):
        fail("hvsock.1 lists a hidden command")
    for name in ("hvsock.1", "hvsockd.8", "hvsock-static.1"):
        check_renders(os.path.join(reference, name))
    print("man page test passed")


if __name__ == "__main__":
    main()
