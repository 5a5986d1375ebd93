"""Prints every step kernel of a built extension with its registers, stack and
local bytes (cuobjdump -res-usage): python step_res_usage.py path/to/_C.so.
registers_vs_5ccfba2.txt compares its output for a build of 5ccfba2 and of
this change."""
import re, subprocess, sys
sys.path.insert(0, __import__('os').path.join(__import__('os').path.dirname(__file__), '..', '..', '..', 'tests'))
from test_persistent_build import find_cuobjdump, per_arch
cu = find_cuobjdump()
so = sys.argv[1]
res = subprocess.run([cu, '-res-usage', so], capture_output=True, text=True).stdout
usage = per_arch(res, re.compile(r"Function (\S+):"))
for (arch, name), block in sorted(usage.items()):
    if 'step_kernel' not in name: continue
    f = dict(re.findall(r"(\w+):(\d+)", block.split(":", 1)[1]))
    short = re.sub(r'NS0_9StepGroupI|EEE$|Ev.*$', '', name.replace('_ZN7rnnfuse4cuda', ''))
    print(arch, short[:110], 'REG', f['REG'], 'STACK', f['STACK'], 'LOCAL', f['LOCAL'])
