"""Compare the kernels of two builds of rnnfuse by their SASS.

Usage (the cuobjdump/nvdisasm of PyPI's nvidia-cuda-cuobjdump and
nvidia-cuda-nvdisasm on PATH; build each commit with
`python setup.py build_ext --inplace` in its own worktree first):

    cuobjdump -sass OLD/rnnfuse/_C*.so > old.sass
    cuobjdump -sass NEW/rnnfuse/_C*.so > new.sass
    python sass_compare.py old.sass new.sass

Addresses, encodings and mangled names are dropped (a refactor that renames
template arguments renames kernels without changing their code); what is
left, each kernel's instruction sequence, is hashed and the two builds'
multisets compared per architecture. Prints the kernels found in only one.
"""
import collections
import hashlib
import re
import sys


def parse(path):
    kernels = collections.defaultdict(list)  # arch -> [(name, hash, instruction count)]
    arch, name, body = None, None, []

    def flush():
        if name is not None:
            digest = hashlib.sha1("\n".join(body).encode()).hexdigest()[:12]
            kernels[arch].append((name, digest, len(body)))

    for line in open(path):
        m = re.match(r"\s*code for (sm_\d+)", line)
        if m:
            flush()
            name, body, arch = None, [], m.group(1)
            continue
        m = re.match(r"\s*Function : (\S+)", line)
        if m:
            flush()
            name, body = m.group(1), []
            continue
        m = re.match(r"\s*/\*[0-9a-f]{4,}\*/\s+(.*?)\s*;?\s*/\*", line)
        if name is not None and m:
            body.append(re.sub(r"_Z\w+", "SYM", m.group(1)))
    flush()
    return kernels


def main(old_path, new_path):
    old, new = parse(old_path), parse(new_path)
    same_everywhere = True
    for arch in sorted(set(old) | set(new)):
        h_old = collections.Counter(h for _, h, _ in old[arch])
        h_new = collections.Counter(h for _, h, _ in new[arch])
        sizes = [n for _, _, n in new[arch]] or [0]
        print(f"{arch}: old {sum(h_old.values())} kernels, new {sum(h_new.values())}, "
              f"identical bodies {sum((h_old & h_new).values())} "
              f"({min(sizes)}-{max(sizes)} instructions each)")
        for side, kernels, other in (("new only", new[arch], h_old), ("old only", old[arch], h_new)):
            for kname, h, n in kernels:
                if h not in other:
                    same_everywhere = False
                    print(f"  {side}: {n} instructions, {kname[:150]}")
    return 0 if same_everywhere else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
