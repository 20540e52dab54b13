import sys
from pathlib import Path

# Tests import helpers such as `twin` from this folder.
sys.path.insert(0, str(Path(__file__).parent))
