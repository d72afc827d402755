#!/usr/bin/env python3
"""Fails when a crate's top-level modules import each other in a cycle (crate::a uses
crate::b, which uses crate::a, directly or through others): each module of a crate is meant
to stand on the ones below it. Comments, `mod tests` blocks and `tests.rs` files are not
read. Usage: tests/support/module-cycles.py [workspace root]."""
import os, re, sys, itertools
root = sys.argv[1] if len(sys.argv) > 1 else '.'
crates = []
for dirpath, dirs, files in os.walk(root):
    if 'target' in dirpath.split(os.sep) or '/.git' in dirpath or 'fuzz' in dirpath.split(os.sep):
        continue
    if 'Cargo.toml' in files and os.path.isdir(os.path.join(dirpath, 'src')):
        crates.append(dirpath)
found = 0
for c in sorted(crates):
    src = os.path.join(c, 'src')
    mods = {}
    for dp, _, fs in os.walk(src):
        for f in fs:
            if not f.endswith('.rs') or f == 'tests.rs': continue
            rel = os.path.relpath(os.path.join(dp, f), src)
            parts = rel[:-3].split(os.sep)
            top = parts[0] if parts[0] not in ('lib', 'main') else None
            if top is None: continue
            text = open(os.path.join(dp, f)).read()
            # drop test modules (cfg(test) mod tests { ... } at end) crudely
            text = re.split(r'#\[cfg\(test\)\]\s*mod tests', text)[0]
            text = re.sub(r"//[^\n]*", "", text)
            deps = set(re.findall(r'crate::(\w+)', text))
            # `use crate::{a, b::c}` groups
            for g in re.findall(r'crate::\{([^}]*)\}', text, re.S):
                deps |= set(re.findall(r'(?:^|,)\s*(\w+)', g))
            if len(parts) > 1:
                deps |= set(re.findall(r'super::super::(\w+)', text)) if len(parts) > 2 else set()
                if len(parts) == 2:
                    deps |= {d for d in re.findall(r'\bsuper::(\w+)', text)} - {top}
            mods.setdefault(top, set()).update(d for d in deps if d != top)
    names = set(mods)
    graph = {m: {d for d in ds if d in names} for m, ds in mods.items()}
    # find 2-cycles and longer via DFS
    cycles = set()
    def dfs(start, node, path):
        for n in graph.get(node, ()):
            if n == start and len(path) > 1:
                cyc = path[:]
                i = cyc.index(min(cyc)); cycles.add(tuple(cyc[i:] + cyc[:i]))
            elif n not in path and len(path) < 6:
                dfs(start, n, path + [n])
    for m in graph: dfs(m, m, [m])
    for cyc in sorted(cycles):
        found += 1
        print(f"{os.path.relpath(c, root)}: {' -> '.join(cyc + (cyc[0],))}")
print(f"module-cycles: {found} module cycles")
sys.exit(1 if found else 0)
