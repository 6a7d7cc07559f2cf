"""PEFT methods: the registry (one record per method) and the lab's own bottleneck adapter.

`registry` holds the records and imports no torch or peft (lab.config reads the method names from
it); `peft_configs` builds each peft-backed method's config; `adapter` is the bottleneck adapter,
torch only, inlined as it is into the standalone script.

May import: nothing of the lab outside this package (it sits beside lab.config, below every room).
"""

from lab.methods.registry import METHODS, MethodSpec, method_spec, names_where, register_method

__all__ = ["METHODS", "MethodSpec", "method_spec", "names_where", "register_method"]
