"""The grammar language: grammar files compiled to matchers of log messages.

See docs/grammars.md for the language; this package only parses, compiles and
matches, with no I/O beyond reading the grammar files themselves.
"""

from .errors import GrammarError
from .examples import check_example, check_examples
from .grammar import Grammar, Match, Rejected, normalise_address
from .loader import build_grammar, load_grammar, load_grammars
from .model import Example
from .testing import run_grammar_tests

__all__ = [
    "Example",
    "Grammar",
    "GrammarError",
    "Match",
    "Rejected",
    "build_grammar",
    "check_example",
    "check_examples",
    "load_grammar",
    "load_grammars",
    "normalise_address",
    "run_grammar_tests",
]
