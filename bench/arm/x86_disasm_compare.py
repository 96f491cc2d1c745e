#!/usr/bin/env python3
"""Are the x86 kernels unchanged? Compiles Sources/ICHKernels of two git revisions for x86_64 with the product's
flags (scripts/arch-flags.sh: -target-cpu haswell; -O -wmo, one module) and compares each function's
disassembly, addresses, constant-pool label numbers and branch targets aside. For the functions that differ it
prints their sizes; --loop SUBSTRING also compares, register names aside, the instructions around every
vpmaddwd (the pairs GEMM's K loop) of the largest function whose name contains SUBSTRING.
usage: x86_disasm_compare.py BASE_REV [NEW_REV | --worktree] [--loop ConvWinograd]"""
import collections, os, re, subprocess, sys, tempfile

root = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=True).stdout.strip()
flags = subprocess.run(["bash", f"{root}/scripts/arch-flags.sh"], capture_output=True, text=True).stdout.replace("-Xswiftc ", "").split()

def build(rev, tmp):
    if rev == "--worktree":
        src = f"{root}/Sources/ICHKernels"
    else:
        src = f"{tmp}/{rev}/Sources/ICHKernels"
        os.makedirs(f"{tmp}/{rev}", exist_ok=True)
        subprocess.run(f"git -C {root} archive {rev} Sources/ICHKernels | tar -x -C {tmp}/{rev}", shell=True, check=True)
    obj = f"{tmp}/{rev.strip('-')}.o"
    files = sorted(f"{src}/{f}" for f in os.listdir(src) if f.endswith(".swift"))
    subprocess.run(["swiftc", "-O", "-wmo", "-parse-as-library", "-module-name", "ICHKernels", *flags, "-emit-object", *files, "-o", obj],
                   check=True)
    return obj

def funcs(obj):
    out = subprocess.run(["objdump", "-d", "--no-show-raw-insn", "-r", obj], capture_output=True, text=True).stdout
    fs = {}; cur = None
    for l in out.splitlines():
        m = re.match(r"^[0-9a-f]+ <(.+)>:$", l)
        if m: cur = m.group(1); fs[cur] = []; continue
        if cur is None or not l.strip(): continue
        if "R_X86_64" in l:
            fs[cur].append("reloc " + l.split()[-2] + " " + re.sub(r"\.LCPI\d+_", ".LCPI_", re.split(r"[-+]", l.split()[-1])[0])); continue
        m = re.match(r"^\s+[0-9a-f]+:\s+(.*)$", l)
        if m:
            ins = re.sub(r"\b[0-9a-f]+ <[^>]+>", "<T>", m.group(1))
            fs[cur].append(re.sub(r"0x[0-9a-f]+\(%rip\)", "X(%rip)", ins))
    return fs

args = [a for a in sys.argv[1:] if not a.startswith("--loop")]
loop = sys.argv[sys.argv.index("--loop") + 1] if "--loop" in sys.argv else None
if loop in args: args.remove(loop)
base, new = args[0], args[1] if len(args) > 1 else "--worktree"
with tempfile.TemporaryDirectory() as tmp:
    a, b = funcs(build(base, tmp)), funcs(build(new, tmp))
dm = lambda s: subprocess.run(["swift-demangle", "-compact", s], capture_output=True, text=True).stdout.strip()[:100]
same = [f for f in a if f in b and a[f] == b[f]]; diff = [f for f in a if f in b and a[f] != b[f]]
print(f"x86_64 ICHKernels, {base} vs {new}: {len(a)} / {len(b)} functions, {len(same)} identical, {len(diff)} differ, "
      f"{len([f for f in a if f not in b])} only in {base}, {len([f for f in b if f not in a])} only in {new}")
for f in diff: print(f"  differs ({len(a[f])} -> {len(b[f])} instructions): {dm(f)}")
for f in a:
    if f not in b: print(f"  only in {base} ({len(a[f])}): {dm(f)}")
for f in b:
    if f not in a: print(f"  only in {new} ({len(b[f])}): {dm(f)}")
if loop:
    norm = lambda x: re.sub(r"%[a-z0-9]+", "%R", x)
    def around(fs):
        name = max((f for f in fs if loop in f), key=lambda f: len(fs[f]))
        ins = [norm(x) for x in fs[name] if not x.startswith("reloc")]
        idx = [i for i, x in enumerate(ins) if x.startswith("vpmaddwd")]
        return ins[idx[0] - 8: idx[7] + 6] if len(idx) >= 8 else [], collections.Counter(x.split()[0] for x in ins)
    (la, ha), (lb, hb) = around(a), around(b)
    print(f"vpmaddwd loop of the largest {loop} function: {len(la)} instructions, identical (registers aside): {la == lb}")
    print("  instruction counts of the transforms' shuffles and loads in that function (base -> new): " +
          ", ".join(f"{k} {ha[k]} -> {hb[k]}" for k in ("vpmovzxbw", "vperm2i128", "vpunpckldq", "vpunpckhdq", "vpmaddwd")))
