"""Hypothesis strategies that break image documents (index, manifest,
config) one field at a time: drop it, give it another type, nest it, or
make it huge.  Unknown fields stay, as real documents have them."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

# Values of every JSON type, and the edges of ranges.
ODD_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False), st.text(max_size=20),
    st.sampled_from(["big", "", "sha256:" + "0" * 64, "sha256:xyz", "sha512:" + "a" * 128,
                     "linux/amd64", "layers", "application/vnd.oci.image.index.v1+json",
                     "application/vnd.oci.image.manifest.v1+json"]),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(),
                                                        max_size=3))


def paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside `doc` (keys and list indexes)."""
    out = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out.append((*prefix, k))
            out += paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out.append((*prefix, i))
            out += paths(v, (*prefix, i))
    return out


@dataclass(frozen=True)
class Mutation:
    path: tuple[Any, ...]
    kind: str          # drop, retype, nest, enlarge
    value: Any = None

    def apply(self, doc: Any) -> Any:
        doc = copy.deepcopy(doc)
        parent = doc
        for key in self.path[:-1]:
            parent = parent[key]
        last = self.path[-1]
        old = parent[last]
        if self.kind == "drop":
            del parent[last]
        elif self.kind == "retype":
            parent[last] = self.value
        elif self.kind == "nest":
            parent[last] = [old] if self.value else {"value": old}
        elif self.kind == "enlarge":
            if isinstance(old, list) and old:
                parent[last] = old * 5000
            elif isinstance(old, str):
                parent[last] = old * 2000
            elif isinstance(old, int) and not isinstance(old, bool):
                parent[last] = old + 2**63
            else:
                parent[last] = [old] * 5000
        return doc


@st.composite
def mutations(draw: st.DrawFn, doc: Any) -> Mutation:
    path = draw(st.sampled_from(paths(doc)))
    kind = draw(st.sampled_from(["drop", "retype", "nest", "enlarge"]))
    value = draw(ODD_VALUES) if kind == "retype" else draw(st.booleans())
    return Mutation(path, kind, value)


def dumps(doc: Any) -> bytes:
    return json.dumps(doc).encode()
