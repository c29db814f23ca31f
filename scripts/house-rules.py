#!/usr/bin/env python3
"""Checks two rules of the house that rustc and clippy do not: `make lint` runs it.

1. No import cycle between the modules (files) of a crate. A module depends on another when it
   names it in a `use` or a path (`crate::a::b`, `super::x`, `self::y`); declaring a child
   (`mod x;`) is not a dependency. Unit-test modules at the end of a file (`#[cfg(test)] mod
   tests`) are left out: they are children that read their parent.
2. No Rust file outside tests (`tests/`, `benches/`, `tests.rs`) over MAX_LINES lines.

Prints what breaks a rule and exits 1 if anything does.

    python3 scripts/house-rules.py [CRATE_SRC_DIR ...]   (default: every */src of the workspace)
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_LINES = 600


def module_files(src):
    """Maps each module path (tuple) of the crate rooted at `src` to its file."""
    mods = {}
    for dirpath, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, f), src)
            parts = rel[:-3].split(os.sep)
            if parts[-1] in ("mod", "lib", "main"):
                parts = parts[:-1]
            if parts and parts[0] == "bin":
                continue
            mods[tuple(parts)] = os.path.join(dirpath, f)
    return mods


def strip(text):
    """The file's code without comments, strings and its trailing unit-test module."""
    m = re.search(r"#\[cfg\(test\)\]\s*(pub(\(\w+\))?\s+)?mod\s+\w+\s*\{", text)
    if m:
        text = text[: m.start()]
    token = re.compile(
        r"//[^\n]*|/\*.*?\*/|\br(#*)\".*?\"\1|b?\"(?:\\.|[^\"\\])*\"|'(?:\\.|[^\\'])'",
        re.S,
    )
    text = token.sub(lambda m: '""' if m.group(0).endswith(('"', "#")) else " ", text)
    return text


def expand_use(tree):
    """`a::{b, c::{d, e}}` -> [a::b, a::c::d, a::c::e]."""
    tree = re.sub(r"\s+", "", tree)
    out = []

    def walk(prefix, t):
        i = t.find("{")
        if i < 0:
            for part in split_top(t):
                out.append(prefix + part)
            return
        head, body = t[:i], t[i + 1 : t.rfind("}")]
        for part in split_top(body):
            walk(prefix + head, part)

    def split_top(t):
        parts, depth, cur = [], 0, ""
        for ch in t:
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            if ch == "," and depth == 0:
                parts.append(cur)
                cur = ""
            else:
                cur += ch
        if cur:
            parts.append(cur)
        return parts

    walk("", tree)
    return [p.split(" as ")[0] for p in out]


def resolve(path, here, mods):
    """The module a path (as a list of segments) names, seen from module `here`, or None."""
    segs = path.split("::")
    if segs[0] == "crate":
        base, segs = (), segs[1:]
    elif segs[0] in ("super", "self"):
        base = list(here)
        while segs and segs[0] in ("super", "self"):
            if segs[0] == "super":
                base = base[:-1]
            segs = segs[1:]
        base = tuple(base)
    else:
        return None
    best = base if base in mods else None
    cur = base
    for s in segs:
        cur = cur + (s,)
        if cur in mods:
            best = cur
        else:
            break
    return best


def edges(src):
    mods = module_files(src)
    graph = {m: set() for m in mods}
    for mod, path in mods.items():
        code = strip(open(path, encoding="utf-8").read())
        paths = []
        for m in re.finditer(r"\buse\s+([^;]+);", code):
            paths += expand_use(m.group(1))
        paths += re.findall(r"\b(?:crate|super|self)(?:::\w+)+", code)
        for p in paths:
            target = resolve(p, mod, mods)
            if target is not None and target != mod:
                graph[mod].add(target)
    return mods, graph


def cycles(graph):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            visit(v)
    return out


def main():
    srcs = sys.argv[1:] or sorted(
        os.path.join(ROOT, d, "src")
        for d in os.listdir(ROOT)
        if os.path.isfile(os.path.join(ROOT, d, "Cargo.toml")) and os.path.isdir(os.path.join(ROOT, d, "src"))
    )
    found = 0
    for src in srcs:
        mods, graph = edges(src)
        for comp in cycles(graph):
            found += 1
            names = sorted(os.path.relpath(mods[m], ROOT) for m in comp)
            print(f"import cycle: {' <-> '.join(names)}")
            for m in sorted(comp):
                for t in sorted(graph[m] & set(comp)):
                    print(f"    {os.path.relpath(mods[m], ROOT)} -> {os.path.relpath(mods[t], ROOT)}")
        for path in sorted(mods.values()):
            if os.path.basename(path) == "tests.rs":
                continue
            with open(path, encoding="utf-8") as f:
                lines = sum(1 for _ in f)
            if lines > MAX_LINES:
                found += 1
                print(f"too long: {os.path.relpath(path, ROOT)} has {lines} lines (at most {MAX_LINES}); split it along its seams")
    if found:
        print(f"{found} problem(s); for a cycle, move what both sides need into a module of its own")
        return 1
    print(f"house rules hold in {len(srcs)} crates: no import cycle, no file over {MAX_LINES} lines")
    return 0

if __name__ == "__main__":
    sys.exit(main())
