"""Train the two-moons MLP (the fgrad demo). Run: python examples/moons.py --help

The training code lives in fgrad/demo.py so that this script, `python -m fgrad.demo`
and the `fgrad-demo` command run the same thing; read it there.
"""

import sys

from fgrad.demo import cli

if __name__ == "__main__":
    sys.exit(cli())
