"""growbench: a benchmark suite for neural-network growth (TINY and its alternatives).

The project's top-level package `datasets` shares its name with HuggingFace's `datasets`. Put this
repository first on the import path so that `import datasets` means ours even when HuggingFace's is
installed in the same environment (tests/test_cli.py checks it).
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if sys.path[:1] != [str(ROOT)]:
    sys.path.insert(0, str(ROOT))
